#include "dataplane/underlay.h"

#include <cstring>

namespace airlock::dp {
namespace {

constexpr uint32_t kArpFrameLen = sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr);
// Shortest Ethernet frame without FCS. Not every NIC pads runts, so requests are padded here.
constexpr uint32_t kMinFrameLen = RTE_ETHER_MIN_LEN - RTE_ETHER_CRC_LEN;

rte_arp_hdr* arp_header(rte_mbuf* m) {
  return rte_pktmbuf_mtod_offset(m, rte_arp_hdr*, sizeof(rte_ether_hdr));
}

void fill_ether_ipv4_arp(rte_arp_hdr* arp, uint16_t opcode) {
  arp->arp_hardware = RTE_BE16(RTE_ARP_HRD_ETHER);
  arp->arp_protocol = RTE_BE16(RTE_ETHER_TYPE_IPV4);
  arp->arp_hlen = RTE_ETHER_ADDR_LEN;
  arp->arp_plen = sizeof(uint32_t);
  arp->arp_opcode = rte_cpu_to_be_16(opcode);
}

}  // namespace

void make_arp_reply(rte_mbuf* m, const UnderlayAddr& us) {
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  rte_arp_hdr* arp = arp_header(m);
  rte_arp_ipv4& data = arp->arp_data;

  rte_ether_addr_copy(&data.arp_sha, &eth->dst_addr);
  rte_ether_addr_copy(&us.mac, &eth->src_addr);
  arp->arp_opcode = RTE_BE16(RTE_ARP_OP_REPLY);
  rte_ether_addr_copy(&data.arp_sha, &data.arp_tha);
  data.arp_tip = data.arp_sip;
  rte_ether_addr_copy(&us.mac, &data.arp_sha);
  data.arp_sip = us.ipv4_be;
}

bool build_arp_request(rte_mbuf* m, const UnderlayAddr& us, uint32_t target_ipv4_be) {
  if (rte_pktmbuf_pkt_len(m) != 0) return false;
  char* frame = rte_pktmbuf_append(m, kMinFrameLen);
  if (frame == nullptr) return false;
  std::memset(frame, 0, kMinFrameLen);

  auto* eth = reinterpret_cast<rte_ether_hdr*>(frame);
  std::memset(&eth->dst_addr, 0xff, sizeof(eth->dst_addr));
  rte_ether_addr_copy(&us.mac, &eth->src_addr);
  eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_ARP);

  rte_arp_hdr* arp = arp_header(m);
  fill_ether_ipv4_arp(arp, RTE_ARP_OP_REQUEST);
  rte_ether_addr_copy(&us.mac, &arp->arp_data.arp_sha);
  arp->arp_data.arp_sip = us.ipv4_be;
  arp->arp_data.arp_tip = target_ipv4_be;
  return true;
}

bool parse_arp_sender(const rte_mbuf* m, uint32_t* ip_be, rte_ether_addr* mac) {
  if (rte_pktmbuf_data_len(m) < kArpFrameLen) return false;
  const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
  if (eth->ether_type != RTE_BE16(RTE_ETHER_TYPE_ARP)) return false;
  const auto* arp = rte_pktmbuf_mtod_offset(m, const rte_arp_hdr*, sizeof(rte_ether_hdr));
  const bool request_or_reply = arp->arp_opcode == RTE_BE16(RTE_ARP_OP_REQUEST) ||
                                arp->arp_opcode == RTE_BE16(RTE_ARP_OP_REPLY);
  const rte_arp_ipv4& data = arp->arp_data;
  // A probe (sender 0.0.0.0) or a group MAC cannot be a next hop.
  if (!underlay_detail::is_ether_ipv4_arp(arp) || !request_or_reply || data.arp_sip == 0 ||
      !rte_is_valid_assigned_ether_addr(&data.arp_sha)) {
    return false;
  }
  *ip_be = data.arp_sip;
  rte_ether_addr_copy(&data.arp_sha, mac);
  return true;
}

}  // namespace airlock::dp
