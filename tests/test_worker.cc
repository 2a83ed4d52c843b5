// The whole packet path, in process and deterministic: a Hub and a Worker on a two-ring port,
// driven by software WireGuard peers (tests/hub_harness.h). Every test checks what a user would:
// bytes delivered to the far peer, what went out on the wire, and the exported counters.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "dataplane/ring.h"
#include "tests/hub_harness.h"

namespace airlock::test {
namespace {

using dp::DropReason;
using dp::HandshakeEvent;
using dp::MessageType;
using dp::StatsSnapshot;
using policy::Action;

const Underlay kA{mac(0x0a), ip("192.0.2.2"), 40001};
const Underlay kB{mac(0x0b), ip("192.0.2.3"), 40002};
const uint32_t kInnerA = ip("10.10.0.2");
const uint32_t kInnerB = ip("10.10.0.3");
const uint32_t kGateway = ip("10.99.0.1");
constexpr rte_ether_addr kBroadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

uint64_t handshakes(const StatsSnapshot& s, HandshakeEvent event) {
  return s.total.handshakes[static_cast<size_t>(event)];
}

size_t padded16(size_t n) {
  return (n + 15) & ~size_t{15};
}

// The plaintext is the inner packet followed by zero padding.
::testing::AssertionResult carries(const Opened& o, const Bytes& inner, size_t padded_len) {
  if (o.plain.size() != padded_len) {
    return ::testing::AssertionFailure()
           << "plaintext is " << o.plain.size() << " bytes, expected " << padded_len;
  }
  if (!std::equal(inner.begin(), inner.end(), o.plain.begin())) {
    return ::testing::AssertionFailure() << "inner packet bytes differ";
  }
  if (!std::all_of(o.plain.begin() + static_cast<long>(inner.size()), o.plain.end(),
                   [](uint8_t b) { return b == 0; })) {
    return ::testing::AssertionFailure() << "padding is not zero";
  }
  return ::testing::AssertionSuccess();
}

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    rig_ = HubRig::create(options(), &error);
    ASSERT_TRUE(rig_) << error;
    a_.emplace(rig_->make_peer(kA, kInnerA));
    b_.emplace(rig_->make_peer(kB, kInnerB));
  }
  virtual RigOptions options() const { return {}; }

  HubRig& rig() { return *rig_; }
  SoftPeer& a() { return *a_; }
  SoftPeer& b() { return *b_; }

  // alice (A) and bob (B) may reach each other; `extra` rules go first.
  policy::PolicyBuilder policy(uint64_t version, bool b_has_endpoint,
                               std::vector<policy::RuleSpec> extra = {}) {
    policy::PolicyBuilder p;
    p.version(version).gateway("10.99.0.1/32");
    p.add_peer(peer_spec(a(), "alice", {"10.10.0.2/32", "fd00::2/128"}));
    auto bob = peer_spec(b(), "bob", {"10.10.0.3/32", "fd00::3/128"});
    if (b_has_endpoint) bob.endpoint = std::string("192.0.2.3:40002");
    p.add_peer(bob);
    for (auto& r : extra) p.add_rule(r);
    p.add_rule(rule("a-to-b", "user:alice", "10.10.0.3/32", Action::Forward));
    p.add_rule(rule("a-to-b6", "user:alice", "fd00::3/128", Action::Forward));
    p.add_rule(rule("b-to-a", "user:bob", "10.10.0.2/32", Action::Forward));
    return p;
  }

  void apply(const policy::PolicyBuilder& p) {
    std::string error;
    ASSERT_TRUE(rig().apply(p, &error)) << error;
  }

  // Both peers initiate their own sessions.
  void connect_both() {
    ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
    ASSERT_TRUE(handshake_as_initiator(rig(), a()));
    ASSERT_TRUE(handshake_as_initiator(rig(), b()));
  }

  // Sends `inner` from `from` and returns what reached `to`, decrypted.
  std::vector<Opened> send(SoftPeer& from, const Bytes& inner, SoftPeer& to) {
    rig().inject(from.data(inner));
    return open_all(rig().pump(), to);
  }

  // Sends `inner` from `from` and expects exactly it, padded as WireGuard pads, at `to`.
  void expect_delivered(SoftPeer& from, const Bytes& inner, SoftPeer& to) {
    auto at = send(from, inner, to);
    ASSERT_EQ(at.size(), 1u);
    EXPECT_TRUE(carries(at[0], inner, padded16(inner.size())));
  }

  static std::vector<Opened> open_all(const std::vector<Frame>& frames, SoftPeer& to) {
    std::vector<Opened> out;
    for (const Frame& f : frames_to(frames, to.underlay())) {
      EXPECT_TRUE(f.ip_checksum_ok && f.udp_checksum_ok);
      EXPECT_EQ(f.sport, HubRig::kWgPort);
      auto o = f.is_data() ? to.open(f) : std::nullopt;
      EXPECT_TRUE(o.has_value()) << "frame to the peer that it cannot open, type "
                                 << int(f.wg_type());
      if (o) out.push_back(std::move(*o));
    }
    return out;
  }

  std::unique_ptr<HubRig> rig_;
  std::optional<SoftPeer> a_, b_;
};

// --- Underlay -----------------------------------------------------------------------------

TEST_F(WorkerTest, AnswersArpRequestForItsAddressOnly) {
  const rte_ether_addr asker = mac(0x77);
  rig().inject(arp_frame(RTE_ARP_OP_REQUEST, kBroadcast, asker, ip("192.0.2.50"), {},
                         rig().underlay().ip_be));
  auto out = rig().pump();
  ASSERT_EQ(out.size(), 1u);
  const Frame& r = out[0];
  ASSERT_TRUE(r.is_arp());
  EXPECT_EQ(r.arp_op, RTE_ARP_OP_REPLY);
  EXPECT_TRUE(rte_is_same_ether_addr(&r.dst, &asker));
  EXPECT_TRUE(rte_is_same_ether_addr(&r.src, &rig().underlay().mac));
  EXPECT_TRUE(rte_is_same_ether_addr(&r.sha, &rig().underlay().mac));
  EXPECT_EQ(r.sip, rig().underlay().ip_be);
  EXPECT_TRUE(rte_is_same_ether_addr(&r.tha, &asker));
  EXPECT_EQ(r.tip, ip("192.0.2.50"));

  rig().inject(
      arp_frame(RTE_ARP_OP_REQUEST, kBroadcast, asker, ip("192.0.2.50"), {}, ip("192.0.2.99")));
  EXPECT_TRUE(rig().pump().empty()) << "answered an ARP request for someone else";
}

// --- Handshakes and forwarding ------------------------------------------------------------

// A initiates; B has a configured endpoint, so the hub resolves B's MAC and initiates to B. Then
// an echo request and reply cross the hub byte for byte.
TEST_F(WorkerTest, PeersReachEachOtherWhenHubInitiatesToConfiguredEndpoint) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, true)));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));

  // No session with B yet: the packet waits while the hub resolves B's MAC and handshakes.
  const Bytes echo = icmp_echo(kInnerA, kInnerB, 1, 56);
  rig().inject(a().data(echo));
  auto out = rig().pump();
  ASSERT_EQ(out.size(), 1u) << "expected only an ARP request for B";
  ASSERT_TRUE(out[0].is_arp());
  EXPECT_EQ(out[0].arp_op, RTE_ARP_OP_REQUEST);
  EXPECT_TRUE(rte_is_same_ether_addr(&out[0].dst, &kBroadcast));
  EXPECT_TRUE(rte_is_same_ether_addr(&out[0].sha, &rig().underlay().mac));
  EXPECT_EQ(out[0].sip, rig().underlay().ip_be);
  EXPECT_EQ(out[0].tip, kB.ip_be);

  rig().inject(arp_frame(RTE_ARP_OP_REPLY, rig().underlay().mac, kB.mac, kB.ip_be,
                         rig().underlay().mac, rig().underlay().ip_be));
  auto to_b = frames_to(rig().pump(), kB);
  ASSERT_EQ(to_b.size(), 1u) << "expected the hub's initiation to B";
  EXPECT_TRUE(to_b[0].ip_checksum_ok && to_b[0].udp_checksum_ok);
  EXPECT_EQ(to_b[0].sport, HubRig::kWgPort);
  auto response = b().take_initiation(to_b[0]);
  ASSERT_TRUE(response) << "B cannot consume the hub's initiation";

  rig().inject(*response);
  auto first = open_all(rig().pump(), b());
  ASSERT_EQ(first.size(), 2u) << "expected the confirming keepalive and the waiting packet";
  auto keepalive =
      std::find_if(first.begin(), first.end(), [](auto& o) { return o.plain.empty(); });
  ASSERT_NE(keepalive, first.end()) << "the hub must confirm B's session at once";
  auto staged = std::find_if(first.begin(), first.end(), [](auto& o) { return !o.plain.empty(); });
  ASSERT_NE(staged, first.end());
  EXPECT_TRUE(carries(*staged, echo, padded16(echo.size())));

  ASSERT_NO_FATAL_FAILURE(expect_delivered(a(), icmp_echo(kInnerA, kInnerB, 2, 56), b()));
  ASSERT_NO_FATAL_FAILURE(expect_delivered(b(), icmp_echo(kInnerB, kInnerA, 1, 56, 0), a()));

  auto s = rig().snapshot();
  EXPECT_EQ(rule_hits(s, "a-to-b"), 2u);
  EXPECT_EQ(rule_hits(s, "b-to-a"), 1u);
  EXPECT_EQ(s.total.forwarded_packets, 3u);
  EXPECT_EQ(s.total.drops[static_cast<size_t>(DropReason::kNoSession)], 0u);
  // A's handshake with the hub as responder, then the hub's own with B as initiator.
  EXPECT_EQ(handshakes(s, HandshakeEvent::kInitiationRx), 1u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kResponseTx), 1u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kInitiationTx), 1u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kResponseRx), 1u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kCompleted), 2u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kCookieTx), 0u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kCookieRx), 0u);
  auto slot_a = rig().hub().slot_of(a().public_key());
  ASSERT_TRUE(slot_a);
  for (const auto& p : s.peers) {
    if (p.slot != *slot_a) continue;
    EXPECT_EQ(p.traffic.rx_packets, 3u) << "keepalive and two data packets from A";
    EXPECT_EQ(p.traffic.tx_packets, 1u) << "the echo reply to A";
  }
}

// B, under load, answers the hub's initiation with a cookie reply instead of a response.
TEST_F(WorkerTest, CookieReplyToOurInitiationIsCountedAndAccepted) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, true)));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  rig().inject(a().data(icmp_echo(kInnerA, kInnerB, 1, 56)));
  ASSERT_EQ(rig().pump().size(), 1u) << "expected only an ARP request for B";
  rig().inject(arp_frame(RTE_ARP_OP_REPLY, rig().underlay().mac, kB.mac, kB.ip_be,
                         rig().underlay().mac, rig().underlay().ip_be));
  auto to_b = frames_to(rig().pump(), kB);
  ASSERT_EQ(to_b.size(), 1u);
  ASSERT_TRUE(to_b[0].is_wg(MessageType::kInitiation));

  dp::MessageInitiation init;
  ASSERT_EQ(to_b[0].payload.size(), sizeof(init));
  std::memcpy(&init, to_b[0].payload.data(), sizeof(init));
  dp::CookieChecker checker(b().public_key());
  const std::array<uint8_t, dp::kXNonceLen> nonce{};
  const std::array<uint8_t, 6> source{192, 0, 2, 1, 0xca, 0x6c};
  dp::MessageCookieReply reply;
  ASSERT_TRUE(checker.create_reply(reply, to_b[0].payload, rte_le_to_cpu_32(init.sender_index),
                                   source, nonce, steady_ns()));
  rig().inject(b().frame(std::span(reinterpret_cast<const uint8_t*>(&reply), sizeof(reply))));
  rig().pump();

  const StatsSnapshot s = rig().snapshot();
  EXPECT_EQ(rig().drops(DropReason::kBadMac), 0u) << "the hub refused B's cookie reply";
  EXPECT_EQ(handshakes(s, HandshakeEvent::kInitiationTx), 1u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kCookieRx), 1u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kResponseRx), 0u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kCompleted), 1u) << "only A's handshake completed";
}

TEST_F(WorkerTest, PadsToSixteenBytesButNotBeyondTheMtu) {
  ASSERT_NO_FATAL_FAILURE(connect_both());
  const size_t mtu = rig().config().inner_mtu;
  for (size_t inner_len : {28ul, 32ul, 33ul, 100ul, mtu - 1, mtu}) {
    const Bytes echo = icmp_echo(kInnerA, kInnerB, 7, inner_len - 28);
    ASSERT_EQ(echo.size(), inner_len);
    auto at_b = send(a(), echo, b());
    ASSERT_EQ(at_b.size(), 1u) << inner_len;
    EXPECT_TRUE(carries(at_b[0], echo, std::min(padded16(inner_len), mtu))) << inner_len;
  }
}

TEST_F(WorkerTest, ForwardsIpv6) {
  ASSERT_NO_FATAL_FAILURE(connect_both());
  const Bytes payload = {1, 2, 3, 4, 5};
  const Bytes pkt = udp6_packet(ip6("fd00::2"), ip6("fd00::3"), 1000, 2000, payload);
  auto at_b = send(a(), pkt, b());
  ASSERT_EQ(at_b.size(), 1u);
  EXPECT_TRUE(carries(at_b[0], pkt, padded16(pkt.size())));

  const Bytes spoofed = udp6_packet(ip6("fd00::99"), ip6("fd00::3"), 1000, 2000, payload);
  EXPECT_TRUE(send(a(), spoofed, b()).empty());
  EXPECT_EQ(rig().drops(DropReason::kSrcNotAllowed), 1u);
}

// Each direction on its own IPsec-MB path (Config::crypto_encrypt), as an operator would pin
// the encrypt side where the fastest path's tags are not exact.
class SplitCryptoTest : public WorkerTest {
 protected:
  RigOptions options() const override {
    RigOptions o;
    o.crypto = dp::BatchCrypto::Arch::kSse;
    o.crypto_encrypt = dp::BatchCrypto::Arch::kAvx2;
    return o;
  }
};

TEST_F(SplitCryptoTest, ForwardsBothWaysWithEachDirectionOnItsOwnPath) {
  if (!dp::BatchCrypto::create(dp::BatchCrypto::Arch::kAvx2)) GTEST_SKIP() << "no AVX2 path";
  ASSERT_NO_FATAL_FAILURE(connect_both());
  ASSERT_NO_FATAL_FAILURE(expect_delivered(a(), icmp_echo(kInnerA, kInnerB, 1, 300), b()));
  ASSERT_NO_FATAL_FAILURE(expect_delivered(b(), icmp_echo(kInnerB, kInnerA, 1, 700, 0), a()));
  EXPECT_EQ(rig().drops(DropReason::kBadTag), 0u);
}

TEST_F(WorkerTest, RoamingPeerGetsRepliesAtItsNewAddress) {
  ASSERT_NO_FATAL_FAILURE(connect_both());
  const Underlay moved{mac(0x1a), ip("198.51.100.7"), 50000};
  a().set_underlay(moved);
  ASSERT_EQ(send(a(), icmp_echo(kInnerA, kInnerB, 1, 8), b()).size(), 1u);
  rig().inject(b().data(icmp_echo(kInnerB, kInnerA, 1, 8, 0)));
  auto out = rig().pump();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].to(moved)) << "reply did not follow the peer to its new endpoint";
  EXPECT_TRUE(a().open(out[0]));
}

TEST_F(WorkerTest, InitiationFromUnknownKeyGetsNoResponse) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  SoftPeer stranger = rig().make_peer({mac(0x5), ip("192.0.2.5"), 40005}, ip("10.10.0.5"));
  rig().inject(stranger.initiation());
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kBadMac), 1u);
}

TEST_F(WorkerTest, ReplayedInitiationGetsNoSecondResponse) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  const Bytes init = a().initiation();
  rig().inject(init);
  ASSERT_EQ(frames_to(rig().pump(), kA).size(), 1u);
  // Past the 20 ms flood limit, so only the timestamp can reject it.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  rig().inject(init);
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kReplay), 1u);
  const StatsSnapshot s = rig().snapshot();
  EXPECT_EQ(handshakes(s, HandshakeEvent::kInitiationRx), 2u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kResponseTx), 1u);
  EXPECT_EQ(handshakes(s, HandshakeEvent::kCompleted), 1u) << "a replay established a session";
}

// --- Access control -----------------------------------------------------------------------

TEST_F(WorkerTest, AclDropsDeniedPortAndPassesAllowedOne) {
  ASSERT_NO_FATAL_FAILURE(apply(
      policy(1, false,
             {rule("deny-ssh", "user:alice", "10.10.0.3/32", Action::Drop, IPPROTO_TCP, 22, 22),
              rule("allow-web", "user:alice", "10.10.0.3/32", Action::Forward, IPPROTO_TCP, 80, 80),
              rule("deny-other-tcp", "user:alice", "10.10.0.3/32", Action::Drop, IPPROTO_TCP)})));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  ASSERT_TRUE(handshake_as_initiator(rig(), b()));

  rig().inject(a().data(tcp_syn(kInnerA, kInnerB, 33000, 22)));
  EXPECT_TRUE(rig().pump().empty()) << "denied packet was transmitted";
  EXPECT_EQ(rig().drops(DropReason::kAclDeny), 1u);

  const Bytes web = tcp_syn(kInnerA, kInnerB, 33000, 80);
  auto at_b = send(a(), web, b());
  ASSERT_EQ(at_b.size(), 1u);
  EXPECT_TRUE(carries(at_b[0], web, padded16(web.size())));

  rig().inject(a().data(tcp_syn(kInnerA, kInnerB, 33000, 443)));
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kAclDeny), 2u);

  auto s = rig().snapshot();
  EXPECT_EQ(rule_hits(s, "deny-ssh"), 1u);
  EXPECT_EQ(rule_hits(s, "allow-web"), 1u);
  EXPECT_EQ(rule_hits(s, "deny-other-tcp"), 1u);
}

TEST_F(WorkerTest, SpoofedInnerSourceIsDropped) {
  ASSERT_NO_FATAL_FAILURE(connect_both());
  rig().inject(a().data(icmp_echo(ip("10.10.0.99"), kInnerB, 1, 8)));
  rig().inject(a().data(icmp_echo(kInnerB, kInnerB, 2, 8)));  // B's own address
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kSrcNotAllowed), 2u);
}

// --- Transport data integrity -------------------------------------------------------------

TEST_F(WorkerTest, ReplayedTransportPacketIsDeliveredOnce) {
  ASSERT_NO_FATAL_FAILURE(connect_both());
  const Bytes frame = a().data(icmp_echo(kInnerA, kInnerB, 1, 8));
  rig().inject(frame);
  EXPECT_EQ(open_all(rig().pump(), b()).size(), 1u);
  rig().inject(frame);
  EXPECT_TRUE(rig().pump().empty());
  rig().inject(frame);
  rig().inject(frame);  // twice in one burst
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kReplay), 3u);
}

TEST_F(WorkerTest, TamperedPacketIsDroppedAndDoesNotBurnItsCounter) {
  ASSERT_NO_FATAL_FAILURE(connect_both());
  const Bytes inner = icmp_echo(kInnerA, kInnerB, 1, 8);
  const Bytes good = a().data(inner);
  const size_t wg = kOuterLen;
  Bytes bad_ciphertext = good;
  bad_ciphertext[wg + sizeof(dp::MessageDataHeader) + 3] ^= 0x01;
  Bytes bad_tag = good;
  bad_tag.back() ^= 0x80;
  Bytes bad_counter = good;  // the counter is the nonce: a different one fails the tag
  bad_counter[wg + 8] ^= 0x01;
  for (const Bytes& f : {bad_ciphertext, bad_tag, bad_counter}) rig().inject(f);
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kBadTag), 3u);

  rig().inject(good);
  auto at_b = open_all(rig().pump(), b());
  ASSERT_EQ(at_b.size(), 1u) << "a forgery moved the replay window";
  EXPECT_TRUE(carries(at_b[0], inner, padded16(inner.size())));
}

TEST_F(WorkerTest, UnknownReceiverIndexIsNoSession) {
  ASSERT_NO_FATAL_FAILURE(connect_both());
  Bytes msg = a().data_message(icmp_echo(kInnerA, kInnerB, 1, 8));
  for (uint32_t index : {0u, 0xdeadbeefu, 1u}) {
    std::memcpy(msg.data() + 4, &index, 4);
    rig().inject(a().frame(msg));
  }
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kNoSession), 3u);
}

// Each case: a frame and the drop reason it must be counted under.
TEST_F(WorkerTest, MalformedMessagesAreCountedAndDropped) {
  ASSERT_NO_FATAL_FAILURE(connect_both());
  auto sized = [](uint8_t type, size_t len) {
    Bytes m(len, 0);
    if (len > 0) m[0] = type;
    return m;
  };
  std::vector<std::pair<std::string, Bytes>> malformed = {
      {"empty", a().frame({})},
      {"3 bytes", a().frame(Bytes{4, 0, 0})},
      {"data of 31", a().frame(sized(4, 31))},
      {"initiation of 147", a().frame(sized(1, 147))},
      {"initiation of 149", a().frame(sized(1, 149))},
      {"response of 91", a().frame(sized(2, 91))},
      {"response of 93", a().frame(sized(2, 93))},
      {"cookie reply of 63", a().frame(sized(3, 63))},
      {"type 0", a().frame(sized(0, 64))},
      {"type 5", a().frame(sized(5, 64))},
      {"type 255", a().frame(sized(255, 148))},
  };
  Bytes reserved = a().data_message(icmp_echo(kInnerA, kInnerB, 1, 8));
  reserved[2] = 1;
  malformed.emplace_back("data with reserved byte set", a().frame(reserved));
  Bytes init_reserved = a().initiation();
  init_reserved[kOuterLen + 3] = 0x80;
  malformed.emplace_back("initiation with reserved byte set", init_reserved);
  Bytes not_ip(48, 0x55);  // authenticated, but no IPv4/IPv6 header inside
  malformed.emplace_back("inner not IP", a().data(not_ip));
  Bytes long_claim = icmp_echo(kInnerA, kInnerB, 1, 8);
  long_claim[2] = 0x05;  // total length 1280+ beyond the plaintext
  malformed.emplace_back("inner length beyond plaintext", a().data(long_claim));
  Bytes bad_ip_sum = a().data(icmp_echo(kInnerA, kInnerB, 1, 8));
  bad_ip_sum[14 + 10] ^= 0xff;
  malformed.emplace_back("outer IPv4 checksum", bad_ip_sum);
  Bytes fragment = a().data(icmp_echo(kInnerA, kInnerB, 1, 8));
  fragment[14 + 6] |= 0x20;  // more fragments
  fragment[14 + 10] = fragment[14 + 11] = 0;
  uint16_t c = fold(sum16(std::span(fragment.data() + 14, 20)));
  fragment[14 + 10] = static_cast<uint8_t>(c >> 8);
  fragment[14 + 11] = static_cast<uint8_t>(c);
  malformed.emplace_back("outer fragment", fragment);
  Bytes short_udp = a().frame(sized(4, 40));
  short_udp[14 + 20 + 4] = 0;
  short_udp[14 + 20 + 5] = 30;  // UDP length disagrees with the IPv4 length
  malformed.emplace_back("UDP length mismatch", short_udp);

  uint64_t expected = rig().drops(DropReason::kMalformed);
  for (const auto& [name, frame] : malformed) {
    rig().inject(frame);
    EXPECT_TRUE(rig().pump().empty()) << name;
    EXPECT_EQ(rig().drops(DropReason::kMalformed), ++expected) << name;
  }

  Underlay other_port = rig().underlay();
  other_port.port = 51821;
  rig().inject(udp_frame(kA, other_port, sized(4, 64)));
  rig().inject(ether(rig().underlay().mac, kA.mac, RTE_ETHER_TYPE_IPV6));
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kNotWireguard), 2u);
}

// Thousands of random and mutated frames: nothing crashes, every mbuf comes back, and the
// peers still talk afterwards.
TEST_F(WorkerTest, SurvivesRandomFramesWithoutLeaks) {
  ASSERT_NO_FATAL_FAILURE(connect_both());
  std::mt19937 rng(20240611);
  auto byte = [&] { return static_cast<uint8_t>(rng()); };
  const Bytes template_data = a().data(icmp_echo(kInnerA, kInnerB, 1, 40));
  const size_t lengths[] = {0, 1, 3, 4, 31, 32, 48, 63, 64, 91, 92, 93, 147, 148, 149, 200};
  for (int round = 0; round < 100; ++round) {
    for (int i = 0; i < 30; ++i) {
      Bytes f;
      switch (rng() % 4) {
        case 0: {  // random bytes
          f.resize(rng() % 300);
          for (auto& x : f) x = byte();
          break;
        }
        case 1: {  // valid outer headers, random WireGuard-ish payload
          Bytes m(lengths[rng() % std::size(lengths)]);
          for (auto& x : m) x = byte();
          if (!m.empty()) m[0] = static_cast<uint8_t>(rng() % 6);
          if (m.size() >= 4 && rng() % 2) m[1] = m[2] = m[3] = 0;
          f = a().frame(m);
          break;
        }
        case 2: {  // a real data frame with a few bit flips anywhere
          f = template_data;
          for (int k = 0, n = 1 + static_cast<int>(rng() % 3); k < n; ++k) {
            f[rng() % f.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
          }
          break;
        }
        default: {  // a real data frame truncated or extended
          f = a().data(icmp_echo(kInnerA, kInnerB, 2, rng() % 100));
          if (rng() % 2) {
            f.resize(rng() % f.size());
          } else {
            for (int k = rng() % 64; k > 0; --k) f.push_back(byte());
          }
          break;
        }
      }
      rig().inject(f);
    }
    rig().pump();
  }
  rig().pump(3);
  EXPECT_EQ(rig().mbufs_in_pool(), rig().initial_mbufs()) << "mbufs leaked";
  EXPECT_EQ(rig().snapshot().total.rx_packets, 3000u + 4u) << "every frame is counted";

  const Bytes echo = icmp_echo(kInnerA, kInnerB, 99, 20);
  auto at_b = send(a(), echo, b());
  ASSERT_EQ(at_b.size(), 1u);
  EXPECT_TRUE(carries(at_b[0], echo, padded16(echo.size())));
}

// --- Gateway punt and return --------------------------------------------------------------

class GatewayTest : public WorkerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(WorkerTest::SetUp());
    ASSERT_NO_FATAL_FAILURE(apply(
        policy(1, false, {rule("punt-gw", "user:alice", "10.99.0.1/32", Action::PuntToGateway)})));
    ASSERT_TRUE(handshake_as_initiator(rig(), a()));
    ASSERT_TRUE(handshake_as_initiator(rig(), b()));
    std::string error;
    channel_ = dp::PacketChannel::attach(rig().instance() + "-ring-0", &error);
    ASSERT_TRUE(channel_) << error;
    auto slot = rig().hub().slot_of(a().public_key());
    ASSERT_TRUE(slot);
    slot_a_ = *slot;
  }

  std::optional<dp::PacketChannel> channel_;
  uint32_t slot_a_ = 0;
};

TEST_F(GatewayTest, PuntsToGatewayAndEncryptsItsAnswer) {
  const Bytes query = udp_packet(kInnerA, kGateway, 5353, 53, Bytes{'h', 'i'});
  rig().inject(a().data(query));
  EXPECT_TRUE(rig().pump().empty()) << "a punted packet must not go out on the wire";
  std::vector<std::pair<uint32_t, Bytes>> punted;
  channel_->receive(dp::Direction::kToGateway, 8, [&](uint32_t slot, std::span<const uint8_t> p) {
    punted.emplace_back(slot, Bytes(p.begin(), p.end()));
  });
  ASSERT_EQ(punted.size(), 1u);
  EXPECT_EQ(punted[0].first, slot_a_);
  EXPECT_EQ(punted[0].second, query) << "the gateway must get the inner packet without padding";
  EXPECT_EQ(rig().snapshot().total.punted_packets, 1u);
  EXPECT_EQ(rule_hits(rig().snapshot(), "punt-gw"), 1u);

  const Bytes answer = udp_packet(kGateway, kInnerA, 53, 5353, Bytes{'y', 'o', '!'});
  ASSERT_TRUE(channel_->send(dp::Direction::kFromGateway, slot_a_, answer));
  auto at_a = open_all(rig().pump(), a());
  ASSERT_EQ(at_a.size(), 1u);
  EXPECT_TRUE(carries(at_a[0], answer, padded16(answer.size())));
  EXPECT_EQ(rig().snapshot().total.returned_packets, 1u);
}

TEST_F(GatewayTest, ReturnToAnAddressThePeerDoesNotOwnIsDropped) {
  const Bytes to_b = udp_packet(kGateway, kInnerB, 53, 5353, Bytes{1});
  const Bytes to_nowhere = udp_packet(kGateway, ip("203.0.113.9"), 53, 5353, Bytes{1});
  ASSERT_TRUE(channel_->send(dp::Direction::kFromGateway, slot_a_, to_b));
  ASSERT_TRUE(channel_->send(dp::Direction::kFromGateway, slot_a_, to_nowhere));
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kNoRoute), 2u);
  EXPECT_EQ(rig().snapshot().total.returned_packets, 0u);
}

using GatewayDeathTest = GatewayTest;

// The channel's consumer must not trust the peer slot the other process wrote (ring.h). A slot
// of kNoPeer with a destination outside every allowed IP matches the owner lookup's "no peer"
// result; run in a child so that an out-of-bounds peer access fails only this test.
TEST_F(GatewayDeathTest, ReturnForNonexistentSlotIsDropped) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const Bytes to_nowhere = udp_packet(kGateway, ip("203.0.113.9"), 53, 5353, Bytes{1});
        channel_->send(dp::Direction::kFromGateway, dp::kNoPeer, to_nowhere);
        channel_->send(dp::Direction::kFromGateway, rig().config().max_peers + 5, to_nowhere);
        bool ok = rig().pump().empty() && rig().drops(DropReason::kNoRoute) == 2;
        std::_Exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// --- Key confirmation ---------------------------------------------------------------------

// After answering A's initiation the hub holds an unconfirmed keypair; it must not send on it
// until A's first packet under it arrives (whitepaper §5.4.6).
TEST_F(WorkerTest, ResponderWaitsForKeyConfirmationBeforeSending) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  ASSERT_TRUE(handshake_as_initiator(rig(), b()));
  rig().inject(a().initiation());
  auto resp = frames_to(rig().pump(), kA);
  ASSERT_EQ(resp.size(), 1u);
  ASSERT_TRUE(a().take_response(resp[0]));

  const Bytes early = icmp_echo(kInnerB, kInnerA, 1, 8, 0);
  rig().inject(b().data(early));
  for (const Frame& f : frames_to(rig().pump(2), kA)) {
    EXPECT_FALSE(f.is_data()) << "sent data on an unconfirmed keypair";
  }

  // A's first packet confirms the keypair; the packet that waited for it goes out under it.
  rig().inject(a().keepalive());
  auto released = open_all(rig().pump(), a());
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].receiver_index, a().current_local_index());
  EXPECT_TRUE(carries(released[0], early, padded16(early.size())));

  const Bytes reply = icmp_echo(kInnerB, kInnerA, 2, 8, 0);
  auto at_a = send(b(), reply, a());
  ASSERT_EQ(at_a.size(), 1u);
  EXPECT_EQ(at_a[0].receiver_index, a().current_local_index());
  EXPECT_TRUE(carries(at_a[0], reply, padded16(reply.size())));
}

// Like the kernel and wireguard-go, a hub that has just answered an initiation does not start
// its own handshake with that peer within REKEY_TIMEOUT: that would cross the peer's
// confirmation and cost both sides another round of Diffie-Hellman.
TEST_F(WorkerTest, ResponderDoesNotCrossInitiateWhileAwaitingConfirmation) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  ASSERT_TRUE(handshake_as_initiator(rig(), b()));
  rig().inject(a().initiation());
  auto resp = frames_to(rig().pump(), kA);
  ASSERT_EQ(resp.size(), 1u);
  ASSERT_TRUE(a().take_response(resp[0]));

  rig().inject(b().data(icmp_echo(kInnerB, kInnerA, 1, 8, 0)));
  for (const Frame& f : frames_to(rig().pump(2), kA)) {
    EXPECT_FALSE(f.is_wg(MessageType::kInitiation))
        << "initiated to a peer whose handshake with us completed a moment ago";
  }
}

// The common case of the above: packets are waiting for B when B's own initiation arrives.
TEST_F(WorkerTest, PeerWithWaitingPacketsGetsOneHandshakeNotTwo) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  rig().inject(a().data(icmp_echo(kInnerA, kInnerB, 1, 8)));
  EXPECT_TRUE(rig().pump().empty());
  std::vector<Frame> out;
  ASSERT_TRUE(handshake_as_initiator(rig(), b(), &out));
  for (const Frame& f : out) {
    EXPECT_FALSE(f.is_wg(MessageType::kInitiation)) << "crossed B's handshake with our own";
  }
}

// --- Packets waiting for a session ---------------------------------------------------------

class ShortTimersTest : public WorkerTest {
 protected:
  RigOptions options() const override {
    RigOptions o;
    o.timers.rekey_timeout_ns = 50'000'000;
    return o;
  }
};

TEST_F(WorkerTest, PacketsWaitingForASessionLeaveInOrderOnceItIsUp) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  std::vector<Bytes> early;
  for (uint16_t seq = 1; seq <= 5; ++seq) {
    early.push_back(icmp_echo(kInnerA, kInnerB, seq, 8 * seq));
    rig().inject(a().data(early.back()));
  }
  EXPECT_TRUE(rig().pump().empty());
  std::vector<Frame> out;
  ASSERT_TRUE(handshake_as_initiator(rig(), b(), &out));  // B's keepalive confirms the session
  std::erase_if(out, [](const Frame& f) { return f.is_wg(MessageType::kInitiation); });
  auto at_b = open_all(out, b());
  ASSERT_EQ(at_b.size(), early.size());
  for (size_t i = 0; i < early.size(); ++i) {
    EXPECT_TRUE(carries(at_b[i], early[i], padded16(early[i].size()))) << i;
  }
  EXPECT_EQ(rig().drops(DropReason::kNoSession), 0u);
}

// Packets that waited leave before later packets to the same peer (the kernel appends new
// packets to the staged queue and sends the queue in order). Here B's confirming keepalive and
// a new packet for B arrive in one burst, so the session becomes usable mid-burst.
TEST_F(WorkerTest, WaitingPacketsLeaveBeforeLaterOnes) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  for (uint16_t seq = 1; seq <= 3; ++seq) {
    rig().inject(a().data(icmp_echo(kInnerA, kInnerB, seq, 8)));
  }
  EXPECT_TRUE(rig().pump().empty());
  rig().inject(b().initiation());
  auto resp = frames_to(rig().pump(), kB);
  auto r = std::find_if(resp.begin(), resp.end(),
                        [](const Frame& f) { return f.is_wg(MessageType::kResponse); });
  ASSERT_NE(r, resp.end());
  ASSERT_TRUE(b().take_response(*r));
  rig().inject(b().keepalive());
  rig().inject(a().data(icmp_echo(kInnerA, kInnerB, 4, 8)));
  std::vector<uint16_t> order;
  for (const Opened& o : open_all(rig().pump(), b())) {
    if (o.plain.size() >= 28) order.push_back(get16(o.plain.data() + 26));  // ICMP sequence
  }
  EXPECT_EQ(order, (std::vector<uint16_t>{1, 2, 3, 4}));
}

TEST_F(ShortTimersTest, WaitingPacketsAreDroppedAfterRekeyTimeout) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  rig().inject(a().data(icmp_echo(kInnerA, kInnerB, 1, 8)));
  EXPECT_TRUE(rig().pump().empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kNoSession), 1u);
  EXPECT_EQ(rig().mbufs_in_pool(), rig().initial_mbufs()) << "a dropped waiting packet leaked";
}

// forwarded_packets documents "inner packets sent peer to peer": one that waited for a session
// and was dropped in the end was not sent.
TEST_F(ShortTimersTest, ForwardedCounterExcludesPacketsThatNeverLeft) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  rig().inject(a().data(icmp_echo(kInnerA, kInnerB, 1, 8)));
  rig().pump();
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  rig().pump();
  ASSERT_EQ(rig().drops(DropReason::kNoSession), 1u);
  EXPECT_EQ(rig().snapshot().total.forwarded_packets, 0u);
}

TEST_F(WorkerTest, WaitingRoomOverflowIsDroppedAtOnce) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  const uint16_t n = dp::kMaxStaged + 7;
  for (uint16_t seq = 0; seq < n; ++seq)
    rig().inject(a().data(icmp_echo(kInnerA, kInnerB, seq, 8)));
  EXPECT_TRUE(rig().pump().empty());
  EXPECT_EQ(rig().drops(DropReason::kNoSession), 7u);
  std::vector<Frame> out;
  ASSERT_TRUE(handshake_as_initiator(rig(), b(), &out));
  std::erase_if(out, [](const Frame& f) { return f.is_wg(MessageType::kInitiation); });
  EXPECT_EQ(open_all(out, b()).size(), dp::kMaxStaged);
}

TEST_F(WorkerTest, WaitingPacketsForARemovedPeerAreDropped) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, false)));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  rig().inject(a().data(icmp_echo(kInnerA, kInnerB, 1, 8)));
  EXPECT_TRUE(rig().pump().empty());
  policy::PolicyBuilder without_b;
  without_b.version(2).add_peer(peer_spec(a(), "alice", {"10.10.0.2/32"}));
  ASSERT_NO_FATAL_FAILURE(apply(without_b));
  EXPECT_TRUE(rig().pump(2).empty());
  EXPECT_EQ(rig().drops(DropReason::kNoRoute), 1u);
  EXPECT_EQ(rig().mbufs_in_pool(), rig().initial_mbufs());
}

// --- Rekey --------------------------------------------------------------------------------

class RekeyTest : public WorkerTest {
 protected:
  RigOptions options() const override {
    RigOptions o;
    o.timers.rekey_after_ns = 300'000'000;
    o.timers.reject_after_ns = 5'000'000'000;
    o.timers.rekey_timeout_ns = 100'000'000;
    o.timers.keepalive_timeout_ns = 1'000'000'000;
    o.timers.rekey_attempt_ns = 2'000'000'000;
    return o;
  }
};

// The hub initiated to B, so it rekeys after rekey_after while data flows both ways. Nothing is
// lost across the rotation, and B's packets on the old keypair are accepted until B switches.
TEST_F(RekeyTest, HubRekeysWithBWhileDataKeepsFlowing) {
  ASSERT_NO_FATAL_FAILURE(apply(policy(1, true)));
  ASSERT_TRUE(handshake_as_initiator(rig(), a()));
  rig().inject(a().data(icmp_echo(kInnerA, kInnerB, 0, 8)));
  rig().pump();  // the hub asks for B's MAC
  rig().inject(arp_frame(RTE_ARP_OP_REPLY, rig().underlay().mac, kB.mac, kB.ip_be,
                         rig().underlay().mac, rig().underlay().ip_be));
  auto init = frames_to(rig().pump(), kB);
  ASSERT_EQ(init.size(), 1u);
  auto resp = b().take_initiation(init[0]);
  ASSERT_TRUE(resp);
  rig().inject(*resp);
  ASSERT_EQ(open_all(rig().pump(), b()).size(), 2u) << "keepalive and the packet that waited";
  const uint32_t first_b_index = b().current_local_index();

  uint64_t sent_to_b = 0, sent_to_a = 0, got_at_b = 0, got_at_a = 0;
  int rekeys = 0;
  int sent_on_old_keypair = 0;
  std::set<uint32_t> b_indices;
  auto handle = [&](const std::vector<Frame>& frames, auto&& self) -> void {
    for (const Frame& f : frames) {
      if (f.to(kB) && f.is_wg(MessageType::kInitiation)) {
        ++rekeys;
        auto r = b().take_initiation(f);
        ASSERT_TRUE(r);
        rig().inject(*r);
        auto confirm = rig().pump();
        // The hub now sends on the new keypair; B has not seen it yet and still sends on the
        // old one, which the hub must keep accepting.
        rig().inject(b().data(icmp_echo(kInnerB, kInnerA, 9, 8, 0)));
        ++sent_to_a;
        ++sent_on_old_keypair;
        auto on_old = rig().pump();
        self(on_old, self);
        self(confirm, self);
      } else if (f.to(kB)) {
        auto o = b().open(f);
        ASSERT_TRUE(o) << "B cannot open a frame from the hub";
        b_indices.insert(o->receiver_index);
        if (!o->plain.empty()) ++got_at_b;
      } else if (f.to(kA)) {
        auto o = a().open(f);
        ASSERT_TRUE(o) << "A cannot open a frame from the hub";
        if (!o->plain.empty()) ++got_at_a;
      }
    }
  };
  const auto start = std::chrono::steady_clock::now();
  uint16_t seq = 1;
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1500) &&
         !(rekeys >= 2 && b_indices.size() >= 3)) {
    rig().inject(a().data(icmp_echo(kInnerA, kInnerB, seq, 16)));
    ++sent_to_b;
    rig().inject(b().data(icmp_echo(kInnerB, kInnerA, seq, 16, 0)));
    ++sent_to_a;
    ++seq;
    ASSERT_NO_FATAL_FAILURE(handle(rig().pump(), handle));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(rekeys, 1) << "the hub never rekeyed";
  EXPECT_GE(b_indices.size(), 2u) << "B never received on a new keypair";
  EXPECT_NE(b().current_local_index(), first_b_index);
  EXPECT_GE(sent_on_old_keypair, 1);
  EXPECT_EQ(got_at_b, sent_to_b);
  EXPECT_EQ(got_at_a, sent_to_a);
  for (auto why : {DropReason::kNoSession, DropReason::kBadTag, DropReason::kReplay,
                   DropReason::kKeypairExpired}) {
    EXPECT_EQ(rig().drops(why), 0u) << dp::drop_reason_name(why);
  }
}

}  // namespace
}  // namespace airlock::test
