// The gateway end to end over loopback: a client, the Gateway with a real SQLite store, and a
// small in-test upstream that records what reaches it and answers in each provider's format.
#include "control/gateway/gateway.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "tests/gateway_test_util.h"

namespace airlock::control::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;
using testing::Headers;
using testing::kEventStreamHead;
using testing::kLastChunk;
using testing::random_hex;
using testing::Reply;
using testing::ScriptedUpstream;
using testing::Seen;
using testing::write_all;
using testing::write_chunk;
using testing::write_whole;

// ---------------------------------------------------------------- the in-test upstream

constexpr std::string_view kChatBody =
    R"({"id":"chatcmpl-1","object":"chat.completion","model":"gpt-5.5","choices":[{"index":0,)"
    R"("message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],)"
    R"("usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,)"
    R"("prompt_tokens_details":{"cached_tokens":40}}})";
constexpr std::string_view kStreamHead =
    "data: {\"id\":\"c\",\"model\":\"gpt-5.5\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\"hel\"}}],\"usage\":null}\n\n"
    ": keepalive\n\n"
    "data: {\"id\":\"c\",\"model\":\"gpt-5.5\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\"lo\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
constexpr std::string_view kStreamUsage =
    "data: {\"id\":\"c\",\"model\":\"gpt-5.5\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,"
    "\"completion_tokens\":2,\"total_tokens\":32}}\n\n";
constexpr std::string_view kStreamDone = "data: [DONE]\n\n";
constexpr std::string_view kAnthropicBody =
    R"({"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5",)"
    R"("content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn",)"
    R"("usage":{"input_tokens":50,"output_tokens":10,"cache_read_input_tokens":5}})";
constexpr std::string_view kGeminiBody =
    R"({"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP"}],)"
    R"("usageMetadata":{"promptTokenCount":30,"candidatesTokenCount":7},"modelVersion":"gemini-2.5-pro"})";
constexpr std::string_view kOpenAiErrorBody =
    R"({"error":{"message":"max_tokens is too large","type":"invalid_request_error","param":"max_tokens","code":null}})";

// Answers in each provider's format; a few model names script the upstream's failures.
class FakeUpstream {
 public:
  uint16_t port() const { return upstream_.port(); }
  std::vector<Seen> seen() const { return upstream_.seen(); }
  bool stream_cancelled() const { return stream_cancelled_; }
  void stop() { upstream_.stop(); }

 private:
  bool answer(tcp::socket& socket, const Seen& seen) {
    const json body = json::parse(seen.body, nullptr, false);
    const std::string model = body.is_object() ? body.value("model", "") : "";
    const bool stream = body.is_object() && body.value("stream", false);
    const std::string path = seen.target.substr(0, seen.target.find('?'));
    if (path == "/v1/chat/completions") {
      if (model == "gpt-5.5-bad") return write_whole(socket, 400, kOpenAiErrorBody);
      if (model == "gpt-5.5-hang") {
        while (!upstream_.stopping()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return false;
      }
      if (!stream) return write_whole(socket, 200, kChatBody);
      const bool usage = body["stream_options"].value("include_usage", false);
      if (!write_all(socket, kEventStreamHead)) return false;
      if (model == "gpt-5.5-cut") {
        // The upstream dies mid-stream: one event, then the connection closes.
        write_chunk(socket, kStreamHead.substr(0, kStreamHead.find("\n\n") + 2));
        return false;
      }
      if (model == "gpt-5.5-endless") {
        // Streams until the gateway goes away, which it must once its client has.
        for (int i = 0; i < 6000; ++i) {
          if (!write_chunk(socket, kStreamHead)) {
            stream_cancelled_ = true;
            return false;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return false;
      }
      // Every byte of the stream goes out in its own small pieces, as real providers split.
      const std::string all = std::string(kStreamHead) +
                              (usage ? std::string(kStreamUsage) : std::string()) +
                              std::string(kStreamDone);
      for (size_t at = 0; at < all.size(); at += 37) {
        if (!write_chunk(socket, std::string_view(all).substr(at, 37))) return false;
      }
      return write_all(socket, kLastChunk);
    }
    if (path == "/v1/messages") {
      if (model == "claude-sonnet-4-5-echo") {
        // A badly behaved upstream quoting the credential it got, in body and header.
        const std::string key = seen.all("x-api-key").empty() ? "" : seen.all("x-api-key")[0];
        const std::string error =
            json{{"type", "error"},
                 {"error", {{"type", "authentication_error"}, {"message", "bad key " + key}}}}
                .dump();
        return write_whole(socket, 401, error, "x-echo: " + key + "\r\n");
      }
      return write_whole(socket, 200, kAnthropicBody, "request-id: req_up_1\r\n");
    }
    if (path.starts_with("/v1beta/models/") && path.ends_with(":countTokens")) {
      return write_whole(socket, 200, R"({"totalTokens":12,"promptTokensDetails":[]})");
    }
    if (path.starts_with("/v1beta/models/")) return write_whole(socket, 200, kGeminiBody);
    // Also a pre-request hook: "rewrite" adds a message, "reroute" asks for another model.
    if (path == "/hook/rewrite" || path == "/hook/reroute") {
      json rewritten = body["body"];
      if (path == "/hook/rewrite") {
        rewritten["messages"].push_back({{"role", "user"}, {"content", "added by the hook"}});
      } else {
        rewritten["model"] = "gpt-4o";
      }
      return write_whole(socket, 200, json{{"action", "modify"}, {"body", rewritten}}.dump());
    }
    return write_whole(socket, 404, R"({"error":"no route"})");
  }

  std::atomic<bool> stream_cancelled_{false};
  // Last, so that its threads stop calling answer() before the rest goes.
  ScriptedUpstream upstream_{
      [this](tcp::socket& socket, const Seen& seen) { return answer(socket, seen); }};
};

// ---------------------------------------------------------------- the fixture

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(store_.open("airlock-gw-", &error)) << error;

    openai_key_ = "sk-canary-openai-" + random_hex(16);
    anthropic_key_ = "sk-canary-anthropic-" + random_hex(16);
    gemini_key_ = "sk-canary-gemini-" + random_hex(16);
    setenv("AIRLOCK_TEST_OPENAI_KEY", openai_key_.c_str(), 1);
    setenv("AIRLOCK_TEST_ANTHROPIC_KEY", anthropic_key_.c_str(), 1);
    setenv("AIRLOCK_TEST_GEMINI_KEY", gemini_key_.c_str(), 1);

    // A port nothing listens on: bound, then closed.
    uint16_t closed_port = 0;
    {
      asio::io_context io;
      tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
      closed_port = probe.local_endpoint().port();
    }

    const std::string base = "http://127.0.0.1:" + std::to_string(upstream_.port());
    auto document = std::make_shared<policy::Document>();
    document->providers = {
        {"openai", policy::ProviderKind::kOpenAi, base, {"gpt-*"}, "env:AIRLOCK_TEST_OPENAI_KEY"},
        {"anthropic",
         policy::ProviderKind::kAnthropic,
         base,
         {"claude-*"},
         "env:AIRLOCK_TEST_ANTHROPIC_KEY"},
        {"gemini",
         policy::ProviderKind::kGemini,
         base,
         {"gemini-*"},
         "env:AIRLOCK_TEST_GEMINI_KEY"},
        {"dead",
         policy::ProviderKind::kOpenAiCompatible,
         "http://127.0.0.1:" + std::to_string(closed_port),
         {"dead-*"},
         std::nullopt},
    };
    document->grants = {
        {{"user:alice"}, {"openai/gpt-5*", "anthropic/claude-sonnet-*", "gemini/*", "dead/*"}, {}}};
    document->request_log.bodies = true;
    state_ = make_gateway_state(document, PriceTable::builtin(), &error);
    ASSERT_TRUE(state_) << error;

    alice_.user = "alice";
    alice_.device = "laptop";
    alice_.tags = {"dev"};
    alice_.groups = {"eng"};
    alice_.public_key.fill(7);
    GatewayOptions options;
    options.server.max_body_bytes = 256 * 1024;
    options.upstream.connect_timeout = std::chrono::milliseconds(2000);
    options.upstream.first_byte_timeout = std::chrono::milliseconds(500);
    ASSERT_TRUE(gateway_.start(options, *store_, alice_, state_, /*threads=*/1, &error)) << error;
  }

  void TearDown() override {
    gateway_.stop();
    upstream_.stop();
  }

  Reply send(bhttp::verb method, std::string_view target, std::string body,
             const Headers& headers = {}, const char* from = "127.0.0.1") {
    Reply reply = testing::call(gateway_->port(), method, target, std::move(body), headers, from);
    ++requests_;
    replies_.push_back(reply);
    return reply;
  }
  Reply post(std::string_view target, const json& body, const Headers& headers = {}) {
    return send(bhttp::verb::post, target, body.dump(), headers);
  }

  std::vector<RequestRecord> records(size_t count) {
    return testing::await_records(*store_, count);
  }
  RequestRecord record_of(const Reply& reply) {
    return testing::await_record(*store_, reply).value_or(RequestRecord{});
  }

  testing::ScratchStore store_;
  FakeUpstream upstream_;
  std::shared_ptr<const GatewayState> state_;
  testing::LoopbackGateway gateway_;
  policy::Identity alice_;
  std::string openai_key_, anthropic_key_, gemini_key_;
  size_t requests_ = 0;
  std::vector<Reply> replies_;
};

const Headers kSandboxCredentials = {{"Authorization", "Bearer sandbox-token"},
                                     {"x-api-key", "sandbox-key"},
                                     {"x-goog-api-key", "sandbox-goog"}};

TEST_F(GatewayTest, ChatForwardedWithTheCentralKeyOnly) {
  const Reply reply =
      post("/v1/chat/completions", {{"model", "gpt-5.5"}, {"messages", json::array()}},
           kSandboxCredentials);
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.body, kChatBody);
  EXPECT_TRUE(reply.header("x-airlock-request-id").starts_with("req_"));
  EXPECT_EQ(reply.header("x-airlock-request-id").size(), 28u);

  const std::vector<Seen> seen = upstream_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/v1/chat/completions");
  EXPECT_EQ(seen[0].all("authorization"), std::vector<std::string>{"Bearer " + openai_key_});
  EXPECT_TRUE(seen[0].all("x-api-key").empty());
  EXPECT_TRUE(seen[0].all("x-goog-api-key").empty());
  EXPECT_TRUE(seen[0].all("accept-encoding").empty());

  const RequestRecord r = record_of(reply);
  EXPECT_EQ(r.user, "alice");
  EXPECT_EQ(r.device, "laptop");
  EXPECT_EQ(r.provider, "openai");
  EXPECT_EQ(r.model, "gpt-5.5");
  EXPECT_EQ(r.api, "openai.chat");
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.streamed);
  EXPECT_EQ(r.input_tokens, 60u);
  EXPECT_EQ(r.cache_read_tokens, 40u);
  EXPECT_EQ(r.output_tokens, 20u);
  EXPECT_TRUE(r.usage_complete);
  EXPECT_TRUE(r.error.empty()) << r.error;
  ASSERT_TRUE(r.cost.has_value());
  const std::optional<Price> price =
      PriceTable::builtin().find(policy::ProviderKind::kOpenAi, "gpt-5.5");
  ASSERT_TRUE(price);
  Usage usage;
  usage.input = 60;
  usage.cache_read = 40;
  usage.output = 20;
  EXPECT_EQ(*r.cost, cost_of(*price, usage));
  EXPECT_GT(*r.cost, 0);
  EXPECT_GE(r.ttfb_us, 0);
  EXPECT_GE(r.duration_us, r.ttfb_us);
  ASSERT_TRUE(r.response_body);
  EXPECT_EQ(*r.response_body, kChatBody);
}

TEST_F(GatewayTest, AnthropicHeadersForwardedByteForByte) {
  const Reply reply =
      post("/v1/messages?beta=true", {{"model", "claude-sonnet-4-5"}, {"max_tokens", 10}},
           {{"x-api-key", "sandbox-key"},
            {"anthropic-version", "2023-06-01"},
            {"anthropic-beta", "fine-grained-tool-streaming-2025-05-14"},
            {"anthropic-beta", "context-1m-2025-08-07"}});
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.body, kAnthropicBody);
  EXPECT_EQ(reply.header("request-id"), "req_up_1");
  const std::vector<Seen> seen = upstream_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/v1/messages?beta=true");
  EXPECT_EQ(seen[0].all("x-api-key"), std::vector<std::string>{anthropic_key_});
  EXPECT_TRUE(seen[0].all("authorization").empty());
  EXPECT_EQ(seen[0].all("anthropic-version"), std::vector<std::string>{"2023-06-01"});
  EXPECT_EQ(seen[0].all("anthropic-beta"),
            (std::vector<std::string>{"fine-grained-tool-streaming-2025-05-14",
                                      "context-1m-2025-08-07"}));
  const RequestRecord r = record_of(reply);
  EXPECT_EQ(r.api, "anthropic.messages");
  EXPECT_EQ(r.input_tokens, 50u);
  EXPECT_EQ(r.cache_read_tokens, 5u);
  EXPECT_EQ(r.output_tokens, 10u);
  EXPECT_TRUE(r.cost.has_value());
}

TEST_F(GatewayTest, GeminiModelFromPathAndKeyHeader) {
  const Reply reply =
      send(bhttp::verb::post, "/v1beta/models/gemini-2.5-pro:generateContent?key=sandbox",
           R"({"contents":[]})", kSandboxCredentials);
  EXPECT_EQ(reply.status, 200u);
  const std::vector<Seen> seen = upstream_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/v1beta/models/gemini-2.5-pro:generateContent");
  EXPECT_EQ(seen[0].all("x-goog-api-key"), std::vector<std::string>{gemini_key_});
  EXPECT_TRUE(seen[0].all("authorization").empty());
  const RequestRecord r = record_of(reply);
  EXPECT_EQ(r.model, "gemini-2.5-pro");
  EXPECT_EQ(r.api, "gemini.generate");
  EXPECT_EQ(r.input_tokens, 30u);
  EXPECT_EQ(r.output_tokens, 7u);
}

TEST_F(GatewayTest, GeminiCountTokensIsRelayedAndFree) {
  const Reply reply =
      send(bhttp::verb::post, "/v1beta/models/gemini-2.5-pro:countTokens?key=x",
           R"({"contents":[{"parts":[{"text":"how many?"}]}]})", kSandboxCredentials);
  EXPECT_EQ(reply.status, 200u) << reply.body;
  EXPECT_EQ(json::parse(reply.body)["totalTokens"], 12);
  const std::vector<Seen> seen = upstream_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/v1beta/models/gemini-2.5-pro:countTokens");
  EXPECT_EQ(seen[0].all("x-goog-api-key"), std::vector<std::string>{gemini_key_});
  const RequestRecord r = record_of(reply);
  EXPECT_EQ(r.api, "gemini.count_tokens");
  EXPECT_EQ(r.model, "gemini-2.5-pro");
  EXPECT_EQ(r.input_tokens, 0u);
  EXPECT_TRUE(r.usage_complete);
  EXPECT_EQ(r.cost, std::optional<Picodollars>(0));

  // A model of a provider that does not speak Gemini's API is refused in Gemini's error format,
  // before any upstream call.
  const Reply refused =
      send(bhttp::verb::post, "/v1beta/models/gpt-5.5:countTokens", R"({"contents":[]})");
  EXPECT_EQ(refused.status, 400u);
  EXPECT_EQ(json::parse(refused.body)["error"]["status"], "INVALID_ARGUMENT") << refused.body;
  EXPECT_EQ(upstream_.seen().size(), 1u);
}

TEST_F(GatewayTest, StreamedChatHidesTheInjectedUsageChunk) {
  const Reply reply = post("/v1/chat/completions",
                           {{"model", "gpt-5.5"}, {"stream", true}, {"messages", json::array()}});
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.body, std::string(kStreamHead) + std::string(kStreamDone));
  const std::vector<Seen> seen = upstream_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(json::parse(seen[0].body)["stream_options"]["include_usage"], true);
  const RequestRecord r = record_of(reply);
  EXPECT_TRUE(r.streamed);
  EXPECT_EQ(r.input_tokens, 30u);
  EXPECT_EQ(r.output_tokens, 2u);
  EXPECT_TRUE(r.usage_complete);
  ASSERT_TRUE(r.request_body);
  EXPECT_EQ(json::parse(*r.request_body).count("stream_options"), 0u);
}

TEST_F(GatewayTest, StreamedChatThatAskedForUsageGetsIt) {
  const Reply reply = post("/v1/chat/completions", {{"model", "gpt-5.5"},
                                                    {"stream", true},
                                                    {"stream_options", {{"include_usage", true}}},
                                                    {"messages", json::array()}});
  EXPECT_EQ(reply.body,
            std::string(kStreamHead) + std::string(kStreamUsage) + std::string(kStreamDone));
  EXPECT_EQ(record_of(reply).input_tokens, 30u);
}

TEST_F(GatewayTest, RefusalsInTheClientsFormat) {
  const Reply openai = post("/v1/chat/completions", {{"model", "gpt-4o"}});
  EXPECT_EQ(openai.status, 403u);
  EXPECT_EQ(json::parse(openai.body)["error"]["code"], "model_not_granted");

  const Reply anthropic =
      post("/v1/messages", {{"model", "claude-opus-4-7"}}, {{"anthropic-version", "2023-06-01"}});
  EXPECT_EQ(anthropic.status, 403u);
  EXPECT_EQ(json::parse(anthropic.body)["type"], "error");
  EXPECT_EQ(json::parse(anthropic.body)["error"]["type"], "permission_error");

  const Reply unknown = post("/v1/chat/completions", {{"model", "llama-3"}});
  EXPECT_EQ(unknown.status, 404u);
  EXPECT_EQ(json::parse(unknown.body)["error"]["code"], "model_not_found");

  const Reply wrong_api = post("/v1/messages", {{"model", "gpt-5.5"}});
  EXPECT_EQ(wrong_api.status, 400u);

  const Reply bad_json = send(bhttp::verb::post, "/v1/chat/completions", "{\"model\":");
  EXPECT_EQ(bad_json.status, 400u);
  const Reply no_model = post("/v1/chat/completions", {{"messages", json::array()}});
  EXPECT_EQ(no_model.status, 400u);

  const Reply too_big = send(bhttp::verb::post, "/v1/messages", std::string(300 * 1024, ' '), {});
  EXPECT_EQ(too_big.status, 413u);
  EXPECT_EQ(json::parse(too_big.body)["error"]["type"], "request_too_large");

  // Codex's WebSocket attempt on the Responses API, from a peer that may use an OpenAI-compatible
  // server ("dead"), which has no WebSocket mode: a 426, the one status on which Codex falls
  // back to HTTP at once, on a connection that then closes, saying why and how to skip the
  // attempt. (test_gateway_websocket relays the sockets it accepts.)
  const Reply websocket = send(bhttp::verb::get, "/v1/responses", "",
                               {{"Connection", "Upgrade"},
                                {"Upgrade", "websocket"},
                                {"Sec-WebSocket-Version", "13"},
                                {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                {"OpenAI-Beta", "responses_websockets=2026-02-06"}});
  EXPECT_EQ(websocket.status, 426u);
  EXPECT_EQ(websocket.header("connection"), "close");
  EXPECT_EQ(json::parse(websocket.body)["error"]["code"], "websocket_not_supported");
  const std::string why = json::parse(websocket.body)["error"]["message"];
  EXPECT_NE(why.find("supports_websockets = false"), std::string::npos) << why;
  EXPECT_NE(why.find("\"dead\""), std::string::npos) << why;
  // An upgrade on a path that exists over HTTP is no different.
  const Reply models_upgrade = send(bhttp::verb::get, "/v1/models", "",
                                    {{"Connection", "Upgrade"}, {"Upgrade", "websocket"}});
  EXPECT_EQ(models_upgrade.status, 426u);

  EXPECT_TRUE(upstream_.seen().empty());
  const RequestRecord denied = record_of(anthropic);
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(denied.user, "alice");
  EXPECT_EQ(denied.provider, "anthropic");
  EXPECT_EQ(denied.model, "claude-opus-4-7");
  EXPECT_FALSE(denied.error.empty());
  EXPECT_EQ(record_of(too_big).status, 413);
  EXPECT_EQ(record_of(websocket).status, 426);
  EXPECT_EQ(record_of(websocket).user, "alice");
}

TEST_F(GatewayTest, BodiesNestedTooDeepAreRefusedAndCrashNothing) {
  // 120k levels fit the body limit; serialising or walking them recursively overflowed the io
  // thread's stack (the usage injection re-serialises a streamed Chat request that has
  // stream_options).
  const std::string brackets = std::string(120000, '[') + std::string(120000, ']');
  const std::string chat =
      R"({"model":"gpt-5.5","stream":true,"stream_options":{"include_usage":false},)"
      R"("messages":[{"role":"user","content":"hi"}],"metadata":)" +
      brackets + "}";
  const Reply deep = send(bhttp::verb::post, "/v1/chat/completions", chat);
  EXPECT_EQ(deep.status, 400u);
  EXPECT_EQ(json::parse(deep.body)["error"]["code"], "invalid_json");
  const std::string why = json::parse(deep.body)["error"]["message"];
  EXPECT_NE(why.find("deeper than 1024"), std::string::npos) << why;
  EXPECT_EQ(record_of(deep).status, 400);

  const Reply anthropic =
      send(bhttp::verb::post, "/v1/messages",
           R"({"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":)" +
               brackets + "}]}",
           {{"anthropic-version", "2023-06-01"}});
  EXPECT_EQ(anthropic.status, 400u);
  EXPECT_EQ(json::parse(anthropic.body)["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(upstream_.seen().empty());

  const Reply after =
      post("/v1/chat/completions",
           {{"model", "gpt-5.5"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  EXPECT_EQ(after.status, 200u) << after.body;
}

TEST_F(GatewayTest, UnknownPeerIsRefusedAndRecorded) {
  const Reply reply = send(bhttp::verb::post, "/v1/chat/completions",
                           json{{"model", "gpt-5.5"}}.dump(), {}, "127.0.0.2");
  EXPECT_EQ(reply.status, 403u);
  EXPECT_EQ(json::parse(reply.body)["error"]["code"], "unknown_peer");
  EXPECT_TRUE(upstream_.seen().empty());
  const RequestRecord r = record_of(reply);
  EXPECT_EQ(r.status, 403);
  EXPECT_TRUE(r.user.empty());
}

TEST_F(GatewayTest, UpstreamRefusedIs502AndUpstreamErrorsRelayed) {
  const Reply refused = post("/v1/chat/completions", {{"model", "dead-model"}});
  EXPECT_EQ(refused.status, 502u);
  EXPECT_EQ(json::parse(refused.body)["error"]["type"], "server_error");
  const RequestRecord r = record_of(refused);
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.provider, "dead");
  EXPECT_FALSE(r.error.empty());

  const Reply bad = post("/v1/chat/completions", {{"model", "gpt-5.5-bad"}});
  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(bad.body, kOpenAiErrorBody);
  const RequestRecord b = record_of(bad);
  EXPECT_EQ(b.status, 400);
  EXPECT_NE(b.error.find("max_tokens is too large"), std::string::npos) << b.error;
}

TEST_F(GatewayTest, UpstreamSilenceIs504) {
  const Reply reply =
      post("/v1/messages", {{"model", "claude-sonnet-4-5"}}, {{"anthropic-version", "2023-06-01"}});
  EXPECT_EQ(reply.status, 200u);
  const Reply hang = post("/v1/chat/completions", {{"model", "gpt-5.5-hang"}});
  EXPECT_EQ(hang.status, 504u);
  EXPECT_EQ(json::parse(hang.body)["error"]["code"], "upstream_timeout");
  const RequestRecord r = record_of(hang);
  EXPECT_EQ(r.status, 504);
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;
}

TEST_F(GatewayTest, UpstreamDyingMidStreamTruncatesAndIsRecorded) {
  // The client must see a cut stream (no chunked terminator), not a complete one.
  EXPECT_THROW(post("/v1/chat/completions", {{"model", "gpt-5.5-cut"}, {"stream", true}}),
               boost::system::system_error);
  const std::vector<RequestRecord> all = records(1);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].status, 200);
  EXPECT_TRUE(all[0].streamed);
  EXPECT_FALSE(all[0].usage_complete);
  EXPECT_FALSE(all[0].client_disconnected);
  EXPECT_NE(all[0].error.find("closed"), std::string::npos) << all[0].error;
}

// A hook's rewrite is what the provider gets, but a hook cannot move a request to another model:
// the grant, price and budgets were checked for the model the client named.
TEST_F(GatewayTest, HookRewritesAreForwardedButAHookCannotReroute) {
  const auto with_hook = [&](const std::string& action, bool fail_open) {
    auto document = std::make_shared<policy::Document>(*state_->document);
    document->pre_request_hooks = {
        {"http://127.0.0.1:" + std::to_string(upstream_.port()) + "/hook/" + action,
         {},
         5000,
         fail_open}};
    std::string error;
    auto state = make_gateway_state(document, PriceTable::builtin(), &error);
    ASSERT_TRUE(state) << error;
    gateway_->set_state(std::move(state));
  };
  const auto chats = [&] {
    std::vector<json> out;
    for (const Seen& seen : upstream_.seen()) {
      if (seen.target == "/v1/chat/completions") out.push_back(json::parse(seen.body));
    }
    return out;
  };
  const json request = {{"model", "gpt-5.5"},
                        {"messages", {{{"role", "user"}, {"content", "hi"}}}}};

  with_hook("rewrite", false);
  const Reply rewritten = post("/v1/chat/completions", request);
  EXPECT_EQ(rewritten.status, 200u) << rewritten.body;
  ASSERT_EQ(chats().size(), 1u);
  EXPECT_EQ(chats()[0]["messages"].size(), 2u);
  EXPECT_EQ(chats()[0]["messages"][1]["content"], "added by the hook");

  with_hook("reroute", false);
  const Reply refused = post("/v1/chat/completions", request);
  EXPECT_EQ(refused.status, 503u) << refused.body;
  EXPECT_NE(refused.body.find("not reroute"), std::string::npos) << refused.body;
  EXPECT_EQ(chats().size(), 1u);
  EXPECT_EQ(record_of(refused).model, "gpt-5.5");

  // Failing open, the request goes on as the client sent it.
  with_hook("reroute", true);
  const Reply original = post("/v1/chat/completions", request);
  EXPECT_EQ(original.status, 200u) << original.body;
  ASSERT_EQ(chats().size(), 2u);
  EXPECT_EQ(chats()[1], request);
}

TEST_F(GatewayTest, ModelsListsOnlyGrantedModels) {
  auto document = std::make_shared<policy::Document>(*state_->document);
  document->providers[0].models = {"gpt-5.5", "gpt-4o", "gpt-*"};
  document->providers[1].models = {"claude-sonnet-4-5", "claude-opus-4-7", "claude-*"};
  std::string error;
  gateway_->set_state(make_gateway_state(document, PriceTable::builtin(), &error));

  const Reply openai = send(bhttp::verb::get, "/v1/models", "");
  EXPECT_EQ(openai.status, 200u);
  const json list = json::parse(openai.body);
  EXPECT_EQ(list["object"], "list");
  std::vector<std::string> ids;
  for (const json& m : list["data"]) ids.push_back(m["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{"gpt-5.5", "claude-sonnet-4-5"}));

  const Reply anthropic =
      send(bhttp::verb::get, "/v1/models", "", {{"anthropic-version", "2023-06-01"}});
  const json alist = json::parse(anthropic.body);
  EXPECT_EQ(alist["has_more"], false);
  EXPECT_EQ(alist["data"][0]["type"], "model");
  EXPECT_EQ(alist["first_id"], "gpt-5.5");

  // Gemini's SDKs list at /v1beta/models, and only Gemini providers serve their routes.
  document->providers[2].models = {"gemini-2.5-pro", "gemini-*"};
  gateway_->set_state(make_gateway_state(document, PriceTable::builtin(), &error));
  const Reply gemini = send(bhttp::verb::get, "/v1beta/models", "");
  EXPECT_EQ(gemini.status, 200u);
  const json glist = json::parse(gemini.body);
  ASSERT_EQ(glist["models"].size(), 1u) << gemini.body;
  EXPECT_EQ(glist["models"][0]["name"], "models/gemini-2.5-pro");
  EXPECT_EQ(glist["models"][0]["supportedGenerationMethods"][0], "generateContent");
  const Reply by_key = send(bhttp::verb::get, "/models?key=sandbox", "");
  EXPECT_EQ(json::parse(by_key.body)["models"].size(), 1u) << by_key.body;
}

TEST_F(GatewayTest, ClientDisconnectMidStreamIsRecordedAndCancelsUpstream) {
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), gateway_->port()));
  bhttp::request<bhttp::string_body> request{bhttp::verb::post, "/v1/chat/completions", 11};
  request.set(bhttp::field::host, "gateway");
  request.body() = json{{"model", "gpt-5.5-endless"}, {"stream", true}}.dump();
  request.prepare_payload();
  bhttp::write(socket, request);
  std::string received;
  std::array<char, 4096> buffer;
  while (received.find("data:") == std::string::npos) {
    received.append(buffer.data(), socket.read_some(asio::buffer(buffer)));
  }
  const size_t id_at = received.find("x-airlock-request-id: ");
  ASSERT_NE(id_at, std::string::npos);
  const std::string id = received.substr(id_at + 22, 28);
  socket.close();

  std::optional<RequestRecord> record;
  for (int i = 0; i < 2000 && !record; ++i) {
    std::string error;
    record = store_->request(id, &error);
    if (!record) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(record);
  EXPECT_EQ(record->status, 200);
  EXPECT_TRUE(record->client_disconnected);
  EXPECT_FALSE(record->usage_complete);
  EXPECT_TRUE(record->streamed);
  for (int i = 0; i < 2000 && !upstream_.stream_cancelled(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(upstream_.stream_cancelled());
}

TEST_F(GatewayTest, OneRecordPerRequestAndNoKeyAnywhere) {
  post("/v1/chat/completions", {{"model", "gpt-5.5"}}, kSandboxCredentials);
  post("/v1/chat/completions", {{"model", "gpt-5.5"}, {"stream", true}});
  post("/v1/messages", {{"model", "claude-sonnet-4-5"}}, kSandboxCredentials);
  // The upstream quotes the key it was sent; the client and the log must not see it.
  const Reply echo = post("/v1/messages", {{"model", "claude-sonnet-4-5-echo"}},
                          {{"anthropic-version", "2023-06-01"}});
  EXPECT_EQ(echo.status, 401u);
  EXPECT_NE(echo.body.find("[redacted]"), std::string::npos);
  send(bhttp::verb::post, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", "{}");
  post("/v1/chat/completions", {{"model", "gpt-4o"}});
  post("/v1/chat/completions", {{"model", "dead-1"}});
  post("/v1/chat/completions", {{"model", "gpt-5.5-bad"}});
  send(bhttp::verb::get, "/v1/models", "");
  send(bhttp::verb::head, "/", "");
  send(bhttp::verb::post, "/v1/chat/completions", "{}", {}, "127.0.0.2");

  const std::vector<RequestRecord> all = records(requests_);
  EXPECT_EQ(all.size(), requests_);
  std::set<std::string> ids;
  for (const RequestRecord& r : all) ids.insert(r.id);
  EXPECT_EQ(ids.size(), requests_);
  for (const Reply& reply : replies_) {
    EXPECT_EQ(ids.count(reply.header("x-airlock-request-id")), 1u);
  }

  const auto leaks = [&](std::string_view text) {
    for (const std::string& key : {openai_key_, anthropic_key_, gemini_key_}) {
      if (text.find(key) != std::string_view::npos) return true;
      if (text.find(key.substr(0, 20)) != std::string_view::npos) return true;
    }
    return false;
  };
  for (const Reply& reply : replies_) {
    EXPECT_FALSE(leaks(reply.body)) << reply.body;
    for (const auto& [name, value] : reply.headers) EXPECT_FALSE(leaks(value)) << name;
  }
  for (const RequestRecord& r : all) {
    EXPECT_FALSE(leaks(r.error)) << r.error;
    EXPECT_FALSE(leaks(r.request_body.value_or(""))) << r.id;
    EXPECT_FALSE(leaks(r.response_body.value_or(""))) << r.id;
  }
}

TEST(GatewayState, KeyLoadFailureNamesProviderAndReference) {
  setenv("AIRLOCK_TEST_PRESENT_KEY", "sk-canary-present-0123456789", 1);
  unsetenv("AIRLOCK_TEST_ABSENT_KEY");
  auto document = std::make_shared<policy::Document>();
  document->providers = {
      {"good",
       policy::ProviderKind::kOpenAi,
       "http://127.0.0.1:1",
       {"a-*"},
       "env:AIRLOCK_TEST_PRESENT_KEY"},
      {"broken",
       policy::ProviderKind::kAnthropic,
       "http://127.0.0.1:1",
       {"b-*"},
       "env:AIRLOCK_TEST_ABSENT_KEY"},
  };
  std::string error;
  EXPECT_FALSE(make_gateway_state(document, PriceTable::builtin(), &error));
  EXPECT_NE(error.find("broken"), std::string::npos) << error;
  EXPECT_NE(error.find("AIRLOCK_TEST_ABSENT_KEY"), std::string::npos) << error;
  EXPECT_EQ(error.find("sk-canary"), std::string::npos) << error;

  document->providers.pop_back();
  const auto state = make_gateway_state(document, PriceTable::builtin(), &error);
  ASSERT_TRUE(state) << error;
  ASSERT_EQ(state->keys.count("good"), 1u);
  EXPECT_EQ(state->keys.at("good").reveal(), "sk-canary-present-0123456789");
}

TEST(GatewayState, ABaseUrlTheUpstreamCannotUseRejectsThePolicy) {
  auto document = std::make_shared<policy::Document>();
  document->providers = {{"local",
                          policy::ProviderKind::kOpenAiCompatible,
                          "http://127.0.0.1:8000/v1",
                          {"my-*"},
                          std::nullopt}};
  std::string error;
  const auto state = make_gateway_state(document, PriceTable::builtin(), &error);
  ASSERT_TRUE(state) << error;
  ASSERT_EQ(state->base_urls.count("local"), 1u);
  EXPECT_EQ(state->base_urls.at("local").port, 8000);
  EXPECT_EQ(state->base_urls.at("local").base_path, "/v1");

  document->providers[0].base_url = "ftp://127.0.0.1/v1";
  EXPECT_FALSE(make_gateway_state(document, PriceTable::builtin(), &error));
  EXPECT_NE(error.find("provider \"local\": base_url"), std::string::npos) << error;
}

TEST(GatewayState, PolicyPricesOverrideTheTable) {
  auto document = std::make_shared<policy::Document>();
  document->providers = {{"local",
                          policy::ProviderKind::kOpenAiCompatible,
                          "http://127.0.0.1:1",
                          {"my-*"},
                          std::nullopt}};
  document->prices = {{"local", "my-model", "1", "2.5", "0.1", std::nullopt, std::nullopt}};
  std::string error;
  const auto state = make_gateway_state(document, PriceTable::builtin(), &error);
  ASSERT_TRUE(state) << error;
  const std::optional<Price> price =
      state->prices.find(policy::ProviderKind::kOpenAiCompatible, "my-model");
  ASSERT_TRUE(price);
  EXPECT_EQ(price->input, kPicodollarsPerDollar / 1'000'000);
  EXPECT_EQ(price->output, kPicodollarsPerDollar * 5 / 2 / 1'000'000);
  EXPECT_EQ(price->cache_read, kPicodollarsPerDollar / 10 / 1'000'000);

  document->prices = {
      {"local", "my-model", "one dollar", "2", std::nullopt, std::nullopt, std::nullopt}};
  EXPECT_FALSE(make_gateway_state(document, PriceTable::builtin(), &error));
  EXPECT_NE(error.find("local/my-model"), std::string::npos) << error;
  document->prices = {{"nobody", "m", "1", "2", std::nullopt, std::nullopt, std::nullopt}};
  EXPECT_FALSE(make_gateway_state(document, PriceTable::builtin(), &error));
}

TEST(GatewayRequestId, FormatAndUniqueness) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = new_request_id();
    ASSERT_EQ(id.size(), 28u);
    EXPECT_TRUE(id.starts_with("req_"));
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 4), std::string::npos) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
  // Ids sort by the time they were drawn, so the request log appends to its key's index.
  const std::string earlier = new_request_id();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_LT(earlier, new_request_id());
}

}  // namespace
}  // namespace airlock::control::gateway
