#include "dataplane/allowedips.h"

#include <arpa/inet.h>
#include <rte_byteorder.h>
#include <rte_errno.h>
#include <rte_lpm.h>
#include <rte_lpm6.h>
#include <rte_memory.h>

#include <algorithm>
#include <atomic>
#include <cstdio>

namespace airlock::dp {
namespace {

// Worst case tbl8 groups one prefix can take below tbl24: 1 for IPv4, (128 - 24) / 8 for IPv6.
constexpr uint64_t kTbl8PerV4Rule = 1;
constexpr uint64_t kTbl8PerV6Rule = 13;
// rte_lpm6.c's RTE_LPM6_TBL8_MAX_NUM_GROUPS, which the public header does not export.
constexpr uint64_t kMaxV6Tbl8Groups = 1u << 21;

void set_error(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
}

// rte_lpm_create returns the existing table for a name already in use, so every generation
// needs its own name.
std::string unique_name(const char* kind) {
  static std::atomic<uint32_t> counter{0};
  char name[RTE_LPM_NAMESIZE];
  std::snprintf(name, sizeof(name), "%s-%u", kind, counter.fetch_add(1));
  return name;
}

uint32_t v4_host_order(const Prefix& prefix) {
  uint32_t be;
  std::copy_n(prefix.addr.begin(), sizeof(be), reinterpret_cast<uint8_t*>(&be));
  return rte_be_to_cpu_32(be);
}

}  // namespace

bool is_valid_prefix(const Prefix& prefix) {
  if (prefix.family == 4) return prefix.len <= 32;
  if (prefix.family == 6) return prefix.len <= 128;
  return false;
}

std::string format_prefix(const Prefix& prefix) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (prefix.family == 4 || prefix.family == 6) {
    inet_ntop(prefix.family == 4 ? AF_INET : AF_INET6, prefix.addr.data(), text, sizeof(text));
  }
  return std::string(text) + "/" + std::to_string(prefix.len);
}

void AllowedIps::LpmFree::operator()(rte_lpm* lpm) const {
  rte_lpm_free(lpm);
}
void AllowedIps::Lpm6Free::operator()(rte_lpm6* lpm) const {
  rte_lpm6_free(lpm);
}

std::optional<AllowedIps> AllowedIps::create(uint32_t max_v4_rules, uint32_t max_v6_rules,
                                             std::string* error) {
  AllowedIps table;
  table.max_v4_rules_ = max_v4_rules;
  table.max_v6_rules_ = max_v6_rules;
  if (max_v4_rules > 0) {
    rte_lpm_config config{};
    config.max_rules = max_v4_rules;
    config.number_tbl8s = static_cast<uint32_t>(
        std::min<uint64_t>(max_v4_rules * kTbl8PerV4Rule, RTE_LPM_MAX_TBL8_NUM_GROUPS));
    table.v4_.reset(rte_lpm_create(unique_name("aip4").c_str(), SOCKET_ID_ANY, &config));
    if (!table.v4_) {
      set_error(error, std::string("rte_lpm_create: ") + rte_strerror(rte_errno));
      return std::nullopt;
    }
  }
  if (max_v6_rules > 0) {
    const uint64_t tbl8s = max_v6_rules * kTbl8PerV6Rule;
    if (tbl8s > kMaxV6Tbl8Groups) {
      set_error(error, "too many IPv6 allowed-IPs rules: " + std::to_string(max_v6_rules));
      return std::nullopt;
    }
    rte_lpm6_config config{};
    config.max_rules = max_v6_rules;
    config.number_tbl8s = static_cast<uint32_t>(tbl8s);
    table.v6_.reset(rte_lpm6_create(unique_name("aip6").c_str(), SOCKET_ID_ANY, &config));
    if (!table.v6_) {
      set_error(error, std::string("rte_lpm6_create: ") + rte_strerror(rte_errno));
      return std::nullopt;
    }
  }
  return table;
}

bool AllowedIps::add(const Prefix& prefix, uint32_t peer_slot, std::string* error) {
  if (!is_valid_prefix(prefix)) {
    set_error(error, "invalid prefix " + format_prefix(prefix));
    return false;
  }
  if (peer_slot >= kMaxPeerSlots) {
    set_error(error, "peer slot " + std::to_string(peer_slot) + " exceeds the LPM limit");
    return false;
  }
  if (prefix.len == 0) {
    uint32_t& default_slot = prefix.family == 4 ? default_v4_ : default_v6_;
    if (default_slot != kNoPeer && default_slot != peer_slot) {
      set_error(error, format_prefix(prefix) + " already belongs to peer slot " +
                           std::to_string(default_slot));
      return false;
    }
    default_slot = peer_slot;
    return true;
  }
  return prefix.family == 4 ? add_v4(prefix, peer_slot, error) : add_v6(prefix, peer_slot, error);
}

bool AllowedIps::add_v4(const Prefix& prefix, uint32_t peer_slot, std::string* error) {
  if (!v4_) {
    set_error(error, "no IPv4 allowed-IPs capacity for " + format_prefix(prefix));
    return false;
  }
  const uint32_t ip = v4_host_order(prefix);
  uint32_t owner = 0;
  if (rte_lpm_is_rule_present(v4_.get(), ip, prefix.len, &owner) == 1) {
    if (owner == peer_slot) return true;
    set_error(error,
              format_prefix(prefix) + " already belongs to peer slot " + std::to_string(owner));
    return false;
  }
  const int rc = rte_lpm_add(v4_.get(), ip, prefix.len, peer_slot);
  if (rc != 0) {
    set_error(error, "adding " + format_prefix(prefix) + " (IPv4 capacity " +
                         std::to_string(max_v4_rules_) + "): " + rte_strerror(-rc));
    return false;
  }
  return true;
}

bool AllowedIps::add_v6(const Prefix& prefix, uint32_t peer_slot, std::string* error) {
  if (!v6_) {
    set_error(error, "no IPv6 allowed-IPs capacity for " + format_prefix(prefix));
    return false;
  }
  uint32_t owner = 0;
  if (rte_lpm6_is_rule_present(v6_.get(), prefix.addr.data(), prefix.len, &owner) == 1) {
    if (owner == peer_slot) return true;
    set_error(error,
              format_prefix(prefix) + " already belongs to peer slot " + std::to_string(owner));
    return false;
  }
  const int rc = rte_lpm6_add(v6_.get(), prefix.addr.data(), prefix.len, peer_slot);
  if (rc != 0) {
    set_error(error, "adding " + format_prefix(prefix) + " (IPv6 capacity " +
                         std::to_string(max_v6_rules_) + "): " + rte_strerror(-rc));
    return false;
  }
  return true;
}

void AllowedIps::lookup_v4_bulk(const uint32_t* addrs_be, uint32_t* peer_slots_out,
                                uint32_t n) const {
  if (!v4_) {
    std::fill_n(peer_slots_out, n, default_v4_);
    return;
  }
  // rte_lpm wants host-order addresses; convert through a small stack buffer to stay
  // allocation-free.
  constexpr uint32_t kChunk = 32;
  uint32_t host[kChunk];
  uint32_t hops[kChunk];
  for (uint32_t done = 0; done < n; done += kChunk) {
    const uint32_t count = std::min(kChunk, n - done);
    for (uint32_t i = 0; i < count; ++i) host[i] = rte_be_to_cpu_32(addrs_be[done + i]);
    rte_lpm_lookup_bulk(v4_.get(), host, hops, count);
    for (uint32_t i = 0; i < count; ++i) {
      peer_slots_out[done + i] =
          (hops[i] & RTE_LPM_LOOKUP_SUCCESS) != 0 ? (hops[i] & 0x00ffffff) : default_v4_;
    }
  }
}

uint32_t AllowedIps::lookup_v4(uint32_t addr_be) const {
  uint32_t slot = 0;
  if (v4_ && rte_lpm_lookup(v4_.get(), rte_be_to_cpu_32(addr_be), &slot) == 0) return slot;
  return default_v4_;
}

uint32_t AllowedIps::lookup_v6(const uint8_t addr[16]) const {
  uint32_t slot = 0;
  if (v6_ && rte_lpm6_lookup(v6_.get(), addr, &slot) == 0) return slot;
  return default_v6_;
}

}  // namespace airlock::dp
