// What the simulated providers share: the parsed request, the reply the server writes, the
// deterministic script of a reply (text pieces, tool call, token counts) and the fault modes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace airlock::control::sim {

using Json = nlohmann::ordered_json;

// Chosen by model name; any other name answers normally.
enum class Fault {
  kNone,
  kError,           // "sim-error": provider-format error, status 500
  kOverloaded,      // "sim-overloaded": 529 (Anthropic) or 503
  kMidstreamError,  // "sim-midstream-error": 200 stream, two content events, then an error event
  kSlow,            // "sim-slow": waits Options::slow before the headers
  kHang,            // "sim-hang": never answers, keeps the connection open
  kBigEvent,        // "sim-big-event": the text holds one piece of at least 1 MiB
  kKeepalive,       // "sim-keepalive": ": keepalive" comment lines between stream events
  kStall,           // "sim-stall": stream sends its first event, then nothing, forever
};

Fault fault_for_model(std::string_view model);

struct Request {
  std::string_view path;  // the target without its query
  std::string_view query;
  std::string_view body;
  // The body's top-level members the simulator reads (model, stream, tools, ...); the rest is
  // dropped while parsing so large conversations cost no tree. Discarded when not JSON.
  Json json;
  std::string model;
  Fault fault = Fault::kNone;
  uint64_t serial = 0;  // request number: makes ids unique per server
};

// Parses a request body keeping only the members Request::json documents.
Json parse_request_body(std::string_view body);

struct Reply {
  unsigned status = 200;
  std::string_view content_type = "application/json";
  std::string body;  // the whole body when not streamed
  bool streamed = false;
  std::vector<std::string> events;  // streamed: each sent as one HTTP chunk, in order
  bool stall = false;               // streamed: leave the body open after the events
};

// Error kinds, mapped to each provider's own status, type and wording.
enum class Failure { kInternal, kOverloaded, kBadRequest, kNotFound, kTooLarge };

Reply openai_error(Failure failure, std::string_view detail);
Reply anthropic_error(Failure failure, std::string_view detail);
Reply gemini_error(Failure failure, std::string_view detail);

Reply openai_chat(const Request& request);
Reply openai_responses(const Request& request);
Reply openai_embeddings(const Request& request);
Reply openai_models(const Request& request);
Reply anthropic_messages(const Request& request);
Reply anthropic_count_tokens(const Request& request);
Reply anthropic_models(const Request& request);
Reply gemini_generate(const Request& request, bool stream);
Reply gemini_count_tokens(const Request& request);
Reply gemini_models(const Request& request);

// ---------------------------------------------------------------- the script of one reply

inline constexpr std::string_view kSimName = "airlock-sim-upstream";
inline constexpr std::string_view kServerHeader = "airlock-sim-upstream (simulated)";

struct ToolCallScript {
  std::string name;
  std::string arguments;  // JSON text
  // Where the streamed fragments of `arguments` split: three pieces.
  std::vector<std::string_view> pieces() const;
};

struct Script {
  std::vector<std::string_view> pieces;  // text deltas; they end on word boundaries
  std::optional<ToolCallScript> tool;
  uint64_t input = 0;   // T, the whole prompt
  uint64_t cached = 0;  // the part of T read from cache
  uint64_t output = 0;  // words in the text plus in the tool arguments
  std::string text() const;
};

// `tool_name` is the first declared tool's name and `schema` its JSON Schema (may be null);
// an empty name means the request declared no usable tool.
Script make_script(const Request& request, std::string_view tool_name, const Json* schema);

// The tool the simulated model calls, from the tools in declaration order: the first shell tool
// (Claude Code's Bash, Codex's exec_command, shell_command or shell, Gemini CLI's
// run_shell_command), else the first tool, as a coding agent's model mostly runs commands.
struct ToolPick {
  std::string_view name;  // empty: no tool declared
  const Json* schema = nullptr;

  void offer(std::string_view tool_name, const Json* tool_schema);
};

// `object[name]` when `object` is an object whose member is a string, else "".
std::string_view string_member(const Json& object, const char* name);

uint64_t prompt_tokens(std::string_view body);
uint64_t count_words(std::string_view text);

// The stream faults every provider handles the same way: comment lines between events and the
// stall after the first event. `line_end` is the stream's framing ("\n", or "\r\n" for Gemini).
void apply_stream_faults(Reply& reply, Fault fault, std::string_view line_end);

// Writes JSON text straight into a string. Replies are built for every request on the gateway
// benchmark's path, where building a JSON tree first cost several times more than the rest of
// the request. Commas are placed automatically; the caller keeps objects and arrays balanced.
class JsonOut {
 public:
  // `prefix` is framing written before the JSON (for instance "data: ").
  explicit JsonOut(std::string_view prefix = {});

  JsonOut& begin_object() { return open('{'); }
  JsonOut& end_object() { return close('}'); }
  JsonOut& begin_array() { return open('['); }
  JsonOut& end_array() { return close(']'); }
  JsonOut& key(std::string_view name);
  JsonOut& str(std::string_view value);
  JsonOut& num(uint64_t value);
  JsonOut& num(double value);
  JsonOut& boolean(bool value);
  JsonOut& null();
  // A value that is already JSON text.
  JsonOut& raw(std::string_view json);
  // Framing after the JSON (for instance "\n\n"); not a JSON value.
  JsonOut& text(std::string_view framing);

  JsonOut& field(std::string_view name, std::string_view value) { return key(name).str(value); }
  JsonOut& field(std::string_view name, const char* value) { return key(name).str(value); }
  JsonOut& field(std::string_view name, const std::string& value) { return key(name).str(value); }
  JsonOut& field(std::string_view name, uint64_t value) { return key(name).num(value); }
  JsonOut& field(std::string_view name, int value) {
    return key(name).num(static_cast<uint64_t>(value));
  }
  JsonOut& field(std::string_view name, bool value) { return key(name).boolean(value); }
  JsonOut& field(std::string_view name, std::nullptr_t) { return key(name).null(); }

  std::string take() { return std::move(out_); }

 private:
  JsonOut& open(char bracket);
  JsonOut& close(char bracket);
  void separate();

  std::string out_;
  bool first_ = true;  // the next element opens its container: no comma before it
};

std::string base64(std::string_view bytes);
bool is_utf8(std::string_view bytes);
int64_t unix_time();

}  // namespace airlock::control::sim
