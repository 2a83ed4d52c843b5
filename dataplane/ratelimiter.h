// Per-source token bucket for handshake messages under load (wireguard.md §1.6; the numbers
// of the kernel's ratelimiter.c): 20 packets/s with a burst of 5 per IPv4 address or IPv6 /64.
// The table is allocated once; allow() allocates nothing. Not thread-safe: one instance per
// handshake-processing thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace airlock::dp {

class RateLimiter {
 public:
  static constexpr uint64_t kPacketsPerSecond = 20;
  static constexpr uint64_t kBurst = 5;
  static constexpr uint64_t kIdleExpiryNs = 1'000'000'000;
  static constexpr size_t kDefaultCapacity = 8192;

  // Tracks at least `capacity` sources at once. The table has kSlotsPerSource times as many
  // slots (rounded up to a power of two) so that bounded linear probing practically never
  // fails below that; once probing finds no free or idle slot, new sources are refused.
  explicit RateLimiter(size_t capacity = kDefaultCapacity);

  size_t slot_count() const { return table_.size(); }

  // `source_addr` is a 4-byte IPv4 or 16-byte IPv6 address in network order. False: drop the
  // packet (over the rate, an unsupported address length, or no room to track a new source).
  [[nodiscard]] bool allow(std::span<const uint8_t> source_addr, uint64_t now_ns);

 private:
  // Tokens are nanoseconds of accumulated allowance; one packet costs 1/20 s.
  static constexpr uint64_t kPacketCostNs = 1'000'000'000 / kPacketsPerSecond;
  static constexpr uint64_t kMaxTokensNs = kPacketCostNs * kBurst;
  static constexpr size_t kSlotsPerSource = 4;
  // At load 1/4 a run of 32 occupied slots has probability ~1e-9.
  static constexpr size_t kMaxProbe = 32;

  struct SourceKey {
    std::array<uint8_t, 8> prefix{};  // IPv4 address, or the IPv6 /64
    uint8_t address_len = 0;          // 4 or 16; keeps the two families apart
    bool operator==(const SourceKey&) const = default;
  };

  struct Entry {
    SourceKey key;
    uint64_t last_ns = 0;
    uint64_t tokens_ns = 0;
    bool used = false;
  };

  size_t home_slot(const SourceKey& key) const;
  static bool idle(const Entry& entry, uint64_t now_ns);

  std::vector<Entry> table_;
  size_t mask_;
  size_t probe_limit_;
  std::array<uint8_t, 16> hash_key_{};  // random, so sources cannot be chosen to collide
};

}  // namespace airlock::dp
