// The simulator's HTTP/1.1 server: one coroutine per connection on a strand, keep-alive,
// optional TLS, routing to the provider responders, recording, the timing faults (slow, hang,
// stall) that need the connection rather than the reply, and the Responses API's WebSocket mode.
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
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
// clang-format on
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <deque>
#include <exception>
#include <map>
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
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

// Twice Anthropic's 32 MB request limit: the simulator should never be the one refusing a body
// the gateway lets through.
constexpr std::size_t kMaxBodyBytes = std::size_t{64} << 20;
constexpr std::size_t kMaxHeaderBytes = std::size_t{64} << 10;
constexpr auto kTlsShutdownTimeout = std::chrono::seconds(5);
constexpr std::string_view kResponsesPath = "/v1/responses";

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
  if (path == kResponsesPath) return openai_responses;
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

// ---------------------------------------------------------------- WebSocket mode

// One response.create (or a message refused in its place), in the order of its lane.
struct WsTurn {
  uint64_t serial = 0;
  std::string body;              // the POST /v1/responses body the message stands for
  std::optional<Reply> refusal;  // set: the message asks for no response, answer this error
};

struct WsLane {
  explicit WsLane(const asio::any_io_executor& executor) : timer(executor) {}
  std::deque<WsTurn> turns;
  asio::steady_timer timer;  // sim-slow's delay, and the endless wait of a hung or stalled turn
};

// Keyed by stream_id (none: the lane of messages without one). A lane exists while its turns
// are being answered.
using WsLanes = std::map<std::optional<std::string>, WsLane>;

template <class Stream>
struct WsConnection {
  WsConnection(Stream& stream, const asio::any_io_executor& executor) : ws(stream), idle(executor) {
    idle.expires_at(asio::steady_timer::time_point::max());
  }

  websocket::stream<Stream&> ws;
  // The upgrade's, recorded with every message.
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  WsLanes lanes;
  // Only one write may be in flight on a WebSocket: events from all lanes queue here.
  std::deque<std::string> outbox;
  bool writing = false;
  bool closed = false;      // nothing more is sent; lanes stop after their current turn
  unsigned tasks = 0;       // lane and writer coroutines that refer to this connection
  asio::steady_timer idle;  // its wait ends when the last task does
};

// The turn a WebSocket message asks for, and its lane.
std::pair<std::optional<std::string>, WsTurn> read_turn(std::string_view text, bool binary,
                                                        uint64_t serial) {
  std::pair<std::optional<std::string>, WsTurn> out;
  auto& [lane, turn] = out;
  turn.serial = serial;
  if (binary) {
    turn.refusal =
        openai_error(Failure::kBadRequest, "binary message; send response.create as text");
    return out;
  }
  Json message = Json::parse(text, nullptr, false);
  if (!message.is_object()) {
    turn.refusal = openai_error(Failure::kBadRequest, "the message is not a JSON object");
    return out;
  }
  if (const auto id = message.find("stream_id"); id != message.end()) {
    if (!id->is_string()) {
      turn.refusal = openai_error(Failure::kBadRequest, "stream_id must be a string");
      return out;
    }
    lane = id->get<std::string>();
  }
  const std::string_view type = string_member(message, "type");
  if (type != "response.create") {
    turn.refusal =
        openai_error(Failure::kBadRequest,
                     "unsupported message type '" + printable(type) + "'; send response.create");
    return out;
  }
  // The members of a POST body, which always streams here: the accounting then matches HTTP's.
  message.erase("type");
  message.erase("stream_id");
  message["stream"] = true;
  turn.body = message.dump(-1, ' ', false, Json::error_handler_t::replace);
  return out;
}

// The payload of one event as the responders write it: one `data: ` line, after an `event: `
// line and any comment lines; none for a chunk that is only a comment.
std::string_view sse_data(std::string_view event) {
  while (!event.empty()) {
    const std::size_t end = event.find('\n');
    const std::string_view line = event.substr(0, end);
    if (line.starts_with("data: ")) return line.substr(6);
    if (end == std::string_view::npos) break;
    event.remove_prefix(end + 1);
  }
  return {};
}

// An event with its lane's stream_id appended, the provider's bytes before it untouched.
// Every event payload is a non-empty JSON object.
std::string lane_event(std::string_view payload, const std::optional<std::string>& stream_id) {
  std::string out(payload);
  if (!stream_id) return out;
  out.pop_back();
  return out.append(",\"stream_id\":").append(JsonOut().str(*stream_id).take()).append("}");
}

// A turn that failed before streaming: the status and `error` object of the HTTP error reply.
std::string error_event(const Reply& reply, const std::optional<std::string>& stream_id) {
  const Json body = Json::parse(reply.body, nullptr, false);
  const auto error = body.find("error");
  JsonOut w;
  w.begin_object().field("type", "error").field("status", uint64_t{reply.status}).key("error");
  if (error == body.end()) {
    w.null();
  } else {
    w.raw(error->dump(-1, ' ', false, Json::error_handler_t::replace));
  }
  if (stream_id) w.field("stream_id", *stream_id);
  return w.end_object().take();
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
    if (request.path == kResponsesPath && websocket::is_upgrade(http_request)) {
      co_await websocket_session(stream, http_request, serial);
      co_return false;
    }

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
        log(sv(http_request.method_string()), request, "hangs");
        co_await hold(stream);
        co_return false;
      }
      if (request.fault == Fault::kSlow) {
        asio::steady_timer delay(co_await asio::this_coro::executor, options_.slow);
        beast::error_code ec;
        co_await delay.async_wait(asio::redirect_error(use_awaitable, ec));
      }
      reply = answer(request, provider, handler);
    }
    log(sv(http_request.method_string()), request,
        std::to_string(reply.status) + (reply.streamed ? " stream" : ""));
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

  // The reply to a request `prepare` accepted, once any sim-slow delay is over.
  static Reply answer(const Request& request, Provider provider, Handler handler) {
    if (request.fault == Fault::kError) {
      return provider_error(provider, Failure::kInternal,
                            "internal server error (model sim-error)");
    }
    if (request.fault == Fault::kOverloaded) {
      return provider_error(provider, Failure::kOverloaded,
                            "the service is overloaded (model sim-overloaded)");
    }
    return handler(request);
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

  void log(std::string_view method, const Request& request, const std::string& outcome) {
    if (options_.quiet) return;
    // The path only: a Gemini query may carry ?key=<api key>.
    std::string line = std::string(method) + " " + printable(request.path);
    if (!request.model.empty()) line += " model=" + printable(request.model);
    log_line(line + " -> " + outcome);
  }

  static void set_identity(http::response_header<>& header, uint64_t serial) {
    header.set(http::field::server, bsv(kServerHeader));
    header.set("x-request-id", "req_sim" + std::to_string(serial));
  }

  static void set_common(http::response_header<>& header, unsigned status, uint64_t serial) {
    header.result(status);
    // 529 is Anthropic's own status; HTTP gives it no reason phrase.
    if (status == 529) header.reason("Overloaded");
    set_identity(header, serial);
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

  // ------------------------------------------------------------ WebSocket mode (see sim.h)

  template <class Stream>
  awaitable<void> websocket_session(Stream& stream, const http::request<http::string_body>& upgrade,
                                    uint64_t serial) {
    const auto executor = co_await asio::this_coro::executor;
    WsConnection<Stream> c(stream, executor);
    c.target = sv(upgrade.target());
    for (const auto& field : upgrade) {
      c.headers.emplace_back(sv(field.name_string()), sv(field.value()));
    }
    beast::get_lowest_layer(stream).expires_never();
    c.ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    c.ws.set_option(websocket::stream_base::decorator(
        [serial](websocket::response_type& response) { set_identity(response.base(), serial); }));
    c.ws.read_message_max(kMaxBodyBytes);
    c.ws.text(true);
    beast::error_code ec;
    // A client sends nothing before the 101 (RFC 6455 4.1), so the HTTP read buffered no frame.
    co_await c.ws.async_accept(upgrade, asio::redirect_error(use_awaitable, ec));
    Request upgrade_request;
    upgrade_request.path = kResponsesPath;
    log("GET", upgrade_request,
        ec ? "websocket handshake failed: " + ec.message() : "101 websocket");
    if (ec) co_return;
    // Lane and writer coroutines refer to `c`: they must all end before this frame does, even
    // when reading throws.
    std::exception_ptr failure;
    try {
      co_await read_messages(c);
    } catch (...) {
      failure = std::current_exception();
    }
    c.closed = true;
    c.outbox.clear();
    for (auto& [stream_id, lane] : c.lanes) lane.timer.cancel();
    // Ends a write the peer no longer reads.
    beast::get_lowest_layer(stream).close();
    while (c.tasks > 0) co_await c.idle.async_wait(asio::redirect_error(use_awaitable, ec));
    if (failure) std::rethrow_exception(failure);
  }

  template <class Stream>
  awaitable<void> read_messages(WsConnection<Stream>& c) {
    beast::flat_buffer buffer;
    for (;;) {
      beast::error_code ec;
      co_await c.ws.async_read(buffer, asio::redirect_error(use_awaitable, ec));
      if (ec) co_return;
      const uint64_t serial = ++serial_;
      const std::string text = beast::buffers_to_string(buffer.data());
      buffer.consume(buffer.size());
      // See RecordedRequest::method.
      if (recorder_.enabled()) recorder_.add({serial, "WS", c.target, c.headers, text});
      auto [stream_id, turn] = read_turn(text, c.ws.got_binary(), serial);
      const auto [lane, fresh] = c.lanes.try_emplace(std::move(stream_id), c.idle.get_executor());
      lane->second.turns.push_back(std::move(turn));
      if (fresh) spawn(c, run_lane(c, lane));
    }
  }

  template <class Stream>
  void spawn(WsConnection<Stream>& c, awaitable<void> task) {
    ++c.tasks;
    asio::co_spawn(c.idle.get_executor(), std::move(task), [&c](const std::exception_ptr& failure) {
      report_failure(failure);
      if (--c.tasks == 0) c.idle.cancel();
    });
  }

  // Answers a lane's turns one after the other; the lane goes when it has none left.
  template <class Stream>
  awaitable<void> run_lane(WsConnection<Stream>& c, WsLanes::iterator lane) {
    while (!c.closed && !lane->second.turns.empty()) {
      WsTurn turn = std::move(lane->second.turns.front());
      lane->second.turns.pop_front();
      co_await answer_turn(c, lane->first, lane->second, std::move(turn));
    }
    c.lanes.erase(lane);
  }

  template <class Stream>
  awaitable<void> answer_turn(WsConnection<Stream>& c, const std::optional<std::string>& stream_id,
                              WsLane& lane, WsTurn turn) {
    Request request;
    request.path = kResponsesPath;
    request.body = turn.body;
    request.serial = turn.serial;
    Reply reply;
    if (turn.refusal) {
      reply = std::move(*turn.refusal);
    } else {
      reply = prepare(request, Provider::kOpenAi);
    }
    if (reply.status == 200) {
      if (request.fault == Fault::kHang) {
        log("WS", request, "hangs");
        co_await wait_for_close(lane);
        co_return;
      }
      if (request.fault == Fault::kSlow) {
        lane.timer.expires_after(options_.slow);
        beast::error_code ec;
        co_await lane.timer.async_wait(asio::redirect_error(use_awaitable, ec));
        if (c.closed) co_return;
      }
      reply = answer(request, Provider::kOpenAi, openai_responses);
    }
    log("WS", request, std::to_string(reply.status) + (reply.streamed ? " stream" : ""));
    if (!reply.streamed) {
      send(c, error_event(reply, stream_id));
      co_return;
    }
    for (const std::string& event : reply.events) {
      const std::string_view data = sse_data(event);
      if (!data.empty()) send(c, lane_event(data, stream_id));
    }
    if (reply.stall) co_await wait_for_close(lane);
  }

  // A hung or stalled turn holds its lane until the socket closes, which cancels the wait.
  static awaitable<void> wait_for_close(WsLane& lane) {
    lane.timer.expires_at(asio::steady_timer::time_point::max());
    beast::error_code ec;
    co_await lane.timer.async_wait(asio::redirect_error(use_awaitable, ec));
  }

  template <class Stream>
  void send(WsConnection<Stream>& c, std::string message) {
    if (c.closed) return;
    c.outbox.push_back(std::move(message));
    if (c.writing) return;
    c.writing = true;
    spawn(c, write_outbox(c));
  }

  template <class Stream>
  awaitable<void> write_outbox(WsConnection<Stream>& c) {
    while (!c.closed && !c.outbox.empty()) {
      const std::string message = std::move(c.outbox.front());
      c.outbox.pop_front();
      beast::error_code ec;
      co_await c.ws.async_write(asio::buffer(message), asio::redirect_error(use_awaitable, ec));
      if (ec) c.closed = true;
    }
    c.writing = false;
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
