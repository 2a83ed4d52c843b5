// The underlay the data plane speaks on its ports: Ethernet, ARP, IPv4 and UDP. The two per-packet
// functions (classify_frame, prepend_outer_headers) are inline for the workers' fast path; they
// allocate nothing and only touch the first mbuf segment's headers.
#pragma once

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include <cstdint>

namespace airlock::dp {

// Our own address on one port.
struct UnderlayAddr {
  uint32_t ipv4_be = 0;
  rte_ether_addr mac{};
};

enum class FrameKind : uint8_t { kArpRequestForUs, kWireguard, kOther, kMalformed, kFragment };

// Where a WireGuard datagram came from, and its UDP payload inside the mbuf.
struct WireguardFrame {
  uint8_t* payload = nullptr;
  uint32_t len = 0;
  uint32_t src_ipv4_be = 0;
  uint16_t src_port_be = 0;
  rte_ether_addr src_mac{};
};

struct UdpEndpoint {
  uint32_t ipv4_be = 0;
  uint16_t port_be = 0;
  rte_ether_addr mac{};
};

enum class UdpChecksum : uint8_t {
  kSoftware,
  kOffload,  // only on a port whose PortInfo::tx_udp_cksum_offload is true
  // Zero ("not computed", RFC 768, IPv4 only). For transport data the payload is already
  // authenticated by Poly1305, and a software checksum costs ~280 ns per 1420-byte packet —
  // most of the forwarding overhead measured in bench_dataplane.
  kNone,
};

inline constexpr uint16_t kOuterHeaderLen =
    sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr);
inline constexpr uint8_t kOuterTtl = 64;

namespace underlay_detail {

inline bool ipv4_header_checksum_ok(const rte_mbuf* m, const rte_ipv4_hdr* ip) {
  switch (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) {
    case RTE_MBUF_F_RX_IP_CKSUM_GOOD:
    case RTE_MBUF_F_RX_IP_CKSUM_NONE:  // header integrity verified by the device
      return true;
    case RTE_MBUF_F_RX_IP_CKSUM_BAD:
      return false;
    default:
      // Summing a header that includes a correct checksum yields 0xffff, so the complement is 0.
      return rte_ipv4_cksum(ip) == 0;
  }
}

// Sources we could never answer: "this network" (0/8), loopback, multicast, reserved, broadcast.
inline bool is_martian_source(uint32_t ipv4_be) {
  const uint32_t first_octet = rte_be_to_cpu_32(ipv4_be) >> 24;
  return first_octet == 0 || first_octet == 127 || first_octet >= 224;
}

inline bool is_ether_ipv4_arp(const rte_arp_hdr* arp) {
  return arp->arp_hardware == RTE_BE16(RTE_ARP_HRD_ETHER) &&
         arp->arp_protocol == RTE_BE16(RTE_ETHER_TYPE_IPV4) &&
         arp->arp_hlen == RTE_ETHER_ADDR_LEN && arp->arp_plen == sizeof(uint32_t);
}

inline FrameKind classify_arp(const uint8_t* l3, uint32_t l3_len, const UnderlayAddr& us) {
  if (l3_len < sizeof(rte_arp_hdr)) return FrameKind::kMalformed;
  const auto* arp = reinterpret_cast<const rte_arp_hdr*>(l3);
  if (is_ether_ipv4_arp(arp) && arp->arp_opcode == RTE_BE16(RTE_ARP_OP_REQUEST) &&
      arp->arp_data.arp_tip == us.ipv4_be) {
    return FrameKind::kArpRequestForUs;
  }
  return FrameKind::kOther;
}

}  // namespace underlay_detail

// Classifies a received frame (see FrameKind). Only IPv4 UDP to our address and wg_port_be with
// a valid header checksum, consistent lengths and a usable source is kWireguard; then *out holds
// the UDP payload (contiguous in the first segment) and the sender. Frames for other addresses,
// ports, protocols, IPv6 and VLAN-tagged frames are kOther; ARP requests for our address are
// kArpRequestForUs (other ARP is kOther: pass it to parse_arp_sender to learn neighbours).
inline FrameKind classify_frame(rte_mbuf* m, const UnderlayAddr& us, uint16_t wg_port_be,
                                WireguardFrame* out) {
  using underlay_detail::classify_arp;
  const uint32_t frame_len = rte_pktmbuf_data_len(m);
  if (frame_len < sizeof(rte_ether_hdr)) return FrameKind::kMalformed;
  const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
  uint8_t* l3 = rte_pktmbuf_mtod_offset(m, uint8_t*, sizeof(rte_ether_hdr));
  const uint32_t l3_len = frame_len - sizeof(rte_ether_hdr);
  if (eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_ARP)) return classify_arp(l3, l3_len, us);
  if (eth->ether_type != RTE_BE16(RTE_ETHER_TYPE_IPV4)) return FrameKind::kOther;

  if (l3_len < sizeof(rte_ipv4_hdr)) return FrameKind::kMalformed;
  const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(l3);
  const uint32_t ihl = rte_ipv4_hdr_len(ip);
  const uint32_t total_len = rte_be_to_cpu_16(ip->total_length);
  // Frames may carry Ethernet padding after the datagram, so only "longer than the frame" is bad.
  if ((ip->version_ihl >> 4) != 4 || ihl < sizeof(rte_ipv4_hdr) || ihl > l3_len ||
      total_len < ihl || total_len > l3_len) {
    return FrameKind::kMalformed;
  }
  if (ip->dst_addr != us.ipv4_be || ip->next_proto_id != IPPROTO_UDP) return FrameKind::kOther;
  if (!underlay_detail::ipv4_header_checksum_ok(m, ip)) return FrameKind::kMalformed;
  if ((ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0) {
    return FrameKind::kFragment;
  }

  const uint32_t udp_len = total_len - ihl;
  if (udp_len < sizeof(rte_udp_hdr)) return FrameKind::kMalformed;
  auto* udp = reinterpret_cast<const rte_udp_hdr*>(l3 + ihl);
  if (udp->dst_port != wg_port_be) return FrameKind::kOther;
  if (rte_be_to_cpu_16(udp->dgram_len) != udp_len) return FrameKind::kMalformed;
  if (udp->src_port == 0 || underlay_detail::is_martian_source(ip->src_addr)) {
    return FrameKind::kOther;
  }

  out->payload = l3 + ihl + sizeof(rte_udp_hdr);
  out->len = udp_len - sizeof(rte_udp_hdr);
  out->src_ipv4_be = ip->src_addr;
  out->src_port_be = udp->src_port;
  rte_ether_addr_copy(&eth->src_addr, &out->src_mac);
  return FrameKind::kWireguard;
}

// Prepends Ethernet + IPv4 + UDP (kOuterHeaderLen bytes) in front of the WireGuard message that
// is the mbuf's whole content. IPv4: TTL 64, DF clear, identification ip_id (host order, from the
// caller's counter), header checksum in software. UDP checksum in software, or left to the NIC
// with kOffload. Returns false, leaving the mbuf untouched, if headroom is short, the datagram
// would exceed the IPv4 total length, or the mbuf is chained (the software checksum needs the
// message contiguous: DPDK 22.11's rte_raw_cksum_mbuf drops carries after an odd-length segment).
inline bool prepend_outer_headers(rte_mbuf* m, const UnderlayAddr& us, uint16_t our_port_be,
                                  const UdpEndpoint& to, uint16_t ip_id,
                                  UdpChecksum udp_checksum = UdpChecksum::kSoftware) {
  const uint32_t ip_total_len = rte_pktmbuf_pkt_len(m) + sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr);
  if (ip_total_len > UINT16_MAX || !rte_pktmbuf_is_contiguous(m)) return false;
  auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(m, kOuterHeaderLen));
  if (eth == nullptr) return false;
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);

  rte_ether_addr_copy(&to.mac, &eth->dst_addr);
  rte_ether_addr_copy(&us.mac, &eth->src_addr);
  eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);

  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->type_of_service = 0;
  ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(ip_total_len));
  ip->packet_id = rte_cpu_to_be_16(ip_id);
  ip->fragment_offset = 0;
  ip->time_to_live = kOuterTtl;
  ip->next_proto_id = IPPROTO_UDP;
  ip->hdr_checksum = 0;
  ip->src_addr = us.ipv4_be;
  ip->dst_addr = to.ipv4_be;
  ip->hdr_checksum = rte_ipv4_cksum(ip);

  udp->src_port = our_port_be;
  udp->dst_port = to.port_be;
  udp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(ip_total_len - sizeof(rte_ipv4_hdr)));
  udp->dgram_cksum = 0;
  if (udp_checksum == UdpChecksum::kOffload) {
    m->l2_len = sizeof(rte_ether_hdr);
    m->l3_len = sizeof(rte_ipv4_hdr);
    m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_UDP_CKSUM;
    udp->dgram_cksum = rte_ipv4_phdr_cksum(ip, m->ol_flags);
  } else if (udp_checksum == UdpChecksum::kSoftware) {
    udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
  }
  return true;
}

// Turns an ARP request for us (kArpRequestForUs) into our reply, in place, ready to transmit.
void make_arp_reply(rte_mbuf* m, const UnderlayAddr& us);

// Writes a broadcast ARP request for target_ipv4_be into an empty mbuf. Returns false if the mbuf
// is not empty or has no room.
bool build_arp_request(rte_mbuf* m, const UnderlayAddr& us, uint32_t target_ipv4_be);

// For an Ethernet/IPv4 ARP request or reply with a usable sender (non-zero IPv4, unicast MAC),
// fills the sender's address and returns true.
bool parse_arp_sender(const rte_mbuf* m, uint32_t* ip_be, rte_ether_addr* mac);

}  // namespace airlock::dp
