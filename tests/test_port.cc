#include "dataplane/port.h"

#include <gtest/gtest.h>
#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_flow.h>
#include <rte_mbuf.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <string>

#include "tests/eal_env.h"

namespace airlock::dp {
namespace {

constexpr uint32_t kOurIpBe = RTE_BE32(0x0a000001);  // 10.0.0.1
constexpr uint16_t kWgPort = 51820;

// A virtual device added at run time and removed again, so tests can reuse names.
class Vdev {
 public:
  Vdev(std::string name, const char* args) : name_(std::move(name)) {
    const int rc = rte_eal_hotplug_add("vdev", name_.c_str(), args);
    if (rc != 0) {
      error_ = "rte_eal_hotplug_add(" + name_ + "): " + rte_strerror(-rc);
      return;
    }
    if (rte_eth_dev_get_port_by_name(name_.c_str(), &port_id_) != 0) {
      error_ = name_ + " probed but has no ethdev port";
      return;
    }
    added_ = true;
  }
  ~Vdev() {
    if (added_) rte_eal_hotplug_remove("vdev", name_.c_str());
  }
  Vdev(const Vdev&) = delete;
  Vdev& operator=(const Vdev&) = delete;

  bool ok() const { return added_; }
  const std::string& error() const { return error_; }
  uint16_t port_id() const { return port_id_; }

 private:
  std::string name_;
  std::string error_;
  uint16_t port_id_ = 0;
  bool added_ = false;
};

class PortTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    test::ensure_eal();
    // net_tap fills every Rx descriptor at queue setup, so the pool covers 2 x 1024 of them.
    pool_ = rte_pktmbuf_pool_create("port_test", 4095, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                    SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr);
  }
  static void TearDownTestSuite() { rte_mempool_free(pool_); }

  static PortConfig config(uint16_t port_id, uint16_t nb_queues) {
    PortConfig c;
    c.port_id = port_id;
    c.nb_queues = nb_queues;
    c.pool = pool_;
    return c;
  }

  static rte_mempool* pool_;
};

rte_mempool* PortTest::pool_ = nullptr;

class PortQueuesTest : public PortTest, public ::testing::WithParamInterface<uint16_t> {};

TEST_P(PortQueuesTest, NullPortOpensStartedWithReportedProperties) {
  const uint16_t nb_queues = GetParam();
  Vdev vdev("net_null_q" + std::to_string(nb_queues), "");
  ASSERT_TRUE(vdev.ok()) << vdev.error();
  std::string error;
  std::optional<Port> port = Port::open(config(vdev.port_id(), nb_queues), &error);
  ASSERT_TRUE(port.has_value()) << error;

  const PortInfo& info = port->info();
  EXPECT_EQ(info.port_id, vdev.port_id());
  EXPECT_EQ(info.driver, "net_null");
  EXPECT_EQ(info.nb_queues, nb_queues);
  rte_ether_addr mac{};
  ASSERT_EQ(rte_eth_macaddr_get(vdev.port_id(), &mac), 0);
  EXPECT_TRUE(rte_is_same_ether_addr(&info.mac, &mac));
  if (nb_queues == 1) {
    EXPECT_FALSE(info.rss);
  }
  if (info.rss) {
    rte_eth_rss_conf rss{};
    ASSERT_EQ(rte_eth_dev_rss_hash_conf_get(vdev.port_id(), &rss), 0);
    EXPECT_NE(rss.rss_hf & RTE_ETH_RSS_NONFRAG_IPV4_UDP, 0u);
  }
  // net_null's Rx hands out packets only once its queues exist.
  for (uint16_t q = 0; q < nb_queues; ++q) {
    std::array<rte_mbuf*, 4> burst{};
    const uint16_t n = rte_eth_rx_burst(vdev.port_id(), q, burst.data(), burst.size());
    EXPECT_EQ(n, burst.size()) << "queue " << q;
    rte_pktmbuf_free_bulk(burst.data(), n);
  }
}

TEST_P(PortQueuesTest, RingPortLoopsBurstsBackPerQueue) {
  const uint16_t nb_queues = GetParam();
  Vdev vdev("net_ring_q" + std::to_string(nb_queues), "");
  ASSERT_TRUE(vdev.ok()) << vdev.error();
  std::string error;
  std::optional<Port> port = Port::open(config(vdev.port_id(), nb_queues), &error);
  ASSERT_TRUE(port.has_value()) << error;
  EXPECT_EQ(port->info().driver, "net_ring");

  constexpr uint16_t kBurst = 16;
  for (uint16_t q = 0; q < nb_queues; ++q) {
    std::array<rte_mbuf*, kBurst> tx{};
    ASSERT_EQ(rte_pktmbuf_alloc_bulk(pool_, tx.data(), kBurst), 0);
    for (uint16_t i = 0; i < kBurst; ++i) {
      auto* data = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(tx[i], 64));
      ASSERT_NE(data, nullptr);
      std::memset(data, q * kBurst + i, 64);
    }
    ASSERT_EQ(rte_eth_tx_burst(vdev.port_id(), q, tx.data(), kBurst), kBurst);

    std::array<rte_mbuf*, kBurst * 2> rx{};
    const uint16_t n = rte_eth_rx_burst(vdev.port_id(), q, rx.data(), rx.size());
    ASSERT_EQ(n, kBurst) << "queue " << q;
    for (uint16_t i = 0; i < n; ++i) {
      ASSERT_EQ(rte_pktmbuf_pkt_len(rx[i]), 64u);
      const auto* data = rte_pktmbuf_mtod(rx[i], const uint8_t*);
      EXPECT_EQ(data[0], q * kBurst + i);
      EXPECT_EQ(data[63], q * kBurst + i);
    }
    rte_pktmbuf_free_bulk(rx.data(), n);
  }
}

INSTANTIATE_TEST_SUITE_P(OneAndTwoQueues, PortQueuesTest, ::testing::Values(1, 2));

TEST_F(PortTest, ClosingReleasesThePortAndMoveTransfersOwnership) {
  Vdev vdev("net_null_close", "");
  ASSERT_TRUE(vdev.ok()) << vdev.error();
  std::string error;
  std::optional<Port> opened = Port::open(config(vdev.port_id(), 1), &error);
  ASSERT_TRUE(opened.has_value()) << error;
  {
    Port moved = std::move(*opened);
    opened.reset();  // the moved-from port must not close the device
    EXPECT_TRUE(rte_eth_dev_is_valid_port(vdev.port_id()));
  }
  EXPECT_FALSE(rte_eth_dev_is_valid_port(vdev.port_id()));
}

TEST_F(PortTest, InvalidPortIsReportedByNumber) {
  std::string error;
  EXPECT_FALSE(Port::open(config(RTE_MAX_ETHPORTS - 1, 1), &error).has_value());
  EXPECT_NE(error.find("port " + std::to_string(RTE_MAX_ETHPORTS - 1)), std::string::npos) << error;
}

TEST_F(PortTest, TooManyQueuesIsReportedWithTheLimit) {
  Vdev vdev("net_null_many", "");
  ASSERT_TRUE(vdev.ok()) << vdev.error();
  std::string error;
  EXPECT_FALSE(Port::open(config(vdev.port_id(), RTE_MAX_QUEUES_PER_PORT + 1), &error).has_value());
  EXPECT_NE(error.find("port " + std::to_string(vdev.port_id())), std::string::npos) << error;
  EXPECT_NE(error.find(std::to_string(RTE_MAX_QUEUES_PER_PORT + 1) + " requested"),
            std::string::npos)
      << error;
}

TEST_F(PortTest, PortWithoutFlowSupportFallsBackToSoftware) {
  Vdev vdev("net_null_flow", "");
  ASSERT_TRUE(vdev.ok()) << vdev.error();
  std::string error;
  std::optional<Port> port = Port::open(config(vdev.port_id(), 2), &error);
  ASSERT_TRUE(port.has_value()) << error;

  const SteeringResult result = install_wireguard_steering(vdev.port_id(), kOurIpBe, kWgPort, 2);
  EXPECT_EQ(result.mode, SteeringMode::kSoftware);
  EXPECT_NE(result.reason.find("wireguard rule"), std::string::npos) << result.reason;
  std::printf("net_null steering: software (%s)\n", result.reason.c_str());

  std::string validate_error;
  const int rc = validate_wireguard_steering(vdev.port_id(), kOurIpBe, kWgPort, 2, &validate_error);
  EXPECT_TRUE(rc == -ENOSYS || rc == -ENOTSUP) << rc << " " << validate_error;
  EXPECT_FALSE(validate_error.empty());
}

// An independent probe: can this port create any ingress ETH / IPV4 / UDP rule at all?
bool port_can_create_udp_rule(uint16_t port_id, std::string* why) {
  rte_flow_attr attr{};
  attr.ingress = 1;
  const std::array<rte_flow_item, 4> pattern = {{
      {RTE_FLOW_ITEM_TYPE_ETH, nullptr, nullptr, nullptr},
      {RTE_FLOW_ITEM_TYPE_IPV4, nullptr, nullptr, nullptr},
      {RTE_FLOW_ITEM_TYPE_UDP, nullptr, nullptr, nullptr},
      {RTE_FLOW_ITEM_TYPE_END, nullptr, nullptr, nullptr},
  }};
  const rte_flow_action_queue queue{0};
  const std::array<rte_flow_action, 2> actions = {{
      {RTE_FLOW_ACTION_TYPE_QUEUE, &queue},
      {RTE_FLOW_ACTION_TYPE_END, nullptr},
  }};
  rte_flow_error err{};
  rte_flow* flow = rte_flow_create(port_id, &attr, pattern.data(), actions.data(), &err);
  if (flow == nullptr) {
    *why = err.message != nullptr ? err.message : "no message";
    return false;
  }
  rte_flow_destroy(port_id, flow, &err);
  return true;
}

class TapSteeringTest : public PortTest, public ::testing::WithParamInterface<uint16_t> {};

// On a kernel without cls_flower/sch_multiq, net_tap validates the single-queue rules but cannot
// create them, and cannot even validate RSS (it needs a TC rule for its eBPF program).
TEST_P(TapSteeringTest, InstallReportsWhatValidateAndCreateDid) {
  const uint16_t nb_queues = GetParam();
  const std::string suffix = std::to_string(nb_queues);
  Vdev vdev("net_tap" + suffix, ("iface=altap" + suffix).c_str());
  if (!vdev.ok()) {
    GTEST_SKIP() << "net_tap unavailable (needs root and /dev/net/tun): " << vdev.error();
  }
  std::string error;
  std::optional<Port> port = Port::open(config(vdev.port_id(), nb_queues), &error);
  ASSERT_TRUE(port.has_value()) << error;
  EXPECT_EQ(port->info().driver, "net_tap");
  EXPECT_EQ(rte_eth_promiscuous_get(vdev.port_id()), 0);
  EXPECT_EQ(rte_eth_allmulticast_get(vdev.port_id()), 0);

  std::string validate_error;
  const int validated =
      validate_wireguard_steering(vdev.port_id(), kOurIpBe, kWgPort, nb_queues, &validate_error);
  if (nb_queues == 1) {
    EXPECT_EQ(validated, 0) << validate_error;
  }

  const SteeringResult result =
      install_wireguard_steering(vdev.port_id(), kOurIpBe, kWgPort, nb_queues);
  std::printf("net_tap, %u queue(s): %s%s%s\n", nb_queues,
              result.mode == SteeringMode::kHardware ? "hardware" : "software",
              result.reason.empty() ? "" : ": ", result.reason.c_str());
  rte_flow_error flush_err{};
  rte_flow_flush(vdev.port_id(), &flush_err);

  if (validated != 0) {
    EXPECT_EQ(result.mode, SteeringMode::kSoftware);
    EXPECT_NE(result.reason.find("rte_flow_validate"), std::string::npos) << result.reason;
    return;
  }
  std::string probe_error;
  const bool create_works = port_can_create_udp_rule(vdev.port_id(), &probe_error);
  if (result.mode == SteeringMode::kSoftware) {
    EXPECT_FALSE(create_works) << "install fell back although rte_flow_create works";
    // Every rule validated, so only creation can have failed.
    EXPECT_NE(result.reason.find("wireguard rule: rte_flow_create"), std::string::npos)
        << result.reason;
    std::printf("independent rte_flow_create probe: %s\n", probe_error.c_str());
  } else {
    EXPECT_TRUE(create_works) << probe_error;
  }
}

INSTANTIATE_TEST_SUITE_P(OneAndTwoQueues, TapSteeringTest, ::testing::Values(1, 2));

}  // namespace
}  // namespace airlock::dp
