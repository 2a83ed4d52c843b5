#include "dataplane/hub.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>

namespace airlock::dp {
namespace {

constexpr uint64_t kExportIntervalNs = 200'000'000;
constexpr uint32_t kPacketSlotSize = 2048;

std::string unique_name(const char* base) {
  static std::atomic<uint32_t> counter{0};
  return std::string(base) + std::to_string(counter.fetch_add(1));
}

}  // namespace

void RcuDeleter::operator()(rte_rcu_qsbr* v) const {
  rte_free(v);
}

Hub::Hub(const Config& cfg, uint32_t nb_workers)
    : cfg_(cfg),
      nb_workers_(nb_workers),
      tsc_hz_(rte_get_tsc_hz()),
      peers_(cfg.max_peers),
      keypairs_(std::min<uint32_t>(kIndexTableSize - 1, cfg.max_peers * 3 + 64)) {}

Hub::~Hub() {
  stopping_.store(true);
  defer_retired();
  reclaim_retired(true);
  delete policy_.exchange(nullptr);
}

std::unique_ptr<Hub> Hub::create(const Config& cfg, const crypto::Key& private_key,
                                 uint32_t nb_workers, std::string* error) {
  if (nb_workers == 0 || nb_workers > RTE_MAX_LCORE) {
    *error = "need at least one worker lcore";
    return nullptr;
  }
  std::unique_ptr<Hub> hub(new Hub(cfg, nb_workers));
  hub->identity_ = LocalIdentity::from_private(private_key);
  hub->cookie_checker_.emplace(hub->identity_.public_key);
  hub->underlay_.ipv4_be = cfg.address_be;
  hub->listen_port_be_ = rte_cpu_to_be_16(cfg.listen_port);
  int socket = static_cast<int>(rte_socket_id());

  hub->pool_.reset(rte_pktmbuf_pool_create(unique_name("al_pool").c_str(), cfg.mbufs, 256, 0,
                                           RTE_MBUF_DEFAULT_BUF_SIZE, socket));
  if (!hub->pool_) {
    *error = "mbuf pool of " + std::to_string(cfg.mbufs) + ": " + rte_strerror(rte_errno);
    return nullptr;
  }
  size_t rcu_size = rte_rcu_qsbr_get_memsize(nb_workers);
  hub->rcu_.reset(static_cast<rte_rcu_qsbr*>(rte_zmalloc("al_rcu", rcu_size, RTE_CACHE_LINE_SIZE)));
  if (!hub->rcu_ || rte_rcu_qsbr_init(hub->rcu_.get(), nb_workers) != 0) {
    *error = "RCU state: " + std::string(rte_strerror(rte_errno));
    return nullptr;
  }
  hub->handshake_ring_.reset(
      rte_ring_create(unique_name("al_hs").c_str(), kHandshakeRingSize, socket, RING_F_SC_DEQ));
  if (!hub->handshake_ring_) {
    *error = "handshake ring: " + std::string(rte_strerror(rte_errno));
    return nullptr;
  }
  for (uint32_t w = 0; w < nb_workers; ++w) {
    hub->control_tx_.emplace_back(rte_ring_create(unique_name("al_ctx").c_str(), kControlTxRingSize,
                                                  socket, RING_F_SP_ENQ | RING_F_SC_DEQ));
    if (!hub->control_tx_.back()) {
      *error = "control tx ring: " + std::string(rte_strerror(rte_errno));
      return nullptr;
    }
    auto ch = PacketChannel::create(cfg.instance + "-ring-" + std::to_string(w), cfg.ring_slots,
                                    kPacketSlotSize, error);
    if (!ch) return nullptr;
    hub->channels_.push_back(std::move(*ch));
  }
  // One counters block per worker plus one for the control lcore's own drops.
  hub->stats_ = StatsRegion::create(cfg.instance + "-stats", nb_workers + 1, cfg.max_peers,
                                    cfg.max_rules, error);
  if (!hub->stats_) return nullptr;
  return hub;
}

void Hub::attach_port(uint16_t port_id, const rte_ether_addr& mac) {
  port_id_ = port_id;
  underlay_.mac = mac;
}

uint64_t Hub::now_ns() const {
  return static_cast<uint64_t>(static_cast<unsigned __int128>(rte_get_tsc_cycles()) *
                               1'000'000'000u / tsc_hz_);
}

uint64_t Hub::policy_version() const {
  const PolicySnapshot* p = policy_.load(std::memory_order_acquire);
  return p ? p->version : 0;
}

void Hub::control_tick() {
  uint64_t now = now_ns();
  process_handshake_messages(now);
  run_timers(now);
  defer_retired();
  reclaim_retired(false);
  if (now - last_export_ns_ >= kExportIntervalNs) {
    export_counters();
    last_export_ns_ = now;
  }
}

std::optional<uint32_t> Hub::slot_of(const crypto::Key& public_key) const {
  auto slot = peers_.find(public_key);
  if (!slot || !peers_.at(*slot).active.load(std::memory_order_relaxed)) return std::nullopt;
  return slot;
}

std::optional<uint32_t> Hub::install_session(uint32_t slot, SessionKeys keys, const Endpoint& to) {
  std::optional<uint32_t> index;
  if (keys.local_index == 0) {
    index = index_.reserve(slot);
  } else if (index_.reserve_exact(keys.local_index, slot)) {
    index = keys.local_index;
  }
  if (!index) return std::nullopt;
  keys.local_index = *index;
  keys.we_initiated = true;
  if (!install_keypair(slot, keys, now_ns())) {
    index_.release(*index);
    return std::nullopt;
  }
  peers_.at(slot).endpoint.store(to);
  return *index;
}

void Hub::run_timers(uint64_t now) {
  for (uint32_t slot : active_slots_) {
    PeerState& peer = peers_.at(slot);
    promote_confirmed(slot);
    Keypair* cur = peer.current.load(std::memory_order_relaxed);
    TimerInputs in;
    in.now_ns = now;
    in.has_current = cur != nullptr;
    in.current_we_initiated = cur != nullptr && cur->we_initiated;
    in.current_birth_ns = cur != nullptr ? cur->birth_ns : 0;
    in.last_rx_data_ns = peer.last_rx_data_ns.load(std::memory_order_relaxed);
    in.last_tx_data_ns = peer.last_tx_data_ns.load(std::memory_order_relaxed);
    in.last_rx_auth_ns = peer.last_rx_auth_ns.load(std::memory_order_relaxed);
    in.last_tx_auth_ns = peer.last_tx_auth_ns.load(std::memory_order_relaxed);
    in.want_handshake = peer.want_handshake.load(std::memory_order_relaxed);
    in.endpoint_known = peer.endpoint.load().known();
    in.persistent_keepalive_s = peer.persistent_keepalive_s;
    in.keys_derived_ns = peer.keys_derived_ns;
    uint32_t actions = evaluate_timers(in, peer.timers, cfg_.timers);
    if (actions & kTimerZeroKeys) zero_peer_keys(slot);
    if (actions & kTimerGiveUpHandshake) {
      peer.want_handshake.store(false, std::memory_order_relaxed);
      if (peer.handshake.state == HandshakeState::kInitiationCreated) {
        index_.release(peer.handshake.local_index);
      }
      peer.handshake.reset();
    }
    if (actions & kTimerInitiateHandshake) send_initiation(slot, now);
    if (actions & kTimerSendKeepalive) send_keepalive(slot, now);
  }
}

void Hub::promote_confirmed(uint32_t slot) {
  PeerState& peer = peers_.at(slot);
  Keypair* next = peer.next.load(std::memory_order_relaxed);
  if (next == nullptr || !next->confirmed.load(std::memory_order_acquire)) return;
  Keypair* old_previous = peer.previous.exchange(peer.current.load(std::memory_order_relaxed),
                                                 std::memory_order_acq_rel);
  peer.current.store(next, std::memory_order_release);
  peer.next.store(nullptr, std::memory_order_release);
  retire_keypair(old_previous);
  note_handshake_complete(peer.timers);
  peer.want_handshake.store(false, std::memory_order_relaxed);
}

void Hub::retire_keypair(Keypair* kp) {
  if (kp == nullptr) return;
  index_.release(kp->local_index);
  retired_.push_back(kp);
}

void Hub::zero_peer_keys(uint32_t slot) {
  PeerState& peer = peers_.at(slot);
  retire_keypair(peer.current.exchange(nullptr));
  retire_keypair(peer.next.exchange(nullptr));
  retire_keypair(peer.previous.exchange(nullptr));
  if (peer.handshake.state == HandshakeState::kInitiationCreated) {
    index_.release(peer.handshake.local_index);
  }
  peer.handshake.reset();
  peer.keys_derived_ns = 0;
}

void Hub::defer_retired() {
  if (retired_.empty() && retired_slots_.empty() && !retired_snapshot_) return;
  Deferred d;
  d.token = rte_rcu_qsbr_start(rcu_.get());
  d.keypairs = std::move(retired_);
  d.slots = std::move(retired_slots_);
  d.snapshot = std::move(retired_snapshot_);
  retired_.clear();
  retired_slots_.clear();
  deferred_.push_back(std::move(d));
}

void Hub::reclaim_retired(bool wait) {
  if (policy_build_open_ && !wait) return;
  while (!deferred_.empty()) {
    Deferred& d = deferred_.front();
    if (!wait && rte_rcu_qsbr_check(rcu_.get(), d.token, false) != 1) return;
    for (Keypair* kp : d.keypairs) keypairs_.release(kp);
    // A slot whose peer came back in a newer policy meanwhile stays.
    for (uint32_t slot : d.slots) {
      if (!peers_.at(slot).active.load(std::memory_order_relaxed)) peers_.forget(slot);
    }
    deferred_.pop_front();
  }
}

void Hub::export_counters() {
  rte_eth_stats s{};
  if (rte_eth_stats_get(port_id_, &s) == 0) {
    PortCounters pc;
    pc.ipackets = s.ipackets;
    pc.opackets = s.opackets;
    pc.ibytes = s.ibytes;
    pc.obytes = s.obytes;
    pc.imissed = s.imissed;
    pc.ierrors = s.ierrors;
    pc.oerrors = s.oerrors;
    pc.rx_nombuf = s.rx_nombuf;
    pc.flow_steering = steering_;
    stats_->publish_port(0, pc);
  }
  for (uint32_t slot : active_slots_) publish_peer_record(slot);
}

void Hub::publish_peer_record(uint32_t slot) {
  const PeerState& peer = peers_.at(slot);
  PeerRecord r;
  r.public_key = peer.keys.public_key;
  set_fixed_string(r.user, peer.user);
  set_fixed_string(r.device, peer.device);
  r.last_handshake_unix_ns = peer.last_handshake_unix_ns;
  Endpoint ep = peer.endpoint.load();
  if (ep.known()) {
    r.endpoint.family = AF_INET;
    r.endpoint.port = rte_be_to_cpu_16(ep.port_be);
    std::memcpy(r.endpoint.addr.data(), &ep.ipv4_be, 4);
  }
  stats_->publish_peer(slot, r);
}

}  // namespace airlock::dp
