#include "dataplane/ring.h"

#include <rte_common.h>

#include <atomic>
#include <cstring>
#include <ctime>

namespace airlock::dp {
namespace {

constexpr unsigned kRingFlags = RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ;
constexpr std::array<std::array<const char*, 2>, 2> kRingNames = {{
    {"to_gw.submit", "to_gw.free"},
    {"from_gw.submit", "from_gw.free"},
}};

constexpr size_t align_cache_line(size_t n) {
  return (n + 63) & ~size_t{63};
}

// RING_F_EXACT_SZ gives capacity nb_slots but needs the next power of two above it.
uint32_t ring_count(uint32_t nb_slots) {
  return rte_align32pow2(nb_slots + 1);
}

uint64_t unix_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

bool fail(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return false;
}

// A ring in a region we attach to must be exactly what create() made, or its indices could
// point outside the ring.
bool ring_is_as_created(const rte_ring* r, uint32_t nb_slots) {
  return rte_ring_get_size(r) == ring_count(nb_slots) && rte_ring_get_capacity(r) == nb_slots &&
         rte_ring_get_prod_sync_type(r) == RTE_RING_SYNC_ST &&
         rte_ring_get_cons_sync_type(r) == RTE_RING_SYNC_ST;
}

}  // namespace

std::optional<ChannelLayout> ChannelLayout::compute(uint32_t nb_slots, uint32_t slot_size,
                                                    std::string* error) {
  if (nb_slots == 0 || nb_slots > kMaxChannelSlots || !rte_is_power_of_2(nb_slots)) {
    fail(error, "channel nb_slots " + std::to_string(nb_slots) + " must be a power of two in 1.." +
                    std::to_string(kMaxChannelSlots));
    return std::nullopt;
  }
  if (slot_size == 0 || slot_size > kMaxChannelSlotSize) {
    fail(error, "channel slot_size " + std::to_string(slot_size) + " must be in 1.." +
                    std::to_string(kMaxChannelSlotSize));
    return std::nullopt;
  }
  const ssize_t submit_size =
      rte_ring_get_memsize_elem(sizeof(RingDescriptor), ring_count(nb_slots));
  const ssize_t free_size = rte_ring_get_memsize_elem(sizeof(uint32_t), ring_count(nb_slots));
  if (submit_size < 0 || free_size < 0) {
    fail(error, "rte_ring_get_memsize_elem refused " + std::to_string(nb_slots) + " slots");
    return std::nullopt;
  }
  ChannelLayout l;
  l.nb_slots = nb_slots;
  l.slot_size = slot_size;
  l.slot_stride = align_cache_line(slot_size);
  size_t offset = align_cache_line(sizeof(ChannelHeader));
  for (size_t d = 0; d < 2; ++d) {
    l.submit_offset[d] = offset;
    offset += align_cache_line(static_cast<size_t>(submit_size));
    l.free_offset[d] = offset;
    offset += align_cache_line(static_cast<size_t>(free_size));
    l.arena_offset[d] = offset;
    offset += size_t{nb_slots} * l.slot_stride;
  }
  l.total_size = offset;
  return l;
}

PacketChannel::PacketChannel(SharedMemory shm, const ChannelLayout& layout, uint64_t generation)
    : shm_(std::move(shm)), layout_(layout), generation_(generation) {
  std::byte* base = shm_.bytes().data();
  for (size_t d = 0; d < 2; ++d) {
    lanes_[d].submit = reinterpret_cast<rte_ring*>(base + layout_.submit_offset[d]);
    lanes_[d].free = reinterpret_cast<rte_ring*>(base + layout_.free_offset[d]);
    lanes_[d].arena = base + layout_.arena_offset[d];
  }
}

std::optional<PacketChannel> PacketChannel::create(std::string_view name, uint32_t nb_slots,
                                                   uint32_t slot_size, std::string* error) {
  std::optional<ChannelLayout> layout = ChannelLayout::compute(nb_slots, slot_size, error);
  if (!layout) return std::nullopt;
  std::optional<SharedMemory> shm = SharedMemory::create(name, layout->total_size, error);
  if (!shm) return std::nullopt;
  const uint64_t generation = unix_now_ns();
  PacketChannel channel(std::move(*shm), *layout, generation);
  for (size_t d = 0; d < 2; ++d) {
    Lane& lane = channel.lanes_[d];
    for (size_t r = 0; r < 2; ++r) {
      rte_ring* ring = r == 0 ? lane.submit : lane.free;
      const int rc = rte_ring_init(ring, kRingNames[d][r], nb_slots, kRingFlags);
      if (rc != 0) {
        fail(error, std::string("rte_ring_init ") + kRingNames[d][r] + ": " + std::strerror(-rc));
        return std::nullopt;
      }
    }
    for (uint32_t slot = 0; slot < nb_slots; ++slot) {
      rte_ring_sp_enqueue_bulk_elem(lane.free, &slot, sizeof(slot), 1, nullptr);
    }
  }
  auto& header = *reinterpret_cast<ChannelHeader*>(channel.shm_.bytes().data());
  header.version = kChannelVersion;
  header.slot_size = slot_size;
  header.nb_slots = nb_slots;
  header.generation = generation;
  header.total_size = layout->total_size;
  // Attachers check the magic first, so it goes in last.
  std::atomic_ref<uint64_t>(header.magic).store(kChannelMagic, std::memory_order_release);
  return channel;
}

std::optional<PacketChannel> PacketChannel::attach(std::string_view name, std::string* error) {
  std::optional<SharedMemory> shm = SharedMemory::open(name, true, error);
  if (!shm) return std::nullopt;
  const std::string prefix = "packet channel " + std::string(name) + ": ";
  std::span<std::byte> bytes = shm->bytes();
  if (bytes.size() < sizeof(ChannelHeader)) {
    fail(error, prefix + "too small for a header");
    return std::nullopt;
  }
  auto& header = *reinterpret_cast<ChannelHeader*>(bytes.data());
  if (std::atomic_ref<uint64_t>(header.magic).load(std::memory_order_acquire) != kChannelMagic) {
    fail(error, prefix + "bad magic (not an Airlock packet channel, or not ready)");
    return std::nullopt;
  }
  if (header.version != kChannelVersion) {
    fail(error, prefix + "version " + std::to_string(header.version) + ", this process needs " +
                    std::to_string(kChannelVersion));
    return std::nullopt;
  }
  std::string why;
  std::optional<ChannelLayout> layout =
      ChannelLayout::compute(header.nb_slots, header.slot_size, &why);
  if (!layout) {
    fail(error, prefix + why);
    return std::nullopt;
  }
  if (layout->total_size != header.total_size || layout->total_size > bytes.size()) {
    fail(error, prefix + "size " + std::to_string(bytes.size()) + " does not match its header");
    return std::nullopt;
  }
  PacketChannel channel(std::move(*shm), *layout, header.generation);
  for (const Lane& lane : channel.lanes_) {
    if (!ring_is_as_created(lane.submit, layout->nb_slots) ||
        !ring_is_as_created(lane.free, layout->nb_slots)) {
      fail(error, prefix + "ring geometry does not match the header");
      return std::nullopt;
    }
  }
  return channel;
}

bool PacketChannel::send(Direction direction, uint32_t peer_slot, std::span<const uint8_t> packet) {
  const OutPacket one{peer_slot, packet};
  return send_chunk(lane(direction), std::span(&one, 1)) == 1;
}

uint32_t PacketChannel::send_burst(Direction direction, std::span<const OutPacket> packets) {
  Lane& l = lane(direction);
  uint32_t sent = 0;
  while (sent < packets.size()) {
    const size_t chunk = std::min<size_t>(packets.size() - sent, kBurst);
    const uint32_t n = send_chunk(l, packets.subspan(sent, chunk));
    sent += n;
    if (n < chunk) break;
  }
  return sent;
}

uint32_t PacketChannel::send_chunk(Lane& l, std::span<const OutPacket> packets) {
  uint32_t fitting = 0;
  while (fitting < packets.size() && packets[fitting].bytes.size() <= layout_.slot_size) {
    ++fitting;
  }
  std::array<uint32_t, kBurst> slots;
  const uint32_t got =
      rte_ring_sc_dequeue_burst_elem(l.free, slots.data(), sizeof(uint32_t), fitting, nullptr);
  std::array<RingDescriptor, kBurst> descs;
  for (uint32_t i = 0; i < got; ++i) {
    // The consumer (another process) returned this index; a bad one would make us write
    // outside the arena. A lost slot is the lesser harm.
    if (slots[i] >= layout_.nb_slots) return 0;
    const OutPacket& p = packets[i];
    std::memcpy(l.arena + slots[i] * layout_.slot_stride, p.bytes.data(), p.bytes.size());
    descs[i] = {slots[i], static_cast<uint32_t>(p.bytes.size()), p.peer_slot, 0};
  }
  // Capacity equals the slot count, so every slot we hold fits on the submit ring.
  return rte_ring_sp_enqueue_burst_elem(l.submit, descs.data(), sizeof(RingDescriptor), got,
                                        nullptr);
}

}  // namespace airlock::dp
