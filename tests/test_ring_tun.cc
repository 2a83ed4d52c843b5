// RingTun end to end: this test plays the data plane (it creates the channel and is the peer
// side of it) while the kernel's own TCP/IP stack, behind a real TUN interface, answers. The
// kernel is the oracle: it accepts a hand-built SYN only if our checksums are right, and what
// it sends back must reach the right peer slot. Needs root and /dev/net/tun; the process moves
// itself into a fresh network namespace so nothing touches the host's interfaces.
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/tun/ring_tun.h"
#include "control/tun/tun_device.h"
#include "dataplane/ring.h"

namespace airlock::control {
namespace {

using dp::Direction;
using dp::PacketChannel;
using Bytes = std::vector<uint8_t>;

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kIcmp = 1;
constexpr uint8_t kSyn = 0x02, kPsh = 0x08, kAck = 0x10;

std::array<uint8_t, 4> v4(const char* text) {
  std::array<uint8_t, 4> a{};
  inet_pton(AF_INET, text, a.data());
  return a;
}
const std::array<uint8_t, 4> kGateway = v4("100.80.0.1");
const std::array<uint8_t, 4> kPeerA = v4("100.80.0.2");

void put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
void put32(Bytes& b, size_t at, uint32_t v) {
  put16(b, at, static_cast<uint16_t>(v >> 16));
  put16(b, at + 2, static_cast<uint16_t>(v));
}
uint16_t get16(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint16_t>(b[at] << 8 | b[at + 1]);
}
uint32_t get32(std::span<const uint8_t> b, size_t at) {
  return uint32_t{get16(b, at)} << 16 | get16(b, at + 2);
}

// RFC 1071 one's-complement sum; 0 over a block that includes a correct checksum.
uint16_t checksum(std::span<const uint8_t> data, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < data.size(); i += 2) sum += get16(data, i);
  if (data.size() % 2) sum += uint32_t{data.back()} << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint32_t pseudo_header_sum(std::span<const uint8_t> ip, uint8_t proto, size_t l4_len) {
  uint32_t sum = get16(ip, 12) + get16(ip, 14) + get16(ip, 16) + get16(ip, 18);
  return sum + proto + static_cast<uint32_t>(l4_len);
}

Bytes ipv4(std::array<uint8_t, 4> src, std::array<uint8_t, 4> dst, uint8_t proto, const Bytes& l4) {
  Bytes p(20 + l4.size());
  p[0] = 0x45;
  put16(p, 2, static_cast<uint16_t>(20 + l4.size()));
  p[8] = 64;
  p[9] = proto;
  std::copy(src.begin(), src.end(), p.begin() + 12);
  std::copy(dst.begin(), dst.end(), p.begin() + 16);
  put16(p, 10, checksum(std::span(p).first(20)));
  std::copy(l4.begin(), l4.end(), p.begin() + 20);
  return p;
}

struct Segment {
  uint16_t sport, dport;
  uint32_t seq, ack;
  uint8_t flags;
  std::string payload;
};

Bytes tcp_packet(std::array<uint8_t, 4> src, std::array<uint8_t, 4> dst, const Segment& s) {
  Bytes t(20 + s.payload.size());
  put16(t, 0, s.sport);
  put16(t, 2, s.dport);
  put32(t, 4, s.seq);
  put32(t, 8, s.ack);
  t[12] = 5 << 4;
  t[13] = s.flags;
  put16(t, 14, 65535);
  std::copy(s.payload.begin(), s.payload.end(), t.begin() + 20);
  Bytes p = ipv4(src, dst, kTcp, t);
  put16(p, 20 + 16, checksum(std::span(p).subspan(20), pseudo_header_sum(p, kTcp, t.size())));
  return p;
}

Bytes icmp_echo_request(std::array<uint8_t, 4> src, uint16_t id, uint16_t seq,
                        const std::string& data) {
  Bytes m(8 + data.size());
  m[0] = 8;
  put16(m, 4, id);
  put16(m, 6, seq);
  std::copy(data.begin(), data.end(), m.begin() + 8);
  put16(m, 2, checksum(m));
  return ipv4(src, kGateway, kIcmp, m);
}

struct Reply {
  uint32_t peer_slot;
  Bytes packet;
  std::span<const uint8_t> l4() const { return std::span(packet).subspan((packet[0] & 0xf) * 4); }
  uint8_t proto() const { return packet[9]; }
  bool from_to(std::array<uint8_t, 4> src, std::array<uint8_t, 4> dst) const {
    return std::equal(src.begin(), src.end(), packet.begin() + 12) &&
           std::equal(dst.begin(), dst.end(), packet.begin() + 16);
  }
};

std::optional<Segment> parse_tcp(const Reply& r) {
  if (r.packet.size() < 40 || r.proto() != kTcp) return std::nullopt;
  const std::span<const uint8_t> t = r.l4();
  const size_t header = (t[12] >> 4) * 4;
  return Segment{get16(t, 0), get16(t, 2), get32(t, 4),
                 get32(t, 8), t[13],       std::string(t.begin() + header, t.end())};
}

bool checksums_valid(const Reply& r) {
  const std::span<const uint8_t> ip(r.packet);
  const size_t ihl = (ip[0] & 0xf) * 4;
  if (checksum(ip.first(ihl)) != 0) return false;
  const std::span<const uint8_t> l4 = r.l4();
  if (r.proto() == kIcmp) return checksum(l4) == 0;
  return checksum(l4, pseudo_header_sum(ip, r.proto(), l4.size())) == 0;
}

bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return done();
}

bool set_link_up(const char* name) {
  const int s = ::socket(AF_INET, SOCK_DGRAM, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  bool ok = ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  ok = ok && ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  ::close(s);
  return ok;
}

// Once per process: a private network stack with lo up and IPv6 off, so the kernel's own
// IPv6 chatter (router solicitations, MLD) never shows up on the TUN as unexpected drops.
std::string enter_fresh_netns() {
  static const std::string result = [] {
    if (::unshare(CLONE_NEWNET) != 0) return std::string("unshare: ") + std::strerror(errno);
    if (!set_link_up("lo")) return std::string("lo up: ") + std::strerror(errno);
    std::ofstream("/proc/sys/net/ipv6/conf/all/disable_ipv6") << "1";
    std::ofstream("/proc/sys/net/ipv6/conf/default/disable_ipv6") << "1";
    return std::string();
  }();
  return result;
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

sockaddr_in socket_address(std::array<uint8_t, 4> addr, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  std::memcpy(&sa.sin_addr, addr.data(), 4);
  return sa;
}

class RingTunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (TUN device in a network namespace)";
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/net/tun";
    const std::string netns_error = enter_fresh_netns();
    ASSERT_EQ(netns_error, "");

    static int counter = 0;
    const std::string name =
        "airlock-test-" + std::to_string(getpid()) + "-ringtun-" + std::to_string(counter);
    std::string error;
    channel_ = PacketChannel::create(name, 256, 2048, &error);
    ASSERT_TRUE(channel_) << error;

    std::optional<TunDevice> tun = TunDevice::open("alkt" + std::to_string(counter++), &error);
    ASSERT_TRUE(tun) << error;
    ASSERT_TRUE(tun->add_address(*IpPrefix::parse("100.80.0.1/32"), &error)) << error;
    ASSERT_TRUE(tun->set_mtu(1420, &error)) << error;
    ASSERT_TRUE(tun->set_tx_queue_len(4096, &error)) << error;
    ASSERT_EQ(tun->tx_queue_len(), 4096);
    ASSERT_TRUE(tun->set_up(&error)) << error;
    ASSERT_TRUE(tun->add_route(*IpPrefix::parse("100.80.0.0/16"), &error)) << error;

    ring_tun_ = RingTun::attach(name, std::move(*tun), RingTunOptions{}, &error);
    ASSERT_TRUE(ring_tun_) << error;
    pump_ = std::thread([this] { ring_tun_->run(stop_); });
  }

  void TearDown() override {
    stop_ = true;
    if (pump_.joinable()) pump_.join();
  }

  void push(uint32_t peer_slot, const Bytes& packet) {
    ASSERT_TRUE(channel_->send(Direction::kToGateway, peer_slot, packet));
  }

  // The next kFromGateway packet that satisfies `want`; others are skipped.
  std::optional<Reply> await_reply(const std::function<bool(const Reply&)>& want) {
    std::optional<Reply> found;
    wait_until([&] {
      channel_->receive(Direction::kFromGateway, 1, [&](uint32_t slot, auto packet) {
        Reply r{slot, Bytes(packet.begin(), packet.end())};
        if (!found && want(r)) found = std::move(r);
      });
      return found.has_value();
    });
    return found;
  }

  uint64_t drops(TunDrop reason) const {
    return ring_tun_->counters().drops[static_cast<size_t>(reason)];
  }

  std::optional<PacketChannel> channel_;
  std::unique_ptr<RingTun> ring_tun_;
  std::atomic<bool> stop_{false};
  std::thread pump_;
};

TEST_F(RingTunTest, KernelTerminatesTcpAndRepliesReachTheSendingPeer) {
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in gateway = socket_address(kGateway, 8080);
  ASSERT_EQ(::bind(listener.fd, reinterpret_cast<const sockaddr*>(&gateway), sizeof gateway), 0)
      << std::strerror(errno);
  ASSERT_EQ(::listen(listener.fd, 4), 0);

  constexpr uint32_t kSlot = 7;
  constexpr uint32_t kIsn = 1000;
  push(kSlot, tcp_packet(kPeerA, kGateway, {40000, 8080, kIsn, 0, kSyn, ""}));
  const std::optional<Reply> syn_ack = await_reply([](const Reply& r) {
    const auto s = parse_tcp(r);
    return s && s->flags == (kSyn | kAck);
  });
  ASSERT_TRUE(syn_ack) << "no SYN-ACK; counters: to_tun=" << ring_tun_->counters().to_tun_packets;
  EXPECT_EQ(syn_ack->peer_slot, kSlot);
  EXPECT_TRUE(syn_ack->from_to(kGateway, kPeerA));
  EXPECT_TRUE(checksums_valid(*syn_ack));
  const Segment sa = *parse_tcp(*syn_ack);
  EXPECT_EQ(sa.sport, 8080);
  EXPECT_EQ(sa.dport, 40000);
  ASSERT_EQ(sa.ack, kIsn + 1);

  push(kSlot, tcp_packet(kPeerA, kGateway, {40000, 8080, kIsn + 1, sa.seq + 1, kAck, ""}));
  push(kSlot,
       tcp_packet(kPeerA, kGateway, {40000, 8080, kIsn + 1, sa.seq + 1, kPsh | kAck, "hello"}));

  pollfd pfd{listener.fd, POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 3000), 1) << "connection never accepted";
  sockaddr_in client{};
  socklen_t client_len = sizeof client;
  Fd conn(::accept(listener.fd, reinterpret_cast<sockaddr*>(&client), &client_len));
  ASSERT_GE(conn.fd, 0);
  EXPECT_EQ(ntohs(client.sin_port), 40000);
  // The gateway's identity lookup: the accepted connection's remote address -> peer slot.
  const auto client_bytes =
      std::span<const uint8_t, 4>(reinterpret_cast<const uint8_t*>(&client.sin_addr), 4);
  EXPECT_EQ(ring_tun_->peer_of(IpAddress::v4(client_bytes)), kSlot);

  char buf[16] = {};
  pfd = {conn.fd, POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 3000), 1);
  ASSERT_EQ(::recv(conn.fd, buf, sizeof buf, 0), 5);
  EXPECT_EQ(std::string(buf, 5), "hello");

  ASSERT_EQ(::send(conn.fd, "world", 5, 0), 5);
  const std::optional<Reply> data =
      await_reply([](const Reply& r) { return parse_tcp(r) && parse_tcp(r)->payload == "world"; });
  ASSERT_TRUE(data);
  EXPECT_EQ(data->peer_slot, kSlot);
  EXPECT_TRUE(data->from_to(kGateway, kPeerA));
  EXPECT_TRUE(checksums_valid(*data));
  EXPECT_EQ(parse_tcp(*data)->seq, sa.seq + 1);
  EXPECT_EQ(parse_tcp(*data)->ack, kIsn + 1 + 5);
}

TEST_F(RingTunTest, IcmpEchoIsAnsweredToTheSamePeer) {
  const auto peer_b = v4("100.80.0.3");
  push(9, icmp_echo_request(peer_b, 0x1234, 5, "airlock-ping"));
  const std::optional<Reply> reply = await_reply([](const Reply& r) { return r.proto() == kIcmp; });
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->peer_slot, 9u);
  EXPECT_TRUE(reply->from_to(kGateway, peer_b));
  EXPECT_TRUE(checksums_valid(*reply));
  const std::span<const uint8_t> icmp = reply->l4();
  EXPECT_EQ(icmp[0], 0);  // echo reply
  EXPECT_EQ(get16(icmp, 4), 0x1234);
  EXPECT_EQ(get16(icmp, 6), 5);
  EXPECT_EQ(std::string(icmp.begin() + 8, icmp.end()), "airlock-ping");
}

TEST_F(RingTunTest, PacketToAnAddressNoPeerUsedIsDroppedAndCounted) {
  Fd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const sockaddr_in stranger = socket_address(v4("100.80.5.5"), 9999);
  ASSERT_EQ(
      ::sendto(udp.fd, "x", 1, 0, reinterpret_cast<const sockaddr*>(&stranger), sizeof stranger), 1)
      << std::strerror(errno);
  EXPECT_TRUE(wait_until([&] { return drops(TunDrop::kUnknownDestination) == 1; }));
  EXPECT_EQ(ring_tun_->counters().from_tun_packets, 0u);
  EXPECT_EQ(channel_->receive(Direction::kFromGateway, 8, [](uint32_t, auto) {}), 0u);
  EXPECT_FALSE(ring_tun_->peer_of(*IpAddress::parse("100.80.5.5")));
}

TEST_F(RingTunTest, BindingComesFromTheDescriptorAndMalformedPacketsBindNothing) {
  push(3, Bytes{0x45, 0, 0});  // shorter than an IPv4 header
  Bytes v6(40);
  v6[0] = 0x60;
  v6[6] = 59;  // no next header
  v6[7] = 64;
  const IpAddress v6_source = *IpAddress::parse("fd00::2");
  std::copy_n(v6_source.bytes.begin(), 16, v6.begin() + 8);
  const IpAddress v6_gateway = *IpAddress::parse("fd00::1");
  std::copy_n(v6_gateway.bytes.begin(), 16, v6.begin() + 24);
  push(4, v6);
  // The same inner source from another peer: the data plane only delivers it from the peer
  // that owns it now, so the latest descriptor wins.
  push(5, ipv4(kPeerA, kGateway, kUdp, Bytes(8)));
  push(6, ipv4(kPeerA, kGateway, kUdp, Bytes(8)));

  EXPECT_TRUE(wait_until([&] { return ring_tun_->counters().to_tun_packets == 3; }));
  EXPECT_EQ(drops(TunDrop::kMalformed), 1u);
  EXPECT_EQ(ring_tun_->peer_of(v6_source), 4u);
  EXPECT_EQ(ring_tun_->peer_of(IpAddress::v4(kPeerA)), 6u);
  EXPECT_FALSE(ring_tun_->peer_of(v6_gateway));
}

}  // namespace
}  // namespace airlock::control
