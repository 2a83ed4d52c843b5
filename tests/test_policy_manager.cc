#include "control/admin/policy_manager.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "tests/admin_test_util.h"

namespace airlock::control::admin {
namespace {

using airlock::testing::demo_policy;
using airlock::testing::FakeDataPlane;
using airlock::testing::kFailingTest;
using airlock::testing::read_all;
using airlock::testing::TempDir;

class PolicyManagerTest : public ::testing::Test {
 protected:
  PolicyManagerOptions options(std::vector<std::string> instances) {
    PolicyManagerOptions o;
    o.policy_path = dir_.file("policy.json");
    for (const std::string& name : instances) o.data_planes.push_back({name, socket(name)});
    return o;
  }
  std::string socket(const std::string& name) { return dir_.file(name + ".sock"); }

  // Every version a listener was told about, in order.
  void listen(PolicyManager& manager) {
    manager.add_listener([this](std::shared_ptr<const policy::Document> doc) {
      ASSERT_NE(doc, nullptr);
      announced_.push_back(doc->version);
    });
  }

  size_t files_in_dir() const {
    size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      n += entry.is_regular_file();
    }
    return n;
  }

  TempDir dir_;
  std::vector<uint64_t> announced_;
};

TEST_F(PolicyManagerTest, ApplyInstallsOnEveryDataPlaneSavesAndNotifies) {
  FakeDataPlane a(socket("dp-a"));
  FakeDataPlane b(socket("dp-b"));
  PolicyManager manager(options({"dp-a", "dp-b"}));
  listen(manager);

  std::string text = demo_policy(7);
  ApplyResult result = manager.apply(text, "policy.json");
  ASSERT_TRUE(result.ok()) << result.message;
  EXPECT_EQ(result.version, 7u);
  EXPECT_EQ(a.running, 7u);
  EXPECT_EQ(b.running, 7u);
  EXPECT_EQ(announced_, std::vector<uint64_t>{7});
  EXPECT_EQ(read_all(dir_.file("policy.json")), text);
  EXPECT_EQ(files_in_dir(), 1u);  // no temporary file left behind

  auto active = manager.active();
  ASSERT_NE(active, nullptr);
  EXPECT_EQ(active->version, 7u);
  EXPECT_EQ(active->text, text);
  EXPECT_EQ(active->file_name, "policy.json");
  EXPECT_EQ(active->document->peers.size(), 2u);
  EXPECT_FALSE(active->compiled.empty());
}

TEST_F(PolicyManagerTest, InvalidPolicyIsRejectedWithItsLineAndThePreviousStays) {
  FakeDataPlane a(socket("dp-a"));
  PolicyManager manager(options({"dp-a"}));
  listen(manager);
  std::string good = demo_policy(1);
  ASSERT_TRUE(manager.apply(good, "policy.json").ok());

  std::string bad = demo_policy(2);
  bad.replace(bad.find("100.80.0.3/32"), 13, "100.80.0.3/33");
  ApplyResult result = manager.apply(bad, "policy.json");
  EXPECT_EQ(result.error, ApplyResult::Error::kInvalid);
  EXPECT_NE(result.message.find("policy.json:11:"), std::string::npos) << result.message;
  EXPECT_EQ(manager.active()->version, 1u);
  EXPECT_EQ(announced_, std::vector<uint64_t>{1});
  EXPECT_EQ(read_all(dir_.file("policy.json")), good);
  EXPECT_EQ(a.running, 1u);
  EXPECT_EQ(a.pushes, 1);
}

TEST_F(PolicyManagerTest, PolicyWhoseOwnTestsFailIsRejected) {
  FakeDataPlane a(socket("dp-a"));
  PolicyManager manager(options({"dp-a"}));
  listen(manager);
  ApplyResult result = manager.apply(demo_policy(3, kFailingTest), "policy.json");
  EXPECT_EQ(result.error, ApplyResult::Error::kInvalid);
  EXPECT_NE(result.message.find("policy.json:20:"), std::string::npos) << result.message;
  EXPECT_EQ(manager.active(), nullptr);
  EXPECT_TRUE(announced_.empty());
  EXPECT_EQ(a.pushes, 0);
  EXPECT_FALSE(std::filesystem::exists(dir_.file("policy.json")));
}

TEST_F(PolicyManagerTest, DataPlaneRefusalFailsTheApplyNamingTheInstance) {
  FakeDataPlane a(socket("dp-a"));
  PolicyManager manager(options({"dp-a"}));
  listen(manager);
  ASSERT_TRUE(manager.apply(demo_policy(1), "policy.json").ok());

  a.refuse = true;
  ApplyResult result = manager.apply(demo_policy(2), "policy.json");
  EXPECT_EQ(result.error, ApplyResult::Error::kDataPlane);
  EXPECT_NE(result.message.find("dp-a"), std::string::npos) << result.message;
  EXPECT_NE(result.message.find("no room for the new tables"), std::string::npos);
  EXPECT_EQ(manager.active()->version, 1u);
  EXPECT_EQ(announced_, std::vector<uint64_t>{1});
  EXPECT_EQ(read_all(dir_.file("policy.json")), demo_policy(1));
  EXPECT_EQ(files_in_dir(), 1u);
}

TEST_F(PolicyManagerTest, UnreachableInstanceFailsBeforeAnyInstanceChanges) {
  FakeDataPlane a(socket("dp-a"));
  PolicyManager manager(options({"dp-a", "dp-b"}));  // dp-b is not running
  ApplyResult result = manager.apply(demo_policy(1), "policy.json");
  EXPECT_EQ(result.error, ApplyResult::Error::kDataPlane);
  EXPECT_NE(result.message.find("dp-b"), std::string::npos) << result.message;
  EXPECT_EQ(a.pushes, 0);
  EXPECT_EQ(a.running, 0u);
  EXPECT_EQ(manager.active(), nullptr);
}

TEST_F(PolicyManagerTest, OlderOrEqualVersionIsRejected) {
  FakeDataPlane a(socket("dp-a"));
  PolicyManager manager(options({"dp-a"}));
  ASSERT_TRUE(manager.apply(demo_policy(5), "policy.json").ok());
  for (uint64_t version : {5u, 4u}) {
    ApplyResult result = manager.apply(demo_policy(version), "policy.json");
    EXPECT_EQ(result.error, ApplyResult::Error::kNotNewer);
    EXPECT_NE(result.message.find("not newer than the active version 5"), std::string::npos)
        << result.message;
  }
  EXPECT_EQ(a.pushes, 1);
  EXPECT_TRUE(manager.apply(demo_policy(6), "policy.json").ok());
}

TEST_F(PolicyManagerTest, EnsurePushedReinstallsOnARestartedDataPlane) {
  auto a = std::make_unique<FakeDataPlane>(socket("dp-a"));
  FakeDataPlane b(socket("dp-b"));
  PolicyManager manager(options({"dp-a", "dp-b"}));
  ASSERT_TRUE(manager.apply(demo_policy(4), "policy.json").ok());
  EXPECT_TRUE(manager.ensure_pushed().empty());
  EXPECT_EQ(b.pushes, 1);  // in sync: nothing pushed

  a.reset();  // the data plane restarts without a policy
  std::vector<std::string> problems = manager.ensure_pushed();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("dp-a"), std::string::npos) << problems[0];

  a = std::make_unique<FakeDataPlane>(socket("dp-a"));
  EXPECT_TRUE(manager.ensure_pushed().empty());
  EXPECT_EQ(a->running, 4u);
  EXPECT_EQ(b.pushes, 1);
}

TEST_F(PolicyManagerTest, RestartLoadsTheLastGoodPolicy) {
  FakeDataPlane a(socket("dp-a"));
  {
    PolicyManager manager(options({"dp-a"}));
    ASSERT_TRUE(manager.apply(demo_policy(2), "policy.json").ok());
    ASSERT_FALSE(manager.apply(demo_policy(3, kFailingTest), "policy.json").ok());
  }
  PolicyManager restarted(options({"dp-a"}));
  listen(restarted);
  std::string error;
  ASSERT_TRUE(restarted.load(&error)) << error;
  ASSERT_NE(restarted.active(), nullptr);
  EXPECT_EQ(restarted.active()->version, 2u);
  EXPECT_EQ(announced_, std::vector<uint64_t>{2});
}

TEST_F(PolicyManagerTest, LoadWithoutASavedPolicyLeavesNoneActive) {
  PolicyManager manager(options({}));
  std::string error;
  EXPECT_TRUE(manager.load(&error)) << error;
  EXPECT_EQ(manager.active(), nullptr);
  EXPECT_TRUE(manager.ensure_pushed().empty());
}

TEST(ControlSocketPath, MatchesTheDataPlaneDefault) {
  EXPECT_EQ(control_socket_path("edge"), "/run/airlock/edge.sock");
}

}  // namespace
}  // namespace airlock::control::admin
