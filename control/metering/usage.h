// Token and tool-call metering for pass-through LLM traffic (OpenAI Chat and Responses,
// Anthropic Messages, Gemini generateContent), from whole response bodies or SSE events.
// Pure parsing: no I/O, no clock, no allocation beyond the values it returns.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/metering/sse.h"

namespace airlock::control {

class JsonView;

enum class Api { kOpenAiChat, kOpenAiResponses, kAnthropicMessages, kGeminiGenerate };

// One normalisation for every provider, chosen so that cost is a plain dot product:
//   cost = input·input_price + cache_read·cache_read_price
//        + (cache_write − cache_write_1h)·cache_write_price + cache_write_1h·cache_write_1h_price
//        + output·output_price
// - input: tokens billed at the plain input price, i.e. EXCLUDING cache reads and writes
//   (OpenAI/Gemini prompt counts have the cached part subtracted; Anthropic's input_tokens
//   already excludes it; Gemini's toolUsePromptTokenCount is added).
// - output: every token billed at the output price, INCLUDING reasoning (Gemini thoughts are
//   added to candidates; the others already include them).
// - reasoning: the part of `output` that was reasoning/thinking, for information only.
// - cache_write_1h: the part of `cache_write` written with Anthropic's 1-hour TTL.
// - complete: the provider's final usage arrived; false means a cut or failed stream and the
//   numbers are the last cumulative values seen (possibly zero).
struct Usage {
  std::string model;
  uint64_t input = 0;
  uint64_t output = 0;
  uint64_t cache_read = 0;
  uint64_t cache_write = 0;
  uint64_t cache_write_1h = 0;
  uint64_t reasoning = 0;
  bool complete = false;
  friend bool operator==(const Usage&, const Usage&) = default;
};

// `arguments` is the raw text the model produced (JSON for function tools, free text for
// custom tools), kept as is even when it is invalid or truncated JSON.
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;

  friend bool operator==(const ToolCall&, const ToolCall&) = default;
};

// A tool's output that the client sends back to the model in the request after the call.
// `content` is the raw text or JSON as sent; `name` is empty when the format does not carry it.
struct ToolResult {
  std::string call_id;
  std::string name;
  std::string content;
  bool is_error = false;

  friend bool operator==(const ToolResult&, const ToolResult&) = default;
};

class UsageMeter {
 public:
  explicit UsageMeter(Api api) : api_(api) {}

  // A whole non-streamed response body. A Gemini streamGenerateContent body without alt=sse
  // (a JSON array of responses) is accepted too.
  void feed_body(std::string_view json);
  // One SSE event of a streamed response, in stream order. `[DONE]` and pings are ignored.
  void feed_event(const SseEvent& event);
  // Whether the event fed last was a Chat chunk with `choices: []` and a usage object: the extra
  // chunk that `stream_options.include_usage` adds, which must not reach a client that did not
  // ask for usage. Known from the meter's own parse, so the relay needs no second one.
  bool last_event_only_usage() const { return last_event_only_usage_; }

  // Latest cumulative usage; per field a later reported value replaces an earlier one.
  Usage usage() const;
  // The provider's error (mid-stream error event, failed response, or error body), as
  // "type: message" text.
  const std::optional<std::string>& error() const { return error_; }
  // Tool calls in the order the provider numbered them.
  std::vector<ToolCall> tool_calls() const;
  // The same calls without copying them, for inspecting a stream after every event.
  template <class Visit>
  void visit_tool_calls(Visit&& visit) const {
    for (const auto& entry : tools_) visit(entry.second);
  }

 private:
  // Raw provider counters; each parser overwrites only the fields its event carries, because
  // providers report cumulative totals and some send different fields in different events.
  struct Counters {
    std::optional<uint64_t> input, cache_read, cache_write, cache_write_1h, output, reasoning,
        tool_prompt;
  };

  void feed_json(std::string_view data, std::string_view event_name);
  void on_chat(const JsonView& chunk);
  void on_responses(const JsonView& event, std::string_view type);
  void on_responses_body(const JsonView& response);
  void on_anthropic(const JsonView& event, std::string_view type);
  void on_anthropic_body(const JsonView& message);
  void on_gemini(const JsonView& chunk);
  void set_model(const JsonView& holder, std::string_view key);

  Api api_;
  std::string model_;
  Counters counters_;
  bool complete_ = false;
  bool last_event_only_usage_ = false;
  std::optional<std::string> error_;
  // Keyed by (choice or output index, tool index) so interleaved fragments of parallel calls
  // land on the right call and the result comes out in the provider's order.
  std::map<std::pair<int64_t, int64_t>, ToolCall> tools_;
  int64_t gemini_calls_ = 0;
};

// The model the client asked for: the body's `model`, or for Gemini the `{model}` of
// `.../models/{model}:action` in the URL path. Empty when absent or unparseable.
std::string model_from_request(Api api, std::string_view body, std::string_view url_path);

// True for an OpenAI Chat request that streams without asking for usage, i.e. the gateway must
// inject `stream_options.include_usage` to meter it. `request` is the body parsed.
bool wants_usage_injection(JsonView request);

// The request body with `stream_options.include_usage: true`. When the client sent no
// `stream_options`, the member is inserted and every other byte is kept; otherwise the body is
// re-serialised with its key order preserved. Returns the body unchanged if it is not a JSON
// object. `request` is `body` parsed.
std::string inject_include_usage(std::string_view body, JsonView request);

}  // namespace airlock::control
