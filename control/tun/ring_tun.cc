#include "control/tun/ring_tun.h"

#include <poll.h>

#include <ctime>
#include <mutex>
#include <utility>

namespace airlock::control {
namespace {

constexpr size_t kIpv4HeaderMin = 20;
constexpr size_t kIpv6Header = 40;
constexpr long kIdleWaitNs = 50'000;

// The inner source or destination address of an IP packet, if the header is long enough.
std::optional<IpAddress> inner_address(std::span<const uint8_t> packet, bool source) {
  if (packet.empty()) return std::nullopt;
  switch (packet[0] >> 4) {
    case 4:
      if (packet.size() < kIpv4HeaderMin) return std::nullopt;
      return IpAddress::v4(packet.subspan(source ? 12 : 16).first<4>());
    case 6:
      if (packet.size() < kIpv6Header) return std::nullopt;
      return IpAddress::v6(packet.subspan(source ? 8 : 24).first<16>());
    default:
      return std::nullopt;
  }
}

}  // namespace

std::string_view tun_drop_name(TunDrop reason) {
  switch (reason) {
    case TunDrop::kMalformed:
      return "malformed";
    case TunDrop::kTunWriteFailed:
      return "tun_write_failed";
    case TunDrop::kBindingTableFull:
      return "binding_table_full";
    case TunDrop::kUnknownDestination:
      return "unknown_destination";
    case TunDrop::kTooLarge:
      return "too_large";
    case TunDrop::kRingFull:
      return "ring_full";
    case TunDrop::kCount:
      break;
  }
  return "unknown";
}

std::unique_ptr<RingTun> RingTun::attach(std::string_view channel_name, TunDevice tun,
                                         const RingTunOptions& options, std::string* error) {
  std::optional<dp::PacketChannel> channel = dp::PacketChannel::attach(channel_name, error);
  if (!channel) return nullptr;
  return std::unique_ptr<RingTun>(new RingTun(std::move(*channel), std::move(tun), options));
}

RingTun::RingTun(dp::PacketChannel channel, TunDevice tun, const RingTunOptions& options)
    : channel_(std::move(channel)),
      tun_(std::move(tun)),
      options_(options),
      // One byte more than a slot holds, so an oversized TUN packet is seen, not truncated.
      read_buffer_(channel_.slot_size() + 1) {}

uint32_t RingTun::poll_once() {
  return pump_to_tun() + pump_from_tun();
}

void RingTun::run(const std::atomic<bool>& stop) {
  uint32_t idle = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    if (poll_once() != 0) {
      idle = 0;
      continue;
    }
    if (++idle < options_.idle_spins) continue;
    pollfd pfd{tun_.fd(), POLLIN, 0};
    const timespec wait{0, kIdleWaitNs};
    ::ppoll(&pfd, 1, &wait, nullptr);
  }
}

uint32_t RingTun::pump_to_tun() {
  return channel_.receive(dp::Direction::kToGateway, dp::PacketChannel::kBurst,
                          [this](uint32_t peer_slot, std::span<const uint8_t> packet) {
                            deliver_to_tun(peer_slot, packet);
                          });
}

void RingTun::deliver_to_tun(uint32_t peer_slot, std::span<const uint8_t> packet) {
  const std::optional<IpAddress> source = inner_address(packet, true);
  if (!source) return drop(TunDrop::kMalformed);
  if (!bind(*source, peer_slot)) return drop(TunDrop::kBindingTableFull);
  if (tun_.write_packet(packet) < 0) return drop(TunDrop::kTunWriteFailed);
  count(to_tun_packets_);
}

bool RingTun::bind(const IpAddress& source, uint32_t peer_slot) {
  const auto it = bindings_.find(source);
  if (it != bindings_.end() && it->second == peer_slot) return true;
  if (it == bindings_.end() && bindings_.size() >= options_.max_bindings) return false;
  // The latest peer wins: the data plane only delivers a source from the peer whose allowed
  // IPs hold it now, so a changed slot means the policy moved the address.
  std::unique_lock lock(bindings_mutex_);
  bindings_[source] = peer_slot;
  return true;
}

uint32_t RingTun::pump_from_tun() {
  uint32_t handled = 0;
  while (handled < dp::PacketChannel::kBurst) {
    const long n = tun_.read_packet(read_buffer_);
    if (n <= 0) break;
    ++handled;
    const std::span<const uint8_t> packet(read_buffer_.data(), static_cast<size_t>(n));
    if (packet.size() > channel_.slot_size()) {
      drop(TunDrop::kTooLarge);
      continue;
    }
    const std::optional<IpAddress> destination = inner_address(packet, false);
    if (!destination) {
      drop(TunDrop::kMalformed);
      continue;
    }
    const auto it = bindings_.find(*destination);
    if (it == bindings_.end()) {
      drop(TunDrop::kUnknownDestination);
      continue;
    }
    if (!channel_.send(dp::Direction::kFromGateway, it->second, packet)) {
      drop(TunDrop::kRingFull);
      continue;
    }
    count(from_tun_packets_);
  }
  return handled;
}

std::optional<uint32_t> RingTun::peer_of(const IpAddress& address) const {
  std::shared_lock lock(bindings_mutex_);
  const auto it = bindings_.find(address);
  if (it == bindings_.end()) return std::nullopt;
  return it->second;
}

// Single writer (the pump thread), so a relaxed load and store is enough.
void RingTun::count(std::atomic<uint64_t>& counter) {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

RingTunCounters RingTun::counters() const {
  RingTunCounters c;
  c.to_tun_packets = to_tun_packets_.load(std::memory_order_relaxed);
  c.from_tun_packets = from_tun_packets_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kTunDropCount; ++i) {
    c.drops[i] = drops_[i].load(std::memory_order_relaxed);
  }
  return c;
}

}  // namespace airlock::control
