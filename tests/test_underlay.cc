// Frames are built byte by byte here (not with DPDK structs or checksum helpers) so that the
// parser and the header writer are checked against an independent encoding of RFC 791/768/826.
#include "dataplane/underlay.h"

#include <gtest/gtest.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "tests/eal_env.h"

namespace airlock::dp {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint32_t kOurIp = 0x0a000001;   // 10.0.0.1
constexpr uint32_t kPeerIp = 0xc0a80107;  // 192.168.1.7
constexpr uint16_t kWgPort = 51820;
constexpr uint16_t kPeerPort = 40000;
constexpr uint8_t kOurMac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
constexpr uint8_t kPeerMac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};

UnderlayAddr our_addr() {
  UnderlayAddr us;
  us.ipv4_be = rte_cpu_to_be_32(kOurIp);
  std::memcpy(us.mac.addr_bytes, kOurMac, 6);
  return us;
}

void put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
void put32(Bytes& b, size_t at, uint32_t v) {
  put16(b, at, static_cast<uint16_t>(v >> 16));
  put16(b, at + 2, static_cast<uint16_t>(v));
}
uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
uint32_t get32(const uint8_t* p) {
  return static_cast<uint32_t>(get16(p)) << 16 | get16(p + 2);
}

// RFC 1071 one's-complement sum of 16-bit big-endian words, folded.
uint16_t ones_sum(std::span<const uint8_t> bytes, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < bytes.size(); i += 2) acc += get16(&bytes[i]);
  if (bytes.size() % 2 != 0) acc += static_cast<uint32_t>(bytes.back()) << 8;
  while (acc > 0xffff) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(acc);
}

uint32_t pseudo_header_sum(uint32_t src, uint32_t dst, uint16_t udp_len) {
  return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 17 + udp_len;
}

struct UdpFrameSpec {
  uint32_t src_ip = kPeerIp;
  uint32_t dst_ip = kOurIp;
  uint16_t src_port = kPeerPort;
  uint16_t dst_port = kWgPort;
  uint8_t protocol = 17;
  uint16_t frag = 0;  // flags + fragment offset field
  Bytes options;      // multiple of 4 bytes
  Bytes payload = Bytes(32, 0xab);
  size_t padding = 0;  // Ethernet padding after the datagram
};

constexpr size_t kIpOff = 14;

Bytes build_udp_frame(const UdpFrameSpec& s) {
  const size_t ihl = 20 + s.options.size();
  const size_t udp_len = 8 + s.payload.size();
  Bytes f(kIpOff + ihl + udp_len + s.padding, 0);
  std::copy_n(kOurMac, 6, f.begin());
  std::copy_n(kPeerMac, 6, f.begin() + 6);
  put16(f, 12, 0x0800);
  f[kIpOff] = static_cast<uint8_t>(0x40 | ihl / 4);
  put16(f, kIpOff + 2, static_cast<uint16_t>(ihl + udp_len));
  put16(f, kIpOff + 4, 0x1234);
  put16(f, kIpOff + 6, s.frag);
  f[kIpOff + 8] = 64;
  f[kIpOff + 9] = s.protocol;
  put32(f, kIpOff + 12, s.src_ip);
  put32(f, kIpOff + 16, s.dst_ip);
  std::copy(s.options.begin(), s.options.end(), f.begin() + kIpOff + 20);
  put16(f, kIpOff + 10, static_cast<uint16_t>(~ones_sum({&f[kIpOff], ihl})));
  const size_t udp = kIpOff + ihl;
  put16(f, udp, s.src_port);
  put16(f, udp + 2, s.dst_port);
  put16(f, udp + 4, static_cast<uint16_t>(udp_len));
  std::copy(s.payload.begin(), s.payload.end(), f.begin() + udp + 8);
  return f;
}

void fix_ip_checksum(Bytes& f) {
  const size_t ihl = (f[kIpOff] & 0xf) * 4u;
  put16(f, kIpOff + 10, 0);
  put16(f, kIpOff + 10, static_cast<uint16_t>(~ones_sum({&f[kIpOff], ihl})));
}

Bytes build_arp(uint16_t op, uint32_t sender_ip, uint32_t target_ip, const uint8_t* sender_mac) {
  Bytes f(60, 0);
  std::fill_n(f.begin(), 6, 0xff);
  std::copy_n(sender_mac, 6, f.begin() + 6);
  put16(f, 12, 0x0806);
  put16(f, 14, 1);       // hardware: Ethernet
  put16(f, 16, 0x0800);  // protocol: IPv4
  f[18] = 6;
  f[19] = 4;
  put16(f, 20, op);
  std::copy_n(sender_mac, 6, f.begin() + 22);
  put32(f, 28, sender_ip);
  put32(f, 38, target_ip);
  return f;
}

struct MbufFree {
  void operator()(rte_mbuf* m) const { rte_pktmbuf_free(m); }
};
using MbufPtr = std::unique_ptr<rte_mbuf, MbufFree>;

class UnderlayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    test::ensure_eal();
    pool_ = rte_pktmbuf_pool_create("underlay_test", 1024, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                    SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr);
  }
  static void TearDownTestSuite() { rte_mempool_free(pool_); }

  MbufPtr alloc() {
    MbufPtr m(rte_pktmbuf_alloc(pool_));
    EXPECT_NE(m, nullptr);
    return m;
  }

  // Copies the frame but exposes only its first `visible` bytes: a parser that reads past the
  // data length would see valid-looking bytes and misclassify, which the prefix test catches.
  MbufPtr to_mbuf(const Bytes& frame, size_t visible) {
    MbufPtr m = alloc();
    char* data = rte_pktmbuf_append(m.get(), static_cast<uint16_t>(frame.size()));
    EXPECT_NE(data, nullptr);
    std::memcpy(data, frame.data(), frame.size());
    EXPECT_EQ(rte_pktmbuf_trim(m.get(), static_cast<uint16_t>(frame.size() - visible)), 0);
    return m;
  }
  MbufPtr to_mbuf(const Bytes& frame) { return to_mbuf(frame, frame.size()); }

  FrameKind classify(const Bytes& frame, WireguardFrame* out = nullptr) {
    WireguardFrame scratch;
    MbufPtr m = to_mbuf(frame);
    return classify_frame(m.get(), our_addr(), rte_cpu_to_be_16(kWgPort), out ? out : &scratch);
  }

  static rte_mempool* pool_;
};

rte_mempool* UnderlayTest::pool_ = nullptr;

TEST_F(UnderlayTest, ValidWireguardDatagramYieldsPayloadAndSender) {
  UdpFrameSpec spec;
  for (size_t i = 0; i < spec.payload.size(); ++i) spec.payload[i] = static_cast<uint8_t>(i);
  const Bytes frame = build_udp_frame(spec);
  MbufPtr m = to_mbuf(frame);
  WireguardFrame out;
  ASSERT_EQ(classify_frame(m.get(), our_addr(), rte_cpu_to_be_16(kWgPort), &out),
            FrameKind::kWireguard);
  EXPECT_EQ(out.payload, rte_pktmbuf_mtod(m.get(), uint8_t*) + 42);
  ASSERT_EQ(out.len, spec.payload.size());
  EXPECT_TRUE(std::equal(spec.payload.begin(), spec.payload.end(), out.payload));
  EXPECT_EQ(rte_be_to_cpu_32(out.src_ipv4_be), kPeerIp);
  EXPECT_EQ(rte_be_to_cpu_16(out.src_port_be), kPeerPort);
  EXPECT_EQ(std::memcmp(out.src_mac.addr_bytes, kPeerMac, 6), 0);
}

TEST_F(UnderlayTest, EthernetPaddingIsNotPayload) {
  UdpFrameSpec spec;
  spec.payload = Bytes(4, 0x01);
  spec.padding = 14;  // pads the 46-byte frame to the 60-byte minimum
  WireguardFrame out;
  ASSERT_EQ(classify(build_udp_frame(spec), &out), FrameKind::kWireguard);
  EXPECT_EQ(out.len, 4u);
}

TEST_F(UnderlayTest, IpOptionsAreSkippedUsingIhl) {
  UdpFrameSpec spec;
  spec.options = {0x01, 0x01, 0x01, 0x00, 0x01, 0x01, 0x01, 0x00};  // NOPs + end of list
  spec.payload = Bytes(40, 0x5a);
  spec.payload[0] = 4;
  const Bytes frame = build_udp_frame(spec);
  MbufPtr m = to_mbuf(frame);
  WireguardFrame out;
  ASSERT_EQ(classify_frame(m.get(), our_addr(), rte_cpu_to_be_16(kWgPort), &out),
            FrameKind::kWireguard);
  EXPECT_EQ(out.payload, rte_pktmbuf_mtod(m.get(), uint8_t*) + 14 + 28 + 8);
  EXPECT_EQ(out.len, 40u);
  EXPECT_EQ(out.payload[0], 4);
}

TEST_F(UnderlayTest, OtherPortAddressProtocolOrEthertypeIsOther) {
  UdpFrameSpec wrong_port;
  wrong_port.dst_port = 53;
  EXPECT_EQ(classify(build_udp_frame(wrong_port)), FrameKind::kOther);

  UdpFrameSpec wrong_ip;
  wrong_ip.dst_ip = kOurIp + 1;
  EXPECT_EQ(classify(build_udp_frame(wrong_ip)), FrameKind::kOther);

  UdpFrameSpec tcp;
  tcp.protocol = 6;
  EXPECT_EQ(classify(build_udp_frame(tcp)), FrameKind::kOther);

  Bytes ipv6 = build_udp_frame({});
  put16(ipv6, 12, 0x86dd);
  EXPECT_EQ(classify(ipv6), FrameKind::kOther);

  Bytes vlan = build_udp_frame({});
  put16(vlan, 12, 0x8100);
  EXPECT_EQ(classify(vlan), FrameKind::kOther);
}

TEST_F(UnderlayTest, UnanswerableSourcesAreOther) {
  for (uint32_t src : {0x00000000u, 0x7f000001u, 0xe0000001u, 0xffffffffu}) {
    UdpFrameSpec spec;
    spec.src_ip = src;
    EXPECT_EQ(classify(build_udp_frame(spec)), FrameKind::kOther) << std::hex << src;
  }
  UdpFrameSpec port0;
  port0.src_port = 0;
  EXPECT_EQ(classify(build_udp_frame(port0)), FrameKind::kOther);
}

TEST_F(UnderlayTest, BadIpChecksumIsMalformed) {
  Bytes frame = build_udp_frame({});
  frame[kIpOff + 11] ^= 0x01;
  EXPECT_EQ(classify(frame), FrameKind::kMalformed);
}

TEST_F(UnderlayTest, DeviceChecksumVerdictIsTrusted) {
  Bytes bad = build_udp_frame({});
  bad[kIpOff + 11] ^= 0x01;
  WireguardFrame out;
  MbufPtr claimed_good = to_mbuf(bad);
  claimed_good->ol_flags |= RTE_MBUF_F_RX_IP_CKSUM_GOOD;
  EXPECT_EQ(classify_frame(claimed_good.get(), our_addr(), rte_cpu_to_be_16(kWgPort), &out),
            FrameKind::kWireguard);

  MbufPtr claimed_bad = to_mbuf(build_udp_frame({}));
  claimed_bad->ol_flags |= RTE_MBUF_F_RX_IP_CKSUM_BAD;
  EXPECT_EQ(classify_frame(claimed_bad.get(), our_addr(), rte_cpu_to_be_16(kWgPort), &out),
            FrameKind::kMalformed);
}

TEST_F(UnderlayTest, IpTotalLengthBeyondFrameIsMalformed) {
  Bytes frame = build_udp_frame({});
  put16(frame, kIpOff + 2, static_cast<uint16_t>(frame.size() - kIpOff + 1));
  fix_ip_checksum(frame);
  EXPECT_EQ(classify(frame), FrameKind::kMalformed);
}

TEST_F(UnderlayTest, IpTotalLengthShorterThanHeaderIsMalformed) {
  Bytes frame = build_udp_frame({});
  put16(frame, kIpOff + 2, 19);
  fix_ip_checksum(frame);
  EXPECT_EQ(classify(frame), FrameKind::kMalformed);
}

TEST_F(UnderlayTest, BadVersionOrIhlIsMalformed) {
  Bytes v6 = build_udp_frame({});
  v6[kIpOff] = 0x65;
  fix_ip_checksum(v6);
  EXPECT_EQ(classify(v6), FrameKind::kMalformed);

  Bytes short_ihl = build_udp_frame({});
  short_ihl[kIpOff] = 0x44;
  EXPECT_EQ(classify(short_ihl), FrameKind::kMalformed);
}

TEST_F(UnderlayTest, UdpLengthMismatchIsMalformed) {
  const Bytes frame = build_udp_frame({});
  const size_t udp_len_at = kIpOff + 20 + 4;
  const uint16_t udp_len = get16(&frame[udp_len_at]);
  for (uint16_t wrong : {uint16_t(udp_len - 1), uint16_t(udp_len + 1), uint16_t(7), uint16_t(0)}) {
    Bytes bad = frame;
    put16(bad, udp_len_at, wrong);
    EXPECT_EQ(classify(bad), FrameKind::kMalformed) << wrong;
  }
}

TEST_F(UnderlayTest, DatagramTooShortForUdpHeaderIsMalformed) {
  Bytes frame = build_udp_frame({});
  put16(frame, kIpOff + 2, 20 + 7);
  fix_ip_checksum(frame);
  EXPECT_EQ(classify(frame), FrameKind::kMalformed);
}

TEST_F(UnderlayTest, EveryTruncationIsRejected) {
  UdpFrameSpec with_options;
  with_options.options = Bytes(4, 0x01);
  const Bytes frames[] = {
      build_udp_frame({}),
      build_udp_frame(with_options),
      build_arp(1, kPeerIp, kOurIp, kPeerMac),
  };
  for (const Bytes& frame : frames) {
    const FrameKind full = classify(frame);
    ASSERT_TRUE(full == FrameKind::kWireguard || full == FrameKind::kArpRequestForUs);
    // ARP frames carry 18 bytes of padding: only cuts into the 42 ARP bytes are truncations.
    const size_t meaningful = full == FrameKind::kArpRequestForUs ? 42 : frame.size();
    for (size_t len = 0; len < meaningful; ++len) {
      MbufPtr m = to_mbuf(frame, len);
      WireguardFrame out;
      const FrameKind kind = classify_frame(m.get(), our_addr(), rte_cpu_to_be_16(kWgPort), &out);
      EXPECT_TRUE(kind == FrameKind::kMalformed || kind == FrameKind::kOther)
          << "prefix length " << len << " of " << frame.size() << " gave "
          << static_cast<int>(kind);
    }
  }
}

TEST_F(UnderlayTest, FragmentsAreReportedAsFragments) {
  UdpFrameSpec more_fragments;
  more_fragments.frag = 0x2000;
  EXPECT_EQ(classify(build_udp_frame(more_fragments)), FrameKind::kFragment);

  UdpFrameSpec later_fragment;
  later_fragment.frag = 0x0003;  // offset 24 bytes, last fragment
  EXPECT_EQ(classify(build_udp_frame(later_fragment)), FrameKind::kFragment);

  UdpFrameSpec dont_fragment;
  dont_fragment.frag = 0x4000;
  EXPECT_EQ(classify(build_udp_frame(dont_fragment)), FrameKind::kWireguard);
}

TEST_F(UnderlayTest, ArpRequestsAreRecognisedOnlyForOurAddress) {
  EXPECT_EQ(classify(build_arp(1, kPeerIp, kOurIp, kPeerMac)), FrameKind::kArpRequestForUs);
  EXPECT_EQ(classify(build_arp(1, kPeerIp, kOurIp + 1, kPeerMac)), FrameKind::kOther);
  EXPECT_EQ(classify(build_arp(2, kPeerIp, kOurIp, kPeerMac)), FrameKind::kOther);
  Bytes not_ipv4 = build_arp(1, kPeerIp, kOurIp, kPeerMac);
  put16(not_ipv4, 16, 0x86dd);
  EXPECT_EQ(classify(not_ipv4), FrameKind::kOther);
}

TEST_F(UnderlayTest, ArpReplyAnswersTheRequester) {
  MbufPtr m = to_mbuf(build_arp(1, kPeerIp, kOurIp, kPeerMac));
  make_arp_reply(m.get(), our_addr());
  const auto* f = rte_pktmbuf_mtod(m.get(), const uint8_t*);
  EXPECT_EQ(std::memcmp(f, kPeerMac, 6), 0) << "Ethernet destination";
  EXPECT_EQ(std::memcmp(f + 6, kOurMac, 6), 0) << "Ethernet source";
  EXPECT_EQ(get16(f + 12), 0x0806);
  EXPECT_EQ(get16(f + 14), 1);
  EXPECT_EQ(get16(f + 16), 0x0800);
  EXPECT_EQ(f[18], 6);
  EXPECT_EQ(f[19], 4);
  EXPECT_EQ(get16(f + 20), 2) << "opcode reply";
  EXPECT_EQ(std::memcmp(f + 22, kOurMac, 6), 0) << "sender MAC";
  EXPECT_EQ(get32(f + 28), kOurIp) << "sender IP";
  EXPECT_EQ(std::memcmp(f + 32, kPeerMac, 6), 0) << "target MAC";
  EXPECT_EQ(get32(f + 38), kPeerIp) << "target IP";
}

TEST_F(UnderlayTest, ArpRequestIsBroadcastAndParsesBack) {
  MbufPtr m = alloc();
  ASSERT_TRUE(build_arp_request(m.get(), our_addr(), rte_cpu_to_be_32(kPeerIp)));
  ASSERT_GE(rte_pktmbuf_data_len(m.get()), 42u);
  const auto* f = rte_pktmbuf_mtod(m.get(), const uint8_t*);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(f[i], 0xff);
  EXPECT_EQ(std::memcmp(f + 6, kOurMac, 6), 0);
  EXPECT_EQ(get16(f + 12), 0x0806);
  EXPECT_EQ(get16(f + 14), 1);
  EXPECT_EQ(get16(f + 16), 0x0800);
  EXPECT_EQ(f[18], 6);
  EXPECT_EQ(f[19], 4);
  EXPECT_EQ(get16(f + 20), 1) << "opcode request";
  EXPECT_EQ(std::memcmp(f + 22, kOurMac, 6), 0);
  EXPECT_EQ(get32(f + 28), kOurIp);
  EXPECT_EQ(get32(f + 38), kPeerIp);

  uint32_t ip_be = 0;
  rte_ether_addr mac{};
  ASSERT_TRUE(parse_arp_sender(m.get(), &ip_be, &mac));
  EXPECT_EQ(rte_be_to_cpu_32(ip_be), kOurIp);
  EXPECT_EQ(std::memcmp(mac.addr_bytes, kOurMac, 6), 0);

  MbufPtr not_empty = to_mbuf(Bytes(1, 0));
  EXPECT_FALSE(build_arp_request(not_empty.get(), our_addr(), rte_cpu_to_be_32(kPeerIp)));
}

TEST_F(UnderlayTest, ArpSenderIsLearnedOnlyFromUsableArp) {
  uint32_t ip_be = 0;
  rte_ether_addr mac{};
  MbufPtr reply = to_mbuf(build_arp(2, kPeerIp, kOurIp, kPeerMac));
  ASSERT_TRUE(parse_arp_sender(reply.get(), &ip_be, &mac));
  EXPECT_EQ(rte_be_to_cpu_32(ip_be), kPeerIp);
  EXPECT_EQ(std::memcmp(mac.addr_bytes, kPeerMac, 6), 0);

  MbufPtr probe = to_mbuf(build_arp(1, 0, kOurIp, kPeerMac));
  EXPECT_FALSE(parse_arp_sender(probe.get(), &ip_be, &mac));
  const uint8_t group_mac[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
  MbufPtr multicast = to_mbuf(build_arp(2, kPeerIp, kOurIp, group_mac));
  EXPECT_FALSE(parse_arp_sender(multicast.get(), &ip_be, &mac));
  MbufPtr udp = to_mbuf(build_udp_frame({}));
  EXPECT_FALSE(parse_arp_sender(udp.get(), &ip_be, &mac));
  MbufPtr truncated = to_mbuf(build_arp(2, kPeerIp, kOurIp, kPeerMac), 41);
  EXPECT_FALSE(parse_arp_sender(truncated.get(), &ip_be, &mac));
}

UdpEndpoint peer_endpoint() {
  UdpEndpoint to;
  to.ipv4_be = rte_cpu_to_be_32(kPeerIp);
  to.port_be = rte_cpu_to_be_16(kPeerPort);
  std::memcpy(to.mac.addr_bytes, kPeerMac, 6);
  return to;
}

Bytes frame_bytes(const rte_mbuf* m) {
  Bytes out(rte_pktmbuf_pkt_len(m));
  // Returns the mbuf's own data when contiguous, copying into `out` only for chains.
  const void* data = rte_pktmbuf_read(m, 0, out.size(), out.data());
  EXPECT_NE(data, nullptr);
  if (data != nullptr) std::memcpy(out.data(), data, out.size());
  return out;
}

// Checks every field of the 42 bytes written by prepend_outer_headers except the UDP checksum.
void expect_outer_headers(const Bytes& f, const Bytes& message, uint16_t ip_id) {
  ASSERT_EQ(f.size(), 42 + message.size());
  EXPECT_EQ(std::memcmp(&f[0], kPeerMac, 6), 0);
  EXPECT_EQ(std::memcmp(&f[6], kOurMac, 6), 0);
  EXPECT_EQ(get16(&f[12]), 0x0800);
  EXPECT_EQ(f[14], 0x45);
  EXPECT_EQ(get16(&f[16]), 28 + message.size());
  EXPECT_EQ(get16(&f[18]), ip_id);
  EXPECT_EQ(get16(&f[20]), 0) << "DF clear, no fragmentation";
  EXPECT_EQ(f[22], 64);
  EXPECT_EQ(f[23], 17);
  EXPECT_EQ(get32(&f[26]), kOurIp);
  EXPECT_EQ(get32(&f[30]), kPeerIp);
  EXPECT_EQ(ones_sum({&f[14], 20}), 0xffff) << "IPv4 header checksum";
  EXPECT_EQ(get16(&f[34]), kWgPort);
  EXPECT_EQ(get16(&f[36]), kPeerPort);
  const auto udp_len = static_cast<uint16_t>(8 + message.size());
  EXPECT_EQ(get16(&f[38]), udp_len);
  EXPECT_TRUE(std::equal(message.begin(), message.end(), f.begin() + 42));
}

Bytes test_message(size_t len) {
  Bytes message(len);
  for (size_t i = 0; i < len; ++i) message[i] = static_cast<uint8_t>(i * 7 + 3);
  return message;
}

TEST_F(UnderlayTest, OuterHeadersCarryCorrectFieldsAndChecksums) {
  for (size_t len : {32u, 33u, 148u}) {  // keepalive, odd length, initiation
    const Bytes message = test_message(len);
    MbufPtr m = to_mbuf(message);
    ASSERT_TRUE(prepend_outer_headers(m.get(), our_addr(), rte_cpu_to_be_16(kWgPort),
                                      peer_endpoint(), 0xbeef));
    const Bytes f = frame_bytes(m.get());
    expect_outer_headers(f, message, 0xbeef);
    const uint32_t pseudo = pseudo_header_sum(kOurIp, kPeerIp, static_cast<uint16_t>(8 + len));
    EXPECT_NE(get16(&f[40]), 0) << "UDP checksum present";
    EXPECT_EQ(ones_sum({&f[34], f.size() - 34}, pseudo), 0xffff) << "UDP checksum, len " << len;
  }
}

TEST_F(UnderlayTest, OuterHeadersRoundTripThroughClassify) {
  const Bytes message = test_message(96);
  MbufPtr m = to_mbuf(message);
  ASSERT_TRUE(
      prepend_outer_headers(m.get(), our_addr(), rte_cpu_to_be_16(kWgPort), peer_endpoint(), 1));
  // Seen from the peer, the frame is WireGuard traffic from us.
  UnderlayAddr peer;
  peer.ipv4_be = rte_cpu_to_be_32(kPeerIp);
  std::memcpy(peer.mac.addr_bytes, kPeerMac, 6);
  WireguardFrame out;
  ASSERT_EQ(classify_frame(m.get(), peer, rte_cpu_to_be_16(kPeerPort), &out),
            FrameKind::kWireguard);
  EXPECT_EQ(rte_be_to_cpu_32(out.src_ipv4_be), kOurIp);
  EXPECT_EQ(rte_be_to_cpu_16(out.src_port_be), kWgPort);
  ASSERT_EQ(out.len, message.size());
  EXPECT_TRUE(std::equal(message.begin(), message.end(), out.payload));
}

TEST_F(UnderlayTest, ChainedMbufIsRefusedUntouched) {
  const Bytes message = test_message(200);
  MbufPtr head = to_mbuf(Bytes(message.begin(), message.begin() + 77));
  MbufPtr tail = to_mbuf(Bytes(message.begin() + 77, message.end()));
  ASSERT_EQ(rte_pktmbuf_chain(head.get(), tail.release()), 0);
  const uint16_t headroom = rte_pktmbuf_headroom(head.get());
  EXPECT_FALSE(
      prepend_outer_headers(head.get(), our_addr(), rte_cpu_to_be_16(kWgPort), peer_endpoint(), 2));
  EXPECT_EQ(rte_pktmbuf_headroom(head.get()), headroom);
  EXPECT_EQ(frame_bytes(head.get()), message);
}

TEST_F(UnderlayTest, OffloadedUdpChecksumHoldsPseudoHeaderSum) {
  const Bytes message = test_message(64);
  MbufPtr m = to_mbuf(message);
  ASSERT_TRUE(prepend_outer_headers(m.get(), our_addr(), rte_cpu_to_be_16(kWgPort), peer_endpoint(),
                                    3, UdpChecksum::kOffload));
  const Bytes f = frame_bytes(m.get());
  expect_outer_headers(f, message, 3);
  // The NIC adds the UDP header and payload to the non-complemented pseudo-header sum.
  EXPECT_EQ(get16(&f[40]), ones_sum({}, pseudo_header_sum(kOurIp, kPeerIp, 72)));
  EXPECT_EQ(m->l2_len, 14u);
  EXPECT_EQ(m->l3_len, 20u);
  EXPECT_EQ(m->ol_flags & RTE_MBUF_F_TX_L4_MASK, RTE_MBUF_F_TX_UDP_CKSUM);
  EXPECT_NE(m->ol_flags & RTE_MBUF_F_TX_IPV4, 0u);
}

TEST_F(UnderlayTest, ShortHeadroomLeavesMbufUntouched) {
  const Bytes message = test_message(32);
  MbufPtr m = alloc();
  m->data_off = 41;  // one byte short of the outer headers
  char* data = rte_pktmbuf_append(m.get(), static_cast<uint16_t>(message.size()));
  ASSERT_NE(data, nullptr);
  std::memcpy(data, message.data(), message.size());
  EXPECT_FALSE(
      prepend_outer_headers(m.get(), our_addr(), rte_cpu_to_be_16(kWgPort), peer_endpoint(), 4));
  EXPECT_EQ(rte_pktmbuf_headroom(m.get()), 41u);
  EXPECT_EQ(frame_bytes(m.get()), message);
}

}  // namespace
}  // namespace airlock::dp
