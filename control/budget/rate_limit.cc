// Requests per minute use a sliding log (the admission times of the last 60 s) rather than GCRA:
// GCRA with a burst of N admits N at once and then one every 60/N s, i.e. up to 2N-1 in some
// 60-second span, while people read "60 requests per minute" as a hard count for any minute.
// The log enforces exactly that and tells a refused caller exactly when the oldest request ages
// out; it costs 8 bytes per admitted request per key, bounded by the limit itself.
// Tokens per minute are known only after a request, so they are summed in one-second buckets
// over the last 60 of them, and admission is refused while that sum has reached the limit.
#include "control/budget/rate_limit.h"

#include <algorithm>
#include <array>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

namespace airlock::control::budget {

using policy::BudgetScope;
using policy::RateLimitSpec;

namespace {

constexpr int64_t kWindowMs = 60'000;
constexpr int64_t kBuckets = 60;
// Idle counters are dropped this often (in admissions), so the map tracks active callers only.
constexpr uint64_t kSweepEvery = 4096;

int64_t floor_div(int64_t a, int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

size_t bucket_of(int64_t second) {
  return static_cast<size_t>((second % kBuckets + kBuckets) % kBuckets);
}

int64_t ceil_seconds(int64_t ms) {
  return std::max<int64_t>(1, (ms + 999) / 1000);
}

// Counters are per spec content and caller: a policy swap that keeps an entry keeps its counts.
std::string counter_key(const RateLimitSpec& spec, const std::string& who) {
  std::string key;
  for (const std::string& selector : spec.from) key.append(selector).push_back('\x1f');
  key.push_back(spec.scope == BudgetScope::kDevice ? 'd' : 'u');
  const auto number = [&](auto value) {
    key.push_back('\x1e');
    if (value) key.append(std::to_string(*value));
  };
  number(spec.requests_per_minute);
  number(spec.tokens_per_minute);
  number(spec.concurrent_streams);
  key.push_back('\x1d');
  key.append(who);
  return key;
}

}  // namespace

namespace detail {

struct RateCounter {
  std::deque<int64_t> requests;  // admission times within the last minute, oldest first
  struct Bucket {
    int64_t second = std::numeric_limits<int64_t>::min();
    uint64_t tokens = 0;
  };
  std::array<Bucket, kBuckets> buckets{};
  uint32_t streams = 0;

  void expire_requests(int64_t now_ms) {
    while (!requests.empty() && requests.front() <= now_ms - kWindowMs) requests.pop_front();
  }

  // Tokens recorded in the 60 one-second buckets ending with the current second.
  uint64_t tokens_in_window(int64_t now_ms) const {
    const int64_t now_s = floor_div(now_ms, 1000);
    uint64_t sum = 0;
    for (const Bucket& b : buckets) {
      if (b.second > now_s - kBuckets && b.second <= now_s) {
        sum = b.tokens > std::numeric_limits<uint64_t>::max() - sum
                  ? std::numeric_limits<uint64_t>::max()
                  : sum + b.tokens;
      }
    }
    return sum;
  }

  // When the sum falls below `limit` as old buckets age out.
  int64_t tokens_retry_ms(int64_t now_ms, uint64_t limit) const {
    const int64_t now_s = floor_div(now_ms, 1000);
    uint64_t sum = tokens_in_window(now_ms);
    for (int64_t s = now_s - kBuckets + 1; s <= now_s; ++s) {
      const Bucket& b = buckets[bucket_of(s)];
      if (b.second != s) continue;
      sum -= b.tokens;
      if (sum < limit) return (s + kBuckets) * 1000 - now_ms;
    }
    return kWindowMs;
  }

  void add_tokens(uint64_t tokens, int64_t now_ms) {
    const int64_t now_s = floor_div(now_ms, 1000);
    Bucket& b = buckets[bucket_of(now_s)];
    if (b.second != now_s) b = {now_s, 0};
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    b.tokens = tokens > kMax - b.tokens ? kMax : b.tokens + tokens;
  }

  bool idle(int64_t now_ms) const {
    return streams == 0 && requests.empty() && tokens_in_window(now_ms) == 0;
  }
};

struct RateCore {
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<RateCounter>, std::less<>> counters;
  uint64_t admissions = 0;

  AdmitResult admit(const std::shared_ptr<RateCore>& self,
                    std::span<const RateLimitSpec* const> specs, const RateKeys& keys,
                    int64_t now_ms) {
    struct Pending {
      const RateLimitSpec* spec;
      std::string key;
      std::string who;
    };
    std::vector<Pending> pending;
    for (const RateLimitSpec* spec : specs) {
      std::string who =
          spec->scope == BudgetScope::kDevice ? "device:" + keys.device : "user:" + keys.user;
      std::string key = counter_key(*spec, who);
      const bool duplicate = std::any_of(pending.begin(), pending.end(),
                                         [&](const Pending& p) { return p.key == key; });
      if (!duplicate) pending.push_back({spec, std::move(key), std::move(who)});
    }

    Admission admission;
    std::lock_guard lock(mutex);
    if (++admissions % kSweepEvery == 0) sweep(now_ms);
    std::vector<std::shared_ptr<RateCounter>> found;
    found.reserve(pending.size());
    // Check everything first, so a request refused by one limit is not counted by another.
    for (const Pending& p : pending) {
      auto it = counters.find(p.key);
      if (it == counters.end()) it = counters.emplace(p.key, std::make_shared<RateCounter>()).first;
      RateCounter& c = *it->second;
      found.push_back(it->second);
      if (p.spec->requests_per_minute) {
        c.expire_requests(now_ms);
        if (c.requests.size() >= *p.spec->requests_per_minute) {
          const int64_t wait =
              c.requests.empty() ? kWindowMs : c.requests.front() + kWindowMs - now_ms;
          return RateRefusal{RateRefusal::Limit::kRequestsPerMinute, p.who,
                             *p.spec->requests_per_minute, c.requests.size(), ceil_seconds(wait)};
        }
      }
      if (p.spec->tokens_per_minute) {
        const uint64_t used = c.tokens_in_window(now_ms);
        if (used >= *p.spec->tokens_per_minute) {
          return RateRefusal{RateRefusal::Limit::kTokensPerMinute, p.who,
                             *p.spec->tokens_per_minute, used,
                             ceil_seconds(c.tokens_retry_ms(now_ms, *p.spec->tokens_per_minute))};
        }
      }
      if (p.spec->concurrent_streams && c.streams >= *p.spec->concurrent_streams) {
        return RateRefusal{RateRefusal::Limit::kConcurrentStreams, p.who,
                           *p.spec->concurrent_streams, c.streams, 1};
      }
    }
    for (size_t i = 0; i < pending.size(); ++i) {
      const RateLimitSpec& spec = *pending[i].spec;
      RateCounter& c = *found[i];
      if (spec.requests_per_minute) c.requests.push_back(now_ms);
      if (spec.concurrent_streams) ++c.streams;
      if (spec.concurrent_streams || spec.tokens_per_minute) {
        admission.held_.push_back(
            {found[i], spec.concurrent_streams.has_value(), spec.tokens_per_minute.has_value()});
      }
    }
    admission.core_ = self;
    return admission;
  }

  void sweep(int64_t now_ms) {
    std::erase_if(counters, [&](const auto& item) {
      item.second->expire_requests(now_ms);
      return item.second.use_count() == 1 && item.second->idle(now_ms);
    });
  }
};

}  // namespace detail

Admission& Admission::operator=(Admission&& other) noexcept {
  if (this != &other) {
    release();
    core_ = std::move(other.core_);
    held_ = std::move(other.held_);
  }
  return *this;
}

Admission::~Admission() {
  release();
}

void Admission::release() {
  if (!core_) return;
  {
    std::lock_guard lock(core_->mutex);
    for (const Held& h : held_) {
      if (h.stream) --h.counter->streams;
    }
  }
  held_.clear();
  core_.reset();
}

void Admission::record_tokens(uint64_t tokens, int64_t now_ms) {
  if (!core_) return;
  std::lock_guard lock(core_->mutex);
  for (const Held& h : held_) {
    if (h.tokens) h.counter->add_tokens(tokens, now_ms);
  }
}

RateLimiter::RateLimiter() : core_(std::make_shared<detail::RateCore>()) {}

RateLimiter::~RateLimiter() = default;

AdmitResult RateLimiter::admit(std::span<const policy::RateLimitSpec* const> specs,
                               const RateKeys& keys, int64_t now_ms) {
  return core_->admit(core_, specs, keys, now_ms);
}

}  // namespace airlock::control::budget
