#include "control/tun/tun_device.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

namespace airlock::control {
namespace {

std::string errno_text(std::string_view what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

struct MnlSocketClose {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
using MnlSocket = std::unique_ptr<mnl_socket, MnlSocketClose>;

// Sends one rtnetlink request and waits for its acknowledgement. libmnl builds and parses the
// messages; the kernel's error ack comes back from mnl_cb_run as -1 with errno set.
bool rtnetlink_request(nlmsghdr* request, std::string_view what, std::string* error) {
  MnlSocket nl(mnl_socket_open(NETLINK_ROUTE));
  if (!nl || mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    *error = errno_text("netlink socket", errno);
    return false;
  }
  request->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  request->nlmsg_seq = 1;
  if (mnl_socket_sendto(nl.get(), request, request->nlmsg_len) < 0) {
    *error = errno_text(what, errno);
    return false;
  }
  std::vector<char> reply(MNL_SOCKET_BUFFER_SIZE);
  const ssize_t n = mnl_socket_recvfrom(nl.get(), reply.data(), reply.size());
  if (n < 0 || mnl_cb_run(reply.data(), n, request->nlmsg_seq, mnl_socket_get_portid(nl.get()),
                          nullptr, nullptr) < 0) {
    *error = errno_text(what, errno);
    return false;
  }
  return true;
}

int ioctl_socket() {
  return ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

// One SIOC[GS]IF* request on interface `name`: `ifr` carries the value in and the answer out.
bool interface_ioctl(const std::string& name, unsigned long request, const char* request_name,
                     ifreq& ifr, std::string* error) {
  const int s = ioctl_socket();
  if (s < 0) {
    *error = errno_text("socket", errno);
    return false;
  }
  std::copy(name.begin(), name.end(), ifr.ifr_name);
  const bool ok = ::ioctl(s, request, &ifr) == 0;
  const int why = errno;
  ::close(s);
  if (!ok) *error = errno_text(std::string(request_name) + " " + name, why);
  return ok;
}

}  // namespace

IpAddress IpAddress::v4(std::span<const uint8_t, 4> network_order) {
  IpAddress a;
  a.family = AF_INET;
  std::copy(network_order.begin(), network_order.end(), a.bytes.begin());
  return a;
}

IpAddress IpAddress::v6(std::span<const uint8_t, 16> network_order) {
  IpAddress a;
  a.family = AF_INET6;
  std::copy(network_order.begin(), network_order.end(), a.bytes.begin());
  return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  const std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET6;
    return a;
  }
  return std::nullopt;
}

size_t IpAddress::size() const {
  return family == AF_INET6 ? 16 : 4;
}

std::string IpAddress::to_string() const {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (!inet_ntop(family, bytes.data(), text.data(), text.size())) return "?";
  return text.data();
}

size_t IpAddressHash::operator()(const IpAddress& a) const {
  // FNV-1a: the keys are inner addresses that passed the data plane's allowed-IPs check, so a
  // simple hash is enough (no attacker-chosen keys beyond the peer's own allowed range).
  uint64_t h = 1469598103934665603ull ^ a.family;
  for (size_t i = 0; i < a.size(); ++i) h = (h ^ a.bytes[i]) * 1099511628211ull;
  return static_cast<size_t>(h);
}

std::optional<IpPrefix> IpPrefix::parse(std::string_view text) {
  const size_t slash = text.find('/');
  std::optional<IpAddress> address = IpAddress::parse(text.substr(0, slash));
  if (!address) return std::nullopt;
  const unsigned max_length = address->size() * 8;
  unsigned length = max_length;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), length);
    if (ec != std::errc() || end != digits.data() + digits.size() || length > max_length) {
      return std::nullopt;
    }
  }
  return IpPrefix{*address, static_cast<uint8_t>(length)};
}

std::optional<TunDevice> TunDevice::open(std::string_view name, std::string* error,
                                         bool multi_queue) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    *error = "tun: interface name must be 1.." + std::to_string(IFNAMSIZ - 1) + " characters";
    return std::nullopt;
  }
  const int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *error = errno_text("open /dev/net/tun", errno);
    return std::nullopt;
  }
  ifreq ifr{};
  ifr.ifr_flags = static_cast<short>(IFF_TUN | IFF_NO_PI | (multi_queue ? IFF_MULTI_QUEUE : 0));
  std::copy(name.begin(), name.end(), ifr.ifr_name);
  if (::ioctl(fd, TUNSETIFF, &ifr) < 0) {
    *error = errno_text("TUNSETIFF " + std::string(name), errno);
    ::close(fd);
    return std::nullopt;
  }
  const uint32_t index = if_nametoindex(ifr.ifr_name);
  if (index == 0) {
    *error = errno_text("if_nametoindex", errno);
    ::close(fd);
    return std::nullopt;
  }
  return TunDevice(fd, ifr.ifr_name, index);
}

TunDevice::TunDevice(int fd, std::string name, uint32_t index)
    : fd_(fd), name_(std::move(name)), index_(index) {}

TunDevice::TunDevice(TunDevice&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      name_(std::move(other.name_)),
      index_(std::exchange(other.index_, 0)) {}

TunDevice& TunDevice::operator=(TunDevice&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    name_ = std::move(other.name_);
    index_ = std::exchange(other.index_, 0);
  }
  return *this;
}

TunDevice::~TunDevice() {
  if (fd_ >= 0) ::close(fd_);
}

bool TunDevice::add_address(const IpPrefix& prefix, std::string* error) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = RTM_NEWADDR;
  nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = prefix.address.family;
  ifa->ifa_prefixlen = prefix.length;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = index_;
  mnl_attr_put(nlh, IFA_LOCAL, prefix.address.size(), prefix.address.bytes.data());
  mnl_attr_put(nlh, IFA_ADDRESS, prefix.address.size(), prefix.address.bytes.data());
  return rtnetlink_request(nlh, "add address " + prefix.address.to_string(), error);
}

bool TunDevice::add_route(const IpPrefix& destination, std::string* error) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = RTM_NEWROUTE;
  nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = destination.address.family;
  rtm->rtm_dst_len = destination.length;
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = RTPROT_STATIC;
  rtm->rtm_scope = RT_SCOPE_LINK;
  rtm->rtm_type = RTN_UNICAST;
  mnl_attr_put(nlh, RTA_DST, destination.address.size(), destination.address.bytes.data());
  mnl_attr_put_u32(nlh, RTA_OIF, index_);
  return rtnetlink_request(nlh, "add route " + destination.address.to_string(), error);
}

bool TunDevice::set_mtu(uint32_t mtu, std::string* error) {
  ifreq ifr{};
  ifr.ifr_mtu = static_cast<int>(mtu);
  return interface_ioctl(name_, SIOCSIFMTU, "SIOCSIFMTU", ifr, error);
}

bool TunDevice::set_tx_queue_len(uint32_t packets, std::string* error) {
  ifreq ifr{};
  ifr.ifr_qlen = static_cast<int>(packets);
  return interface_ioctl(name_, SIOCSIFTXQLEN, "SIOCSIFTXQLEN", ifr, error);
}

long TunDevice::tx_queue_len() const {
  ifreq ifr{};
  std::string error;
  return interface_ioctl(name_, SIOCGIFTXQLEN, "SIOCGIFTXQLEN", ifr, &error) ? ifr.ifr_qlen : -1;
}

bool TunDevice::set_up(std::string* error) {
  return set_interface_flag(IFF_UP, error);
}

bool TunDevice::set_interface_flag(short flag, std::string* error) {
  ifreq ifr{};
  if (!interface_ioctl(name_, SIOCGIFFLAGS, "SIOCGIFFLAGS", ifr, error)) return false;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | flag);
  return interface_ioctl(name_, SIOCSIFFLAGS, "SIOCSIFFLAGS", ifr, error);
}

long TunDevice::read_packet(std::span<uint8_t> buffer) {
  const ssize_t n = ::read(fd_, buffer.data(), buffer.size());
  if (n >= 0) return n;
  return errno == EAGAIN ? 0 : -errno;
}

long TunDevice::write_packet(std::span<const uint8_t> packet) {
  const ssize_t n = ::write(fd_, packet.data(), packet.size());
  return n >= 0 ? n : -errno;
}

}  // namespace airlock::control
