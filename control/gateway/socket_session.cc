#include "control/gateway/socket_session.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include "control/gateway/api.h"
#include "control/gateway/errors.h"
#include "control/gateway/exchange.h"
#include "control/gateway/headers.h"
#include "control/gateway/responses_socket.h"
#include "control/metering/sse.h"

namespace airlock::control::gateway {

namespace bhttp = boost::beast::http;

std::optional<std::string> socket_refusal(const policy::Document& document,
                                          const policy::Identity& identity) {
  for (const policy::GuardrailSpec* spec : document.guardrails_for(identity)) {
    if (spec->response == policy::ResponseAction::kCut) {
      return "guardrail \"" + spec->name +
             "\" cuts tool calls out of responses, which only the HTTP API can hold back";
    }
  }
  // An OpenAI-compatible server (vLLM, Ollama) has no WebSocket mode; a client that gets 426
  // falls back to HTTP before its first turn, one refused after the upgrade would not. The
  // provider's model globs stand for its models.
  for (const policy::ProviderSpec& provider : document.providers) {
    if (provider.kind != policy::ProviderKind::kOpenAiCompatible) continue;
    for (const std::string& models : provider.models) {
      if (document.model_granted(identity, provider.name, models)) {
        return "this peer may use provider \"" + provider.name +
               "\", an OpenAI-compatible server without a WebSocket mode";
      }
    }
  }
  return std::nullopt;
}

namespace websocket = boost::beast::websocket;

namespace {

auto with(boost::system::error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

}  // namespace

// A refused turn reaches the client as the socket's error event.
class TurnWriter final : public http::ResponseWriter {
 public:
  explicit TurnWriter(SocketSession& session) : session_(session) {}
  asio::awaitable<bool> write(http::Response response) override;
  asio::awaitable<bool> start(http::ResponseHeader, bool) override { co_return false; }
  asio::awaitable<bool> chunk(std::string_view) override { co_return false; }
  asio::awaitable<bool> finish() override { co_return false; }
  asio::awaitable<bool> finish_with(std::string_view) override { co_return false; }
  bool started() const override { return started_; }
  bool client_gone() const override { return gone_; }
  std::optional<http::TakenConnection> take_connection() override { return std::nullopt; }

 private:
  SocketSession& session_;
  bool started_ = false;
  bool gone_ = false;
};

// One response.create: its request as the HTTP API would have had it, and its record.
struct Turn {
  Turn(Gateway::Core& core, SocketSession& session, http::Request turn_request,
       const http::ClientInfo& client, http::BodyStatus body_status = http::BodyStatus::kComplete)
      : request(std::move(turn_request)),
        writer(session),
        exchange(core, request, body_status, client, writer) {}
  http::Request request;
  TurnWriter writer;
  Exchange exchange;
  const policy::ProviderSpec* provider = nullptr;  // held alive by the exchange's state
};

// Relays one client WebSocket to one provider WebSocket, opened at the first admitted turn.
// Client messages are read and checked in order; the provider's events are relayed as they come
// by a second coroutine on the same executor, which gives each event to its lane's turn.
class SocketSession {
 public:
  SocketSession(Gateway::Core& core, http::Request& upgrade, const http::ClientInfo& client,
                boost::beast::tcp_stream& stream)
      : core_(core),
        upgrade_(upgrade),
        client_(client),
        ws_(stream),
        wake_(stream.get_executor()),
        pump_done_(stream.get_executor()),
        close_done_(stream.get_executor()) {}

  asio::awaitable<void> run();
  // Sends to the client, one message at a time; false once the client has gone.
  asio::awaitable<bool> send(std::string_view message, bool text);

 private:
  asio::awaitable<void> relay_client_messages();
  asio::awaitable<bool> on_client_message(std::string message, bool text);
  asio::awaitable<void> start_turn(std::unique_ptr<Turn> turn, const std::string& body);
  asio::awaitable<void> record_oversized_message();
  asio::awaitable<bool> connect(Turn& turn);
  asio::awaitable<void> pump();
  asio::awaitable<void> relay_events();
  asio::awaitable<void> close_client(websocket::close_code code, std::string_view reason);
  void end_turn(const std::optional<std::string>& failure);
  http::Request turn_request(std::string body) const;
  asio::awaitable<void> lock_writes();
  void unlock_writes();
  void hold_client_writes(bool hold);
  void go_away();
  void close_if_going_away();
  asio::awaitable<void> close_going_away();

  Gateway::Core& core_;
  http::Request& upgrade_;
  const http::ClientInfo& client_;
  websocket::stream<boost::beast::tcp_stream&> ws_;
  asio::steady_timer wake_;  // wakes writers waiting for the socket
  bool writing_ = false;
  bool client_gone_ = false;
  bool holding_ = false;  // TCP_CORK is set on the client's socket
  std::unique_ptr<http::UpstreamSocket> upstream_;
  std::string upstream_provider_;
  bool upstream_ended_ = false;
  bool pumping_ = false;
  asio::steady_timer pump_done_;
  // The gateway is stopping: the socket closes (1001) once no turn is in flight.
  bool going_away_ = false;
  bool closing_ = false;
  asio::steady_timer close_done_;
  // The turn whose events arrive now. One at a time: the provider's events name no request, so
  // a second turn in flight would make an error event ambiguous, and a misattributed end would
  // let output through unmetered.
  std::unique_ptr<Turn> in_flight_;
};

asio::awaitable<bool> TurnWriter::write(http::Response response) {
  if (started_ || gone_) co_return false;
  started_ = true;
  const std::string event =
      socket_error_event(static_cast<int>(response.result_int()), response.body());
  if (!co_await session_.send(event, true)) gone_ = true;
  co_return !gone_;
}

asio::awaitable<void> SocketSession::lock_writes() {
  while (writing_) {
    wake_.expires_at(asio::steady_timer::time_point::max());
    boost::system::error_code ec;
    co_await wake_.async_wait(with(ec));
  }
  writing_ = true;
}

void SocketSession::unlock_writes() {
  writing_ = false;
  wake_.cancel();
}

// A provider sends a turn's events in a burst, and Beast writes each message on its own: without
// the cork every event went out in a segment of its own and woke the client once per event.
// Corked from the first event read until the provider's socket has nothing more waiting, the
// burst leaves in as few segments as it fills.
void SocketSession::hold_client_writes(bool hold) {
  if (hold == holding_) return;
  holding_ = hold;
  const int value = hold ? 1 : 0;
  // Fails only on a socket already closed, which has nothing left to send.
  ::setsockopt(ws_.next_layer().socket().native_handle(), IPPROTO_TCP, TCP_CORK, &value,
               sizeof value);
}

void SocketSession::go_away() {
  going_away_ = true;
  close_if_going_away();
}

// A turn in flight ends first: cutting it would lose the provider's answer and its usage.
void SocketSession::close_if_going_away() {
  if (!going_away_ || in_flight_ || closing_ || client_gone_) return;
  closing_ = true;
  asio::co_spawn(ws_.get_executor(), close_going_away(), [this](const std::exception_ptr&) {
    closing_ = false;
    close_done_.cancel();
  });
}

asio::awaitable<void> SocketSession::close_going_away() {
  co_await close_client(websocket::close_code::going_away, "the gateway is shutting down");
}

// Keeps a session in the gateway's list of open sockets, which Gateway::stop() asks to close.
class SocketRegistration {
 public:
  SocketRegistration(Gateway::Core& core, SocketSession* session, std::function<void()> ask)
      : core_(core), session_(session) {
    std::lock_guard lock(core_.sockets_mutex);
    core_.sockets.emplace(session_, std::move(ask));
    stopping_ = core_.stopping;
  }
  ~SocketRegistration() {
    std::lock_guard lock(core_.sockets_mutex);
    core_.sockets.erase(session_);
  }
  SocketRegistration(const SocketRegistration&) = delete;
  SocketRegistration& operator=(const SocketRegistration&) = delete;
  // The gateway had begun to stop when the socket opened.
  bool stopping() const { return stopping_; }

 private:
  Gateway::Core& core_;
  const SocketSession* session_;
  bool stopping_ = false;
};

asio::awaitable<bool> SocketSession::send(std::string_view message, bool text) {
  co_await lock_writes();
  boost::system::error_code ec;
  if (!client_gone_) {
    ws_.text(text);
    co_await ws_.async_write(asio::buffer(message.data(), message.size()), with(ec));
    if (ec) client_gone_ = true;
  }
  unlock_writes();
  co_return !client_gone_;
}

asio::awaitable<void> SocketSession::close_client(websocket::close_code code,
                                                  std::string_view reason) {
  co_await lock_writes();
  if (!client_gone_ && ws_.is_open()) {
    websocket::close_reason why(code);
    why.reason.assign(reason.data(), std::min<std::size_t>(reason.size(), 123));
    boost::system::error_code ec;
    co_await ws_.async_close(why, with(ec));
  }
  unlock_writes();
}

http::Request SocketSession::turn_request(std::string body) const {
  const std::string_view target = sv(upgrade_.target());
  const std::size_t query = target.find('?');
  http::Request request{
      bhttp::verb::post,
      "/v1/responses" +
          std::string(query == std::string_view::npos ? std::string_view() : target.substr(query)),
      11};
  for (const auto& field : upgrade_) {
    const boost::beast::string_view name = field.name_string();
    if (istarts_with(sv(name), "sec-websocket-") || boost::beast::iequals(name, "upgrade") ||
        boost::beast::iequals(name, "connection") ||
        boost::beast::iequals(name, "content-length") ||
        boost::beast::iequals(name, "content-encoding")) {
      continue;
    }
    request.insert(field.name_string(), field.value());
  }
  request.set(bhttp::field::content_type, "application/json");
  request.body() = std::move(body);
  return request;
}

asio::awaitable<void> SocketSession::run() {
  boost::beast::get_lowest_layer(ws_).expires_never();
  websocket::stream_base::timeout timeouts =
      websocket::stream_base::timeout::suggested(boost::beast::role_type::server);
  // A silent client is pinged, and dropped only when it stops answering.
  timeouts.idle_timeout = core_.options.server.keepalive_idle;
  timeouts.keep_alive_pings = true;
  ws_.set_option(timeouts);
  ws_.read_message_max(core_.options.server.max_body_bytes);
  boost::system::error_code ec;
  co_await ws_.async_accept(upgrade_, with(ec));
  if (ec) co_return;
  // Posted to this session's executor, which also runs its end: a session that is still
  // registered when the ask runs is still alive.
  Gateway::Core& core = core_;
  const auto executor = ws_.get_executor();
  SocketRegistration registration(core_, this, [&core, executor, this] {
    asio::post(executor, [&core, this] {
      bool open = false;
      {
        std::lock_guard lock(core.sockets_mutex);
        open = core.sockets.contains(this);
      }
      if (open) go_away();
    });
  });
  if (registration.stopping()) go_away();
  // The pump uses this session: whatever ends the client's side, it is waited for below.
  bool failed = false;
  try {
    co_await relay_client_messages();
  } catch (const std::exception&) {
    failed = true;
  }
  if (failed) co_await close_client(websocket::close_code::internal_error, "");
  while (closing_) {
    close_done_.expires_at(asio::steady_timer::time_point::max());
    co_await close_done_.async_wait(with(ec));
  }
  if (!upstream_ended_) client_gone_ = true;
  if (upstream_) {
    co_await upstream_->close(websocket::close_code::going_away, "client gone");
    while (pumping_) {
      pump_done_.expires_at(asio::steady_timer::time_point::max());
      co_await pump_done_.async_wait(with(ec));
    }
  }
  end_turn(std::nullopt);
}

asio::awaitable<void> SocketSession::relay_client_messages() {
  boost::beast::flat_buffer buffer;
  for (;;) {
    buffer.clear();
    boost::system::error_code ec;
    co_await ws_.async_read(buffer, with(ec));
    if (ec == websocket::error::message_too_big) co_return co_await record_oversized_message();
    if (ec) co_return;
    const bool text = ws_.got_text();
    if (!co_await on_client_message(boost::beast::buffers_to_string(buffer.data()), text)) {
      co_return;
    }
  }
}

asio::awaitable<bool> SocketSession::on_client_message(std::string message, bool text) {
  if (!text) {
    co_return co_await send(
        socket_error_event(400, error_body(ErrorFormat::kOpenAi, GatewayError::kBadJson,
                                           "binary messages are not part of the Responses "
                                           "WebSocket API; send JSON text")),
        true);
  }
  const SocketEvent event = read_socket_event(message);
  // Only turns are relayed. Anything else (a steer, a cancel) could carry prompt text past the
  // turn's checks, or draw an event from the provider that would end a turn it does not belong
  // to. Whatever is not JSON goes through the turn's checks, which refuse it and record why.
  if (event.valid && !starts_turn(event)) {
    co_return co_await send(
        socket_error_event(400, error_body(ErrorFormat::kOpenAi, GatewayError::kBadJson,
                                           "\"" + event.type +
                                               "\" is not relayed: the gateway relays "
                                               "response.create messages only")),
        true);
  }
  auto turn = std::make_unique<Turn>(core_, *this, turn_request(std::move(message)), client_);
  std::string body;
  bool strip_usage = false;
  turn->provider = co_await turn->exchange.prepare(body, strip_usage);
  if (turn->provider != nullptr) co_await start_turn(std::move(turn), body);
  co_return !client_gone_;
}

// A message over the body limit ends the socket (Beast closes it with 1009), and is recorded
// as the 413 an HTTP request of that size gets.
asio::awaitable<void> SocketSession::record_oversized_message() {
  Turn turn(core_, *this, turn_request(""), client_, http::BodyStatus::kTooLarge);
  std::string body;
  bool strip_usage = false;
  co_await turn.exchange.prepare(body, strip_usage);
}

asio::awaitable<void> SocketSession::start_turn(std::unique_ptr<Turn> turn,
                                                const std::string& body) {
  Exchange& exchange = turn->exchange;
  // The policy may have changed since the upgrade: a peer now under a guardrail that cuts is
  // sent back to HTTP, by a 426 when its client opens the socket again.
  std::optional<std::string> why_not;
  if (const auto peer = core_.lookup(normalized(client_.remote_address))) {
    why_not = socket_refusal(*exchange.state_->document, peer->identity);
  }
  if (why_not) {
    co_await exchange.refuse_turn(GatewayError::kNoWebSocket, *why_not);
    co_return co_await close_client(websocket::close_code::policy_error, "use HTTP");
  }
  if (in_flight_) {
    co_return co_await exchange.refuse_turn(
        GatewayError::kTurnInFlight,
        "a response is still streaming on this WebSocket: send the next response.create after "
        "its last event, or open another WebSocket");
  }
  if (!upstream_) {
    if (!co_await connect(*turn)) co_return;
  } else if (upstream_ended_) {
    co_return co_await exchange.refuse_turn(
        GatewayError::kUpstreamFailed, "upstream \"" + upstream_provider_ +
                                           "\" closed this WebSocket: " + upstream_->why_closed());
  } else if (turn->provider->name != upstream_provider_) {
    co_return co_await exchange.refuse_turn(
        GatewayError::kWrongApi, "model \"" + exchange.record().model +
                                     "\" is served by provider \"" + turn->provider->name +
                                     "\", and this WebSocket relays to \"" + upstream_provider_ +
                                     "\": open another WebSocket (or use HTTP) for it");
  }
  exchange.record().status = 200;
  exchange.record().streamed = true;
  in_flight_ = std::move(turn);
  // A failed write ends the provider's socket, and the pump then ends the turn.
  co_await upstream_->write(body, true);
}

asio::awaitable<bool> SocketSession::connect(Turn& turn) {
  const policy::ProviderSpec& provider = *turn.provider;
  Exchange& exchange = turn.exchange;
  const std::optional<http::Url> url = http::Url::parse(provider.base_url);
  if (!url) {
    co_await exchange.refuse_turn(GatewayError::kUpstreamFailed,
                                  "provider \"" + provider.name + "\" has an unusable base_url");
    co_return false;
  }
  std::optional<std::string_view> key;
  if (const auto it = exchange.state_->keys.find(provider.name);
      it != exchange.state_->keys.end()) {
    key = it->second.reveal();
  }
  const std::string_view target = sv(upgrade_.target());
  const std::size_t query = target.find('?');
  ApiRoute route;
  route.kind = ApiKind::kOpenAiResponses;
  if (query != std::string_view::npos) route.query = std::string(target.substr(query + 1));
  http::Request handshake{bhttp::verb::get,
                          upstream_target(route, url->base_path, !provider.passthrough), 11};
  for (const auto& field : upstream_request_fields(upgrade_, provider, key)) {
    handshake.insert(field.name_string(), field.value());
  }
  http::SocketResult opened = co_await core_.pool->open_websocket(*url, std::move(handshake));
  if (!opened.socket) {
    if (opened.status != 0) {
      co_await exchange.refuse_with_provider_answer(opened.status, opened.body);
      co_return false;
    }
    // No conditional operator inside co_await: GCC 12 destroys its temporary twice.
    const bool timeout = opened.result.error == http::UpstreamResult::Error::kConnectTimeout;
    const GatewayError error =
        timeout ? GatewayError::kUpstreamTimeout : GatewayError::kUpstreamFailed;
    const std::string message =
        "upstream \"" + provider.name + "\" " + (timeout ? "timed out" : "failed") + " (" +
        std::string(http::upstream_error_name(opened.result.error)) + "): " + opened.result.message;
    co_await exchange.refuse_turn(error, message);
    co_return false;
  }
  upstream_ = std::move(opened.socket);
  upstream_->on_drained([this] { hold_client_writes(false); });
  upstream_provider_ = provider.name;
  pumping_ = true;
  // No capturing lambda in an expression with a co_await: GCC 12 miscompiles it.
  const auto executor = co_await asio::this_coro::executor;
  asio::co_spawn(executor, pump(), [this](const std::exception_ptr&) {
    pumping_ = false;
    pump_done_.cancel();
  });
  co_return true;
}

asio::awaitable<void> SocketSession::pump() {
  std::string failure;
  try {
    co_await relay_events();
  } catch (const std::exception& e) {
    failure = std::string("internal error: ") + e.what();
  }
  hold_client_writes(false);
  // After a failure here the provider's socket stays open until run() closes it: only the client
  // loop writes to it.
  upstream_ended_ = true;
  if (client_gone_) co_return;
  if (failure.empty()) {
    failure = "upstream \"" + upstream_provider_ + "\" WebSocket " + upstream_->why_closed();
  }
  end_turn(failure);
  // The provider's own close code, when it sent one, tells the client why (1000 at its time
  // limit); a connection that broke is the gateway's failure to relay.
  websocket::close_code code = websocket::close_code::internal_error;
  if (upstream_->close_code() != 0) {
    code = static_cast<websocket::close_code>(upstream_->close_code());
  }
  co_await close_client(code, "upstream closed");
}

asio::awaitable<void> SocketSession::relay_events() {
  std::string message;
  bool text = true;
  while (co_await upstream_->read(message, text)) {
    hold_client_writes(true);
    std::unique_ptr<Turn> done;
    if (text) {
      const SocketEvent event = read_socket_event(message);
      if (in_flight_) {
        in_flight_->exchange.turn_event(message, event);
        if (ends_turn(event)) done = std::move(in_flight_);
      }
      // Some providers quote the credential they rejected; the sandbox must never see it.
      if (event.type == "error") {
        const std::shared_ptr<const GatewayState> state = core_.state.load();
        std::vector<const Secret*> keys;
        for (const auto& [name, key] : state->keys) keys.push_back(&key);
        message = redact(message, keys);
      }
    }
    const bool delivered = co_await send(message, text);
    if (done) done->exchange.finish_turn(*done->provider, std::nullopt, !delivered);
    if (!delivered) break;
    if (done) close_if_going_away();
  }
}

void SocketSession::end_turn(const std::optional<std::string>& failure) {
  if (!in_flight_) return;
  in_flight_->exchange.finish_turn(*in_flight_->provider, failure, client_gone_);
  in_flight_.reset();
}

asio::awaitable<void> run_socket_session(Gateway::Core& core, http::Request& upgrade,
                                         const http::ClientInfo& client,
                                         http::TakenConnection connection) {
  // A WebSocket client waits for the 101 before it sends a frame.
  if (connection.buffer->size() != 0) co_return;
  SocketSession session(core, upgrade, client, *connection.stream);
  co_await session.run();
}

asio::awaitable<void> Exchange::refuse_with_provider_answer(int status, std::string_view body) {
  const std::string clean = redact(body, secrets_);
  record_.error = "upstream \"" + record_.provider + "\" refused the WebSocket with status " +
                  std::to_string(status);
  record_.cost = 0;
  record_.response_body = loggable(clean);
  co_await respond(status, clean);
}

void Exchange::turn_event(std::string_view message, const SocketEvent& event) {
  if (!turn_meter_) {
    turn_meter_.emplace(Api::kOpenAiResponses);
    guard_.first_byte();
  }
  turn_meter_->feed_event(SseEvent{event.type, std::string(message), {}});
  if (event.type == "error") {
    if (event.status != 0) record_.status = event.status;
    record_.error = redact("upstream error event: " + event.error_message, secrets_);
  }
  if (document().request_log.bodies &&
      turn_copy_.size() < static_cast<std::size_t>(document().request_log.max_body_bytes)) {
    turn_copy_.append(message).push_back('\n');
  }
}

void Exchange::finish_turn(const policy::ProviderSpec& provider,
                           const std::optional<std::string>& failure, bool client_gone) {
  record_.client_disconnected = client_gone;
  const Usage usage = turn_meter_ ? turn_meter_->usage() : Usage{};
  if (turn_meter_) record_.tool_calls = turn_meter_->tool_calls();
  // The events have gone to the client as they came, so a match is recorded but cuts nothing.
  if (record_.status / 100 == 2 && !failure && scans_tool_calls()) {
    scan_whole_tool_calls(record_.tool_calls, false);
  }
  if (failure) {
    if (!turn_meter_) record_.status = error_status(GatewayError::kUpstreamFailed);
    record_.error = redact(*failure, secrets_);
  } else if (record_.error.empty() && turn_meter_ && turn_meter_->error()) {
    record_.error = redact(*turn_meter_->error(), secrets_);
  }
  record_usage(provider, usage, !failure && !client_gone && usage.complete);
  if (document().request_log.bodies) record_.response_body = loggable(turn_copy_);
  settle(usage);
  guard_.ended();
}

}  // namespace airlock::control::gateway
