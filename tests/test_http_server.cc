#include "control/http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "tests/http_test_util.h"

namespace airlock::control::http {
namespace {

namespace bhttp = beast::http;
using testing::IoThreads;
using testing::Signal;
using namespace std::chrono_literals;

// A blocking client on a plain socket. The receive timeout is only a safety net so that a
// server that never answers fails the test instead of hanging it.
class Client {
 public:
  explicit Client(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    timeval timeout{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads until `needle` has arrived (kept for read_response). False on close or timeout.
  bool wait_for(std::string_view needle) {
    while (pending_.find(needle) == std::string::npos) {
      if (receive() <= 0) return false;
    }
    return true;
  }

  std::optional<bhttp::response<bhttp::string_body>> read_response() {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.eager(true);
    for (;;) {
      beast::error_code ec;
      size_t used = pending_.empty() ? 0 : parser.put(asio::buffer(pending_), ec);
      pending_.erase(0, used);
      if (ec && ec != bhttp::error::need_more) return std::nullopt;
      if (parser.is_done()) return parser.release();
      if (used > 0 && !pending_.empty()) continue;
      ssize_t n = receive();
      if (n < 0) return std::nullopt;
      if (n == 0) {
        parser.put_eof(ec);
        if (ec || !parser.is_done()) return std::nullopt;
        return parser.release();
      }
    }
  }

  // Bytes that have arrived and are not read yet, without waiting.
  size_t arrived() {
    char buffer[4096];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, MSG_PEEK | MSG_DONTWAIT);
    return pending_.size() + (n > 0 ? static_cast<size_t>(n) : 0);
  }

  // True once the server has closed the connection (unread data is discarded).
  bool closed_by_peer() {
    for (;;) {
      pending_.clear();
      ssize_t n = receive();
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

  // Everything the server sends until it closes the connection.
  std::string read_until_close() {
    while (receive() > 0) {
    }
    return std::exchange(pending_, {});
  }

  // Closes with RST, the way a client that crashed or was killed goes away.
  void abort() {
    linger option{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &option, sizeof option);
    ::close(fd_);
    fd_ = -1;
  }

 private:
  ssize_t receive() {
    char buffer[4096];
    ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n > 0) pending_.append(buffer, static_cast<size_t>(n));
    return n;
  }

  int fd_;
  bool connected_ = false;
  std::string pending_;
};

Response text_response(bhttp::status status, std::string body) {
  Response response{status, 11};
  response.set(bhttp::field::content_type, "text/plain");
  response.body() = std::move(body);
  return response;
}

class ServerTest : public ::testing::Test {
 protected:
  void start(ServerOptions options, Handler handler) {
    std::string error;
    server_ = Server::listen(threads_.io(), {asio::ip::make_address("127.0.0.1"), 0}, options,
                             std::move(handler), &error);
    ASSERT_TRUE(server_) << error;
  }
  void TearDown() override {
    if (server_) server_->stop();
    threads_.join();
  }

  // Answers with "<method> <target> <body>".
  void start_echo(ServerOptions options = {}) {
    start(options,
          [](Request& request, BodyStatus status, const ClientInfo&,
             ResponseWriter& writer) -> asio::awaitable<void> {
            if (status == BodyStatus::kTooLarge) {
              co_await writer.write(text_response(bhttp::status::payload_too_large, "too large"));
              co_return;
            }
            co_await writer.write(text_response(
                bhttp::status::ok, std::string(request.method_string()) + " " +
                                       std::string(request.target()) + " " + request.body()));
          });
  }

  IoThreads threads_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  start_echo();
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto first = client.read_response();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->result(), bhttp::status::ok);
  EXPECT_EQ(first->body(), "GET /first ");
  EXPECT_TRUE(first->keep_alive());

  ASSERT_TRUE(client.send("POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
  auto second = client.read_response();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->body(), "POST /second hello");
  EXPECT_EQ(server_->open_connections(), 1u);
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  start_echo();
  Client client(server_->port());
  ASSERT_TRUE(client.send(
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto a = client.read_response();
  auto b = client.read_response();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->body(), "GET /a ");
  EXPECT_EQ(b->body(), "GET /b ");
}

TEST_F(ServerTest, ConnectionCloseIsHonoured) {
  start_echo();
  Client client(server_->port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result(), bhttp::status::ok);
  EXPECT_FALSE(response->keep_alive());
  EXPECT_TRUE(client.closed_by_peer());
}

TEST_F(ServerTest, ChunkedRequestBodyIsDecoded) {
  start_echo();
  Client client(server_->port());
  ASSERT_TRUE(
      client.send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->body(), "POST /c abcde");
}

TEST_F(ServerTest, ContentLengthOverLimitIsTooLargeWithoutContinue) {
  ServerOptions options;
  options.max_body_bytes = 1024;
  std::promise<std::pair<BodyStatus, size_t>> seen;
  start(options,
        [&seen](Request& request, BodyStatus status, const ClientInfo&,
                ResponseWriter& writer) -> asio::awaitable<void> {
          seen.set_value({status, request.body().size()});
          co_await writer.write(text_response(bhttp::status::payload_too_large, "too large"));
        });
  Client client(server_->port());
  // The client asks before sending: it must get the 413, not a 100 Continue.
  ASSERT_TRUE(client.send(
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n"));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result(), bhttp::status::payload_too_large);
  auto [status, body_size] = seen.get_future().get();
  EXPECT_EQ(status, BodyStatus::kTooLarge);
  EXPECT_EQ(body_size, 0u);
  EXPECT_TRUE(client.closed_by_peer());
}

TEST_F(ServerTest, ChunkedBodyOverLimitIsTooLarge) {
  ServerOptions options;
  options.max_body_bytes = 1024;
  std::promise<BodyStatus> seen;
  start(options,
        [&seen](Request&, BodyStatus status, const ClientInfo&,
                ResponseWriter& writer) -> asio::awaitable<void> {
          seen.set_value(status);
          co_await writer.write(text_response(bhttp::status::payload_too_large, "too large"));
        });
  Client client(server_->port());
  std::string chunk = "258\r\n" + std::string(600, 'a') + "\r\n";
  ASSERT_TRUE(client.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                          chunk + chunk + chunk + "0\r\n\r\n"));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result(), bhttp::status::payload_too_large);
  EXPECT_EQ(seen.get_future().get(), BodyStatus::kTooLarge);
  EXPECT_TRUE(client.closed_by_peer());
}

TEST_F(ServerTest, ExpectContinueIsAnswered) {
  start_echo();
  Client client(server_->port());
  ASSERT_TRUE(client.send(
      "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = client.read_response();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->result(), bhttp::status::continue_);
  ASSERT_TRUE(client.send("hello"));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->body(), "POST /e hello");
}

TEST_F(ServerTest, MalformedRequestGets400AndClose) {
  start_echo();
  Client client(server_->port());
  ASSERT_TRUE(client.send("this is not http\r\n\r\n"));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result(), bhttp::status::bad_request);
  EXPECT_TRUE(client.closed_by_peer());
}

TEST_F(ServerTest, OversizedHeaderGets431) {
  ServerOptions options;
  options.max_header_bytes = 1024;
  start_echo(options);
  Client client(server_->port());
  ASSERT_TRUE(
      client.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'b') + "\r\n\r\n"));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result(), bhttp::status::request_header_fields_too_large);
}

TEST_F(ServerTest, HeaderTimeoutClosesSlowClient) {
  ServerOptions options;
  options.header_timeout = 200ms;
  start_echo(options);
  Client client(server_->port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: x\r\n"));
  EXPECT_TRUE(client.closed_by_peer());
}

TEST_F(ServerTest, IdleKeepAliveConnectionIsClosed) {
  ServerOptions options;
  options.keepalive_idle = 200ms;
  start_echo(options);
  Client client(server_->port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(client.read_response());
  EXPECT_TRUE(client.closed_by_peer());
}

TEST_F(ServerTest, StreamedChunksReachClientBeforeTheNextIsWritten) {
  Signal got_first, got_second;
  start({},
        [&](Request&, BodyStatus, const ClientInfo&,
            ResponseWriter& writer) -> asio::awaitable<void> {
          ResponseHeader header;
          header.result(bhttp::status::ok);
          header.set(bhttp::field::content_type, "text/event-stream");
          co_await writer.start(std::move(header));
          co_await writer.chunk("data: first\n\n");
          co_await got_first.wait();
          co_await writer.chunk("data: second\n\n");
          co_await got_second.wait();
          co_await writer.chunk("data: third\n\n");
          co_await writer.finish();
        });
  Client client(server_->port());
  ASSERT_TRUE(client.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  // Each piece can only arrive if the previous one was delivered while the handler was waiting.
  ASSERT_TRUE(client.wait_for("data: first"));
  got_first.set();
  ASSERT_TRUE(client.wait_for("data: second"));
  got_second.set();
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_TRUE(response->chunked());
  EXPECT_EQ(response->body(), "data: first\n\ndata: second\n\ndata: third\n\n");
}

TEST_F(ServerTest, HeaderHeldForItsBodyGoesOutWithItAndTheEnd) {
  std::promise<void> started;
  Signal proceed;
  start({},
        [&](Request& request, BodyStatus, const ClientInfo&,
            ResponseWriter& writer) -> asio::awaitable<void> {
          ResponseHeader header;
          header.result(bhttp::status::ok);
          header.set(bhttp::field::content_type, "text/event-stream");
          co_await writer.start(std::move(header), /*body_follows=*/true);
          if (request.target() == "/whole") {
            co_await writer.finish_with("data: whole\n\n");
            co_return;
          }
          started.set_value();
          co_await proceed.wait();
          co_await writer.chunk("data: first\n\n");
          co_await writer.finish_with("data: last\n\n");
        });
  Client client(server_->port());
  ASSERT_TRUE(client.send("GET /pieces HTTP/1.1\r\nHost: x\r\n\r\n"));
  started.get_future().wait();
  // start() has returned: a header written then would already be in the client's socket.
  EXPECT_EQ(client.arrived(), 0u);
  proceed.set();
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_TRUE(response->chunked());
  EXPECT_EQ(response->body(), "data: first\n\ndata: last\n\n");
  // finish_with() ended the chunked body properly, so the connection goes on.
  ASSERT_TRUE(client.send("GET /whole HTTP/1.1\r\nHost: x\r\n\r\n"));
  response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->body(), "data: whole\n\n");
}

TEST_F(ServerTest, LengthDelimitedStreamedResponseIsWholeAndKeepsConnection) {
  start(
      {},
      [](Request&, BodyStatus, const ClientInfo&, ResponseWriter& writer) -> asio::awaitable<void> {
        ResponseHeader header;
        header.result(bhttp::status::ok);
        header.set(bhttp::field::content_length, "11");
        co_await writer.start(std::move(header));
        co_await writer.chunk("hello ");
        co_await writer.chunk("world");
        co_await writer.finish();
      });
  Client client(server_->port());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), bhttp::status::ok);
    EXPECT_FALSE(response->chunked());
    EXPECT_EQ(response->body(), "hello world");
  }
}

TEST_F(ServerTest, LengthDelimitedResponseWithoutBodyStillSendsHeaderThenCloses) {
  start(
      {},
      [](Request&, BodyStatus, const ClientInfo&, ResponseWriter& writer) -> asio::awaitable<void> {
        ResponseHeader header;
        header.result(bhttp::status::ok);
        header.set(bhttp::field::content_length, "5");
        co_await writer.start(std::move(header));
      });
  Client client(server_->port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string received = client.read_until_close();
  EXPECT_TRUE(received.starts_with("HTTP/1.1 200 OK\r\n")) << received;
  EXPECT_NE(received.find("Content-Length: 5\r\n"), std::string::npos) << received;
}

TEST_F(ServerTest, ChunkReturnsFalseOnceClientIsGone) {
  Signal client_closed;
  std::promise<std::pair<bool, bool>> outcome;  // chunk() returned false, client_gone()
  ServerOptions options;
  options.write_timeout = 5'000ms;
  start(options,
        [&](Request&, BodyStatus, const ClientInfo&,
            ResponseWriter& writer) -> asio::awaitable<void> {
          ResponseHeader header;
          header.result(bhttp::status::ok);
          co_await writer.start(std::move(header));
          co_await writer.chunk("hello");
          co_await client_closed.wait();
          bool refused = false;
          for (int i = 0; i < 10'000 && !refused; ++i) {
            refused = !co_await writer.chunk(std::string(1024, 'x'));
          }
          outcome.set_value({refused, writer.client_gone()});
        });
  Client client(server_->port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(client.wait_for("hello"));
  client.abort();
  client_closed.set();
  auto result = outcome.get_future();
  ASSERT_EQ(result.wait_for(30s), std::future_status::ready);
  auto [refused, gone] = result.get();
  EXPECT_TRUE(refused);
  EXPECT_TRUE(gone);
}

TEST_F(ServerTest, HandlerExceptionBecomes500AndServerKeepsServing) {
  start({},
        [](Request& request, BodyStatus, const ClientInfo&,
           ResponseWriter& writer) -> asio::awaitable<void> {
          if (request.target() == "/throw") throw std::runtime_error("handler bug");
          if (request.target() == "/ok")
            co_await writer.write(text_response(bhttp::status::ok, "fine"));
        });
  Client client(server_->port());
  ASSERT_TRUE(client.send("GET /throw HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto thrown = client.read_response();
  ASSERT_TRUE(thrown);
  EXPECT_EQ(thrown->result(), bhttp::status::internal_server_error);

  ASSERT_TRUE(client.send("GET /silent HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto silent = client.read_response();
  ASSERT_TRUE(silent);
  EXPECT_EQ(silent->result(), bhttp::status::internal_server_error);

  Client other(server_->port());
  ASSERT_TRUE(other.send("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto ok = other.read_response();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body(), "fine");
}

TEST_F(ServerTest, HandlerSeesClientAddresses) {
  std::promise<ClientInfo> seen;
  start({},
        [&seen](Request&, BodyStatus, const ClientInfo& client,
                ResponseWriter& writer) -> asio::awaitable<void> {
          seen.set_value(client);
          co_await writer.write(text_response(bhttp::status::ok, ""));
        });
  Client client(server_->port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(client.read_response());
  ClientInfo info = seen.get_future().get();
  EXPECT_EQ(info.remote_address.to_string(), "127.0.0.1");
  EXPECT_NE(info.remote_port, 0);
  EXPECT_EQ(info.local_port, server_->port());
}

// The gateway runs one io_context per thread: connections are dealt to them in turn, and every
// request on a connection runs on that connection's io_context.
TEST_F(ServerTest, ConnectionsAreDealtToTheConnectionContextsInTurn) {
  std::mutex mutex;
  std::map<std::string, const asio::execution_context*> context_of_target;
  IoThreads first(1);  // a connection context has one thread
  IoThreads second(1);
  // The accept loop waits with a socket made on the next connection context, so its own context
  // must go before those (as in airlock-control's shutdown); the fixture's would go after them.
  IoThreads acceptor;
  ServerOptions options;
  options.connection_contexts = {&first.io(), &second.io()};
  std::string error;
  std::unique_ptr<Server> server = Server::listen(
      acceptor.io(), {asio::ip::make_address("127.0.0.1"), 0}, options,
      [&](Request& request, BodyStatus, const ClientInfo&,
          ResponseWriter& writer) -> asio::awaitable<void> {
        const auto executor = co_await asio::this_coro::executor;
        {
          std::lock_guard lock(mutex);
          context_of_target[std::string(request.target())] =
              &asio::query(executor, asio::execution::context);
        }
        co_await writer.write(text_response(bhttp::status::ok, ""));
      },
      &error);
  ASSERT_TRUE(server) << error;
  auto request = [&](Client& client, const std::string& target) {
    ASSERT_TRUE(client.send("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(client.read_response());
  };
  Client a(server->port());
  request(a, "/a1");
  Client b(server->port());
  request(b, "/b1");
  Client c(server->port());
  request(c, "/c1");
  request(a, "/a2");
  request(b, "/b2");
  server->stop();
  server.reset();

  std::lock_guard lock(mutex);
  EXPECT_EQ(context_of_target["/a1"], &first.io());
  EXPECT_EQ(context_of_target["/b1"], &second.io());
  EXPECT_EQ(context_of_target["/c1"], &first.io());
  EXPECT_EQ(context_of_target["/a2"], &first.io());
  EXPECT_EQ(context_of_target["/b2"], &second.io());
}

TEST_F(ServerTest, StopClosesIdleConnections) {
  start_echo();
  Client client(server_->port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(client.read_response());
  server_->stop();
  EXPECT_TRUE(client.closed_by_peer());
}

}  // namespace
}  // namespace airlock::control::http
