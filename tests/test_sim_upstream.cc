// airlock-sim-upstream: every endpoint's wire shape as the gateway's own metering (SseParser,
// UsageMeter) reads it, the documented deterministic token counts, tool calls, recording, the
// fault modes, the Responses API's WebSocket mode, TLS, and the binary's "listening on" contract.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>
// Boost 1.74's asio headers use std::exchange without including <utility> (included above).
// clang-format off
#include <boost/asio/connect.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
// clang-format on

#include "control/metering/sse.h"
#include "control/metering/usage.h"
#include "control/sim/sim.h"

namespace airlock::control {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;
using nlohmann::ordered_json;
using namespace std::chrono_literals;

// The words of the simulator's reply text and of the {"command":"ls -la"} tool arguments.
constexpr uint64_t kTextWords = 12;
constexpr uint64_t kToolWords = 2;
constexpr auto kTimeout = 10s;

uint64_t prompt_tokens(const std::string& body) {
  return (body.size() + 3) / 4;
}

uint64_t count_words(std::string_view text) {
  uint64_t words = 0;
  bool in_word = false;
  for (const char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

struct Response {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  json body_json() const { return json::parse(body); }
};

using Headers = std::vector<std::pair<std::string, std::string>>;
using Parser = http::response_parser<http::string_body>;

Response response_of(Parser& parser) {
  Response r;
  const auto& message = parser.get();
  r.status = message.result_int();
  for (const auto& field : message) {
    std::string name(sv(field.name_string()));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(sv(field.value()));
  }
  r.body = message.body();
  return r;
}

http::request<http::string_body> make_request(http::verb method, const std::string& target,
                                              const std::string& body, const Headers& headers) {
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::content_type, "application/json");
  for (const auto& [name, value] : headers) req.insert(name, value);
  req.body() = body;
  req.prepare_payload();
  return req;
}

// A keep-alive HTTP/1.1 client whose every step has a deadline, so a test can assert that the
// simulator does NOT answer (hang, stall) without waiting forever.
class Client {
 public:
  explicit Client(uint16_t port) : stream_(ioc_) {
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    const beast::error_code ec = run([&](auto done) { stream_.async_connect(endpoint, done); });
    EXPECT_FALSE(ec) << ec.message();
  }

  beast::error_code send(http::verb method, const std::string& target, const std::string& body,
                         const Headers& headers = {}) {
    auto req = make_request(method, target, body, headers);
    return run([&](auto done) {
      http::async_write(stream_, req, [done](beast::error_code ec, std::size_t) { done(ec); });
    });
  }

  beast::error_code send_header(http::request<http::empty_body>& req) {
    return run([&](auto done) {
      http::async_write(stream_, req, [done](beast::error_code ec, std::size_t) { done(ec); });
    });
  }

  beast::error_code read_header(Parser& parser, std::chrono::milliseconds timeout) {
    return run(
        [&](auto done) {
          http::async_read_header(stream_, buffer_, parser,
                                  [done](beast::error_code ec, std::size_t) { done(ec); });
        },
        timeout);
  }

  beast::error_code read(Parser& parser, std::chrono::milliseconds timeout) {
    return run(
        [&](auto done) {
          http::async_read(stream_, buffer_, parser,
                           [done](beast::error_code ec, std::size_t) { done(ec); });
        },
        timeout);
  }

  Response request(http::verb method, const std::string& target, const std::string& body = "",
                   const Headers& headers = {}) {
    beast::error_code ec = send(method, target, body, headers);
    EXPECT_FALSE(ec) << "send " << target << ": " << ec.message();
    Parser parser;
    parser.body_limit(64u << 20);
    ec = read(parser, kTimeout);
    EXPECT_FALSE(ec) << "read " << target << ": " << ec.message();
    return ec ? Response{} : response_of(parser);
  }

 private:
  template <class Start>
  beast::error_code run(Start start, std::chrono::milliseconds timeout = kTimeout) {
    beast::error_code result = asio::error::would_block;
    stream_.expires_after(timeout);
    start([&result](beast::error_code ec) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
  }

  asio::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

std::vector<SseEvent> events_of(const std::string& stream) {
  std::vector<SseEvent> events;
  SseParser parser;
  EXPECT_TRUE(parser.feed(stream, [&](const SseEvent& e) { events.push_back(e); }));
  EXPECT_EQ(parser.buffered_bytes(), 0u) << "the stream ends inside an event";
  return events;
}

UsageMeter meter_stream(Api api, const std::string& stream) {
  UsageMeter meter(api);
  for (const SseEvent& e : events_of(stream)) meter.feed_event(e);
  return meter;
}

UsageMeter meter_body(Api api, const std::string& body) {
  UsageMeter meter(api);
  meter.feed_body(body);
  return meter;
}

sim::Options test_options() {
  sim::Options options;
  options.port = 0;
  options.threads = 2;
  options.slow = 50ms;
  options.quiet = true;
  return options;
}

class SimTest : public ::testing::Test {
 protected:
  void SetUp() override { start(test_options()); }

  void start(const sim::Options& options) {
    server_.reset();
    server_ = std::make_unique<sim::Server>(options);
    server_->start();
  }

  Response post(const std::string& target, const std::string& body, const Headers& headers = {}) {
    return Client(server_->port()).request(http::verb::post, target, body, headers);
  }

  Response get(const std::string& target, const Headers& headers = {}) {
    return Client(server_->port()).request(http::verb::get, target, "", headers);
  }

  std::unique_ptr<sim::Server> server_;
};

// ---------------------------------------------------------------- OpenAI Chat Completions

const std::string kChat = R"({"model":"gpt-5.5","messages":[{"role":"user","content":"hi"}]})";

TEST_F(SimTest, ChatCompletionIsSimulatedAndCountsDeterministically) {
  const Response r = post("/v1/chat/completions", kChat);
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.headers.at("server"), "airlock-sim-upstream (simulated)");
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  const json j = r.body_json();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "gpt-5.5");
  const std::string text = j["choices"][0]["message"]["content"];
  EXPECT_NE(text.find("simulated"), std::string::npos);
  EXPECT_EQ(count_words(text), kTextWords);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["prompt_tokens"], prompt_tokens(kChat));
  EXPECT_EQ(j["usage"]["completion_tokens"], kTextWords);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(j["usage"]["completion_tokens_details"]["reasoning_tokens"], 0);

  const Usage u = meter_body(Api::kOpenAiChat, r.body).usage();
  EXPECT_EQ(u.model, "gpt-5.5");
  EXPECT_EQ(u.input, prompt_tokens(kChat));
  EXPECT_EQ(u.output, kTextWords);
  EXPECT_TRUE(u.complete);
}

TEST_F(SimTest, ChatStreamSendsUsageChunkOnlyWhenAsked) {
  const std::string asked =
      R"({"model":"gpt-5.5","stream":true,"stream_options":{"include_usage":true},"messages":[]})";
  const Response with = post("/v1/chat/completions", asked);
  ASSERT_EQ(with.status, 200u);
  EXPECT_EQ(with.headers.at("content-type"), "text/event-stream");
  const std::vector<SseEvent> events = events_of(with.body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back().data, "[DONE]");
  const json usage_chunk = json::parse(events[events.size() - 2].data);
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"]["completion_tokens"], kTextWords);
  std::string text;
  for (std::size_t i = 0; i + 2 < events.size(); ++i) {
    const json chunk = json::parse(events[i].data);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    EXPECT_TRUE(chunk.contains("usage") && chunk["usage"].is_null());
    text += chunk["choices"][0]["delta"].value("content", "");
  }
  EXPECT_EQ(count_words(text), kTextWords);
  const Usage u = meter_stream(Api::kOpenAiChat, with.body).usage();
  EXPECT_TRUE(u.complete);
  EXPECT_EQ(u.input, prompt_tokens(asked));
  EXPECT_EQ(u.output, kTextWords);

  const std::string not_asked = R"({"model":"gpt-5.5","stream":true,"messages":[]})";
  const Response without = post("/v1/chat/completions", not_asked);
  ASSERT_EQ(without.status, 200u);
  const std::vector<SseEvent> plain = events_of(without.body);
  EXPECT_EQ(plain.back().data, "[DONE]");
  for (std::size_t i = 0; i + 1 < plain.size(); ++i) {
    const json chunk = json::parse(plain[i].data);
    EXPECT_FALSE(chunk.contains("usage")) << plain[i].data;
    EXPECT_FALSE(chunk["choices"].empty());
  }
  EXPECT_FALSE(meter_stream(Api::kOpenAiChat, without.body).usage().complete);
}

TEST_F(SimTest, ChatStreamsCallToFirstToolInFragmentsWithCacheRead) {
  const std::string body = R"({"model":"gpt-5.5","stream":true,"prompt_cache_key":"k",
    "stream_options":{"include_usage":true},"messages":[{"role":"user","content":"list"}],
    "tools":[{"type":"function","function":{"name":"shell","parameters":{"type":"object",
      "properties":{"command":{"type":"string"}}}}},
      {"type":"function","function":{"name":"read_file"}}]})";
  const Response r = post("/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200u);
  int fragments = 0;
  std::string finish;
  for (const SseEvent& e : events_of(r.body)) {
    if (e.data == "[DONE]") continue;
    const json chunk = json::parse(e.data);
    if (chunk["choices"].empty()) continue;
    const json& choice = chunk["choices"][0];
    if (choice["delta"].contains("tool_calls")) {
      ++fragments;
      EXPECT_EQ(choice["delta"]["tool_calls"][0]["index"], 0);
    }
    if (choice["finish_reason"].is_string()) finish = choice["finish_reason"];
  }
  EXPECT_GE(fragments, 3);
  EXPECT_EQ(finish, "tool_calls");
  const UsageMeter meter = meter_stream(Api::kOpenAiChat, r.body);
  ASSERT_EQ(meter.tool_calls().size(), 1u);
  EXPECT_EQ(meter.tool_calls()[0].name, "shell");
  EXPECT_EQ(meter.tool_calls()[0].arguments, R"({"command":"ls -la"})");
  EXPECT_FALSE(meter.tool_calls()[0].id.empty());
  const uint64_t total = prompt_tokens(body);
  const Usage u = meter.usage();
  EXPECT_EQ(u.cache_read, total / 2);
  EXPECT_EQ(u.input, total - total / 2);
  EXPECT_EQ(u.output, kTextWords + kToolWords);
}

TEST_F(SimTest, ChatToolArgumentsFitAnArgvSchema) {
  const std::string body = R"({"model":"gpt-5.5","messages":[],"tools":[{"type":"function",
    "function":{"name":"shell","parameters":{"type":"object","properties":{
      "command":{"type":"array","items":{"type":"string"}}}}}}]})";
  const json j = post("/v1/chat/completions", body).body_json();
  const json& call = j["choices"][0]["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "shell");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()),
            json::parse(R"({"command":["ls","-la"]})"));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
}

// An agent loop ends: a request that hands back a tool's result gets a plain answer, in each
// API, while the same tools with the result further back still get a call.
TEST_F(SimTest, ToolResultAtTheEndGetsAnAnswerWithoutAToolCall) {
  const json chat_tools = json::parse(
      R"([{"type":"function","function":{"name":"shell","parameters":{"type":"object"}}}])");
  const json call = json::parse(R"({"role":"assistant","tool_calls":[{"id":"call_1",
    "type":"function","function":{"name":"shell","arguments":"{}"}}]})");
  const json result = {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "ok"}};
  const json user = {{"role", "user"}, {"content", "and now?"}};
  const json chat_done = {
      {"model", "gpt-5.5"}, {"messages", json::array({user, call, result})}, {"tools", chat_tools}};
  json chat_again = chat_done;
  chat_again["messages"].push_back(user);
  const json done = post("/v1/chat/completions", chat_done.dump()).body_json();
  EXPECT_EQ(done["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(done["choices"][0]["message"].contains("tool_calls"));
  EXPECT_EQ(done["usage"]["completion_tokens"], kTextWords);
  EXPECT_EQ(
      post("/v1/chat/completions", chat_again.dump()).body_json()["choices"][0]["finish_reason"],
      "tool_calls");

  const json responses = json::parse(R"({"model":"gpt-5.5","tools":[{"type":"function",
    "name":"shell_command","parameters":{"type":"object"}}],"input":[
    {"type":"message","role":"user","content":"list"},
    {"type":"function_call","call_id":"call_1","name":"shell_command","arguments":"{}"},
    {"type":"function_call_output","call_id":"call_1","output":"ok"}]})");
  const json r = post("/v1/responses", responses.dump()).body_json();
  ASSERT_EQ(r["output"].size(), 1u);
  EXPECT_EQ(r["output"][0]["type"], "message");

  const json anthropic = json::parse(R"({"model":"claude-sonnet-4-6","max_tokens":100,
    "tools":[{"name":"Bash","input_schema":{"type":"object"}}],"messages":[
    {"role":"user","content":"list"},
    {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{}}]},
    {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}]}]})");
  const json a =
      post("/v1/messages", anthropic.dump(), {{"anthropic-version", "2023-06-01"}}).body_json();
  EXPECT_EQ(a["stop_reason"], "end_turn");
  ASSERT_EQ(a["content"].size(), 1u);
  EXPECT_EQ(a["content"][0]["type"], "text");

  const json gemini = json::parse(R"({"tools":[{"functionDeclarations":[{"name":"run"}]}],
    "contents":[{"role":"user","parts":[{"text":"list"}]},
    {"role":"model","parts":[{"functionCall":{"name":"run","args":{}}}]},
    {"role":"user","parts":[{"functionResponse":{"name":"run","response":{"out":"ok"}}}]}]})");
  const Response g = post("/v1beta/models/gemini-2.5-pro:generateContent", gemini.dump());
  ASSERT_EQ(g.status, 200u);
  const json g_json = g.body_json();
  const json& parts = g_json["candidates"][0]["content"]["parts"];
  ASSERT_FALSE(parts.empty());
  for (const json& part : parts) EXPECT_TRUE(part.contains("text")) << part;
  json gemini_again = gemini;
  gemini_again["contents"].push_back(json::parse(R"({"role":"user","parts":[{"text":"more"}]})"));
  const json again =
      post("/v1beta/models/gemini-2.5-pro:generateContent", gemini_again.dump()).body_json();
  EXPECT_TRUE(again["candidates"][0]["content"]["parts"].back().contains("functionCall"));
}

// Coding agents declare many tools; the simulated model runs a command when it can.
TEST_F(SimTest, CallsTheShellToolWhereverItIsDeclared) {
  const json anthropic = json::parse(R"({"model":"claude-sonnet-4-6","max_tokens":100,
    "messages":[{"role":"user","content":"list"}],"tools":[
    {"name":"Agent","input_schema":{"type":"object"}},
    {"name":"Bash","input_schema":{"type":"object","properties":{"command":{"type":"string"}}}},
    {"name":"Read","input_schema":{"type":"object"}}]})");
  const json a =
      post("/v1/messages", anthropic.dump(), {{"anthropic-version", "2023-06-01"}}).body_json();
  ASSERT_EQ(a["content"].size(), 2u);
  EXPECT_EQ(a["content"][1]["name"], "Bash");

  const json responses = json::parse(R"({"model":"gpt-5.5","input":"list","tools":[
    {"type":"function","name":"update_plan","parameters":{"type":"object"}},
    {"type":"function","name":"exec_command","parameters":{"type":"object","properties":{
      "cmd":{"type":"string"}}}}]})");
  const json r = post("/v1/responses", responses.dump()).body_json();
  ASSERT_EQ(r["output"].size(), 2u);
  EXPECT_EQ(r["output"][1]["name"], "exec_command");
  EXPECT_EQ(json::parse(r["output"][1]["arguments"].get<std::string>()),
            json::parse(R"({"cmd":"ls -la"})"));

  // Without a shell tool, the first one.
  const json chat = json::parse(R"({"model":"gpt-5.5","messages":[],"tools":[
    {"type":"function","function":{"name":"lookup","parameters":{"type":"object"}}},
    {"type":"function","function":{"name":"fetch","parameters":{"type":"object"}}}]})");
  const json c = post("/v1/chat/completions", chat.dump()).body_json();
  EXPECT_EQ(c["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "lookup");
}

TEST_F(SimTest, EchoesAnOddModelNameAsValidJson) {
  const std::string model = "we\"ird\\name\n\u0001\u00e9";
  const json request = {{"model", model}, {"messages", json::array()}};
  const Response r = post("/v1/chat/completions", request.dump());
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.body_json()["model"], model);
}

// ---------------------------------------------------------------- OpenAI Responses

TEST_F(SimTest, ResponsesWhole) {
  const std::string body = R"({"model":"gpt-5.5","input":"hello"})";
  const Response r = post("/v1/responses", body);
  ASSERT_EQ(r.status, 200u);
  const json j = r.body_json();
  EXPECT_EQ(j["object"], "response");
  EXPECT_EQ(j["status"], "completed");
  const std::string text = j["output"][0]["content"][0]["text"];
  EXPECT_NE(text.find("simulated"), std::string::npos);
  EXPECT_EQ(j["usage"]["input_tokens"], prompt_tokens(body));
  EXPECT_EQ(j["usage"]["output_tokens"], kTextWords);
  const Usage u = meter_body(Api::kOpenAiResponses, r.body).usage();
  EXPECT_TRUE(u.complete);
  EXPECT_EQ(u.input, prompt_tokens(body));
  EXPECT_EQ(u.output, kTextWords);
}

TEST_F(SimTest, ResponsesStreamNamesEveryEventAndStreamsTheFunctionCall) {
  const std::string body = R"({"model":"gpt-5.5","stream":true,"input":"list files",
    "tools":[{"type":"function","name":"shell_command","parameters":{"type":"object",
      "properties":{"command":{"type":"string"}}}}]})";
  const Response r = post("/v1/responses", body);
  ASSERT_EQ(r.status, 200u);
  const std::vector<SseEvent> events = events_of(r.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().event, "response.created");
  EXPECT_EQ(events.back().event, "response.completed");
  int64_t sequence = 0;
  int argument_deltas = 0;
  for (const SseEvent& e : events) {
    EXPECT_NE(e.data, "[DONE]");
    const json j = json::parse(e.data);
    EXPECT_EQ(j["type"], e.event);
    EXPECT_EQ(j["sequence_number"], sequence++);
    if (e.event == "response.function_call_arguments.delta") ++argument_deltas;
  }
  EXPECT_GE(argument_deltas, 2);
  const UsageMeter meter = meter_stream(Api::kOpenAiResponses, r.body);
  ASSERT_EQ(meter.tool_calls().size(), 1u);
  EXPECT_EQ(meter.tool_calls()[0].name, "shell_command");
  EXPECT_EQ(meter.tool_calls()[0].arguments, R"({"command":"ls -la"})");
  const Usage u = meter.usage();
  EXPECT_TRUE(u.complete);
  EXPECT_EQ(u.input, prompt_tokens(body));
  EXPECT_EQ(u.output, kTextWords + kToolWords);
}

// ---------------------------------------------------------------- Responses WebSocket mode

// A WebSocket client of the Responses API's WebSocket mode whose every step has a deadline.
class WsClient {
 public:
  WsClient(uint16_t port, const Headers& headers, const std::string& target = "/v1/responses")
      : ws_(ioc_) {
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    const beast::error_code ec =
        run([&](auto done) { beast::get_lowest_layer(ws_).async_connect(endpoint, done); });
    EXPECT_FALSE(ec) << ec.message();
    ws_.set_option(websocket::stream_base::decorator([headers](websocket::request_type& request) {
      for (const auto& [name, value] : headers) request.set(name, value);
    }));
    handshake_ = run([&](auto done) { ws_.async_handshake(response_, "127.0.0.1", target, done); });
  }

  beast::error_code handshake_error() const { return handshake_; }
  const websocket::response_type& handshake_response() const { return response_; }

  beast::error_code send(const std::string& message, bool binary = false) {
    ws_.binary(binary);
    return run([&](auto done) {
      ws_.async_write(asio::buffer(message),
                      [done](beast::error_code ec, std::size_t) { done(ec); });
    });
  }

  // One message; nullopt when none comes within `timeout`.
  std::optional<std::string> read(std::chrono::milliseconds timeout = kTimeout) {
    beast::flat_buffer buffer;
    const beast::error_code ec = run(
        [&](auto done) {
          ws_.async_read(buffer, [done](beast::error_code e, std::size_t) { done(e); });
        },
        timeout);
    if (ec) return std::nullopt;
    EXPECT_TRUE(ws_.got_text());
    return beast::buffers_to_string(buffer.data());
  }

  // The next message as JSON: each one must be a whole event, without SSE framing.
  json read_event() {
    const std::optional<std::string> message = read();
    EXPECT_TRUE(message) << "no event";
    if (!message) return json();
    const json event = json::parse(*message, nullptr, false);
    EXPECT_TRUE(event.is_object()) << *message;
    return event;
  }

  // The events of one turn, up to its last one.
  std::vector<json> read_turn() {
    std::vector<json> events;
    for (;;) {
      events.push_back(read_event());
      const std::string type = events.back().value("type", "");
      if (type.empty() || type == "response.completed" || type == "response.incomplete" ||
          type == "response.failed" || type == "error") {
        return events;
      }
    }
  }

  beast::error_code close() {
    return run([&](auto done) { ws_.async_close(websocket::close_code::normal, done); });
  }

 private:
  template <class Start>
  beast::error_code run(Start start, std::chrono::milliseconds timeout = kTimeout) {
    beast::error_code result = asio::error::would_block;
    beast::get_lowest_layer(ws_).expires_after(timeout);
    start([&result](beast::error_code ec) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
  }

  asio::io_context ioc_;
  websocket::stream<beast::tcp_stream> ws_;
  websocket::response_type response_;
  beast::error_code handshake_;
};

const Headers kWsHeaders = {{"Authorization", "Bearer sk-sim-central"}};

// The body of the POST /v1/responses a response.create stands for, which the simulator counts.
std::string post_body(ordered_json message) {
  message.erase("type");
  message.erase("stream_id");
  message["stream"] = true;
  return message.dump();
}

// The usage object of a stream's response.completed event.
json completed_usage(const std::vector<SseEvent>& events) {
  EXPECT_FALSE(events.empty());
  if (events.empty()) return json();
  EXPECT_EQ(events.back().event, "response.completed");
  return json::parse(events.back().data)["response"]["usage"];
}

TEST_F(SimTest, WebSocketTurnsSendTheStreamEventsOneMessageEach) {
  WsClient ws(server_->port(), kWsHeaders);
  ASSERT_FALSE(ws.handshake_error()) << ws.handshake_error().message();
  EXPECT_EQ(ws.handshake_response().result_int(), 101u);
  EXPECT_EQ(sv(ws.handshake_response()[http::field::server]), "airlock-sim-upstream (simulated)");

  const ordered_json first = ordered_json::parse(R"({"type":"response.create","model":"gpt-5.5",
    "input":"list files","tools":[{"type":"function","name":"shell_command",
    "parameters":{"type":"object","properties":{"command":{"type":"string"}}}}]})");
  ASSERT_FALSE(ws.send(first.dump()));
  const std::vector<json> events = ws.read_turn();
  const Response http = post("/v1/responses", post_body(first));
  ASSERT_EQ(http.status, 200u);
  const std::vector<SseEvent> sse = events_of(http.body);
  ASSERT_EQ(events.size(), sse.size());
  UsageMeter meter(Api::kOpenAiResponses);
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i]["type"], sse[i].event);
    EXPECT_EQ(events[i]["sequence_number"], i);
    EXPECT_FALSE(events[i].contains("stream_id"));
    meter.feed_event(SseEvent{events[i]["type"], events[i].dump(), ""});
  }
  EXPECT_EQ(events.front()["type"], "response.created");
  ASSERT_EQ(events.back()["type"], "response.completed");
  const json usage = events.back()["response"]["usage"];
  EXPECT_EQ(usage, completed_usage(sse));
  EXPECT_EQ(usage["input_tokens"], prompt_tokens(post_body(first)));
  EXPECT_EQ(usage["output_tokens"], kTextWords + kToolWords);
  ASSERT_EQ(meter.tool_calls().size(), 1u);
  EXPECT_EQ(meter.tool_calls()[0].name, "shell_command");
  EXPECT_TRUE(meter.usage().complete);

  // The next turn continues the conversation on a lane, asks for caching and says "stream",
  // which the socket ignores: every event names the lane, and the counts are still HTTP's.
  ordered_json second = ordered_json::parse(R"({"type":"response.create","stream_id":"a",
    "model":"gpt-5.5","store":false,"stream":false,"prompt_cache_key":"k",
    "input":[{"type":"function_call_output","call_id":"call_sim1","output":"ok"}]})");
  second["previous_response_id"] = events.back()["response"]["id"];
  ASSERT_FALSE(ws.send(second.dump()));
  const std::vector<json> lane = ws.read_turn();
  ASSERT_EQ(lane.back()["type"], "response.completed");
  for (const json& event : lane) EXPECT_EQ(event["stream_id"], "a") << event;
  EXPECT_NE(lane.back()["response"]["id"], events.back()["response"]["id"]);
  const json lane_usage = lane.back()["response"]["usage"];
  EXPECT_EQ(lane_usage, completed_usage(events_of(post("/v1/responses", post_body(second)).body)));
  const uint64_t total = prompt_tokens(post_body(second));
  EXPECT_EQ(lane_usage["input_tokens"], total);
  EXPECT_EQ(lane_usage["input_tokens_details"]["cached_tokens"], total / 2);
  EXPECT_EQ(lane_usage["output_tokens"], kTextWords);
  EXPECT_FALSE(ws.close());
}

TEST_F(SimTest, WebSocketErrorsAreEventsAndTheSocketStaysOpen) {
  WsClient ws(server_->port(), kWsHeaders);
  ASSERT_FALSE(ws.handshake_error());
  const auto expect_refused = [&](const std::string& message, bool binary) {
    SCOPED_TRACE(message);
    EXPECT_FALSE(ws.send(message, binary));
    const json event = ws.read_event();
    EXPECT_EQ(event["type"], "error");
    EXPECT_EQ(event["status"], 400);
    EXPECT_EQ(event["error"]["type"], "invalid_request_error");
    EXPECT_TRUE(event["error"].contains("param"));
    return event;
  };
  EXPECT_FALSE(expect_refused("not json", false).contains("stream_id"));
  expect_refused(R"({"type":"response.create","model":"gpt-5.5","input":"x"})", true);
  EXPECT_EQ(expect_refused(R"({"type":"response.cancel","stream_id":"x"})", false)["stream_id"],
            "x");
  expect_refused(R"({"type":"response.create","input":"no model"})", false);

  for (const std::string model : {"sim-error", "sim-overloaded"}) {
    SCOPED_TRACE(model);
    const ordered_json message = {{"type", "response.create"}, {"model", model}, {"input", "x"}};
    ASSERT_FALSE(ws.send(message.dump()));
    const json event = ws.read_event();
    const Response http = post("/v1/responses", post_body(message));
    EXPECT_EQ(event["type"], "error");
    EXPECT_EQ(event["status"], http.status);
    EXPECT_EQ(event["error"], http.body_json()["error"]);
  }

  ASSERT_FALSE(ws.send(R"({"type":"response.create","model":"gpt-5.5","input":"still there?"})"));
  EXPECT_EQ(ws.read_turn().back()["type"], "response.completed");
}

TEST_F(SimTest, WebSocketFaultsHoldOnlyTheirOwnLane) {
  WsClient ws(server_->port(), kWsHeaders);
  ASSERT_FALSE(ws.handshake_error());
  const auto turn = [](const std::string& model, const std::string& stream_id) {
    return ordered_json{
        {"type", "response.create"}, {"stream_id", stream_id}, {"model", model}, {"input", "x"}}
        .dump();
  };
  ASSERT_FALSE(ws.send(turn("sim-hang", "h")));
  ASSERT_FALSE(ws.send(turn("sim-stall", "s")));
  ASSERT_FALSE(ws.send(turn("sim-slow", "a")));
  ASSERT_FALSE(ws.send(turn("sim-keepalive", "a")));
  ASSERT_FALSE(ws.send(turn("sim-midstream-error", "b")));
  ASSERT_FALSE(ws.send(turn("gpt-5.5", "h")));  // queued behind the hung turn
  std::map<std::string, std::vector<json>> lanes;
  int completed = 0;
  for (bool midstream_done = false; completed < 2 || !midstream_done;) {
    const json event = ws.read_event();
    ASSERT_TRUE(event.contains("stream_id")) << event;
    lanes[event["stream_id"]].push_back(event);
    if (event["type"] == "response.completed") ++completed;
    if (event["stream_id"] == "b" && event["type"] == "error") midstream_done = true;
  }
  EXPECT_FALSE(ws.read(300ms)) << "a hung or stalled lane answered";
  EXPECT_EQ(lanes.count("h"), 0u);
  ASSERT_EQ(lanes["s"].size(), 1u);
  EXPECT_EQ(lanes["s"][0]["type"], "response.created");
  // The slow turn, then the keepalive turn, whose comments are not messages.
  ASSERT_GE(lanes["a"].size(), 2u);
  EXPECT_EQ(lanes["a"].front()["response"]["model"], "sim-slow");
  EXPECT_EQ(lanes["a"].back()["response"]["model"], "sim-keepalive");
  int deltas = 0;
  for (const json& event : lanes["b"]) deltas += event["type"] == "response.output_text.delta";
  EXPECT_EQ(deltas, 2);
  EXPECT_FALSE(lanes["b"].back().contains("status")) << "a stream's error event, as over HTTP";
}

TEST_F(SimTest, WebSocketRecordsTheUpgradeAndEveryMessage) {
  EXPECT_EQ(Client(server_->port()).request(http::verb::delete_, "/_sim/requests").status, 200u);
  WsClient ws(server_->port(), kWsHeaders, "/v1/responses?x=1");
  ASSERT_FALSE(ws.handshake_error());
  const std::string message = R"({"type":"response.create","model":"gpt-5.5","input":"hi"})";
  ASSERT_FALSE(ws.send(message));
  EXPECT_EQ(ws.read_turn().back()["type"], "response.completed");
  const json recorded = get("/_sim/requests").body_json();
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[0]["method"], "GET");
  EXPECT_EQ(recorded[0]["target"], "/v1/responses?x=1");
  EXPECT_EQ(recorded[0]["headers"]["authorization"], "Bearer sk-sim-central");
  EXPECT_EQ(recorded[0]["headers"]["upgrade"], "websocket");
  EXPECT_EQ(recorded[0]["body"], "");
  EXPECT_EQ(recorded[1]["method"], "WS");
  EXPECT_EQ(recorded[1]["target"], "/v1/responses?x=1");
  EXPECT_EQ(recorded[1]["headers"]["authorization"], "Bearer sk-sim-central");
  EXPECT_EQ(recorded[1]["body"], message);
}

TEST_F(SimTest, WebSocketUpgradeElsewhereIsRefused) {
  WsClient ws(server_->port(), kWsHeaders, "/v1/chat/completions");
  EXPECT_EQ(ws.handshake_error(), websocket::error::upgrade_declined);
  EXPECT_EQ(ws.handshake_response().result_int(), 404u);
  EXPECT_EQ(get("/v1/responses").status, 404u);
}

// ---------------------------------------------------------------- OpenAI embeddings, models

TEST_F(SimTest, EmbeddingsAsFloatsAndBase64) {
  const std::string body = R"({"model":"text-embedding-3-small","input":["a","b"]})";
  const json floats = post("/v1/embeddings", body).body_json();
  ASSERT_EQ(floats["data"].size(), 2u);
  EXPECT_EQ(floats["data"][1]["index"], 1);
  EXPECT_EQ(floats["data"][0]["embedding"].size(), 16u);
  EXPECT_NE(floats["data"][0]["embedding"], floats["data"][1]["embedding"]);
  EXPECT_EQ(floats["usage"]["prompt_tokens"], prompt_tokens(body));
  EXPECT_EQ(post("/v1/embeddings", body).body_json()["data"], floats["data"]);

  const std::string b64 =
      R"({"model":"text-embedding-3-small","input":"a","encoding_format":"base64","dimensions":4})";
  const json packed = post("/v1/embeddings", b64).body_json();
  // 4 float32 = 16 bytes = 24 base64 characters.
  EXPECT_EQ(packed["data"][0]["embedding"].get<std::string>().size(), 24u);
}

TEST_F(SimTest, ModelListsInEachProvidersShape) {
  const json openai = get("/v1/models").body_json();
  EXPECT_EQ(openai["object"], "list");
  EXPECT_EQ(openai["data"][0]["object"], "model");
  const json anthropic = get("/v1/models", {{"anthropic-version", "2023-06-01"}}).body_json();
  EXPECT_EQ(anthropic["data"][0]["type"], "model");
  EXPECT_EQ(anthropic["has_more"], false);
  EXPECT_TRUE(anthropic["data"][0]["id"].get<std::string>().starts_with("claude"));
  const json gemini = get("/v1beta/models").body_json();
  EXPECT_TRUE(gemini["models"][0]["name"].get<std::string>().starts_with("models/"));
}

// ---------------------------------------------------------------- Anthropic

TEST_F(SimTest, AnthropicMessageWholeAcceptsBetaQuery) {
  const std::string body =
      R"({"model":"claude-sonnet-4-6","max_tokens":100,"messages":[{"role":"user","content":"hi"}]})";
  const Response r = post("/v1/messages?beta=true", body, {{"anthropic-version", "2023-06-01"}});
  ASSERT_EQ(r.status, 200u);
  const json j = r.body_json();
  EXPECT_EQ(j["type"], "message");
  EXPECT_EQ(j["stop_reason"], "end_turn");
  EXPECT_NE(j["content"][0]["text"].get<std::string>().find("simulated"), std::string::npos);
  EXPECT_EQ(j["usage"]["input_tokens"], prompt_tokens(body));
  EXPECT_EQ(j["usage"]["cache_read_input_tokens"], 0);
  const Usage u = meter_body(Api::kAnthropicMessages, r.body).usage();
  EXPECT_EQ(u.input, prompt_tokens(body));
  EXPECT_EQ(u.output, kTextWords);
}

TEST_F(SimTest, AnthropicStreamWithToolUseAndCacheRead) {
  const std::string body = R"({"model":"claude-sonnet-4-6","max_tokens":100,"stream":true,
    "system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],
    "messages":[{"role":"user","content":"list files"}],
    "tools":[{"name":"Bash","input_schema":{"type":"object","properties":{
      "command":{"type":"string"}}}},{"name":"Read","input_schema":{"type":"object"}}]})";
  const Response r = post("/v1/messages", body);
  ASSERT_EQ(r.status, 200u);
  const std::vector<SseEvent> events = events_of(r.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().event, "message_start");
  EXPECT_EQ(events.back().event, "message_stop");
  bool ping = false;
  int json_deltas = 0;
  for (const SseEvent& e : events) {
    EXPECT_EQ(json::parse(e.data)["type"], e.event);
    ping = ping || e.event == "ping";
    if (e.data.find("input_json_delta") != std::string::npos) ++json_deltas;
  }
  EXPECT_TRUE(ping);
  EXPECT_GE(json_deltas, 3);
  const uint64_t total = prompt_tokens(body);
  const json start = json::parse(events.front().data);
  EXPECT_EQ(start["message"]["usage"]["cache_read_input_tokens"], total / 2);
  EXPECT_EQ(start["message"]["usage"]["input_tokens"], total - total / 2);

  const UsageMeter meter = meter_stream(Api::kAnthropicMessages, r.body);
  ASSERT_EQ(meter.tool_calls().size(), 1u);
  EXPECT_EQ(meter.tool_calls()[0].name, "Bash");
  EXPECT_EQ(meter.tool_calls()[0].arguments, R"({"command":"ls -la"})");
  const Usage u = meter.usage();
  EXPECT_TRUE(u.complete);
  EXPECT_EQ(u.input, total - total / 2);
  EXPECT_EQ(u.cache_read, total / 2);
  EXPECT_EQ(u.output, kTextWords + kToolWords);
}

TEST_F(SimTest, AnthropicCountTokens) {
  const std::string body = R"({"model":"claude-sonnet-4-6","messages":[]})";
  const Response r = post("/v1/messages/count_tokens?beta=true", body);
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.body_json()["input_tokens"], prompt_tokens(body));
}

// ---------------------------------------------------------------- Gemini

const std::string kGemini = R"({"contents":[{"role":"user","parts":[{"text":"hi"}]}]})";

TEST_F(SimTest, GeminiGenerateContent) {
  const Response r = post("/v1beta/models/gemini-2.5-pro:generateContent", kGemini);
  ASSERT_EQ(r.status, 200u);
  const json j = r.body_json();
  EXPECT_EQ(j["modelVersion"], "gemini-2.5-pro");
  EXPECT_NE(j["candidates"][0]["content"]["parts"][0]["text"].get<std::string>().find("simulated"),
            std::string::npos);
  EXPECT_EQ(j["usageMetadata"]["promptTokenCount"], prompt_tokens(kGemini));
  EXPECT_EQ(j["usageMetadata"]["candidatesTokenCount"], kTextWords);
  const Usage u = meter_body(Api::kGeminiGenerate, r.body).usage();
  EXPECT_TRUE(u.complete);
  EXPECT_EQ(u.input, prompt_tokens(kGemini));
  EXPECT_EQ(u.output, kTextWords);
}

TEST_F(SimTest, GeminiSseUsesCrlfAndCumulativeUsage) {
  const Response r = post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", kGemini);
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.headers.at("content-type"), "text/event-stream");
  EXPECT_TRUE(r.body.starts_with("data: {"));
  EXPECT_NE(r.body.find("}\r\n\r\ndata: {"), std::string::npos);
  const std::vector<SseEvent> events = events_of(r.body);
  ASSERT_GE(events.size(), 2u);
  uint64_t previous = 0;
  for (const SseEvent& e : events) {
    const json usage = json::parse(e.data)["usageMetadata"];
    EXPECT_EQ(usage["promptTokenCount"], prompt_tokens(kGemini));
    EXPECT_GE(usage["candidatesTokenCount"].get<uint64_t>(), previous);
    previous = usage["candidatesTokenCount"];
  }
  EXPECT_EQ(previous, kTextWords);
  const Usage u = meter_stream(Api::kGeminiGenerate, r.body).usage();
  EXPECT_TRUE(u.complete);
  EXPECT_EQ(u.model, "gemini-2.5-flash");
  EXPECT_EQ(u.output, kTextWords);
}

TEST_F(SimTest, GeminiStreamWithoutSseIsJsonArrayWithFunctionCall) {
  const std::string body = R"({"contents":[{"role":"user","parts":[{"text":"ls"}]}],
    "tools":[{"functionDeclarations":[{"name":"run_shell_command","parameters":{
      "type":"OBJECT","properties":{"command":{"type":"STRING"}}}}]}]})";
  const Response r = post("/v1beta/models/gemini-2.5-pro:streamGenerateContent", body);
  ASSERT_EQ(r.status, 200u);
  const json array = r.body_json();
  ASSERT_TRUE(array.is_array());
  ASSERT_GE(array.size(), 2u);
  const json& last = array.back()["candidates"][0];
  EXPECT_EQ(last["finishReason"], "STOP");
  EXPECT_EQ(last["content"]["parts"][0]["functionCall"]["name"], "run_shell_command");
  const UsageMeter meter = meter_body(Api::kGeminiGenerate, r.body);
  ASSERT_EQ(meter.tool_calls().size(), 1u);
  EXPECT_EQ(meter.tool_calls()[0].name, "run_shell_command");
  EXPECT_EQ(json::parse(meter.tool_calls()[0].arguments), json::parse(R"({"command":"ls -la"})"));
  EXPECT_EQ(meter.usage().output, kTextWords + kToolWords);
}

TEST_F(SimTest, GeminiCountTokensAndCachedContent) {
  const Response count = post("/v1beta/models/gemini-2.5-pro:countTokens", kGemini);
  EXPECT_EQ(count.body_json()["totalTokens"], prompt_tokens(kGemini));
  const std::string cached = R"({"cachedContent":"cachedContents/x","contents":[]})";
  const json j = post("/v1beta/models/gemini-2.5-pro:generateContent", cached).body_json();
  EXPECT_EQ(j["usageMetadata"]["cachedContentTokenCount"], prompt_tokens(cached) / 2);
}

// ---------------------------------------------------------------- recording

TEST_F(SimTest, RecordsHeadersAndBodyUntilCleared) {
  EXPECT_EQ(Client(server_->port()).request(http::verb::delete_, "/_sim/requests").status, 200u);
  post("/v1/chat/completions?x=1", kChat,
       {{"X-Test", "yes"}, {"Anthropic-Beta", "a"}, {"anthropic-beta", "b"}});
  const json recorded = get("/_sim/requests").body_json();
  ASSERT_EQ(recorded.size(), 1u);
  EXPECT_EQ(recorded[0]["method"], "POST");
  EXPECT_EQ(recorded[0]["target"], "/v1/chat/completions?x=1");
  EXPECT_EQ(recorded[0]["headers"]["x-test"], "yes");
  EXPECT_EQ(recorded[0]["headers"]["anthropic-beta"], "a, b");
  EXPECT_EQ(recorded[0]["body"], kChat);
  EXPECT_FALSE(recorded[0].contains("body_base64"));

  EXPECT_EQ(Client(server_->port()).request(http::verb::delete_, "/_sim/requests").status, 200u);
  EXPECT_TRUE(get("/_sim/requests").body_json().empty());
}

TEST_F(SimTest, RecordLimitDropsOldestAndBinaryBodiesComeAsBase64) {
  sim::Options options = test_options();
  options.record_limit = 2;
  start(options);
  post("/v1/chat/completions", R"({"model":"one"})");
  post("/v1/chat/completions", R"({"model":"two"})");
  EXPECT_EQ(post("/v1/chat/completions", "\xff\xfe").status, 400u);
  const json recorded = get("/_sim/requests").body_json();
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[0]["body"], R"({"model":"two"})");
  EXPECT_EQ(recorded[1]["body_base64"], "//4=");
}

// ---------------------------------------------------------------- faults

struct Endpoint {
  Api api;
  std::string target;  // for Gemini, with MODEL standing for the model
  std::string body;    // with MODEL standing for the model
  std::string stream_target;
  std::string stream_body;
};

std::string with_model(std::string text, const std::string& model) {
  const std::size_t at = text.find("MODEL");
  return at == std::string::npos ? text : text.replace(at, 5, model);
}

const std::vector<Endpoint>& endpoints() {
  static const std::vector<Endpoint> all = {
      {Api::kOpenAiChat, "/v1/chat/completions", R"({"model":"MODEL","messages":[]})",
       "/v1/chat/completions",
       R"({"model":"MODEL","stream":true,"stream_options":{"include_usage":true}})"},
      {Api::kOpenAiResponses, "/v1/responses", R"({"model":"MODEL","input":"x"})", "/v1/responses",
       R"({"model":"MODEL","input":"x","stream":true})"},
      {Api::kAnthropicMessages, "/v1/messages", R"({"model":"MODEL","messages":[]})",
       "/v1/messages", R"({"model":"MODEL","messages":[],"stream":true})"},
      {Api::kGeminiGenerate, "/v1beta/models/MODEL:generateContent", kGemini,
       "/v1beta/models/MODEL:streamGenerateContent?alt=sse", kGemini},
  };
  return all;
}

TEST_F(SimTest, ErrorAndOverloadInEachProvidersFormat) {
  for (const Endpoint& e : endpoints()) {
    SCOPED_TRACE(e.target);
    for (const std::string model : {"sim-error", "sim-overloaded"}) {
      const Response r = post(with_model(e.target, model), with_model(e.body, model));
      const bool overloaded = model == "sim-overloaded";
      const unsigned expected = !overloaded ? 500 : e.api == Api::kAnthropicMessages ? 529 : 503;
      EXPECT_EQ(r.status, expected);
      const json j = r.body_json();
      if (e.api == Api::kAnthropicMessages) {
        EXPECT_EQ(j["type"], "error");
        EXPECT_EQ(j["error"]["type"], overloaded ? "overloaded_error" : "api_error");
      } else if (e.api == Api::kGeminiGenerate) {
        EXPECT_EQ(j["error"]["code"], expected);
        EXPECT_EQ(j["error"]["status"], overloaded ? "UNAVAILABLE" : "INTERNAL");
      } else {
        EXPECT_EQ(j["error"]["type"], "server_error");
      }
      const UsageMeter meter = meter_body(e.api, r.body);
      ASSERT_TRUE(meter.error());
      EXPECT_NE(meter.error()->find("simulated"), std::string::npos);
    }
  }
}

// Whether a stream event carries a piece of the reply text.
bool carries_text(Api api, const SseEvent& event) {
  const json j = json::parse(event.data, nullptr, false);
  switch (api) {
    case Api::kOpenAiChat:
      return j.contains("choices") && !j["choices"].empty() &&
             !j["choices"][0]["delta"].value("content", "").empty();
    case Api::kOpenAiResponses:
      return event.event == "response.output_text.delta";
    case Api::kAnthropicMessages:
      return event.event == "content_block_delta" && j["delta"]["type"] == "text_delta";
    case Api::kGeminiGenerate:
      return j.contains("candidates") && j["candidates"][0]["content"]["parts"][0].contains("text");
  }
  return false;
}

TEST_F(SimTest, MidstreamErrorAfterTwoContentEvents) {
  for (const Endpoint& e : endpoints()) {
    SCOPED_TRACE(e.stream_target);
    const std::string model = "sim-midstream-error";
    const Response r = post(with_model(e.stream_target, model), with_model(e.stream_body, model));
    ASSERT_EQ(r.status, 200u);
    const std::vector<SseEvent> events = events_of(r.body);
    int content = 0;
    for (const SseEvent& ev : events) content += carries_text(e.api, ev) ? 1 : 0;
    EXPECT_EQ(content, 2);
    ASSERT_FALSE(events.empty());
    EXPECT_NE(events.back().data.find("error"), std::string::npos);
    EXPECT_NE(events.back().data, "[DONE]");
    EXPECT_TRUE(meter_stream(e.api, r.body).error());
  }
}

TEST_F(SimTest, SlowModelStillAnswers) {
  const Response r = post("/v1/chat/completions", R"({"model":"sim-slow","messages":[]})");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body_json()["model"], "sim-slow");
}

TEST_F(SimTest, HangNeverAnswers) {
  Client client(server_->port());
  ASSERT_FALSE(client.send(http::verb::post, "/v1/messages", R"({"model":"sim-hang"})"));
  Parser parser;
  EXPECT_EQ(client.read_header(parser, 300ms), beast::error::timeout);
}

TEST_F(SimTest, StallSendsOneEventThenNothing) {
  Client client(server_->port());
  ASSERT_FALSE(client.send(http::verb::post, "/v1/chat/completions",
                           R"({"model":"sim-stall","stream":true})"));
  Parser parser;
  ASSERT_FALSE(client.read_header(parser, kTimeout));
  EXPECT_EQ(parser.get().result_int(), 200u);
  EXPECT_EQ(client.read(parser, 300ms), beast::error::timeout);
  EXPECT_FALSE(parser.is_done());
  const std::string& partial = parser.get().body();
  EXPECT_TRUE(partial.starts_with("data: {"));
  EXPECT_EQ(partial.find("data:", 1), std::string::npos) << partial;
}

TEST_F(SimTest, BigEventIsOneLineOfAtLeastOneMebibyte) {
  const std::string body = R"({"model":"sim-big-event","stream":true,"messages":[]})";
  const Response r = post("/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200u);
  std::size_t largest = 0;
  std::string text;
  for (const SseEvent& e : events_of(r.body)) {
    largest = std::max(largest, e.data.size());
    if (e.data == "[DONE]") continue;
    text += json::parse(e.data)["choices"][0]["delta"].value("content", "");
  }
  EXPECT_GE(largest, std::size_t{1} << 20);
  EXPECT_GT(count_words(text), kTextWords);
}

TEST_F(SimTest, KeepaliveCommentsBetweenEventsDoNotDisturbParsing) {
  const std::string body = R"({"model":"sim-keepalive","stream":true,"messages":[]})";
  const Response anthropic = post("/v1/messages", body);
  ASSERT_EQ(anthropic.status, 200u);
  EXPECT_NE(anthropic.body.find("\n\n: keepalive\nevent: "), std::string::npos);
  const Usage u = meter_stream(Api::kAnthropicMessages, anthropic.body).usage();
  EXPECT_TRUE(u.complete);
  EXPECT_EQ(u.output, kTextWords);

  const Response gemini =
      post("/v1beta/models/sim-keepalive:streamGenerateContent?alt=sse", kGemini);
  EXPECT_NE(gemini.body.find("\r\n\r\n: keepalive\r\ndata: "), std::string::npos);
  EXPECT_TRUE(meter_stream(Api::kGeminiGenerate, gemini.body).usage().complete);
}

// ---------------------------------------------------------------- HTTP behaviour

TEST_F(SimTest, UnknownPathIsOpenAiShaped404) {
  const Response r = post("/v1/nothing-here", "{}");
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(r.body_json()["error"]["type"], "invalid_request_error");
  EXPECT_EQ(get("/").status, 404u);
}

TEST_F(SimTest, MalformedBodyIsProviderShaped400) {
  const Response anthropic = post("/v1/messages", "not json");
  EXPECT_EQ(anthropic.status, 400u);
  EXPECT_EQ(anthropic.body_json()["error"]["type"], "invalid_request_error");
  const Response gemini = post("/v1beta/models/gemini-2.5-pro:generateContent", "[1]");
  EXPECT_EQ(gemini.status, 400u);
  EXPECT_EQ(gemini.body_json()["error"]["status"], "INVALID_ARGUMENT");
}

TEST_F(SimTest, HeadGetsOnlyHeadersAndTheConnectionStaysUsable) {
  Client client(server_->port());
  ASSERT_FALSE(client.send(http::verb::head, "/", ""));
  Parser parser;
  parser.skip(true);
  ASSERT_FALSE(client.read(parser, kTimeout));
  EXPECT_EQ(parser.get().result_int(), 404u);
  EXPECT_EQ(client.request(http::verb::get, "/v1/models").status, 200u);
}

TEST_F(SimTest, AnswersExpectContinueBeforeTheFinalResponse) {
  Client client(server_->port());
  ASSERT_FALSE(
      client.send(http::verb::post, "/v1/chat/completions", kChat, {{"Expect", "100-continue"}}));
  Parser interim;
  ASSERT_FALSE(client.read(interim, kTimeout));
  EXPECT_EQ(interim.get().result_int(), 100u);
  Parser final_response;
  ASSERT_FALSE(client.read(final_response, kTimeout));
  EXPECT_EQ(final_response.get().result_int(), 200u);
  EXPECT_EQ(json::parse(final_response.get().body())["object"], "chat.completion");
}

TEST_F(SimTest, BodyOverTheLimitIsProviderShaped413) {
  Client client(server_->port());
  // Only the header goes out: its Content-Length alone must draw the answer.
  http::request<http::empty_body> req{http::verb::post, "/v1/messages", 11};
  req.set(http::field::host, "127.0.0.1");
  req.content_length(std::uint64_t{65} << 20);
  ASSERT_FALSE(client.send_header(req));
  Parser parser;
  ASSERT_FALSE(client.read(parser, kTimeout));
  EXPECT_EQ(parser.get().result_int(), 413u);
  EXPECT_EQ(json::parse(parser.get().body())["error"]["type"], "request_too_large");
}

TEST_F(SimTest, OneConnectionCarriesManyRequests) {
  Client client(server_->port());
  const std::string stream = R"({"model":"claude-haiku-4-5","stream":true,"messages":[]})";
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(client.request(http::verb::post, "/v1/chat/completions", kChat).status, 200u);
    const Response s = client.request(http::verb::post, "/v1/messages", stream);
    EXPECT_EQ(s.status, 200u);
    EXPECT_TRUE(meter_stream(Api::kAnthropicMessages, s.body).usage().complete);
  }
}

// ---------------------------------------------------------------- TLS

std::filesystem::path make_temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "sim-tls-XXXXXX").string();
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern;
}

TEST(SimTls, ServesHttpsWithAVerifiedCertificate) {
  if (std::system("openssl version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl CLI";
  const std::filesystem::path dir = make_temp_dir();
  const std::string cert = (dir / "cert.pem").string();
  const std::string key = (dir / "key.pem").string();
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
      "-subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout '" +
      key + "' -out '" + cert + "' > /dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0);

  sim::Options options = test_options();
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  sim::Server server(options);
  server.start();

  asio::io_context ioc;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  tls.load_verify_file(cert);
  tls.set_verify_mode(asio::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, tls);
  stream.set_verify_callback(asio::ssl::host_name_verification("localhost"));
  ASSERT_TRUE(SSL_set_tlsext_host_name(stream.native_handle(), "localhost"));
  beast::get_lowest_layer(stream).expires_after(kTimeout);
  beast::get_lowest_layer(stream).connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));
  stream.handshake(asio::ssl::stream_base::client);
  auto req = make_request(http::verb::post, "/v1/chat/completions", kChat, {});
  http::write(stream, req);
  beast::flat_buffer buffer;
  Parser parser;
  http::read(stream, buffer, parser);
  const Response r = response_of(parser);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body_json()["object"], "chat.completion");

  beast::ssl_stream<beast::tcp_stream> wss(ioc, tls);
  wss.set_verify_callback(asio::ssl::host_name_verification("localhost"));
  ASSERT_TRUE(SSL_set_tlsext_host_name(wss.native_handle(), "localhost"));
  beast::get_lowest_layer(wss).connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));
  wss.handshake(asio::ssl::stream_base::client);
  websocket::stream<beast::ssl_stream<beast::tcp_stream>&> ws(wss);
  ws.handshake("localhost", "/v1/responses");
  ws.write(asio::buffer(std::string(R"({"type":"response.create","model":"gpt-5.5"})")));
  std::string last;
  do {
    buffer.clear();
    ws.read(buffer);
    last = json::parse(beast::buffers_to_string(buffer.data()))["type"];
  } while (last.starts_with("response.") && last != "response.completed");
  EXPECT_EQ(last, "response.completed");
  ws.close(websocket::close_code::normal);
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------- the binary and its options

TEST(SimOptions, ParsesTheCommandLine) {
  std::string error;
  bool help = false;
  const std::array<const char*, 7> args = {"--listen", "[::1]:0", "--threads=4",     "--slow-ms",
                                           "10",       "--quiet", "--record-limit=0"};
  const auto options = sim::parse_options(args, error, help);
  ASSERT_TRUE(options) << error;
  EXPECT_EQ(options->address, "::1");
  EXPECT_EQ(options->port, 0);
  EXPECT_EQ(options->threads, 4u);
  EXPECT_EQ(options->slow, 10ms);
  EXPECT_TRUE(options->quiet);
  EXPECT_EQ(options->record_limit, 0u);

  const std::array<const char*, 2> bad = {"--threads", "0"};
  EXPECT_FALSE(sim::parse_options(bad, error, help));
  EXPECT_NE(error.find("--threads"), std::string::npos);
  const std::array<const char*, 2> half_tls = {"--tls-cert", "c.pem"};
  EXPECT_FALSE(sim::parse_options(half_tls, error, help));
}

TEST(SimBinary, PrintsItsEphemeralPortFirstAndStopsOnSigterm) {
  const char* binary = std::getenv("AIRLOCK_SIM_UPSTREAM");
  if (binary == nullptr) GTEST_SKIP() << "AIRLOCK_SIM_UPSTREAM not set (run through meson test)";
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    execl(binary, binary, "--listen", "127.0.0.1:0", "--quiet", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  FILE* stdout_of_child = fdopen(out[0], "r");
  ASSERT_NE(stdout_of_child, nullptr);
  std::array<char, 128> line{};
  ASSERT_NE(std::fgets(line.data(), line.size(), stdout_of_child), nullptr);
  unsigned port = 0;
  ASSERT_EQ(std::sscanf(line.data(), "listening on 127.0.0.1:%u", &port), 1) << line.data();
  EXPECT_NE(port, 0u);
  const Response r =
      Client(static_cast<uint16_t>(port)).request(http::verb::post, "/v1/chat/completions", kChat);
  EXPECT_EQ(r.status, 200u);
  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::fclose(stdout_of_child);
}

}  // namespace
}  // namespace airlock::control
