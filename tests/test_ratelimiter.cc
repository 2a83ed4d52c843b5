// Handshake rate limiter (wireguard.md §1.6): 20 packets/s, burst 5, per IPv4 address or
// IPv6 /64, idle entries recycled after 1 s, bounded table.
#include "dataplane/ratelimiter.h"

#include <gtest/gtest.h>

#include <vector>

namespace airlock::dp {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kT0 = 1'000'000 * kMs;  // an arbitrary non-zero start time

const std::vector<uint8_t> kV4a = {192, 0, 2, 1};
const std::vector<uint8_t> kV4b = {192, 0, 2, 2};

std::vector<uint8_t> v6(uint8_t subnet, uint8_t host) {
  return {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, subnet, 0, 0, 0, 0, 0, 0, 0, host};
}

int allowed_in_a_row(RateLimiter& limiter, const std::vector<uint8_t>& source, uint64_t now,
                     int attempts = 20) {
  int allowed = 0;
  for (int i = 0; i < attempts; ++i) allowed += limiter.allow(source, now) ? 1 : 0;
  return allowed;
}

TEST(RateLimiter, BurstOfFiveThenRefusal) {
  RateLimiter limiter;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.allow(kV4a, kT0)) << i;
  EXPECT_FALSE(limiter.allow(kV4a, kT0));
  EXPECT_FALSE(limiter.allow(kV4a, kT0 + 49 * kMs)) << "refill is 1 packet per 50 ms";
}

TEST(RateLimiter, RefillsAtTwentyPerSecond) {
  RateLimiter limiter;
  ASSERT_EQ(allowed_in_a_row(limiter, kV4a, kT0), 5);
  EXPECT_TRUE(limiter.allow(kV4a, kT0 + 50 * kMs));
  EXPECT_FALSE(limiter.allow(kV4a, kT0 + 50 * kMs));
  EXPECT_EQ(allowed_in_a_row(limiter, kV4a, kT0 + 150 * kMs), 2);
  // A long pause refills only up to the burst.
  EXPECT_EQ(allowed_in_a_row(limiter, kV4a, kT0 + 900 * kMs), 5);
  // Sustained 20/s: one packet every 50 ms always passes.
  for (uint64_t t = 950; t < 3000; t += 50) {
    EXPECT_TRUE(limiter.allow(kV4a, kT0 + t * kMs)) << t;
    EXPECT_FALSE(limiter.allow(kV4a, kT0 + t * kMs)) << t;
  }
}

TEST(RateLimiter, IdleEntryStartsAfresh) {
  RateLimiter limiter;
  ASSERT_EQ(allowed_in_a_row(limiter, kV4a, kT0), 5);
  EXPECT_EQ(allowed_in_a_row(limiter, kV4a, kT0 + 1000 * kMs), 5);
}

TEST(RateLimiter, SourcesAreIndependent) {
  RateLimiter limiter;
  ASSERT_EQ(allowed_in_a_row(limiter, kV4a, kT0), 5);
  EXPECT_EQ(allowed_in_a_row(limiter, kV4b, kT0), 5);
  EXPECT_EQ(allowed_in_a_row(limiter, v6(1, 1), kT0), 5);
  EXPECT_EQ(allowed_in_a_row(limiter, v6(2, 1), kT0), 5);
}

TEST(RateLimiter, Ipv6SharesOneBucketPerSlash64) {
  RateLimiter limiter;
  ASSERT_EQ(allowed_in_a_row(limiter, v6(1, 1), kT0), 5);
  EXPECT_EQ(allowed_in_a_row(limiter, v6(1, 2), kT0), 0) << "same /64";
  EXPECT_EQ(allowed_in_a_row(limiter, v6(3, 1), kT0), 5) << "another /64";
}

TEST(RateLimiter, FamiliesDoNotCollide) {
  RateLimiter limiter;
  // An IPv6 address whose first 4 bytes spell the IPv4 address, rest zero.
  const std::vector<uint8_t> lookalike = {192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  ASSERT_EQ(allowed_in_a_row(limiter, kV4a, kT0), 5);
  EXPECT_EQ(allowed_in_a_row(limiter, lookalike, kT0), 5);
}

TEST(RateLimiter, RefusesUnsupportedAddressLengths) {
  RateLimiter limiter;
  EXPECT_FALSE(limiter.allow(std::vector<uint8_t>{}, kT0));
  EXPECT_FALSE(limiter.allow(std::vector<uint8_t>(6, 1), kT0));
  EXPECT_FALSE(limiter.allow(std::vector<uint8_t>(17, 1), kT0));
}

// A one-source limiter has a few slots, all within probing distance, so exactly slot_count()
// sources fit; further sources are refused, not crashed on, until tracked ones go idle.
TEST(RateLimiter, FullTableRefusesNewSourcesUntilEntriesGoIdle) {
  RateLimiter limiter(1);
  const size_t slots = limiter.slot_count();
  ASSERT_GE(slots, 1u);
  ASSERT_LE(slots, 32u);
  std::vector<std::vector<uint8_t>> sources;
  for (uint8_t i = 0; i < 100; ++i) sources.push_back({10, 0, 0, i});
  for (size_t i = 0; i < slots; ++i) EXPECT_TRUE(limiter.allow(sources[i], kT0)) << i;
  for (size_t i = slots; i < sources.size(); ++i) {
    EXPECT_FALSE(limiter.allow(sources[i], kT0 + i * kMs)) << "no room for source " << i;
  }
  EXPECT_TRUE(limiter.allow(sources[0], kT0 + 200 * kMs)) << "tracked sources keep working";

  // All but source 0 have been idle for 1 s; their slots are recycled.
  const uint64_t later = kT0 + 1000 * kMs;
  for (size_t i = 1; i < slots; ++i) EXPECT_TRUE(limiter.allow(sources[50 + i], later)) << i;
  EXPECT_FALSE(limiter.allow(sources[99], later)) << "source 0 was active 800 ms ago";
  EXPECT_TRUE(limiter.allow(sources[0], later)) << "source 0 still holds its slot";
}

TEST(RateLimiter, TracksAtLeastCapacitySources) {
  RateLimiter limiter(1024);
  int tracked = 0;
  for (int i = 0; i < 1024; ++i) {
    const std::vector<uint8_t> source = {10, 1, static_cast<uint8_t>(i >> 8),
                                         static_cast<uint8_t>(i)};
    tracked += limiter.allow(source, kT0) ? 1 : 0;
  }
  EXPECT_EQ(tracked, 1024);
}

}  // namespace
}  // namespace airlock::dp
