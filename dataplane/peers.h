// Peer state shared between the control lcore (handshakes, timers, policy) and the workers
// (transport data). Ownership rules, which keep the fast path free of locks:
//   - The control lcore is the only writer of keys, keypair slots and handshake state.
//   - Workers read keypairs through atomics and write only: a keypair's replay window (one
//     worker owns a peer's flow, see worker.h), the `confirmed` flag, the endpoint and the
//     activity timestamps (relaxed stores).
//   - Keypairs are never freed while a worker may hold a pointer: the control lcore unlinks
//     them, waits for an RCU grace period, then returns them to the pool.
#pragma once

#include <rte_ether.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/cookie.h"
#include "dataplane/crypto_prims.h"
#include "dataplane/noise.h"
#include "dataplane/replay.h"
#include "dataplane/timers.h"

namespace airlock::dp {

inline constexpr uint32_t kIndexTableSize = 1u << 16;

struct Keypair {
  crypto::Key send_key{};
  crypto::Key receive_key{};
  std::atomic<uint64_t> send_counter{0};
  ReplayWindow replay;
  uint64_t birth_ns = 0;
  uint32_t local_index = 0;
  uint32_t remote_index = 0;
  uint32_t peer_slot = 0;
  bool we_initiated = false;
  // Set by a worker when the first packet arrives under a responder's `next` keypair; the
  // control lcore then promotes it (key confirmation, whitepaper §5.4.6).
  std::atomic<bool> confirmed{false};

  void wipe();
};

// A peer's current UDP endpoint. Packed into two words so workers can update it without a
// lock; a reader may briefly pair a new address with the previous MAC during a roam, which
// at worst sends one packet to the old next hop.
struct Endpoint {
  uint32_t ipv4_be = 0;
  uint16_t port_be = 0;
  rte_ether_addr mac{};
  bool known() const { return ipv4_be != 0 && port_be != 0; }
};

class AtomicEndpoint {
 public:
  Endpoint load() const;
  void store(const Endpoint& e);
  // Cheap check used per received packet: only stores when the source changed (roaming).
  void update_if_changed(uint32_t ipv4_be, uint16_t port_be, const rte_ether_addr& mac);

 private:
  std::atomic<uint64_t> addr_{0};  // ipv4 | port << 32
  std::atomic<uint64_t> mac_{0};
};

struct PeerState {
  std::atomic<bool> active{false};
  // Bumped whenever the slot starts a new peer, so a packet queued for the slot's previous
  // occupant is never sealed to its successor.
  std::atomic<uint32_t> generation{0};
  PeerKeys keys;
  std::optional<CookieMaker> cookie_maker;
  Handshake handshake;
  uint16_t persistent_keepalive_s = 0;
  bool has_configured_endpoint = false;
  Endpoint configured_endpoint;
  std::string user, device;

  std::atomic<Keypair*> current{nullptr};
  std::atomic<Keypair*> next{nullptr};
  std::atomic<Keypair*> previous{nullptr};
  AtomicEndpoint endpoint;

  // Activity clock (monotonic ns) written by workers and the control lcore, read by timers.
  std::atomic<uint64_t> last_rx_data_ns{0};
  std::atomic<uint64_t> last_tx_data_ns{0};
  std::atomic<uint64_t> last_rx_auth_ns{0};
  std::atomic<uint64_t> last_tx_auth_ns{0};
  // A worker had data for this peer and no usable keypair.
  std::atomic<bool> want_handshake{false};

  // Control lcore only.
  TimerState timers;
  uint64_t last_handshake_unix_ns = 0;
  uint64_t keys_derived_ns = 0;
};

// Maps the 32-bit receiver index a peer echoes back to the keypair it names. The low 16 bits
// select the entry and the high 16 bits are random, so a stale or forged index misses.
class IndexTable {
 public:
  IndexTable();
  Keypair* lookup(uint32_t index) const {
    Keypair* kp = entries_[index & (kIndexTableSize - 1)].load(std::memory_order_acquire);
    return (kp != nullptr && kp->local_index == index) ? kp : nullptr;
  }
  // Control lcore only. Reserves a free entry and returns a fresh index, or nullopt if full.
  std::optional<uint32_t> reserve(uint32_t peer_slot);
  // Control lcore only. Reserves exactly `index` (static sessions, whose index is fixed in
  // advance); false if its entry is 0 or already taken.
  bool reserve_exact(uint32_t index, uint32_t peer_slot);
  void publish(uint32_t index, Keypair* kp);
  void release(uint32_t index);
  // The peer that reserved `index` for a pending handshake, if the entry is still reserved.
  std::optional<uint32_t> reserved_peer(uint32_t index) const;

 private:
  std::unique_ptr<std::atomic<Keypair*>[]> entries_;
  std::vector<uint32_t> full_index_;  // control-only: index currently held by each entry
  std::vector<uint32_t> owner_;       // control-only: peer slot owning each entry, or ~0
  uint32_t cursor_ = 1;
};

// Fixed pool of keypairs allocated once at start; the control lcore hands them out and takes
// them back after a grace period.
class KeypairPool {
 public:
  explicit KeypairPool(uint32_t capacity);
  Keypair* acquire();
  void release(Keypair* kp);
  uint32_t available() const { return static_cast<uint32_t>(free_.size()); }

 private:
  std::unique_ptr<Keypair[]> storage_;
  std::vector<Keypair*> free_;
};

class PeerTable {
 public:
  explicit PeerTable(uint32_t max_peers);
  uint32_t capacity() const { return capacity_; }
  PeerState& at(uint32_t slot) { return peers_[slot]; }
  const PeerState& at(uint32_t slot) const { return peers_[slot]; }
  // Control lcore only.
  std::optional<uint32_t> find(const crypto::Key& public_key) const;
  std::optional<uint32_t> allocate(const crypto::Key& public_key);
  void forget(uint32_t slot);

 private:
  struct KeyHash {
    size_t operator()(const crypto::Key& k) const;
  };
  uint32_t capacity_;
  std::unique_ptr<PeerState[]> peers_;
  std::unordered_map<crypto::Key, uint32_t, KeyHash> by_key_;
  std::vector<crypto::Key> key_of_slot_;
  std::vector<uint32_t> free_slots_;
};

}  // namespace airlock::dp
