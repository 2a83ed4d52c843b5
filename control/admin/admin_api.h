// The admin API: JSON over HTTP on a loopback-only listener, for airlockctl and operators.
//   GET  /v1/admin/requests?user&model&since&until&before&limit  request log, newest first
//   GET  /v1/admin/requests/{id}                                 one record, bodies included
//   GET  /v1/admin/usage?group_by=user|model|day&user&since&until totals and costs
//   GET  /v1/admin/sessions?user&since&until&limit               agent sessions, latest first
//   GET  /v1/admin/tools?user&session&name&since&before&limit    tool calls with their results,
//                            grouped by session, in time order; before = "REQUEST_ID:SEQ"
//   GET  /v1/admin/peers     peers of the active policy joined with the data plane's counters
//   GET  /v1/admin/stats?format=json|table  the data plane's counters (dp::to_json), or
//                            {"table": dp::to_table} for people
//   GET  /v1/admin/policy    {"version", "file", "text"}, preshared keys redacted
//   POST /v1/admin/policy?file=NAME   body: policy text → {"version"} | 400 | 502
//   GET  /v1/admin/hub       {"public_key", "endpoint", "gateway"} for sandbox configs
//   GET  /v1/admin/budgets?budget&key   balances of the policy's budgets, dollars exact
//   POST /v1/admin/budgets/add    body {"budget", "key", "usd", "tokens"} → the balance
//   POST /v1/admin/budgets/reset  body {"budget", "key"} → the balance, spent back to zero
//   GET  /v1/admin/webhooks?event&url&outcome=delivered|retry|failed&before&limit
//                            {"stats", "deliveries"}: the webhook delivery log, newest first
//   GET  /metrics            Prometheus text exposition (text/plain; version=0.0.4)
// Times ("since", "until") are Unix milliseconds or RFC 3339. Errors are {"error": "..."}.
// Requests carrying an Origin header or a Host that is not a loopback address are refused, so
// a web page in a local browser can neither read nor change anything (CSRF, DNS rebinding).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>

#include "control/admin/policy_manager.h"
#include "control/budget/ledger.h"
#include "control/events/outbox.h"
#include "control/http/server.h"
#include "control/store/store.h"

namespace airlock::control::admin {

namespace asio = boost::asio;

inline constexpr uint16_t kDefaultAdminPort = 9190;

// What a sandbox needs to reach the hub; /v1/admin/hub serves it to `airlockctl peer add`.
struct HubInfo {
  std::string public_key;            // standard base64
  std::string endpoint;              // "198.51.100.1:51820"
  std::vector<std::string> gateway;  // prefixes; empty: the active policy's gateway
};

struct AdminOptions {
  asio::ip::tcp::endpoint listen{asio::ip::make_address_v4("127.0.0.1"), kDefaultAdminPort};
  http::ServerOptions server;
  HubInfo hub;
  std::string stats_instance;  // data plane whose counters are shown; empty: none
  // Each must outlive the AdminApi; when unset their endpoints answer 404.
  budget::Ledger* ledger = nullptr;
  events::Outbox* outbox = nullptr;
  std::function<std::string()> metrics;  // Prometheus text; called on the API's own threads
};

// Milliseconds since the Unix epoch from "1735689600000", "2025-01-01",
// "2025-01-01T12:00:00Z" or "2025-01-01T12:00:00.250+02:00".
std::optional<int64_t> parse_time(std::string_view text);
// "2025-01-01T12:00:00.250Z".
std::string format_time(int64_t unix_ms);
// Exact dollars with at least two decimals: "0.00", "3.50", "0.000000000125".
std::string exact_dollars(Picodollars amount);

class AdminApi {
 public:
  // Refuses any listen address that is not loopback. `store` and `policies` must outlive the
  // AdminApi. Blocking work (store reads, policy pushes) runs on the API's own threads, never
  // on `io`. Destroy it only once `io` no longer runs: open connections call into it.
  static std::unique_ptr<AdminApi> start(asio::io_context& io, AdminOptions options, Store& store,
                                         PolicyManager& policies, std::string* error);
  ~AdminApi();
  AdminApi(const AdminApi&) = delete;
  AdminApi& operator=(const AdminApi&) = delete;

  uint16_t port() const;
  void stop();

  struct Reply;  // one route's answer (admin_api.cc)

 private:
  AdminApi(AdminOptions options, Store& store, PolicyManager& policies);
  asio::awaitable<void> handle(http::Request& request, http::BodyStatus body_status,
                               http::ResponseWriter& writer);
  Reply route(const http::Request& request);
  Reply get_requests(std::string_view query);
  Reply get_request(std::string_view id);
  Reply get_usage(std::string_view query);
  Reply get_sessions(std::string_view query);
  Reply get_tools(std::string_view query);
  Reply get_peers();
  Reply get_stats(std::string_view query);
  Reply get_policy();
  Reply post_policy(std::string_view query, const std::string& body);
  Reply get_hub();
  Reply get_budgets(std::string_view query);
  Reply post_budget(std::string_view action, const std::string& body);
  Reply get_webhooks(std::string_view query);
  Reply get_metrics();

  AdminOptions options_;
  Store& store_;
  PolicyManager& policies_;
  asio::thread_pool blocking_{2};
  std::unique_ptr<http::Server> server_;
};

}  // namespace airlock::control::admin
