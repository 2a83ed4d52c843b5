// The gateway's request metrics, updated from each finished request's record.
#pragma once

#include <array>

#include "control/metrics/registry.h"
#include "control/store/store.h"

namespace airlock::control::metrics {

// Bucket bounds in seconds for request durations and time to first byte: 1 ms to 120 s, dense
// where interactive calls land and reaching long agent and reasoning streams.
inline constexpr std::array<double, 18> kLatencyBounds = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 120};

class GatewayMetrics {
 public:
  // Declares the airlock_* gateway metrics in `registry`, which must outlive this object.
  explicit GatewayMetrics(Registry& registry);

  // Thread-safe; called once per finished request from any I/O thread.
  //  airlock_requests_total{user,device,provider,model,api,status}
  //  airlock_tokens_total{user,provider,model,kind}   kind: input|output|cache_read|
  //                                                   cache_write|reasoning (non-zero only)
  //  airlock_cost_usd_total{user,provider,model}      requests with a known price only
  //  airlock_request_duration_seconds{provider,model}
  //  airlock_time_to_first_byte_seconds{provider,model}  requests that sent a first byte
  //  airlock_tool_calls_total{user,name}
  //  airlock_client_disconnects_total
  void observe(const RequestRecord& record);

 private:
  Counter& requests_;
  Counter& tokens_;
  Counter& cost_;
  Histogram& duration_;
  Histogram& ttfb_;
  Counter& tool_calls_;
  Counter& disconnects_;
};

}  // namespace airlock::control::metrics
