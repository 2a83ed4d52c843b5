// DPDK port bring-up and the ingress steering rules for WireGuard traffic.
#pragma once

#include <rte_ether.h>
#include <rte_mempool.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace airlock::dp {

struct PortConfig {
  uint16_t port_id = 0;
  uint16_t nb_queues = 1;  // Rx and Tx queue pairs, one per worker
  uint16_t rx_desc = 1024;
  uint16_t tx_desc = 1024;
  rte_mempool* pool = nullptr;  // Rx buffers for every queue
};

struct PortInfo {
  uint16_t port_id = 0;
  rte_ether_addr mac{};
  std::string driver;
  uint16_t nb_queues = 0;
  bool rss = false;                   // Rx spreads by IP/UDP hash across the queues
  bool tx_udp_cksum_offload = false;  // pass UdpChecksum::kOffload to prepend_outer_headers
};

// An open, started port. Owns the device from a successful open() until destruction, which stops
// and closes it (closing also releases the port id and any rte_flow rules).
class Port {
 public:
  // Configures config.nb_queues Rx+Tx queue pairs (RSS on the IPv4/UDP hash when the PMD offers
  // it and there is more than one queue), sets the queues up, starts the port and turns
  // promiscuous and all-multicast off. On failure returns nullopt and a message naming the port
  // and the failing call; the device is left stopped and still owned by the caller.
  static std::optional<Port> open(const PortConfig& config, std::string* error);

  Port(Port&& other) noexcept;
  Port& operator=(Port&& other) noexcept;
  Port(const Port&) = delete;
  Port& operator=(const Port&) = delete;
  ~Port();

  const PortInfo& info() const { return info_; }
  uint16_t id() const { return info_.port_id; }

 private:
  explicit Port(PortInfo info) : info_(std::move(info)) {}
  void close();

  PortInfo info_;
  bool owned_ = true;
};

enum class SteeringMode { kHardware, kSoftware };

struct SteeringResult {
  SteeringMode mode = SteeringMode::kSoftware;
  // Empty when every rule is in hardware; otherwise the PMD's reason, for one log line.
  std::string reason;
};

// Installs, on a started port:
//   1. ingress ETH / IPV4 dst=our_ipv4_be / UDP dst=wg_port -> RSS over all queues (QUEUE 0 when
//      nb_queues == 1);
//   2. ingress ETH type ARP -> QUEUE 0, and a lower-priority catch-all DROP.
// Each rule is validated, then created (creation is the real probe). If rule 1 fails, whatever was
// created is destroyed and the result is kSoftware with the PMD's message. If only the rules of 2
// fail, they are removed and the result is kHardware with the reason the catch-all is missing
// (ARP is steered only so that the catch-all does not drop it). wg_port is in host byte order.
// Rules do not survive a port restart: call again after every start.
SteeringResult install_wireguard_steering(uint16_t port_id, uint32_t our_ipv4_be, uint16_t wg_port,
                                          uint16_t nb_queues);

// Runs only rte_flow_validate on the three rules above. Returns 0, or the negative errno of the
// first rule that fails with the PMD's message in *error.
int validate_wireguard_steering(uint16_t port_id, uint32_t our_ipv4_be, uint16_t wg_port,
                                uint16_t nb_queues, std::string* error);

}  // namespace airlock::dp
