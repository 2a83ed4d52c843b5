// Policy swaps on a running hub (Hub::apply_policy), observed from the outside: which peers can
// still talk, whether sessions survive, and that rejected policies change nothing.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "tests/hub_harness.h"

namespace airlock::test {
namespace {

using dp::DropReason;
using policy::Action;

const Underlay kA{mac(0x0a), ip("192.0.2.2"), 40001};
const Underlay kB{mac(0x0b), ip("192.0.2.3"), 40002};
const uint32_t kInnerA = ip("10.10.0.2");
const uint32_t kInnerB = ip("10.10.0.3");

class PolicySwapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    rig_ = HubRig::create(RigOptions{}, &error);
    ASSERT_TRUE(rig_) << error;
    a_.emplace(rig_->make_peer(kA, kInnerA));
    b_.emplace(rig_->make_peer(kB, kInnerB));
    ASSERT_TRUE(apply(policy(1)));
    ASSERT_TRUE(handshake_as_initiator(*rig_, *a_));
    ASSERT_TRUE(handshake_as_initiator(*rig_, *b_));
  }

  HubRig& rig() { return *rig_; }
  SoftPeer& a() { return *a_; }
  SoftPeer& b() { return *b_; }

  // `peers` selects alice (A) and bob (B); `tag` varies the rule names between versions.
  policy::PolicyBuilder policy(uint64_t version, bool with_a = true, bool with_b = true,
                               const std::string& tag = "") {
    policy::PolicyBuilder p;
    p.version(version);
    if (with_a) p.add_peer(peer_spec(a(), "alice", {"10.10.0.2/32"}));
    if (with_b) p.add_peer(peer_spec(b(), "bob", {"10.10.0.3/32"}));
    p.add_rule(rule("a-to-b" + tag, "user:alice", "10.10.0.3/32", Action::Forward));
    p.add_rule(rule("b-to-a" + tag, "user:bob", "10.10.0.2/32", Action::Forward));
    return p;
  }

  ::testing::AssertionResult apply(const policy::PolicyBuilder& p) {
    std::string error;
    if (rig().apply(p, &error)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << error;
  }

  // Sends one echo from `from` and returns how many decrypted copies `to` received; fails the
  // test if the hub transmitted anything else.
  size_t delivered(SoftPeer& from, SoftPeer& to, uint16_t seq = 1) {
    const Bytes echo = icmp_echo(from.inner_ip(), to.inner_ip(), seq, 16);
    rig().inject(from.data(echo));
    return count_delivered(rig().pump(), to, echo);
  }

  static size_t count_delivered(const std::vector<Frame>& frames, SoftPeer& to,
                                const Bytes& expected = {}) {
    size_t n = 0;
    for (const Frame& f : frames) {
      EXPECT_TRUE(f.to(to.underlay()) && f.is_data())
          << "unexpected frame, type " << int(f.wg_type());
      auto o = to.open(f);
      EXPECT_TRUE(o) << "the peer cannot open a frame the hub sent it";
      if (!o) continue;
      if (!expected.empty()) {
        EXPECT_TRUE(std::equal(expected.begin(), expected.end(), o->plain.begin()));
      }
      ++n;
    }
    return n;
  }

  std::unique_ptr<HubRig> rig_;
  std::optional<SoftPeer> a_, b_;
};

TEST_F(PolicySwapTest, SessionsSurviveASwapThatKeepsThePeers) {
  ASSERT_EQ(delivered(a(), b()), 1u);
  const uint32_t b_index = b().current_local_index();
  ASSERT_TRUE(apply(policy(2, true, true, "-v2")));
  EXPECT_EQ(rig().hub().policy_version(), 2u);

  EXPECT_EQ(delivered(a(), b(), 2), 1u) << "A's session did not survive the swap";
  EXPECT_EQ(delivered(b(), a(), 3), 1u) << "B's session did not survive the swap";
  EXPECT_EQ(b().current_local_index(), b_index) << "a new handshake happened";
  auto s = rig().snapshot();
  EXPECT_EQ(rule_hits(s, "a-to-b-v2"), 1u);
  EXPECT_EQ(rule_hits(s, "b-to-a-v2"), 1u);
}

TEST_F(PolicySwapTest, RemovedPeerCanNoLongerSendOrBeReached) {
  ASSERT_TRUE(apply(policy(2, false, true)));
  EXPECT_FALSE(rig().hub().slot_of(a().public_key()));

  EXPECT_EQ(delivered(a(), b()), 0u);
  EXPECT_EQ(rig().drops(DropReason::kNoSession), 1u);
  EXPECT_EQ(delivered(b(), a()), 0u);
  EXPECT_EQ(rig().drops(DropReason::kNoRoute), 1u);

  rig().inject(a().initiation());
  EXPECT_TRUE(rig().pump().empty()) << "answered a peer that is no longer in the policy";
}

TEST_F(PolicySwapTest, ReaddedPeerNeedsAFreshHandshake) {
  ASSERT_TRUE(apply(policy(2, false, true)));
  rig().pump();  // the removal is reclaimed
  ASSERT_TRUE(apply(policy(3)));
  EXPECT_EQ(delivered(a(), b()), 0u) << "keys of a removed peer came back";
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  EXPECT_EQ(delivered(a(), b(), 2), 1u);
  EXPECT_EQ(delivered(b(), a(), 3), 1u);
}

TEST_F(PolicySwapTest, InvalidPoliciesAreRejectedAndTheRunningOneStays) {
  auto good = policy(2).finish(nullptr);
  ASSERT_TRUE(good);

  std::vector<std::pair<std::string, std::vector<uint8_t>>> bad;
  std::mt19937 rng(7);
  std::vector<uint8_t> noise(good->size());
  for (auto& x : noise) x = static_cast<uint8_t>(rng());
  bad.emplace_back("random bytes", noise);
  bad.emplace_back("truncated", std::vector<uint8_t>(good->begin(), good->begin() + 40));
  bad.emplace_back("empty", std::vector<uint8_t>{});
  std::vector<uint8_t> flipped = *good;
  for (size_t i = 8; i < flipped.size(); i += 5) flipped[i] ^= 0x5a;
  bad.emplace_back("corrupted", flipped);

  policy::PeerSpec wide =
      peer_spec(a(), "alice", {policy::RawPrefix{policy::Family::V4, {10, 10, 0, 2}, 33}});
  auto semantic = policy::PolicyBuilder().version(2).add_peer(wide).finish_unchecked(nullptr);
  ASSERT_TRUE(semantic);
  bad.emplace_back("prefix length 33", *semantic);
  auto duplicate = policy::PolicyBuilder()
                       .version(2)
                       .add_peer(peer_spec(a(), "alice", {"10.10.0.2/32"}))
                       .add_peer(peer_spec(b(), "bob", {"10.10.0.2/32"}))
                       .finish_unchecked(nullptr);
  ASSERT_TRUE(duplicate);
  bad.emplace_back("address owned by two peers", *duplicate);
  policy::PolicyBuilder many_rules = policy(2);
  for (uint32_t i = 0; i < rig().config().max_rules; ++i) {
    many_rules.add_rule(rule("r" + std::to_string(i), "*", "10.20.0.0/16", Action::Drop));
  }
  auto too_many_rules = many_rules.finish(nullptr);
  ASSERT_TRUE(too_many_rules);
  bad.emplace_back("more rules than --max-rules", *too_many_rules);

  for (const auto& [name, bytes] : bad) {
    std::string error;
    EXPECT_FALSE(rig().hub().apply_policy(bytes, &error)) << name;
    EXPECT_FALSE(error.empty()) << name;
    EXPECT_EQ(rig().hub().policy_version(), 1u) << name;
  }
  EXPECT_EQ(delivered(a(), b()), 1u);
  EXPECT_EQ(delivered(b(), a()), 1u);
  EXPECT_EQ(rule_hits(rig().snapshot(), "a-to-b"), 1u) << "rule names of a rejected policy";
}

// A policy with more new peers than free slots is rejected without keeping any of them, so a
// policy that fits exactly is accepted afterwards.
TEST_F(PolicySwapTest, PolicyOverPeerCapacityLeavesNoSlotsBehind) {
  const uint32_t max = rig().config().max_peers;
  std::vector<SoftPeer> extra;
  auto build = [&](uint64_t version, uint32_t n_extra) {
    policy::PolicyBuilder p = policy(version);
    for (uint32_t i = 0; i < n_extra; ++i) {
      p.add_peer(peer_spec(extra[i], "extra" + std::to_string(i),
                           {"10.30.0." + std::to_string(i + 1) + "/32"}));
    }
    return p;
  };
  for (uint32_t i = 0; i < max - 1; ++i) {
    extra.emplace_back(rig().make_peer(
        Underlay{mac(static_cast<uint8_t>(0x20 + i)), ip("192.0.2.100"), uint16_t(41000 + i)},
        ip("10.30.0.1")));
  }
  std::string error;
  EXPECT_FALSE(rig().apply(build(2, max - 1), &error));
  EXPECT_FALSE(rig().hub().slot_of(extra[0].public_key()));
  EXPECT_EQ(rig().hub().policy_version(), 1u);
  EXPECT_EQ(delivered(a(), b()), 1u);

  EXPECT_TRUE(rig().apply(build(3, max - 2), &error)) << error;
  EXPECT_EQ(delivered(a(), b(), 2), 1u);
}

// Between begin_policy and finish_policy (the compile runs on another thread) the hub goes on
// with handshakes and traffic under the running policy; the new one takes over at finish only.
TEST_F(PolicySwapTest, HubKeepsWorkingWhileAPolicyCompiles) {
  auto bytes = policy(2, true, true, "-v2").finish(nullptr);
  ASSERT_TRUE(bytes);
  std::string error;
  std::unique_ptr<dp::PolicyBuild> build = rig().hub().begin_policy(*bytes, &error);
  ASSERT_TRUE(build) << error;
  std::string second;
  EXPECT_FALSE(rig().hub().begin_policy(*bytes, &second));
  EXPECT_NE(second.find("still being compiled"), std::string::npos) << second;

  bool compiled = false;
  std::thread compiler([&] { compiled = build->compile(); });
  // Timestamps are whitened to 2^24 ns: a new initiation must be at least that much later than
  // the one SetUp sent, or the hub drops it as a replay.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(handshake_as_initiator(rig(), a()));
  EXPECT_EQ(delivered(a(), b()), 1u);
  compiler.join();
  ASSERT_TRUE(compiled) << build->error();
  EXPECT_EQ(rig().hub().policy_version(), 1u);
  EXPECT_EQ(rule_hits(rig().snapshot(), "a-to-b"), 1u);

  ASSERT_TRUE(rig().hub().finish_policy(std::move(build), &error)) << error;
  EXPECT_EQ(rig().hub().policy_version(), 2u);
  EXPECT_EQ(delivered(a(), b(), 2), 1u);
  EXPECT_EQ(rule_hits(rig().snapshot(), "a-to-b-v2"), 1u);
}

// A build that does not compile gives back the slots begin_policy took for its new peers, and
// the next policy can begin.
TEST_F(PolicySwapTest, UncompiledBuildIsRejectedAndReleasesItsSlots) {
  SoftPeer c = rig().make_peer(Underlay{mac(0x0c), ip("192.0.2.4"), 40003}, ip("10.10.0.4"));
  policy::PolicyBuilder p = policy(2);
  p.add_peer(peer_spec(c, "carol", {"10.10.0.4/32"}));
  auto bytes = p.finish(nullptr);
  ASSERT_TRUE(bytes);
  std::string error;
  std::unique_ptr<dp::PolicyBuild> build = rig().hub().begin_policy(*bytes, &error);
  ASSERT_TRUE(build) << error;
  EXPECT_FALSE(rig().hub().finish_policy(std::move(build), &error));
  EXPECT_NE(error.find("not compiled"), std::string::npos) << error;
  EXPECT_FALSE(rig().hub().slot_of(c.public_key()));
  EXPECT_EQ(rig().hub().policy_version(), 1u);
  EXPECT_EQ(delivered(a(), b()), 1u);
  EXPECT_TRUE(rig().apply(p, &error)) << error;
  EXPECT_EQ(rig().hub().policy_version(), 2u);
}

TEST_F(PolicySwapTest, LowerVersionIsRejected) {
  ASSERT_TRUE(apply(policy(5)));
  std::string error;
  EXPECT_FALSE(rig().apply(policy(4, false, true), &error));
  EXPECT_NE(error.find("version"), std::string::npos) << error;
  EXPECT_EQ(rig().hub().policy_version(), 5u);
  EXPECT_TRUE(rig().hub().slot_of(a().public_key()));
  EXPECT_EQ(delivered(a(), b()), 1u);
}

// Swaps interleaved with traffic in both directions, including packets that were already
// received (queued on the port) when the swap happened: none is lost.
TEST_F(PolicySwapTest, SwapsUnderTrafficLoseNoPacket) {
  size_t sent_to_b = 0, sent_to_a = 0, at_b = 0, at_a = 0;
  uint64_t version = 2;
  uint16_t seq = 0;
  for (int round = 0; round < 40; ++round) {
    for (int i = 0; i < 6; ++i, ++seq) {
      rig().inject(a().data(icmp_echo(kInnerA, kInnerB, seq, 24)));
      rig().inject(b().data(icmp_echo(kInnerB, kInnerA, seq, 24, 0)));
      sent_to_b++;
      sent_to_a++;
    }
    ASSERT_TRUE(apply(policy(version++, true, true, round % 2 ? "-odd" : "-even")));
    auto out = rig().pump();
    std::vector<Frame> to_a, to_b;
    for (Frame& f : out) (f.to(kA) ? to_a : to_b).push_back(std::move(f));
    at_a += count_delivered(to_a, a());
    at_b += count_delivered(to_b, b());
  }
  EXPECT_EQ(at_b, sent_to_b);
  EXPECT_EQ(at_a, sent_to_a);
  EXPECT_EQ(rig().hub().policy_version(), version - 1);
  auto s = rig().snapshot();
  for (auto why : {DropReason::kNoSession, DropReason::kNoRoute, DropReason::kAclDeny,
                   DropReason::kSrcNotAllowed}) {
    EXPECT_EQ(s.total.drops[static_cast<size_t>(why)], 0u) << dp::drop_reason_name(why);
  }
}

// A peer removed, re-added and removed again before the workers pass a quiescent state ends up
// on the reclamation list twice; its slot must still be handed out only once afterwards.
TEST_F(PolicySwapTest, RemoveReaddRemoveWithinOneGracePeriodKeepsSlotsUnique) {
  ASSERT_TRUE(apply(policy(2, false, true)));
  ASSERT_TRUE(apply(policy(3, true, true)));
  ASSERT_TRUE(apply(policy(4, false, true)));
  rig().pump(2);  // grace period over: everything retired is reclaimed

  SoftPeer c = rig().make_peer({mac(0x0c), ip("192.0.2.12"), 40012}, ip("10.10.0.12"));
  SoftPeer d = rig().make_peer({mac(0x0d), ip("192.0.2.13"), 40013}, ip("10.10.0.13"));
  policy::PolicyBuilder p = policy(5, false, true);
  p.add_peer(peer_spec(c, "carol", {"10.10.0.12/32"}));
  p.add_peer(peer_spec(d, "dave", {"10.10.0.13/32"}));
  ASSERT_TRUE(apply(p));
  auto slot_b = rig().hub().slot_of(b().public_key());
  auto slot_c = rig().hub().slot_of(c.public_key());
  auto slot_d = rig().hub().slot_of(d.public_key());
  ASSERT_TRUE(slot_b && slot_c && slot_d);
  EXPECT_NE(*slot_c, *slot_d) << "two peers share one slot";
  EXPECT_NE(*slot_c, *slot_b);
  EXPECT_NE(*slot_d, *slot_b);
}

}  // namespace
}  // namespace airlock::test
