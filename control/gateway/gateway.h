// The AI gateway: an HTTP server for sandboxes that routes each request by model to its
// provider with the provider's central key, relays the response as it streams, meters it, and
// logs exactly one RequestRecord per request, whatever happens to it.
//
// Who is calling comes only from the connection's remote address (the WireGuard peer that
// carried it), never from anything in the request. What a caller may do comes from the policy
// snapshot in GatewayState, swapped atomically by set_state(); a request keeps the snapshot it
// started with.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "control/budget/ledger.h"
#include "control/budget/rate_limit.h"
#include "control/events/outbox.h"
#include "control/guardrails/guardrails.h"
#include "control/http/server.h"
#include "control/http/upstream.h"
#include "control/metrics/gateway_metrics.h"
#include "control/prices/prices.h"
#include "control/secrets/secret.h"
#include "control/store/store.h"
#include "policy/document.h"
#include "policy/peer_directory.h"

namespace airlock::control::gateway {

// What the gateway enforces and reports besides routing. Each must outlive the gateway and
// every request in flight. Without a ledger or rate limiter the gateway keeps its own in memory
// (budgets and limits are always enforced); without an outbox or metrics nothing is reported.
struct GatewayServices {
  budget::Ledger* ledger = nullptr;
  budget::RateLimiter* rate_limiter = nullptr;
  events::Outbox* outbox = nullptr;
  metrics::GatewayMetrics* metrics = nullptr;
};

struct GatewayOptions {
  http::ServerOptions server;
  http::UpstreamOptions upstream;
  GatewayServices services;
};

struct GatewayState {
  std::shared_ptr<const policy::Document> document;
  PriceTable prices;                                // built-in or file prices + policy overrides
  std::map<std::string, Secret, std::less<>> keys;  // provider name -> key
  // Provider name -> its base_url parsed, once per policy rather than on every request.
  std::map<std::string, http::Url, std::less<>> base_urls;
  // The policy's guardrails compiled (indexes follow document->guardrails); null when none.
  std::shared_ptr<const guardrails::Guardrails> guardrails;
  int64_t loaded_unix_s = 0;  // reported as `created` by /v1/models
};

// Loads every provider's key_ref, parses its base_url, applies the policy's price overrides and
// compiles its guardrails. On failure returns nullptr with *error naming the provider and the
// reference (never a key), or the guardrail and pattern.
std::shared_ptr<const GatewayState> make_gateway_state(
    std::shared_ptr<const policy::Document> document, const PriceTable& base_prices,
    std::string* error);

// The peer behind a client address, nullptr when the address is no peer's. The entry is shared,
// not copied: a request keeps the one it started with however the policy changes meanwhile.
using IdentityLookup =
    std::function<std::shared_ptr<const policy::PeerEntry>(const boost::asio::ip::address& remote)>;

class Gateway {
 public:
  // `store` must outlive the gateway and every request in flight.
  static std::unique_ptr<Gateway> create(boost::asio::io_context& io, GatewayOptions options,
                                         Store& store, IdentityLookup lookup,
                                         std::shared_ptr<const GatewayState> state,
                                         std::string* error);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Starts serving on `endpoint` (port 0 picks one); may be called for several endpoints.
  bool listen(const boost::asio::ip::tcp::endpoint& endpoint, std::string* error);
  // The port of the first listener (0 before listen()).
  uint16_t port() const;
  // Thread-safe; requests in flight keep the state they started with.
  void set_state(std::shared_ptr<const GatewayState> state);
  // Stops accepting; requests in flight run to their end and are recorded. Idle keep-alive
  // connections close at once, the others after their request; a client WebSocket is closed with
  // 1001 (going away) once its turn in flight, if any, has ended.
  void stop();
  // Client connections open now, WebSockets included: a stop is drained when none are left.
  size_t open_connections() const;

  struct Core;

 private:
  explicit Gateway(std::shared_ptr<Core> core);

  std::shared_ptr<Core> core_;
  std::vector<std::unique_ptr<http::Server>> servers_;
};

// "req_" + 24 lowercase hex digits: 12 of the wall clock in milliseconds, so ids sort by time
// (to the millisecond), then 12 from the system CSPRNG.
std::string new_request_id();

}  // namespace airlock::control::gateway
