#include "control/metrics/gateway_metrics.h"

#include <string>
#include <utility>

namespace airlock::control::metrics {

namespace {

std::vector<double> latency_bounds() {
  return {kLatencyBounds.begin(), kLatencyBounds.end()};
}

}  // namespace

GatewayMetrics::GatewayMetrics(Registry& registry)
    : requests_(registry.counter("airlock_requests_total", "Requests finished by the gateway.",
                                 {"user", "device", "provider", "model", "api", "status"})),
      tokens_(registry.counter("airlock_tokens_total",
                               "Tokens metered from provider responses, by kind. Output "
                               "includes reasoning; input excludes cache reads and writes.",
                               {"user", "provider", "model", "kind"})),
      cost_(registry.counter("airlock_cost_usd_total",
                             "Cost of requests with a known price, in US dollars.",
                             {"user", "provider", "model"})),
      duration_(registry.histogram("airlock_request_duration_seconds",
                                   "Time from a request's arrival to the end of its response.",
                                   {"provider", "model"}, latency_bounds())),
      ttfb_(registry.histogram("airlock_time_to_first_byte_seconds",
                               "Time from a request's arrival to the first response byte sent "
                               "to the client.",
                               {"provider", "model"}, latency_bounds())),
      tool_calls_(registry.counter("airlock_tool_calls_total",
                                   "Tool calls made by models in responses.", {"user", "name"})),
      disconnects_(registry.counter("airlock_client_disconnects_total",
                                    "Requests whose client went away before the response ended.",
                                    {})) {}

void GatewayMetrics::observe(const RequestRecord& r) {
  const std::string status = std::to_string(r.status);
  requests_.add({r.user, r.device, r.provider, r.model, r.api, status});

  const std::pair<std::string_view, uint64_t> tokens[] = {
      {"input", r.input_tokens},           {"output", r.output_tokens},
      {"cache_read", r.cache_read_tokens}, {"cache_write", r.cache_write_tokens},
      {"reasoning", r.reasoning_tokens},
  };
  for (const auto& [kind, n] : tokens) {
    // Zero counts would only add label sets (an embeddings model never has output tokens).
    if (n > 0) tokens_.add({r.user, r.provider, r.model, kind}, static_cast<double>(n));
  }
  if (r.cost) {
    cost_.add({r.user, r.provider, r.model},
              static_cast<double>(*r.cost) / static_cast<double>(kPicodollarsPerDollar));
  }
  duration_.observe({r.provider, r.model}, static_cast<double>(r.duration_us) / 1e6);
  if (r.ttfb_us >= 0) ttfb_.observe({r.provider, r.model}, static_cast<double>(r.ttfb_us) / 1e6);
  for (const ToolCall& call : r.tool_calls) tool_calls_.add({r.user, call.name});
  if (r.client_disconnected) disconnects_.add({});
}

}  // namespace airlock::control::metrics
