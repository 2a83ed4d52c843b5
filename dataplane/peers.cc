#include "dataplane/peers.h"

#include <sodium.h>

#include <cstring>

namespace airlock::dp {

void Keypair::wipe() {
  sodium_memzero(send_key.data(), send_key.size());
  sodium_memzero(receive_key.data(), receive_key.size());
  send_counter.store(0, std::memory_order_relaxed);
  replay.reset();
  birth_ns = 0;
  local_index = remote_index = peer_slot = 0;
  we_initiated = false;
  confirmed.store(false, std::memory_order_relaxed);
}

Endpoint AtomicEndpoint::load() const {
  Endpoint e;
  uint64_t a = addr_.load(std::memory_order_acquire);
  uint64_t m = mac_.load(std::memory_order_relaxed);
  e.ipv4_be = static_cast<uint32_t>(a);
  e.port_be = static_cast<uint16_t>(a >> 32);
  std::memcpy(e.mac.addr_bytes, &m, RTE_ETHER_ADDR_LEN);
  return e;
}

void AtomicEndpoint::store(const Endpoint& e) {
  uint64_t m = 0;
  std::memcpy(&m, e.mac.addr_bytes, RTE_ETHER_ADDR_LEN);
  mac_.store(m, std::memory_order_relaxed);
  addr_.store(uint64_t{e.ipv4_be} | (uint64_t{e.port_be} << 32), std::memory_order_release);
}

void AtomicEndpoint::update_if_changed(uint32_t ipv4_be, uint16_t port_be,
                                       const rte_ether_addr& mac) {
  uint64_t a = uint64_t{ipv4_be} | (uint64_t{port_be} << 32);
  uint64_t m = 0;
  std::memcpy(&m, mac.addr_bytes, RTE_ETHER_ADDR_LEN);
  if (addr_.load(std::memory_order_relaxed) == a && mac_.load(std::memory_order_relaxed) == m) {
    return;
  }
  mac_.store(m, std::memory_order_relaxed);
  addr_.store(a, std::memory_order_release);
}

IndexTable::IndexTable()
    : entries_(std::make_unique<std::atomic<Keypair*>[]>(kIndexTableSize)),
      full_index_(kIndexTableSize, 0),
      owner_(kIndexTableSize, ~0u) {}

std::optional<uint32_t> IndexTable::reserve(uint32_t peer_slot) {
  // Entry 0 stays unused so that an all-zero receiver index never matches.
  for (uint32_t tries = 0; tries < kIndexTableSize; ++tries) {
    uint32_t entry = cursor_;
    cursor_ = (cursor_ + 1) & (kIndexTableSize - 1);
    if (cursor_ == 0) cursor_ = 1;
    if (entry == 0 || owner_[entry] != ~0u) continue;
    uint32_t index = (randombytes_random() & ~(kIndexTableSize - 1)) | entry;
    owner_[entry] = peer_slot;
    full_index_[entry] = index;
    return index;
  }
  return std::nullopt;
}

bool IndexTable::reserve_exact(uint32_t index, uint32_t peer_slot) {
  uint32_t entry = index & (kIndexTableSize - 1);
  if (entry == 0 || owner_[entry] != ~0u) return false;
  owner_[entry] = peer_slot;
  full_index_[entry] = index;
  return true;
}

void IndexTable::publish(uint32_t index, Keypair* kp) {
  entries_[index & (kIndexTableSize - 1)].store(kp, std::memory_order_release);
}

void IndexTable::release(uint32_t index) {
  uint32_t entry = index & (kIndexTableSize - 1);
  if (full_index_[entry] != index) return;
  entries_[entry].store(nullptr, std::memory_order_release);
  owner_[entry] = ~0u;
  full_index_[entry] = 0;
}

std::optional<uint32_t> IndexTable::reserved_peer(uint32_t index) const {
  uint32_t entry = index & (kIndexTableSize - 1);
  if (owner_[entry] == ~0u || full_index_[entry] != index) return std::nullopt;
  return owner_[entry];
}

KeypairPool::KeypairPool(uint32_t capacity) : storage_(std::make_unique<Keypair[]>(capacity)) {
  free_.reserve(capacity);
  for (uint32_t i = capacity; i > 0; --i) free_.push_back(&storage_[i - 1]);
}

Keypair* KeypairPool::acquire() {
  if (free_.empty()) return nullptr;
  Keypair* kp = free_.back();
  free_.pop_back();
  return kp;
}

void KeypairPool::release(Keypair* kp) {
  kp->wipe();
  free_.push_back(kp);
}

size_t PeerTable::KeyHash::operator()(const crypto::Key& k) const {
  size_t h;
  std::memcpy(&h, k.data(), sizeof(h));  // public keys are uniformly distributed
  return h;
}

PeerTable::PeerTable(uint32_t max_peers)
    : capacity_(max_peers),
      peers_(std::make_unique<PeerState[]>(max_peers)),
      key_of_slot_(max_peers) {
  free_slots_.reserve(max_peers);
  for (uint32_t i = max_peers; i > 0; --i) free_slots_.push_back(i - 1);
}

std::optional<uint32_t> PeerTable::find(const crypto::Key& public_key) const {
  auto it = by_key_.find(public_key);
  if (it == by_key_.end()) return std::nullopt;
  return it->second;
}

std::optional<uint32_t> PeerTable::allocate(const crypto::Key& public_key) {
  if (free_slots_.empty()) return std::nullopt;
  uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  by_key_.emplace(public_key, slot);
  key_of_slot_[slot] = public_key;
  return slot;
}

void PeerTable::forget(uint32_t slot) {
  // Idempotent: a peer removed, re-added and removed again within one grace period is
  // forgotten by two reclamation batches.
  auto it = by_key_.find(key_of_slot_[slot]);
  if (it == by_key_.end() || it->second != slot) return;
  by_key_.erase(it);
  free_slots_.push_back(slot);
}

}  // namespace airlock::dp
