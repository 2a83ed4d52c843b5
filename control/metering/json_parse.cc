#include "control/metering/json_parse.h"

#include <cstring>
#include <string>
#include <vector>

#include <simdjson.h>

#include "control/metering/json_view.h"

namespace airlock::control {
namespace {

using nlohmann::json;
using simdjson::dom::element;
using simdjson::dom::element_type;

// A parser and padded copy kept per thread spare a gateway thread fresh buffers, and the page
// faults with them, on every request. simdjson's buffers take about 15 bytes per byte of text, so
// this cap bounds what a thread keeps to about 15 MiB (pages a parse never touched cost no RSS);
// a larger document gets buffers of its own for that one parse.
constexpr std::size_t kReusedCapacity = 1 << 20;

json to_tree(element value) {
  switch (value.type()) {
    case element_type::OBJECT: {
      json out = json::object();
      simdjson::dom::object object;
      if (value.get(object) != simdjson::SUCCESS) break;
      auto& members = out.get_ref<json::object_t&>();
      // Assigned in order, so a repeated key keeps its last value as nlohmann's parser does.
      for (const simdjson::dom::key_value_pair field : object) {
        members.insert_or_assign(std::string(field.key), to_tree(field.value));
      }
      return out;
    }
    case element_type::ARRAY: {
      json out = json::array();
      simdjson::dom::array array;
      if (value.get(array) != simdjson::SUCCESS) break;
      auto& items = out.get_ref<json::array_t&>();
      items.reserve(array.size());
      for (const element item : array) items.push_back(to_tree(item));
      return out;
    }
    case element_type::INT64: {
      // nlohmann stores an integer without a minus sign as unsigned.
      const int64_t number = value.get_int64().value_unsafe();
      if (number >= 0) return static_cast<uint64_t>(number);
      return number;
    }
    case element_type::UINT64:
      return value.get_uint64().value_unsafe();
    case element_type::DOUBLE:
      return value.get_double().value_unsafe();
    case element_type::STRING:
      return std::string(value.get_string().value_unsafe());
    case element_type::BOOL:
      return value.get_bool().value_unsafe();
    case element_type::NULL_VALUE:
      return nullptr;
  }
  return json(json::value_t::discarded);
}

struct Parser {
  simdjson::dom::parser parser;
  std::vector<char> padded;
};

struct Reused : Parser {
  Reused() : Parser{simdjson::dom::parser{kReusedCapacity}, {}} {}
  // A JsonDocument still reads from the parser.
  bool busy = false;
};

Reused& thread_parser() {
  thread_local Reused reused;
  return reused;
}

bool parse_padded(Parser& parser, std::string_view text, element& root) {
  // simdjson reads up to SIMDJSON_PADDING bytes past the text; a string's own buffer does not
  // promise them.
  parser.padded.resize(text.size() + simdjson::SIMDJSON_PADDING);
  std::memcpy(parser.padded.data(), text.data(), text.size());
  return parser.parser.parse(parser.padded.data(), text.size(), false).get(root) ==
         simdjson::SUCCESS;
}

// A discarded value when simdjson refuses the text.
json tree_of(Parser& parser, std::string_view text) {
  element root;
  if (!parse_padded(parser, text, root)) return json(json::value_t::discarded);
  return to_tree(root);
}

}  // namespace

bool nests_too_deep(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

json parse_json(std::string_view text) {
  json tree;
  Reused& reused = thread_parser();
  if (text.size() <= kReusedCapacity && !reused.busy) {
    tree = tree_of(reused, text);
  } else {
    Parser own;
    tree = tree_of(own, text);
  }
  if (!tree.is_discarded() || nests_too_deep(text)) return tree;
  // What simdjson refuses, nlohmann decides: text that is not JSON, and JSON that simdjson does
  // not take (integers past 64 bits).
  return json::parse(text.begin(), text.end(), nullptr, false);
}

struct JsonDocument::Own : Parser {};

JsonDocument::JsonDocument(std::string_view text) {
  Reused& reused = thread_parser();
  Parser* parser = &reused;
  if (text.size() <= kReusedCapacity && !reused.busy) {
    reused.busy = holds_thread_parser_ = true;
  } else {
    own_ = std::make_unique<Own>();
    parser = own_.get();
  }
  element root;
  if (parse_padded(*parser, text, root)) {
    valid_ = true;
    root_ = JsonView(root);
    return;
  }
  if (nests_too_deep(text)) return;
  // Integers past 64 bits are valid JSON that simdjson refuses; nlohmann reads them as doubles,
  // and its rendering of that is JSON simdjson takes.
  const json fallback = json::parse(text.begin(), text.end(), nullptr, false);
  if (fallback.is_discarded()) return;
  const std::string rendered = fallback.dump(-1, ' ', false, json::error_handler_t::replace);
  if (parse_padded(*parser, rendered, root)) {
    valid_ = true;
    root_ = JsonView(root);
  }
}

JsonDocument::~JsonDocument() {
  if (holds_thread_parser_) thread_parser().busy = false;
}

}  // namespace airlock::control
