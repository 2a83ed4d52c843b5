#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "control/metrics/gateway_metrics.h"
#include "control/metrics/registry.h"
#include "control/metrics/scrape.h"
#include "dataplane/stats.h"
#include "policy/policy.h"

namespace airlock::control::metrics {
namespace {

bool contains_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

// The text format is the contract with Prometheus, so it is checked byte for byte.
TEST(Registry, RendersExpositionFormatExactly) {
  Registry r;
  Counter& requests = r.counter("app_requests_total", "Requests served.", {"method", "code"});
  Counter& restarts = r.counter("app_restarts_total", "Restarts.", {});
  Histogram& latency = r.histogram("app_latency_seconds", "Latency.", {"method"}, {0.1, 1});
  requests.add({"POST", "500"});
  requests.add({"GET", "200"}, 2);
  requests.add({"GET", "200"});
  restarts.add({});
  latency.observe({"GET"}, 0.05);
  latency.observe({"GET"}, 0.5);
  latency.observe({"GET"}, 7);

  EXPECT_EQ(r.render(),
            "# HELP app_latency_seconds Latency.\n"
            "# TYPE app_latency_seconds histogram\n"
            "app_latency_seconds_bucket{method=\"GET\",le=\"0.1\"} 1\n"
            "app_latency_seconds_bucket{method=\"GET\",le=\"1\"} 2\n"
            "app_latency_seconds_bucket{method=\"GET\",le=\"+Inf\"} 3\n"
            "app_latency_seconds_sum{method=\"GET\"} 7.55\n"
            "app_latency_seconds_count{method=\"GET\"} 3\n"
            "# HELP app_requests_total Requests served.\n"
            "# TYPE app_requests_total counter\n"
            "app_requests_total{method=\"GET\",code=\"200\"} 3\n"
            "app_requests_total{method=\"POST\",code=\"500\"} 1\n"
            "# HELP app_restarts_total Restarts.\n"
            "# TYPE app_restarts_total counter\n"
            "app_restarts_total 1\n");
}

TEST(Registry, UnlabelledCounterShowsZeroBeforeFirstUse) {
  Registry r;
  r.counter("app_events_total", "Events.", {});
  EXPECT_TRUE(contains_line(r.render(), "app_events_total 0")) << r.render();
}

TEST(Registry, EscapesLabelValuesAndHelp) {
  Registry r;
  Counter& c = r.counter("app_total", "Line one\nback\\slash \"quoted\".", {"path"});
  c.add({"a\\b\"c\nd"});
  EXPECT_EQ(r.render(),
            "# HELP app_total Line one\\nback\\\\slash \"quoted\".\n"
            "# TYPE app_total counter\n"
            "app_total{path=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(Registry, HistogramBoundsAreInclusiveAndCumulative) {
  Registry r;
  Histogram& h = r.histogram("h_seconds", "H.", {}, {1, 2, 5});
  for (double v : {0.0, 1.0, 1.5, 2.0, 4.75, 5.0, 5.25, 100.0}) h.observe({}, v);
  const std::string text = r.render();
  EXPECT_TRUE(contains_line(text, "h_seconds_bucket{le=\"1\"} 2")) << text;
  EXPECT_TRUE(contains_line(text, "h_seconds_bucket{le=\"2\"} 4")) << text;
  EXPECT_TRUE(contains_line(text, "h_seconds_bucket{le=\"5\"} 6")) << text;
  EXPECT_TRUE(contains_line(text, "h_seconds_bucket{le=\"+Inf\"} 8")) << text;
  EXPECT_TRUE(contains_line(text, "h_seconds_count 8")) << text;
  EXPECT_TRUE(contains_line(text, "h_seconds_sum 119.5")) << text;
}

TEST(Registry, RejectsInvalidDeclarationsAndLabelCounts) {
  Registry r;
  EXPECT_THROW(r.counter("1bad", "x", {}), std::invalid_argument);
  EXPECT_THROW(r.counter("ok_total", "x", {"bad-label"}), std::invalid_argument);
  EXPECT_THROW(r.counter("ok_total", "x", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(r.histogram("h", "x", {"le"}, {1}), std::invalid_argument);
  EXPECT_THROW(r.histogram("h", "x", {}, {2, 1}), std::invalid_argument);
  Counter& c = r.counter("ok_total", "x", {"a"});
  EXPECT_THROW(r.counter("ok_total", "x", {}), std::invalid_argument);
  EXPECT_THROW(c.add({"1", "2"}), std::invalid_argument);
}

TEST(Registry, CounterIgnoresNegativeAmounts) {
  Registry r;
  Counter& c = r.counter("c_total", "C.", {});
  c.add({}, 3);
  c.add({}, -1);
  EXPECT_EQ(c.value({}), 3);
}

TEST(Registry, ConcurrentIncrementsAreAllCounted) {
  Registry r;
  Counter& c = r.counter("c_total", "C.", {"shard"});
  Histogram& h = r.histogram("h_seconds", "H.", {"shard"}, {0.5});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads share one series, so creation and updates race on it.
      const std::string shard = std::to_string(t % 2 == 0 ? 0 : t);
      for (int i = 0; i < kPerThread; ++i) {
        c.add({shard});
        h.observe({shard}, 1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(c.value({"0"}), kThreads / 2 * kPerThread);
  EXPECT_EQ(c.value({"1"}), kPerThread);
  const std::string text = r.render();
  EXPECT_TRUE(contains_line(
      text, "h_seconds_count{shard=\"0\"} " + std::to_string(kThreads / 2 * kPerThread)))
      << text;
}

TEST(Registry, CapsLabelSetsAndCountsDroppedUpdates) {
  Registry r(3);
  Counter& c = r.counter("c_total", "C.", {"user"});
  Histogram& h = r.histogram("h_seconds", "H.", {"user"}, {1});
  for (const char* user : {"a", "b", "c", "d", "e", "a"}) c.add({user});
  for (const char* user : {"a", "b", "c", "d"}) h.observe({user}, 0.5);
  EXPECT_EQ(c.value({"a"}), 2);
  EXPECT_EQ(c.value({"d"}), 0);
  const std::string text = r.render();
  EXPECT_TRUE(contains_line(text, "c_total{user=\"c\"} 1")) << text;
  EXPECT_FALSE(contains_line(text, "c_total{user=\"d\"} 1")) << text;
  EXPECT_TRUE(contains_line(text, "airlock_metrics_dropped_series_total{metric=\"c_total\"} 2"))
      << text;
  EXPECT_TRUE(contains_line(text, "airlock_metrics_dropped_series_total{metric=\"h_seconds\"} 1"))
      << text;
}

TEST(FormatValue, WholeNumbersInFullOtherwiseShortestRoundTrip) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(42), "42");
  EXPECT_EQ(format_value(2'000'000), "2000000");
  EXPECT_EQ(format_value(-3), "-3");
  EXPECT_EQ(format_value(0.0025), "0.0025");
  EXPECT_EQ(format_value(1.5e300), "1.5e+300");
  EXPECT_EQ(format_value(1e-12), "1e-12");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
}

RequestRecord record() {
  RequestRecord r;
  r.user = "alice";
  r.device = "laptop";
  r.provider = "anthropic";
  r.model = "claude-sonnet-4";
  r.api = "anthropic.messages";
  r.status = 200;
  r.input_tokens = 1000;
  r.output_tokens = 300;
  r.cache_read_tokens = 5000;
  r.reasoning_tokens = 120;
  r.cost = 12'345'000'000;  // $0.012345
  r.ttfb_us = 400'000;
  r.duration_us = 3'000'000;
  r.tool_calls = {{"call_1", "bash", "{}"}, {"call_2", "bash", "{}"}, {"call_3", "edit", "{}"}};
  return r;
}

TEST(GatewayMetrics, ObserveCountsRequestsTokensCostAndLatency) {
  Registry registry;
  GatewayMetrics metrics(registry);
  metrics.observe(record());
  RequestRecord second = record();
  second.status = 429;
  second.cost.reset();
  second.ttfb_us = -1;
  second.duration_us = 1500;
  second.tool_calls.clear();
  second.client_disconnected = true;
  metrics.observe(second);

  const std::string text = registry.render();
  const std::string who = "user=\"alice\",provider=\"anthropic\",model=\"claude-sonnet-4\"";
  EXPECT_TRUE(contains_line(
      text,
      "airlock_requests_total{user=\"alice\",device=\"laptop\",provider=\"anthropic\",model="
      "\"claude-sonnet-4\",api=\"anthropic.messages\",status=\"200\"} 1"))
      << text;
  EXPECT_TRUE(contains_line(
      text,
      "airlock_requests_total{user=\"alice\",device=\"laptop\",provider=\"anthropic\",model="
      "\"claude-sonnet-4\",api=\"anthropic.messages\",status=\"429\"} 1"))
      << text;
  EXPECT_TRUE(contains_line(text, "airlock_tokens_total{" + who + ",kind=\"input\"} 2000"));
  EXPECT_TRUE(contains_line(text, "airlock_tokens_total{" + who + ",kind=\"output\"} 600"));
  EXPECT_TRUE(contains_line(text, "airlock_tokens_total{" + who + ",kind=\"cache_read\"} 10000"));
  EXPECT_TRUE(contains_line(text, "airlock_tokens_total{" + who + ",kind=\"reasoning\"} 240"));
  EXPECT_EQ(text.find("kind=\"cache_write\""), std::string::npos) << text;
  // Only the first record had a price.
  EXPECT_TRUE(contains_line(text, "airlock_cost_usd_total{" + who + "} 0.012345")) << text;

  const std::string route = "provider=\"anthropic\",model=\"claude-sonnet-4\"";
  EXPECT_TRUE(
      contains_line(text, "airlock_request_duration_seconds_bucket{" + route + ",le=\"0.001\"} 0"));
  EXPECT_TRUE(contains_line(
      text, "airlock_request_duration_seconds_bucket{" + route + ",le=\"0.0025\"} 1"));
  EXPECT_TRUE(
      contains_line(text, "airlock_request_duration_seconds_bucket{" + route + ",le=\"2.5\"} 1"));
  EXPECT_TRUE(
      contains_line(text, "airlock_request_duration_seconds_bucket{" + route + ",le=\"5\"} 2"));
  EXPECT_TRUE(
      contains_line(text, "airlock_request_duration_seconds_bucket{" + route + ",le=\"120\"} 2"));
  EXPECT_TRUE(contains_line(text, "airlock_request_duration_seconds_sum{" + route + "} 3.0015"));
  EXPECT_TRUE(contains_line(text, "airlock_time_to_first_byte_seconds_count{" + route + "} 1"));
  EXPECT_TRUE(
      contains_line(text, "airlock_time_to_first_byte_seconds_bucket{" + route + ",le=\"0.5\"} 1"));
  EXPECT_TRUE(contains_line(
      text, "airlock_time_to_first_byte_seconds_bucket{" + route + ",le=\"0.25\"} 0"));

  EXPECT_TRUE(contains_line(text, "airlock_tool_calls_total{user=\"alice\",name=\"bash\"} 2"));
  EXPECT_TRUE(contains_line(text, "airlock_tool_calls_total{user=\"alice\",name=\"edit\"} 1"));
  EXPECT_TRUE(contains_line(text, "airlock_client_disconnects_total 1")) << text;
}

TEST(GatewayMetrics, RefusedRequestHasEmptyRouteLabels) {
  Registry registry;
  GatewayMetrics metrics(registry);
  RequestRecord r;
  r.user = "bob";
  r.device = "ci";
  r.api = "openai.chat";
  r.status = 403;
  metrics.observe(r);
  EXPECT_TRUE(contains_line(registry.render(),
                            "airlock_requests_total{user=\"bob\",device=\"ci\",provider=\"\","
                            "model=\"\",api=\"openai.chat\",status=\"403\"} 1"))
      << registry.render();
}

TEST(GatewayMetrics, CapAppliesToEachMetric) {
  Registry registry(2);
  GatewayMetrics metrics(registry);
  for (const char* user : {"u1", "u2", "u3"}) {
    RequestRecord r = record();
    r.user = user;
    r.tool_calls.clear();
    metrics.observe(r);
  }
  const std::string text = registry.render();
  EXPECT_TRUE(contains_line(
      text, "airlock_metrics_dropped_series_total{metric=\"airlock_requests_total\"} 1"))
      << text;
  EXPECT_EQ(text.find("user=\"u3\""), std::string::npos) << text;
}

TEST(Scrape, BudgetGauges) {
  Registry registry;
  ScrapeSources sources;
  sources.budgets = [] {
    return std::vector<BudgetBalance>{{"team-daily", "user:alice", 2'500'000'000'000,
                                       25 * kPicodollarsPerDollar, 1200, std::nullopt},
                                      {"ci", "tag:ci", 0, std::nullopt, 10, 2'000'000}};
  };
  const std::string text = render(registry, sources);
  EXPECT_TRUE(contains_line(text, "# TYPE airlock_budget_spent_usd gauge")) << text;
  EXPECT_TRUE(contains_line(
      text, "airlock_budget_spent_usd{budget=\"team-daily\",key=\"user:alice\"} 2.5"));
  EXPECT_TRUE(
      contains_line(text, "airlock_budget_limit_usd{budget=\"team-daily\",key=\"user:alice\"} 25"));
  EXPECT_TRUE(contains_line(
      text, "airlock_budget_spent_tokens{budget=\"team-daily\",key=\"user:alice\"} 1200"));
  EXPECT_TRUE(
      contains_line(text, "airlock_budget_limit_tokens{budget=\"ci\",key=\"tag:ci\"} 2000000"));
  // No limit of a kind: no gauge rather than a made-up value.
  EXPECT_EQ(text.find("airlock_budget_limit_usd{budget=\"ci\""), std::string::npos) << text;
  EXPECT_EQ(text.find("airlock_budget_limit_tokens{budget=\"team-daily\""), std::string::npos);
}

dp::PeerRecord peer_record(uint8_t seed, std::string_view user, std::string_view device) {
  dp::PeerRecord r;
  for (size_t i = 0; i < r.public_key.size(); ++i) {
    r.public_key[i] = static_cast<uint8_t>(seed + i * 13);
  }
  dp::set_fixed_string(r.user, user);
  dp::set_fixed_string(r.device, device);
  r.last_handshake_unix_ns = 1'700'000'000'500'000'000ULL;
  r.endpoint.family = AF_INET;
  r.endpoint.port = 51820;
  inet_pton(AF_INET, "192.0.2.7", r.endpoint.addr.data());
  return r;
}

// The data plane's side is written the way the data plane writes it (StatsRegion), and read
// back through the region's name, as the control plane does at scrape time.
TEST(Scrape, DataPlaneCountersFromSharedMemory) {
  const std::string instance = "airlock-test-metrics-" + std::to_string(getpid());
  std::string error;
  std::optional<dp::StatsRegion> region =
      dp::StatsRegion::create(instance + "-stats", 2, 8, 4, &error);
  ASSERT_TRUE(region) << error;
  const std::array<std::string_view, 1> rules = {"allow-openai"};
  region->set_rule_names(3, rules);
  const dp::PeerRecord alice = peer_record(1, "alice", "laptop");
  region->publish_peer(2, alice);
  region->publish_port(0, {.ipackets = 100, .opackets = 90, .ibytes = 10000, .obytes = 9000});
  dp::WorkerStats& w0 = region->worker(0);
  dp::WorkerStats& w1 = region->worker(1);
  w0.count_rx(10, 1000);
  w1.count_rx(5, 500);
  w0.count_tx(4, 400);
  w0.count_drop(dp::DropReason::kBadMac, 3);
  w1.count_drop(dp::DropReason::kBadMac, 2);
  w1.count_drop(dp::DropReason::kReplay);
  w0.count_peer_rx(2, 100);
  w1.count_peer_rx(2, 50);
  w0.count_peer_tx(2, 60);
  w1.count_rule_hit(0, 7);
  w0.count_punted(2);
  w0.count_handshake(dp::HandshakeEvent::kInitiationRx, 2);
  w1.count_handshake(dp::HandshakeEvent::kInitiationRx);
  w1.count_handshake(dp::HandshakeEvent::kCompleted);

  Registry registry;
  GatewayMetrics gateway(registry);
  ScrapeSources sources;
  sources.data_planes.push_back(data_plane_source(instance));
  sources.data_planes.push_back(data_plane_source(instance + "-absent"));
  const std::string text = render(registry, sources);

  const std::string in = "instance=\"" + instance + "\"";
  const std::string peer = in + ",peer=\"" + policy::encode_key_base64(alice.public_key) +
                           "\",user=\"alice\",device=\"laptop\"";
  EXPECT_TRUE(contains_line(text, "airlock_dataplane_up{" + in + "} 1")) << text;
  EXPECT_TRUE(contains_line(text, "airlock_dataplane_up{instance=\"" + instance + "-absent\"} 0"));
  EXPECT_TRUE(contains_line(text, "# TYPE airlock_dataplane_peer_rx_bytes_total counter"));
  EXPECT_TRUE(contains_line(text, "airlock_dataplane_peer_rx_bytes_total{" + peer + "} 150"))
      << text;
  EXPECT_TRUE(contains_line(text, "airlock_dataplane_peer_rx_packets_total{" + peer + "} 2"));
  EXPECT_TRUE(contains_line(text, "airlock_dataplane_peer_tx_bytes_total{" + peer + "} 60"));
  EXPECT_TRUE(contains_line(text, "airlock_dataplane_peer_tx_packets_total{" + peer + "} 1"));
  EXPECT_TRUE(contains_line(
      text, "airlock_dataplane_peer_last_handshake_seconds{" + peer + "} 1700000000.5"));
  EXPECT_TRUE(
      contains_line(text, "airlock_dataplane_drops_total{" + in + ",reason=\"bad_mac\"} 5"));
  EXPECT_TRUE(contains_line(text, "airlock_dataplane_drops_total{" + in + ",reason=\"replay\"} 1"));
  EXPECT_TRUE(
      contains_line(text, "airlock_dataplane_drops_total{" + in + ",reason=\"tx_full\"} 0"));
  EXPECT_TRUE(
      contains_line(text, "airlock_dataplane_worker_rx_packets_total{" + in + ",worker=\"0\"} 10"));
  EXPECT_TRUE(
      contains_line(text, "airlock_dataplane_worker_rx_bytes_total{" + in + ",worker=\"1\"} 500"));
  EXPECT_TRUE(contains_line(text, "airlock_dataplane_punted_packets_total{" + in + "} 2"));
  EXPECT_TRUE(contains_line(text, "# TYPE airlock_dataplane_handshakes_total counter"));
  EXPECT_TRUE(contains_line(
      text, "airlock_dataplane_handshakes_total{" + in + ",kind=\"initiation_rx\"} 3"))
      << text;
  EXPECT_TRUE(
      contains_line(text, "airlock_dataplane_handshakes_total{" + in + ",kind=\"completed\"} 1"));
  for (const char* kind :
       {"initiation_tx", "response_rx", "response_tx", "cookie_rx", "cookie_tx"}) {
    EXPECT_TRUE(contains_line(
        text, "airlock_dataplane_handshakes_total{" + in + ",kind=\"" + kind + "\"} 0"))
        << kind;
  }
  EXPECT_TRUE(
      contains_line(text, "airlock_dataplane_rule_hits_total{" + in + ",rule=\"allow-openai\"} 7"));
  EXPECT_TRUE(
      contains_line(text, "airlock_dataplane_port_rx_bytes_total{" + in + ",port=\"0\"} 10000"));
  // Families from the registry and from the scrape come out in one sorted sequence.
  EXPECT_LT(text.find("# TYPE airlock_client_disconnects_total"),
            text.find("# TYPE airlock_dataplane_drops_total"));
  EXPECT_LT(text.find("# TYPE airlock_dataplane_up"),
            text.find("# TYPE airlock_dataplane_worker_rx_bytes_total"));
}

}  // namespace
}  // namespace airlock::control::metrics
