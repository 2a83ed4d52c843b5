#include "dataplane/port.h"

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_flow.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <numeric>
#include <utility>
#include <vector>

namespace airlock::dp {
namespace {

// The outer IPv4/UDP hash pins each peer endpoint to one queue; plain IPv4 covers fragments.
constexpr uint64_t kWantedRssHash = RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_UDP;

std::string call_failed(uint16_t port_id, const std::string& call, int rc) {
  return "port " + std::to_string(port_id) + ": " + call + " failed: " + rte_strerror(-rc);
}

// Best effort: a PMD without the operation (-ENOTSUP) behaves as wanted for our purposes, because
// classify_frame() filters on our IPv4 address anyway.
int disable_rx_mode(int rc) {
  return rc == -ENOTSUP ? 0 : rc;
}

int setup_queues(const PortConfig& config, const rte_eth_dev_info& dev_info,
                 const rte_eth_conf& conf, std::string* error) {
  const uint16_t port_id = config.port_id;
  uint16_t rx_desc = config.rx_desc;
  uint16_t tx_desc = config.tx_desc;
  int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rx_desc, &tx_desc);
  if (rc != 0) {
    *error = call_failed(port_id, "rte_eth_dev_adjust_nb_rx_tx_desc", rc);
    return rc;
  }
  // SOCKET_ID_ANY (-1) when the device has no NUMA affinity, which every setup call accepts.
  const auto socket = static_cast<unsigned>(rte_eth_dev_socket_id(port_id));
  rte_eth_rxconf rxconf = dev_info.default_rxconf;
  rxconf.offloads = conf.rxmode.offloads;
  rte_eth_txconf txconf = dev_info.default_txconf;
  txconf.offloads = conf.txmode.offloads;
  for (uint16_t q = 0; q < config.nb_queues; ++q) {
    rc = rte_eth_rx_queue_setup(port_id, q, rx_desc, socket, &rxconf, config.pool);
    if (rc != 0) {
      *error = call_failed(port_id, "rte_eth_rx_queue_setup(queue " + std::to_string(q) + ")", rc);
      return rc;
    }
    rc = rte_eth_tx_queue_setup(port_id, q, tx_desc, socket, &txconf);
    if (rc != 0) {
      *error = call_failed(port_id, "rte_eth_tx_queue_setup(queue " + std::to_string(q) + ")", rc);
      return rc;
    }
  }
  return 0;
}

// Starts the port, then applies the Rx modes and reads the MAC; stops it again on failure.
int start_port(uint16_t port_id, rte_ether_addr* mac, std::string* error) {
  int rc = rte_eth_dev_start(port_id);
  if (rc != 0) {
    *error = call_failed(port_id, "rte_eth_dev_start", rc);
    return rc;
  }
  const char* call = "rte_eth_promiscuous_disable";
  rc = disable_rx_mode(rte_eth_promiscuous_disable(port_id));
  if (rc == 0) {
    call = "rte_eth_allmulticast_disable";
    rc = disable_rx_mode(rte_eth_allmulticast_disable(port_id));
  }
  if (rc == 0) {
    call = "rte_eth_macaddr_get";
    rc = rte_eth_macaddr_get(port_id, mac);
  }
  if (rc != 0) {
    *error = call_failed(port_id, call, rc);
    rte_eth_dev_stop(port_id);
  }
  return rc;
}

}  // namespace

std::optional<Port> Port::open(const PortConfig& config, std::string* error) {
  const uint16_t port_id = config.port_id;
  if (!rte_eth_dev_is_valid_port(port_id)) {
    *error = "port " + std::to_string(port_id) + ": no such port";
    return std::nullopt;
  }
  if (config.nb_queues == 0 || config.pool == nullptr) {
    *error = "port " + std::to_string(port_id) + ": need at least one queue and a mempool";
    return std::nullopt;
  }
  rte_eth_dev_info dev_info{};
  int rc = rte_eth_dev_info_get(port_id, &dev_info);
  if (rc != 0) {
    *error = call_failed(port_id, "rte_eth_dev_info_get", rc);
    return std::nullopt;
  }
  const std::string driver = dev_info.driver_name != nullptr ? dev_info.driver_name : "";
  if (config.nb_queues > dev_info.max_rx_queues || config.nb_queues > dev_info.max_tx_queues) {
    *error = "port " + std::to_string(port_id) + ": " + driver + " supports " +
             std::to_string(std::min(dev_info.max_rx_queues, dev_info.max_tx_queues)) +
             " queue pairs, " + std::to_string(config.nb_queues) + " requested";
    return std::nullopt;
  }

  rte_eth_conf conf{};
  const uint64_t rss_hash =
      config.nb_queues > 1 ? kWantedRssHash & dev_info.flow_type_rss_offloads : 0;
  if (rss_hash != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = rss_hash;
  }
  conf.rxmode.offloads = dev_info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
  conf.txmode.offloads = dev_info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
  rc = rte_eth_dev_configure(port_id, config.nb_queues, config.nb_queues, &conf);
  if (rc != 0) {
    *error = call_failed(port_id, "rte_eth_dev_configure", rc);
    return std::nullopt;
  }
  if (setup_queues(config, dev_info, conf, error) != 0) return std::nullopt;

  PortInfo info;
  info.port_id = port_id;
  info.driver = driver;
  info.nb_queues = config.nb_queues;
  info.rss = rss_hash != 0;
  info.tx_udp_cksum_offload = conf.txmode.offloads != 0;
  if (start_port(port_id, &info.mac, error) != 0) return std::nullopt;
  return Port(std::move(info));
}

Port::Port(Port&& other) noexcept : info_(std::move(other.info_)), owned_(other.owned_) {
  other.owned_ = false;
}

Port& Port::operator=(Port&& other) noexcept {
  if (this != &other) {
    close();
    info_ = std::move(other.info_);
    owned_ = other.owned_;
    other.owned_ = false;
  }
  return *this;
}

Port::~Port() {
  close();
}

void Port::close() {
  if (!owned_) return;
  owned_ = false;
  // Errors are not actionable here: the port is being discarded either way.
  rte_eth_dev_stop(info_.port_id);
  rte_eth_dev_close(info_.port_id);
}

namespace {

// The three steering rules. Items and actions point into this object, so it stays where it was
// built.
class SteeringRules {
 public:
  struct Rule {
    const char* name;
    const rte_flow_attr* attr;
    const rte_flow_item* pattern;
    const rte_flow_action* actions;
  };

  SteeringRules(uint32_t our_ipv4_be, uint16_t wg_port, uint16_t nb_queues, uint64_t rss_types)
      : queues_(nb_queues) {
    std::iota(queues_.begin(), queues_.end(), uint16_t{0});
    ipv4_spec_.hdr.dst_addr = our_ipv4_be;
    ipv4_mask_.hdr.dst_addr = RTE_BE32(UINT32_MAX);
    udp_spec_.hdr.dst_port = rte_cpu_to_be_16(wg_port);
    udp_mask_.hdr.dst_port = RTE_BE16(UINT16_MAX);
    rss_.func = RTE_ETH_HASH_FUNCTION_DEFAULT;
    rss_.types = rss_types;
    rss_.queue_num = nb_queues;
    rss_.queue = queues_.data();
    arp_spec_.hdr.ether_type = RTE_BE16(RTE_ETHER_TYPE_ARP);
    arp_mask_.hdr.ether_type = RTE_BE16(UINT16_MAX);

    wireguard_pattern_ = {{
        {RTE_FLOW_ITEM_TYPE_ETH, nullptr, nullptr, nullptr},
        {RTE_FLOW_ITEM_TYPE_IPV4, &ipv4_spec_, nullptr, &ipv4_mask_},
        {RTE_FLOW_ITEM_TYPE_UDP, &udp_spec_, nullptr, &udp_mask_},
        {RTE_FLOW_ITEM_TYPE_END, nullptr, nullptr, nullptr},
    }};
    wireguard_actions_ = {{
        nb_queues > 1 ? rte_flow_action{RTE_FLOW_ACTION_TYPE_RSS, &rss_}
                      : rte_flow_action{RTE_FLOW_ACTION_TYPE_QUEUE, &queue0_},
        {RTE_FLOW_ACTION_TYPE_END, nullptr},
    }};
    arp_pattern_ = {{
        {RTE_FLOW_ITEM_TYPE_ETH, &arp_spec_, nullptr, &arp_mask_},
        {RTE_FLOW_ITEM_TYPE_END, nullptr, nullptr, nullptr},
    }};
    arp_actions_ = {{{RTE_FLOW_ACTION_TYPE_QUEUE, &queue0_}, {RTE_FLOW_ACTION_TYPE_END, nullptr}}};
    any_pattern_ = {{
        {RTE_FLOW_ITEM_TYPE_ETH, nullptr, nullptr, nullptr},
        {RTE_FLOW_ITEM_TYPE_END, nullptr, nullptr, nullptr},
    }};
    drop_actions_ = {{{RTE_FLOW_ACTION_TYPE_DROP, nullptr}, {RTE_FLOW_ACTION_TYPE_END, nullptr}}};
  }
  SteeringRules(const SteeringRules&) = delete;
  SteeringRules& operator=(const SteeringRules&) = delete;

  Rule wireguard() const {
    return {"wireguard", &steer_attr_, wireguard_pattern_.data(), wireguard_actions_.data()};
  }
  Rule arp() const { return {"arp", &steer_attr_, arp_pattern_.data(), arp_actions_.data()}; }
  Rule catch_all_drop() const {
    return {"catch-all drop", &drop_attr_, any_pattern_.data(), drop_actions_.data()};
  }

 private:
  static rte_flow_attr ingress_attr(uint32_t priority) {
    rte_flow_attr attr{};
    attr.priority = priority;
    attr.ingress = 1;
    return attr;
  }

  // Lower value = matched first; the drop must lose to both steering rules.
  rte_flow_attr steer_attr_ = ingress_attr(0);
  rte_flow_attr drop_attr_ = ingress_attr(1);
  std::vector<uint16_t> queues_;
  rte_flow_item_ipv4 ipv4_spec_{};
  rte_flow_item_ipv4 ipv4_mask_{};
  rte_flow_item_udp udp_spec_{};
  rte_flow_item_udp udp_mask_{};
  rte_flow_item_eth arp_spec_{};
  rte_flow_item_eth arp_mask_{};
  rte_flow_action_rss rss_{};
  rte_flow_action_queue queue0_{.index = 0};
  std::array<rte_flow_item, 4> wireguard_pattern_{};
  std::array<rte_flow_action, 2> wireguard_actions_{};
  std::array<rte_flow_item, 2> arp_pattern_{};
  std::array<rte_flow_action, 2> arp_actions_{};
  std::array<rte_flow_item, 2> any_pattern_{};
  std::array<rte_flow_action, 2> drop_actions_{};
};

std::string flow_error_text(const SteeringRules::Rule& rule, const char* call, int rc,
                            const rte_flow_error& err) {
  const std::string errno_text = rte_strerror(-rc);
  std::string text = std::string(rule.name) + " rule: " + call + ": ";
  if (err.message == nullptr || errno_text == err.message) return text + errno_text;
  return text + err.message + " (" + errno_text + ")";
}

int validate_rule(uint16_t port_id, const SteeringRules::Rule& rule, std::string* error) {
  rte_flow_error err{};
  const int rc = rte_flow_validate(port_id, rule.attr, rule.pattern, rule.actions, &err);
  if (rc != 0) *error = flow_error_text(rule, "rte_flow_validate", rc, err);
  return rc;
}

// Validates, then creates. Returns nullptr with the reason in *error.
rte_flow* create_rule(uint16_t port_id, const SteeringRules::Rule& rule, std::string* error) {
  if (validate_rule(port_id, rule, error) != 0) return nullptr;
  rte_flow_error err{};
  rte_flow* flow = rte_flow_create(port_id, rule.attr, rule.pattern, rule.actions, &err);
  if (flow == nullptr) *error = flow_error_text(rule, "rte_flow_create", -rte_errno, err);
  return flow;
}

void destroy_rule(uint16_t port_id, rte_flow* flow) {
  rte_flow_error err{};
  rte_flow_destroy(port_id, flow, &err);
}

uint64_t rss_types_for(uint16_t port_id) {
  rte_eth_dev_info dev_info{};
  if (rte_eth_dev_info_get(port_id, &dev_info) != 0) return 0;
  // 0 asks the PMD for its best-effort default when it lists no matching hash types.
  return kWantedRssHash & dev_info.flow_type_rss_offloads;
}

}  // namespace

SteeringResult install_wireguard_steering(uint16_t port_id, uint32_t our_ipv4_be, uint16_t wg_port,
                                          uint16_t nb_queues) {
  if (nb_queues == 0) return {SteeringMode::kSoftware, "no queues to steer to"};
  const SteeringRules rules(our_ipv4_be, wg_port, nb_queues, rss_types_for(port_id));
  SteeringResult result{SteeringMode::kHardware, ""};
  if (create_rule(port_id, rules.wireguard(), &result.reason) == nullptr) {
    result.mode = SteeringMode::kSoftware;
    return result;
  }
  rte_flow* arp = create_rule(port_id, rules.arp(), &result.reason);
  if (arp == nullptr) return result;
  if (create_rule(port_id, rules.catch_all_drop(), &result.reason) == nullptr) {
    destroy_rule(port_id, arp);
  }
  return result;
}

int validate_wireguard_steering(uint16_t port_id, uint32_t our_ipv4_be, uint16_t wg_port,
                                uint16_t nb_queues, std::string* error) {
  if (nb_queues == 0) {
    *error = "no queues to steer to";
    return -EINVAL;
  }
  const SteeringRules rules(our_ipv4_be, wg_port, nb_queues, rss_types_for(port_id));
  for (const auto& rule : {rules.wireguard(), rules.arp(), rules.catch_all_drop()}) {
    const int rc = validate_rule(port_id, rule, error);
    if (rc != 0) return rc;
  }
  return 0;
}

}  // namespace airlock::dp
