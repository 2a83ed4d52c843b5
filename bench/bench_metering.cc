// Metering throughput on the gateway's own path: a provider response goes through
// gateway::Relay (SSE framing, per-event usage and tool-call extraction, for OpenAI Chat streams
// without client-requested usage also the removal of the injected usage chunk) in read-sized
// pieces, and a non-streamed body is copied and metered once at its end. The request side is
// the parse every request body gets before routing (model, stream flag, session, tool results),
// plus what a budget and usage injection add for an OpenAI Chat stream.
//
// Streams are built after the shapes in shared/research/protocols.md (§1-§4) and
// tests/test_usage.cc: many small content deltas, one tool call whose arguments arrive in
// fragments, usage at the end. Times per iteration are per response or per request body.
#include <benchmark/benchmark.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/budget/estimate.h"
#include "control/gateway/relay.h"
#include "control/metering/json_parse.h"
#include "control/metering/json_view.h"
#include "control/metering/session.h"
#include "control/metering/tool_results.h"
#include "control/metering/usage.h"

namespace {

using airlock::control::Api;
using airlock::control::JsonDocument;
using airlock::control::JsonView;
using airlock::control::ToolResult;
using airlock::control::gateway::Relay;
using airlock::control::gateway::RelayOptions;
using ojson = nlohmann::ordered_json;

// Content deltas per stream: a 400-token answer, one token per delta as OpenAI and Anthropic
// send them.
constexpr int kDeltas = 400;
constexpr uint64_t kOutputTokens = 460;

const char* const kWords[] = {" The",   " deployment", " failed", " because", " the",
                              " retry", " loop",       " does",   " not",     " back",
                              " off",   ";",           " see",    " `",       "handler",
                              ".cc",    "`",           " line",   " 42",      ".\n"};

std::string word(int i) {
  return kWords[static_cast<std::size_t>(i) % std::size(kWords)];
}

// Argument fragments of one shell call, as the models stream them.
std::vector<std::string> argument_fragments() {
  const std::string args =
      R"({"command":["bash","-lc","git diff --stat && make -j8 test 2>&1 | tail -n 50"],)"
      R"("workdir":"/home/dev/src/service","timeout_ms":120000})";
  std::vector<std::string> out;
  for (std::size_t at = 0; at < args.size(); at += 7) out.push_back(args.substr(at, 7));
  return out;
}

std::string sse(const ojson& data) {
  return "data: " + data.dump() + "\n\n";
}

std::string sse(std::string_view event, const ojson& data) {
  return "event: " + std::string(event) + "\ndata: " + data.dump() + "\n\n";
}

// Codex-sized instructions, which Responses echoes in response.created and response.completed.
std::string instructions() {
  std::string text;
  while (text.size() < 6000) {
    text +=
        "You are a coding agent running in a sandbox. Prefer small, reviewable patches; run the "
        "tests after each change and report what you ran. ";
  }
  return text;
}

ojson chat_chunk(const ojson& delta, const ojson& finish) {
  ojson chunk = {{"id", "chatcmpl-CvQx1"},    {"object", "chat.completion.chunk"},
                 {"created", 1767225600},     {"model", "gpt-5.5-2026-04-23"},
                 {"service_tier", "default"}, {"system_fingerprint", nullptr}};
  ojson choice = {{"index", 0}, {"delta", delta}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish;
  chunk["choices"] = ojson::array({choice});
  chunk["usage"] = nullptr;
  chunk["obfuscation"] = "aZ3kQ";
  return chunk;
}

std::string chat_stream() {
  std::string out = sse(chat_chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
  for (int i = 0; i < kDeltas; ++i) out += sse(chat_chunk({{"content", word(i)}}, nullptr));
  ojson first_call = {{"index", 0},
                      {"id", "call_7Hq2"},
                      {"type", "function"},
                      {"function", {{"name", "shell"}, {"arguments", ""}}}};
  out += sse(chat_chunk({{"tool_calls", ojson::array({first_call})}}, nullptr));
  for (const std::string& fragment : argument_fragments()) {
    ojson call = {{"index", 0}, {"function", {{"arguments", fragment}}}};
    out += sse(chat_chunk({{"tool_calls", ojson::array({call})}}, nullptr));
  }
  out += sse(chat_chunk(ojson::object(), "tool_calls"));
  ojson usage_chunk = chat_chunk(ojson::object(), nullptr);
  usage_chunk["choices"] = ojson::array();
  usage_chunk["usage"] = {
      {"prompt_tokens", 18500},
      {"completion_tokens", kOutputTokens},
      {"total_tokens", 18500 + kOutputTokens},
      {"prompt_tokens_details", {{"cached_tokens", 17920}, {"audio_tokens", 0}}},
      {"completion_tokens_details", {{"reasoning_tokens", 0}, {"audio_tokens", 0}}}};
  out += sse(usage_chunk);
  out += "data: [DONE]\n\n";
  return out;
}

std::string anthropic_stream() {
  ojson start = {{"type", "message_start"},
                 {"message",
                  {{"id", "msg_01XFDUDYJgAACzvnptvVoYEL"},
                   {"type", "message"},
                   {"role", "assistant"},
                   {"model", "claude-sonnet-4-6"},
                   {"content", ojson::array()},
                   {"stop_reason", nullptr},
                   {"stop_sequence", nullptr},
                   {"usage",
                    {{"input_tokens", 849},
                     {"cache_creation_input_tokens", 0},
                     {"cache_read_input_tokens", 41203},
                     {"output_tokens", 1}}}}}};
  std::string out = sse("message_start", start);
  out += sse("ping", {{"type", "ping"}});
  out += sse("content_block_start", {{"type", "content_block_start"},
                                     {"index", 0},
                                     {"content_block", {{"type", "text"}, {"text", ""}}}});
  for (int i = 0; i < kDeltas; ++i) {
    out += sse("content_block_delta", {{"type", "content_block_delta"},
                                       {"index", 0},
                                       {"delta", {{"type", "text_delta"}, {"text", word(i)}}}});
  }
  out += sse("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}});
  out += sse("content_block_start", {{"type", "content_block_start"},
                                     {"index", 1},
                                     {"content_block",
                                      {{"type", "tool_use"},
                                       {"id", "toolu_01A09q90qw90lq917835lq9"},
                                       {"name", "Bash"},
                                       {"input", ojson::object()}}}});
  for (const std::string& fragment : argument_fragments()) {
    out += sse("content_block_delta",
               {{"type", "content_block_delta"},
                {"index", 1},
                {"delta", {{"type", "input_json_delta"}, {"partial_json", fragment}}}});
  }
  out += sse("content_block_stop", {{"type", "content_block_stop"}, {"index", 1}});
  out += sse("message_delta", {{"type", "message_delta"},
                               {"delta", {{"stop_reason", "tool_use"}, {"stop_sequence", nullptr}}},
                               {"usage", {{"output_tokens", kOutputTokens}}}});
  out += sse("message_stop", {{"type", "message_stop"}});
  return out;
}

ojson function_call_item(std::string_view arguments, std::string_view status) {
  return {{"type", "function_call"}, {"id", "fc_68af"},        {"call_id", "call_9Qe1"},
          {"name", "shell"},         {"arguments", arguments}, {"status", status}};
}

std::string responses_stream() {
  const std::string text_instructions = instructions();
  ojson tools = ojson::array();
  for (const char* name : {"shell", "apply_patch", "update_plan", "view_image"}) {
    tools.push_back({{"type", "function"},
                     {"name", name},
                     {"description", "Runs " + std::string(name) + " in the sandbox."},
                     {"parameters",
                      {{"type", "object"},
                       {"properties", {{"command", {{"type", "array"}}}}},
                       {"required", ojson::array({"command"})}}}});
  }
  ojson response = {{"id", "resp_68af"},
                    {"object", "response"},
                    {"created_at", 1767225600},
                    {"status", "in_progress"},
                    {"model", "gpt-5.5-2026-04-23"},
                    {"instructions", text_instructions},
                    {"tools", tools},
                    {"output", ojson::array()},
                    {"usage", nullptr}};
  int seq = 0;
  std::string out =
      sse("response.created",
          {{"type", "response.created"}, {"sequence_number", seq++}, {"response", response}});
  out +=
      sse("response.in_progress",
          {{"type", "response.in_progress"}, {"sequence_number", seq++}, {"response", response}});
  const ojson message_item = {{"id", "msg_68af"},
                              {"type", "message"},
                              {"status", "in_progress"},
                              {"content", ojson::array()},
                              {"role", "assistant"}};
  out += sse("response.output_item.added", {{"type", "response.output_item.added"},
                                            {"sequence_number", seq++},
                                            {"output_index", 0},
                                            {"item", message_item}});
  std::string text;
  for (int i = 0; i < kDeltas; ++i) {
    text += word(i);
    out += sse("response.output_text.delta", {{"type", "response.output_text.delta"},
                                              {"sequence_number", seq++},
                                              {"item_id", "msg_68af"},
                                              {"output_index", 0},
                                              {"content_index", 0},
                                              {"delta", word(i)},
                                              {"logprobs", ojson::array()},
                                              {"obfuscation", "Xk2pQ9"}});
  }
  out += sse("response.output_text.done", {{"type", "response.output_text.done"},
                                           {"sequence_number", seq++},
                                           {"item_id", "msg_68af"},
                                           {"output_index", 0},
                                           {"content_index", 0},
                                           {"text", text},
                                           {"logprobs", ojson::array()}});
  ojson message_done = message_item;
  message_done["status"] = "completed";
  message_done["content"] =
      ojson::array({{{"type", "output_text"}, {"annotations", ojson::array()}, {"text", text}}});
  out += sse("response.output_item.done", {{"type", "response.output_item.done"},
                                           {"sequence_number", seq++},
                                           {"output_index", 0},
                                           {"item", message_done}});
  out += sse("response.output_item.added", {{"type", "response.output_item.added"},
                                            {"sequence_number", seq++},
                                            {"output_index", 1},
                                            {"item", function_call_item("", "in_progress")}});
  std::string arguments;
  for (const std::string& fragment : argument_fragments()) {
    arguments += fragment;
    out += sse("response.function_call_arguments.delta",
               {{"type", "response.function_call_arguments.delta"},
                {"sequence_number", seq++},
                {"item_id", "fc_68af"},
                {"output_index", 1},
                {"delta", fragment}});
  }
  out += sse("response.function_call_arguments.done",
             {{"type", "response.function_call_arguments.done"},
              {"sequence_number", seq++},
              {"item_id", "fc_68af"},
              {"output_index", 1},
              {"arguments", arguments}});
  const ojson call_done = function_call_item(arguments, "completed");
  out += sse("response.output_item.done", {{"type", "response.output_item.done"},
                                           {"sequence_number", seq++},
                                           {"output_index", 1},
                                           {"item", call_done}});
  response["status"] = "completed";
  response["output"] = ojson::array({message_done, call_done});
  response["usage"] = {{"input_tokens", 18500},
                       {"input_tokens_details", {{"cached_tokens", 17920}}},
                       {"output_tokens", kOutputTokens},
                       {"output_tokens_details", {{"reasoning_tokens", 0}}},
                       {"total_tokens", 18500 + kOutputTokens}};
  out += sse("response.completed",
             {{"type", "response.completed"}, {"sequence_number", seq++}, {"response", response}});
  return out;
}

// Gemini sends a few tokens per chunk with the running usage on each, CRLF-framed (alt=sse).
std::string gemini_stream() {
  constexpr int kChunks = kDeltas / 8;
  std::string out;
  for (int chunk = 0; chunk < kChunks; ++chunk) {
    std::string text;
    for (int i = 0; i < 8; ++i) text += word(chunk * 8 + i);
    ojson part = {{"text", text}};
    ojson candidate = {{"content", {{"parts", ojson::array({part})}, {"role", "model"}}},
                       {"index", 0}};
    const bool last = chunk == kChunks - 1;
    if (last) {
      ojson call = {{"functionCall",
                     {{"name", "run_shell_command"},
                      {"args", {{"command", "git diff --stat && make -j8 test"}}}}}};
      candidate["content"]["parts"].push_back(call);
      candidate["finishReason"] = "STOP";
    }
    const uint64_t output = last ? kOutputTokens : static_cast<uint64_t>(chunk + 1) * 8;
    ojson data = {
        {"candidates", ojson::array({candidate})},
        {"usageMetadata",
         {{"promptTokenCount", 18500},
          {"candidatesTokenCount", output},
          {"totalTokenCount", 18500 + output},
          {"cachedContentTokenCount", 17920},
          {"promptTokensDetails", ojson::array({{{"modality", "TEXT"}, {"tokenCount", 18500}}})},
          {"thoughtsTokenCount", 0}}},
        {"modelVersion", "gemini-2.5-pro"},
        {"responseId", "mK9vaO3xL4mB1MkP"}};
    out += "data: " + data.dump() + "\r\n\r\n";
  }
  return out;
}

// A non-streamed Chat completion whose answer makes the body about `target` bytes.
std::string chat_body(std::size_t target) {
  std::string content;
  ojson body;
  for (int i = 0;; ++i) {
    content += word(i);
    if (i % 64 != 0) continue;
    ojson message = {{"role", "assistant"}, {"content", content}, {"refusal", nullptr}};
    message["tool_calls"] = ojson::array(
        {{{"id", "call_7Hq2"},
          {"type", "function"},
          {"function", {{"name", "shell"}, {"arguments", R"({"command":["make","test"]})"}}}}});
    body = {{"id", "chatcmpl-CvQx1"},
            {"object", "chat.completion"},
            {"created", 1767225600},
            {"model", "gpt-5.5-2026-04-23"},
            {"choices", ojson::array({{{"index", 0},
                                       {"message", message},
                                       {"logprobs", nullptr},
                                       {"finish_reason", "tool_calls"}}})},
            {"usage",
             {{"prompt_tokens", 18500},
              {"completion_tokens", kOutputTokens},
              {"total_tokens", 18500 + kOutputTokens},
              {"prompt_tokens_details", {{"cached_tokens", 17920}, {"audio_tokens", 0}}},
              {"completion_tokens_details", {{"reasoning_tokens", 0}}}}},
            {"service_tier", "default"},
            {"system_fingerprint", nullptr}};
    if (body.dump().size() >= target) return body.dump();
  }
}

struct Stream {
  Api api;
  bool strip;  // the gateway injected stream_options.include_usage and removes its chunk
  std::string (*make)();
};

const Stream kChat{Api::kOpenAiChat, false, chat_stream};
const Stream kChatStripped{Api::kOpenAiChat, true, chat_stream};
const Stream kAnthropic{Api::kAnthropicMessages, false, anthropic_stream};
const Stream kResponses{Api::kOpenAiResponses, false, responses_stream};
const Stream kGemini{Api::kGeminiGenerate, false, gemini_stream};

std::size_t count_events(std::string_view body) {
  airlock::control::SseParser parser;
  std::size_t events = 0;
  parser.feed(body, [&](const airlock::control::SseEvent&) { ++events; });
  return events;
}

// Relays `body` as the gateway's on_body does (one call per read, the client's bytes collected
// per call) and returns the metered output tokens, or nullopt when usage is incomplete.
std::optional<uint64_t> relay(const RelayOptions& options, std::string_view body, std::size_t read,
                              std::string& to_client) {
  Relay r(options);
  for (std::size_t at = 0; at < body.size(); at += read) {
    to_client.clear();
    r.feed(body.substr(at, read), to_client);
    benchmark::DoNotOptimize(to_client.data());
  }
  to_client.clear();
  r.finish(to_client);
  const auto usage = r.usage();
  if (!usage.complete || r.tool_calls().size() != 1) return std::nullopt;
  return usage.output;
}

// Arg: bytes per read.
void BM_RelayStream(benchmark::State& state, const Stream& stream) {
  const std::string body = stream.make();
  const auto read = static_cast<std::size_t>(state.range(0));
  const RelayOptions options{stream.api, true, stream.strip};
  std::string to_client;
  to_client.reserve(read * 2);
  for (auto _ : state) {
    if (relay(options, body, read, to_client) != kOutputTokens) {
      state.SkipWithError("stream not metered");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.counters["stream_bytes"] = static_cast<double>(body.size());
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(count_events(body)),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_CAPTURE(BM_RelayStream, openai_chat, kChat)->Arg(1024)->Arg(4096);
BENCHMARK_CAPTURE(BM_RelayStream, openai_chat_strip_usage, kChatStripped)->Arg(1024)->Arg(4096);
BENCHMARK_CAPTURE(BM_RelayStream, anthropic, kAnthropic)->Arg(1024)->Arg(4096);
BENCHMARK_CAPTURE(BM_RelayStream, responses, kResponses)->Arg(1024)->Arg(4096);
BENCHMARK_CAPTURE(BM_RelayStream, gemini, kGemini)->Arg(1024)->Arg(4096);

// SSE framing alone (no JSON), to split a stream's cost between the parser and the meter.
void BM_SseFramingOnly(benchmark::State& state, const Stream& stream) {
  const std::string body = stream.make();
  const auto read = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    airlock::control::SseParser parser;
    std::size_t events = 0;
    for (std::size_t at = 0; at < body.size(); at += read) {
      parser.feed(std::string_view(body).substr(at, read),
                  [&](const airlock::control::SseEvent&) { ++events; });
    }
    benchmark::DoNotOptimize(events);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK_CAPTURE(BM_SseFramingOnly, openai_chat, kChat)->Arg(4096);
BENCHMARK_CAPTURE(BM_SseFramingOnly, responses, kResponses)->Arg(4096);

// Arg: body size. A non-streamed body arrives in 4 KiB reads and is metered once at its end.
void BM_RelayJsonBody(benchmark::State& state) {
  const std::string body = chat_body(static_cast<std::size_t>(state.range(0)));
  const RelayOptions options{Api::kOpenAiChat, false, false};
  std::string to_client;
  for (auto _ : state) {
    if (relay(options, body, 4096, to_client) != kOutputTokens) {
      state.SkipWithError("body not metered");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.counters["body_bytes"] = static_cast<double>(body.size());
}
BENCHMARK(BM_RelayJsonBody)->Arg(2 * 1024)->Arg(64 * 1024);

// ------------------------------------------------------------------ request side

const char* const kToolOutput =
    "$ make -j8 test\n[ 12%] Building CXX object src/CMakeFiles/service.dir/handler.cc.o\n"
    "[ 50%] Linking CXX executable service_test\nRunning 214 tests from 31 suites.\n"
    "[  FAILED  ] RetryTest.BacksOff (1203 ms)\nhandler.cc:42: Expected: delay > prev\n";

// A Claude Code turn: system prompt, tools, the conversation so far, ending with the results of
// the model's last calls; grown turn by turn until it is at least `target` bytes.
std::string anthropic_request(std::size_t target) {
  ojson tools = ojson::array();
  for (const char* name : {"Bash", "Read", "Edit", "Grep"}) {
    tools.push_back({{"name", name},
                     {"description", std::string(name) + " tool for the coding agent."},
                     {"input_schema",
                      {{"type", "object"},
                       {"properties", {{"command", {{"type", "string"}}}}},
                       {"required", ojson::array({"command"})}}}});
  }
  ojson messages = ojson::array();
  messages.push_back({{"role", "user"}, {"content", "The retry test fails; fix it."}});
  for (int turn = 0;; ++turn) {
    const std::string id = "toolu_" + std::to_string(turn);
    messages.push_back(
        {{"role", "assistant"},
         {"content",
          ojson::array({{{"type", "text"}, {"text", "Running the tests."}},
                        {{"type", "tool_use"},
                         {"id", id},
                         {"name", "Bash"},
                         {"input", {{"command", "make -j8 test 2>&1 | tail -n 50"}}}}})}});
    messages.push_back({{"role", "user"},
                        {"content", ojson::array({{{"type", "tool_result"},
                                                   {"tool_use_id", id},
                                                   {"content", kToolOutput},
                                                   {"is_error", false}}})}});
    const ojson body = {
        {"model", "claude-sonnet-4-6"},
        {"max_tokens", 32000},
        {"system", ojson::array({{{"type", "text"}, {"text", "You are Claude Code."}}})},
        {"tools", tools},
        {"messages", messages},
        {"metadata",
         {{"user_id",
           "user_3f2a_account_7c1e9d2a-0b4f-4c8e-9a61-5d3b2f7e8c10_session_"
           "b2d4f6a8-1c3e-4a5b-8d7f-9e0a1b2c3d4e"}}},
        {"stream", true}};
    std::string text = body.dump();
    if (text.size() >= target) return text;
  }
}

// The same conversation as an OpenAI Chat stream request that does not ask for usage.
std::string chat_request(std::size_t target) {
  ojson messages = ojson::array();
  messages.push_back({{"role", "system"}, {"content", "You are a coding agent."}});
  messages.push_back({{"role", "user"}, {"content", "The retry test fails; fix it."}});
  for (int turn = 0;; ++turn) {
    const std::string id = "call_" + std::to_string(turn);
    ojson call = {{"id", id},
                  {"type", "function"},
                  {"function",
                   {{"name", "shell"},
                    {"arguments", R"({"command":["bash","-lc","make -j8 test 2>&1 | tail"]})"}}}};
    messages.push_back(
        {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", ojson::array({call})}});
    messages.push_back({{"role", "tool"}, {"tool_call_id", id}, {"content", kToolOutput}});
    const ojson body = {{"model", "gpt-5.5"}, {"stream", true}, {"messages", messages}};
    std::string text = body.dump();
    if (text.size() >= target) return text;
  }
}

// What exchange.cc's inspect_body and the lines after it do with every request body: one parse,
// model and stream read from it, then the session and the new tool results from the same
// document. Kept in step with control/gateway/exchange.cc by hand (inspect_body is internal to
// it).
std::size_t inspect_request(Api api, JsonView parsed) {
  const std::string model = parsed.member("model").text();
  const bool stream = parsed.member("stream").boolean().value_or(false);
  const auto no_header = [](std::string_view) -> std::optional<std::string_view> {
    return std::nullopt;
  };
  const std::string session =
      airlock::control::session_of_json(api, no_header, parsed, "bench-peer-key");
  const std::vector<ToolResult> results = airlock::control::tool_results_from_json(api, parsed);
  benchmark::DoNotOptimize(stream);
  return model.empty() || session.empty() ? 0 : results.size();
}

// Arg: body size.
void BM_RequestInspect(benchmark::State& state, Api api, std::string (*make)(std::size_t)) {
  const std::string body = make(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    const JsonDocument parsed(body);  // per request, as in the gateway
    if (inspect_request(api, parsed.root()) != 1) {
      state.SkipWithError("request not inspected");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.counters["body_bytes"] = static_cast<double>(body.size());
}
BENCHMARK_CAPTURE(BM_RequestInspect, anthropic, Api::kAnthropicMessages, anthropic_request)
    ->Arg(2 * 1024)
    ->Arg(200 * 1024);
BENCHMARK_CAPTURE(BM_RequestInspect, openai_chat, Api::kOpenAiChat, chat_request)
    ->Arg(2 * 1024)
    ->Arg(200 * 1024);

// The parse alone: the gateway's (simdjson's document, read in place), parse_json (an nlohmann
// tree built from simdjson's, which the gateway built before) and nlohmann's own parser.
enum class RequestParser { kDocument, kTree, kNlohmann };
void BM_ParseRequest(benchmark::State& state, RequestParser parser) {
  const std::string body = anthropic_request(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    bool object = false;
    if (parser == RequestParser::kDocument) {
      const JsonDocument parsed(body);
      object = parsed.root().is_object();
    } else {
      const nlohmann::json parsed =
          parser == RequestParser::kTree
              ? airlock::control::parse_json(body)
              : nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
      object = parsed.is_object();
    }
    if (!object) {
      state.SkipWithError("request not parsed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.counters["body_bytes"] = static_cast<double>(body.size());
}
BENCHMARK_CAPTURE(BM_ParseRequest, gateway, RequestParser::kDocument)
    ->Arg(2 * 1024)
    ->Arg(200 * 1024);
BENCHMARK_CAPTURE(BM_ParseRequest, tree, RequestParser::kTree)->Arg(2 * 1024)->Arg(200 * 1024);
BENCHMARK_CAPTURE(BM_ParseRequest, nlohmann, RequestParser::kNlohmann)
    ->Arg(2 * 1024)
    ->Arg(200 * 1024);

// An OpenAI Chat stream request under a budget whose client did not ask for usage: the inspect
// above, then the output cap (inserted, since the client set none), the input bound and the
// usage injection, all from the inspect's document as the gateway does.
void BM_RequestChatBudgetAndInjection(benchmark::State& state) {
  namespace budget = airlock::control::budget;
  const std::string original = chat_request(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    std::string body = original;
    const JsonDocument document(body);  // per request, as in the gateway
    const JsonView parsed = document.root();
    if (inspect_request(Api::kOpenAiChat, parsed) != 1) {
      state.SkipWithError("request not inspected");
      break;
    }
    const auto cap = budget::apply_output_cap(Api::kOpenAiChat, body, 32000, parsed);
    benchmark::DoNotOptimize(budget::input_token_bound(body, parsed, 32768));
    if (!cap.inserted || !airlock::control::wants_usage_injection(parsed)) {
      state.SkipWithError("cap or injection not applied");
      break;
    }
    body = airlock::control::inject_include_usage(body, parsed);
    benchmark::DoNotOptimize(body.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * original.size()));
  state.counters["body_bytes"] = static_cast<double>(original.size());
}
BENCHMARK(BM_RequestChatBudgetAndInjection)->Arg(2 * 1024)->Arg(200 * 1024);

}  // namespace

BENCHMARK_MAIN();
