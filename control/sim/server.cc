// The simulator's HTTP/1.1 server: one coroutine per connection on a strand, keep-alive,
// optional TLS, routing to the provider responders, recording, and the timing faults (slow,
// hang, stall) that need the connection rather than the reply.
// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// clang-format off
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
// clang-format on
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "control/metering/usage.h"
#include "control/sim/recorder.h"
#include "control/sim/responder.h"
#include "control/sim/sim.h"

namespace airlock::control::sim {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

// Twice Anthropic's 32 MB request limit: the simulator should never be the one refusing a body
// the gateway lets through.
constexpr std::size_t kMaxBodyBytes = std::size_t{64} << 20;
constexpr std::size_t kMaxHeaderBytes = std::size_t{64} << 10;
constexpr auto kTlsShutdownTimeout = std::chrono::seconds(5);

enum class Provider { kOpenAi, kAnthropic, kGemini };

using Handler = Reply (*)(const Request&);

// Beast 1.74 speaks boost::string_view; the simulator speaks std::string_view.
std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

beast::string_view bsv(std::string_view s) {
  return {s.data(), s.size()};
}

Reply gemini_generate_whole(const Request& request) {
  return gemini_generate(request, false);
}

Reply gemini_generate_stream(const Request& request) {
  return gemini_generate(request, true);
}

Reply provider_error(Provider provider, Failure failure, std::string_view detail) {
  switch (provider) {
    case Provider::kAnthropic:
      return anthropic_error(failure, detail);
    case Provider::kGemini:
      return gemini_error(failure, detail);
    case Provider::kOpenAi:
      break;
  }
  return openai_error(failure, detail);
}

// The action of a Gemini path `.../models/{model}:{action}`, or empty.
std::string_view gemini_action(std::string_view path) {
  const std::size_t models = path.find("/models/");
  if (models == std::string_view::npos) return {};
  const std::size_t colon = path.find(':', models);
  return colon == std::string_view::npos ? std::string_view{} : path.substr(colon + 1);
}

Provider provider_of(std::string_view path) {
  if (path.starts_with("/v1/messages")) return Provider::kAnthropic;
  if (path.starts_with("/v1beta/") || !gemini_action(path).empty()) return Provider::kGemini;
  return Provider::kOpenAi;
}

Handler route(http::verb method, std::string_view path, bool anthropic_client) {
  if (method == http::verb::get) {
    if (path == "/v1/models") return anthropic_client ? anthropic_models : openai_models;
    if (path == "/v1beta/models") return gemini_models;
    return nullptr;
  }
  if (method != http::verb::post) return nullptr;
  if (path == "/v1/chat/completions") return openai_chat;
  if (path == "/v1/responses") return openai_responses;
  if (path == "/v1/embeddings") return openai_embeddings;
  if (path == "/v1/messages") return anthropic_messages;
  if (path == "/v1/messages/count_tokens") return anthropic_count_tokens;
  const std::string_view action = gemini_action(path);
  if (action == "generateContent") return gemini_generate_whole;
  if (action == "streamGenerateContent") return gemini_generate_stream;
  if (action == "countTokens") return gemini_count_tokens;
  return nullptr;
}

// Request text goes to the log; keep it printable so a client cannot forge log lines.
std::string printable(std::string_view text) {
  std::string out(text.substr(0, 200));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

void log_line(const std::string& line) {
  std::fprintf(stderr, "airlock-sim-upstream (simulated): %s\n", line.c_str());
}

// Every event becomes one HTTP chunk; the terminating chunk is left off for a stall.
std::string chunked_body(const std::vector<std::string>& events, bool finish) {
  std::size_t size = 8;
  for (const std::string& e : events) size += e.size() + 16;
  std::string out;
  out.reserve(size);
  std::array<char, 20> hex{};
  for (const std::string& e : events) {
    const int n = std::snprintf(hex.data(), hex.size(), "%zx\r\n", e.size());
    out.append(hex.data(), static_cast<std::size_t>(n)).append(e).append("\r\n");
  }
  if (finish) out.append("0\r\n\r\n");
  return out;
}

}  // namespace

class Server::Impl {
 public:
  explicit Impl(const Options& options)
      : options_(options),
        ioc_(static_cast<int>(std::max(1u, options.threads))),
        acceptor_(ioc_),
        recorder_(options.record_limit) {
    if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
      throw std::runtime_error("--tls-cert and --tls-key go together");
    }
    if (!options.tls_cert_file.empty()) load_tls();
    beast::error_code ec;
    const asio::ip::address address = asio::ip::make_address(options.address, ec);
    if (ec) throw std::runtime_error("bad listen address '" + options.address + "'");
    const tcp::endpoint endpoint(address, options.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      throw std::runtime_error("cannot listen on " + options.address + ":" +
                               std::to_string(options.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
  }

  ~Impl() { stop(); }

  const std::string& address() const { return options_.address; }
  uint16_t port() const { return port_; }

  void start() {
    asio::co_spawn(acceptor_.get_executor(), accept_loop(), report_failure);
    for (unsigned i = 0; i < std::max(1u, options_.threads); ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
  }

  void stop() {
    if (stopped_.exchange(true)) return;
    ioc_.stop();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  static void report_failure(const std::exception_ptr& failure) {
    if (!failure) return;
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      log_line(std::string("connection failed: ") + e.what());
    }
  }

  void load_tls() {
    tls_.emplace(ssl::context::tls_server);
    tls_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    tls_->use_certificate_chain_file(options_.tls_cert_file, ec);
    if (ec) {
      throw std::runtime_error("cannot load TLS certificate " + options_.tls_cert_file + ": " +
                               ec.message());
    }
    tls_->use_private_key_file(options_.tls_key_file, ssl::context::pem, ec);
    if (ec) {
      throw std::runtime_error("cannot load TLS key " + options_.tls_key_file + ": " +
                               ec.message());
    }
  }

  awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket socket(asio::make_strand(ioc_));
      beast::error_code ec;
      co_await acceptor_.async_accept(socket, asio::redirect_error(use_awaitable, ec));
      if (ec == asio::error::operation_aborted) co_return;
      if (ec) {
        // Out of descriptors and the like: back off instead of spinning on the error.
        log_line("accept failed: " + ec.message());
        asio::steady_timer pause(ioc_, std::chrono::milliseconds(50));
        co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      // Streams are written whole; Nagle would only delay the small writes of keep-alive.
      socket.set_option(tcp::no_delay(true), ec);
      const auto executor = socket.get_executor();
      if (tls_) {
        asio::co_spawn(executor, serve_tls(std::move(socket)), report_failure);
      } else {
        asio::co_spawn(executor, serve_plain(std::move(socket)), report_failure);
      }
    }
  }

  awaitable<void> serve_plain(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    co_await serve(stream);
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  awaitable<void> serve_tls(tcp::socket socket) {
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *tls_);
    beast::error_code ec;
    co_await stream.async_handshake(ssl::stream_base::server,
                                    asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;
    co_await serve(stream);
    beast::get_lowest_layer(stream).expires_after(kTlsShutdownTimeout);
    co_await stream.async_shutdown(asio::redirect_error(use_awaitable, ec));
  }

  template <class Stream>
  awaitable<void> serve(Stream& stream) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kMaxHeaderBytes);
      parser.body_limit(kMaxBodyBytes);
      beast::error_code ec;
      co_await http::async_read_header(stream, buffer, parser,
                                       asio::redirect_error(use_awaitable, ec));
      if (!ec && beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        http::response<http::empty_body> go_on{http::status::continue_, 11};
        co_await http::async_write(stream, go_on, asio::redirect_error(use_awaitable, ec));
        if (ec) co_return;
      }
      if (!ec) {
        co_await http::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
      }
      // A Content-Length over the limit fails while reading the header, before any body.
      if (ec == http::error::body_limit) {
        const std::string_view path = sv(parser.get().target());
        co_await write_whole(stream,
                             provider_error(provider_of(path.substr(0, path.find('?'))),
                                            Failure::kTooLarge, "the request body is over 64 MiB"),
                             parser.get().version(), false, 0);
        co_return;
      }
      if (ec) {
        if (ec != http::error::end_of_stream &&
            ec.category() == http::make_error_code(http::error::end_of_stream).category()) {
          co_await write_whole(stream, openai_error(Failure::kBadRequest, "unreadable request"), 11,
                               false, 0);
        }
        co_return;
      }
      const http::request<http::string_body> request = parser.release();
      if (!co_await handle(stream, request)) co_return;
    }
  }

  // Answers one request; returns whether the connection may carry another one.
  template <class Stream>
  awaitable<bool> handle(Stream& stream, const http::request<http::string_body>& http_request) {
    const uint64_t serial = ++serial_;
    const std::string_view target = sv(http_request.target());
    const std::size_t question = target.find('?');
    Request request;
    request.path = target.substr(0, question);
    request.query = question == std::string_view::npos ? "" : target.substr(question + 1);
    request.body = http_request.body();
    request.serial = serial;
    const bool keep_alive = http_request.keep_alive();
    const unsigned version = http_request.version();

    if (request.path.starts_with("/_sim/")) {
      co_return co_await write_whole(stream, control(http_request.method(), request.path), version,
                                     keep_alive, serial);
    }
    if (recorder_.enabled()) record(http_request, serial);

    const Provider provider = provider_of(request.path);
    // GET /v1/models answers in the Anthropic shape to Anthropic clients (protocols.md §5).
    const bool anthropic_client =
        http_request.count("anthropic-version") > 0 || http_request.count("x-api-key") > 0;
    const Handler handler = route(http_request.method(), request.path, anthropic_client);
    Reply reply;
    if (handler == nullptr) {
      reply = openai_error(Failure::kNotFound, "no route for " +
                                                   std::string(sv(http_request.method_string())) +
                                                   " " + printable(request.path));
    } else if (http_request.method() == http::verb::post) {
      reply = prepare(request, provider);
    }
    if (reply.status == 200 && handler != nullptr) {
      if (request.fault == Fault::kHang) {
        log(http_request, request, "hangs");
        co_await hold(stream);
        co_return false;
      }
      if (request.fault == Fault::kSlow) {
        asio::steady_timer delay(co_await asio::this_coro::executor, options_.slow);
        beast::error_code ec;
        co_await delay.async_wait(asio::redirect_error(use_awaitable, ec));
      }
      if (request.fault == Fault::kError) {
        reply =
            provider_error(provider, Failure::kInternal, "internal server error (model sim-error)");
      } else if (request.fault == Fault::kOverloaded) {
        reply = provider_error(provider, Failure::kOverloaded,
                               "the service is overloaded (model sim-overloaded)");
      } else {
        reply = handler(request);
      }
    }
    log(http_request, request, std::to_string(reply.status) + (reply.streamed ? " stream" : ""));
    if (!reply.streamed) {
      co_return co_await write_whole(stream, std::move(reply), version, keep_alive, serial,
                                     http_request.method() == http::verb::head);
    }
    const bool more = co_await write_stream(stream, reply, version, keep_alive, serial);
    if (reply.stall) {
      co_await hold(stream);
      co_return false;
    }
    co_return more;
  }

  // Parses the body of a POST and finds its model; an error reply when the request is unusable.
  Reply prepare(Request& request, Provider provider) {
    request.json = parse_request_body(request.body);
    if (!request.json.is_object()) {
      return provider_error(provider, Failure::kBadRequest, "the body is not a JSON object");
    }
    if (provider == Provider::kGemini) {
      request.model = model_from_request(Api::kGeminiGenerate, "", request.path);
    } else if (const auto model = request.json.find("model");
               model != request.json.end() && model->is_string()) {
      request.model = model->get<std::string>();
    }
    if (request.model.empty()) {
      return provider_error(provider, Failure::kBadRequest, "the request names no model");
    }
    request.fault = fault_for_model(request.model);
    return Reply{};
  }

  Reply control(http::verb method, std::string_view path) {
    Reply reply;
    if (path == "/_sim/requests" && method == http::verb::get) {
      reply.body = recorder_.to_json();
    } else if (path == "/_sim/requests" && method == http::verb::delete_) {
      recorder_.clear();
      reply.body = R"({"cleared":true})";
    } else {
      reply = openai_error(Failure::kNotFound, "no such simulator control " + printable(path));
    }
    return reply;
  }

  void record(const http::request<http::string_body>& request, uint64_t serial) {
    RecordedRequest r;
    r.serial = serial;
    r.method = sv(request.method_string());
    r.target = sv(request.target());
    for (const auto& field : request) {
      r.headers.emplace_back(sv(field.name_string()), sv(field.value()));
    }
    r.body = request.body();
    recorder_.add(std::move(r));
  }

  void log(const http::request<http::string_body>& http_request, const Request& request,
           const std::string& outcome) {
    if (options_.quiet) return;
    // The path only: a Gemini query may carry ?key=<api key>.
    std::string line =
        std::string(sv(http_request.method_string())) + " " + printable(request.path);
    if (!request.model.empty()) line += " model=" + printable(request.model);
    log_line(line + " -> " + outcome);
  }

  static void set_common(http::response_header<>& header, unsigned status, uint64_t serial) {
    header.result(status);
    // 529 is Anthropic's own status; HTTP gives it no reason phrase.
    if (status == 529) header.reason("Overloaded");
    header.set(http::field::server, bsv(kServerHeader));
    header.set("x-request-id", "req_sim" + std::to_string(serial));
  }

  // `head_only`: the answer to a HEAD request, which has the headers of the body but not the body.
  template <class Stream>
  awaitable<bool> write_whole(Stream& stream, Reply reply, unsigned version, bool keep_alive,
                              uint64_t serial, bool head_only = false) {
    http::response<http::string_body> response;
    response.version(version);
    set_common(response.base(), reply.status, serial);
    response.set(http::field::content_type, bsv(reply.content_type));
    response.keep_alive(keep_alive);
    response.body() = std::move(reply.body);
    response.prepare_payload();
    beast::error_code ec;
    if (head_only) {
      http::response_serializer<http::string_body> serializer{response};
      co_await http::async_write_header(stream, serializer,
                                        asio::redirect_error(use_awaitable, ec));
    } else {
      co_await http::async_write(stream, response, asio::redirect_error(use_awaitable, ec));
    }
    co_return !ec && keep_alive;
  }

  // Header and every event in one write: the simulator has no reason to pace a normal stream,
  // and one write keeps its cost per request small.
  template <class Stream>
  awaitable<bool> write_stream(Stream& stream, const Reply& reply, unsigned version,
                               bool keep_alive, uint64_t serial) {
    http::response<http::empty_body> response;
    response.version(version);
    set_common(response.base(), reply.status, serial);
    response.set(http::field::content_type, bsv(reply.content_type));
    response.set(http::field::cache_control, "no-cache");
    // HTTP/1.0 has no chunked encoding: the body then ends when the connection does.
    const bool chunked = version >= 11;
    keep_alive = keep_alive && chunked;
    response.keep_alive(keep_alive);
    response.chunked(chunked);
    std::string bytes = header_text(response);
    if (chunked) {
      bytes += chunked_body(reply.events, !reply.stall);
    } else {
      for (const std::string& e : reply.events) bytes += e;
    }
    beast::error_code ec;
    co_await asio::async_write(stream, asio::buffer(bytes),
                               asio::redirect_error(use_awaitable, ec));
    co_return !ec && keep_alive;
  }

  static std::string header_text(const http::response<http::empty_body>& response) {
    std::string out = "HTTP/1.";
    out += response.version() >= 11 ? "1 " : "0 ";
    out += std::to_string(response.result_int());
    out += ' ';
    out += sv(response.reason());
    out += "\r\n";
    for (const auto& field : response) {
      out.append(sv(field.name_string())).append(": ").append(sv(field.value())).append("\r\n");
    }
    return out += "\r\n";
  }

  // Keeps the connection open without answering until the client goes, so a hung or stalled
  // stream costs nothing once abandoned.
  template <class Stream>
  awaitable<void> hold(Stream& stream) {
    std::array<char, 4096> scratch{};
    beast::error_code ec;
    while (!ec) {
      co_await stream.async_read_some(asio::buffer(scratch),
                                      asio::redirect_error(use_awaitable, ec));
    }
  }

  Options options_;
  asio::io_context ioc_;  // destroyed after the acceptor and TLS context that use it
  std::optional<ssl::context> tls_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  Recorder recorder_;
  std::atomic<uint64_t> serial_{0};
  std::atomic<bool> stopped_{false};
  std::vector<std::thread> threads_;
};

Server::Server(const Options& options) : impl_(std::make_unique<Impl>(options)) {}
Server::~Server() = default;
const std::string& Server::address() const {
  return impl_->address();
}
uint16_t Server::port() const {
  return impl_->port();
}
void Server::start() {
  impl_->start();
}
void Server::stop() {
  impl_->stop();
}

}  // namespace airlock::control::sim
