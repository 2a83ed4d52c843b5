// One gateway request, from routing to its record: what the HTTP API and the turns of a
// Responses WebSocket share. Internal to the gateway library.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>  // boost/asio/awaitable.hpp (1.74) uses std::exchange without it
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/string.hpp>

#include "control/gateway/api.h"
#include "control/gateway/errors.h"
#include "control/gateway/gateway.h"
#include "control/gateway/record_events.h"
#include "control/gateway/relay.h"
#include "control/gateway/responses_socket.h"
#include "control/metering/json_view.h"
#include "control/metering/usage.h"

namespace airlock::control::gateway {

namespace asio = boost::asio;

struct Gateway::Core {
  Core(asio::io_context& io_context, GatewayOptions gateway_options, Store& request_store,
       IdentityLookup identity_lookup, std::unique_ptr<http::UpstreamPool> upstream_pool,
       std::unique_ptr<http::UpstreamPool> pre_request_hook_pool,
       std::unique_ptr<budget::Ledger> own_ledger,
       std::shared_ptr<const GatewayState> initial_state)
      : io(io_context),
        options(std::move(gateway_options)),
        store(request_store),
        lookup(std::move(identity_lookup)),
        pool(std::move(upstream_pool)),
        hook_pool(std::move(pre_request_hook_pool)),
        default_ledger(std::move(own_ledger)),
        ledger(options.services.ledger ? *options.services.ledger : *default_ledger),
        rate_limiter(options.services.rate_limiter ? *options.services.rate_limiter
                                                   : default_rate_limiter),
        state(std::move(initial_state)) {
    if (!options.services.ledger) default_ledger->set_budgets(state.load()->document->budgets);
  }

  // Every finished request: metrics and events first, then the log (which takes the record).
  void finished(RequestRecord record) {
    if (options.services.metrics) options.services.metrics->observe(record);
    if (options.services.outbox) publish_record_events(*options.services.outbox, record);
    store.append(std::move(record));
  }

  asio::io_context& io;
  const GatewayOptions options;
  Store& store;
  const IdentityLookup lookup;
  const std::unique_ptr<http::UpstreamPool> pool;
  const std::unique_ptr<http::UpstreamPool> hook_pool;
  const std::unique_ptr<budget::Ledger> default_ledger;
  budget::RateLimiter default_rate_limiter;
  budget::Ledger& ledger;
  budget::RateLimiter& rate_limiter;
  std::atomic<std::shared_ptr<const GatewayState>> state;

  // Client WebSockets open now, each with what asks it to close once its turn is done (posted
  // to the socket's own executor). Set under sockets_mutex, as is `stopping`.
  std::mutex sockets_mutex;
  std::unordered_map<const void*, std::function<void()>> sockets;
  bool stopping = false;
};

using Clock = std::chrono::steady_clock;

std::string_view sv(boost::beast::string_view s);
bool istarts_with(std::string_view text, std::string_view prefix);
int64_t micros_since(Clock::time_point start);
int64_t now_unix_ms();
// The data plane reports IPv4 peers as IPv4; a dual-stack listener sees them as ::ffff:a.b.c.d.
asio::ip::address normalized(const asio::ip::address& address);

// What the gateway routes on. Only `model` and `stream` are kept from the top level; everything
// else (messages, tools, images) is syntax-checked and dropped as it is parsed, so a 30 MB body
// does not become a 30 MB document tree.
struct BodyFields {
  bool valid_json = false;
  std::string model;
  bool stream = false;
  // The whole body, read in place by the session, the tool results, the budget and the usage
  // injection. It holds the thread's parser while it lives, so it lives no longer than prepare().
  std::unique_ptr<JsonDocument> parsed;
  JsonView root() const { return parsed ? parsed->root() : JsonView(); }
};

// Appends the record when the request ends, however it ends: normal return, exception, or the
// coroutine frame being destroyed with the io_context.
class RecordGuard {
 public:
  explicit RecordGuard(Gateway::Core& core) : core_(core), start_(Clock::now()) {}
  ~RecordGuard() {
    if (discarded_) return;
    try {
      // Torn down before its answer was given: the control plane destroyed the request with its
      // io_context at shutdown.
      if (!ended_ && record.error.empty()) {
        record.error = "the gateway stopped before the request ended";
        record.usage_complete = false;
      }
      record.duration_us = micros_since(start_);
      core_.finished(std::move(record));
    } catch (...) {
      // Store::append does not fail by contract; a destructor must not throw regardless.
    }
  }
  RecordGuard(const RecordGuard&) = delete;
  RecordGuard& operator=(const RecordGuard&) = delete;

  void first_byte() {
    if (record.ttfb_us < 0) record.ttfb_us = micros_since(start_);
  }

  // The answer has been given (or the client left while it was).
  void ended() { ended_ = true; }

  // A request that became a WebSocket is recorded turn by turn instead.
  void discard() { discarded_ = true; }

  RequestRecord record;

 private:
  Gateway::Core& core_;
  const Clock::time_point start_;
  bool discarded_ = false;
  bool ended_ = false;
};

class SocketSession;

// One request, from routing to the record.
class Exchange {
 public:
  Exchange(Gateway::Core& core, http::Request& request, http::BodyStatus body_status,
           const http::ClientInfo& client, http::ResponseWriter& writer)
      : core_(core),
        state_(core.state.load()),
        request_(request),
        body_status_(body_status),
        client_(client),
        writer_(writer),
        guard_(core),
        record_(guard_.record) {
    for (const auto& [name, key] : state_->keys) secrets_.push_back(&key);
  }

  asio::awaitable<void> run();

  void fail(std::string_view what) {
    record_.error = redact("internal error: " + std::string(what), secrets_);
  }

  // Everything up to forwarding: identity, route, body, grants, hooks, limits and budget. Returns
  // the provider to forward `body` to, or null once the request is answered (refused, or served
  // by the gateway itself).
  asio::awaitable<const policy::ProviderSpec*> prepare(std::string& body, bool& strip_usage);

  // A turn of a Responses WebSocket, for the session that relays it.
  asio::awaitable<void> refuse_turn(GatewayError error, const std::string& message) {
    co_await refuse(error, redact(message, secrets_));
  }
  asio::awaitable<void> refuse_with_provider_answer(int status, std::string_view body);
  void turn_event(std::string_view message, const SocketEvent& event);
  void finish_turn(const policy::ProviderSpec& provider, const std::optional<std::string>& failure,
                   bool client_gone);
  RequestRecord& record() { return record_; }

 private:
  friend class SocketSession;
  const policy::Document& document() const { return *state_->document; }

  asio::awaitable<void> refuse(GatewayError error, std::string message);
  // Each returns false after refusing the request.
  asio::awaitable<bool> guard_prompt(const policy::Identity& identity, std::string& body);
  asio::awaitable<bool> run_hooks(const policy::Identity& identity,
                                  const policy::ProviderSpec& provider, const std::string& model,
                                  std::string& body, BodyFields& fields);
  bool same_route(const BodyFields& original, const BodyFields& rewritten) const;
  asio::awaitable<bool> admit(const policy::Identity& identity);
  asio::awaitable<bool> reserve_budget(const policy::Identity& identity,
                                       const policy::ProviderSpec& provider,
                                       const std::string& model, std::string& body,
                                       JsonView parsed);
  bool scans_tool_calls() const;
  bool cuts_tool_calls() const;
  void watch_tool_calls(Relay& relay);
  void scan_whole_tool_calls(std::span<const ToolCall> calls, bool can_cut);
  void record_tool_call_hit(const guardrails::ToolCallMatch& match, policy::ResponseAction action,
                            std::string_view call_name);
  void replace_held_body(const policy::ProviderSpec& provider, const http::UpstreamResult& result,
                         http::ResponseHeader& header, std::string& body);
  void settle(const Usage& usage);
  // The metered usage and its cost onto the record; `complete` says the answer ended whole.
  void record_usage(const policy::ProviderSpec& provider, const Usage& usage, bool complete);
  asio::awaitable<void> respond(int status, std::string body);
  asio::awaitable<void> list_models(const policy::Identity& identity);
  asio::awaitable<void> list_own_budgets(const policy::Identity& identity);
  asio::awaitable<void> forward(const policy::ProviderSpec& provider, std::string body,
                                bool strip_usage);
  void finish_record(const policy::ProviderSpec& provider, const Relay& relay,
                     const http::UpstreamResult& result, bool client_gone);
  std::optional<std::string> loggable(std::string_view body) const;
  http::ResponseHeader redacted(const http::ResponseHeader& header) const;

  Gateway::Core& core_;
  const std::shared_ptr<const GatewayState> state_;
  http::Request& request_;
  const http::BodyStatus body_status_;
  const http::ClientInfo& client_;
  http::ResponseWriter& writer_;
  RecordGuard guard_;
  RequestRecord& record_;
  std::vector<const Secret*> secrets_;
  ApiRoute route_;
  ErrorFormat format_ = ErrorFormat::kOpenAi;
  std::optional<int64_t> retry_after_s_;
  bool close_after_response_ = false;  // the client asked for another protocol on this connection
  // Indexes into the policy's guardrails that apply to the caller.
  std::vector<std::size_t> guardrails_;
  std::optional<guardrails::ToolCallScanner> tool_scanner_;
  std::vector<std::size_t> scanned_bytes_;  // per tool call, arguments already scanned
  std::optional<std::string> cut_reason_;
  budget::Admission admission_;
  budget::Reservation reservation_;
  // A WebSocket turn's events, as they arrive.
  std::optional<UsageMeter> turn_meter_;
  std::string turn_copy_;
};

}  // namespace airlock::control::gateway
