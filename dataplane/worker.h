// A worker lcore: polls one RX queue and runs every packet of a burst through the same
// stages as a vector — classify, decrypt, replay, cryptokey routing, ACL, then forward
// (re-encrypt), punt to the gateway ring, or drop. It owns its queue, its crypto manager and
// its counters block, so nothing here locks or allocates.
//
// A keypair's replay window has a single writer: the worker whose queue receives the peer's
// flow. RSS (or af_packet fanout) hashes the outer 5-tuple, so a peer stays on one worker
// unless it roams, and a roam moves it as a whole.
#pragma once

#include <rte_mbuf.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/acl.h"
#include "dataplane/crypto_batch.h"
#include "dataplane/hub.h"
#include "dataplane/stats.h"

namespace airlock::dp {

inline constexpr uint16_t kBurst = 32;
inline constexpr uint16_t kMaxStaged = 128;

class Worker {
 public:
  Worker(Hub& hub, uint32_t id, uint16_t queue);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Creates the crypto manager and registers with RCU. Call on the worker's own lcore.
  bool init(std::string* error);
  // Polls until the hub is stopping.
  void run();
  // One iteration: RX burst, gateway return ring, control TX ring, TX flush.
  void poll_once();
  // The packet entry point, exposed for tests, benchmarks and the fuzzer.
  void handle_burst(rte_mbuf** pkts, uint16_t n, uint64_t now);
  void flush_tx();

 private:
  struct DataPacket {
    rte_mbuf* m;
    Keypair* kp;
    uint8_t* wg;  // start of the WireGuard message
    uint32_t wg_len;
    WireguardFrame frame;
  };
  struct Routed {
    rte_mbuf* m;
    uint32_t peer_slot;
    bool forwarded;  // peer to peer (counted once it is sealed), else a gateway return
  };

  void take_frame(rte_mbuf* m, uint64_t now, const PolicySnapshot* policy);
  void queue_data(rte_mbuf* m, const WireguardFrame& f, uint64_t now, const PolicySnapshot* policy);
  void handle_chunk(rte_mbuf** pkts, uint16_t n, uint64_t now, const PolicySnapshot* policy);
  void decrypt_data(uint64_t now, const PolicySnapshot* policy);
  bool accept_inner(DataPacket& p, uint64_t now, const PolicySnapshot* policy);
  void classify_and_dispatch(const PolicySnapshot* policy, uint64_t now);
  void dispatch(rte_mbuf* m, uint32_t src_slot, uint32_t result, const PolicySnapshot* policy);
  void take_gateway_returns(uint64_t now, const PolicySnapshot* policy);
  void encrypt_and_send(uint64_t now);
  bool seal(Routed& r, uint64_t now, BatchCrypto::Op* op, bool from_staging = false);
  Keypair* usable_keypair(PeerState& peer, uint64_t now) const;
  void stage(const Routed& r, uint64_t now);
  // Seals the staged packets whose peer now has a session into ops/sealed; they go before any
  // newer packet so a peer's packets keep their order.
  void release_staged(uint64_t now, BatchCrypto::Op* ops, Routed* sealed, uint16_t* n);
  void take_control_tx();
  void drop(rte_mbuf* m, DropReason why);
  void tx(rte_mbuf* m);

  Hub& hub_;
  uint32_t id_;
  uint16_t queue_;
  std::optional<BatchCrypto> crypto_;
  // Only when Config::crypto_encrypt pins another path: one manager for both directions keeps
  // the fast path's cache footprint what it was.
  std::optional<BatchCrypto> own_encryptor_;
  BatchCrypto& encryptor() { return own_encryptor_ ? *own_encryptor_ : *crypto_; }
  WorkerStats* stats_ = nullptr;
  uint16_t ip_id_ = 0;

  std::array<DataPacket, kBurst> data_{};
  uint16_t n_data_ = 0;
  // Packets that passed cryptokey routing, waiting for one ACL classify call.
  std::array<rte_mbuf*, kBurst> v4_{}, v6_{};
  std::array<uint32_t, kBurst> v4_src_{}, v6_src_{};
  std::array<AclKeyV4, kBurst> v4_keys_{};
  std::array<AclKeyV6, kBurst> v6_keys_{};
  uint16_t n_v4_ = 0, n_v6_ = 0;
  // Inner packets headed to a peer (forwarded or returned by the gateway), sealed in one batch.
  std::array<Routed, size_t{2} * kBurst> out_{};
  uint16_t n_out_ = 0;
  // Packets for a peer without a usable session wait here, like the kernel's staged queue,
  // while the control lcore handshakes; they leave as soon as a keypair appears, or are
  // dropped (no_session) after rekey_timeout.
  struct Staged {
    rte_mbuf* m;
    uint32_t peer_slot;
    uint32_t generation;
    bool forwarded;
    uint64_t since_ns;
  };
  std::array<Staged, kMaxStaged> staged_{};
  uint16_t n_staged_ = 0;
  // Staged packets per peer slot: a newer packet for such a peer is staged behind them, so
  // the queue only needs rescanning now and then instead of on every batch.
  std::vector<uint16_t> staged_by_slot_;
  uint64_t next_staged_scan_ns_ = 0;
  uint64_t seen_session_epoch_ = 0;
  bool confirmed_a_keypair_ = false;  // in this burst: a responder session became usable
  static constexpr size_t kSealMax = kMaxStaged + size_t{2} * kBurst;
  std::array<rte_mbuf*, size_t{4} * kBurst> tx_{};
  uint16_t n_tx_ = 0;
};

}  // namespace airlock::dp
