// airlockctl: the policy text edits behind `peer add` (comments and layout kept), address
// allocation, keys and the wg-quick config as library calls; then the binary itself against a
// real admin API with a fake data plane.
#include <sodium.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "control/admin/admin_api.h"
#include "control/admin/policy_text.h"
#include "control/budget/ledger.h"
#include "control/ctl/peer_add.h"
#include "control/ctl/tool_summary.h"
#include "tests/admin_test_util.h"
#include "tests/http_test_util.h"

namespace airlock::control {
namespace {

using admin::PeerEntry;
using airlock::testing::demo_policy;
using airlock::testing::FakeDataPlane;
using airlock::testing::kFailingTest;
using airlock::testing::read_all;
using airlock::testing::TempDir;
using airlock::testing::test_key;
using airlock::testing::write_all;

const PeerEntry kCarol{"carol", "ci-1", {"ci"}, "K3", {"100.80.0.4/32"}};

std::string insert(std::string_view text, const PeerEntry& peer = kCarol) {
  std::string error;
  auto out = admin::insert_peer(text, peer, &error);
  EXPECT_TRUE(out) << error;
  return out.value_or("");
}

TEST(InsertPeer, AfterTheLastElementAndItsComments) {
  std::string text =
      "{\n"
      "  \"version\": 1,  // bump on every change\n"
      "  \"peers\": [\n"
      "    {\"user\": \"alice\", \"public_key\": \"K1\", \"allowed_ips\": [\"100.80.0.2/32\"]}  // "
      "alice\n"
      "    // next ones go here\n"
      "  ],\n"
      "  \"rules\": []\n"
      "}\n";
  EXPECT_EQ(
      insert(text),
      "{\n"
      "  \"version\": 1,  // bump on every change\n"
      "  \"peers\": [\n"
      "    {\"user\": \"alice\", \"public_key\": \"K1\", \"allowed_ips\": [\"100.80.0.2/32\"]},  "
      "// alice\n"
      "    // next ones go here\n"
      "    {\"user\": \"carol\", \"device\": \"ci-1\", \"tags\": [\"ci\"], \"public_key\": \"K3\", "
      "\"allowed_ips\": [\"100.80.0.4/32\"]}\n"
      "  ],\n"
      "  \"rules\": []\n"
      "}\n");
}

TEST(InsertPeer, MultiLineElementsGetAMultiLineEntry) {
  std::string text =
      "{\"version\": 1,\n"
      "\t\"peers\": [\n"
      "\t\t{\n"
      "\t\t\t\"user\": \"alice\",\n"
      "\t\t\t\"public_key\": \"K1\",\n"
      "\t\t\t\"allowed_ips\": [\"100.80.0.2/32\"]\n"
      "\t\t}\n"
      "\t]}\n";
  EXPECT_EQ(insert(text, {"carol", "", {}, "K3", {"100.80.0.4/32"}}),
            "{\"version\": 1,\n"
            "\t\"peers\": [\n"
            "\t\t{\n"
            "\t\t\t\"user\": \"alice\",\n"
            "\t\t\t\"public_key\": \"K1\",\n"
            "\t\t\t\"allowed_ips\": [\"100.80.0.2/32\"]\n"
            "\t\t},\n"
            "\t\t{\n"
            "\t\t\t\"user\": \"carol\",\n"
            "\t\t\t\"public_key\": \"K3\",\n"
            "\t\t\t\"allowed_ips\": [\"100.80.0.4/32\"]\n"
            "\t\t}\n"
            "\t]}\n");
}

TEST(InsertPeer, EmptyAndSameLineArrays) {
  EXPECT_EQ(
      insert("{\n  \"peers\": [],\n  \"version\": 1\n}\n",
             {"carol", "", {}, "K3", {"100.80.0.4/32"}}),
      "{\n  \"peers\": [\n"
      "    {\"user\": \"carol\", \"public_key\": \"K3\", \"allowed_ips\": [\"100.80.0.4/32\"]}\n"
      "  ],\n  \"version\": 1\n}\n");
  EXPECT_EQ(insert("{\"peers\": [{\"user\": \"a\"}]}", {"c", "", {}, "K", {"1.2.3.4/32"}}),
            "{\"peers\": [{\"user\": \"a\"},\n"
            "  {\"user\": \"c\", \"public_key\": \"K\", \"allowed_ips\": [\"1.2.3.4/32\"]}\n"
            "]}");
}

TEST(InsertPeer, IgnoresLookalikesInCommentsStringsAndNestedObjects) {
  std::string text =
      "// \"peers\": [ the old list ]\n"
      "{\n"
      "  \"groups\": {\"peers\": [\"user:x\"]},\n"
      "  /* \"peers\": [] */\n"
      "  \"rules\": [{\"name\": \"peers: ] [\", \"from\": [\"*\"]}],\n"
      "  \"pe\\u0065rs\": [\n"
      "    {\"user\": \"a]\"}\n"
      "  ]\n"
      "}\n";
  std::string out = insert(text, {"c", "", {}, "K", {"1.2.3.4/32"}});
  EXPECT_EQ(out,
            "// \"peers\": [ the old list ]\n"
            "{\n"
            "  \"groups\": {\"peers\": [\"user:x\"]},\n"
            "  /* \"peers\": [] */\n"
            "  \"rules\": [{\"name\": \"peers: ] [\", \"from\": [\"*\"]}],\n"
            "  \"pe\\u0065rs\": [\n"
            "    {\"user\": \"a]\"},\n"
            "    {\"user\": \"c\", \"public_key\": \"K\", \"allowed_ips\": [\"1.2.3.4/32\"]}\n"
            "  ]\n"
            "}\n");
}

TEST(InsertPeer, ExplainsWhatItCannotEdit) {
  std::string error;
  EXPECT_FALSE(admin::insert_peer("{\"version\": 1}", kCarol, &error));
  EXPECT_EQ(error, "no \"peers\" in the policy");
  EXPECT_FALSE(admin::insert_peer("{\"peers\": {}}", kCarol, &error));
  EXPECT_EQ(error, "line 1: \"peers\" is not an array");
  EXPECT_FALSE(admin::insert_peer("{\n\"peers\": [] /* open", kCarol, &error));
  EXPECT_EQ(error, "line 2: unterminated comment");
  EXPECT_FALSE(admin::insert_peer("{\n\"peers\": [\"a\n\"]}", kCarol, &error));
  EXPECT_EQ(error, "line 2: unterminated string");
  EXPECT_FALSE(admin::insert_peer("{\"peers\": [1 2]}", kCarol, &error));
  EXPECT_EQ(error, "line 1: expected ',' or ']'");
  EXPECT_FALSE(admin::insert_peer("[]", kCarol, &error));
}

TEST(SetVersion, ReplacesOnlyTheRootVersion) {
  std::string error;
  auto out = admin::set_version(
      "{\n  // \"version\": 99\n  \"x\": {\"version\": 5},\n  \"version\": 12 // here\n}", 13,
      &error);
  ASSERT_TRUE(out) << error;
  EXPECT_EQ(*out,
            "{\n  // \"version\": 99\n  \"x\": {\"version\": 5},\n  \"version\": 13 // here\n}");
  EXPECT_FALSE(admin::set_version("{\"version\": \"12\"}", 13, &error));
}

TEST(Redact, PresharedKeysWhereverTheyAppear) {
  std::string secret = test_key(9);
  std::string text = "{\"peers\": [{\"preshared_key\": \"" + secret +
                     "\"}, {\"preshared\\u005fkey\": \"\\u0041" + secret.substr(1) +
                     "\"}]}  // old psk " + secret + "\n";
  std::vector<std::string> secrets = {secret};
  EXPECT_EQ(admin::redact_preshared_keys(text, secrets),
            "{\"peers\": [{\"preshared_key\": \"[redacted]\"}, {\"preshared\\u005fkey\": "
            "\"[redacted]\"}]}  // old psk [redacted]\n");
}

TEST(NextFreeAddress, LowestFreeHostInThePeersSubnet) {
  std::string error;
  auto doc = policy::parse_document(demo_policy(1), "p.json", &error);
  ASSERT_TRUE(doc) << error;
  EXPECT_EQ(ctl::next_free_address(*doc, &error), "100.80.0.4/32");

  // A hole is reused; the gateway (.1) and network address (.0) never are.
  std::string text = demo_policy(1);
  text.replace(text.find("100.80.0.2/32"), 13, "100.80.0.5/32");
  doc = policy::parse_document(text, "p.json", &error);
  ASSERT_TRUE(doc) << error;
  EXPECT_EQ(ctl::next_free_address(*doc, &error), "100.80.0.2/32");

  // Peers spread over two /24s: the subnet is their /23.
  text = demo_policy(1);
  text.replace(text.find("100.80.0.2/32"), 13, "100.80.1.254/32");
  text.replace(text.find("100.80.0.3/32"), 13, "100.80.0.0/24");
  doc = policy::parse_document(text, "p.json", &error);
  ASSERT_TRUE(doc) << error;
  EXPECT_EQ(ctl::next_free_address(*doc, &error), "100.80.1.1/32");
}

TEST(NextFreeAddress, FullSubnetOrNoAddressesAsksForOne) {
  std::string text = demo_policy(1);
  text.replace(text.find("100.80.0.3/32"), 13, "100.80.0.0/25");
  text.replace(text.find("100.80.0.2/32"), 13, "100.80.0.128/25");
  std::string error;
  auto doc = policy::parse_document(text, "p.json", &error);
  ASSERT_TRUE(doc) << error;
  EXPECT_FALSE(ctl::next_free_address(*doc, &error));
  EXPECT_NE(error.find("pass --address"), std::string::npos) << error;
}

TEST(AddPeer, InsertsBumpsTheVersionAndKeepsComments) {
  policy::Key key;
  key.fill(5);
  std::string original = demo_policy(3);
  std::string error;
  auto added =
      ctl::add_peer(original, "p.json", {"carol", "ci-1", {"ci", "gpu"}, {}}, key, 7, &error);
  ASSERT_TRUE(added) << error;
  EXPECT_EQ(added->address, "100.80.0.4/32");
  EXPECT_EQ(added->version, 8u);
  for (const char* comment : {"// Airlock test policy\n", "/* the sandboxes */",
                              "// alice's laptop\n", "// bob's runner\n"}) {
    EXPECT_NE(added->text.find(comment), std::string::npos) << comment;
  }
  auto doc = policy::parse_document(added->text, "p.json", &error);
  ASSERT_TRUE(doc) << error;
  EXPECT_EQ(doc->version, 8u);
  ASSERT_EQ(doc->peers.size(), 3u);
  auto carol = doc->identity_of_key(key);
  ASSERT_TRUE(carol);
  EXPECT_EQ(carol->user, "carol");
  EXPECT_EQ(carol->device, "ci-1");
  EXPECT_EQ(carol->tags, (std::vector<std::string>{"ci", "gpu"}));
  // Everything before the new entry is byte for byte what it was, apart from the version.
  std::string expected_prefix = demo_policy(8);
  expected_prefix = expected_prefix.substr(0, expected_prefix.find("  ],\n  \"rules\""));
  expected_prefix.insert(expected_prefix.find("}  // bob's runner") + 1, ",");
  EXPECT_EQ(added->text.substr(0, expected_prefix.size()), expected_prefix);

  auto without_push = ctl::add_peer(original, "p.json", {"carol", "", {}, {}}, key, 0, &error);
  ASSERT_TRUE(without_push) << error;
  EXPECT_EQ(without_push->version, 4u);
}

TEST(AddPeer, ChecksTheAddressAndTheResult) {
  policy::Key key;
  key.fill(5);
  std::string error;
  EXPECT_FALSE(
      ctl::add_peer(demo_policy(1), "p.json", {"carol", "", {}, "100.80.0.3"}, key, 0, &error));
  EXPECT_NE(error.find("overlaps 100.80.0.3/32 of user bob"), std::string::npos) << error;
  EXPECT_FALSE(
      ctl::add_peer(demo_policy(1), "p.json", {"carol", "", {}, "100.80.0.300"}, key, 0, &error));
  EXPECT_NE(error.find("--address"), std::string::npos) << error;
  auto chosen =
      ctl::add_peer(demo_policy(1), "p.json", {"carol", "", {}, "100.80.9.9"}, key, 0, &error);
  ASSERT_TRUE(chosen) << error;
  EXPECT_EQ(chosen->address, "100.80.9.9/32");

  // The policy's own tests run on the result: a test about every peer now fails for carol.
  std::string all_allowed =
      ",\n    {\"from\": \"*\", \"to\": \"100.80.0.1\", \"proto\": \"tcp\", \"port\": 80, "
      "\"expect\": \"allow\"}";
  std::string text = demo_policy(1, all_allowed);
  const std::string everyone = "\"from\": [\"*\"]";
  text.replace(text.find(everyone), everyone.size(), "\"from\": [\"user:alice\", \"user:bob\"]");
  ASSERT_TRUE(policy::parse_document(text, "p.json", &error)) << error;
  EXPECT_FALSE(ctl::add_peer(text, "p.json", {"carol", "", {}, {}}, key, 0, &error));
  EXPECT_NE(error.find("does not check: p.json:25:"), std::string::npos) << error;

  // A broken file is reported as it is, before any edit.
  EXPECT_FALSE(
      ctl::add_peer(demo_policy(1, kFailingTest), "p.json", {"carol", "", {}, {}}, key, 0, &error));
  EXPECT_EQ(error.rfind("p.json:20:", 0), 0u) << error;
}

TEST(Keys, ClampedCurve25519Pair) {
  ctl::KeyPair a, b;
  ctl::generate_key_pair(&a);
  ctl::generate_key_pair(&b);
  EXPECT_NE(a.private_key, b.private_key);
  EXPECT_EQ(a.private_key[0] & 7, 0);
  EXPECT_EQ(a.private_key[31] & 0xc0, 0x40);
  policy::Key expected;
  ASSERT_EQ(crypto_scalarmult_base(expected.data(), a.private_key.data()), 0);
  EXPECT_EQ(a.public_key, expected);
}

TEST(WgQuick, ConfigRoutesOnlyTheGateway) {
  ctl::KeyPair keys;
  keys.private_key.fill(0x40);
  std::string config = ctl::wg_quick_config("sb1", keys, "100.80.0.4/32",
                                            {test_key(7), "198.51.100.1:51820", {"100.80.0.1/32"}});
  EXPECT_EQ(config,
            "# Airlock sandbox sb1\n"
            "[Interface]\n"
            "PrivateKey = " +
                policy::encode_key_base64(keys.private_key) +
                "\n"
                "Address = 100.80.0.4/32\n"
                "\n"
                "[Peer]\n"
                "PublicKey = " +
                test_key(7) +
                "\n"
                "Endpoint = 198.51.100.1:51820\n"
                "AllowedIPs = 100.80.0.1/32\n"
                "PersistentKeepalive = 25\n");
}

TEST(ToolSummary, ShellToolsShowTheCommandItself) {
  using ctl::tool_summary;
  // Claude Code Bash, Gemini CLI run_shell_command.
  EXPECT_EQ(tool_summary("Bash", R"({"command": "git status --short", "description": "Status"})"),
            "git status --short");
  EXPECT_EQ(tool_summary("run_shell_command", R"({"command":"ls -la src"})"), "ls -la src");
  // Codex shell: the script of bash -lc; other argv joined, quoted where needed.
  EXPECT_EQ(tool_summary("shell", R"({"command":["bash","-lc","grep -rn TODO src | head"],
                                      "workdir":"/repo","timeout_ms":10000})"),
            "grep -rn TODO src | head");
  EXPECT_EQ(tool_summary("shell", R"({"command":["rg","-n","two words","src"]})"),
            "rg -n 'two words' src");
  EXPECT_EQ(tool_summary("shell_command", R"({"command":"cargo test","workdir":"/r"})"),
            "cargo test");
  EXPECT_EQ(tool_summary("exec_command", R"({"cmd":"npm run build","yield_time_ms":1000})"),
            "npm run build");
  EXPECT_EQ(tool_summary("local_shell", R"({"command":["ls","-la"],"env":{},"type":"exec"})"),
            "ls -la");
  EXPECT_EQ(tool_summary("shell", R"({"commands":["cd /repo","make"]})"), "cd /repo; make");
  // A multi-line script stays one line.
  EXPECT_EQ(tool_summary("Bash", R"({"command":"cd /repo\nmake\ttest"})"), "cd /repo\\nmake test");
}

TEST(ToolSummary, OtherToolsShowTheirArgumentsCut) {
  using ctl::tool_summary;
  EXPECT_EQ(tool_summary("Read", R"({"file_path":"/repo/a.cc"})"), R"({"file_path":"/repo/a.cc"})");
  EXPECT_EQ(tool_summary("apply_patch", "*** Begin Patch\n*** Add File: a\n", 20),
            "*** Begin Patch\\n...");
  EXPECT_EQ(tool_summary("Bash", "{\"command\": \"ec", 100), "{\"command\": \"ec");
  // Never cut inside a UTF-8 character.
  EXPECT_EQ(tool_summary("Write", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 6), "\xc3\xa9...");
  EXPECT_EQ(tool_summary("Bash", R"({"command":"x"})", 100), "x");
}

// ---- The binary ----

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class AirlockctlTest : public ::testing::Test {
 protected:
  CliRun run(const std::string& args) {
    const char* binary = std::getenv("AIRLOCKCTL");
    EXPECT_NE(binary, nullptr) << "run through meson test";
    std::string err_path = dir_.file("stderr");
    std::string command = "AIRLOCK_POLICY= AIRLOCK_ADMIN=" + admin_url_ + " " +
                          std::string(binary ? binary : "false") + " " + args + " 2>" + err_path;
    CliRun result;
    FILE* pipe = ::popen(command.c_str(), "r");
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof(buf), pipe)) > 0;) result.out.append(buf, n);
    int status = ::pclose(pipe);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.err = read_all(err_path);
    return result;
  }

  void start_control_plane(budget::Ledger* ledger = nullptr, events::Outbox* outbox = nullptr) {
    std::string error;
    store_ = open_sqlite_store(dir_.file("requests.db"), &error);
    ASSERT_NE(store_, nullptr) << error;
    dp_ = std::make_unique<FakeDataPlane>(dir_.file("dp.sock"));
    policies_ = std::make_unique<admin::PolicyManager>(
        admin::PolicyManagerOptions{dir_.file("active.json"), {{"dp-test", dir_.file("dp.sock")}}});
    admin::AdminOptions options;
    options.listen = {boost::asio::ip::make_address("127.0.0.1"), 0};
    options.hub = {test_key(7), "198.51.100.1:51820", {}};
    options.ledger = ledger;
    options.outbox = outbox;
    api_ = admin::AdminApi::start(io_.io(), options, *store_, *policies_, &error);
    ASSERT_NE(api_, nullptr) << error;
    admin_url_ = "http://127.0.0.1:" + std::to_string(api_->port());
  }

  void TearDown() override {
    if (api_) api_->stop();
    io_.join();
  }

  TempDir dir_;
  std::string admin_url_ = "http://127.0.0.1:1";  // nothing listens there
  std::unique_ptr<Store> store_;
  std::unique_ptr<FakeDataPlane> dp_;
  std::unique_ptr<admin::PolicyManager> policies_;
  http::testing::IoThreads io_;
  std::unique_ptr<admin::AdminApi> api_;
};

TEST_F(AirlockctlTest, PolicyCheckExitCodes) {
  write_all(dir_.file("good.json"), demo_policy(4));
  CliRun good = run("policy check " + dir_.file("good.json"));
  EXPECT_EQ(good.exit_code, 0) << good.err;
  EXPECT_EQ(good.out.rfind("OK " + dir_.file("good.json") + ": version 4, 2 peers, 1 rules", 0), 0u)
      << good.out;

  write_all(dir_.file("failing.json"), demo_policy(4, kFailingTest));
  CliRun failing = run("policy check " + dir_.file("failing.json"));
  EXPECT_EQ(failing.exit_code, 1);
  EXPECT_EQ(failing.err.rfind("airlockctl: " + dir_.file("failing.json") + ":20:", 0), 0u)
      << failing.err;
  EXPECT_TRUE(failing.out.empty());

  EXPECT_EQ(run("policy check " + dir_.file("missing.json")).exit_code, 1);
  EXPECT_EQ(run("policy check").exit_code, 2);
  EXPECT_EQ(run("policy check a b").exit_code, 2);
  EXPECT_EQ(run("policy check --frobnicate x").exit_code, 2);
  EXPECT_EQ(run("").exit_code, 2);
}

TEST_F(AirlockctlTest, UnreachableAdminApiIsExit2) {
  CliRun r = run("requests");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("airlockctl: admin API at http://127.0.0.1:1: ", 0), 0u) << r.err;
  EXPECT_EQ(run("--admin https://127.0.0.1:9190 stats").exit_code, 2);
}

TEST_F(AirlockctlTest, PeerAddPushesSavesAndPrintsTheSandboxConfig) {
  start_control_plane();
  std::string path = dir_.file("policy.json");
  write_all(path, demo_policy(1));
  ASSERT_EQ(run("policy push " + path).exit_code, 0);
  EXPECT_EQ(dp_->running, 1u);

  CliRun added = run("peer add sb1 --user carol --tag ci --policy " + path);
  ASSERT_EQ(added.exit_code, 0) << added.err;
  // The sandbox config: its own new key, the next address, the hub, the gateway route.
  EXPECT_NE(added.out.find("[Interface]\nPrivateKey = "), std::string::npos) << added.out;
  EXPECT_NE(added.out.find("Address = 100.80.0.4/32\n"), std::string::npos);
  EXPECT_NE(added.out.find("PublicKey = " + test_key(7) + "\n"), std::string::npos);
  EXPECT_NE(added.out.find("Endpoint = 198.51.100.1:51820\n"), std::string::npos);
  EXPECT_NE(added.out.find("AllowedIPs = 100.80.0.1/32\n"), std::string::npos);
  EXPECT_NE(added.out.find("PersistentKeepalive = 25\n"), std::string::npos);

  // Active everywhere, saved with its comments, and the private key is nowhere but stdout.
  EXPECT_EQ(dp_->running, 2u);
  EXPECT_EQ(policies_->active()->version, 2u);
  std::string saved = read_all(path);
  EXPECT_NE(saved.find("// alice's laptop"), std::string::npos);
  EXPECT_EQ(saved, policies_->active()->text);
  size_t at = added.out.find("PrivateKey = ") + 13;
  std::string private_key = added.out.substr(at, added.out.find('\n', at) - at);
  auto private_bytes = policy::decode_key_base64(private_key);
  ASSERT_TRUE(private_bytes);
  policy::Key public_key;
  ASSERT_EQ(crypto_scalarmult_base(public_key.data(), private_bytes->data()), 0);
  auto carol = policies_->active()->document->identity_of_key(public_key);
  ASSERT_TRUE(carol);
  EXPECT_EQ(carol->user, "carol");
  EXPECT_EQ(carol->device, "sb1");
  EXPECT_EQ(saved.find(private_key), std::string::npos);
  EXPECT_EQ(read_all(dir_.file("active.json")).find(private_key), std::string::npos);

  CliRun list = run("peer list");
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("carol"), std::string::npos);
  CliRun listed_json = run("--json peer list");
  auto parsed = nlohmann::json::parse(listed_json.out);
  EXPECT_EQ(parsed["peers"].size(), 3u);

  CliRun shown = run("policy show");
  EXPECT_EQ(shown.exit_code, 0);
  EXPECT_EQ(shown.out.find(test_key(9)), std::string::npos);
  EXPECT_NE(shown.out.find("[redacted]"), std::string::npos);
}

TEST_F(AirlockctlTest, PeerAddThatTheDataPlaneRefusesChangesNothing) {
  start_control_plane();
  std::string path = dir_.file("policy.json");
  write_all(path, demo_policy(1));
  ASSERT_EQ(run("policy push " + path).exit_code, 0);
  dp_->refuse = true;
  CliRun added = run("peer add sb1 --user carol --policy " + path);
  EXPECT_EQ(added.exit_code, 1);
  EXPECT_NE(added.err.find("dp-test"), std::string::npos) << added.err;
  EXPECT_TRUE(added.out.empty());  // no key handed out for a peer that does not exist
  EXPECT_EQ(read_all(path), demo_policy(1));
  EXPECT_EQ(policies_->active()->version, 1u);
}

TEST_F(AirlockctlTest, PolicyPushRejectionAndUsageErrors) {
  start_control_plane();
  std::string path = dir_.file("policy.json");
  write_all(path, demo_policy(2, kFailingTest));
  CliRun rejected = run("policy push " + path);
  EXPECT_EQ(rejected.exit_code, 1);
  EXPECT_EQ(rejected.err.rfind("airlockctl: " + path + ":20:", 0), 0u) << rejected.err;

  EXPECT_EQ(run("peer add sb1 --policy " + path).exit_code, 2);           // no --user
  EXPECT_EQ(run("peer add --user carol --policy " + path).exit_code, 2);  // no NAME
  EXPECT_EQ(run("usage --by provider").exit_code, 2);
  EXPECT_EQ(run("requests --limit").exit_code, 2);
  CliRun bad_limit = run("requests --limit 0");
  EXPECT_EQ(bad_limit.exit_code, 1);
  EXPECT_NE(bad_limit.err.find("limit"), std::string::npos);
}

TEST_F(AirlockctlTest, SessionsAndToolsTables) {
  start_control_plane();
  RequestRecord turn1;
  turn1.id = "req_0000000000000000000000b1";
  turn1.time_ms = 1'740'787'200'000;
  turn1.user = "alice";
  turn1.device = "laptop";
  turn1.model = "claude-sonnet-4-6";
  turn1.session_id = "cc_6f1c2a9e";
  turn1.input_tokens = 900;
  turn1.cost = 1'000'000'000'000;
  turn1.tool_calls = {
      {"toolu_1", "Bash", R"({"command":"rm -rf build && make","description":"x"})"},
      {"toolu_2", "Read", R"({"file_path":"/repo/main.cc"})"}};
  RequestRecord turn2 = turn1;
  turn2.id = "req_0000000000000000000000b2";
  turn2.time_ms += 4000;
  turn2.tool_calls.clear();
  turn2.tool_results = {{"toolu_1", "Bash", "ok", false}, {"toolu_2", "Read", "ENOENT", true}};
  RequestRecord codex;
  codex.id = "req_0000000000000000000000c1";
  codex.time_ms = 1'740'787'201'000;
  codex.user = "bob";
  codex.session_id = "cx_0199";
  codex.tool_calls = {{"call_1", "shell", R"({"command":["bash","-lc","pytest -x"]})"}};
  for (const RequestRecord& r : {turn1, turn2, codex}) store_->append(r);

  CliRun sessions = run("sessions");
  ASSERT_EQ(sessions.exit_code, 0) << sessions.err;
  EXPECT_EQ(sessions.out.rfind("SESSION ", 0), 0u) << sessions.out;
  EXPECT_NE(sessions.out.find("cc_6f1c2a9e  alice"), std::string::npos) << sessions.out;
  EXPECT_NE(sessions.out.find("2.00"), std::string::npos) << sessions.out;
  EXPECT_EQ(run("sessions --user bob").out.find("alice"), std::string::npos);

  CliRun tools = run("tools --user alice");
  ASSERT_EQ(tools.exit_code, 0) << tools.err;
  EXPECT_EQ(tools.out.rfind("TIME ", 0), 0u) << tools.out;
  const size_t bash = tools.out.find("Bash  ok      rm -rf build && make");
  const size_t read = tools.out.find(R"(Read  error   {"file_path":"/repo/main.cc"})");
  EXPECT_NE(bash, std::string::npos) << tools.out;
  EXPECT_NE(read, std::string::npos) << tools.out;
  EXPECT_LT(bash, read);
  EXPECT_NE(tools.out.find("2025-03-01T00:00:00.000Z  alice  cc_6f1c2a9e"), std::string::npos)
      << tools.out;
  EXPECT_EQ(tools.out.find("pytest"), std::string::npos);

  CliRun codex_tools = run("tools --session cx_0199 --name shell");
  EXPECT_NE(codex_tools.out.find("shell  -       pytest -x"), std::string::npos) << codex_tools.out;
  CliRun paged = run("tools --user alice --limit 1");
  EXPECT_NE(paged.err.find("more: --before req_0000000000000000000000b1:1"), std::string::npos)
      << paged.err;
  CliRun as_json = run("--json tools --name Read");
  EXPECT_EQ(nlohmann::json::parse(as_json.out)["tool_calls"][0]["result"]["content"], "ENOENT");
  EXPECT_EQ(run("tools --model x").exit_code, 2);
  EXPECT_EQ(run("sessions --session x").exit_code, 2);
}

TEST_F(AirlockctlTest, RequestsAndUsageTables) {
  start_control_plane();
  RequestRecord r;
  r.id = "req_0000000000000000000000aa";
  r.time_ms = 1'740'787'200'000;
  r.user = "alice";
  r.model = "gpt-5";
  r.status = 200;
  r.input_tokens = 1200;
  r.output_tokens = 34;
  r.cost = 2'500'000'000'000;
  store_->append(r);

  CliRun requests = run("requests --user alice");
  ASSERT_EQ(requests.exit_code, 0) << requests.err;
  EXPECT_EQ(requests.out.rfind("ID ", 0), 0u) << requests.out;
  EXPECT_NE(requests.out.find("req_0000000000000000000000aa  2025-03-01T00:00:00.000Z  alice"),
            std::string::npos)
      << requests.out;
  EXPECT_TRUE(run("requests --user bob").out.find("alice") == std::string::npos);

  CliRun usage = run("usage --by model");
  ASSERT_EQ(usage.exit_code, 0) << usage.err;
  EXPECT_NE(usage.out.find("gpt-5"), std::string::npos);
  EXPECT_NE(usage.out.find("2.50"), std::string::npos);
  CliRun usage_json = run("--json usage");
  EXPECT_EQ(nlohmann::json::parse(usage_json.out)["usage"][0]["cost_picodollars"],
            2'500'000'000'000);
}

TEST_F(AirlockctlTest, BudgetListAddAndReset) {
  std::string error;
  auto ledger = budget::Ledger::open("", &error);
  ASSERT_NE(ledger, nullptr) << error;
  policy::BudgetSpec team;
  team.name = "team";
  team.usd_picodollars = 10 * kPicodollarsPerDollar;
  team.tokens = 100000;
  ledger->set_budgets({team});
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const std::vector<budget::Charge> alice = {{"team", "team|user:alice"}};
  auto reserved = ledger->reserve(alice, {kPicodollarsPerDollar, 5000}, now);
  ASSERT_TRUE(std::holds_alternative<budget::Reservation>(reserved));
  std::get<budget::Reservation>(reserved).settle({kPicodollarsPerDollar / 4, 1200}, now);
  start_control_plane(ledger.get());

  CliRun list = run("budget list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out.rfind("BUDGET  KEY         WINDOW-END  ", 0), 0u) << list.out;
  EXPECT_NE(list.out.find("team    user:alice  "), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("T00:00:00.000Z  $0.25, 1200 tok  $10.00, 100000 tok  $0.00, 0 tok  "
                          "$9.75, 98800 tok\n"),
            std::string::npos)
      << list.out;
  EXPECT_EQ(run("budget list --key user:bob").out.find("alice"), std::string::npos);

  CliRun added = run("budget add team user:alice --usd 5.5 --tokens 200");
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_NE(added.out.find("-$5.25, 1000 tok  $10.00, 100000 tok  $0.00, 0 tok  $15.25, 99000 tok"),
            std::string::npos)
      << added.out;
  CliRun as_json = run("--json budget list --budget team");
  ASSERT_EQ(as_json.exit_code, 0) << as_json.err;
  auto parsed = nlohmann::json::parse(as_json.out);
  EXPECT_EQ(parsed["budgets"][0]["spent_usd"], "-5.25");
  EXPECT_EQ(parsed["budgets"][0]["remaining_tokens"], 99000);

  CliRun reset = run("--json budget reset team user:alice");
  ASSERT_EQ(reset.exit_code, 0) << reset.err;
  EXPECT_EQ(nlohmann::json::parse(reset.out)["spent_usd"], "0.00");

  CliRun unknown = run("budget add nothing user:alice --usd 1");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no budget \"nothing\""), std::string::npos) << unknown.err;
  EXPECT_EQ(run("budget add team user:alice --usd 1.2.3").exit_code, 1);
  EXPECT_EQ(run("budget add team alice --usd 1").exit_code, 1);
  EXPECT_EQ(run("budget add team user:alice").exit_code, 2);  // no amount
  EXPECT_EQ(run("budget add team user:alice --tokens lots").exit_code, 2);
  EXPECT_EQ(run("budget add team --usd 1").exit_code, 2);  // no KEY
  EXPECT_EQ(run("budget reset team user:alice --usd 1").exit_code, 2);
  EXPECT_EQ(run("budget list --user alice").exit_code, 2);
  EXPECT_EQ(run("budget").exit_code, 2);
  EXPECT_EQ(ledger->balances("team", "team|user:alice", now)[0].spent_usd, 0);
}

TEST_F(AirlockctlTest, WebhooksTableAndStats) {
  std::string error;
  uint16_t closed = 0;
  {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor probe(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    closed = probe.local_endpoint().port();
  }
  const std::string url = "http://127.0.0.1:" + std::to_string(closed) + "/hook";
  events::OutboxOptions options;
  options.first_retry = std::chrono::milliseconds(20);
  options.max_retry = std::chrono::milliseconds(50);
  options.stop_grace = std::chrono::milliseconds(100);
  auto outbox = events::Outbox::open(dir_.file("outbox.db"), &error, options);
  ASSERT_NE(outbox, nullptr) << error;
  std::vector<events::Subscription> hooks;
  hooks.push_back({url, Secret("whsec-test-secret"), {}});
  ASSERT_TRUE(outbox->set_webhooks(std::move(hooks), &error)) << error;
  const events::Event event = events::make_event(events::kPolicyPushed, R"({"version":2})");
  outbox->publish(event);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (outbox->deliveries({}, &error).size() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  start_control_plane(nullptr, outbox.get());

  CliRun hooks_run = run("webhooks --event " + event.id + " --outcome retry --limit 2");
  ASSERT_EQ(hooks_run.exit_code, 0) << hooks_run.err;
  EXPECT_EQ(hooks_run.out.rfind("TIME ", 0), 0u) << hooks_run.out;
  EXPECT_NE(hooks_run.out.find(event.id + "  policy.pushed  " + url), std::string::npos)
      << hooks_run.out;
  EXPECT_NE(hooks_run.out.find("-       retry"), std::string::npos) << hooks_run.out;
  EXPECT_NE(hooks_run.out.find("deliveries: 1 pending, 0 delivered, 0 failed; 0 events dropped\n"),
            std::string::npos)
      << hooks_run.out;
  EXPECT_NE(hooks_run.err.find("more: --before "), std::string::npos) << hooks_run.err;
  CliRun as_json = run("--json webhooks --limit 1");
  ASSERT_EQ(as_json.exit_code, 0) << as_json.err;
  EXPECT_EQ(nlohmann::json::parse(as_json.out)["deliveries"][0]["event_id"], event.id);
  EXPECT_EQ(run("webhooks --outcome lost").exit_code, 1);
  EXPECT_EQ(run("webhooks --user alice").exit_code, 2);
  EXPECT_EQ(run("webhooks extra").exit_code, 2);
  if (api_) api_->stop();
  io_.join();  // the API goes before the outbox it reads
}

TEST_F(AirlockctlTest, BudgetsAndWebhooksNotEnabledAreRejected) {
  start_control_plane();
  CliRun budgets = run("budget list");
  EXPECT_EQ(budgets.exit_code, 1);
  EXPECT_EQ(budgets.err, "airlockctl: budgets are not enabled\n");
  EXPECT_EQ(run("webhooks").exit_code, 1);
}

}  // namespace
}  // namespace airlock::control
