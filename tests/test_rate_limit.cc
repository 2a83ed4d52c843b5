#include "control/budget/rate_limit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <variant>
#include <vector>

namespace airlock::control::budget {
namespace {

using policy::BudgetScope;
using policy::RateLimitSpec;

constexpr int64_t kT0 = 1'741'176'000'000;  // any fixed instant

RateLimitSpec rpm(uint32_t limit) {
  RateLimitSpec spec;
  spec.from = {"*"};
  spec.requests_per_minute = limit;
  return spec;
}

RateLimitSpec tpm(uint64_t limit) {
  RateLimitSpec spec;
  spec.from = {"*"};
  spec.tokens_per_minute = limit;
  return spec;
}

RateLimitSpec streams(uint32_t limit, BudgetScope scope = BudgetScope::kUser) {
  RateLimitSpec spec;
  spec.from = {"*"};
  spec.scope = scope;
  spec.concurrent_streams = limit;
  return spec;
}

const RateKeys kAlice{"alice", "alice-laptop"};
const RateKeys kBob{"bob", "bob-laptop"};

bool admitted(const AdmitResult& result) {
  return std::holds_alternative<Admission>(result);
}

TEST(RateLimit, RequestsPerMinuteIsASlidingWindow) {
  RateLimiter limiter;
  const RateLimitSpec spec = rpm(3);
  const std::vector<const RateLimitSpec*> specs = {&spec};
  EXPECT_TRUE(admitted(limiter.admit(specs, kAlice, kT0)));
  EXPECT_TRUE(admitted(limiter.admit(specs, kAlice, kT0 + 10'000)));
  EXPECT_TRUE(admitted(limiter.admit(specs, kAlice, kT0 + 20'000)));
  const AdmitResult refused = limiter.admit(specs, kAlice, kT0 + 30'000);
  ASSERT_FALSE(admitted(refused));
  const RateRefusal& r = std::get<RateRefusal>(refused);
  EXPECT_EQ(r.limit, RateRefusal::Limit::kRequestsPerMinute);
  EXPECT_EQ(r.key, "user:alice");
  EXPECT_EQ(r.allowed, 3u);
  EXPECT_EQ(r.current, 3u);
  EXPECT_EQ(r.retry_after_s, 30);  // the first request ages out at kT0 + 60 s
  // Other callers have their own counters.
  EXPECT_TRUE(admitted(limiter.admit(specs, kBob, kT0 + 30'000)));
  EXPECT_FALSE(admitted(limiter.admit(specs, kAlice, kT0 + 59'999)));
  EXPECT_TRUE(admitted(limiter.admit(specs, kAlice, kT0 + 60'000)));
  // Refused requests were not counted: the second and third still age out on time.
  EXPECT_FALSE(admitted(limiter.admit(specs, kAlice, kT0 + 69'999)));
  EXPECT_TRUE(admitted(limiter.admit(specs, kAlice, kT0 + 70'000)));
}

TEST(RateLimit, TokensPerMinuteRefusesOnceReached) {
  RateLimiter limiter;
  const RateLimitSpec spec = tpm(1000);
  const std::vector<const RateLimitSpec*> specs = {&spec};
  {
    AdmitResult first = limiter.admit(specs, kAlice, kT0);
    ASSERT_TRUE(admitted(first));
    std::get<Admission>(first).record_tokens(600, kT0 + 1'000);
  }
  {
    AdmitResult second = limiter.admit(specs, kAlice, kT0 + 2'000);
    ASSERT_TRUE(admitted(second));  // 600 < 1000: admitted, may overshoot
    std::get<Admission>(second).record_tokens(500, kT0 + 5'000);
  }
  const AdmitResult refused = limiter.admit(specs, kAlice, kT0 + 10'000);
  ASSERT_FALSE(admitted(refused));
  const RateRefusal& r = std::get<RateRefusal>(refused);
  EXPECT_EQ(r.limit, RateRefusal::Limit::kTokensPerMinute);
  EXPECT_EQ(r.current, 1100u);
  // The 600 recorded at kT0+1s leave the window at kT0+61s, leaving 500 < 1000.
  EXPECT_EQ(r.retry_after_s, 51);
  EXPECT_FALSE(admitted(limiter.admit(specs, kAlice, kT0 + 60'999)));
  EXPECT_TRUE(admitted(limiter.admit(specs, kAlice, kT0 + 61'000)));
  EXPECT_TRUE(admitted(limiter.admit(specs, kBob, kT0 + 10'000)));
}

TEST(RateLimit, ConcurrentStreamSlotsAreReleased) {
  RateLimiter limiter;
  const RateLimitSpec spec = streams(2);
  const std::vector<const RateLimitSpec*> specs = {&spec};
  AdmitResult a = limiter.admit(specs, kAlice, kT0);
  AdmitResult b = limiter.admit(specs, kAlice, kT0);
  ASSERT_TRUE(admitted(a));
  ASSERT_TRUE(admitted(b));
  const AdmitResult refused = limiter.admit(specs, kAlice, kT0);
  ASSERT_FALSE(admitted(refused));
  EXPECT_EQ(std::get<RateRefusal>(refused).limit, RateRefusal::Limit::kConcurrentStreams);
  EXPECT_EQ(std::get<RateRefusal>(refused).current, 2u);
  EXPECT_EQ(std::get<RateRefusal>(refused).retry_after_s, 1);

  // A moved admission still holds its slot; destroying it frees one.
  Admission moved = std::move(std::get<Admission>(a));
  EXPECT_FALSE(admitted(limiter.admit(specs, kAlice, kT0)));
  { Admission gone = std::move(moved); }
  AdmitResult c = limiter.admit(specs, kAlice, kT0);
  EXPECT_TRUE(admitted(c));
}

TEST(RateLimit, DeviceScopeCountsPerDevice) {
  RateLimiter limiter;
  const RateLimitSpec spec = streams(1, BudgetScope::kDevice);
  const std::vector<const RateLimitSpec*> specs = {&spec};
  AdmitResult laptop = limiter.admit(specs, {"alice", "laptop"}, kT0);
  ASSERT_TRUE(admitted(laptop));
  const AdmitResult again = limiter.admit(specs, {"alice", "laptop"}, kT0);
  ASSERT_FALSE(admitted(again));
  EXPECT_EQ(std::get<RateRefusal>(again).key, "device:laptop");
  AdmitResult phone = limiter.admit(specs, {"alice", "phone"}, kT0);
  EXPECT_TRUE(admitted(phone));
}

TEST(RateLimit, EveryLimitMustAllowAndRefusalCountsNothing) {
  RateLimiter limiter;
  const RateLimitSpec requests = rpm(10);
  const RateLimitSpec one_stream = streams(1);
  const std::vector<const RateLimitSpec*> specs = {&requests, &one_stream};
  AdmitResult held = limiter.admit(specs, kAlice, kT0);
  ASSERT_TRUE(admitted(held));
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(admitted(limiter.admit(specs, kAlice, kT0)));
  std::get<Admission>(held) = Admission();
  // The 20 refusals used none of the 10 requests: nine more fit.
  for (int i = 0; i < 9; ++i) {
    AdmitResult r = limiter.admit(specs, kAlice, kT0);
    EXPECT_TRUE(admitted(r)) << i;
  }
  EXPECT_FALSE(admitted(limiter.admit(specs, kAlice, kT0)));
}

TEST(RateLimit, IdenticalSpecsCountOnce) {
  RateLimiter limiter;
  const RateLimitSpec a = rpm(2);
  const RateLimitSpec b = rpm(2);
  const std::vector<const RateLimitSpec*> specs = {&a, &b};
  EXPECT_TRUE(admitted(limiter.admit(specs, kAlice, kT0)));
  EXPECT_TRUE(admitted(limiter.admit(specs, kAlice, kT0)));
  EXPECT_FALSE(admitted(limiter.admit(specs, kAlice, kT0)));
}

TEST(RateLimit, ConcurrentStreamsNeverExceedTheLimit) {
  RateLimiter limiter;
  const RateLimitSpec spec = streams(4);
  const std::vector<const RateLimitSpec*> specs = {&spec};
  std::atomic<int> open{0};
  std::atomic<int> most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        AdmitResult r = limiter.admit(specs, kAlice, kT0);
        if (!admitted(r)) continue;
        const int now = ++open;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        --open;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(most.load(), 4);
  EXPECT_GE(most.load(), 1);
}

}  // namespace
}  // namespace airlock::control::budget
