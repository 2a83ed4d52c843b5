// Bridges one data-plane packet channel to the control plane's TUN interface:
//   kToGateway  (peer -> gateway): write the inner IP packet into the TUN, so the kernel's
//                                  TCP/IP stack terminates it;
//   kFromGateway (gateway -> peer): each packet the kernel routes out of the TUN goes back to
//                                  the peer that owns its destination address.
//
// Identity: every kToGateway descriptor carries the slot of the WireGuard peer whose session
// decrypted the packet, and the data plane forwards only packets whose inner source lies in
// that peer's allowed IPs (cryptokey routing). So "inner source address -> peer slot" is a
// binding made by the data plane from the key that authenticated the packet; nothing a client
// puts in a packet or a request can bind an address to another peer. peer_of() exposes it to
// the gateway, which looks up the remote address of an accepted connection. The binding is
// recorded before the packet reaches the kernel, so it exists by the time accept() returns.
//
// Threading: poll_once()/run() on ONE thread (it is the channel's only kToGateway consumer
// and kFromGateway producer). peer_of() and counters() may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "control/tun/tun_device.h"
#include "dataplane/ring.h"

namespace airlock::control {

enum class TunDrop : uint8_t {
  kMalformed,           // too short or not IPv4/IPv6 (either direction)
  kTunWriteFailed,      // the kernel refused the packet
  kBindingTableFull,    // a new inner source arrived while max_bindings were held
  kUnknownDestination,  // the kernel sent to an address no peer has used as its source
  kTooLarge,            // a TUN packet larger than the channel's slot
  kRingFull,            // no free kFromGateway slot
  kCount
};
inline constexpr size_t kTunDropCount = static_cast<size_t>(TunDrop::kCount);

std::string_view tun_drop_name(TunDrop reason);

struct RingTunCounters {
  uint64_t to_tun_packets = 0;    // kToGateway packets written into the TUN
  uint64_t from_tun_packets = 0;  // TUN packets sent on kFromGateway
  std::array<uint64_t, kTunDropCount> drops{};
};

struct RingTunOptions {
  size_t max_bindings = 1u << 16;
  // Idle polls that spin before the loop starts sleeping in ppoll() on the TUN fd.
  uint32_t idle_spins = 64;
};

class RingTun {
 public:
  // Attaches to the data plane's channel `channel_name` and takes ownership of `tun`.
  static std::unique_ptr<RingTun> attach(std::string_view channel_name, TunDevice tun,
                                         const RingTunOptions& options, std::string* error);

  RingTun(const RingTun&) = delete;
  RingTun& operator=(const RingTun&) = delete;

  // Moves up to one burst each way without blocking; returns the packets handled.
  uint32_t poll_once();
  // Polls until `stop` is set. Rings have no wakeup, so when idle it spins briefly, then
  // waits up to ~50 us in ppoll() on the TUN fd (woken at once by kernel output).
  void run(const std::atomic<bool>& stop);

  // The peer slot whose packets carried `address` as inner source, if any.
  std::optional<uint32_t> peer_of(const IpAddress& address) const;
  RingTunCounters counters() const;
  const TunDevice& tun() const { return tun_; }
  // For interface configuration (addresses, routes) only; the fd belongs to the pump thread.
  TunDevice& tun() { return tun_; }

 private:
  RingTun(dp::PacketChannel channel, TunDevice tun, const RingTunOptions& options);
  uint32_t pump_to_tun();
  uint32_t pump_from_tun();
  void deliver_to_tun(uint32_t peer_slot, std::span<const uint8_t> packet);
  bool bind(const IpAddress& source, uint32_t peer_slot);
  void count(std::atomic<uint64_t>& counter);
  void drop(TunDrop reason) { count(drops_[static_cast<size_t>(reason)]); }

  dp::PacketChannel channel_;
  TunDevice tun_;
  RingTunOptions options_;
  std::vector<uint8_t> read_buffer_;

  // Written only by the pump thread, so the pump reads it without a lock and locks only to
  // add or change a binding (rare: once per new inner source); other threads' reads take the
  // shared lock.
  mutable std::shared_mutex bindings_mutex_;
  std::unordered_map<IpAddress, uint32_t, IpAddressHash> bindings_;

  std::atomic<uint64_t> to_tun_packets_{0};
  std::atomic<uint64_t> from_tun_packets_{0};
  std::array<std::atomic<uint64_t>, kTunDropCount> drops_{};
};

}  // namespace airlock::control
