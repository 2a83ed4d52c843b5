#include "dataplane/allowedips.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "tests/eal_env.h"
#include "tests/prefix.h"

namespace airlock::dp {
namespace {

using test::v4;
using test::v6;

uint32_t addr4(const char* text) {
  uint32_t be = 0;
  EXPECT_EQ(inet_pton(AF_INET, text, &be), 1) << text;
  return be;
}

std::array<uint8_t, 16> addr6(const char* text) {
  std::array<uint8_t, 16> addr{};
  EXPECT_EQ(inet_pton(AF_INET6, text, addr.data()), 1) << text;
  return addr;
}

class AllowedIpsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { test::ensure_eal(); }

  static AllowedIps make(uint32_t max_v4, uint32_t max_v6) {
    std::string error;
    std::optional<AllowedIps> table = AllowedIps::create(max_v4, max_v6, &error);
    EXPECT_TRUE(table.has_value()) << error;
    return std::move(*table);
  }

  static void add(AllowedIps& table, const Prefix& prefix, uint32_t slot) {
    std::string error;
    ASSERT_TRUE(table.add(prefix, slot, &error)) << format_prefix(prefix) << ": " << error;
  }
};

TEST_F(AllowedIpsTest, HostRoutes) {
  AllowedIps table = make(16, 16);
  add(table, v4("10.0.0.1", 32), 1);
  add(table, v4("10.0.0.2", 32), 2);
  EXPECT_EQ(table.lookup_v4(addr4("10.0.0.1")), 1u);
  EXPECT_EQ(table.lookup_v4(addr4("10.0.0.2")), 2u);
  EXPECT_EQ(table.lookup_v4(addr4("10.0.0.3")), kNoPeer);
  EXPECT_EQ(table.lookup_v4(addr4("1.0.0.10")), kNoPeer);  // byte order matters
}

TEST_F(AllowedIpsTest, LongestPrefixWins) {
  AllowedIps table = make(16, 16);
  add(table, v4("10.0.0.0", 8), 1);
  add(table, v4("10.1.0.0", 16), 2);
  add(table, v4("10.1.2.0", 24), 3);
  add(table, v4("10.1.2.128", 25), 4);
  add(table, v4("10.1.2.200", 32), 5);
  EXPECT_EQ(table.lookup_v4(addr4("10.200.0.1")), 1u);
  EXPECT_EQ(table.lookup_v4(addr4("10.1.200.1")), 2u);
  EXPECT_EQ(table.lookup_v4(addr4("10.1.2.127")), 3u);
  EXPECT_EQ(table.lookup_v4(addr4("10.1.2.128")), 4u);
  EXPECT_EQ(table.lookup_v4(addr4("10.1.2.199")), 4u);
  EXPECT_EQ(table.lookup_v4(addr4("10.1.2.200")), 5u);
  EXPECT_EQ(table.lookup_v4(addr4("10.1.2.201")), 4u);
  EXPECT_EQ(table.lookup_v4(addr4("11.0.0.0")), kNoPeer);
}

TEST_F(AllowedIpsTest, HostBitsOfPrefixAreIgnored) {
  AllowedIps table = make(16, 16);
  add(table, v4("192.168.7.77", 24), 9);
  add(table, v6("fd00:1:2:3:4:5:6:7", 48), 10);
  EXPECT_EQ(table.lookup_v4(addr4("192.168.7.1")), 9u);
  EXPECT_EQ(table.lookup_v6(addr6("fd00:1:2::1").data()), 10u);
}

TEST_F(AllowedIpsTest, DefaultRoutes) {
  AllowedIps table = make(16, 16);
  EXPECT_EQ(table.lookup_v4(addr4("8.8.8.8")), kNoPeer);
  add(table, v4("0.0.0.0", 0), 7);
  add(table, v4("192.168.0.0", 16), 8);
  add(table, v6("::", 0), 17);
  add(table, v6("2001:db8::", 32), 18);
  EXPECT_EQ(table.lookup_v4(addr4("8.8.8.8")), 7u);
  EXPECT_EQ(table.lookup_v4(addr4("0.0.0.0")), 7u);
  EXPECT_EQ(table.lookup_v4(addr4("255.255.255.255")), 7u);
  EXPECT_EQ(table.lookup_v4(addr4("192.168.1.1")), 8u);
  EXPECT_EQ(table.lookup_v6(addr6("fe80::1").data()), 17u);
  EXPECT_EQ(table.lookup_v6(addr6("2001:db8:ffff::1").data()), 18u);
}

TEST_F(AllowedIpsTest, DefaultRouteWithoutTables) {
  AllowedIps table = make(0, 0);
  add(table, v4("0.0.0.0", 0), 3);
  const uint32_t addrs[3] = {addr4("1.2.3.4"), addr4("10.0.0.1"), addr4("0.0.0.1")};
  uint32_t slots[3] = {};
  table.lookup_v4_bulk(addrs, slots, 3);
  for (uint32_t slot : slots) EXPECT_EQ(slot, 3u);
  EXPECT_EQ(table.lookup_v6(addr6("::1").data()), kNoPeer);
}

TEST_F(AllowedIpsTest, Ipv6) {
  AllowedIps table = make(4, 16);
  add(table, v6("fd00::", 8), 1);
  add(table, v6("fd00:1::", 32), 2);
  add(table, v6("fd00:1:2:3::", 64), 3);
  add(table, v6("fd00:1:2:3::5", 128), 4);
  add(table, v6("fd00:1:2:3::6", 127), 5);
  EXPECT_EQ(table.lookup_v6(addr6("fd12::1").data()), 1u);
  EXPECT_EQ(table.lookup_v6(addr6("fd00:1:ffff::1").data()), 2u);
  EXPECT_EQ(table.lookup_v6(addr6("fd00:1:2:3::1").data()), 3u);
  EXPECT_EQ(table.lookup_v6(addr6("fd00:1:2:3::5").data()), 4u);
  EXPECT_EQ(table.lookup_v6(addr6("fd00:1:2:3::4").data()), 3u);
  EXPECT_EQ(table.lookup_v6(addr6("fd00:1:2:3::6").data()), 5u);
  EXPECT_EQ(table.lookup_v6(addr6("fd00:1:2:3::7").data()), 5u);
  EXPECT_EQ(table.lookup_v6(addr6("fe80::1").data()), kNoPeer);
  EXPECT_EQ(table.lookup_v4(addr4("10.0.0.1")), kNoPeer);
}

TEST_F(AllowedIpsTest, LargestSlotRoundTripsInBothFamilies) {
  AllowedIps table = make(4, 4);
  add(table, v4("10.0.0.0", 8), kMaxPeerSlots - 1);
  add(table, v6("fd00::", 48), kMaxPeerSlots - 1);
  EXPECT_EQ(table.lookup_v4(addr4("10.9.9.9")), kMaxPeerSlots - 1);
  EXPECT_EQ(table.lookup_v6(addr6("fd00::9").data()), kMaxPeerSlots - 1);
}

TEST_F(AllowedIpsTest, RejectsBadInput) {
  AllowedIps table = make(4, 4);
  std::string error;
  EXPECT_FALSE(table.add(v4("10.0.0.0", 8), kMaxPeerSlots, &error));
  EXPECT_FALSE(error.empty());
  EXPECT_FALSE(table.add(v6("fd00::", 8), kMaxPeerSlots, &error));
  error.clear();
  EXPECT_FALSE(table.add(Prefix{4, {10, 0, 0, 0}, 33}, 1, &error));
  EXPECT_FALSE(error.empty());
  error.clear();
  EXPECT_FALSE(table.add(Prefix{6, {0xfd}, 129}, 1, &error));
  EXPECT_FALSE(error.empty());
  EXPECT_FALSE(table.add(Prefix{5, {}, 8}, 1, &error));
  // Nothing was stored by the rejected adds.
  EXPECT_EQ(table.lookup_v4(addr4("10.0.0.1")), kNoPeer);
  EXPECT_EQ(table.lookup_v6(addr6("fd00::1").data()), kNoPeer);
}

TEST_F(AllowedIpsTest, SamePrefixForAnotherPeerIsRejected) {
  AllowedIps table = make(4, 4);
  add(table, v4("10.0.0.0", 24), 1);
  add(table, v4("10.0.0.0", 24), 1);  // same owner again: fine
  std::string error;
  EXPECT_FALSE(table.add(v4("10.0.0.99", 24), 2, &error));  // same network, other host bits
  EXPECT_NE(error.find("10.0.0"), std::string::npos) << error;
  EXPECT_EQ(table.lookup_v4(addr4("10.0.0.5")), 1u);

  add(table, v6("fd00::", 64), 3);
  EXPECT_FALSE(table.add(v6("fd00::", 64), 4, nullptr));
  add(table, v4("0.0.0.0", 0), 5);
  EXPECT_FALSE(table.add(v4("0.0.0.0", 0), 6, nullptr));
  EXPECT_EQ(table.lookup_v6(addr6("fd00::5").data()), 3u);
  EXPECT_EQ(table.lookup_v4(addr4("9.9.9.9")), 5u);
}

TEST_F(AllowedIpsTest, CapacityIsEnforced) {
  AllowedIps table = make(2, 0);
  add(table, v4("10.0.0.0", 24), 1);
  add(table, v4("10.0.1.0", 24), 1);
  std::string error;
  EXPECT_FALSE(table.add(v4("10.0.2.0", 24), 1, &error));
  EXPECT_FALSE(error.empty());
  error.clear();
  EXPECT_FALSE(table.add(v6("fd00::", 64), 1, &error));
  EXPECT_FALSE(error.empty());
}

TEST_F(AllowedIpsTest, GenerationsAreIndependent) {
  AllowedIps first = make(4, 4);
  AllowedIps second = make(4, 4);
  add(first, v4("10.0.0.0", 8), 1);
  add(second, v4("10.0.0.0", 8), 2);
  add(second, v6("fd00::", 8), 2);
  EXPECT_EQ(first.lookup_v4(addr4("10.1.1.1")), 1u);
  EXPECT_EQ(second.lookup_v4(addr4("10.1.1.1")), 2u);
  EXPECT_EQ(first.lookup_v6(addr6("fd00::1").data()), kNoPeer);

  AllowedIps moved = std::move(first);
  EXPECT_EQ(moved.lookup_v4(addr4("10.1.1.1")), 1u);
}

// ---- Randomized comparison against a naive longest-prefix match ------------------------------

struct Route {
  Prefix prefix;
  uint32_t slot;
};

bool prefix_contains(const Prefix& prefix, const uint8_t* addr) {
  for (uint32_t bit = 0; bit < prefix.len; ++bit) {
    const uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((prefix.addr[bit / 8] & mask) != (addr[bit / 8] & mask)) return false;
  }
  return true;
}

uint32_t naive_lookup(const std::vector<Route>& routes, const uint8_t* addr) {
  int best_len = -1;
  uint32_t best = kNoPeer;
  for (const Route& route : routes) {
    if (route.prefix.len > best_len && prefix_contains(route.prefix, addr)) {
      best_len = route.prefix.len;
      best = route.slot;
    }
  }
  return best;
}

Prefix masked(Prefix prefix) {
  for (uint32_t bit = prefix.len; bit < 128; ++bit) {
    prefix.addr[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  return prefix;
}

// Random prefixes clustered under a few bases so that they overlap a lot.
std::vector<Route> random_routes(std::mt19937& rng, uint8_t family, size_t count) {
  const uint32_t bits = family == 4 ? 32 : 128;
  const size_t bytes = bits / 8;
  std::vector<std::array<uint8_t, 16>> bases(6);
  for (auto& base : bases) {
    for (size_t i = 0; i < bytes; ++i) base[i] = static_cast<uint8_t>(rng());
  }
  std::map<std::pair<std::array<uint8_t, 16>, uint8_t>, uint32_t> seen;
  std::vector<Route> routes;
  std::uniform_int_distribution<uint32_t> len_dist(0, bits);
  while (routes.size() < count) {
    Prefix prefix{family, bases[rng() % bases.size()], static_cast<uint8_t>(len_dist(rng))};
    // Flip bits after a random point so prefixes share some but not all leading bits.
    const uint32_t keep = std::uniform_int_distribution<uint32_t>(0, bits)(rng);
    for (uint32_t bit = keep; bit < bits; ++bit) {
      if (rng() & 1) prefix.addr[bit / 8] ^= static_cast<uint8_t>(0x80 >> (bit % 8));
    }
    if (prefix.len == 0 && rng() % 8 != 0) continue;  // keep default routes rare
    prefix = masked(prefix);
    if (!seen.emplace(std::make_pair(prefix.addr, prefix.len), 0).second) continue;
    routes.push_back({prefix, static_cast<uint32_t>(rng() % kMaxPeerSlots)});
  }
  return routes;
}

std::vector<std::array<uint8_t, 16>> random_addresses(std::mt19937& rng,
                                                      const std::vector<Route>& routes,
                                                      uint8_t family, size_t count) {
  const uint32_t bits = family == 4 ? 32 : 128;
  std::vector<std::array<uint8_t, 16>> addrs(count);
  for (auto& addr : addrs) {
    const Route& near = routes[rng() % routes.size()];
    addr = near.prefix.addr;
    // Randomise the host part, and sometimes a few bits of the network part as well.
    const uint32_t from = rng() % 4 == 0 ? rng() % (bits + 1) : near.prefix.len;
    for (uint32_t bit = from; bit < bits; ++bit) {
      if (rng() & 1) addr[bit / 8] ^= static_cast<uint8_t>(0x80 >> (bit % 8));
    }
  }
  return addrs;
}

TEST_F(AllowedIpsTest, RandomizedV4MatchesNaiveLpm) {
  std::mt19937 rng(20261126);
  const std::vector<Route> routes = random_routes(rng, 4, 3000);
  AllowedIps table = make(3000, 0);
  for (const Route& route : routes) add(table, route.prefix, route.slot);

  const auto addrs = random_addresses(rng, routes, 4, 5000);
  std::vector<uint32_t> be(addrs.size());
  for (size_t i = 0; i < addrs.size(); ++i) std::memcpy(&be[i], addrs[i].data(), 4);
  std::vector<uint32_t> bulk(addrs.size());
  table.lookup_v4_bulk(be.data(), bulk.data(), static_cast<uint32_t>(be.size()));
  size_t hits = 0;
  for (size_t i = 0; i < addrs.size(); ++i) {
    const uint32_t expected = naive_lookup(routes, addrs[i].data());
    hits += expected != kNoPeer;
    ASSERT_EQ(table.lookup_v4(be[i]), expected) << "address " << i;
    ASSERT_EQ(bulk[i], expected) << "address " << i;
  }
  EXPECT_GT(hits, addrs.size() / 4);  // the comparison exercised matches, not just misses
}

TEST_F(AllowedIpsTest, RandomizedV6MatchesNaiveLpm) {
  std::mt19937 rng(6);
  const std::vector<Route> routes = random_routes(rng, 6, 2000);
  AllowedIps table = make(0, 2000);
  for (const Route& route : routes) add(table, route.prefix, route.slot);

  const auto addrs = random_addresses(rng, routes, 6, 4000);
  size_t hits = 0;
  for (size_t i = 0; i < addrs.size(); ++i) {
    const uint32_t expected = naive_lookup(routes, addrs[i].data());
    hits += expected != kNoPeer;
    ASSERT_EQ(table.lookup_v6(addrs[i].data()), expected) << "address " << i;
  }
  EXPECT_GT(hits, addrs.size() / 4);
}

TEST_F(AllowedIpsTest, BulkLookupHandlesOddSizes) {
  AllowedIps table = make(4, 0);
  add(table, v4("10.0.0.0", 8), 4);
  for (uint32_t n : {0u, 1u, 31u, 32u, 33u, 100u}) {
    std::vector<uint32_t> addrs(n), slots(n, 12345);
    for (uint32_t i = 0; i < n; ++i) addrs[i] = htonl((i % 2 == 0 ? 0x0a000000u : 0x0b000000u) + i);
    table.lookup_v4_bulk(addrs.data(), slots.data(), n);
    for (uint32_t i = 0; i < n; ++i)
      EXPECT_EQ(slots[i], i % 2 == 0 ? 4u : kNoPeer) << n << "/" << i;
  }
}

}  // namespace
}  // namespace airlock::dp
