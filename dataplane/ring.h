// The packet channel between a data-plane worker and the control plane: one named
// shared-memory region holding two directions, each a pair of DPDK SP/SC rings built with
// rte_ring_init() on that memory plus a slot arena. Neither process needs rte_eal_init; the
// rings carry fixed-size descriptors with slot indices, never pointers, so each process may map
// the region at a different address.
//
// Threading contract (SP/SC rings have no CAS; a second thread on either end corrupts them
// silently): per direction exactly ONE producer thread (send, send_burst) and ONE consumer
// thread (receive), usually in different processes. The creator (data plane) produces
// kToGateway and consumes kFromGateway; the attacher (control plane) does the opposite.
//
// Slot life cycle per direction: free ring -> producer copies the packet into the slot ->
// submit ring -> consumer reads it in place -> free ring. The creator puts every slot on the
// free ring. The consumer validates each descriptor, so a buggy peer process cannot make it
// read outside the arena; the ring headers themselves are trusted (0600, same user).
//
// Nothing on send/receive allocates, locks or makes a system call; the consumer polls.
#pragma once

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "dataplane/shm.h"

namespace airlock::dp {

enum class Direction : uint32_t {
  kToGateway = 0,    // data plane -> control plane: punted inner IP packet, sending peer slot
  kFromGateway = 1,  // control plane -> data plane: inner IP packet, destination peer slot
};

// One submit-ring element. `slot` indexes the direction's arena.
struct RingDescriptor {
  uint32_t slot;
  uint32_t len;
  uint32_t peer_slot;
  uint32_t flags;  // reserved, zero
};
static_assert(sizeof(RingDescriptor) == 16);

inline constexpr uint64_t kChannelMagic = 0x0031'5248'434b'4c41;  // "ALKCHR1" in memory order
inline constexpr uint32_t kChannelVersion = 1;
inline constexpr uint32_t kMaxChannelSlots = 1u << 16;
inline constexpr uint32_t kMaxChannelSlotSize = 65535;  // the largest IP packet

struct alignas(64) ChannelHeader {
  uint64_t magic;  // stored last (release) by the creator
  uint32_t version;
  uint32_t slot_size;  // largest packet a slot holds
  uint32_t nb_slots;   // per direction, a power of two
  uint32_t reserved;
  uint64_t generation;  // changes each time the data plane recreates the channel
  uint64_t total_size;
};

// Where each part lives; derived from nb_slots and slot_size, never read from the region.
struct ChannelLayout {
  uint32_t nb_slots = 0;
  uint32_t slot_size = 0;
  size_t slot_stride = 0;
  std::array<size_t, 2> submit_offset{};
  std::array<size_t, 2> free_offset{};
  std::array<size_t, 2> arena_offset{};
  size_t total_size = 0;

  static std::optional<ChannelLayout> compute(uint32_t nb_slots, uint32_t slot_size,
                                              std::string* error);
};

class PacketChannel {
 public:
  static constexpr uint32_t kBurst = 32;

  struct OutPacket {
    uint32_t peer_slot;
    std::span<const uint8_t> bytes;
  };

  // Creator (data plane): replaces a stale region of the same name.
  static std::optional<PacketChannel> create(std::string_view name, uint32_t nb_slots,
                                             uint32_t slot_size, std::string* error);
  // Control plane or test tool: attaches to a running data plane's channel.
  static std::optional<PacketChannel> attach(std::string_view name, std::string* error);

  // Producer side. Copies the packet into a free slot and submits it; false when no slot is
  // free (all in flight) or the packet is larger than slot_size(). Caller counts kRingFull.
  bool send(Direction direction, uint32_t peer_slot, std::span<const uint8_t> packet);
  // Sends a prefix of `packets` in order and returns its length; stops at the first packet
  // larger than slot_size() or when no slot is free.
  uint32_t send_burst(Direction direction, std::span<const OutPacket> packets);

  // Consumer side. Calls fn(uint32_t peer_slot, std::span<const uint8_t> packet) for up to
  // `max` packets, in order. The span points into the slot and is valid only during the
  // call. Slots go back to the free ring in one burst per kBurst descriptors. Returns the
  // number of packets passed to fn.
  template <class F>
  uint32_t receive(Direction direction, uint32_t max, F&& fn);

  uint32_t nb_slots() const { return layout_.nb_slots; }
  uint32_t slot_size() const { return layout_.slot_size; }
  uint64_t generation() const { return generation_; }
  // Descriptors with an out-of-range slot or length, dropped by this process as consumer.
  uint64_t rejected_descriptors(Direction direction) const { return lane(direction).rejected; }

 private:
  struct Lane {
    rte_ring* submit = nullptr;
    rte_ring* free = nullptr;
    std::byte* arena = nullptr;
    uint64_t rejected = 0;  // touched only by this lane's consumer thread
  };

  PacketChannel(SharedMemory shm, const ChannelLayout& layout, uint64_t generation);
  Lane& lane(Direction d) { return lanes_[static_cast<uint32_t>(d)]; }
  const Lane& lane(Direction d) const { return lanes_[static_cast<uint32_t>(d)]; }
  uint32_t send_chunk(Lane& lane, std::span<const OutPacket> packets);

  SharedMemory shm_;
  ChannelLayout layout_;
  uint64_t generation_ = 0;
  std::array<Lane, 2> lanes_;
};

template <class F>
uint32_t PacketChannel::receive(Direction direction, uint32_t max, F&& fn) {
  Lane& l = lane(direction);
  uint32_t delivered = 0;
  uint32_t consumed = 0;
  while (consumed < max) {
    std::array<RingDescriptor, kBurst> descs;
    const uint32_t want = std::min(max - consumed, kBurst);
    const uint32_t n = rte_ring_sc_dequeue_burst_elem(l.submit, descs.data(),
                                                      sizeof(RingDescriptor), want, nullptr);
    if (n == 0) break;
    consumed += n;
    std::array<uint32_t, kBurst> freed;
    uint32_t nb_freed = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const RingDescriptor& d = descs[i];
      if (d.slot >= layout_.nb_slots) {
        ++l.rejected;  // not a slot of ours, so it cannot go back on the free ring
        continue;
      }
      freed[nb_freed++] = d.slot;
      if (d.len > layout_.slot_size) {
        ++l.rejected;
        continue;
      }
      const auto* data = reinterpret_cast<const uint8_t*>(l.arena + d.slot * layout_.slot_stride);
      fn(d.peer_slot, std::span<const uint8_t>(data, d.len));
      ++delivered;
    }
    // The free ring holds every slot, so this cannot fall short while the producer is sane.
    rte_ring_sp_enqueue_burst_elem(l.free, freed.data(), sizeof(uint32_t), nb_freed, nullptr);
    if (n < want) break;
  }
  return delivered;
}

}  // namespace airlock::dp
