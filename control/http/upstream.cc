#include "control/http/upstream.h"

#include <array>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "control/http/wire.h"

namespace airlock::control::http {
namespace {

namespace http = beast::http;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using beast::error_code;
using Error = UpstreamResult::Error;

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Providers put little in their headers, but a proxy in between may add cookies and traces.
constexpr uint32_t kMaxResponseHeader = 256 * 1024;
// One body read hands at most this much to on_body.
constexpr size_t kPieceSize = size_t{16} * 1024;
constexpr size_t kFirstReadBytes = size_t{8} * 1024;

auto with(error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

UpstreamResult failure(Error error, std::string message) {
  UpstreamResult result;
  result.error = error;
  result.message = std::move(message);
  return result;
}

std::string host_header(const Url& url) {
  bool v6 = url.host.find(':') != std::string::npos;
  std::string host = v6 ? "[" + url.host + "]" : url.host;
  if (url.port != (url.tls ? 443 : 80)) host += ":" + std::to_string(url.port);
  return host;
}

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

struct Connection {
  std::variant<PlainStream, TlsStream> stream;
  template <class S, class... Args>
  explicit Connection(std::in_place_type_t<S> type, Args&&... args)
      : stream(type, std::forward<Args>(args)...) {}
};

struct PoolState {
  PoolState(UpstreamOptions pool_options, std::shared_ptr<ssl::context> client_tls)
      : options(std::move(pool_options)), tls(std::move(client_tls)) {}

  // Idle connections are kept per io_context as well as per origin: a connection's I/O completes
  // on the io_context it was opened on, so handing it to a request running on another one would
  // move every step of that request between threads.
  using IdleKey = std::pair<const asio::execution_context*, std::string>;

  std::unique_ptr<Connection> take(const IdleKey& key) {
    std::lock_guard lock(mutex);
    auto it = idle.find(key);
    if (it == idle.end() || it->second.empty()) return nullptr;
    // Most recently used first: the least likely to have been closed by the server.
    std::unique_ptr<Connection> connection = std::move(it->second.back());
    it->second.pop_back();
    return connection;
  }

  void put(const IdleKey& key, std::unique_ptr<Connection> connection) {
    std::lock_guard lock(mutex);
    if (stopped) return;
    auto& list = idle[key];
    if (list.size() < options.max_idle_per_origin) list.push_back(std::move(connection));
  }

  const UpstreamOptions options;
  std::shared_ptr<ssl::context> tls;
  mutable std::mutex mutex;
  std::map<IdleKey, std::vector<std::unique_ptr<Connection>>> idle;
  bool stopped = false;
};

struct ConnectOutcome {
  std::unique_ptr<Connection> connection;
  UpstreamResult result;
};

// The resolver cannot interrupt a running getaddrinfo, so the resolve is left to finish on its
// own and the deadline is a timer that whichever comes first wakes.
struct ResolveRace {
  explicit ResolveRace(const asio::any_io_executor& executor)
      : resolver(executor), timer(executor) {}
  tcp::resolver resolver;
  asio::steady_timer timer;
  bool done = false;
  error_code ec;
  tcp::resolver::results_type results;
};

std::string tls_failure_reason(SSL* ssl, const error_code& ec) {
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    return std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
  }
  return ec.message();
}

// Runs on a strand of its own (see send_impl) so the timer and the resolve handler are serialised
// with the coroutine whatever executor the caller uses.
asio::awaitable<ConnectOutcome> connect(std::shared_ptr<PoolState> state, Url url) {
  const auto deadline = std::chrono::steady_clock::now() + state->options.connect_timeout;
  const std::string where = url.host + ":" + std::to_string(url.port);
  auto executor = co_await asio::this_coro::executor;

  auto race = std::make_shared<ResolveRace>(executor);
  race->timer.expires_at(deadline);
  race->resolver.async_resolve(
      url.host, std::to_string(url.port),
      asio::bind_executor(executor, [race](error_code ec, tcp::resolver::results_type results) {
        race->done = true;
        race->ec = ec;
        race->results = std::move(results);
        race->timer.cancel();
      }));
  error_code ec;
  co_await race->timer.async_wait(with(ec));
  if (!race->done) {
    race->resolver.cancel();
    co_return ConnectOutcome{nullptr,
                             failure(Error::kConnectTimeout, "resolving " + where + " timed out")};
  }
  if (race->ec) {
    co_return ConnectOutcome{
        nullptr, failure(Error::kResolve, "resolving " + where + ": " + race->ec.message())};
  }

  PlainStream tcp_stream(executor);
  tcp_stream.expires_at(deadline);
  co_await tcp_stream.async_connect(race->results, with(ec));
  if (ec == beast::error::timeout) {
    co_return ConnectOutcome{
        nullptr, failure(Error::kConnectTimeout, "connecting to " + where + " timed out")};
  }
  if (ec) {
    co_return ConnectOutcome{
        nullptr, failure(Error::kConnect, "connecting to " + where + ": " + ec.message())};
  }
  tcp_stream.socket().set_option(tcp::no_delay(true), ec);
  if (!url.tls) {
    co_return ConnectOutcome{
        std::make_unique<Connection>(std::in_place_type<PlainStream>, std::move(tcp_stream)), {}};
  }

  auto connection = std::make_unique<Connection>(std::in_place_type<TlsStream>,
                                                 std::move(tcp_stream), *state->tls);
  TlsStream& tls = std::get<TlsStream>(connection->stream);
  SSL* ssl = tls.native_handle();
  // OpenSSL checks the name during chain verification, so a mismatch is reported as a verify
  // result with a precise reason. SNI is for host names only (RFC 6066).
  bool name_set;
  if (is_ip_literal(url.host)) {
    name_set = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host.c_str()) == 1;
  } else {
    name_set = SSL_set_tlsext_host_name(ssl, url.host.c_str()) == 1 &&
               SSL_set1_host(ssl, url.host.c_str()) == 1;
  }
  if (!name_set) {
    co_return ConnectOutcome{nullptr,
                             failure(Error::kTls, "cannot set the TLS peer name for " + where)};
  }
  co_await tls.async_handshake(ssl::stream_base::client, with(ec));
  if (ec == beast::error::timeout) {
    co_return ConnectOutcome{
        nullptr, failure(Error::kConnectTimeout, "TLS handshake with " + where + " timed out")};
  }
  if (ec) {
    co_return ConnectOutcome{nullptr, failure(Error::kTls, "TLS handshake with " + where + ": " +
                                                               tls_failure_reason(ssl, ec))};
  }
  co_return ConnectOutcome{std::move(connection), {}};
}

struct Attempt {
  UpstreamResult result;
  // Failed before any response byte on a connection that may simply have been stale.
  bool retryable = false;
  // Complete response on a keep-alive connection with nothing left over.
  bool reusable = false;
};

bool is_http_error(const error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category();
}

bool is_close(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == http::error::partial_message ||
         ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == ssl::error::stream_truncated;
}

// Parses the body bytes already read into what is left of the parser's body buffer. Beast's
// read stops after each chunk, and Beast's eager parsing would wait for the next chunk header.
// A provider sends a burst of events in one segment but one chunk per event, and every piece
// handed on becomes a client write.
error_code parse_buffered(http::response_parser<http::buffer_body>& parser,
                          beast::flat_buffer& buffer) {
  while (!parser.is_done() && parser.get().body().size != 0 && buffer.size() != 0) {
    error_code ec;
    const size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == http::error::need_more || ec == http::error::need_buffer) return {};
    if (ec) return ec;
    if (used == 0) return {};
  }
  return {};
}

template <class Stream>
asio::awaitable<Attempt> exchange(Stream& stream, const Request& request,
                                  const OnHeaders& on_headers, const OnBody& on_body,
                                  const UpstreamOptions& options) {
  Attempt attempt;
  UpstreamResult& result = attempt.result;
  auto& tcp_stream = beast::get_lowest_layer(stream);
  error_code ec;

  tcp_stream.expires_after(options.first_byte_timeout);
  std::string wire_header;
  append_wire_header(request.base(), wire_header);
  const std::array<asio::const_buffer, 2> wire{asio::buffer(wire_header),
                                               asio::buffer(request.body())};
  co_await asio::async_write(stream, wire, with(ec));
  if (ec == beast::error::timeout) {
    result = failure(Error::kFirstByteTimeout, "timed out sending the request");
    co_return attempt;
  }
  if (ec) {
    attempt.retryable = true;
    result = failure(Error::kClosed, "sending the request: " + ec.message());
    co_return attempt;
  }

  beast::flat_buffer buffer;
  // Room for a typical whole response in the first read: Beast otherwise reads 512 bytes at a
  // time into an empty buffer, which split even small responses into several client writes.
  buffer.reserve(kFirstReadBytes);
  std::optional<http::response_parser<http::buffer_body>> parser;
  for (;;) {
    parser.emplace();
    parser->header_limit(kMaxResponseHeader);
    // The body is handed on piece by piece, never held, so its size is not ours to cap. Not
    // boost::none: Beast 1.74 compares a Content-Length against the empty optional and fails.
    parser->body_limit(std::numeric_limits<uint64_t>::max());
    if (request.method() == http::verb::head) parser->skip(true);
    tcp_stream.expires_after(options.first_byte_timeout);
    co_await http::async_read_header(stream, buffer, *parser, with(ec));
    if (ec == beast::error::timeout) {
      result = failure(Error::kFirstByteTimeout, "no response within the first-byte timeout");
      co_return attempt;
    }
    if (ec && is_close(ec)) {
      attempt.retryable = !parser->got_some() && buffer.size() == 0;
      result =
          failure(Error::kClosed, "upstream closed before the response header: " + ec.message());
      co_return attempt;
    }
    if (ec) {
      result = failure(is_http_error(ec) ? Error::kProtocol : Error::kClosed,
                       "reading the response header: " + ec.message());
      co_return attempt;
    }
    unsigned status = parser->get().result_int();
    // Interim responses (100 Continue, 103 Early Hints) precede the real one.
    if (status / 100 != 1 || status == 101) break;
  }
  result.headers_received = true;
  // co_await is kept out of compound conditions: GCC 12 miscompiles their temporaries.
  const bool wanted = co_await on_headers(parser->get().base(), buffer.size() != 0);
  if (!wanted) {
    result.error = Error::kCancelled;
    result.message = "cancelled after the response header";
    co_return attempt;
  }

  std::array<char, kPieceSize> piece;
  while (!parser->is_done()) {
    parser->get().body().data = piece.data();
    parser->get().body().size = piece.size();
    tcp_stream.expires_after(options.idle_timeout);
    co_await http::async_read_some(stream, buffer, *parser, with(ec));
    if (!ec) ec = parse_buffered(*parser, buffer);
    if (ec == http::error::need_buffer) ec = {};
    if (ec == beast::error::timeout) {
      result.error = Error::kIdleTimeout;
      result.message = "response body stalled past the idle timeout";
      co_return attempt;
    }
    if (ec) {
      result.error = is_http_error(ec) && !is_close(ec) ? Error::kProtocol : Error::kClosed;
      result.message = "reading the response body: " + ec.message();
      co_return attempt;
    }
    const size_t n = piece.size() - parser->get().body().size;
    if (n == 0) continue;
    const std::string_view data(piece.data(), n);
    const bool more = co_await on_body(data, parser->is_done());
    if (!more) {
      result.error = Error::kCancelled;
      result.message = "cancelled during the response body";
      co_return attempt;
    }
  }
  attempt.reusable =
      parser->keep_alive() && request.keep_alive() && !parser->need_eof() && buffer.size() == 0;
  co_return attempt;
}

asio::awaitable<Attempt> exchange_on(Connection& connection, const Request& request,
                                     const OnHeaders& on_headers, const OnBody& on_body,
                                     const UpstreamOptions& options) {
  if (auto* tls = std::get_if<TlsStream>(&connection.stream)) {
    co_return co_await exchange(*tls, request, on_headers, on_body, options);
  }
  co_return co_await exchange(std::get<PlainStream>(connection.stream), request, on_headers,
                              on_body, options);
}

asio::awaitable<UpstreamResult> send_impl(std::shared_ptr<PoolState> state, Url url,
                                          Request request, OnHeaders on_headers, OnBody on_body) {
  std::string target = url.base_path + std::string(request.target());
  if (target.empty()) target = "/";
  request.target(target);
  request.version(11);
  request.set(http::field::host, host_header(url));
  request.prepare_payload();
  // The caller's io_context: a new connection is opened there, so its I/O completes on the
  // caller's thread.
  const auto executor = co_await asio::this_coro::executor;
  const PoolState::IdleKey key{&asio::query(executor, asio::execution::context), url.origin()};

  for (bool retried = false;;) {
    std::unique_ptr<Connection> connection;
    if (!retried) connection = state->take(key);
    const bool reused = connection != nullptr;
    if (!connection) {
      auto strand = asio::make_strand(executor);
      ConnectOutcome outcome =
          co_await asio::co_spawn(strand, connect(state, url), asio::use_awaitable);
      if (!outcome.connection) co_return outcome.result;
      connection = std::move(outcome.connection);
    }
    Attempt attempt =
        co_await exchange_on(*connection, request, on_headers, on_body, state->options);
    if (attempt.retryable && reused && !retried) {
      retried = true;
      continue;
    }
    if (attempt.reusable) state->put(key, std::move(connection));
    co_return attempt.result;
  }
}

// Provider events can be hundreds of KB (a response.completed echoing a long output); past this
// a message is no event.
constexpr std::size_t kMaxSocketMessage = std::size_t{64} << 20;

// The stream under a provider WebSocket: tells when Beast is about to wait for bytes. Beast's
// websocket::stream has no way to ask whether another message is already buffered, and it reads
// at most 1536 bytes at a time, so a burst of events spans several reads; a read that finds
// nothing waiting on the socket is the end of the burst.
template <class Next>
class DrainSignal {
 public:
  using executor_type = typename Next::executor_type;
  using next_layer_type = Next;

  explicit DrainSignal(Next&& next) : next_(std::move(next)) {}

  executor_type get_executor() { return next_.get_executor(); }
  Next& next_layer() { return next_; }
  const Next& next_layer() const { return next_; }
  void on_drained(std::function<void()> hook) { hook_ = std::move(hook); }

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    if (hook_) {
      error_code ec;
      // TLS may hold a decrypted record the socket no longer shows; flushing early for it
      // costs a write, never a message.
      if (beast::get_lowest_layer(next_).socket().available(ec) == 0) hook_();
    }
    return next_.async_read_some(buffers, std::forward<Token>(token));
  }

  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return next_.async_write_some(buffers, std::forward<Token>(token));
  }

 private:
  Next next_;
  std::function<void()> hook_;
};

// Beast closes a WebSocket's stream through these, found by argument-dependent lookup.
template <class Next>
void teardown(beast::role_type role, DrainSignal<Next>& stream, error_code& ec) {
  using websocket::teardown;
  teardown(role, stream.next_layer(), ec);
}

template <class Next, class Handler>
void async_teardown(beast::role_type role, DrainSignal<Next>& stream, Handler&& handler) {
  using websocket::async_teardown;
  async_teardown(role, stream.next_layer(), std::forward<Handler>(handler));
}

template <class Next>
class SocketImpl final : public UpstreamSocket {
 public:
  explicit SocketImpl(Next&& next) : ws_(std::move(next)) {}

  websocket::stream<DrainSignal<Next>>& ws() { return ws_; }

  void on_drained(std::function<void()> hook) override {
    ws_.next_layer().on_drained(std::move(hook));
  }

  asio::awaitable<bool> read(std::string& message, bool& text) override {
    buffer_.clear();
    error_code ec;
    co_await ws_.async_read(buffer_, with(ec));
    if (ec) co_return ended(ec);
    message = beast::buffers_to_string(buffer_.data());
    text = ws_.got_text();
    co_return true;
  }

  asio::awaitable<bool> write(std::string_view message, bool text) override {
    ws_.text(text);
    error_code ec;
    co_await ws_.async_write(asio::buffer(message.data(), message.size()), with(ec));
    if (ec) co_return ended(ec);
    co_return true;
  }

  asio::awaitable<void> close(uint16_t code, std::string_view reason) override {
    if (!ws_.is_open()) co_return;
    error_code ec;
    websocket::close_reason why(static_cast<websocket::close_code>(code));
    // A close frame carries at most 123 bytes of reason.
    why.reason.assign(reason.data(), std::min<std::size_t>(reason.size(), 123));
    co_await ws_.async_close(why, with(ec));
  }

  uint16_t close_code() const override { return ws_.reason().code; }
  std::string why_closed() const override { return why_; }

 private:
  bool ended(const error_code& ec) {
    if (!why_.empty()) return false;
    if (ec == websocket::error::closed) {
      why_ = "closed by the provider (" + std::to_string(ws_.reason().code) + ")";
      const auto& reason = ws_.reason().reason;
      if (!reason.empty()) why_ += ": " + std::string(reason.data(), reason.size());
    } else if (ec == beast::error::timeout) {
      why_ = "no answer to pings within the idle timeout";
    } else {
      why_ = ec.message();
    }
    return false;
  }

  websocket::stream<DrainSignal<Next>> ws_;
  beast::flat_buffer buffer_;
  std::string why_;
};

// Fields Beast writes into the upgrade request itself, and the client's WebSocket fields: the
// gateway negotiates its own socket with the provider (no subprotocol, no extension).
bool set_by_websocket(beast::string_view name) {
  constexpr beast::string_view kWebSocketFields = "sec-websocket-";
  if (name.size() >= kWebSocketFields.size() &&
      beast::iequals(name.substr(0, kWebSocketFields.size()), kWebSocketFields)) {
    return true;
  }
  for (const char* own : {"host", "upgrade", "connection", "content-length", "transfer-encoding"}) {
    if (beast::iequals(name, own)) return true;
  }
  return false;
}

template <class Next>
asio::awaitable<SocketResult> upgrade(Next next, const Url& url, const Request& handshake,
                                      const UpstreamOptions& options) {
  auto socket = std::make_unique<SocketImpl<Next>>(std::move(next));
  websocket::stream<DrainSignal<Next>>& ws = socket->ws();
  beast::get_lowest_layer(ws).expires_never();
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = options.connect_timeout;
  timeouts.idle_timeout = options.idle_timeout;
  timeouts.keep_alive_pings = true;
  ws.set_option(timeouts);
  ws.read_message_max(kMaxSocketMessage);
  ws.set_option(websocket::stream_base::decorator([&handshake](websocket::request_type& request) {
    for (const auto& field : handshake) {
      if (!set_by_websocket(field.name_string())) {
        request.insert(field.name_string(), field.value());
      }
    }
  }));
  std::string target = url.base_path + std::string(handshake.target());
  if (target.empty()) target = "/";
  websocket::response_type response;
  error_code ec;
  co_await ws.async_handshake(response, host_header(url), target, with(ec));
  SocketResult out;
  if (ec) {
    out.result.headers_received = response.result_int() != 0;
    out.status = static_cast<int>(response.result_int());
    out.body = response.body();
    out.result.error = ec == beast::error::timeout ? Error::kConnectTimeout : Error::kProtocol;
    out.result.message = "WebSocket upgrade to " + url.host + ": " + ec.message();
    co_return out;
  }
  out.result.headers_received = true;
  out.status = static_cast<int>(response.result_int());
  out.socket = std::move(socket);
  co_return out;
}

asio::awaitable<SocketResult> open_websocket_impl(std::shared_ptr<PoolState> state, Url url,
                                                  Request handshake) {
  const auto executor = co_await asio::this_coro::executor;
  auto strand = asio::make_strand(executor);
  ConnectOutcome outcome =
      co_await asio::co_spawn(strand, connect(state, url), asio::use_awaitable);
  if (!outcome.connection) {
    SocketResult failed;
    failed.result = std::move(outcome.result);
    co_return failed;
  }
  if (auto* tls = std::get_if<TlsStream>(&outcome.connection->stream)) {
    co_return co_await upgrade(std::move(*tls), url, handshake, state->options);
  }
  co_return co_await upgrade(std::move(std::get<PlainStream>(outcome.connection->stream)), url,
                             handshake, state->options);
}

// send() must be awaited from a strand (as server handlers are) when the io_context has several
// threads: a Beast stream's timeout handler runs on the caller's executor and must not race the
// operation it cancels. Callbacks run on that same executor.
class PoolImpl final : public UpstreamPool {
 public:
  explicit PoolImpl(std::shared_ptr<PoolState> state) : state_(std::move(state)) {}

  asio::awaitable<UpstreamResult> send(const Url& url, Request request, OnHeaders on_headers,
                                       OnBody on_body) override {
    // The coroutine owns copies, so a send outlives neither the pool nor its arguments.
    return send_impl(state_, url, std::move(request), std::move(on_headers), std::move(on_body));
  }

  asio::awaitable<SocketResult> open_websocket(const Url& url, Request handshake) override {
    return open_websocket_impl(state_, url, std::move(handshake));
  }

  size_t idle_connections() const override {
    std::lock_guard lock(state_->mutex);
    size_t count = 0;
    for (const auto& [key, list] : state_->idle) count += list.size();
    return count;
  }

  void stop_pooling() override {
    std::lock_guard lock(state_->mutex);
    state_->stopped = true;
    state_->idle.clear();
  }

 private:
  std::shared_ptr<PoolState> state_;
};

}  // namespace

std::string_view upstream_error_name(UpstreamResult::Error error) {
  switch (error) {
    case Error::kNone:
      return "none";
    case Error::kResolve:
      return "resolve";
    case Error::kConnect:
      return "connect";
    case Error::kTls:
      return "tls";
    case Error::kConnectTimeout:
      return "connect_timeout";
    case Error::kFirstByteTimeout:
      return "first_byte_timeout";
    case Error::kIdleTimeout:
      return "idle_timeout";
    case Error::kProtocol:
      return "protocol";
    case Error::kCancelled:
      return "cancelled";
    case Error::kClosed:
      return "closed";
  }
  return "unknown";
}

namespace {

std::shared_ptr<ssl::context> new_client_tls(const std::string& ca_file, std::string* error) {
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX* ctx = tls->native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    if (error) *error = "cannot require TLS 1.2";
    return nullptr;
  }
  static constexpr unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn) != 0) {
    if (error) *error = "cannot set ALPN";
    return nullptr;
  }
  tls->set_verify_mode(ssl::verify_peer);
  error_code ec;
  tls->set_default_verify_paths(ec);
  if (ec) {
    if (error) *error = "loading the system trust store: " + ec.message();
    return nullptr;
  }
  if (!ca_file.empty()) {
    tls->load_verify_file(ca_file, ec);
    if (ec) {
      if (error) *error = "loading CA file " + ca_file + ": " + ec.message();
      return nullptr;
    }
  }
  return tls;
}

// Loading the system trust store takes about 25 ms, and a control plane opens several pools
// (providers, hooks, event webhooks): pools with the same CA file share one context while any of
// them lives. OpenSSL lets connections on many threads use one configured SSL_CTX.
std::shared_ptr<ssl::context> client_tls(const std::string& ca_file, std::string* error) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<ssl::context>> contexts;
  std::lock_guard lock(mutex);
  std::weak_ptr<ssl::context>& cached = contexts[ca_file];
  if (std::shared_ptr<ssl::context> tls = cached.lock()) return tls;
  std::shared_ptr<ssl::context> tls = new_client_tls(ca_file, error);
  cached = tls;
  return tls;
}

}  // namespace

std::unique_ptr<UpstreamPool> UpstreamPool::create(UpstreamOptions options, std::string* error) {
  std::shared_ptr<ssl::context> tls = client_tls(options.ca_file, error);
  if (!tls) return nullptr;
  return std::make_unique<PoolImpl>(
      std::make_shared<PoolState>(std::move(options), std::move(tls)));
}

}  // namespace airlock::control::http
