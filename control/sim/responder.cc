#include "control/sim/responder.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <iterator>

namespace airlock::control::sim {
namespace {

// The reply text: it names the simulator so nobody mistakes a demo answer for a model's. The
// pieces end on word boundaries so per-piece word counts add up to the text's.
constexpr std::array<std::string_view, 4> kPieces = {
    "This is a ",
    "simulated response from ",
    "airlock-sim-upstream. No real ",
    "model was called.",
};

// One piece of at least 1 MiB, for clients and gateways that choke on long single-line events.
std::string_view big_piece() {
  static const std::string piece = [] {
    constexpr std::string_view kWord = "simulated ";
    constexpr std::size_t kMinBytes = std::size_t{1} << 20;
    std::string text;
    text.reserve(kMinBytes + kWord.size());
    while (text.size() < kMinBytes) text.append(kWord);
    return text;
  }();
  return piece;
}

bool is_read_member(std::string_view key) {
  static constexpr std::string_view kRead[] = {
      "model",         "stream",          "stream_options", "tools",    "prompt_cache_key", "input",
      "cachedContent", "encoding_format", "dimensions",     "messages", "contents",
  };
  return std::find(std::begin(kRead), std::end(kRead), key) != std::end(kRead);
}

bool wants_cache(const Request& request) {
  const Json& j = request.json;
  if (j.is_object() && (j.contains("prompt_cache_key") || j.contains("cachedContent"))) {
    return true;
  }
  return request.body.find("\"cache_control\"") != std::string_view::npos;
}

bool schema_type_is(const Json& schema, std::string_view type) {
  const auto it = schema.find("type");
  if (it == schema.end() || !it->is_string()) return false;
  const std::string& got = it->get_ref<const std::string&>();
  return std::equal(got.begin(), got.end(), type.begin(), type.end(),
                    [](char a, char b) { return (a | 0x20) == b; });
}

// Arguments fitting the usual shell-tool schemas: argv arrays (Codex `shell`), `cmd` (Codex
// `exec_command`), and a `command` string for everything else (Claude Code's Bash, OpenCode's
// bash, Gemini CLI's run_shell_command).
std::string tool_arguments(const Json* schema) {
  if (schema != nullptr && schema->is_object()) {
    const auto props = schema->find("properties");
    if (props != schema->end() && props->is_object()) {
      const auto command = props->find("command");
      if (command != props->end()) {
        if (command->is_object() && schema_type_is(*command, "array")) {
          return R"({"command":["ls","-la"]})";
        }
      } else if (props->contains("cmd")) {
        return R"({"cmd":"ls -la"})";
      }
    }
  }
  return R"({"command":"ls -la"})";
}

}  // namespace

Fault fault_for_model(std::string_view model) {
  if (!model.starts_with("sim-")) return Fault::kNone;
  static constexpr std::pair<std::string_view, Fault> kFaults[] = {
      {"sim-error", Fault::kError},
      {"sim-overloaded", Fault::kOverloaded},
      {"sim-midstream-error", Fault::kMidstreamError},
      {"sim-slow", Fault::kSlow},
      {"sim-hang", Fault::kHang},
      {"sim-big-event", Fault::kBigEvent},
      {"sim-keepalive", Fault::kKeepalive},
      {"sim-stall", Fault::kStall},
  };
  for (const auto& [name, fault] : kFaults) {
    if (model == name) return fault;
  }
  return Fault::kNone;
}

Json parse_request_body(std::string_view body) {
  bool keep = true;
  const Json::parser_callback_t keep_read_members = [&keep](int depth, Json::parse_event_t event,
                                                            Json& parsed) {
    if (depth == 0) return true;
    if (depth == 1 && event == Json::parse_event_t::key) {
      keep = is_read_member(parsed.get_ref<const std::string&>());
    }
    return keep;
  };
  return Json::parse(body.begin(), body.end(), keep_read_members, false);
}

std::vector<std::string_view> ToolCallScript::pieces() const {
  const std::string_view args = arguments;
  const std::size_t a = args.size() / 3;
  const std::size_t b = 2 * args.size() / 3;
  return {args.substr(0, a), args.substr(a, b - a), args.substr(b)};
}

std::string Script::text() const {
  std::string text;
  for (std::string_view piece : pieces) text.append(piece);
  return text;
}

uint64_t prompt_tokens(std::string_view body) {
  return (body.size() + 3) / 4;
}

void ToolPick::offer(std::string_view tool_name, const Json* tool_schema) {
  static constexpr std::string_view kShellTools[] = {"Bash", "exec_command", "shell_command",
                                                     "shell", "run_shell_command"};
  const auto is_shell = [](std::string_view n) {
    return std::find(std::begin(kShellTools), std::end(kShellTools), n) != std::end(kShellTools);
  };
  if (name.empty() || (!is_shell(name) && is_shell(tool_name))) {
    name = tool_name;
    schema = tool_schema;
  }
}

std::string_view string_member(const Json& object, const char* name) {
  if (!object.is_object()) return {};
  const auto it = object.find(name);
  return it != object.end() && it->is_string() ? std::string_view(it->get_ref<const std::string&>())
                                               : std::string_view();
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

Script make_script(const Request& request, std::string_view tool_name, const Json* schema) {
  Script script;
  script.pieces.assign(kPieces.begin(), kPieces.end());
  if (request.fault == Fault::kBigEvent) {
    script.pieces.insert(script.pieces.begin() + 1, big_piece());
  }
  script.input = prompt_tokens(request.body);
  if (wants_cache(request)) script.cached = script.input / 2;
  for (std::string_view piece : script.pieces) script.output += count_words(piece);
  if (!tool_name.empty()) {
    script.tool = ToolCallScript{std::string(tool_name), tool_arguments(schema)};
    script.output += count_words(script.tool->arguments);
  }
  return script;
}

void apply_stream_faults(Reply& reply, Fault fault, std::string_view line_end) {
  if (!reply.streamed || reply.events.empty()) return;
  if (fault == Fault::kStall) {
    reply.events.resize(1);
    reply.stall = true;
  } else if (fault == Fault::kKeepalive && reply.content_type == "text/event-stream") {
    const std::string comment = std::string(": keepalive").append(line_end);
    for (std::size_t i = 1; i < reply.events.size(); ++i) reply.events[i].insert(0, comment);
  }
}

JsonOut::JsonOut(std::string_view prefix) {
  out_.reserve(512);
  out_.append(prefix);
}

void JsonOut::separate() {
  if (!first_) out_ += ',';
  first_ = false;
}

JsonOut& JsonOut::open(char bracket) {
  separate();
  out_ += bracket;
  first_ = true;
  return *this;
}

JsonOut& JsonOut::close(char bracket) {
  out_ += bracket;
  first_ = false;
  return *this;
}

JsonOut& JsonOut::key(std::string_view name) {
  str(name);
  out_ += ':';
  first_ = true;
  return *this;
}

JsonOut& JsonOut::str(std::string_view value) {
  separate();
  const std::size_t start = out_.size();
  out_ += '"';
  std::size_t run = 0;  // start of the bytes not yet copied: runs are appended whole
  bool utf8_checked = false;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c >= 0x80 && !utf8_checked) {
      // Text that is not UTF-8 (a model name from a URL, say) is repaired the way the JSON
      // library does it, so the output always parses.
      if (!is_utf8(value)) {
        out_.resize(start);
        out_ += Json(std::string(value)).dump(-1, ' ', false, Json::error_handler_t::replace);
        return *this;
      }
      utf8_checked = true;
    }
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out_.append(value.substr(run, i - run));
    run = i + 1;
    switch (c) {
      case '"':
        out_ += "\\\"";
        break;
      case '\\':
        out_ += "\\\\";
        break;
      case '\n':
        out_ += "\\n";
        break;
      case '\r':
        out_ += "\\r";
        break;
      case '\t':
        out_ += "\\t";
        break;
      default: {
        std::array<char, 8> escape{};
        std::snprintf(escape.data(), escape.size(), "\\u%04x", static_cast<unsigned>(c));
        out_ += escape.data();
      }
    }
  }
  out_.append(value.substr(run));
  out_ += '"';
  return *this;
}

JsonOut& JsonOut::num(uint64_t value) {
  separate();
  std::array<char, 24> digits{};
  const auto end = std::to_chars(digits.begin(), digits.end(), value).ptr;
  out_.append(digits.begin(), end);
  return *this;
}

JsonOut& JsonOut::num(double value) {
  separate();
  std::array<char, 32> digits{};
  const auto end = std::to_chars(digits.begin(), digits.end(), value).ptr;
  out_.append(digits.begin(), end);
  return *this;
}

JsonOut& JsonOut::boolean(bool value) {
  separate();
  out_ += value ? "true" : "false";
  return *this;
}

JsonOut& JsonOut::null() {
  separate();
  out_ += "null";
  return *this;
}

JsonOut& JsonOut::raw(std::string_view json) {
  separate();
  out_ += json;
  return *this;
}

JsonOut& JsonOut::text(std::string_view framing) {
  out_ += framing;
  return *this;
}

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

bool is_utf8(std::string_view bytes) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    std::size_t extra = 0;
    uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      code = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      code = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      code = c & 0x07;
    } else {
      return false;
    }
    if (extra > bytes.size() - i - 1) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(bytes[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid UTF-8.
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (code < kMin[extra] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace airlock::control::sim
