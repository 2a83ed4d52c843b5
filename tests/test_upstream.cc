#include "control/http/upstream.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "tests/http_test_util.h"
#include "tests/tls_test_util.h"

namespace airlock::control::http {
namespace {

namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using control::testing::Certificates;
using testing::IoThreads;
using testing::Signal;
using Error = UpstreamResult::Error;
using namespace std::chrono_literals;

struct Fetched {
  UpstreamResult result;
  unsigned status = 0;
  std::vector<std::string> pieces;
  bool body_at_hand = false;
  std::vector<bool> last;  // on_body's `last`, piece by piece
  std::string body() const {
    std::string all;
    for (const auto& piece : pieces) all += piece;
    return all;
  }
};

Request make_request(bhttp::verb method, std::string target, std::string body = "") {
  Request request{method, target, 11};
  request.body() = std::move(body);
  return request;
}

Url parse(std::string_view text) {
  std::string error;
  auto url = Url::parse(text, &error);
  EXPECT_TRUE(url) << error;
  return url.value_or(Url{});
}

class UpstreamTest : public ::testing::Test {
 protected:
  void TearDown() override {
    release_.set();
    if (server_) server_->stop();
    threads_.join();
  }

  void start_server(Handler handler, ServerOptions options = {}) {
    std::string error;
    server_ = Server::listen(threads_.io(), {asio::ip::make_address("127.0.0.1"), 0}, options,
                             std::move(handler), &error);
    ASSERT_TRUE(server_) << error;
  }

  // Answers "<method> <target> host=<Host> body=<body>" and records each client port.
  void start_echo(ServerOptions options = {}) {
    start_server(
        [this](Request& request, BodyStatus, const ClientInfo& client,
               ResponseWriter& writer) -> asio::awaitable<void> {
          {
            std::lock_guard lock(mutex_);
            client_ports_.insert(client.remote_port);
          }
          Response response{bhttp::status::ok, 11};
          response.body() =
              std::string(request.method_string()) + " " + std::string(request.target()) +
              " host=" + std::string(request[bhttp::field::host]) + " body=" + request.body();
          co_await writer.write(std::move(response));
        },
        options);
  }

  std::unique_ptr<UpstreamPool> make_pool(UpstreamOptions options = {}) {
    std::string error;
    auto pool = UpstreamPool::create(std::move(options), &error);
    EXPECT_TRUE(pool) << error;
    return pool;
  }

  Url server_url(std::string_view path = "") {
    return parse("http://127.0.0.1:" + std::to_string(server_->port()) + std::string(path));
  }

  // Runs one send on the io threads and waits for it. `on_piece` may cancel by returning false.
  // Like a server handler, the caller runs on a strand (send() needs one on a threaded io).
  Fetched fetch(UpstreamPool& pool, const Url& url, Request request,
                std::function<bool(std::string_view)> on_piece = {}) {
    return fetch_on(threads_.io(), pool, url, std::move(request), std::move(on_piece));
  }

  Fetched fetch_on(asio::io_context& io, UpstreamPool& pool, const Url& url, Request request,
                   std::function<bool(std::string_view)> on_piece = {}) {
    auto fetched = std::make_shared<Fetched>();
    auto done = asio::co_spawn(
        asio::make_strand(io),
        [&pool, url, request, fetched, on_piece]() -> asio::awaitable<void> {
          // Named, not temporaries in the co_await expression: GCC 12 destroys such closures
          // twice.
          OnHeaders on_headers = [fetched](const ResponseHeader& header,
                                           bool body_at_hand) -> asio::awaitable<bool> {
            fetched->status = header.result_int();
            fetched->body_at_hand = body_at_hand;
            co_return true;
          };
          OnBody on_body = [fetched, on_piece](std::string_view data,
                                               bool last) -> asio::awaitable<bool> {
            fetched->pieces.emplace_back(data);
            fetched->last.push_back(last);
            co_return !on_piece || on_piece(data);
          };
          fetched->result =
              co_await pool.send(url, request, std::move(on_headers), std::move(on_body));
        },
        asio::use_future);
    done.get();
    return *fetched;
  }

  size_t distinct_clients() {
    std::lock_guard lock(mutex_);
    return client_ports_.size();
  }

  IoThreads threads_;
  Signal release_;  // lets handlers that wait for it finish at tear-down
  std::mutex mutex_;
  std::set<uint16_t> client_ports_;
  std::unique_ptr<Server> server_;
};

TEST(UrlTest, ParsesSchemesHostsPortsAndPrefixes) {
  auto anthropic = Url::parse("https://api.anthropic.com");
  ASSERT_TRUE(anthropic);
  EXPECT_TRUE(anthropic->tls);
  EXPECT_EQ(anthropic->host, "api.anthropic.com");
  EXPECT_EQ(anthropic->port, 443);
  EXPECT_EQ(anthropic->base_path, "");
  EXPECT_EQ(anthropic->origin(), "https://api.anthropic.com:443");

  auto local = Url::parse("http://127.0.0.1:8080/v1/");
  ASSERT_TRUE(local);
  EXPECT_FALSE(local->tls);
  EXPECT_EQ(local->port, 8080);
  EXPECT_EQ(local->base_path, "/v1");

  auto v6 = Url::parse("HTTP://[::1]:81/a/b");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->base_path, "/a/b");
  EXPECT_EQ(v6->origin(), "http://[::1]:81");
}

TEST(UrlTest, RejectsWhatCouldRedirectTheKey) {
  for (const char* text :
       {"ftp://example.com", "example.com", "https://", "https://user@evil.test",
        "https://api.openai.com@evil.test/v1", "https://host/#frag", "https://host/v1?x=1",
        "https://host:0", "https://host:65536", "https://host:", "https://ho st",
        "https://host/../admin", "https://[::1", "https://[zz]:1", "https://host/a b"}) {
    std::string error;
    EXPECT_FALSE(Url::parse(text, &error)) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
}

TEST_F(UpstreamTest, PlainRequestAndResponse) {
  start_echo();
  auto pool = make_pool();
  Url url = server_url("/v1");
  Fetched fetched = fetch(*pool, url, make_request(bhttp::verb::post, "/messages", "hi"));
  EXPECT_EQ(fetched.result.error, Error::kNone) << fetched.result.message;
  EXPECT_TRUE(fetched.result.headers_received);
  EXPECT_EQ(fetched.status, 200u);
  EXPECT_EQ(fetched.body(),
            "POST /v1/messages host=127.0.0.1:" + std::to_string(server_->port()) + " body=hi");
}

TEST_F(UpstreamTest, StreamedBodyArrivesPieceByPiece) {
  Signal got_one;
  start_server([&](Request&, BodyStatus, const ClientInfo&,
                   ResponseWriter& writer) -> asio::awaitable<void> {
    ResponseHeader header;
    header.result(bhttp::status::ok);
    co_await writer.start(std::move(header));
    co_await writer.chunk("one");
    // Only continues once the client has seen "one": the response cannot have been buffered.
    co_await got_one.wait();
    co_await writer.finish_with("two");
  });
  auto pool = make_pool();
  Fetched fetched =
      fetch(*pool, server_url(), make_request(bhttp::verb::get, "/"), [&](std::string_view data) {
        if (data.find("one") != std::string_view::npos) got_one.set();
        return true;
      });
  EXPECT_EQ(fetched.result.error, Error::kNone) << fetched.result.message;
  EXPECT_EQ(fetched.pieces, (std::vector<std::string>{"one", "two"}));
  // Only the piece that ended the body says so.
  EXPECT_EQ(fetched.last, (std::vector<bool>{false, true}));
}

TEST_F(UpstreamTest, ChunksThatArriveTogetherAreHandedOnAsOnePiece) {
  // A provider's burst of events: header and several chunks in one segment.
  start_server(
      [](Request&, BodyStatus, const ClientInfo&, ResponseWriter& writer) -> asio::awaitable<void> {
        std::optional<TakenConnection> connection = writer.take_connection();
        if (!connection) co_return;
        static constexpr std::string_view kResponse =
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
            "9\r\ndata: a\n\n\r\n9\r\ndata: b\n\n\r\n9\r\ndata: c\n\n\r\n0\r\n\r\n";
        boost::system::error_code ec;
        co_await asio::async_write(*connection->stream, asio::buffer(kResponse),
                                   asio::redirect_error(asio::use_awaitable, ec));
      });
  auto pool = make_pool();
  Fetched fetched = fetch(*pool, server_url(), make_request(bhttp::verb::get, "/"));
  EXPECT_EQ(fetched.result.error, Error::kNone) << fetched.result.message;
  EXPECT_TRUE(fetched.body_at_hand);
  EXPECT_EQ(fetched.pieces, std::vector<std::string>{"data: a\n\ndata: b\n\ndata: c\n\n"});
  EXPECT_EQ(fetched.last, std::vector<bool>{true});
}

TEST_F(UpstreamTest, HeadResponseHasNoBody) {
  start_echo();
  auto pool = make_pool();
  Fetched head = fetch(*pool, server_url(), make_request(bhttp::verb::head, "/"));
  EXPECT_EQ(head.result.error, Error::kNone) << head.result.message;
  EXPECT_TRUE(head.pieces.empty());
  // The connection is still in step: the next request on it works.
  Fetched get = fetch(*pool, server_url(), make_request(bhttp::verb::get, "/after"));
  EXPECT_EQ(get.result.error, Error::kNone) << get.result.message;
  EXPECT_EQ(get.body(), "GET /after host=127.0.0.1:" + std::to_string(server_->port()) + " body=");
  EXPECT_EQ(distinct_clients(), 1u);
}

TEST_F(UpstreamTest, ReusesPooledConnection) {
  start_echo();
  auto pool = make_pool();
  Fetched first = fetch(*pool, server_url(), make_request(bhttp::verb::get, "/1"));
  EXPECT_EQ(first.result.error, Error::kNone) << first.result.message;
  EXPECT_EQ(pool->idle_connections(), 1u);
  Fetched second = fetch(*pool, server_url(), make_request(bhttp::verb::get, "/2"));
  EXPECT_EQ(second.result.error, Error::kNone) << second.result.message;
  EXPECT_EQ(distinct_clients(), 1u);
  EXPECT_EQ(pool->idle_connections(), 1u);
}

// A pooled connection completes its I/O on the io_context that opened it, so a request running
// on another io_context (another thread, as the gateway runs one per thread) gets its own.
TEST_F(UpstreamTest, PooledConnectionsStayOnTheIoContextThatOpenedThem) {
  start_echo();
  auto pool = make_pool();
  IoThreads other;
  EXPECT_EQ(fetch(*pool, server_url(), make_request(bhttp::verb::get, "/a")).status, 200);
  EXPECT_EQ(fetch_on(other.io(), *pool, server_url(), make_request(bhttp::verb::get, "/b")).status,
            200);
  EXPECT_EQ(distinct_clients(), 2u);
  EXPECT_EQ(pool->idle_connections(), 2u);
  EXPECT_EQ(fetch_on(other.io(), *pool, server_url(), make_request(bhttp::verb::get, "/c")).status,
            200);
  EXPECT_EQ(fetch(*pool, server_url(), make_request(bhttp::verb::get, "/d")).status, 200);
  EXPECT_EQ(distinct_clients(), 2u);
  pool->stop_pooling();
  EXPECT_EQ(pool->idle_connections(), 0u);
  EXPECT_EQ(fetch(*pool, server_url(), make_request(bhttp::verb::get, "/e")).status, 200);
  EXPECT_EQ(pool->idle_connections(), 0u);
}

TEST_F(UpstreamTest, StalePooledConnectionIsRetriedOnAFreshOne) {
  ServerOptions options;
  options.keepalive_idle = 50ms;
  start_echo(options);
  auto pool = make_pool();
  Fetched first = fetch(*pool, server_url(), make_request(bhttp::verb::post, "/1", "a"));
  EXPECT_EQ(first.result.error, Error::kNone) << first.result.message;
  ASSERT_EQ(pool->idle_connections(), 1u);
  // Wait (by state, not by time) until the server has dropped the idle connection.
  for (int i = 0; i < 10'000 && server_->open_connections() > 0; ++i)
    std::this_thread::sleep_for(1ms);
  ASSERT_EQ(server_->open_connections(), 0u);
  Fetched second = fetch(*pool, server_url(), make_request(bhttp::verb::post, "/2", "b"));
  EXPECT_EQ(second.result.error, Error::kNone) << second.result.message;
  EXPECT_EQ(distinct_clients(), 2u);
}

TEST_F(UpstreamTest, RefusedPortIsConnectError) {
  uint16_t port;
  {
    asio::io_context io;
    tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = probe.local_endpoint().port();
  }
  auto pool = make_pool();
  Fetched fetched = fetch(*pool, parse("http://127.0.0.1:" + std::to_string(port)),
                          make_request(bhttp::verb::get, "/"));
  EXPECT_EQ(fetched.result.error, Error::kConnect) << fetched.result.message;
  EXPECT_FALSE(fetched.result.headers_received);
}

TEST_F(UpstreamTest, FirstByteTimeout) {
  start_server([this](Request&, BodyStatus, const ClientInfo&,
                      ResponseWriter& writer) -> asio::awaitable<void> {
    co_await release_.wait();
    co_await writer.write(Response{bhttp::status::ok, 11});
  });
  UpstreamOptions options;
  options.first_byte_timeout = 200ms;
  auto pool = make_pool(options);
  Fetched fetched = fetch(*pool, server_url(), make_request(bhttp::verb::get, "/"));
  EXPECT_EQ(fetched.result.error, Error::kFirstByteTimeout) << fetched.result.message;
  EXPECT_FALSE(fetched.result.headers_received);
  EXPECT_EQ(pool->idle_connections(), 0u);
}

TEST_F(UpstreamTest, IdleTimeoutBetweenBodyPieces) {
  start_server([this](Request&, BodyStatus, const ClientInfo&,
                      ResponseWriter& writer) -> asio::awaitable<void> {
    ResponseHeader header;
    header.result(bhttp::status::ok);
    co_await writer.start(std::move(header));
    co_await writer.chunk("partial");
    co_await release_.wait();
    co_await writer.finish();
  });
  UpstreamOptions options;
  options.idle_timeout = 200ms;
  auto pool = make_pool(options);
  Fetched fetched = fetch(*pool, server_url(), make_request(bhttp::verb::get, "/"));
  EXPECT_EQ(fetched.result.error, Error::kIdleTimeout) << fetched.result.message;
  EXPECT_TRUE(fetched.result.headers_received);
  EXPECT_EQ(fetched.body(), "partial");
  EXPECT_EQ(pool->idle_connections(), 0u);
}

TEST_F(UpstreamTest, CancelFromOnBodyClosesTheConnection) {
  std::promise<bool> server_saw_gone;
  ServerOptions server_options;
  server_options.write_timeout = 5'000ms;
  start_server(
      [&](Request&, BodyStatus, const ClientInfo&,
          ResponseWriter& writer) -> asio::awaitable<void> {
        ResponseHeader header;
        header.result(bhttp::status::ok);
        co_await writer.start(std::move(header));
        bool gone = false;
        for (int i = 0; i < 100'000 && !gone; ++i) gone = !co_await writer.chunk("data\n");
        server_saw_gone.set_value(gone);
      },
      server_options);
  auto pool = make_pool();
  Fetched fetched = fetch(*pool, server_url(), make_request(bhttp::verb::get, "/"),
                          [](std::string_view) { return false; });
  EXPECT_EQ(fetched.result.error, Error::kCancelled) << fetched.result.message;
  EXPECT_EQ(fetched.pieces.size(), 1u);
  EXPECT_EQ(pool->idle_connections(), 0u);
  auto gone = server_saw_gone.get_future();
  ASSERT_EQ(gone.wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(gone.get());
}

TEST_F(UpstreamTest, ErrorNamesAreStable) {
  EXPECT_EQ(upstream_error_name(Error::kNone), "none");
  EXPECT_EQ(upstream_error_name(Error::kFirstByteTimeout), "first_byte_timeout");
  EXPECT_EQ(upstream_error_name(Error::kTls), "tls");
}

// A minimal HTTPS server: one request per connection, answers "secure <target>".
class TlsServer {
 public:
  TlsServer(asio::io_context& io, const std::string& cert, const std::string& key)
      : context_(ssl::context::tls_server),
        acceptor_(io, {asio::ip::make_address("127.0.0.1"), 0}) {
    context_.use_certificate_chain_file(cert);
    context_.use_private_key_file(key, ssl::context::pem);
    asio::co_spawn(acceptor_.get_executor(), accept(), asio::detached);
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  asio::awaitable<void> accept() {
    for (;;) {
      beast::error_code ec;
      tcp::socket socket =
          co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      asio::co_spawn(asio::make_strand(acceptor_.get_executor()), serve(std::move(socket)),
                     asio::detached);
    }
  }
  asio::awaitable<void> serve(tcp::socket socket) {
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), context_);
    beast::error_code ec;
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    co_await stream.async_handshake(ssl::stream_base::server, token);
    if (ec) co_return;
    beast::flat_buffer buffer;
    Request request;
    co_await bhttp::async_read(stream, buffer, request, token);
    if (ec) co_return;
    Response response{bhttp::status::ok, 11};
    response.body() = "secure " + std::string(request.target());
    response.keep_alive(false);
    response.prepare_payload();
    co_await bhttp::async_write(stream, response, token);
  }

  ssl::context context_;
  tcp::acceptor acceptor_;
};

class UpstreamTlsTest : public UpstreamTest {
 protected:
  void SetUp() override {
    if (!certificates_.ok()) GTEST_SKIP() << "openssl CLI not available";
  }
  // Owned by the fixture so that it outlives the io threads (joined in TearDown).
  TlsServer& serve(const std::string& name) {
    tls_ = std::make_unique<TlsServer>(threads_.io(), certificates_.path(name + ".pem"),
                                       certificates_.path(name + ".key"));
    return *tls_;
  }

  Certificates certificates_;
  std::unique_ptr<TlsServer> tls_;
};

TEST_F(UpstreamTlsTest, TrustedCertificateSucceeds) {
  auto& tls = serve("localhost");
  UpstreamOptions options;
  options.ca_file = certificates_.path("ca.pem");
  auto pool = make_pool(options);
  for (std::string host : {"localhost", "127.0.0.1"}) {
    Fetched fetched = fetch(*pool, parse("https://" + host + ":" + std::to_string(tls.port())),
                            make_request(bhttp::verb::get, "/x"));
    EXPECT_EQ(fetched.result.error, Error::kNone) << host << ": " << fetched.result.message;
    EXPECT_EQ(fetched.body(), "secure /x") << host;
  }
}

TEST_F(UpstreamTlsTest, UnknownCaIsTlsError) {
  auto& tls = serve("localhost");
  auto pool = make_pool();
  Fetched fetched = fetch(*pool, parse("https://localhost:" + std::to_string(tls.port())),
                          make_request(bhttp::verb::get, "/"));
  EXPECT_EQ(fetched.result.error, Error::kTls) << fetched.result.message;
  EXPECT_NE(fetched.result.message.find("certificate"), std::string::npos)
      << fetched.result.message;
}

TEST_F(UpstreamTlsTest, PoolsTrustOnlyTheirOwnCaFileWhileOthersLive) {
  // Pools with the same CA file share one TLS context: a pool without that file, opened while
  // one with it lives, must still refuse the certificate, and one opened after it must trust it.
  auto& tls = serve("localhost");
  const Url url = parse("https://localhost:" + std::to_string(tls.port()));
  UpstreamOptions with_ca;
  with_ca.ca_file = certificates_.path("ca.pem");
  auto trusting = make_pool(with_ca);
  auto plain = make_pool();
  auto trusting_too = make_pool(with_ca);
  EXPECT_EQ(fetch(*trusting, url, make_request(bhttp::verb::get, "/a")).result.error, Error::kNone);
  EXPECT_EQ(fetch(*plain, url, make_request(bhttp::verb::get, "/b")).result.error, Error::kTls);
  EXPECT_EQ(fetch(*trusting_too, url, make_request(bhttp::verb::get, "/c")).result.error,
            Error::kNone);
  trusting.reset();
  trusting_too.reset();
  EXPECT_EQ(fetch(*plain, url, make_request(bhttp::verb::get, "/d")).result.error, Error::kTls);
  auto reopened = make_pool(with_ca);
  EXPECT_EQ(fetch(*reopened, url, make_request(bhttp::verb::get, "/e")).result.error, Error::kNone);
}

TEST_F(UpstreamTlsTest, AMissingCaFileIsRefusedEveryTime) {
  UpstreamOptions options;
  options.ca_file = certificates_.path("absent.pem");
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string error;
    EXPECT_EQ(UpstreamPool::create(options, &error), nullptr);
    EXPECT_NE(error.find("absent.pem"), std::string::npos) << error;
  }
}

TEST_F(UpstreamTlsTest, CertificateForAnotherNameIsTlsError) {
  auto& tls = serve("other");
  UpstreamOptions options;
  options.ca_file = certificates_.path("ca.pem");
  auto pool = make_pool(options);
  for (std::string host : {"localhost", "127.0.0.1"}) {
    Fetched fetched = fetch(*pool, parse("https://" + host + ":" + std::to_string(tls.port())),
                            make_request(bhttp::verb::get, "/"));
    EXPECT_EQ(fetched.result.error, Error::kTls) << host << ": " << fetched.result.message;
    EXPECT_NE(fetched.result.message.find("mismatch"), std::string::npos) << fetched.result.message;
  }
}

}  // namespace
}  // namespace airlock::control::http
