// Per-caller rate limits from the policy's "rate_limits": requests and tokens per minute and
// concurrent streams, one set of counters per (limit entry, user or device).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "policy/document.h"

namespace airlock::control::budget {

// The caller's names the counters are kept under.
struct RateKeys {
  std::string user;
  std::string device;
};

struct RateRefusal {
  enum class Limit { kRequestsPerMinute, kTokensPerMinute, kConcurrentStreams };
  Limit limit = Limit::kRequestsPerMinute;
  std::string key;        // "user:alice" or "device:laptop"
  uint64_t allowed = 0;   // the limit
  uint64_t current = 0;   // requests or tokens in the last 60 s, or open streams
  int64_t retry_after_s;  // 1 for streams: they end at an unknown time
};

namespace detail {
struct RateCounter;
struct RateCore;
}  // namespace detail

// An admitted request: holds its concurrent-stream slots until destroyed.
class Admission {
 public:
  Admission() = default;
  Admission(Admission&&) noexcept = default;
  Admission& operator=(Admission&& other) noexcept;
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;
  ~Admission();

  // The request's tokens, once known (after completion), counted against every tokens-per-minute
  // limit that admitted it.
  void record_tokens(uint64_t tokens, int64_t now_ms);

 private:
  friend struct detail::RateCore;
  struct Held {
    std::shared_ptr<detail::RateCounter> counter;
    bool stream = false;  // holds a concurrent-stream slot
    bool tokens = false;  // has a tokens-per-minute limit
  };
  void release();

  std::shared_ptr<detail::RateCore> core_;
  std::vector<Held> held_;
};

using AdmitResult = std::variant<Admission, RateRefusal>;

class RateLimiter {
 public:
  RateLimiter();
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Admits the request only if every spec (Document::rate_limits_for) allows it, then counts it
  // against all of them. Identical specs count once. Thread-safe. Admissions may outlive the
  // limiter.
  AdmitResult admit(std::span<const policy::RateLimitSpec* const> specs, const RateKeys& keys,
                    int64_t now_ms);

 private:
  std::shared_ptr<detail::RateCore> core_;
};

}  // namespace airlock::control::budget
