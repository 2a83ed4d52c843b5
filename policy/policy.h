// Loading and checking compiled policy buffers (airlock.fbs), plus the text parsers and formatters
// for prefixes, endpoints and keys that the builder, the CLI, the data plane and the control plane
// share so that every component accepts exactly the same syntax.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "airlock_generated.h"

namespace airlock::policy {

inline constexpr uint32_t kSchemaVersion = 1;
inline constexpr size_t kMaxPolicyBytes = 64 << 20;
inline constexpr size_t kKeyBytes = 32;

using Key = std::array<uint8_t, kKeyBytes>;

constexpr size_t address_length(Family family) {
  return family == Family::V6 ? 16 : 4;
}
constexpr uint8_t max_prefix_length(Family family) {
  return family == Family::V6 ? 128 : 32;
}

// A parsed prefix; bytes of `addr` beyond address_length(family) are always zero.
struct IpPrefix {
  Family family = Family::V4;
  std::array<uint8_t, 16> addr{};  // network order
  uint8_t len = 0;
  friend auto operator<=>(const IpPrefix&, const IpPrefix&) = default;
};

struct IpEndpoint {
  Family family = Family::V4;
  std::array<uint8_t, 16> addr{};  // network order
  uint16_t port = 0;
  friend auto operator<=>(const IpEndpoint&, const IpEndpoint&) = default;
};

// Plain decimal digits only (no sign, no whitespace), value <= max.
std::optional<unsigned> parse_decimal(std::string_view text, unsigned max);

// "10.0.0.0/24", "fd00::/64", or a bare address (full length). Rejects host bits set beyond the
// length ("10.0.0.1/24"). On failure *error (if given) says why.
std::optional<IpPrefix> parse_prefix(std::string_view text, std::string* error = nullptr);
std::string format_prefix(const IpPrefix& prefix);
// The prefix with every bit past its length cleared.
IpPrefix network_of(IpPrefix prefix);
// Whether `address` (a host or a narrower prefix) lies within `prefix`; families must match.
bool prefix_contains(const IpPrefix& prefix, const IpPrefix& address);

// "198.51.100.3:51820" or "[fd00::1]:51820"; port 0 is rejected. No name resolution.
std::optional<IpEndpoint> parse_endpoint(std::string_view text, std::string* error = nullptr);
std::string format_endpoint(const IpEndpoint& endpoint);

// Standard base64 with padding (as wg(8) prints keys); exactly 32 bytes, canonical encoding only.
std::optional<Key> decode_key_base64(std::string_view text);
std::string encode_key_base64(std::span<const uint8_t, kKeyBytes> key);

// A rule source: "*", "user:X", bare "X", "group:X", "tag:X", "device:X" or "peer:BASE64KEY".
bool is_valid_selector(std::string_view selector, std::string* error = nullptr);
// An identity name (user, device, tag, group, selector argument): non-empty printable ASCII
// without whitespace.
bool is_valid_name(std::string_view name);

// Conversions from buffer tables; nullopt unless they pass the same checks as load_policy (after
// which they cannot fail). Errors are relative to the table, e.g. "port: must not be 0".
std::optional<IpPrefix> to_ip_prefix(const Prefix& prefix, std::string* error = nullptr);
std::optional<IpEndpoint> to_ip_endpoint(const Endpoint& endpoint, std::string* error = nullptr);
Key key_bytes(const Key32& key);

namespace detail {
void wipe(void* data, size_t size);

// Policy buffers carry preshared keys: storage holding them is wiped before it is released.
template <typename T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) {}
  T* allocate(size_t n) { return std::allocator<T>{}.allocate(n); }
  void deallocate(T* p, size_t n) {
    wipe(p, n * sizeof(T));
    std::allocator<T>{}.deallocate(p, n);
  }
  friend bool operator==(const WipingAllocator&, const WipingAllocator&) = default;
};
}  // namespace detail

// An owned, verified, semantically checked policy. The bytes live in 8-byte aligned storage that
// is wiped on destruction; root() points into them and stays valid across moves.
class LoadedPolicy {
 public:
  LoadedPolicy(LoadedPolicy&&) noexcept = default;
  LoadedPolicy& operator=(LoadedPolicy&&) noexcept = default;
  LoadedPolicy(const LoadedPolicy&) = delete;
  LoadedPolicy& operator=(const LoadedPolicy&) = delete;

  const Policy* root() const { return GetPolicy(storage_.data()); }
  uint64_t version() const { return root()->version(); }
  std::span<const uint8_t> bytes() const {
    return {reinterpret_cast<const uint8_t*>(storage_.data()), size_};
  }

 private:
  using Storage = std::vector<uint64_t, detail::WipingAllocator<uint64_t>>;
  LoadedPolicy(Storage storage, size_t size) : storage_(std::move(storage)), size_(size) {}
  friend std::optional<LoadedPolicy> load_policy(std::span<const uint8_t>, std::string*);

  Storage storage_;
  size_t size_ = 0;
};

// Size bound, flatbuffers verification (identifier "ALP1", bounded depth and table count,
// alignment), then the semantic checks. Errors name the field path, e.g.
// "peers[2].allowed_ips[0]: prefix length 33 exceeds 32 for IPv4".
std::optional<LoadedPolicy> load_policy(std::span<const uint8_t> bytes, std::string* error);

// Reads a whole file of at most kMaxPolicyBytes.
std::optional<std::vector<uint8_t>> read_file(const std::string& path, std::string* error);

}  // namespace airlock::policy
