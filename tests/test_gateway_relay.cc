#include "control/gateway/relay.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

// Streams are hand-written after the examples in shared/research/protocols.md (§1, §3).
namespace airlock::control::gateway {
namespace {

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (std::size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

constexpr std::string_view kHead =
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"gpt-5.5-2026-04-23\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
    "\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\","
    "\"function\":{\"name\":\"shell\",\"arguments\":\"\"}}]}}],\"usage\":null}\n\n"
    ": OPENROUTER PROCESSING\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
    "[{\"index\":0,\"function\":{\"arguments\":\"{\\\"comm\"}}]}}],\"usage\":null}\n\n"
    ": keepalive\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
    "[{\"index\":0,\"function\":{\"arguments\":\"and\\\":[\\\"ls\\\"]}\"}}]}}],"
    "\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n";
constexpr std::string_view kUsageChunk =
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":80,\"total_tokens\":1280,"
    "\"prompt_tokens_details\":{\"cached_tokens\":1024},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":64}}}\n\n";
constexpr std::string_view kTail = ": ping\n\ndata: [DONE]\n\n";

std::string chat_stream() {
  return std::string(kHead) + std::string(kUsageChunk) + std::string(kTail);
}
std::string chat_stream_without_usage() {
  return std::string(kHead) + std::string(kTail);
}

struct Result {
  std::string client;
  Usage usage;
  std::vector<ToolCall> tools;
  std::optional<std::string> error;
};

Result run(RelayOptions options, const std::vector<std::string_view>& pieces) {
  Relay relay(options);
  Result r;
  for (std::string_view piece : pieces) relay.feed(piece, r.client);
  relay.finish(r.client);
  relay.meter_body();
  r.usage = relay.usage();
  r.tools = relay.tool_calls();
  r.error = relay.error();
  return r;
}

std::vector<std::string_view> split_at(std::string_view s, std::size_t at) {
  return {s.substr(0, at), s.substr(at)};
}

std::vector<std::string_view> bytes_of(std::string_view s) {
  std::vector<std::string_view> out;
  for (std::size_t i = 0; i < s.size(); ++i) out.push_back(s.substr(i, 1));
  return out;
}

constexpr RelayOptions kStrip{Api::kOpenAiChat, true, true};

void expect_chat_usage(const Usage& u) {
  EXPECT_EQ(u.model, "gpt-5.5-2026-04-23");
  EXPECT_EQ(u.input, 1200u - 1024u);
  EXPECT_EQ(u.cache_read, 1024u);
  EXPECT_EQ(u.output, 80u);
  EXPECT_EQ(u.reasoning, 64u);
  EXPECT_TRUE(u.complete);
}

TEST(GatewayRelay, InjectedUsageChunkRemovedAtEverySplit) {
  const std::string stream = chat_stream();
  const std::string expected = chat_stream_without_usage();
  for (std::size_t at = 0; at <= stream.size(); ++at) {
    const Result r = run(kStrip, split_at(stream, at));
    ASSERT_EQ(r.client, expected) << "split at " << at;
    expect_chat_usage(r.usage);
  }
  const Result bytewise = run(kStrip, bytes_of(stream));
  EXPECT_EQ(bytewise.client, expected);
  expect_chat_usage(bytewise.usage);
  const std::vector<ToolCall> tools = {{"call_1", "shell", R"({"command":["ls"]})"}};
  EXPECT_EQ(bytewise.tools, tools);
}

TEST(GatewayRelay, CrLfAndCrFramingStrippedExactly) {
  for (std::string_view eol : {"\r\n", "\r"}) {
    const std::string stream = replace_all(chat_stream(), "\n", eol);
    const std::string expected = replace_all(chat_stream_without_usage(), "\n", eol);
    for (std::size_t at = 0; at <= stream.size(); ++at) {
      const Result r = run(kStrip, split_at(stream, at));
      ASSERT_EQ(r.client, expected) << "split at " << at;
      expect_chat_usage(r.usage);
    }
    EXPECT_EQ(run(kStrip, bytes_of(stream)).client, expected);
  }
}

TEST(GatewayRelay, StreamWithoutInjectionPassesUnchanged) {
  const std::string stream = chat_stream();
  const RelayOptions options{Api::kOpenAiChat, true, false};
  for (std::size_t at = 0; at <= stream.size(); at += 7) {
    const Result r = run(options, split_at(stream, at));
    ASSERT_EQ(r.client, stream);
    expect_chat_usage(r.usage);
  }
}

TEST(GatewayRelay, UsageOnAContentChunkIsNotStripped) {
  // Compatible upstreams put usage on the last content chunk; the client gets that chunk.
  const std::string stream =
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":"
      "\"stop\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2}}\n\n"
      "data: [DONE]\n\n";
  const Result r = run(kStrip, bytes_of(stream));
  EXPECT_EQ(r.client, stream);
  EXPECT_EQ(r.usage.input, 10u);
  EXPECT_EQ(r.usage.output, 2u);
}

TEST(GatewayRelay, CommentInsideTheUsageEventSurvives) {
  const std::string stream =
      "data: {\"choices\":[],\n: keepalive\ndata: \"usage\":{\"prompt_tokens\":3}}\n\n"
      "data: [DONE]\n\n";
  const Result r = run(kStrip, bytes_of(stream));
  EXPECT_EQ(r.client, ": keepalive\ndata: [DONE]\n\n");
  EXPECT_EQ(r.usage.input, 3u);
}

TEST(GatewayRelay, CutStreamReleasesTheHeldEvent) {
  // No blank line after the last event: a client would not dispatch it, so it is not dropped.
  const std::string cut = std::string(kHead) + std::string(kUsageChunk.substr(0, 40));
  const Result r = run(kStrip, bytes_of(cut));
  EXPECT_EQ(r.client, cut);
  EXPECT_FALSE(r.usage.complete);
}

constexpr std::string_view kAnthropicStream =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-6\",\"usage\":"
    "{\"input_tokens\":849,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":"
    "41203,\"output_tokens\":1}}}\n\n"
    "event: ping\ndata: {\"type\":\"ping\"}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
    "\"tool_use\",\"id\":\"toolu_1\",\"name\":\"Bash\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"{\\\"command\\\": \\\"git st\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"atus\\\"}\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n";
constexpr std::string_view kAnthropicEnd =
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":"
    "{\"output_tokens\":47}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

TEST(GatewayRelay, AnthropicStreamUsageAndToolCall) {
  const std::string stream = std::string(kAnthropicStream) + std::string(kAnthropicEnd);
  const RelayOptions options{Api::kAnthropicMessages, true, false};
  for (std::size_t at = 0; at <= stream.size(); at += 5) {
    const Result r = run(options, split_at(stream, at));
    ASSERT_EQ(r.client, stream);
    EXPECT_EQ(r.usage.model, "claude-sonnet-4-6");
    EXPECT_EQ(r.usage.input, 849u);
    EXPECT_EQ(r.usage.cache_read, 41203u);
    EXPECT_EQ(r.usage.cache_write, 100u);
    EXPECT_EQ(r.usage.output, 47u);
    EXPECT_TRUE(r.usage.complete);
    EXPECT_FALSE(r.error);
    const std::vector<ToolCall> tools = {{"toolu_1", "Bash", R"({"command": "git status"})"}};
    EXPECT_EQ(r.tools, tools);
  }
}

TEST(GatewayRelay, MidStreamErrorKeepsPartialUsage) {
  const std::string stream =
      std::string(kAnthropicStream) +
      "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
      "\"message\":\"Overloaded\"}}\n\n";
  const Result r = run({Api::kAnthropicMessages, true, false}, bytes_of(stream));
  EXPECT_EQ(r.client, stream);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(*r.error, "overloaded_error: Overloaded");
  EXPECT_EQ(r.usage.input, 849u);
  EXPECT_EQ(r.usage.cache_read, 41203u);
  EXPECT_FALSE(r.usage.complete);
}

TEST(GatewayRelay, OpenAiMidStreamErrorWhileStripping) {
  const std::string stream =
      std::string(kHead) + "data: {\"error\":{\"type\":\"server_error\",\"message\":\"boom\"}}\n\n";
  const Result r = run(kStrip, bytes_of(stream));
  EXPECT_EQ(r.client, stream);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(*r.error, "server_error: boom");
  EXPECT_FALSE(r.usage.complete);
}

constexpr std::string_view kChatBody =
    R"({"id":"chatcmpl-1","object":"chat.completion","model":"gpt-5.5",)"
    R"("choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],)"
    R"("usage":{"prompt_tokens":12,"completion_tokens":3}})";

TEST(GatewayRelay, BodyRelayedAsItArrivesAndMeteredAtTheEnd) {
  const RelayOptions options{Api::kOpenAiChat, false, false};
  for (std::size_t at = 0; at <= kChatBody.size(); ++at) {
    Relay relay(options);
    std::string client;
    relay.feed(kChatBody.substr(0, at), client);
    ASSERT_EQ(client, kChatBody.substr(0, at));
    relay.feed(kChatBody.substr(at), client);
    relay.finish(client);
    ASSERT_EQ(client, kChatBody);
    // The client has the whole body before the usage parse runs.
    EXPECT_FALSE(relay.usage().complete);
    relay.meter_body();
    EXPECT_EQ(relay.usage().input, 12u);
    EXPECT_EQ(relay.usage().output, 3u);
    relay.meter_body();
    EXPECT_EQ(relay.usage().input, 12u) << "metering twice must not count twice";
  }
}

TEST(GatewayRelay, BodyOverTheCopyCapIsRelayedButNotMetered) {
  RelayOptions options{Api::kOpenAiChat, false, false};
  options.max_body_copy = 16;
  const Result r = run(options, bytes_of(kChatBody));
  EXPECT_EQ(r.client, kChatBody);
  EXPECT_EQ(r.usage.input, 0u);
  EXPECT_FALSE(r.usage.complete);
}

TEST(GatewayRelay, HeldBodyIsHandedOverWholeAtTheEnd) {
  RelayOptions options{Api::kOpenAiChat, false, false};
  options.hold_body = true;
  for (std::size_t at = 0; at <= kChatBody.size(); ++at) {
    Relay relay(options);
    std::string client;
    relay.feed(kChatBody.substr(0, at), client);
    relay.feed(kChatBody.substr(at), client);
    ASSERT_TRUE(client.empty()) << "split at " << at;
    relay.finish(client);
    ASSERT_EQ(client, kChatBody);
    EXPECT_EQ(relay.usage().input, 12u) << "a held body is metered before it is let go";
    relay.meter_body();
    EXPECT_EQ(relay.usage().input, 12u);
  }
}

TEST(GatewayRelay, HeldBodyOverTheCapIsReleasedInOrderAndSaysWhy) {
  RelayOptions options{Api::kOpenAiChat, false, false};
  options.hold_body = true;
  options.max_body_copy = 16;
  Relay relay(options);
  std::string client;
  relay.feed(kChatBody.substr(0, 10), client);
  EXPECT_TRUE(client.empty());
  relay.feed(kChatBody.substr(10, 10), client);
  EXPECT_EQ(client, kChatBody.substr(0, 20));
  relay.feed(kChatBody.substr(20), client);
  relay.finish(client);
  EXPECT_EQ(client, kChatBody);
  ASSERT_TRUE(relay.metering_error());
  EXPECT_NE(relay.metering_error()->find("not held back"), std::string::npos);
}

TEST(GatewayRelay, ErrorBodyGivesTheProviderError) {
  const std::string body =
      R"({"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: bad"}})";
  const Result r = run({Api::kAnthropicMessages, false, false}, {body});
  EXPECT_EQ(r.client, body);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(*r.error, "invalid_request_error: max_tokens: bad");
}

TEST(GatewayRelay, OversizedLineStopsStrippingButNotRelaying) {
  const std::string huge = "data: " + std::string(SseParser::kDefaultMaxEventBytes + 10, 'a');
  const std::string stream = huge + "\n\n" + std::string(kUsageChunk) + "data: [DONE]\n\n";
  const Result r = run(kStrip, {stream.substr(0, 1000), stream.substr(1000)});
  EXPECT_EQ(r.client, stream);
}

}  // namespace
}  // namespace airlock::control::gateway
