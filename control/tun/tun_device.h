// A TUN interface owned by the control plane: the kernel's TCP/IP stack terminates the
// connections that the data plane punts, so no hand-written TCP is needed (issue 3, point 1).
// The interface lives as long as the TunDevice; closing the fd deletes it and its routes.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace airlock::control {

// An IPv4 or IPv6 address as a value; IPv4 uses the first four bytes, the rest stay zero.
struct IpAddress {
  uint8_t family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};

  static IpAddress v4(std::span<const uint8_t, 4> network_order);
  static IpAddress v6(std::span<const uint8_t, 16> network_order);
  // Dotted quad or RFC 4291 text, e.g. "100.80.0.2" or "fd00::2".
  static std::optional<IpAddress> parse(std::string_view text);

  size_t size() const;  // 4 or 16
  std::string to_string() const;
  auto operator<=>(const IpAddress&) const = default;
};

struct IpAddressHash {
  size_t operator()(const IpAddress& a) const;
};

struct IpPrefix {
  IpAddress address;
  uint8_t length = 0;
  // "100.80.0.1/32", "fd00::/64"; a bare address means a host prefix.
  static std::optional<IpPrefix> parse(std::string_view text);
};

class TunDevice {
 public:
  // Creates (or opens) the TUN interface `name` with IFF_TUN|IFF_NO_PI, so each read/write is
  // exactly one IP packet; the fd is non-blocking. With `multi_queue` every open of the same
  // name adds one queue (IFF_MULTI_QUEUE), so each data-plane worker's channel gets its own fd
  // and the kernel spreads return flows over them; all queues must be opened that way.
  static std::optional<TunDevice> open(std::string_view name, std::string* error,
                                       bool multi_queue = false);

  TunDevice(TunDevice&& other) noexcept;
  TunDevice& operator=(TunDevice&& other) noexcept;
  TunDevice(const TunDevice&) = delete;
  TunDevice& operator=(const TunDevice&) = delete;
  ~TunDevice();

  // Configuration through rtnetlink and ioctl; every call returns false with *error set.
  bool add_address(const IpPrefix& prefix, std::string* error);
  bool add_route(const IpPrefix& destination, std::string* error);
  bool set_mtu(uint32_t mtu, std::string* error);
  bool set_tx_queue_len(uint32_t packets, std::string* error);
  // The interface's transmit queue length as the kernel reports it, or -1.
  long tx_queue_len() const;
  bool set_up(std::string* error);

  // One packet per call. read_packet returns the packet's length, 0 when none is pending, or
  // -errno; write_packet returns the length written or -errno.
  long read_packet(std::span<uint8_t> buffer);
  long write_packet(std::span<const uint8_t> packet);

  int fd() const { return fd_; }
  const std::string& name() const { return name_; }
  uint32_t index() const { return index_; }

 private:
  TunDevice(int fd, std::string name, uint32_t index);
  bool set_interface_flag(short flag, std::string* error);

  int fd_ = -1;
  std::string name_;
  uint32_t index_ = 0;
};

}  // namespace airlock::control
