// The data plane's counters region: a named shared-memory object that `airlock-dpctl`, the
// control plane and exporters read without DPDK. Every part of it has exactly one writer:
//  - each worker lcore writes only its own cache-line-aligned worker block (WorkerStats);
//  - the control lcore writes the port, peer and rule blocks (StatsRegion::publish_*).
// Counters are single-writer, so they are bumped with a relaxed load and store of the 64-bit
// value (no locked read-modify-write); readers load them whole, so no value is ever torn.
// Multi-field records written by the control lcore sit behind a sequence counter (a seqlock:
// odd while a write is in progress) so a reader never sees half a record.
#pragma once

#include <array>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dataplane/shm.h"

namespace airlock::dp {

enum class DropReason : uint8_t {
  kNotWireguard,
  kMalformed,
  kBadMac,
  kBadTag,
  kReplay,
  kNoSession,
  kKeypairExpired,
  kSrcNotAllowed,
  kAclDeny,
  kNoRoute,
  kHandshakeQueueFull,
  kRateLimited,
  kRingFull,
  kTxFull,
  kCount
};
inline constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::kCount);

// Stable snake_case name used in JSON and tables, e.g. "bad_mac".
std::string_view drop_reason_name(DropReason reason);

// WireGuard handshake messages by direction, and completed handshakes. The control lcore does
// every handshake, so it counts them in its own block (the one after the workers'). A message
// counts as received once it reaches handshake processing, whether or not it then verifies.
enum class HandshakeEvent : uint8_t {
  kInitiationRx,
  kInitiationTx,
  kResponseRx,
  kResponseTx,
  kCookieRx,
  kCookieTx,
  kCompleted,  // a handshake installed a new session, as initiator or as responder
  kCount
};
inline constexpr size_t kHandshakeEventCount = static_cast<size_t>(HandshakeEvent::kCount);

// Stable snake_case name used in JSON, tables and metric labels, e.g. "initiation_rx".
std::string_view handshake_event_name(HandshakeEvent event);

enum class FlowSteering : uint64_t { kUnknown = 0, kHardware = 1, kSoftware = 2 };
// "unknown", "hardware" or "software".
std::string_view flow_steering_name(FlowSteering steering);

inline constexpr uint64_t kStatsMagic = 0x31534154534b4c41;  // "ALKSTAS1" in memory order
inline constexpr uint32_t kStatsLayoutVersion = 2;
inline constexpr uint32_t kMaxStatsPorts = 4;
inline constexpr uint32_t kMaxStatsWorkers = 256;
inline constexpr uint32_t kMaxStatsPeers = 1u << 20;
inline constexpr uint32_t kMaxStatsRules = 1u << 20;
inline constexpr size_t kStatsNameLen = 64;  // user, device and rule names, NUL-terminated

// Bumps a counter that has exactly one writer (see the file comment).
inline void bump(uint64_t& counter, uint64_t n = 1) {
  std::atomic_ref<uint64_t> c(counter);
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// ---- Shared-memory layout (offsets from the start of the region) ----
//   StatsHeader
//   PortSlot     x kMaxStatsPorts
//   worker block x nb_workers, each: WorkerCounters, PeerTraffic x max_peers,
//                uint64_t rule hits x max_rules, padded to a cache line
//   PeerSlot     x max_peers
//   RuleSlot     x max_rules
// Readers derive every offset from the header's sizes, never from stored offsets.

struct alignas(64) StatsHeader {
  uint64_t magic;  // stored last (release) by the creator, so a set magic means a whole header
  uint32_t layout_version;
  uint32_t nb_workers;
  uint32_t max_peers;
  uint32_t max_rules;
  uint32_t pid;
  uint32_t reserved;
  uint64_t started_unix_ns;
  uint64_t total_size;
  uint64_t rules_seq;       // seqlock over policy_version and every RuleSlot
  uint64_t policy_version;  // the policy whose rule names the RuleSlots hold
};

struct alignas(64) WorkerCounters {
  uint64_t rx_packets;
  uint64_t rx_bytes;
  uint64_t tx_packets;
  uint64_t tx_bytes;
  uint64_t loops;
  uint64_t punted_packets;     // inner packets handed to the control plane
  uint64_t returned_packets;   // inner packets the control plane handed back for a peer
  uint64_t forwarded_packets;  // inner packets sent peer to peer
  std::array<uint64_t, kDropReasonCount> drops;
  std::array<uint64_t, kHandshakeEventCount> handshakes;
};

struct PeerTraffic {
  uint64_t rx_packets;
  uint64_t rx_bytes;
  uint64_t tx_packets;
  uint64_t tx_bytes;
};

// Plain values copied in and out of the seqlocked slots.
struct PortCounters {
  uint64_t ipackets = 0;
  uint64_t opackets = 0;
  uint64_t ibytes = 0;
  uint64_t obytes = 0;
  uint64_t imissed = 0;
  uint64_t ierrors = 0;
  uint64_t oerrors = 0;
  uint64_t rx_nombuf = 0;
  FlowSteering flow_steering = FlowSteering::kUnknown;
};

struct PeerEndpoint {
  uint16_t family = 0;             // AF_INET, AF_INET6, or 0 when no endpoint is known yet
  uint16_t port = 0;               // host byte order
  std::array<uint8_t, 16> addr{};  // network byte order; IPv4 uses the first 4 bytes
};

struct PeerRecord {
  std::array<uint8_t, 32> public_key{};
  std::array<char, kStatsNameLen> user{};
  std::array<char, kStatsNameLen> device{};
  uint64_t last_handshake_unix_ns = 0;
  PeerEndpoint endpoint;
  // The two fields below are set by StatsRegion::publish_peer, not by its caller.
  uint32_t active = 0;
  // Per-slot traffic summed over workers when the slot was last activated; readers subtract
  // it because worker counters never reset and a slot is reused by later peers.
  PeerTraffic traffic_baseline{};
};

// Copies `text` into a fixed NUL-terminated field, cutting at a UTF-8 character boundary.
void set_fixed_string(std::span<char> field, std::string_view text);
std::string_view fixed_string(std::span<const char> field);

// Records are copied to and from shared memory as whole 64-bit words (see stats.cc), so they
// must have no padding and a size that is a multiple of 8.
template <class T>
constexpr size_t words_of() {
  static_assert(std::has_unique_object_representations_v<T> && sizeof(T) % sizeof(uint64_t) == 0);
  return sizeof(T) / sizeof(uint64_t);
}

struct PortRecord {
  uint64_t present = 0;
  PortCounters counters;
};

struct alignas(64) PortSlot {
  uint64_t seq;
  std::array<uint64_t, words_of<PortRecord>()> words;
};

struct alignas(64) PeerSlot {
  uint64_t seq;
  std::array<uint64_t, words_of<PeerRecord>()> words;
};

struct RuleRecord {
  std::array<char, kStatsNameLen> name{};
  uint64_t hits_baseline = 0;  // like PeerRecord::traffic_baseline, taken on each policy swap
};

struct RuleSlot {  // under StatsHeader::rules_seq
  std::array<uint64_t, words_of<RuleRecord>()> words;
};

// The view one worker lcore uses to count. Only that lcore may call these.
class WorkerStats {
 public:
  WorkerStats(WorkerCounters* counters, std::span<PeerTraffic> peers, std::span<uint64_t> rule_hits)
      : c_(counters), peers_(peers), rule_hits_(rule_hits) {}

  void count_rx(uint64_t packets, uint64_t bytes) {
    bump(c_->rx_packets, packets);
    bump(c_->rx_bytes, bytes);
  }
  void count_tx(uint64_t packets, uint64_t bytes) {
    bump(c_->tx_packets, packets);
    bump(c_->tx_bytes, bytes);
  }
  void count_loop() { bump(c_->loops); }
  void count_drop(DropReason reason, uint64_t n = 1) {
    bump(c_->drops[static_cast<size_t>(reason)], n);
  }
  void count_punted(uint64_t n = 1) { bump(c_->punted_packets, n); }
  void count_returned(uint64_t n = 1) { bump(c_->returned_packets, n); }
  void count_forwarded(uint64_t n = 1) { bump(c_->forwarded_packets, n); }
  void count_handshake(HandshakeEvent event, uint64_t n = 1) {
    bump(c_->handshakes[static_cast<size_t>(event)], n);
  }
  void count_peer_rx(uint32_t peer_slot, uint64_t bytes) {
    assert(peer_slot < peers_.size());
    bump(peers_[peer_slot].rx_packets);
    bump(peers_[peer_slot].rx_bytes, bytes);
  }
  void count_peer_tx(uint32_t peer_slot, uint64_t bytes) {
    assert(peer_slot < peers_.size());
    bump(peers_[peer_slot].tx_packets);
    bump(peers_[peer_slot].tx_bytes, bytes);
  }
  void count_rule_hit(uint32_t rule, uint64_t n = 1) {
    assert(rule < rule_hits_.size());
    bump(rule_hits_[rule], n);
  }

 private:
  WorkerCounters* c_;
  std::span<PeerTraffic> peers_;
  std::span<uint64_t> rule_hits_;
};

// Offsets of every block, derived from the three sizes in the header.
struct StatsLayout {
  uint32_t nb_workers = 0;
  uint32_t max_peers = 0;
  uint32_t max_rules = 0;
  size_t ports_offset = 0;
  size_t workers_offset = 0;
  size_t worker_stride = 0;
  size_t worker_peers_offset = 0;  // within a worker block
  size_t worker_rules_offset = 0;  // within a worker block
  size_t peers_offset = 0;
  size_t rules_offset = 0;
  size_t total_size = 0;

  static std::optional<StatsLayout> compute(uint32_t nb_workers, uint32_t max_peers,
                                            uint32_t max_rules, std::string* error);
};

// Creator side, owned by the data plane. Destroying it removes the region's name.
class StatsRegion {
 public:
  static std::optional<StatsRegion> create(std::string_view name, uint32_t nb_workers,
                                           uint32_t max_peers, uint32_t max_rules,
                                           std::string* error);

  WorkerStats& worker(uint32_t index) {
    assert(index < workers_.size());
    return workers_[index];
  }
  uint32_t nb_workers() const { return layout_.nb_workers; }
  uint32_t max_peers() const { return layout_.max_peers; }
  uint32_t max_rules() const { return layout_.max_rules; }

  // Control lcore only. Publish a peer before installing it in the worker tables so that its
  // traffic baseline is taken before it can receive traffic.
  void publish_port(uint32_t index, const PortCounters& counters);
  void publish_peer(uint32_t slot, const PeerRecord& record);
  void clear_peer(uint32_t slot);
  // Names rule i of the new policy; rules beyond names.size() become unnamed (hidden). Hits
  // restart from zero for the new names; a worker still on the old policy during the RCU
  // grace period may add a few old-policy hits to them.
  void set_rule_names(uint64_t policy_version, std::span<const std::string_view> names);

 private:
  StatsRegion(SharedMemory shm, const StatsLayout& layout);
  PeerTraffic peer_traffic_sum(uint32_t slot) const;
  uint64_t rule_hits_sum(uint32_t rule) const;

  SharedMemory shm_;
  StatsLayout layout_;
  std::vector<WorkerStats> workers_;
};

struct WorkerSnapshot {
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t loops = 0;
  uint64_t punted_packets = 0;
  uint64_t returned_packets = 0;
  uint64_t forwarded_packets = 0;
  std::array<uint64_t, kDropReasonCount> drops{};
  std::array<uint64_t, kHandshakeEventCount> handshakes{};
};

struct PortSnapshot {
  uint32_t index = 0;
  PortCounters counters;
};

struct PeerSnapshot {
  uint32_t slot = 0;
  PeerRecord record;
  PeerTraffic traffic{};  // since the slot was activated
};

struct RuleSnapshot {
  uint32_t index = 0;
  std::string name;
  uint64_t hits = 0;  // summed over workers, since the policy that named the rule
};

struct StatsSnapshot {
  uint64_t policy_version = 0;
  uint64_t started_unix_ns = 0;
  uint32_t pid = 0;
  std::vector<PortSnapshot> ports;      // published ports only
  std::vector<WorkerSnapshot> workers;  // indexed by worker
  WorkerSnapshot total;                 // sum over workers
  std::vector<PeerSnapshot> peers;      // active peers only
  std::vector<RuleSnapshot> rules;      // named rules only
};

// Reader side: any process, read-only mapping.
class StatsReader {
 public:
  // Refuses regions with another magic, layout version or an inconsistent size.
  static std::optional<StatsReader> open(std::string_view name, std::string* error);
  // Every counter: reads every port, worker, peer slot and rule.
  StatsSnapshot snapshot() const;
  // One slot's record, if the slot is active: what a per-request lookup needs. Like snapshot(),
  // it only reads the region, so threads may call it at once.
  std::optional<PeerRecord> peer(uint32_t slot) const;

 private:
  StatsReader(SharedMemory shm, const StatsLayout& layout)
      : shm_(std::move(shm)), layout_(layout) {}

  SharedMemory shm_;
  StatsLayout layout_;
};

// JSON document (stable field names; counters are JSON numbers):
// { "policy_version", "started_unix_ns", "pid",
//   "ports": [{"index", "ipackets", "opackets", "ibytes", "obytes", "imissed", "ierrors",
//              "oerrors", "rx_nombuf", "flow_steering": "hardware"|"software"|"unknown"}],
//   "workers": [{"index", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "loops",
//                "punted_packets", "returned_packets", "forwarded_packets", "drops": {...},
//                "handshakes": {"<event name>": count, ... every event}}],
//   "total": {same fields as a worker, without "index"},
//   "drops": {"<reason name>": count, ... every reason, summed over workers},
//   "handshakes": {"<event name>": count, ... every event, summed over workers},
//   "peers": [{"slot", "public_key" (standard base64), "user", "device",
//              "endpoint": "1.2.3.4:51820" | "[2001:db8::1]:51820" | null,
//              "last_handshake_unix_ns", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes"}],
//   "rules": [{"index", "name", "hits"}] }
std::string to_json(const StatsSnapshot& snapshot);
// Aligned columns for people; not a stable format.
std::string to_table(const StatsSnapshot& snapshot);

}  // namespace airlock::dp
