// The gateway's client to providers: HTTP/1.1 over TCP or TLS (OpenSSL, certificate and host
// name verified), pooled keep-alive connections per origin, and explicit timeouts for connect,
// first byte and the idle gap between body chunks, but no total cap: a long stream lives as long
// as it keeps sending. Responses are delivered chunk by chunk as they arrive.
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

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "control/http/server.h"

namespace airlock::control::http {

// "https://api.anthropic.com", "http://127.0.0.1:8080/v1" (a path prefix is kept and
// prepended to request targets).
struct Url {
  bool tls = false;
  std::string host;
  uint16_t port = 0;
  std::string base_path;  // "" or "/prefix" without trailing '/'
  static std::optional<Url> parse(std::string_view text, std::string* error = nullptr);
  std::string origin() const;  // "https://host:port"
};

struct UpstreamOptions {
  std::chrono::milliseconds connect_timeout{10'000};      // DNS + TCP + TLS handshake
  std::chrono::milliseconds first_byte_timeout{600'000};  // request sent -> response header
  std::chrono::milliseconds idle_timeout{300'000};        // between two body reads
  size_t max_idle_per_origin = 64;
  std::string ca_file;  // extra trust anchors (PEM); empty: the system store only
};

struct UpstreamResult {
  enum class Error {
    kNone,
    kResolve,  // host name did not resolve
    kConnect,  // refused / unreachable
    kTls,      // handshake or certificate verification failed
    kConnectTimeout,
    kFirstByteTimeout,
    kIdleTimeout,
    kProtocol,   // malformed response
    kCancelled,  // on_headers/on_body returned false
    kClosed,     // upstream closed mid-response
  };
  Error error = Error::kNone;
  std::string message;  // for logs and the request log; never contains header values
  bool headers_received = false;
};

std::string_view upstream_error_name(UpstreamResult::Error error);

// Called once with the response header; returning false cancels (the connection is closed).
// `body_at_hand`: body bytes came with the header and reach on_body without another wait, so a
// relay can send its header together with them.
using OnHeaders =
    std::function<asio::awaitable<bool>(const ResponseHeader& header, bool body_at_hand)>;
// Called for each piece of the (de-chunked) body as it arrives, with `last` on the piece that
// completes a body of known end (length or chunked); returning false cancels.
using OnBody = std::function<asio::awaitable<bool>(std::string_view data, bool last)>;

// A WebSocket to a provider (the Responses API's WebSocket mode): its own connection, never
// pooled. One read and one write may be in flight at once, on the executor of the coroutine that
// opened it. Pings keep it open while idle; a provider that stops answering them ends it after
// the pool's idle_timeout.
class UpstreamSocket {
 public:
  virtual ~UpstreamSocket() = default;
  // The next whole message; false once the socket has closed or failed (see why_closed()).
  virtual asio::awaitable<bool> read(std::string& message, bool& text) = 0;
  virtual asio::awaitable<bool> write(std::string_view message, bool text) = 0;
  // `hook` runs whenever a read is about to wait on the network: every message the provider has
  // sent so far has been read. A relay that holds its writes back sends them then.
  virtual void on_drained(std::function<void()> hook) = 0;
  // Sends a close frame and waits for the provider's, at most the pool's connect_timeout.
  virtual asio::awaitable<void> close(uint16_t code, std::string_view reason) = 0;
  // The provider's close code (0: none received) and why the socket ended, for the request log.
  virtual uint16_t close_code() const = 0;
  virtual std::string why_closed() const = 0;
};

struct SocketResult {
  std::unique_ptr<UpstreamSocket> socket;  // null when the upgrade failed
  UpstreamResult result;
  // The provider's answer when it refused the upgrade with an HTTP response.
  int status = 0;
  std::string body;
};

class UpstreamPool {
 public:
  // Connections are opened on the executor of the coroutine that sends, and pooled per
  // execution context.
  static std::unique_ptr<UpstreamPool> create(UpstreamOptions options, std::string* error);
  virtual ~UpstreamPool() = default;
  // Sends `request` to `url` (its target is prefixed with url.base_path, Host is set, the
  // body's Content-Length is set) on a pooled or new connection; a stale pooled connection
  // that fails before any response byte is retried once on a fresh one.
  virtual asio::awaitable<UpstreamResult> send(const Url& url, Request request,
                                               OnHeaders on_headers, OnBody on_body) = 0;
  // Opens a WebSocket to `url` with the header of `handshake` (its target is prefixed with
  // url.base_path; Host and the WebSocket fields are set here), within connect_timeout.
  virtual asio::awaitable<SocketResult> open_websocket(const Url& url, Request handshake) = 0;
  virtual size_t idle_connections() const = 0;
  // Closes the idle connections and keeps none from now on. Called at shutdown: an idle
  // connection belongs to the io_context that opened it, which may be destroyed before the pool.
  virtual void stop_pooling() = 0;
};

}  // namespace airlock::control::http
