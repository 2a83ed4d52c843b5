// The gateway's HTTP/1.1 server: Boost.Beast over Asio, one coroutine per connection, keep-alive,
// a header-read timeout, a keep-alive idle timeout and a body limit. The server knows nothing of
// LLMs: it hands each request to a handler that answers through a ResponseWriter, either whole
// or as a stream of chunks written as they are produced (never buffered whole).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>  // boost/asio/awaitable.hpp (1.74) uses std::exchange without it
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

namespace airlock::control::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

using Request = beast::http::request<beast::http::string_body>;
using Response = beast::http::response<beast::http::string_body>;
using ResponseHeader = beast::http::response_header<>;

struct ServerOptions {
  std::chrono::milliseconds header_timeout{30'000};   // from connection/previous response
  std::chrono::milliseconds body_timeout{120'000};    // to read a whole request body
  std::chrono::milliseconds keepalive_idle{120'000};  // idle keep-alive connection closed
  std::chrono::milliseconds write_timeout{120'000};   // one write to a stalled client
  size_t max_header_bytes = 64 * 1024;
  size_t max_body_bytes = 32u << 20;  // Anthropic's own limit
  // Where accepted connections run, in turn; empty: the io_context the server listens on. Each
  // must be run by exactly one thread. With one single-threaded io_context per thread, a request,
  // its upstream exchange and its timers stay on one thread: one io_context shared by several
  // threads handed each request's steps between threads, which cost more CPU than the request's own
  // work. The accept loop holds a socket of the context it hands the next connection to, and
  // connections hold the listening socket: no context may be destroyed while another still holds
  // pending handlers.
  std::vector<asio::io_context*> connection_contexts;
};

// What the server learnt about the request before the handler runs.
enum class BodyStatus {
  kComplete,  // request.body() holds the whole body
  kTooLarge,  // over max_body_bytes (by Content-Length or while reading): body not read; the
              // handler should answer 413; the connection is closed after the response
};

struct ClientInfo {
  asio::ip::address remote_address;
  uint16_t remote_port = 0;
  asio::ip::address local_address;
  uint16_t local_port = 0;
};

// The connection lent to a handler that switches it to another protocol (a WebSocket).
struct TakenConnection {
  beast::tcp_stream* stream;
  beast::flat_buffer* buffer;  // bytes the client sent past the request, if any
};

// Answers one request. Either write() once, or start() then chunk()* then finish(), or take the
// connection. Every call returns false once the client has gone (write error or timeout); the
// handler then stops and cleans up (e.g. cancels its upstream request).
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  virtual asio::awaitable<bool> write(Response response) = 0;
  // Sends the header. Without Content-Length the body is sent with chunked transfer encoding.
  // With `body_follows` the header is held to go out in one write with the next chunk() or
  // finish_with(), for a caller that already has body bytes at hand (a response with a
  // Content-Length is always held so).
  virtual asio::awaitable<bool> start(ResponseHeader header, bool body_follows) = 0;
  asio::awaitable<bool> start(ResponseHeader header) { return start(std::move(header), false); }
  virtual asio::awaitable<bool> chunk(std::string_view data) = 0;
  virtual asio::awaitable<bool> finish() = 0;
  // The last piece of the body and the end of the response, in one write.
  virtual asio::awaitable<bool> finish_with(std::string_view data) = 0;
  virtual bool started() const = 0;
  virtual bool client_gone() const = 0;
  // Lends the connection to the handler for another protocol after an upgrade request: until the
  // handler returns it owns every read, write and timeout of the stream, and the server writes
  // nothing more. The server closes the connection once the handler returns. Nullopt once a
  // response has started or the client has gone.
  virtual std::optional<TakenConnection> take_connection() = 0;
};

using Handler = std::function<asio::awaitable<void>(
    Request& request, BodyStatus body_status, const ClientInfo& client, ResponseWriter& writer)>;

class Server {
 public:
  // Binds and starts accepting on `io`. Port 0 picks a free port (see port()).
  static std::unique_ptr<Server> listen(asio::io_context& io,
                                        const asio::ip::tcp::endpoint& endpoint,
                                        ServerOptions options, Handler handler, std::string* error);
  virtual ~Server() = default;
  virtual uint16_t port() const = 0;
  // Stops accepting; open connections finish their current request and close.
  virtual void stop() = 0;
  // Connections open right now (for the memory-per-stream measurement and tests).
  virtual size_t open_connections() const = 0;
};

}  // namespace airlock::control::http
