#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "control/metering/sse.h"
#include "control/metering/usage.h"

// A relay sees a provider stream cut into TCP reads at arbitrary bytes. For one recorded-style
// stream per format, every two-piece split and a one-byte-at-a-time feed must meter exactly the
// events, tool calls and usage of the whole stream, with the stream's own LF framing and re-framed
// with CRLF and bare CR line ends. Fixtures follow shared/research/protocols.md §1-§4.
namespace airlock::control {
namespace {

// OpenAI Chat, two parallel function calls whose argument fragments interleave (one with an
// escaped multi-byte character), a custom tool whose free-text input streams, then the
// injected usage chunk and [DONE].
constexpr std::string_view kChatStream =
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","service_tier":"default","system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Xq3"})"
    "\n\n"
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_Rk2mJ8","type":"function","function":{"name":"shell","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"a"})"
    "\n\n"
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"command\":[\"bash\",\"-lc\",\""}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"b9"})"
    "\n\n"
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_Q7vT1p","type":"function","function":{"name":"read_file","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Zz"})"
    "\n\n"
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"path\":\"caf\u00e9/"}}]},"logprobs":null,"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"grep -rn TODO src | head\"]}"}}]},"logprobs":null,"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"menu.txt\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","choices":[{"index":0,"delta":{"tool_calls":[{"index":2,"id":"call_P4tch0","type":"custom","custom":{"name":"apply_patch","input":"*** Begin Patch\n"}}]},"logprobs":null,"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","choices":[{"index":0,"delta":{"tool_calls":[{"index":2,"custom":{"input":"*** Update File: a.cc\n-old\n+new\n*** End Patch"}}]},"logprobs":null,"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null})"
    "\n\n"
    R"(data: {"id":"chatcmpl-C9x","object":"chat.completion.chunk","created":1767000000,"model":"gpt-5.5-2026-04-23","choices":[],"usage":{"prompt_tokens":5120,"completion_tokens":212,"total_tokens":5332,"prompt_tokens_details":{"cached_tokens":4864,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":128,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}})"
    "\n\n"
    "data: [DONE]\n\n";

const std::vector<ToolCall> kChatCalls = {
    {"call_Rk2mJ8", "shell", R"({"command":["bash","-lc","grep -rn TODO src | head"]})"},
    {"call_Q7vT1p", "read_file", "{\"path\":\"caf\xc3\xa9/menu.txt\"}"},
    {"call_P4tch0", "apply_patch",
     "*** Begin Patch\n*** Update File: a.cc\n-old\n+new\n*** End Patch"},
};

// OpenAI Responses as Codex sees it: reasoning, a function_call with argument deltas, a
// custom_tool_call (apply_patch) with input deltas, a local_shell_call that arrives whole, and
// the terminal response.completed repeating every item.
constexpr std::string_view kResponsesStream =
    "event: response.created\n"
    R"(data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_68a1","object":"response","created_at":1767000000,"status":"in_progress","model":"gpt-5.5-2026-04-23","instructions":"You are Codex, a coding agent.","output":[],"tools":[{"type":"function","name":"shell"}],"usage":null}})"
    "\n\n"
    "event: response.in_progress\n"
    R"(data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_68a1","status":"in_progress","model":"gpt-5.5-2026-04-23","output":[],"usage":null}})"
    "\n\n"
    "event: response.output_item.added\n"
    R"(data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"rs_01","type":"reasoning","encrypted_content":"gAAAAABo","summary":[]}})"
    "\n\n"
    "event: response.reasoning_summary_text.delta\n"
    R"(data: {"type":"response.reasoning_summary_text.delta","sequence_number":3,"item_id":"rs_01","output_index":0,"summary_index":0,"delta":"**Listing files**"})"
    "\n\n"
    "event: response.output_item.done\n"
    R"(data: {"type":"response.output_item.done","sequence_number":4,"output_index":0,"item":{"id":"rs_01","type":"reasoning","encrypted_content":"gAAAAABo","summary":[{"type":"summary_text","text":"**Listing files**"}]}})"
    "\n\n"
    "event: response.output_item.added\n"
    R"(data: {"type":"response.output_item.added","sequence_number":5,"output_index":1,"item":{"id":"fc_01","type":"function_call","status":"in_progress","arguments":"","call_id":"call_sh1","name":"shell_command"}})"
    "\n\n"
    "event: response.function_call_arguments.delta\n"
    R"(data: {"type":"response.function_call_arguments.delta","sequence_number":6,"item_id":"fc_01","output_index":1,"delta":"{\"command\":\"git","obfuscation":"k2"})"
    "\n\n"
    "event: response.function_call_arguments.delta\n"
    R"(data: {"type":"response.function_call_arguments.delta","sequence_number":7,"item_id":"fc_01","output_index":1,"delta":" log --oneline -5\",\"workdir\":\"/repo\"}"})"
    "\n\n"
    "event: response.function_call_arguments.done\n"
    R"(data: {"type":"response.function_call_arguments.done","sequence_number":8,"item_id":"fc_01","output_index":1,"name":"shell_command","arguments":"{\"command\":\"git log --oneline -5\",\"workdir\":\"/repo\"}"})"
    "\n\n"
    "event: response.output_item.done\n"
    R"(data: {"type":"response.output_item.done","sequence_number":9,"output_index":1,"item":{"id":"fc_01","type":"function_call","status":"completed","arguments":"{\"command\":\"git log --oneline -5\",\"workdir\":\"/repo\"}","call_id":"call_sh1","name":"shell_command"}})"
    "\n\n"
    "event: response.output_item.added\n"
    R"(data: {"type":"response.output_item.added","sequence_number":10,"output_index":2,"item":{"id":"ctc_01","type":"custom_tool_call","status":"in_progress","call_id":"call_ap1","input":"","name":"apply_patch"}})"
    "\n\n"
    "event: response.custom_tool_call_input.delta\n"
    R"(data: {"type":"response.custom_tool_call_input.delta","sequence_number":11,"item_id":"ctc_01","output_index":2,"delta":"*** Begin Patch\n*** Add File: hello.txt\n"})"
    "\n\n"
    "event: response.custom_tool_call_input.delta\n"
    R"(data: {"type":"response.custom_tool_call_input.delta","sequence_number":12,"item_id":"ctc_01","output_index":2,"delta":"+Hello, world!\n*** End Patch"})"
    "\n\n"
    "event: response.custom_tool_call_input.done\n"
    R"(data: {"type":"response.custom_tool_call_input.done","sequence_number":13,"item_id":"ctc_01","output_index":2,"input":"*** Begin Patch\n*** Add File: hello.txt\n+Hello, world!\n*** End Patch"})"
    "\n\n"
    "event: response.output_item.done\n"
    R"(data: {"type":"response.output_item.done","sequence_number":14,"output_index":2,"item":{"id":"ctc_01","type":"custom_tool_call","status":"completed","call_id":"call_ap1","input":"*** Begin Patch\n*** Add File: hello.txt\n+Hello, world!\n*** End Patch","name":"apply_patch"}})"
    "\n\n"
    "event: response.output_item.added\n"
    R"(data: {"type":"response.output_item.added","sequence_number":15,"output_index":3,"item":{"id":"lsh_01","type":"local_shell_call","status":"in_progress","call_id":"call_ls1","action":{"type":"exec","command":["ls","-la"],"env":{},"timeout_ms":10000,"working_directory":"/repo","user":null}}})"
    "\n\n"
    "event: response.output_item.done\n"
    R"(data: {"type":"response.output_item.done","sequence_number":16,"output_index":3,"item":{"id":"lsh_01","type":"local_shell_call","status":"completed","call_id":"call_ls1","action":{"type":"exec","command":["ls","-la"],"env":{},"timeout_ms":10000,"working_directory":"/repo","user":null}}})"
    "\n\n"
    "event: response.completed\n"
    R"(data: {"type":"response.completed","sequence_number":17,"response":{"id":"resp_68a1","object":"response","status":"completed","model":"gpt-5.5-2026-04-23","output":[{"id":"rs_01","type":"reasoning","summary":[]},{"id":"fc_01","type":"function_call","status":"completed","arguments":"{\"command\":\"git log --oneline -5\",\"workdir\":\"/repo\"}","call_id":"call_sh1","name":"shell_command"},{"id":"ctc_01","type":"custom_tool_call","status":"completed","call_id":"call_ap1","input":"*** Begin Patch\n*** Add File: hello.txt\n+Hello, world!\n*** End Patch","name":"apply_patch"},{"id":"lsh_01","type":"local_shell_call","status":"completed","call_id":"call_ls1","action":{"type":"exec","command":["ls","-la"],"env":{},"timeout_ms":10000,"working_directory":"/repo","user":null}}],"usage":{"input_tokens":9012,"input_tokens_details":{"cached_tokens":8704},"output_tokens":401,"output_tokens_details":{"reasoning_tokens":256},"total_tokens":9413}}})"
    "\n\n";

const std::vector<ToolCall> kResponsesCalls = {
    {"call_sh1", "shell_command", R"({"command":"git log --oneline -5","workdir":"/repo"})"},
    {"call_ap1", "apply_patch",
     "*** Begin Patch\n*** Add File: hello.txt\n+Hello, world!\n*** End Patch"},
    {"call_ls1", "local_shell",
     R"({"type":"exec","command":["ls","-la"],"env":{},"timeout_ms":10000,"working_directory":"/repo","user":null})"},
};

// Anthropic as Claude Code sees it: thinking, text, two tool_use blocks whose input streams as
// input_json_delta (the first fragment empty), pings, and the cumulative message_delta.
constexpr std::string_view kAnthropicStream =
    "event: message_start\n"
    R"(data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":849,"cache_creation_input_tokens":1203,"cache_read_input_tokens":41203,"cache_creation":{"ephemeral_5m_input_tokens":1203,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}})"
    "\n\n"
    "event: content_block_start\n"
    R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}})"
    "\n\n"
    "event: ping\n"
    R"(data: {"type": "ping"})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Check status, then the diff."}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}})"
    "\n\n"
    "event: content_block_stop\n"
    R"(data: {"type":"content_block_stop","index":0})"
    "\n\n"
    "event: content_block_start\n"
    R"(data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"I'll look at the repository state."}})"
    "\n\n"
    "event: content_block_stop\n"
    R"(data: {"type":"content_block_stop","index":1})"
    "\n\n"
    "event: content_block_start\n"
    R"(data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"Bash","input":{}}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"command\": \"git st"}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"atus --short\", \"description\": \"Show working tree status\"}"}})"
    "\n\n"
    "event: content_block_stop\n"
    R"(data: {"type":"content_block_stop","index":2})"
    "\n\n"
    "event: content_block_start\n"
    R"(data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_01B7x2hHk3Jq5EXAMPLE","name":"Read","input":{}}})"
    "\n\n"
    "event: ping\n"
    R"(data: {"type": "ping"})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"file_pa"}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"th\": \"/repo/src/main.cc\"}"}})"
    "\n\n"
    "event: content_block_stop\n"
    R"(data: {"type":"content_block_stop","index":3})"
    "\n\n"
    "event: message_delta\n"
    R"(data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":849,"cache_creation_input_tokens":1203,"cache_read_input_tokens":41203,"output_tokens":187}})"
    "\n\n"
    "event: message_stop\n"
    R"(data: {"type":"message_stop"})"
    "\n\n";

const std::vector<ToolCall> kAnthropicCalls = {
    {"toolu_01A09q90qw90lq917835lq9", "Bash",
     R"({"command": "git status --short", "description": "Show working tree status"})"},
    {"toolu_01B7x2hHk3Jq5EXAMPLE", "Read", R"({"file_path": "/repo/src/main.cc"})"},
};

// Gemini streamGenerateContent?alt=sse (CRLF framing, no [DONE]): a thought, then two parallel
// functionCall parts in one chunk and a third in the next, each chunk with running usage.
constexpr std::string_view kGeminiStream =
    R"(data: {"candidates":[{"content":{"parts":[{"text":"**Inspecting** the project layout","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":7311,"totalTokenCount":7311,"promptTokensDetails":[{"modality":"TEXT","tokenCount":7311}],"thoughtsTokenCount":42},"modelVersion":"gemini-2.5-pro","responseId":"mP9oaK3aLqOe"})"
    "\r\n\r\n"
    R"(data: {"candidates":[{"content":{"parts":[{"functionCall":{"name":"run_shell_command","args":{"command":"ls -la src","description":"List the sources"}},"thoughtSignature":"CiQB0e2Kb7"},{"functionCall":{"name":"read_file","args":{"absolute_path":"/repo/README.md"}}}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":7311,"candidatesTokenCount":61,"totalTokenCount":7414,"thoughtsTokenCount":42},"modelVersion":"gemini-2.5-pro","responseId":"mP9oaK3aLqOe"})"
    "\r\n\r\n"
    R"(data: {"candidates":[{"content":{"parts":[{"functionCall":{"id":"fc-3","name":"glob","args":{"pattern":"**/*.h"}}}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":7311,"candidatesTokenCount":83,"totalTokenCount":7436,"cachedContentTokenCount":4096,"thoughtsTokenCount":42},"modelVersion":"gemini-2.5-pro","responseId":"mP9oaK3aLqOe"})"
    "\r\n\r\n";

const std::vector<ToolCall> kGeminiCalls = {
    {"", "run_shell_command", R"({"command":"ls -la src","description":"List the sources"})"},
    {"", "read_file", R"({"absolute_path":"/repo/README.md"})"},
    {"fc-3", "glob", R"({"pattern":"**/*.h"})"},
};

struct Metered {
  std::vector<ToolCall> calls;
  Usage usage;
  std::vector<SseEvent> events;
  bool parsed = true;
};

Metered meter_pieces(Api api, const std::vector<std::string_view>& pieces) {
  UsageMeter meter(api);
  SseParser parser;
  Metered out;
  for (const std::string_view piece : pieces) {
    const bool ok = parser.feed(piece, [&](const SseEvent& e) {
      out.events.push_back(e);
      meter.feed_event(e);
    });
    out.parsed = out.parsed && ok;
  }
  out.calls = meter.tool_calls();
  out.usage = meter.usage();
  return out;
}

// Every line end of `stream` ("\r\n" or "\n") replaced with `line_end`.
std::string reframe(std::string_view stream, std::string_view line_end) {
  std::string out;
  for (std::size_t i = 0; i < stream.size(); ++i) {
    if (stream[i] == '\r' && i + 1 < stream.size() && stream[i + 1] == '\n') continue;
    if (stream[i] == '\n') {
      out += line_end;
    } else {
      out += stream[i];
    }
  }
  return out;
}

void expect_same_usage(const Usage& got, const Usage& want) {
  EXPECT_EQ(got.model, want.model);
  EXPECT_EQ(got.input, want.input);
  EXPECT_EQ(got.output, want.output);
  EXPECT_EQ(got.cache_read, want.cache_read);
  EXPECT_EQ(got.cache_write, want.cache_write);
  EXPECT_EQ(got.complete, want.complete);
}

struct Case {
  const char* name;
  Api api;
  std::string_view stream;
  const std::vector<ToolCall>* calls;
  std::size_t events;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class ToolCallSplits : public ::testing::TestWithParam<Case> {};

TEST_P(ToolCallSplits, EverySplitMetersTheSameToolCalls) {
  const Case& c = GetParam();
  for (const std::string_view line_end : {"\n", "\r\n", "\r"}) {
    const std::string stream = reframe(c.stream, line_end);
    SCOPED_TRACE(line_end == "\n" ? "LF" : line_end == "\r\n" ? "CRLF" : "CR");
    const Metered whole = meter_pieces(c.api, {stream});
    ASSERT_TRUE(whole.parsed);
    ASSERT_EQ(whole.events.size(), c.events);
    ASSERT_EQ(whole.calls, *c.calls);
    ASSERT_TRUE(whole.usage.complete);

    for (std::size_t i = 0; i <= stream.size(); ++i) {
      const std::string_view s(stream);
      const Metered split = meter_pieces(c.api, {s.substr(0, i), s.substr(i)});
      ASSERT_TRUE(split.parsed) << "split at " << i;
      ASSERT_EQ(split.events, whole.events) << "split at " << i;
      ASSERT_EQ(split.calls, whole.calls) << "split at " << i;
      expect_same_usage(split.usage, whole.usage);
    }

    std::vector<std::string_view> bytes;
    for (std::size_t i = 0; i < stream.size(); ++i)
      bytes.push_back(std::string_view(stream).substr(i, 1));
    const Metered trickled = meter_pieces(c.api, bytes);
    EXPECT_TRUE(trickled.parsed);
    EXPECT_EQ(trickled.events, whole.events);
    EXPECT_EQ(trickled.calls, whole.calls);
    expect_same_usage(trickled.usage, whole.usage);
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllFormats, ToolCallSplits,
    ::testing::Values(
        Case{"OpenAiChat", Api::kOpenAiChat, kChatStream, &kChatCalls, 12},
        Case{"OpenAiResponses", Api::kOpenAiResponses, kResponsesStream, &kResponsesCalls, 18},
        Case{"AnthropicMessages", Api::kAnthropicMessages, kAnthropicStream, &kAnthropicCalls, 21},
        Case{"GeminiGenerate", Api::kGeminiGenerate, kGeminiStream, &kGeminiCalls, 3}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace airlock::control
