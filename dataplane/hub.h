// The hub: everything the control lcore and the workers share, and the control lcore's own
// duties (handshakes, timers, policy swaps, counters export). Workers live in worker.h.
#pragma once

#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/config.h"
#include "dataplane/cookie.h"
#include "dataplane/noise.h"
#include "dataplane/peers.h"
#include "dataplane/policy_table.h"
#include "dataplane/ratelimiter.h"
#include "dataplane/ring.h"
#include "dataplane/stats.h"
#include "dataplane/underlay.h"
#include "policy/airlock_generated.h"

namespace airlock::dp {

struct RteRingDeleter {
  void operator()(rte_ring* r) const { rte_ring_free(r); }
};
struct RteMempoolDeleter {
  void operator()(rte_mempool* p) const { rte_mempool_free(p); }
};
struct RcuDeleter {
  void operator()(rte_rcu_qsbr* v) const;
};
using RingPtr = std::unique_ptr<rte_ring, RteRingDeleter>;
using MempoolPtr = std::unique_ptr<rte_mempool, RteMempoolDeleter>;

inline constexpr uint32_t kHandshakeRingSize = 4096;
inline constexpr uint32_t kControlTxRingSize = 1024;

class Hub {
 public:
  // Builds everything except the port, which the caller opens (it knows the devargs) and
  // hands in with attach_port(). nb_workers = number of worker lcores = port queues.
  static std::unique_ptr<Hub> create(const Config& cfg, const crypto::Key& private_key,
                                     uint32_t nb_workers, std::string* error);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  void attach_port(uint16_t port_id, const rte_ether_addr& mac);
  void set_steering(FlowSteering mode) { steering_ = mode; }
  // How workers fill the outer UDP checksum of transport data (handshakes always get one).
  void set_data_checksum(UdpChecksum mode) { data_checksum_ = mode; }
  UdpChecksum data_checksum() const { return data_checksum_; }

  // Verifies, compiles and atomically installs a policy. On failure the running policy stays
  // and `error` says why. Control lcore (or before the workers start) only.
  bool apply_policy(std::span<const uint8_t> bytes, std::string* error);
  // apply_policy in three steps, so that the control lcore goes on answering handshakes and
  // running timers while a large policy compiles (seconds at 10k peers / 100k rules):
  // begin_policy (control lcore) verifies the buffer and reserves peer slots; the build's
  // compile() runs on any thread; finish_policy (control lcore) installs the tables or, if
  // compile failed, releases the slots. One build at a time: begin_policy refuses a second.
  std::unique_ptr<PolicyBuild> begin_policy(std::span<const uint8_t> bytes, std::string* error);
  bool finish_policy(std::unique_ptr<PolicyBuild> build, std::string* error);
  uint64_t policy_version() const;

  // One pass of the control lcore: handshake messages, timers, key rotation, counters.
  void control_tick();

  const LocalIdentity& identity() const { return identity_; }
  // The slot of the peer with this public key in the running policy.
  std::optional<uint32_t> slot_of(const crypto::Key& public_key) const;
  // Installs transport keys as if a handshake had completed and returns the local index. With
  // keys.local_index 0 the hub assigns one; otherwise that exact index is used, and nullopt is
  // returned if its table entry is taken. For benchmarks and tests that start from an
  // established session; the protocol path is handle_initiation/handle_response.
  std::optional<uint32_t> install_session(uint32_t slot, SessionKeys keys, const Endpoint& to);

  // --- shared with workers -------------------------------------------------------------
  const Config& config() const { return cfg_; }
  uint64_t now_ns() const;
  uint64_t tsc_hz() const { return tsc_hz_; }
  uint16_t port_id() const { return port_id_; }
  const UnderlayAddr& underlay() const { return underlay_; }
  uint16_t listen_port_be() const { return listen_port_be_; }
  rte_mempool* pool() const { return pool_.get(); }
  PeerTable& peers() { return peers_; }
  const IndexTable& index() const { return index_; }
  const PolicySnapshot* policy_acquire() const { return policy_.load(std::memory_order_acquire); }
  rte_rcu_qsbr* rcu() const { return rcu_.get(); }
  rte_ring* handshake_ring() const { return handshake_ring_.get(); }
  rte_ring* control_tx_ring(uint32_t worker) const { return control_tx_[worker].get(); }
  PacketChannel& channel(uint32_t worker) { return channels_[worker]; }
  StatsRegion& stats() { return *stats_; }
  uint32_t nb_workers() const { return nb_workers_; }
  std::atomic<bool>& stopping() { return stopping_; }
  // Changes whenever some peer gains a usable keypair; workers then retry staged packets.
  uint64_t session_epoch() const { return session_epoch_.load(std::memory_order_acquire); }
  uint64_t rekey_after_messages() const { return kRekeyAfterMessages; }

 private:
  Hub(const Config& cfg, uint32_t nb_workers);

  // handshake.cc
  void process_handshake_messages(uint64_t now);
  void handle_initiation(const WireguardFrame& f, uint64_t now);
  void handle_response(const WireguardFrame& f, uint64_t now);
  void handle_cookie_reply(const WireguardFrame& f, uint64_t now);
  bool pass_load_checks(std::span<uint8_t> msg, uint32_t sender_index, const WireguardFrame& f,
                        uint64_t now);
  void send_initiation(uint32_t slot, uint64_t now);
  void send_keepalive(uint32_t slot, uint64_t now);
  // False when the message could not be queued (counted as a tx_full drop).
  bool send_message(std::span<const uint8_t> msg, const Endpoint& to);
  void learn_neighbor(rte_mbuf* arp);
  rte_ether_addr neighbor_mac(uint32_t ipv4_be) const;
  void send_arp_request(uint32_t ipv4_be, uint64_t now);
  bool install_keypair(uint32_t slot, const SessionKeys& keys, uint64_t now);
  void promote_confirmed(uint32_t slot);
  void retire_keypair(Keypair* kp);
  void zero_peer_keys(uint32_t slot);

  // timers / control
  void run_timers(uint64_t now);
  void export_counters();
  void publish_peer_record(uint32_t slot);
  void defer_retired();
  void reclaim_retired(bool wait);
  void count_control_drop(DropReason why) { stats_->worker(nb_workers_).count_drop(why); }
  void count_handshake(HandshakeEvent event) { stats_->worker(nb_workers_).count_handshake(event); }

  // policy_table.cc
  // fresh: the peer starts afresh (new or re-added); false for a peer that stays.
  void configure_peer(uint32_t slot, const airlock::policy::Peer& p, bool fresh);
  void deactivate_peer(uint32_t slot);

  Config cfg_;
  uint32_t nb_workers_;
  uint64_t tsc_hz_;
  uint16_t port_id_ = 0;
  UnderlayAddr underlay_{};
  uint16_t listen_port_be_ = 0;

  LocalIdentity identity_;
  std::optional<CookieChecker> cookie_checker_;
  RateLimiter ratelimiter_;
  uint64_t under_load_until_ns_ = 0;
  uint64_t rate_window_start_ns_ = 0;
  uint64_t rate_window_count_ = 0;
  uint16_t ip_id_ = 0;

  MempoolPtr pool_;
  PeerTable peers_;
  IndexTable index_;
  KeypairPool keypairs_;
  std::vector<uint32_t> active_slots_;  // control-only list of slots in the running policy
  // Between begin_policy and finish_policy: retired slots are not reclaimed meanwhile, since the
  // open build may have taken one back for a returning peer.
  bool policy_build_open_ = false;
  FlowSteering steering_ = FlowSteering::kUnknown;
  UdpChecksum data_checksum_ = UdpChecksum::kNone;
  // Unlinked objects wait for an RCU grace period before reuse. The control lcore never blocks
  // on workers: each batch carries the token of rte_rcu_qsbr_start and is freed once
  // rte_rcu_qsbr_check says every worker has passed a quiescent state since.
  struct Deferred {
    uint64_t token = 0;
    std::vector<Keypair*> keypairs;
    std::vector<uint32_t> slots;
    std::unique_ptr<PolicySnapshot> snapshot;
  };
  std::vector<Keypair*> retired_;
  std::vector<uint32_t> retired_slots_;
  std::unique_ptr<PolicySnapshot> retired_snapshot_;
  std::deque<Deferred> deferred_;
  std::atomic<PolicySnapshot*> policy_{nullptr};
  std::unique_ptr<rte_rcu_qsbr, RcuDeleter> rcu_;
  RingPtr handshake_ring_;
  std::vector<RingPtr> control_tx_;
  std::vector<PacketChannel> channels_;
  std::optional<StatsRegion> stats_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> session_epoch_{0};
  uint64_t last_export_ns_ = 0;
  // Underlay neighbours (IPv4 → MAC), learned from ARP; needed to initiate to a configured
  // endpoint that has not spoken yet.
  std::unordered_map<uint32_t, rte_ether_addr> neighbors_;
  std::unordered_map<uint32_t, uint64_t> arp_requested_ns_;
};

}  // namespace airlock::dp
