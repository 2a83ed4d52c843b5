#include "dataplane/acl.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string_view>
#include <vector>

#include "tests/eal_env.h"
#include "tests/prefix.h"

namespace airlock::dp {
namespace {

constexpr uint8_t kTcp = IPPROTO_TCP;
constexpr uint8_t kUdp = IPPROTO_UDP;
constexpr uint8_t kIcmp = IPPROTO_ICMP;

// ---- Packet and policy builders ---------------------------------------------------------------

using test::v4;
using test::v6;

void put16(uint8_t* at, uint16_t value) {
  at[0] = static_cast<uint8_t>(value >> 8);
  at[1] = static_cast<uint8_t>(value);
}

// IPv4 header (no options) followed by source port 40000 and the destination port.
std::vector<uint8_t> ipv4_packet(const uint8_t dst[4], uint8_t proto, uint16_t dport,
                                 uint16_t fragment_field = 0) {
  std::vector<uint8_t> packet(28, 0);
  packet[0] = 0x45;
  put16(&packet[2], static_cast<uint16_t>(packet.size()));
  put16(&packet[6], fragment_field);
  packet[8] = 64;
  packet[9] = proto;
  const uint8_t src[4] = {192, 0, 2, 1};
  std::memcpy(&packet[12], src, 4);
  std::memcpy(&packet[16], dst, 4);
  put16(&packet[20], 40000);
  put16(&packet[22], dport);
  return packet;
}

std::vector<uint8_t> ipv4_packet(const char* dst, uint8_t proto, uint16_t dport,
                                 uint16_t fragment_field = 0) {
  uint8_t addr[4];
  EXPECT_EQ(inet_pton(AF_INET, dst, addr), 1);
  return ipv4_packet(addr, proto, dport, fragment_field);
}

struct Extension {
  uint8_t type;            // IPPROTO_HOPOPTS, IPPROTO_FRAGMENT, ...
  uint16_t fragment_data;  // for IPPROTO_FRAGMENT
};

// IPv6 header, the given extension headers (8 bytes each), source port 40000, destination port.
std::vector<uint8_t> ipv6_packet(const uint8_t dst[16], uint8_t proto, uint16_t dport,
                                 const std::vector<Extension>& extensions = {}) {
  std::vector<uint8_t> packet(40, 0);
  packet[0] = 0x60;
  packet[6] = extensions.empty() ? proto : extensions.front().type;
  packet[7] = 64;
  packet[8] = 0xfd;  // source fd00::1
  packet[23] = 1;
  std::memcpy(&packet[24], dst, 16);
  for (size_t i = 0; i < extensions.size(); ++i) {
    uint8_t header[8] = {};
    header[0] = i + 1 < extensions.size() ? extensions[i + 1].type : proto;
    if (extensions[i].type == IPPROTO_FRAGMENT) put16(&header[2], extensions[i].fragment_data);
    packet.insert(packet.end(), header, header + 8);
  }
  uint8_t ports[4];
  put16(&ports[0], 40000);
  put16(&ports[2], dport);
  packet.insert(packet.end(), ports, ports + 4);
  put16(&packet[4], static_cast<uint16_t>(packet.size() - 40));
  return packet;
}

std::vector<uint8_t> ipv6_packet(const char* dst, uint8_t proto, uint16_t dport,
                                 const std::vector<Extension>& extensions = {}) {
  uint8_t addr[16];
  EXPECT_EQ(inet_pton(AF_INET6, dst, addr), 1);
  return ipv6_packet(addr, proto, dport, extensions);
}

std::string key_b64(uint8_t seed) {
  uint8_t key[32];
  for (size_t i = 0; i < sizeof(key); ++i) key[i] = static_cast<uint8_t>(seed * 31 + i);
  char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(b64, sizeof(b64), key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
  return b64;
}

AclIdentity peer(uint32_t slot, std::string user, std::string device,
                 std::vector<std::string> tags = {}, std::vector<std::string> groups = {}) {
  return AclIdentity{slot,
                     std::move(user),
                     std::move(device),
                     key_b64(static_cast<uint8_t>(slot)),
                     std::move(tags),
                     std::move(groups)};
}

AclRule rule(std::string name, std::vector<std::string> sources, std::vector<Prefix> dsts = {},
             uint8_t proto = 0, uint16_t low = 0, uint16_t high = 65535,
             AclAction action = AclAction::kForward) {
  return AclRule{std::move(name), std::move(sources), std::move(dsts), proto, low, high, action};
}

class AclTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { test::ensure_eal(); }

  static AclTable compile(const std::vector<AclIdentity>& peers,
                          const std::vector<AclRule>& rules) {
    std::string error;
    std::optional<AclTable> table = AclTable::compile(peers, rules, &error);
    EXPECT_TRUE(table.has_value()) << error;
    return std::move(*table);
  }

  // Result for one packet sent by `slot`.
  static uint32_t classify(const AclTable& table, uint32_t slot, const std::vector<uint8_t>& pkt) {
    uint32_t result = 0xdead;
    if ((pkt[0] >> 4) == 4) {
      AclKeyV4 key;
      fill_key_v4(key, table.class_of(slot), pkt.data(), static_cast<uint32_t>(pkt.size()));
      const AclKeyV4* keys[] = {&key};
      table.classify_v4(keys, &result, 1);
    } else {
      AclKeyV6 key;
      fill_key_v6(key, table.class_of(slot), pkt.data(), static_cast<uint32_t>(pkt.size()));
      const AclKeyV6* keys[] = {&key};
      table.classify_v6(keys, &result, 1);
    }
    return result;
  }
};

std::vector<AclIdentity> team() {
  return {
      peer(1, "alice", "alice-laptop", {"ci"}, {"eng"}),
      peer(2, "bob", "bob-phone", {}, {"ops"}),
      peer(3, "carol", "carol-laptop", {"ci", "lab"}, {"eng", "ops"}),
  };
}

// ---- Selectors --------------------------------------------------------------------------------

TEST_F(AclTest, SelectorsPickTheRightPeers) {
  const std::vector<AclIdentity> peers = team();
  struct Case {
    std::string selector;
    std::vector<uint32_t> matching;  // slots
  };
  const std::vector<Case> cases = {
      {"user:alice", {1}},       {"bob", {2}},
      {"group:eng", {1, 3}},     {"group:ops", {2, 3}},
      {"tag:ci", {1, 3}},        {"tag:lab", {3}},
      {"device:bob-phone", {2}}, {"peer:" + key_b64(3), {3}},
      {"*", {1, 2, 3}},          {"user:nobody", {}},
      {"group:alice", {}},
  };
  const auto packet = ipv4_packet("10.0.0.1", kTcp, 80);
  for (const Case& c : cases) {
    const AclTable table = compile(peers, {rule("r", {c.selector})});
    for (uint32_t slot : {1u, 2u, 3u, 99u}) {
      const bool expected =
          std::find(c.matching.begin(), c.matching.end(), slot) != c.matching.end();
      EXPECT_EQ(classify(table, slot, packet), expected ? 1u : 0u)
          << c.selector << " slot " << slot;
    }
  }
}

TEST_F(AclTest, SeveralSourcesInOneRuleAreAlternatives) {
  const AclTable table = compile(team(), {rule("r", {"user:alice", "device:bob-phone"})});
  const auto packet = ipv4_packet("10.0.0.1", kUdp, 53);
  EXPECT_EQ(classify(table, 1, packet), 1u);
  EXPECT_EQ(classify(table, 2, packet), 1u);
  EXPECT_EQ(classify(table, 3, packet), 0u);
}

TEST_F(AclTest, BadSelectorsAreRejectedWithAMessage) {
  struct Case {
    std::string selector;
    std::string expected_in_message;
  };
  const std::vector<Case> cases = {
      {"role:admin", "role:admin"},
      {"", "empty selector"},
      {"user:", "user:"},
      {"peer:not-a-key", "peer:not-a-key"},
      {"peer:" + key_b64(1).substr(4), "peer:"},
  };
  for (const Case& c : cases) {
    std::string error;
    const std::vector<AclRule> rules = {rule("ok", {"*"}), rule("web", {"alice", c.selector})};
    EXPECT_FALSE(AclTable::compile(team(), rules, &error).has_value()) << c.selector;
    EXPECT_NE(error.find(c.expected_in_message), std::string::npos) << error;
    EXPECT_NE(error.find("rule 1"), std::string::npos) << error;
    EXPECT_NE(error.find("web"), std::string::npos) << error;
  }
}

bool rejected(const std::vector<AclIdentity>& peers, const std::vector<AclRule>& rules,
              std::string* error) {
  return !AclTable::compile(peers, rules, error).has_value();
}

TEST_F(AclTest, OtherInvalidInputIsRejected) {
  std::string error;
  EXPECT_TRUE(rejected(team(), {rule("p", {"*"}, {}, 0, 2000, 1000)}, &error));
  EXPECT_NE(error.find("port"), std::string::npos) << error;
  EXPECT_TRUE(rejected(team(), {rule("d", {"*"}, {Prefix{4, {}, 33}})}, &error));
  EXPECT_NE(error.find("destination"), std::string::npos) << error;
  std::vector<AclIdentity> peers = team();
  peers.push_back(peer(2, "dave", "dave-pc"));
  EXPECT_TRUE(rejected(peers, {rule("r", {"*"})}, &error));
  EXPECT_NE(error.find("duplicate"), std::string::npos) << error;
  error.clear();
  EXPECT_TRUE(rejected({peer(kMaxPeerSlots, "x", "y")}, {rule("r", {"*"})}, &error));
  EXPECT_FALSE(error.empty());
}

// ---- Evaluation order and matching ------------------------------------------------------------

TEST_F(AclTest, FirstMatchWins) {
  const std::vector<AclRule> deny_ssh_first = {
      rule("no-ssh", {"*"}, {v4("10.0.0.0", 8)}, kTcp, 22, 22, AclAction::kDrop),
      rule("net", {"*"}, {v4("10.0.0.0", 8)}, 0, 0, 65535, AclAction::kForward),
      rule("host", {"*"}, {v4("10.0.0.5", 32)}, kTcp, 22, 22, AclAction::kPuntToGateway),
  };
  const AclTable table = compile(team(), deny_ssh_first);
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.0.5", kTcp, 22)), 1u);
  EXPECT_EQ(table.action_of(1), AclAction::kDrop);
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.0.5", kTcp, 80)), 2u);
  EXPECT_EQ(table.action_of(2), AclAction::kForward);

  // The more specific rule only wins when it comes first.
  const std::vector<AclRule> host_first = {deny_ssh_first[2], deny_ssh_first[0], deny_ssh_first[1]};
  const AclTable reordered = compile(team(), host_first);
  EXPECT_EQ(classify(reordered, 1, ipv4_packet("10.0.0.5", kTcp, 22)), 1u);
  EXPECT_EQ(reordered.action_of(1), AclAction::kPuntToGateway);
  EXPECT_EQ(classify(reordered, 1, ipv4_packet("10.0.0.6", kTcp, 22)), 2u);
}

TEST_F(AclTest, DenyByDefault) {
  const AclTable empty = compile(team(), {});
  EXPECT_EQ(empty.rule_count(), 0u);
  EXPECT_EQ(classify(empty, 1, ipv4_packet("10.0.0.1", kTcp, 80)), 0u);
  EXPECT_EQ(classify(empty, 1, ipv6_packet("fd00::1", kTcp, 80)), 0u);
  EXPECT_EQ(empty.action_of(0), AclAction::kDrop);

  const AclTable table = compile(team(), {rule("r", {"*"}, {v4("10.0.0.0", 24)})});
  EXPECT_EQ(table.rule_count(), 1u);
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.1.1", kTcp, 80)), 0u);
  EXPECT_EQ(classify(table, 1, ipv6_packet("fd00::1", kTcp, 80)), 0u);
  EXPECT_EQ(table.action_of(0), AclAction::kDrop);
  EXPECT_EQ(table.action_of(7), AclAction::kDrop);
}

TEST_F(AclTest, RuleMatchingNoPeerCompilesToNothing) {
  const AclTable table =
      compile(team(), {rule("ghost", {"user:nobody"}), rule("all", {"*"}, {}, kUdp)});
  EXPECT_EQ(table.rule_count(), 2u);
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.0.1", kTcp, 80)), 0u);
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.0.1", kUdp, 80)), 2u);
}

TEST_F(AclTest, PortRangeEdges) {
  const AclTable table = compile(team(), {rule("r", {"*"}, {}, kTcp, 1000, 2000)});
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.0.1", kTcp, 999)), 0u);
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.0.1", kTcp, 1000)), 1u);
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.0.1", kTcp, 2000)), 1u);
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.0.1", kTcp, 2001)), 0u);

  const AclTable ends = compile(
      team(), {rule("low", {"*"}, {}, kUdp, 0, 0), rule("high", {"*"}, {}, kUdp, 65535, 65535)});
  EXPECT_EQ(classify(ends, 1, ipv4_packet("10.0.0.1", kUdp, 0)), 1u);
  EXPECT_EQ(classify(ends, 1, ipv4_packet("10.0.0.1", kUdp, 1)), 0u);
  EXPECT_EQ(classify(ends, 1, ipv4_packet("10.0.0.1", kUdp, 65534)), 0u);
  EXPECT_EQ(classify(ends, 1, ipv4_packet("10.0.0.1", kUdp, 65535)), 2u);
}

TEST_F(AclTest, ProtocolAnyVersusExact) {
  const AclTable udp_only = compile(team(), {rule("r", {"*"}, {}, kUdp)});
  EXPECT_EQ(classify(udp_only, 1, ipv4_packet("10.0.0.1", kUdp, 53)), 1u);
  EXPECT_EQ(classify(udp_only, 1, ipv4_packet("10.0.0.1", kTcp, 53)), 0u);
  EXPECT_EQ(classify(udp_only, 1, ipv4_packet("10.0.0.1", kIcmp, 0)), 0u);

  const AclTable any = compile(team(), {rule("r", {"*"}, {}, 0)});
  EXPECT_EQ(classify(any, 1, ipv4_packet("10.0.0.1", kUdp, 53)), 1u);
  EXPECT_EQ(classify(any, 1, ipv4_packet("10.0.0.1", kTcp, 53)), 1u);
  EXPECT_EQ(classify(any, 1, ipv4_packet("10.0.0.1", kIcmp, 0)), 1u);
  EXPECT_EQ(classify(any, 1, ipv4_packet("10.0.0.1", 47 /* GRE */, 0)), 1u);
}

TEST_F(AclTest, Ipv6Rules) {
  const AclTable table =
      compile(team(), {
                          rule("v6", {"group:eng"}, {v6("fd00:1::", 32)}, kTcp, 443, 443),
                          rule("mixed", {"bob"}, {v4("10.0.0.0", 8), v6("fd00:2::", 48)}),
                          rule("any-dst", {"carol"}, {}, kUdp),
                      });
  EXPECT_EQ(classify(table, 1, ipv6_packet("fd00:1:5::1", kTcp, 443)), 1u);
  EXPECT_EQ(classify(table, 1, ipv6_packet("fd00:1:5::1", kTcp, 444)), 0u);
  EXPECT_EQ(classify(table, 1, ipv6_packet("fd00:3::1", kTcp, 443)), 0u);
  EXPECT_EQ(classify(table, 2, ipv6_packet("fd00:1:5::1", kTcp, 443)), 0u);
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.0.1", kTcp, 443)), 0u);
  // A rule with both families' destinations applies to each family.
  EXPECT_EQ(classify(table, 2, ipv6_packet("fd00:2::9", kIcmp, 0)), 2u);
  EXPECT_EQ(classify(table, 2, ipv6_packet("fd00:2:1::9", kIcmp, 0)), 0u);
  EXPECT_EQ(classify(table, 2, ipv4_packet("10.9.9.9", kIcmp, 0)), 2u);
  // A rule without destinations applies to both families.
  EXPECT_EQ(classify(table, 3, ipv6_packet("2001:db8::1", kUdp, 1)), 3u);
  EXPECT_EQ(classify(table, 3, ipv4_packet("8.8.8.8", kUdp, 1)), 3u);
}

TEST_F(AclTest, Ipv6PrefixesAcrossWordBoundaries) {
  const AclTable table = compile(team(), {rule("/60", {"*"}, {v6("fd00:0:0:10::", 60)}),
                                          rule("/100", {"*"}, {v6("fd00::1:0:0", 100)})});
  EXPECT_EQ(classify(table, 1, ipv6_packet("fd00:0:0:1f::1", kTcp, 1)), 1u);
  EXPECT_EQ(classify(table, 1, ipv6_packet("fd00:0:0:20::1", kTcp, 1)), 0u);
  EXPECT_EQ(classify(table, 1, ipv6_packet("fd00::1:0:fff", kTcp, 1)), 2u);
  EXPECT_EQ(classify(table, 1, ipv6_packet("fd00::1:1000:0", kTcp, 1)), 0u);
}

// ---- Keys -------------------------------------------------------------------------------------

TEST_F(AclTest, KeysCarryNetworkOrderFields) {
  AclKeyV4 key4;
  const auto packet4 = ipv4_packet("10.1.2.3", kTcp, 443);
  ASSERT_TRUE(fill_key_v4(key4, 7, packet4.data(), static_cast<uint32_t>(packet4.size())));
  EXPECT_EQ(key4.proto, kTcp);
  EXPECT_EQ(std::memcmp(&key4.dst, &packet4[16], 4), 0);
  EXPECT_EQ(key4.dport, htons(443));
  EXPECT_EQ(key4.sport, htons(40000));
  EXPECT_EQ(key4.klass, htonl(7));

  AclKeyV6 key6;
  const auto packet6 = ipv6_packet("fd00::42", kUdp, 53);
  ASSERT_TRUE(fill_key_v6(key6, 9, packet6.data(), static_cast<uint32_t>(packet6.size())));
  EXPECT_EQ(key6.proto, kUdp);
  EXPECT_EQ(std::memcmp(key6.dst, &packet6[24], 16), 0);
  EXPECT_EQ(key6.dport, htons(53));
  EXPECT_EQ(key6.klass, htonl(9));
}

TEST_F(AclTest, PortsOnlyForTcpAndUdpFirstFragments) {
  AclKeyV4 key;
  auto icmp = ipv4_packet("10.0.0.1", kIcmp, 0x0800);
  ASSERT_TRUE(fill_key_v4(key, 1, icmp.data(), static_cast<uint32_t>(icmp.size())));
  EXPECT_EQ(key.dport, 0);
  EXPECT_EQ(key.sport, 0);

  const auto first_fragment = ipv4_packet("10.0.0.1", kUdp, 53, 0x2000 /* MF */);
  ASSERT_TRUE(
      fill_key_v4(key, 1, first_fragment.data(), static_cast<uint32_t>(first_fragment.size())));
  EXPECT_EQ(key.dport, htons(53));

  const auto later_fragment = ipv4_packet("10.0.0.1", kUdp, 53, 0x2000 | 185);
  ASSERT_TRUE(
      fill_key_v4(key, 1, later_fragment.data(), static_cast<uint32_t>(later_fragment.size())));
  EXPECT_EQ(key.dport, 0);
  EXPECT_EQ(key.proto, kUdp);

  const auto truncated = ipv4_packet("10.0.0.1", kTcp, 80);
  ASSERT_TRUE(fill_key_v4(key, 1, truncated.data(), 22));
  EXPECT_EQ(key.dport, 0);

  // The ACL sees the same thing: a port rule misses later fragments, a full-range rule does not.
  const AclTable table =
      compile(team(), {rule("dns", {"*"}, {}, kUdp, 53, 53), rule("udp", {"*"}, {}, kUdp)});
  EXPECT_EQ(classify(table, 1, first_fragment), 1u);
  EXPECT_EQ(classify(table, 1, later_fragment), 2u);
}

TEST_F(AclTest, Ipv6ExtensionHeadersAreSkipped) {
  AclKeyV6 key;
  const auto hop_by_hop = ipv6_packet("fd00::1", kTcp, 22, {{IPPROTO_HOPOPTS, 0}});
  ASSERT_TRUE(fill_key_v6(key, 1, hop_by_hop.data(), static_cast<uint32_t>(hop_by_hop.size())));
  EXPECT_EQ(key.proto, kTcp);
  EXPECT_EQ(key.dport, htons(22));

  const auto first_fragment = ipv6_packet(
      "fd00::1", kTcp, 22, {{IPPROTO_DSTOPTS, 0}, {IPPROTO_FRAGMENT, 1 /* M, offset 0 */}});
  ASSERT_TRUE(
      fill_key_v6(key, 1, first_fragment.data(), static_cast<uint32_t>(first_fragment.size())));
  EXPECT_EQ(key.proto, kTcp);
  EXPECT_EQ(key.dport, htons(22));

  const auto later_fragment = ipv6_packet("fd00::1", kTcp, 22, {{IPPROTO_FRAGMENT, 185 << 3}});
  ASSERT_TRUE(
      fill_key_v6(key, 1, later_fragment.data(), static_cast<uint32_t>(later_fragment.size())));
  EXPECT_EQ(key.proto, kTcp);
  EXPECT_EQ(key.dport, 0);

  const std::vector<Extension> too_many(9, Extension{IPPROTO_DSTOPTS, 0});
  const auto long_chain = ipv6_packet("fd00::1", kTcp, 22, too_many);
  EXPECT_FALSE(fill_key_v6(key, 1, long_chain.data(), static_cast<uint32_t>(long_chain.size())));
}

TEST_F(AclTest, MalformedHeadersMatchNothing) {
  const AclTable table = compile(team(), {rule("all", {"*"})});
  AclKeyV4 key4;
  auto packet4 = ipv4_packet("10.0.0.1", kTcp, 80);
  EXPECT_FALSE(fill_key_v4(key4, table.class_of(1), packet4.data(), 19));
  packet4[0] = 0x44;  // IHL below 5
  EXPECT_FALSE(fill_key_v4(key4, table.class_of(1), packet4.data(), 28));
  packet4[0] = 0x48;  // IHL beyond the buffer
  EXPECT_FALSE(fill_key_v4(key4, table.class_of(1), packet4.data(), 28));
  packet4[0] = 0x65;  // not IPv4
  EXPECT_FALSE(fill_key_v4(key4, table.class_of(1), packet4.data(), 28));
  uint32_t result = 1;
  const AclKeyV4* keys4[] = {&key4};
  table.classify_v4(keys4, &result, 1);
  EXPECT_EQ(result, 0u);

  AclKeyV6 key6;
  const auto packet6 = ipv6_packet("fd00::1", kTcp, 80, {{IPPROTO_HOPOPTS, 0}});
  EXPECT_FALSE(fill_key_v6(key6, table.class_of(1), packet6.data(), 44));  // cut in extension
  result = 1;
  const AclKeyV6* keys6[] = {&key6};
  table.classify_v6(keys6, &result, 1);
  EXPECT_EQ(result, 0u);
}

// ---- Identity classes -------------------------------------------------------------------------

TEST_F(AclTest, PeersWithTheSameMembershipsShareAClass) {
  const std::vector<AclIdentity> peers = {
      peer(10, "u1", "d1", {"x"}, {"eng"}),
      peer(11, "u2", "d2", {"y"}, {"eng"}),  // tag y is used by no rule
      peer(12, "u3", "d3", {}, {"ops"}), peer(13, "u4", "d4", {}, {"sales"}),  // matches no rule
  };
  const AclTable table = compile(peers, {rule("eng", {"group:eng"}), rule("ops", {"group:ops"})});
  EXPECT_EQ(table.class_of(10), table.class_of(11));
  EXPECT_NE(table.class_of(10), table.class_of(12));
  EXPECT_NE(table.class_of(10), 0u);
  EXPECT_NE(table.class_of(12), 0u);
  EXPECT_EQ(table.class_of(13), 0u);
  EXPECT_EQ(table.class_of(14), 0u);
  EXPECT_EQ(table.class_of(1u << 30), 0u);
  EXPECT_EQ(table.class_count(), 2u);
}

TEST_F(AclTest, ManyPeersFewClasses) {
  std::vector<AclIdentity> peers;
  for (uint32_t slot = 0; slot < 1000; ++slot) {
    peers.push_back(
        peer(slot, "user" + std::to_string(slot), "dev", {}, {slot % 2 == 0 ? "even" : "odd"}));
  }
  const AclTable table = compile(peers, {rule("even", {"group:even"}, {v4("10.0.0.0", 8)}),
                                         rule("all", {"*"}, {v4("10.0.0.0", 8)}, kUdp)});
  EXPECT_EQ(table.class_count(), 2u);
  EXPECT_EQ(classify(table, 500, ipv4_packet("10.0.0.1", kTcp, 1)), 1u);
  EXPECT_EQ(classify(table, 501, ipv4_packet("10.0.0.1", kTcp, 1)), 0u);
  EXPECT_EQ(classify(table, 501, ipv4_packet("10.0.0.1", kUdp, 1)), 2u);
}

// Past 65535 classes the class no longer fits the narrow layout's 16 bits: a class above that
// must still match its own rules and not those of the class sharing its low 16 bits.
TEST_F(AclTest, ClassesBeyondSixteenBitsMatchOnlyTheirOwnRules) {
  constexpr uint32_t kPeers = (1u << 16) + 2;
  std::vector<AclIdentity> peers;
  std::vector<AclRule> rules;
  for (uint32_t slot = 0; slot < kPeers; ++slot) {
    const std::string user = "u" + std::to_string(slot);
    peers.push_back(AclIdentity{slot, user, "dev", "", {}, {}});
    rules.push_back(rule(user, {"user:" + user}, {v4("10.0.0.0", 8)}));
  }
  const AclTable table = compile(peers, rules);
  ASSERT_EQ(table.class_count(), kPeers);
  // Every peer is a class of its own; check those above 16 bits and those they would alias.
  std::vector<uint32_t> low_slot_of(1u << 16, kPeers);
  for (uint32_t slot = 0; slot < kPeers; ++slot) {
    if (table.class_of(slot) <= 0xffff) low_slot_of[table.class_of(slot)] = slot;
  }
  int aliased = 0;
  for (uint32_t slot = 0; slot < kPeers; ++slot) {
    const uint32_t klass = table.class_of(slot);
    if (klass <= 0xffff) continue;
    EXPECT_EQ(classify(table, slot, ipv4_packet("10.1.2.3", kTcp, 443)), slot + 1) << slot;
    EXPECT_EQ(classify(table, slot, ipv4_packet("11.1.2.3", kTcp, 443)), 0u) << slot;
    const uint32_t alias = low_slot_of[klass & 0xffff];
    if (alias == kPeers) continue;
    ++aliased;
    EXPECT_EQ(classify(table, alias, ipv4_packet("10.1.2.3", kTcp, 443)), alias + 1) << alias;
  }
  EXPECT_GE(aliased, 1);
}

// A recompile that yields the same rte_acl rules shares the running contexts: here the peers
// move to other slots (as new keys do) with the same identities. Any change to the rules or to
// the identity classes builds anew.
TEST_F(AclTest, ARecompileOfTheSameRulesSharesTheRunningContexts) {
  const std::vector<AclRule> rules = {
      rule("eng-web", {"group:eng"}, {v4("10.0.0.0", 8)}, kTcp, 443, 443),
      rule("ops-any", {"group:ops"}, {v6("fd00::", 8)})};
  const AclTable running = compile(team(), rules);

  std::vector<AclIdentity> moved = team();
  for (AclIdentity& p : moved) p.peer_slot += 100;
  std::string error;
  const std::optional<AclTable> same = AclTable::compile(moved, rules, &error, running.contexts());
  ASSERT_TRUE(same) << error;
  EXPECT_EQ(same->contexts(), running.contexts());
  EXPECT_EQ(classify(*same, 101, ipv4_packet("10.1.2.3", kTcp, 443)), 1u);  // alice, eng
  EXPECT_EQ(classify(*same, 102, ipv4_packet("10.1.2.3", kTcp, 443)), 0u);  // bob, ops
  EXPECT_EQ(classify(*same, 102, ipv6_packet("fd00::1", kUdp, 53)), 2u);
  EXPECT_EQ(classify(*same, 1, ipv4_packet("10.1.2.3", kTcp, 443)), 0u);  // the old slot

  std::vector<AclRule> other_port = rules;
  other_port[0].port_low = other_port[0].port_high = 8443;
  const std::optional<AclTable> changed =
      AclTable::compile(team(), other_port, &error, running.contexts());
  ASSERT_TRUE(changed) << error;
  EXPECT_NE(changed->contexts(), running.contexts());
  EXPECT_EQ(classify(*changed, 1, ipv4_packet("10.1.2.3", kTcp, 443)), 0u);
  EXPECT_EQ(classify(*changed, 1, ipv4_packet("10.1.2.3", kTcp, 8443)), 1u);
  EXPECT_EQ(classify(running, 1, ipv4_packet("10.1.2.3", kTcp, 443)), 1u);

  std::vector<AclIdentity> regrouped = team();
  regrouped[1].groups = {"eng"};  // bob joins eng and leaves ops: the classes change
  const std::optional<AclTable> reclassed =
      AclTable::compile(regrouped, rules, &error, running.contexts());
  ASSERT_TRUE(reclassed) << error;
  EXPECT_NE(reclassed->contexts(), running.contexts());
  EXPECT_EQ(classify(*reclassed, 2, ipv4_packet("10.1.2.3", kTcp, 443)), 1u);
  EXPECT_EQ(classify(*reclassed, 2, ipv6_packet("fd00::1", kUdp, 53)), 0u);
}

TEST_F(AclTest, UnknownSlotMatchesNotEvenWildcardRules) {
  const AclTable table = compile(team(), {rule("all", {"*"})});
  EXPECT_EQ(classify(table, 1, ipv4_packet("10.0.0.1", kTcp, 1)), 1u);
  EXPECT_EQ(classify(table, 42, ipv4_packet("10.0.0.1", kTcp, 1)), 0u);
  EXPECT_EQ(classify(table, 42, ipv6_packet("fd00::1", kTcp, 1)), 0u);
}

TEST_F(AclTest, GenerationsCoexist) {
  AclTable allow = compile(team(), {rule("all", {"*"}, {}, 0, 0, 65535, AclAction::kForward)});
  const AclTable punt =
      compile(team(), {rule("all", {"*"}, {}, 0, 0, 65535, AclAction::kPuntToGateway)});
  const auto packet = ipv4_packet("10.0.0.1", kTcp, 1);
  EXPECT_EQ(allow.action_of(classify(allow, 1, packet)), AclAction::kForward);
  EXPECT_EQ(punt.action_of(classify(punt, 1, packet)), AclAction::kPuntToGateway);
  AclTable moved = std::move(allow);
  EXPECT_EQ(moved.action_of(classify(moved, 1, packet)), AclAction::kForward);
}

// ---- Randomized comparison against a naive first-match evaluator ------------------------------

bool naive_selector_matches(std::string_view selector, const AclIdentity& peer) {
  if (selector == "*") return true;
  const size_t colon = selector.find(':');
  if (colon == std::string_view::npos) return peer.user == selector;
  const std::string_view kind = selector.substr(0, colon);
  const std::string_view name = selector.substr(colon + 1);
  auto contains = [&](const std::vector<std::string>& list) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };
  if (kind == "user") return peer.user == name;
  if (kind == "device") return peer.device == name;
  if (kind == "tag") return contains(peer.tags);
  if (kind == "group") return contains(peer.groups);
  if (kind == "peer") return peer.public_key_b64 == name;
  ADD_FAILURE() << "test generated a bad selector " << selector;
  return false;
}

bool naive_prefix_contains(const Prefix& prefix, uint8_t family, const uint8_t* addr) {
  if (prefix.family != family) return false;
  for (uint32_t bit = 0; bit < prefix.len; ++bit) {
    const uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((prefix.addr[bit / 8] & mask) != (addr[bit / 8] & mask)) return false;
  }
  return true;
}

struct NaivePacket {
  const AclIdentity* sender;  // nullptr: slot not in the policy
  uint8_t family;
  std::array<uint8_t, 16> dst;
  uint8_t proto;
  uint16_t dport;
};

uint32_t naive_first_match(const std::vector<AclRule>& rules, const NaivePacket& packet) {
  if (packet.sender == nullptr) return 0;
  const uint16_t port = packet.proto == kTcp || packet.proto == kUdp ? packet.dport : 0;
  for (size_t i = 0; i < rules.size(); ++i) {
    const AclRule& r = rules[i];
    const bool source = std::any_of(r.sources.begin(), r.sources.end(), [&](const std::string& s) {
      return naive_selector_matches(s, *packet.sender);
    });
    const bool destination =
        r.destinations.empty() ||
        std::any_of(r.destinations.begin(), r.destinations.end(), [&](const Prefix& p) {
          return naive_prefix_contains(p, packet.family, packet.dst.data());
        });
    const bool protocol = r.protocol == 0 || r.protocol == packet.proto;
    const bool ports = port >= r.port_low && port <= r.port_high;
    if (source && destination && protocol && ports) return static_cast<uint32_t>(i + 1);
  }
  return 0;
}

class RandomPolicy {
 public:
  explicit RandomPolicy(uint32_t seed) : rng_(seed) {}

  std::vector<AclIdentity> peers(size_t count) {
    std::vector<AclIdentity> out;
    for (size_t i = 0; i < count; ++i) {
      AclIdentity p = peer(static_cast<uint32_t>(i * 3 + 1), pick(kUsers), pick(kDevices));
      for (const char* tag : kTags) {
        if (rng_() % 3 == 0) p.tags.push_back(tag);
      }
      for (const char* group : kGroups) {
        if (rng_() % 3 == 0) p.groups.push_back(group);
      }
      out.push_back(std::move(p));
    }
    return out;
  }

  std::vector<AclRule> rules(size_t count, const std::vector<AclIdentity>& peers) {
    std::vector<AclRule> out;
    for (size_t i = 0; i < count; ++i) {
      AclRule r;
      r.name = "rule" + std::to_string(i);
      const size_t sources = 1 + rng_() % 3;
      for (size_t s = 0; s < sources; ++s) r.sources.push_back(selector(peers));
      const size_t destinations = rng_() % 4;
      for (size_t d = 0; d < destinations; ++d) r.destinations.push_back(prefix());
      static constexpr uint8_t kProtocols[] = {0, 0, kTcp, kUdp, kIcmp};
      r.protocol = kProtocols[rng_() % std::size(kProtocols)];
      if (rng_() % 2 == 0) {
        r.port_low = port();
        r.port_high = port();
        if (r.port_low > r.port_high) std::swap(r.port_low, r.port_high);
      }
      r.action = static_cast<AclAction>(rng_() % 3);
      out.push_back(std::move(r));
    }
    return out;
  }

  // Packets aimed at the rules' prefixes and port edges, from known and unknown senders.
  NaivePacket packet(const std::vector<AclIdentity>& peers, const std::vector<AclRule>& rules) {
    NaivePacket p{};
    p.sender = rng_() % 10 == 0 ? nullptr : &peers[rng_() % peers.size()];
    const AclRule& near = rules[rng_() % rules.size()];
    if (!near.destinations.empty() && rng_() % 4 != 0) {
      const Prefix& target = near.destinations[rng_() % near.destinations.size()];
      p.family = target.family;
      p.dst = target.addr;
      const uint32_t bits = target.family == 4 ? 32 : 128;
      const uint32_t from = rng_() % 3 == 0 ? rng_() % (bits + 1) : target.len;
      for (uint32_t bit = from; bit < bits; ++bit) {
        if (rng_() & 1) p.dst[bit / 8] ^= static_cast<uint8_t>(0x80 >> (bit % 8));
      }
    } else {
      const Prefix random = prefix();
      p.family = random.family;
      p.dst = random.addr;
    }
    static constexpr uint8_t kProtocols[] = {kTcp, kUdp, kIcmp, 47};
    p.proto = kProtocols[rng_() % std::size(kProtocols)];
    switch (rng_() % 4) {
      case 0:
        p.dport = near.port_low;
        break;
      case 1:
        p.dport = near.port_high;
        break;
      case 2:
        p.dport = static_cast<uint16_t>(near.port_low - 1 + 2 * (rng_() % 2));
        break;
      default:
        p.dport = port();
        break;
    }
    return p;
  }

 private:
  static constexpr const char* kUsers[] = {"ann", "ben", "cid", "dee", "eve", "fay"};
  static constexpr const char* kDevices[] = {"laptop", "phone", "server", "tablet"};
  static constexpr const char* kTags[] = {"ci", "prod", "lab", "vip"};
  static constexpr const char* kGroups[] = {"eng", "ops", "sales"};

  template <size_t N>
  const char* pick(const char* const (&names)[N]) {
    return names[rng_() % N];
  }

  std::string selector(const std::vector<AclIdentity>& peers) {
    switch (rng_() % 8) {
      case 0:
        return "*";
      case 1:
        return std::string("user:") + pick(kUsers);
      case 2:
        return pick(kUsers);
      case 3:
        return std::string("group:") + pick(kGroups);
      case 4:
        return std::string("tag:") + pick(kTags);
      case 5:
        return std::string("device:") + pick(kDevices);
      case 6:
        return "peer:" + peers[rng_() % peers.size()].public_key_b64;
      default:
        return "user:nobody";
    }
  }

  Prefix prefix() {
    Prefix p{};
    if (rng_() % 2 == 0) {
      p.family = 4;
      p.addr[0] = 10;
      p.addr[1] = static_cast<uint8_t>(rng_() % 4);
      for (size_t i = 2; i < 4; ++i) p.addr[i] = static_cast<uint8_t>(rng_());
      p.len = static_cast<uint8_t>(rng_() % 33);
    } else {
      p.family = 6;
      p.addr[0] = 0xfd;
      p.addr[1] = static_cast<uint8_t>(rng_() % 4);
      for (size_t i = 2; i < 16; ++i)
        p.addr[i] = static_cast<uint8_t>(rng_() % 4 == 0 ? rng_() : 0);
      p.len = static_cast<uint8_t>(rng_() % 129);
    }
    return p;
  }

  uint16_t port() {
    static constexpr uint16_t kPorts[] = {0, 1, 22, 53, 80, 443, 1024, 8080, 65534, 65535};
    return rng_() % 2 == 0 ? kPorts[rng_() % std::size(kPorts)] : static_cast<uint16_t>(rng_());
  }

  std::mt19937 rng_;
};

std::vector<uint8_t> to_wire(const NaivePacket& p) {
  return p.family == 4 ? ipv4_packet(p.dst.data(), p.proto, p.dport)
                       : ipv6_packet(p.dst.data(), p.proto, p.dport);
}

TEST_F(AclTest, RandomizedMatchesNaiveFirstMatch) {
  constexpr uint32_t kBurst = 64;
  size_t matched = 0, total = 0;
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    RandomPolicy random(seed);
    const std::vector<AclIdentity> peers = random.peers(30);
    const std::vector<AclRule> rules = random.rules(40, peers);
    const AclTable table = compile(peers, rules);
    ASSERT_EQ(table.rule_count(), rules.size());

    for (int burst = 0; burst < 30; ++burst) {
      std::vector<NaivePacket> packets;
      std::vector<AclKeyV4> keys4;
      std::vector<AclKeyV6> keys6;
      keys4.reserve(kBurst);
      keys6.reserve(kBurst);
      std::vector<const AclKeyV4*> ptrs4;
      std::vector<const AclKeyV6*> ptrs6;
      std::vector<uint32_t> expected4, expected6;
      for (uint32_t i = 0; i < kBurst; ++i) {
        const NaivePacket p = random.packet(peers, rules);
        const uint32_t klass = table.class_of(p.sender != nullptr ? p.sender->peer_slot : 0);
        const std::vector<uint8_t> wire = to_wire(p);
        const uint32_t expected = naive_first_match(rules, p);
        if (p.family == 4) {
          ASSERT_TRUE(fill_key_v4(keys4.emplace_back(), klass, wire.data(),
                                  static_cast<uint32_t>(wire.size())));
          ptrs4.push_back(&keys4.back());
          expected4.push_back(expected);
        } else {
          ASSERT_TRUE(fill_key_v6(keys6.emplace_back(), klass, wire.data(),
                                  static_cast<uint32_t>(wire.size())));
          ptrs6.push_back(&keys6.back());
          expected6.push_back(expected);
        }
      }
      std::vector<uint32_t> results4(ptrs4.size()), results6(ptrs6.size());
      table.classify_v4(ptrs4.data(), results4.data(), static_cast<uint32_t>(ptrs4.size()));
      table.classify_v6(ptrs6.data(), results6.data(), static_cast<uint32_t>(ptrs6.size()));
      ASSERT_EQ(results4, expected4) << "seed " << seed << " burst " << burst;
      ASSERT_EQ(results6, expected6) << "seed " << seed << " burst " << burst;
      for (uint32_t r : expected4) matched += r != 0;
      for (uint32_t r : expected6) matched += r != 0;
      total += kBurst;
    }
  }
  // The comparison covered both matches and misses in bulk.
  EXPECT_GT(matched, total / 10);
  EXPECT_LT(matched, total - total / 10);
}

}  // namespace
}  // namespace airlock::dp
