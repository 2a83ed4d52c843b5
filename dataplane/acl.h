// Identity ACL: which inner flows a peer may send, compiled into rte_acl contexts (one for IPv4,
// one for IPv6). One AclTable is one immutable generation, compiled on the control thread and
// only read by workers afterwards; a policy change compiles a new one and swaps it in.
//
// Identity classes: peers that match exactly the same set of rules share a class id, so the
// ACL holds one entry per (rule, run of consecutive class ids, destination) instead of one per
// peer. Class 0 is reserved: it is given to slots not in the table and to peers that match no
// rule, and it matches no rule at all. "*" is therefore expanded like any other selector (to the
// class range of every peer in the table) rather than compiled to a wildcard class field, which
// would also match class 0.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dataplane/allowedips.h"

struct rte_acl_ctx;

namespace airlock::dp {

enum class AclAction : uint8_t { kDrop = 0, kForward = 1, kPuntToGateway = 2 };

struct AclIdentity {
  uint32_t peer_slot;  // < kMaxPeerSlots
  std::string user, device, public_key_b64;
  std::vector<std::string> tags, groups;
};

struct AclRule {
  std::string name;
  // "*", "user:NAME" or bare "NAME" (a user; so a bare name cannot contain ':'),
  // "group:NAME", "tag:NAME", "device:NAME", "peer:BASE64KEY".
  std::vector<std::string> sources;
  std::vector<Prefix> destinations;  // empty = any; may mix IPv4 and IPv6
  uint8_t protocol = 0;              // IP protocol number, 0 = any
  uint16_t port_low = 0;             // destination port range, inclusive
  uint16_t port_high = 65535;
  AclAction action = AclAction::kDrop;
};

// Per-packet classification keys, filled by fill_key_v4/v6. All fields are in network byte
// order (rte_acl reads keys big-endian). rte_acl needs a 1-byte first field and 4-byte input
// groups after it, hence the padding and the source port, which no rule constrains today. The
// table reads one of two layouts from the same key (acl.cc, "rte_acl rule layout"): with fewer
// than 65536 identity classes, the class's low 16 bits and the destination port form one group
// (bytes 10..13 of the v4 key); otherwise the whole class and the port pair are groups of their
// own. Source addresses are not part of the key because cryptokey routing already binds the
// inner source address to the peer (and so to the class).
struct alignas(4) AclKeyV4 {
  uint8_t proto;  // offset 0
  uint8_t pad[3];
  uint32_t dst;    // offset 4
  uint32_t klass;  // offset 8
  uint16_t dport;  // offset 12
  uint16_t sport;  // offset 14
};
static_assert(sizeof(AclKeyV4) == 16);

struct alignas(4) AclKeyV6 {
  uint8_t proto;  // offset 0
  uint8_t pad[3];
  uint8_t dst[16];  // offsets 4..19
  uint32_t klass;   // offset 20
  uint16_t dport;   // offset 24
  uint16_t sport;   // offset 26
};
static_assert(sizeof(AclKeyV6) == 28);

// Fill a key from an IPv4 / IPv6 header of l3_len readable bytes. Ports are read for TCP and
// UDP only; other protocols, non-first fragments and headers truncated before the ports get
// ports 0, so a rule with a port range excluding 0 does not match them. IPv6 extension headers
// (hop-by-hop, routing, destination options, fragment, AH; at most 8) are skipped to find the
// transport protocol. Returns false for a malformed header; the key then matches no rule.
bool fill_key_v4(AclKeyV4& key, uint32_t klass, const uint8_t* ipv4_header, uint32_t l3_len);
bool fill_key_v6(AclKeyV6& key, uint32_t klass, const uint8_t* ipv6_header, uint32_t l3_len);

// The rte_acl contexts of one or more AclTable generations (acl.cc).
struct AclContexts;

class AclTable {
 public:
  // Compiles rules; first match wins, no match = drop. Errors (selector kind unknown or empty,
  // invalid key, bad destination prefix, port_low > port_high, duplicate or too large peer
  // slot, rte_acl failure) name the rule index and name and the offending value. A rule whose
  // sources match no peer compiles to nothing. An empty rule set gives a table that drops all.
  // `running` (another table's contexts()) is reused instead of built again when this policy
  // compiles to exactly the rte_acl rules it was built from: peers that come, go or change keys
  // without changing the identity classes cost no rte_acl build.
  static std::optional<AclTable> compile(std::span<const AclIdentity> peers,
                                         std::span<const AclRule> rules, std::string* error,
                                         std::shared_ptr<const AclContexts> running = nullptr);

  std::shared_ptr<const AclContexts> contexts() const { return contexts_; }

  // Identity class to put in a key; 0 (matches nothing) for a slot not in the table.
  uint32_t class_of(uint32_t peer_slot) const {
    return peer_slot < class_by_slot_.size() ? class_by_slot_[peer_slot] : 0;
  }

  // Fast path, no allocation: results[i] = index + 1 of the first matching rule, or 0.
  void classify_v4(const AclKeyV4* const* keys, uint32_t* results, uint32_t n) const;
  void classify_v6(const AclKeyV6* const* keys, uint32_t* results, uint32_t n) const;

  AclAction action_of(uint32_t result) const {
    return result == 0 || result > actions_.size() ? AclAction::kDrop : actions_[result - 1];
  }
  // Rules as given, so per-rule hit counters can be indexed by result - 1.
  size_t rule_count() const { return actions_.size(); }
  // Number of identity classes in use, not counting class 0.
  uint32_t class_count() const { return class_count_; }

 private:
  AclTable() = default;

  // Shared by the generations compiled to the same rte_acl rules; read-only once built.
  std::shared_ptr<const AclContexts> contexts_;
  const rte_acl_ctx* v4_ = nullptr;  // contexts_'s, null when no rule applies to IPv4
  const rte_acl_ctx* v6_ = nullptr;
  std::vector<uint32_t> class_by_slot_;
  std::vector<AclAction> actions_;
  uint32_t class_count_ = 0;
};

}  // namespace airlock::dp
