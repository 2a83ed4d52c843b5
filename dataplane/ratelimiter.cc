#include "dataplane/ratelimiter.h"

#include <sodium.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "dataplane/crypto_prims.h"

namespace airlock::dp {

RateLimiter::RateLimiter(size_t capacity)
    : table_(std::bit_ceil(std::max<size_t>(capacity, 1) * kSlotsPerSource)),
      mask_(table_.size() - 1),
      probe_limit_(std::min(table_.size(), kMaxProbe)) {
  crypto::random_bytes(hash_key_);
}

size_t RateLimiter::home_slot(const SourceKey& key) const {
  std::array<uint8_t, sizeof(key.prefix) + 1> input;
  std::copy(key.prefix.begin(), key.prefix.end(), input.begin());
  input.back() = key.address_len;
  std::array<uint8_t, crypto_shorthash_BYTES> digest;
  crypto_shorthash(digest.data(), input.data(), input.size(), hash_key_.data());
  uint64_t value;
  std::memcpy(&value, digest.data(), sizeof(value));
  return static_cast<size_t>(value) & mask_;
}

bool RateLimiter::idle(const Entry& entry, uint64_t now_ns) {
  return now_ns >= entry.last_ns && now_ns - entry.last_ns >= kIdleExpiryNs;
}

bool RateLimiter::allow(std::span<const uint8_t> source_addr, uint64_t now_ns) {
  SourceKey key;
  if (source_addr.size() != 4 && source_addr.size() != 16) return false;
  key.address_len = static_cast<uint8_t>(source_addr.size());
  const size_t prefix_len = std::min(source_addr.size(), key.prefix.size());
  std::copy_n(source_addr.begin(), prefix_len, key.prefix.begin());

  // Linear probing without deletion: slots only ever go from unused to used, so the first
  // unused slot ends the search; idle entries are recycled in place.
  Entry* found = nullptr;
  Entry* reusable = nullptr;
  const size_t home = home_slot(key);
  for (size_t i = 0; i < probe_limit_; ++i) {
    Entry& slot = table_[(home + i) & mask_];
    if (!slot.used || slot.key == key) {
      found = &slot;
      break;
    }
    if (!reusable && idle(slot, now_ns)) reusable = &slot;
  }
  Entry* entry = (found && found->used) ? found : (reusable ? reusable : found);
  if (!entry) return false;

  if (!entry->used || entry->key != key) {
    *entry = Entry{key, now_ns, kMaxTokensNs, true};
  }
  const uint64_t elapsed = now_ns > entry->last_ns ? now_ns - entry->last_ns : 0;
  const uint64_t tokens = std::min(kMaxTokensNs, entry->tokens_ns + elapsed);
  entry->last_ns = now_ns;
  const bool allowed = tokens >= kPacketCostNs;
  entry->tokens_ns = allowed ? tokens - kPacketCostNs : tokens;
  return allowed;
}

}  // namespace airlock::dp
