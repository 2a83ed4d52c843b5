#include "control/metering/usage.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "control/metering/json_view.h"

// Fixtures are hand-written after the payload examples in shared/research/protocols.md; the
// expected numbers follow each provider's documented rules (§0), worked out by hand.
namespace airlock::control {
namespace {

UsageMeter meter_stream(Api api, std::string_view stream) {
  UsageMeter meter(api);
  SseParser parser;
  EXPECT_TRUE(parser.feed(stream, [&](const SseEvent& e) { meter.feed_event(e); }));
  return meter;
}

UsageMeter meter_body(Api api, std::string_view body) {
  UsageMeter meter(api);
  meter.feed_body(body);
  return meter;
}

// Everything before the first occurrence of `marker`: a stream cut by a disconnect.
std::string_view cut_before(std::string_view stream, std::string_view marker) {
  const std::size_t at = stream.find(marker);
  EXPECT_NE(at, std::string_view::npos);
  return stream.substr(0, at);
}

// ---------------------------------------------------------------- OpenAI Chat Completions

constexpr std::string_view kChatBody = R"({"id":"chatcmpl-1","object":"chat.completion",
 "model":"gpt-5.5-2026-04-23",
 "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,
   "tool_calls":[{"id":"call_1","type":"function","function":{"name":"shell","arguments":"{\"command\":[\"bash\",\"-lc\",\"ls\"]}"}},
                 {"id":"call_2","type":"custom","custom":{"name":"apply_patch","input":"*** Begin Patch"}}]}}],
 "usage":{"prompt_tokens":1200,"completion_tokens":80,"total_tokens":1280,
   "prompt_tokens_details":{"cached_tokens":1024,"cache_write_tokens":0,"audio_tokens":0},
   "completion_tokens_details":{"reasoning_tokens":64,"accepted_prediction_tokens":0}}})";

TEST(ChatUsage, NonStreamedBodyExcludesCachedFromInput) {
  const UsageMeter m = meter_body(Api::kOpenAiChat, kChatBody);
  const Usage u = m.usage();
  EXPECT_EQ(u.model, "gpt-5.5-2026-04-23");
  EXPECT_EQ(u.input, 1200u - 1024u);
  EXPECT_EQ(u.cache_read, 1024u);
  EXPECT_EQ(u.cache_write, 0u);
  EXPECT_EQ(u.output, 80u);
  EXPECT_EQ(u.reasoning, 64u);
  EXPECT_TRUE(u.complete);
  EXPECT_FALSE(m.error());
  const std::vector<ToolCall> expected = {
      {"call_1", "shell", R"({"command":["bash","-lc","ls"]})"},
      {"call_2", "apply_patch", "*** Begin Patch"},
  };
  EXPECT_EQ(m.tool_calls(), expected);
}

// Two parallel calls whose argument fragments interleave, then the injected usage chunk.
constexpr std::string_view kChatStream =
    R"(data: {"id":"c1","model":"gpt-5.5","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"shell","arguments":""}}]}}],"usage":null})"
    "\n\n"
    R"(data: {"id":"c1","model":"gpt-5.5","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"read_file","arguments":"{\"pa"}}]}}],"usage":null})"
    "\n\n"
    R"(data: {"id":"c1","model":"gpt-5.5","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"comm"}}]}}],"usage":null})"
    "\n\n"
    R"(data: {"id":"c1","model":"gpt-5.5","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"th\":\"a.txt\"}"}}]}}],"usage":null})"
    "\n\n"
    R"(data: {"id":"c1","model":"gpt-5.5","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"and\":[\"ls\"]}"}}]}}],"usage":null})"
    "\n\n"
    R"(data: {"id":"c1","model":"gpt-5.5","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":null})"
    "\n\n"
    R"(data: {"id":"c1","model":"gpt-5.5","choices":[],"usage":{"prompt_tokens":500,"completion_tokens":40,"total_tokens":540,"prompt_tokens_details":{"cached_tokens":200,"cache_write_tokens":100},"completion_tokens_details":{"reasoning_tokens":10}}})"
    "\n\n"
    "data: [DONE]\n\n";

TEST(ChatUsage, StreamReassemblesParallelToolCallsByIndex) {
  const UsageMeter m = meter_stream(Api::kOpenAiChat, kChatStream);
  const std::vector<ToolCall> expected = {
      {"call_a", "shell", R"({"command":["ls"]})"},
      {"call_b", "read_file", R"({"path":"a.txt"})"},
  };
  EXPECT_EQ(m.tool_calls(), expected);
}

TEST(ChatUsage, StreamTakesUsageFromLastChunk) {
  const Usage u = meter_stream(Api::kOpenAiChat, kChatStream).usage();
  EXPECT_EQ(u.model, "gpt-5.5");
  EXPECT_EQ(u.input, 500u - 200u - 100u);
  EXPECT_EQ(u.cache_read, 200u);
  EXPECT_EQ(u.cache_write, 100u);
  EXPECT_EQ(u.output, 40u);
  EXPECT_EQ(u.reasoning, 10u);
  EXPECT_TRUE(u.complete);
}

TEST(ChatUsage, StreamCutBeforeUsageIsIncomplete) {
  const UsageMeter m =
      meter_stream(Api::kOpenAiChat,
                   cut_before(kChatStream, R"(data: {"id":"c1","model":"gpt-5.5","choices":[],)"));
  const Usage u = m.usage();
  EXPECT_FALSE(u.complete);
  EXPECT_EQ(u.input, 0u);
  EXPECT_EQ(u.output, 0u);
  EXPECT_EQ(u.model, "gpt-5.5");
  EXPECT_EQ(m.tool_calls().size(), 2u);
}

TEST(ChatUsage, UsageOnFinalContentChunkCounts) {
  // Compatible upstreams (Gemini's OpenAI endpoint) attach usage to a chunk with choices.
  const Usage u =
      meter_stream(
          Api::kOpenAiChat,
          R"(data: {"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":30,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":10}}})"
          "\n\ndata: [DONE]\n\n")
          .usage();
  EXPECT_EQ(u.input, 20u);
  EXPECT_EQ(u.cache_read, 10u);
  EXPECT_EQ(u.output, 2u);
  EXPECT_TRUE(u.complete);
}

TEST(ChatUsage, ErrorMidStreamIsRecorded) {
  const UsageMeter m = meter_stream(
      Api::kOpenAiChat,
      R"(data: {"model":"gpt-5.5","choices":[{"index":0,"delta":{"content":"par"}}]})"
      "\n\n"
      R"(data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}})"
      "\n\n");
  ASSERT_TRUE(m.error());
  EXPECT_EQ(*m.error(), "server_error: The server had an error while processing your request.");
  EXPECT_FALSE(m.usage().complete);
}

bool wants_injection(std::string_view body) {
  const JsonDocument parsed(body);
  return wants_usage_injection(parsed.root());
}
std::string injected_into(std::string_view body) {
  const JsonDocument parsed(body);
  return inject_include_usage(body, parsed.root());
}

TEST(ChatRequest, InjectionOnlyWhenStreamingWithoutUsage) {
  EXPECT_TRUE(wants_injection(R"({"model":"gpt-5.5","stream":true,"messages":[]})"));
  EXPECT_TRUE(wants_injection(
      R"({"model":"gpt-5.5","stream":true,"stream_options":{"include_usage":false}})"));
  EXPECT_FALSE(wants_injection(
      R"({"model":"gpt-5.5","stream":true,"stream_options":{"include_usage":true}})"));
  EXPECT_FALSE(wants_injection(R"({"model":"gpt-5.5","messages":[]})"));
  EXPECT_FALSE(wants_injection(R"({"model":"gpt-5.5","stream":false})"));
  EXPECT_FALSE(wants_injection("not json"));
}

TEST(ChatRequest, InjectionKeepsEveryClientByte) {
  const std::string body =
      R"( {"model":"gpt-5.5", "stream":true,"messages":[{"role":"user","content":"\u00e9 hi"}]})";
  const std::string injected = injected_into(body);
  EXPECT_EQ(injected,
            std::string(R"( {"stream_options":{"include_usage":true},)") + body.substr(2));
  EXPECT_FALSE(wants_injection(injected));
}

TEST(ChatRequest, InjectionIntoExistingStreamOptionsKeepsTheirFields) {
  const std::string injected = injected_into(
      R"({"model":"gpt-5.5","stream":true,"stream_options":{"include_obfuscation":false,"include_usage":false}})");
  const auto j = nlohmann::json::parse(injected);
  EXPECT_EQ(j["model"], "gpt-5.5");
  EXPECT_EQ(j["stream_options"]["include_usage"], true);
  EXPECT_EQ(j["stream_options"]["include_obfuscation"], false);
  EXPECT_FALSE(wants_injection(injected));
}

TEST(ChatRequest, InjectedUsageChunkIsRecognised) {
  std::vector<SseEvent> events;
  SseParser parser;
  ASSERT_TRUE(parser.feed(kChatStream, [&](const SseEvent& e) { events.push_back(e); }));
  ASSERT_EQ(events.size(), 8u);
  UsageMeter meter(Api::kOpenAiChat);
  for (std::size_t i = 0; i < events.size(); ++i) {
    meter.feed_event(events[i]);
    EXPECT_EQ(meter.last_event_only_usage(), i == 6) << "event " << i;
  }
  // A compatible upstream's usage on a content chunk, or a chunk whose choices are not an
  // array, is not the injected chunk.
  meter.feed_event(
      SseEvent{"", R"({"choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":1}})", ""});
  EXPECT_FALSE(meter.last_event_only_usage());
  meter.feed_event(SseEvent{"", R"({"choices":{},"usage":{"prompt_tokens":1}})", ""});
  EXPECT_FALSE(meter.last_event_only_usage());
  meter.feed_event(SseEvent{"", R"({"choices":[],"usage":null})", ""});
  EXPECT_FALSE(meter.last_event_only_usage());
  meter.feed_event(SseEvent{"", R"({"choices":[],"usage":{"prompt_tokens":1}})", ""});
  EXPECT_TRUE(meter.last_event_only_usage());
  meter.feed_event(SseEvent{"", "[DONE]", ""});
  EXPECT_FALSE(meter.last_event_only_usage());
}

// ---------------------------------------------------------------- OpenAI Responses

constexpr std::string_view kResponsesStream =
    "event: response.created\n"
    R"(data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","model":"gpt-5.5","status":"in_progress","usage":null}})"
    "\n\n"
    "event: response.output_item.added\n"
    R"(data: {"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"type":"reasoning","id":"rs_1","summary":[]}})"
    "\n\n"
    "event: response.output_text.delta\n"
    R"(data: {"type":"response.output_text.delta","sequence_number":2,"output_index":0,"delta":"thinking"})"
    "\n\n"
    "event: response.output_item.added\n"
    R"(data: {"type":"response.output_item.added","sequence_number":3,"output_index":1,"item":{"type":"function_call","id":"fc_1","call_id":"call_9","name":"shell_command","arguments":""}})"
    "\n\n"
    "event: response.function_call_arguments.delta\n"
    R"(data: {"type":"response.function_call_arguments.delta","sequence_number":4,"item_id":"fc_1","output_index":1,"delta":"{\"command\":\"ls"})"
    "\n\n"
    "event: response.function_call_arguments.delta\n"
    R"(data: {"type":"response.function_call_arguments.delta","sequence_number":5,"item_id":"fc_1","output_index":1,"delta":" -la\"}"})"
    "\n\n"
    "event: response.function_call_arguments.done\n"
    R"(data: {"type":"response.function_call_arguments.done","sequence_number":6,"item_id":"fc_1","output_index":1,"name":"shell_command","arguments":"{\"command\":\"ls -la\"}"})"
    "\n\n"
    "event: response.output_item.done\n"
    R"(data: {"type":"response.output_item.done","sequence_number":7,"output_index":1,"item":{"type":"function_call","id":"fc_1","call_id":"call_9","name":"shell_command","arguments":"{\"command\":\"ls -la\"}","status":"completed"}})"
    "\n\n"
    "event: response.completed\n"
    R"(data: {"type":"response.completed","sequence_number":8,"response":{"id":"resp_1","model":"gpt-5.5-2026-04-23","status":"completed","output":[{"type":"reasoning","id":"rs_1"},{"type":"function_call","id":"fc_1","call_id":"call_9","name":"shell_command","arguments":"{\"command\":\"ls -la\"}"}],"usage":{"input_tokens":2000,"input_tokens_details":{"cached_tokens":1500,"cache_write_tokens":0},"output_tokens":300,"output_tokens_details":{"reasoning_tokens":200},"total_tokens":2300}}})"
    "\n\n";

TEST(ResponsesUsage, StreamTakesUsageAndToolCallFromTerminalEvent) {
  const UsageMeter m = meter_stream(Api::kOpenAiResponses, kResponsesStream);
  const Usage u = m.usage();
  EXPECT_EQ(u.model, "gpt-5.5-2026-04-23");
  EXPECT_EQ(u.input, 500u);
  EXPECT_EQ(u.cache_read, 1500u);
  EXPECT_EQ(u.output, 300u);
  EXPECT_EQ(u.reasoning, 200u);
  EXPECT_TRUE(u.complete);
  EXPECT_FALSE(m.error());
  const std::vector<ToolCall> expected = {{"call_9", "shell_command", R"({"command":"ls -la"})"}};
  EXPECT_EQ(m.tool_calls(), expected);
}

TEST(ResponsesUsage, StreamCutMidArgumentsKeepsPartialCall) {
  const UsageMeter m =
      meter_stream(Api::kOpenAiResponses,
                   cut_before(kResponsesStream, "event: response.function_call_arguments.done"));
  const Usage u = m.usage();
  EXPECT_FALSE(u.complete);
  EXPECT_EQ(u.model, "gpt-5.5");
  EXPECT_EQ(u.input + u.output + u.cache_read, 0u);
  const std::vector<ToolCall> expected = {{"call_9", "shell_command", R"({"command":"ls -la"})"}};
  EXPECT_EQ(m.tool_calls(), expected);
}

TEST(ResponsesUsage, ErrorEventAndFailedResponseAreRecorded) {
  const UsageMeter errored = meter_stream(
      Api::kOpenAiResponses,
      "event: error\n"
      R"(data: {"type":"error","code":"server_error","message":"boom","param":null,"sequence_number":3})"
      "\n\n");
  ASSERT_TRUE(errored.error());
  EXPECT_EQ(*errored.error(), "server_error: boom");

  const UsageMeter failed = meter_stream(
      Api::kOpenAiResponses,
      "event: response.failed\n"
      R"(data: {"type":"response.failed","response":{"model":"gpt-5.5","status":"failed","error":{"code":"rate_limit_exceeded","message":"slow down"},"usage":{"input_tokens":10,"output_tokens":0}}})"
      "\n\n");
  ASSERT_TRUE(failed.error());
  EXPECT_EQ(*failed.error(), "rate_limit_exceeded: slow down");
  EXPECT_EQ(failed.usage().input, 10u);
  EXPECT_TRUE(failed.usage().complete);
}

TEST(ResponsesUsage, NonStreamedBodyExtractsEveryToolCallKind) {
  const UsageMeter m =
      meter_body(Api::kOpenAiResponses, R"({"id":"resp_2","model":"gpt-5.5","status":"completed",
    "output":[
      {"type":"message","id":"msg_1","content":[{"type":"output_text","text":"ok"}]},
      {"type":"function_call","id":"fc_1","call_id":"call_1","name":"exec_command","arguments":"{\"cmd\":\"pwd\"}"},
      {"type":"custom_tool_call","id":"ctc_1","call_id":"call_2","name":"apply_patch","input":"*** Begin Patch"},
      {"type":"local_shell_call","id":"lsh_1","call_id":"call_3","status":"completed","action":{"type":"exec","command":["ls"]}},
      {"type":"shell_call","id":"sh_1","call_id":"call_4","status":"completed","action":{"commands":["pwd"]}},
      {"type":"apply_patch_call","call_id":"call_5","operation":{"type":"delete_file","path":"a"}}],
    "usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":0}}})");
  const std::vector<ToolCall> expected = {
      {"call_1", "exec_command", R"({"cmd":"pwd"})"},
      {"call_2", "apply_patch", "*** Begin Patch"},
      {"call_3", "local_shell", R"({"type":"exec","command":["ls"]})"},
      {"call_4", "shell", R"({"commands":["pwd"]})"},
      {"call_5", "apply_patch", R"({"type":"delete_file","path":"a"})"},
  };
  EXPECT_EQ(m.tool_calls(), expected);
  EXPECT_EQ(m.usage().input, 100u);
  EXPECT_EQ(m.usage().output, 7u);
  EXPECT_TRUE(m.usage().complete);
}

// ---------------------------------------------------------------- Anthropic Messages

constexpr std::string_view kAnthropicStream =
    "event: message_start\n"
    R"(data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,"usage":{"input_tokens":849,"cache_creation_input_tokens":0,"cache_read_input_tokens":41203,"output_tokens":1}}})"
    "\n\n"
    "event: ping\n"
    R"(data: {"type": "ping"})"
    "\n\n"
    "event: content_block_start\n"
    R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}})"
    "\n\n"
    "event: content_block_stop\n"
    R"(data: {"type":"content_block_stop","index":0})"
    "\n\n"
    "event: content_block_start\n"
    R"(data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"Bash","input":{}}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"command\": \"git st"}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"atus\"}"}})"
    "\n\n"
    "event: content_block_stop\n"
    R"(data: {"type":"content_block_stop","index":1})"
    "\n\n"
    "event: content_block_start\n"
    R"(data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"TodoRead","input":{}}})"
    "\n\n"
    "event: content_block_stop\n"
    R"(data: {"type":"content_block_stop","index":2})"
    "\n\n"
    "event: message_delta\n"
    R"(data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":47}})"
    "\n\n"
    "event: message_stop\n"
    R"(data: {"type":"message_stop"})"
    "\n\n";

TEST(AnthropicUsage, StreamCombinesMessageStartAndCumulativeDelta) {
  const UsageMeter m = meter_stream(Api::kAnthropicMessages, kAnthropicStream);
  const Usage u = m.usage();
  EXPECT_EQ(u.model, "claude-sonnet-4-6");
  EXPECT_EQ(u.input, 849u);
  EXPECT_EQ(u.cache_read, 41203u);
  EXPECT_EQ(u.cache_write, 0u);
  EXPECT_EQ(u.output, 47u);
  EXPECT_TRUE(u.complete);
  const std::vector<ToolCall> expected = {
      {"toolu_1", "Bash", R"({"command": "git status"})"},
      {"toolu_2", "TodoRead", "{}"},
  };
  EXPECT_EQ(m.tool_calls(), expected);
}

TEST(AnthropicUsage, StreamCutBeforeMessageDeltaKeepsMessageStartUsage) {
  const UsageMeter m =
      meter_stream(Api::kAnthropicMessages, cut_before(kAnthropicStream, "event: message_delta"));
  const Usage u = m.usage();
  EXPECT_FALSE(u.complete);
  EXPECT_EQ(u.input, 849u);
  EXPECT_EQ(u.cache_read, 41203u);
  EXPECT_EQ(u.output, 1u);  // message_start's placeholder is the last count seen
}

TEST(AnthropicUsage, LaterDeltaReplacesNeverSums) {
  const Usage u =
      meter_stream(
          Api::kAnthropicMessages,
          "event: message_start\n"
          R"(data: {"type":"message_start","message":{"model":"claude-haiku-4-5","usage":{"input_tokens":10,"cache_read_input_tokens":0,"output_tokens":1}}})"
          "\n\n"
          "event: message_delta\n"
          R"(data: {"type":"message_delta","delta":{},"usage":{"output_tokens":20}})"
          "\n\n"
          "event: message_delta\n"
          R"(data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":35,"cache_read_input_tokens":500}})"
          "\n\n")
          .usage();
  EXPECT_EQ(u.input, 10u);
  EXPECT_EQ(u.output, 35u);
  EXPECT_EQ(u.cache_read, 500u);
  EXPECT_TRUE(u.complete);
}

TEST(AnthropicUsage, ErrorEventMidStream) {
  const UsageMeter m = meter_stream(
      Api::kAnthropicMessages,
      std::string(cut_before(kAnthropicStream, "event: content_block_start")) +
          "event: error\n"
          R"(data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"
          "\n\n");
  ASSERT_TRUE(m.error());
  EXPECT_EQ(*m.error(), "overloaded_error: Overloaded");
  EXPECT_FALSE(m.usage().complete);
  EXPECT_EQ(m.usage().input, 849u);
}

TEST(AnthropicUsage, NonStreamedBodySplitsCacheWriteTtl) {
  const UsageMeter m =
      meter_body(Api::kAnthropicMessages,
                 R"({"id":"msg_2","type":"message","role":"assistant","model":"claude-opus-4-7",
    "content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"Listing."},
               {"type":"tool_use","id":"toolu_9","name":"Bash","input":{"command":"ls -la"}}],
    "stop_reason":"tool_use",
    "usage":{"input_tokens":12,"cache_creation_input_tokens":300,"cache_read_input_tokens":7000,
             "cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},
             "output_tokens":90,"output_tokens_details":{"thinking_tokens":60}}})");
  const Usage u = m.usage();
  EXPECT_EQ(u.input, 12u);
  EXPECT_EQ(u.cache_read, 7000u);
  EXPECT_EQ(u.cache_write, 300u);
  EXPECT_EQ(u.cache_write_1h, 200u);
  EXPECT_EQ(u.output, 90u);
  EXPECT_EQ(u.reasoning, 60u);
  EXPECT_TRUE(u.complete);
  const std::vector<ToolCall> expected = {{"toolu_9", "Bash", R"({"command":"ls -la"})"}};
  EXPECT_EQ(m.tool_calls(), expected);
}

TEST(AnthropicUsage, ErrorBody) {
  const UsageMeter m = meter_body(
      Api::kAnthropicMessages,
      R"({"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: required"}})");
  ASSERT_TRUE(m.error());
  EXPECT_EQ(*m.error(), "invalid_request_error: max_tokens: required");
  EXPECT_FALSE(m.usage().complete);
}

// ---------------------------------------------------------------- Gemini

// alt=sse framing uses CRLF; usageMetadata is a cumulative running total on every chunk.
constexpr std::string_view kGeminiStream =
    R"(data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Let me look."}]},"index":0}],"usageMetadata":{"promptTokenCount":1000,"cachedContentTokenCount":600,"candidatesTokenCount":5,"thoughtsTokenCount":50,"totalTokenCount":1055},"modelVersion":"gemini-2.5-pro"})"
    "\r\n\r\n"
    R"(data: {"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"run_shell_command","args":{"command":"ls"}}}]},"index":0}],"usageMetadata":{"promptTokenCount":1000,"cachedContentTokenCount":600,"candidatesTokenCount":20,"thoughtsTokenCount":50,"totalTokenCount":1070},"modelVersion":"gemini-2.5-pro"})"
    "\r\n\r\n"
    R"(data: {"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"index":0}],"modelVersion":"gemini-2.5-pro"})"
    "\r\n\r\n"
    R"(data: {"candidates":[{"content":{"role":"model","parts":[{"text":"."}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1000,"cachedContentTokenCount":600,"candidatesTokenCount":25,"thoughtsTokenCount":80,"totalTokenCount":1105},"modelVersion":"gemini-2.5-pro"})"
    "\r\n\r\n";

TEST(GeminiUsage, StreamTakesLastCumulativeUsage) {
  const UsageMeter m = meter_stream(Api::kGeminiGenerate, kGeminiStream);
  const Usage u = m.usage();
  EXPECT_EQ(u.model, "gemini-2.5-pro");
  EXPECT_EQ(u.input, 400u);
  EXPECT_EQ(u.cache_read, 600u);
  EXPECT_EQ(u.output, 25u + 80u);  // thoughts are billed as output on top of candidates
  EXPECT_EQ(u.reasoning, 80u);
  EXPECT_TRUE(u.complete);
  const std::vector<ToolCall> expected = {{"", "run_shell_command", R"({"command":"ls"})"}};
  EXPECT_EQ(m.tool_calls(), expected);
}

TEST(GeminiUsage, StreamCutKeepsLastRunningTotal) {
  // The third chunk has no usageMetadata and must not reset what the second reported.
  const Usage u =
      meter_stream(
          Api::kGeminiGenerate,
          cut_before(kGeminiStream,
                     R"(data: {"candidates":[{"content":{"role":"model","parts":[{"text":"."}])"))
          .usage();
  EXPECT_FALSE(u.complete);
  EXPECT_EQ(u.input, 400u);
  EXPECT_EQ(u.output, 20u + 50u);
}

TEST(GeminiUsage, ErrorChunkMidStream) {
  const UsageMeter m = meter_stream(
      Api::kGeminiGenerate,
      std::string(cut_before(
          kGeminiStream,
          R"(data: {"candidates":[{"content":{"role":"model","parts":[{"functionCall")")) +
          R"(data: {"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}})"
          "\r\n\r\n");
  ASSERT_TRUE(m.error());
  EXPECT_EQ(*m.error(), "UNAVAILABLE: The model is overloaded.");
  EXPECT_FALSE(m.usage().complete);
}

TEST(GeminiUsage, NonStreamedParallelCallsAndToolPromptTokens) {
  const UsageMeter m =
      meter_body(Api::kGeminiGenerate, R"({"candidates":[{"content":{"role":"model","parts":[
      {"functionCall":{"id":"fc1","name":"read_file","args":{"path":"a"}},"thoughtSignature":"x"},
      {"functionCall":{"id":"fc2","name":"read_file","args":{"path":"b"}}}]},"finishReason":"STOP","index":0}],
    "usageMetadata":{"promptTokenCount":300,"cachedContentTokenCount":100,"candidatesTokenCount":30,
                     "thoughtsTokenCount":12,"toolUsePromptTokenCount":7,"totalTokenCount":349},
    "modelVersion":"gemini-3-pro-preview","responseId":"r1"})");
  const Usage u = m.usage();
  EXPECT_EQ(u.model, "gemini-3-pro-preview");
  EXPECT_EQ(u.input, 300u - 100u + 7u);
  EXPECT_EQ(u.cache_read, 100u);
  EXPECT_EQ(u.output, 42u);
  EXPECT_EQ(u.reasoning, 12u);
  EXPECT_TRUE(u.complete);
  const std::vector<ToolCall> expected = {
      {"fc1", "read_file", R"({"path":"a"})"},
      {"fc2", "read_file", R"({"path":"b"})"},
  };
  EXPECT_EQ(m.tool_calls(), expected);
}

TEST(GeminiUsage, JsonArrayStreamBodyTakesLastUsage) {
  const Usage u =
      meter_body(
          Api::kGeminiGenerate,
          R"([{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":1}},
{"candidates":[{"content":{"parts":[{"text":"b"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":4}}])")
          .usage();
  EXPECT_EQ(u.input, 9u);
  EXPECT_EQ(u.output, 4u);
  EXPECT_TRUE(u.complete);
}

TEST(GeminiUsage, BlockedPromptIsComplete) {
  const Usage u =
      meter_body(
          Api::kGeminiGenerate,
          R"({"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":15,"totalTokenCount":15}})")
          .usage();
  EXPECT_EQ(u.input, 15u);
  EXPECT_EQ(u.output, 0u);
  EXPECT_TRUE(u.complete);
}

// ---------------------------------------------------------------- request side

TEST(ModelFromRequest, BodyOrGeminiPath) {
  EXPECT_EQ(model_from_request(Api::kOpenAiChat, R"({"model":"gpt-5.5","messages":[]})",
                               "/v1/chat/completions"),
            "gpt-5.5");
  EXPECT_EQ(
      model_from_request(Api::kAnthropicMessages, R"({"max_tokens":1,"model":"claude-opus-4-7"})",
                         "/v1/messages?beta=true"),
      "claude-opus-4-7");
  EXPECT_EQ(model_from_request(Api::kGeminiGenerate, "{}",
                               "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"),
            "gemini-2.5-pro");
  EXPECT_EQ(model_from_request(Api::kGeminiGenerate, "{}",
                               "/v1/projects/p/locations/us-central1/publishers/google/models/"
                               "gemini-3-pro-preview:generateContent"),
            "gemini-3-pro-preview");
  EXPECT_EQ(model_from_request(Api::kOpenAiResponses, "{broken", "/v1/responses"), "");
  EXPECT_EQ(model_from_request(Api::kGeminiGenerate, "{}", "/v1beta/files"), "");
}

TEST(UsageMeter, MalformedInputIsIgnored) {
  UsageMeter m(Api::kOpenAiChat);
  m.feed_body("{not json");
  m.feed_event(SseEvent{"", "{\"usage\":", ""});
  m.feed_event(SseEvent{"", R"({"usage":{"prompt_tokens":"many","completion_tokens":-3}})", ""});
  const Usage u = m.usage();
  EXPECT_EQ(u.input, 0u);
  EXPECT_EQ(u.output, 0u);
  EXPECT_FALSE(u.complete);
  EXPECT_FALSE(m.error());
}

}  // namespace
}  // namespace airlock::control
