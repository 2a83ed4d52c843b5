#include "policy/peer_directory.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "policy/builder.h"
#include "policy/document.h"
#include "policy/policy.h"

namespace airlock::policy {
namespace {

IpPrefix address(const char* text) {
  return parse_prefix(text).value();
}

Key key_of(uint32_t seed) {
  Key key{};
  std::mt19937 rng(seed);
  for (uint8_t& byte : key) byte = static_cast<uint8_t>(rng());
  return key;
}

PeerSpec peer(uint32_t seed, std::string user, std::vector<PrefixSpec> allowed) {
  PeerSpec p;
  p.public_key = key_of(seed);
  p.user = std::move(user);
  p.allowed_ips = std::move(allowed);
  return p;
}

// What a gateway request resolves to must not depend on which lookup answers it.
void expect_same(const Document& document, const PeerDirectory& directory, const IpPrefix& host) {
  const std::optional<Identity> scanned = document.identity_of_address(host);
  const PeerEntry* indexed = directory.by_address(host);
  ASSERT_EQ(scanned.has_value(), indexed != nullptr) << format_prefix(host);
  if (scanned) {
    EXPECT_EQ(indexed->identity.user, scanned->user) << format_prefix(host);
    EXPECT_EQ(indexed->identity.public_key, scanned->public_key) << format_prefix(host);
    EXPECT_EQ(indexed->key_base64, encode_key_base64(scanned->public_key)) << format_prefix(host);
  }
}

TEST(PeerDirectory, LongestPrefixWinsInBothFamilies) {
  Document document;
  document.peers = {
      peer(1, "alice", {"100.80.0.2/32", "fd00:80::2/128"}),
      peer(2, "bob", {"100.80.1.0/24", "fd00:81::/64"}),
      peer(3, "ci", {"100.80.1.7/32"}),
      peer(4, "everyone", {"0.0.0.0/0"}),
  };
  document.groups = {{"builders", {"user:ci"}}};
  const PeerDirectory directory(document);
  EXPECT_EQ(directory.size(), 4u);
  EXPECT_EQ(directory.by_address(address("100.80.0.2"))->identity.user, "alice");
  EXPECT_EQ(directory.by_address(address("fd00:80::2"))->identity.user, "alice");
  EXPECT_EQ(directory.by_address(address("100.80.1.8"))->identity.user, "bob");
  EXPECT_EQ(directory.by_address(address("100.80.1.7"))->identity.user, "ci");
  EXPECT_EQ(directory.by_address(address("100.80.1.7"))->identity.groups,
            std::vector<std::string>{"builders"});
  EXPECT_EQ(directory.by_address(address("fd00:81::1234"))->identity.user, "bob");
  EXPECT_EQ(directory.by_address(address("100.80.0.9"))->identity.user, "everyone");
  EXPECT_EQ(directory.by_address(address("fd00:82::1")), nullptr);
}

TEST(PeerDirectory, KeysFindTheirPeerAndNothingElse) {
  Document document;
  document.peers = {peer(1, "alice", {"100.80.0.2/32"}), peer(2, "bob", {"100.80.0.3/32"})};
  const PeerDirectory directory(document);
  EXPECT_EQ(directory.by_key(key_of(2))->identity.user, "bob");
  EXPECT_EQ(directory.by_key(key_of(2))->identity.public_key, key_of(2));
  EXPECT_EQ(directory.by_key(key_of(2))->key_base64, encode_key_base64(key_of(2)));
  EXPECT_EQ(directory.by_key(key_of(1))->identity.user, "alice");
  EXPECT_EQ(directory.by_key(key_of(3)), nullptr);
}

TEST(PeerDirectory, AnEmptyPolicyKnowsNobody) {
  const PeerDirectory directory(Document{});
  EXPECT_EQ(directory.by_address(address("10.0.0.1")), nullptr);
  EXPECT_EQ(directory.by_key(key_of(1)), nullptr);
}

// Thousands of peers with nested and repeated prefixes of every length: the directory answers
// every address as the Document's scan does, repeats included (the first peer holds them).
TEST(PeerDirectory, AgreesWithTheDocumentsScan) {
  std::mt19937 rng(7);
  Document document;
  std::vector<IpPrefix> prefixes;
  for (uint32_t i = 0; i < 3000; ++i) {
    std::vector<PrefixSpec> allowed;
    const uint32_t count = 1 + rng() % 2;
    for (uint32_t n = 0; n < count; ++n) {
      IpPrefix prefix;
      if (rng() % 4 != 0) {
        prefix.family = Family::V4;
        prefix.len = static_cast<uint8_t>(16 + rng() % 17);
        prefix.addr[0] = 10;
        prefix.addr[1] = static_cast<uint8_t>(rng() % 2);
        prefix.addr[2] = static_cast<uint8_t>(rng() % 8);
        prefix.addr[3] = static_cast<uint8_t>(rng());
      } else {
        prefix.family = Family::V6;
        prefix.len = static_cast<uint8_t>(40 + rng() % 89);
        prefix.addr[0] = 0xfd;
        prefix.addr[5] = static_cast<uint8_t>(rng() % 4);
        prefix.addr[15] = static_cast<uint8_t>(rng());
      }
      const IpPrefix clean = network_of(prefix);  // as a policy must give it
      prefixes.push_back(clean);
      allowed.emplace_back(format_prefix(clean));
    }
    document.peers.push_back(peer(100 + i, "u" + std::to_string(i), std::move(allowed)));
  }
  const PeerDirectory directory(document);

  for (const IpPrefix& prefix : prefixes) {
    IpPrefix host = prefix;
    host.len = max_prefix_length(host.family);
    expect_same(document, directory, host);
    // Another address inside the prefix, and one beside it.
    const size_t last = host.family == Family::V4 ? 3 : 15;
    host.addr[last] ^= static_cast<uint8_t>(rng());
    expect_same(document, directory, host);
    host.addr[last - 1] ^= 1;
    expect_same(document, directory, host);
  }
  for (uint32_t i = 0; i < 3000; ++i) {
    const std::optional<Identity> scanned = document.identity_of_key(key_of(100 + i));
    ASSERT_NE(directory.by_key(key_of(100 + i)), nullptr);
    EXPECT_EQ(directory.by_key(key_of(100 + i))->identity.user, scanned->user);
  }
}

}  // namespace
}  // namespace airlock::policy
