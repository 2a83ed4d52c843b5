// The inner packet the data-plane benchmarks seal into WireGuard transport messages.
#pragma once

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include <netinet/in.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace airlock::bench {

// An IPv4/UDP packet of `size` bytes (at least its headers) from `src_be` to `dst_be` (network
// order), with a valid header checksum and the payload filled with 0x5a.
inline std::vector<uint8_t> inner_udp_packet(uint32_t size, uint32_t src_be, uint32_t dst_be,
                                             uint16_t src_port, uint16_t dst_port) {
  struct {
    rte_ipv4_hdr ip;
    rte_udp_hdr udp;
  } __rte_packed h{};
  h.ip.version_ihl = RTE_IPV4_VHL_DEF;
  h.ip.total_length = rte_cpu_to_be_16(static_cast<uint16_t>(size));
  h.ip.time_to_live = 64;
  h.ip.next_proto_id = IPPROTO_UDP;
  h.ip.src_addr = src_be;
  h.ip.dst_addr = dst_be;
  h.ip.hdr_checksum = rte_ipv4_cksum(&h.ip);
  h.udp.src_port = rte_cpu_to_be_16(src_port);
  h.udp.dst_port = rte_cpu_to_be_16(dst_port);
  h.udp.dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(size - sizeof(rte_ipv4_hdr)));
  std::vector<uint8_t> p(std::max<size_t>(size, sizeof(h)), 0x5a);
  std::memcpy(p.data(), &h, sizeof(h));
  return p;
}

}  // namespace airlock::bench
