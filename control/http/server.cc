#include "control/http/server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <exception>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>

#include "control/http/wire.h"

namespace airlock::control::http {
namespace {

namespace http = beast::http;
using tcp = asio::ip::tcp;
using beast::error_code;

// After a response that ends the connection (413, 400, Connection: close) the client may still be
// sending; closing with unread data would make the kernel send RST, which can destroy the
// response before the client reads it. So half-close and drain for a bounded time and size.
constexpr std::chrono::milliseconds kLingerTime{2'000};
constexpr size_t kLingerBytes = 1u << 20;
// Pause after an accept error such as EMFILE, so the loop does not spin while it persists.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};
constexpr size_t kFirstReadBytes = size_t{8} * 1024;

void log_line(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_line(const char* format, ...) {
  std::va_list args;
  va_start(args, format);
  std::fputs("airlock-http: ", stderr);
  std::vfprintf(stderr, format, args);
  std::fputc('\n', stderr);
  va_end(args);
}

auto with(error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

std::string_view to_std(beast::string_view text) {
  return {text.data(), text.size()};
}

// The target's path only: a query string may carry a credential (Gemini's "?key=").
std::string path_of(const Request& request) {
  std::string_view target = to_std(request.target());
  return std::string(target.substr(0, target.find('?')));
}

Response plain_response(http::status status, std::string_view text) {
  Response response{status, 11};
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  response.body() = text;
  response.body() += '\n';
  return response;
}

struct Connection {
  explicit Connection(tcp::socket socket) : stream(std::move(socket)) {}
  beast::tcp_stream stream;
  // Between requests (no request being handled): stop() may close the connection right away.
  bool waiting = true;
};

struct State {
  State(asio::io_context& io_context, ServerOptions server_options, Handler request_handler)
      : io(io_context),
        options(std::move(server_options)),
        handler(std::move(request_handler)),
        acceptor(asio::make_strand(io_context)) {}

  asio::io_context& io;
  const ServerOptions options;
  const Handler handler;
  tcp::acceptor acceptor;
  size_t next_context = 0;  // used only by the accept loop
  std::atomic<bool> stopped{false};
  std::atomic<size_t> open{0};
  std::mutex mutex;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;
};

// Counts and registers a connection for as long as its coroutine runs.
class Registration {
 public:
  Registration(State& state, const std::shared_ptr<Connection>& connection)
      : state_(state), connection_(connection.get()) {
    std::lock_guard lock(state_.mutex);
    state_.connections.emplace(connection_, connection);
    ++state_.open;
  }
  ~Registration() {
    std::lock_guard lock(state_.mutex);
    state_.connections.erase(connection_);
    --state_.open;
  }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

 private:
  State& state_;
  Connection* connection_;
};

class ConnectionWriter final : public ResponseWriter {
 public:
  ConnectionWriter(beast::tcp_stream& stream, const ServerOptions& options, unsigned version,
                   bool head, bool keep_alive, beast::flat_buffer* buffer = nullptr)
      : stream_(stream),
        buffer_(buffer),
        options_(options),
        version_(version),
        head_(head),
        keep_alive_(keep_alive) {}

  asio::awaitable<bool> write(Response response) override {
    if (started_ || gone_) co_return false;
    started_ = true;
    // Read the handler's wish (Connection: close) under its own version before switching.
    bool keep_alive = keep_alive_ && response.keep_alive();
    response.version(version_);
    response.keep_alive(keep_alive);
    keep_alive_ = keep_alive;
    response.prepare_payload();
    std::string wire_header;
    append_wire_header(response.base(), wire_header);
    std::array<asio::const_buffer, 2> buffers{asio::buffer(wire_header), asio::const_buffer()};
    if (!head_) buffers[1] = asio::buffer(response.body());
    error_code ec;
    stream_.expires_after(options_.write_timeout);
    co_await asio::async_write(stream_, buffers, with(ec));
    complete_ = true;
    co_return ok(ec);
  }

  asio::awaitable<bool> start(ResponseHeader header, bool body_follows) override {
    if (started_ || gone_) co_return false;
    started_ = true;
    http::response<http::empty_body> message{std::move(header)};
    bool keep_alive = keep_alive_ && message.keep_alive();
    message.version(version_);
    unsigned status = message.result_int();
    auto length = message.find(http::field::content_length);
    if (head_ || status / 100 == 1 || status == 204 || status == 304) {
      mode_ = Mode::kNoBody;
    } else if (length != message.end()) {
      uint64_t value = 0;
      std::string_view text = to_std(length->value());
      auto [end, errc] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (errc != std::errc() || end != text.data() + text.size()) {
        log_line("handler sent an invalid Content-Length");
        keep_alive = false;
        mode_ = Mode::kUntilClose;
        message.erase(http::field::content_length);
      } else {
        mode_ = Mode::kLength;
        remaining_ = value;
      }
    } else if (version_ >= 11) {
      mode_ = Mode::kChunked;
      message.chunked(true);
    } else {
      // HTTP/1.0 has no chunked encoding: the end of the body is the end of the connection.
      mode_ = Mode::kUntilClose;
      keep_alive = false;
    }
    message.keep_alive(keep_alive);
    keep_alive_ = keep_alive;
    append_wire_header(message.base(), pending_header_);
    // Every write wakes the client (and, on loopback, preempts this thread): a header whose body
    // is at hand goes out with it. A known length means the body follows at once.
    const bool hold =
        mode_ == Mode::kLength ? remaining_ != 0 : mode_ != Mode::kNoBody && body_follows;
    if (hold) co_return true;
    error_code ec;
    stream_.expires_after(options_.write_timeout);
    co_await asio::async_write(stream_, asio::buffer(pending_header_), with(ec));
    pending_header_.clear();
    co_return ok(ec);
  }

  // Sends a header start() held back whose body never came (the handler stopped short).
  asio::awaitable<void> flush() {
    if (pending_header_.empty() || gone_) co_return;
    error_code ec;
    stream_.expires_after(options_.write_timeout);
    co_await asio::async_write(stream_, asio::buffer(pending_header_), with(ec));
    pending_header_.clear();
    ok(ec);
  }

  asio::awaitable<bool> chunk(std::string_view data) override {
    if (!started_ || complete_ || gone_) co_return false;
    // An empty chunk would be the chunked terminator.
    if (data.empty() || mode_ == Mode::kNoBody) co_return true;
    co_return co_await write_body(data, false);
  }

  asio::awaitable<bool> finish() override { co_return co_await finish_with({}); }

  asio::awaitable<bool> finish_with(std::string_view data) override {
    if (!started_ || gone_) co_return false;
    if (complete_) co_return data.empty();
    if (mode_ == Mode::kNoBody) data = {};
    if (mode_ == Mode::kLength && remaining_ > data.size()) {
      log_line("handler finished short of its Content-Length");
      keep_alive_ = false;
      complete_ = true;
      co_return false;
    }
    const bool ok = co_await write_body(data, true);
    complete_ = true;
    co_return ok;
  }

  bool started() const override { return started_; }
  bool client_gone() const override { return gone_; }

  std::optional<TakenConnection> take_connection() override {
    if (started_ || gone_ || buffer_ == nullptr) return std::nullopt;
    started_ = true;
    complete_ = true;
    keep_alive_ = false;
    taken_ = true;
    return TakenConnection{&stream_, buffer_};
  }
  bool taken() const { return taken_; }

  // Whether the next request may follow on this connection.
  bool reusable() const { return keep_alive_ && complete_ && !gone_; }

 private:
  enum class Mode { kNoBody, kLength, kChunked, kUntilClose };

  bool ok(const error_code& ec) {
    if (ec) gone_ = true;
    return !ec;
  }

  // One gather write of a held header, a piece of body in its framing and, with `last`, the
  // chunked terminator.
  asio::awaitable<bool> write_body(std::string_view data, bool last) {
    if (mode_ == Mode::kLength) {
      if (data.size() > remaining_) {
        log_line("handler wrote more than its Content-Length");
        keep_alive_ = false;
        co_return false;
      }
      remaining_ -= data.size();
    }
    // Chunk framing by hand: Beast's chunk_header allocates its size line for every chunk, and
    // its sequences differ in type with what is present, so they do not gather into one list.
    static constexpr std::string_view kCrlf = "\r\n";
    static constexpr std::string_view kLastChunk = "0\r\n\r\n";
    std::array<char, 20> size_line{};
    std::array<asio::const_buffer, 5> buffers;
    size_t count = 0;
    if (!pending_header_.empty()) buffers[count++] = asio::buffer(pending_header_);
    if (!data.empty() && mode_ == Mode::kChunked) {
      char* end = std::to_chars(size_line.data(), size_line.data() + 16, data.size(), 16).ptr;
      end = std::copy(kCrlf.begin(), kCrlf.end(), end);
      buffers[count++] = asio::buffer(size_line.data(), end - size_line.data());
      buffers[count++] = asio::buffer(data);
      buffers[count++] = asio::buffer(kCrlf);
    } else if (!data.empty()) {
      buffers[count++] = asio::buffer(data);
    }
    if (last && mode_ == Mode::kChunked) buffers[count++] = asio::buffer(kLastChunk);
    if (count == 0) co_return true;
    error_code ec;
    stream_.expires_after(options_.write_timeout);
    // The slots left empty write nothing.
    co_await asio::async_write(stream_, buffers, with(ec));
    pending_header_.clear();
    co_return ok(ec);
  }

  beast::tcp_stream& stream_;
  beast::flat_buffer* const buffer_;
  const ServerOptions& options_;
  const unsigned version_;
  const bool head_;
  bool keep_alive_;
  bool started_ = false;
  bool complete_ = false;
  bool gone_ = false;
  bool taken_ = false;
  Mode mode_ = Mode::kNoBody;
  uint64_t remaining_ = 0;
  std::string pending_header_;
};

asio::awaitable<void> close_gracefully(beast::tcp_stream& stream) {
  error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(kLingerTime);
  std::array<char, 4096> discard;
  for (size_t total = 0; !ec && total < kLingerBytes;) {
    total += co_await stream.async_read_some(asio::buffer(discard), with(ec));
  }
  stream.close();
}

// Errors that mean the request was not valid HTTP (as opposed to the client going away).
bool is_parse_error(const error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

asio::awaitable<void> serve(std::shared_ptr<State> state, std::shared_ptr<Connection> connection) {
  Registration registration(*state, connection);
  const ServerOptions& options = state->options;
  beast::tcp_stream& stream = connection->stream;
  error_code ec;
  stream.socket().set_option(tcp::no_delay(true), ec);
  ClientInfo client;
  tcp::endpoint remote = stream.socket().remote_endpoint(ec);
  tcp::endpoint local = stream.socket().local_endpoint(ec);
  client.remote_address = remote.address();
  client.remote_port = remote.port();
  client.local_address = local.address();
  client.local_port = local.port();

  beast::flat_buffer buffer;
  // Beast reads 512 bytes at a time into an empty buffer; a typical request fits this at once.
  buffer.reserve(kFirstReadBytes);
  for (bool first = true;; first = false) {
    connection->waiting = true;
    if (state->stopped) break;
    // Between requests the client may stay silent for keepalive_idle; once it starts a request,
    // the whole header has header_timeout (slowloris).
    if (!first && buffer.size() == 0) {
      stream.expires_after(options.keepalive_idle);
      size_t n = co_await stream.async_read_some(buffer.prepare(4096), with(ec));
      if (ec) break;
      buffer.commit(n);
    }
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(options.max_header_bytes));
    // The Content-Length limit is checked below, once the whole header is known. Not
    // boost::none: Beast 1.74 compares the length against the empty optional and fails.
    parser.body_limit(std::numeric_limits<uint64_t>::max());
    stream.expires_after(options.header_timeout);
    co_await http::async_read_header(stream, buffer, parser, with(ec));
    if (ec) {
      if (is_parse_error(ec)) {
        ConnectionWriter writer(stream, options, 11, false, false);
        // No conditional operator inside co_await: GCC 12 destroys its temporary twice.
        Response response = plain_response(http::status::bad_request, "bad request");
        if (ec == http::error::header_limit) {
          response = plain_response(http::status::request_header_fields_too_large,
                                    "request header too large");
        }
        co_await writer.write(std::move(response));
        co_await close_gracefully(stream);
      }
      break;
    }
    connection->waiting = false;

    BodyStatus body_status = BodyStatus::kComplete;
    auto content_length = parser.content_length();
    if (content_length && *content_length > options.max_body_bytes) {
      body_status = BodyStatus::kTooLarge;
    } else if (!parser.is_done()) {
      parser.body_limit(options.max_body_bytes);
      if (parser.get().version() >= 11 &&
          boost::iequals(parser.get()[http::field::expect], "100-continue")) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        stream.expires_after(options.write_timeout);
        co_await asio::async_write(stream, asio::buffer(kContinue), with(ec));
        if (ec) break;
      }
      stream.expires_after(options.body_timeout);
      co_await http::async_read(stream, buffer, parser, with(ec));
      if (ec == http::error::body_limit) {
        body_status = BodyStatus::kTooLarge;
      } else if (ec) {
        if (is_parse_error(ec)) {
          ConnectionWriter writer(stream, options, parser.get().version(), false, false);
          co_await writer.write(plain_response(http::status::bad_request, "bad request"));
          co_await close_gracefully(stream);
        }
        break;
      }
    }
    Request request = parser.release();
    if (body_status == BodyStatus::kTooLarge) request.body().clear();
    // The handler may stream its response for minutes: an empty read buffer is not held that
    // long (the next request's read allocates again).
    if (buffer.size() == 0) buffer.shrink_to_fit();

    bool keep_alive =
        request.keep_alive() && body_status == BodyStatus::kComplete && !state->stopped;
    ConnectionWriter writer(stream, options, request.version(),
                            request.method() == http::verb::head, keep_alive, &buffer);
    const char* failure = nullptr;
    std::string what;
    try {
      co_await state->handler(request, body_status, client, writer);
    } catch (const std::exception& e) {
      failure = "threw";
      what = e.what();
    } catch (...) {
      failure = "threw a non-standard exception";
    }
    if (!writer.started() && !writer.client_gone()) {
      if (!failure) failure = "wrote no response";
      co_await writer.write(plain_response(http::status::internal_server_error, "internal error"));
    }
    co_await writer.flush();
    if (failure) {
      log_line("handler for %s %s %s%s%s", std::string(request.method_string()).c_str(),
               path_of(request).c_str(), failure, what.empty() ? "" : ": ", what.c_str());
    }
    if (writer.taken()) break;
    if (!writer.reusable()) {
      // An unfinished streamed response is cut off without its terminator, so the client sees
      // a truncated body rather than a complete one.
      if (!writer.client_gone()) co_await close_gracefully(stream);
      break;
    }
  }
  stream.close();
}

void log_exception(const std::exception_ptr& error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    log_line("connection failed: %s", e.what());
  } catch (...) {
    log_line("connection failed");
  }
}

// A connection context has one thread, which serialises a connection's handlers by itself; a
// strand there only added a queue hop (and an epoll_wait) to every request. The listening context
// may have several threads, so its connections keep a strand.
asio::any_io_executor next_connection_executor(State& state) {
  const std::vector<asio::io_context*>& contexts = state.options.connection_contexts;
  if (contexts.empty()) return asio::make_strand(state.io);
  return contexts[state.next_context++ % contexts.size()]->get_executor();
}

asio::awaitable<void> accept_loop(std::shared_ptr<State> state) {
  for (;;) {
    tcp::socket socket(next_connection_executor(*state));
    error_code ec;
    co_await state->acceptor.async_accept(socket, with(ec));
    if (state->stopped || ec == asio::error::operation_aborted) break;
    if (ec) {
      log_line("accept failed: %s", ec.message().c_str());
      asio::steady_timer pause(state->acceptor.get_executor(), kAcceptRetryDelay);
      co_await pause.async_wait(with(ec));
      continue;
    }
    auto connection = std::make_shared<Connection>(std::move(socket));
    asio::co_spawn(connection->stream.get_executor(), serve(state, connection), log_exception);
  }
}

class ServerImpl final : public Server {
 public:
  ServerImpl(std::shared_ptr<State> state, uint16_t port) : state_(std::move(state)), port_(port) {}
  ~ServerImpl() override { stop(); }

  uint16_t port() const override { return port_; }

  void stop() override {
    if (state_->stopped.exchange(true)) return;
    asio::post(state_->acceptor.get_executor(), [state = state_] {
      error_code ec;
      state->acceptor.close(ec);
    });
    std::vector<std::shared_ptr<Connection>> open;
    {
      std::lock_guard lock(state_->mutex);
      for (auto& [raw, weak] : state_->connections) {
        if (auto connection = weak.lock()) open.push_back(std::move(connection));
      }
    }
    // A connection busy with a request sees `stopped` when it is done; an idle one is woken here.
    // Both run on the connection's executor, which serialises them, so `waiting` cannot change in
    // between.
    for (auto& connection : open) {
      asio::post(connection->stream.get_executor(), [connection] {
        if (connection->waiting) connection->stream.cancel();
      });
    }
  }

  size_t open_connections() const override { return state_->open; }

 private:
  std::shared_ptr<State> state_;
  uint16_t port_;
};

}  // namespace

std::unique_ptr<Server> Server::listen(asio::io_context& io, const tcp::endpoint& endpoint,
                                       ServerOptions options, Handler handler, std::string* error) {
  auto state = std::make_shared<State>(io, std::move(options), std::move(handler));
  auto fail = [&](const char* what, const error_code& ec) -> std::unique_ptr<Server> {
    if (error)
      *error = std::string(what) + " " + endpoint.address().to_string() + ":" +
               std::to_string(endpoint.port()) + ": " + ec.message();
    return nullptr;
  };
  error_code ec;
  tcp::acceptor& acceptor = state->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail("open", ec);
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail("set SO_REUSEADDR on", ec);
  acceptor.bind(endpoint, ec);
  if (ec) return fail("bind", ec);
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen on", ec);
  uint16_t port = acceptor.local_endpoint(ec).port();
  if (ec) return fail("local address of", ec);
  asio::co_spawn(acceptor.get_executor(), accept_loop(state), log_exception);
  return std::make_unique<ServerImpl>(std::move(state), port);
}

}  // namespace airlock::control::http
