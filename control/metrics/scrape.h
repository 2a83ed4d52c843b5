// Values read at scrape time rather than counted as they happen: budget balances and the data
// plane's shared-memory counters, written next to a Registry's metrics in one exposition.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "control/metrics/registry.h"
#include "control/store/store.h"
#include "dataplane/stats.h"

namespace airlock::control::metrics {

// One budget's balance for one key (e.g. budget "team-daily", key "user:alice"), in the
// current window. A limit is absent when the budget sets none of that kind.
struct BudgetBalance {
  std::string budget;
  std::string key;
  Picodollars spent = 0;
  std::optional<Picodollars> limit;
  uint64_t spent_tokens = 0;
  std::optional<uint64_t> limit_tokens;
};

// A data plane instance; `snapshot` returns its counters, or nullopt when its region cannot be
// read (the data plane is not running), which is exported as airlock_dataplane_up 0.
struct DataPlaneSource {
  std::string instance;
  std::function<std::optional<dp::StatsSnapshot>()> snapshot;
};

// Opens the instance's region ("<instance>-stats") at each scrape, so a data plane started or
// restarted after the control plane is picked up.
DataPlaneSource data_plane_source(std::string instance);

struct ScrapeSources {
  std::function<std::vector<BudgetBalance>()> budgets;  // empty: no budget metrics
  std::vector<DataPlaneSource> data_planes;
};

// airlock_budget_spent_usd, airlock_budget_limit_usd, airlock_budget_spent_tokens,
// airlock_budget_limit_tokens (gauges, {budget,key}).
std::vector<MetricFamily> budget_families(const std::vector<BudgetBalance>& balances);

// Per instance (label "instance"):
//  airlock_dataplane_up                                                    gauge
//  airlock_dataplane_peer_{rx,tx}_{bytes,packets}_total{peer,user,device}  counters since the
//      peer's slot was activated (peer = public key, standard base64)
//  airlock_dataplane_peer_last_handshake_seconds{peer,user,device}         gauge, Unix time
//  airlock_dataplane_drops_total{reason}                                   every reason
//  airlock_dataplane_worker_{rx,tx}_{bytes,packets}_total{worker}
//  airlock_dataplane_{punted,returned,forwarded}_packets_total
//  airlock_dataplane_rule_hits_total{rule}                                 since the policy
//  airlock_dataplane_port_{rx,tx}_{bytes,packets}_total{port}, _port_{rx_missed,rx_errors,
//      tx_errors,rx_nombuf}_total{port}
std::vector<MetricFamily> data_plane_families(const std::vector<DataPlaneSource>& sources);

// The whole exposition: the registry's metrics and the scrape-time ones, sorted by name.
std::string render(const Registry& registry, const ScrapeSources& sources);

}  // namespace airlock::control::metrics
