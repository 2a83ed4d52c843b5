// Cryptokey routing (WireGuard whitepaper §2): which peer owns an inner IP address. One
// AllowedIps object is one immutable generation, built on the control thread and then only read
// by workers; a policy change builds a new generation and swaps it in (see dpdk.md §3.4).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

struct rte_lpm;
struct rte_lpm6;

namespace airlock::dp {

// An IPv4 or IPv6 prefix. Host bits below `len` are ignored.
struct Prefix {
  uint8_t family;                // 4 or 6
  std::array<uint8_t, 16> addr;  // network order; the first 4 bytes are used for IPv4
  uint8_t len;
};

inline constexpr uint32_t kNoPeer = 0xffffffff;

// rte_lpm6 stores 21-bit next hops and silently truncates larger ones (dpdk.md §4.2).
inline constexpr uint32_t kMaxPeerSlots = 1u << 21;

// True if family is 4 or 6 and len fits the family.
bool is_valid_prefix(const Prefix& prefix);

// "10.0.0.0/8", "fd00::/64"; for error messages.
std::string format_prefix(const Prefix& prefix);

class AllowedIps {
 public:
  // Sizes the tables for at most max_v4_rules / max_v6_rules prefixes (a /0 is kept outside the
  // tables and is not counted). A family with max 0 gets no table at all, which saves its
  // 64 MiB tbl24. tbl8 groups are sized for the worst case so that every prefix within the limit
  // fits: 1 KiB per IPv4 rule and 13 KiB per IPv6 rule (a /128 needs 13 tbl8 levels below tbl24).
  static std::optional<AllowedIps> create(uint32_t max_v4_rules, uint32_t max_v6_rules,
                                          std::string* error);

  // Rejects invalid prefixes, peer_slot >= kMaxPeerSlots, a full table, and a prefix already
  // owned by a different peer. Adding the same prefix for the same peer again is a no-op.
  bool add(const Prefix& prefix, uint32_t peer_slot, std::string* error);

  // Fast path: no allocation, no locks. Addresses in network order as they sit in the packet;
  // kNoPeer on miss.
  void lookup_v4_bulk(const uint32_t* addrs_be, uint32_t* peer_slots_out, uint32_t n) const;
  uint32_t lookup_v4(uint32_t addr_be) const;
  uint32_t lookup_v6(const uint8_t addr[16]) const;

 private:
  struct LpmFree {
    void operator()(rte_lpm* lpm) const;
  };
  struct Lpm6Free {
    void operator()(rte_lpm6* lpm) const;
  };

  AllowedIps() = default;
  bool add_v4(const Prefix& prefix, uint32_t peer_slot, std::string* error);
  bool add_v6(const Prefix& prefix, uint32_t peer_slot, std::string* error);

  std::unique_ptr<rte_lpm, LpmFree> v4_;
  std::unique_ptr<rte_lpm6, Lpm6Free> v6_;
  // rte_lpm / rte_lpm6 accept depth 1..32 / 1..128 only, so default routes live here.
  uint32_t default_v4_ = kNoPeer;
  uint32_t default_v6_ = kNoPeer;
  uint32_t max_v4_rules_ = 0;
  uint32_t max_v6_rules_ = 0;
};

}  // namespace airlock::dp
