#include "control/budget/estimate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include "control/metering/json_view.h"

namespace airlock::control::budget {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

uint64_t add_sat(uint64_t a, uint64_t b) {
  return b > kMaxU64 - a ? kMaxU64 : a + b;
}

uint64_t mul_sat(uint64_t a, uint64_t b) {
  uint64_t out = 0;
  return __builtin_mul_overflow(a, b, &out) ? kMaxU64 : out;
}

Picodollars price_times(uint64_t tokens, Picodollars price) {
  Picodollars out = 0;
  if (price <= 0) return 0;
  if (tokens > static_cast<uint64_t>(std::numeric_limits<Picodollars>::max()) ||
      __builtin_mul_overflow(static_cast<Picodollars>(tokens), price, &out)) {
    return std::numeric_limits<Picodollars>::max();
  }
  return out;
}

// What a cap or count member holds: absent (missing or null), a usable count, or something the
// provider would reject.
struct Count {
  bool present = false;
  std::optional<uint64_t> value;  // nullopt with present: invalid
};

Count read_count(JsonView object, std::string_view name) {
  const JsonView value = object.member(name);
  if (!value) return {};
  if (const std::optional<uint64_t> count = value.count()) return {true, count};
  if (const std::optional<double> v = value.decimal()) {
    // Protobuf JSON (Gemini) accepts 100.0; rounding up stays an upper bound.
    if (std::isfinite(*v) && *v >= 0) {
      return {true, *v >= 1.8e19 ? kMaxU64 : static_cast<uint64_t>(std::ceil(*v))};
    }
  }
  if (value.is_string()) {
    // Protobuf JSON also accepts integers as strings ("100").
    const std::string text = value.text();
    uint64_t v = 0;
    bool ok = !text.empty() && text.size() <= 19;
    for (const char c : text) {
      ok = ok && c >= '0' && c <= '9';
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (ok) return {true, v};
  }
  return {true, std::nullopt};
}

// Byte positions in a JSON text that the parser has already accepted, so the scanner needs no
// error handling of its own.
size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
  return i;
}

// `i` at the opening quote; returns the index after the closing one.
size_t skip_string(std::string_view s, size_t i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return s.size();
}

size_t skip_value(std::string_view s, size_t i) {
  if (i >= s.size()) return i;
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '"') {
        i = skip_string(s, i);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if ((c == '}' || c == ']') && --depth == 0) return i + 1;
      ++i;
    }
    return i;
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
         s[i] != '\r' && s[i] != '\n') {
    ++i;
  }
  return i;
}

struct Span {
  size_t begin = 0;
  size_t end = 0;
};

// The value of member `name` of the object whose '{' is at `open` (the last one if repeated, as
// parsers keep the last).
std::optional<Span> find_member(std::string_view s, size_t open, std::string_view name) {
  std::optional<Span> found;
  size_t i = skip_ws(s, open + 1);
  while (i < s.size() && s[i] == '"') {
    const size_t key_end = skip_string(s, i);
    const std::string_view token = s.substr(i, key_end - i);
    bool match = false;
    if (token.find('\\') == std::string_view::npos) {
      match = token.substr(1, token.size() - 2) == name;
    } else {
      const json key = json::parse(token, nullptr, false);
      match = key.is_string() && key.get_ref<const std::string&>() == name;
    }
    i = skip_ws(s, skip_ws(s, key_end) + 1);  // past ':'
    const size_t value_end = skip_value(s, i);
    if (match) found = Span{i, value_end};
    i = skip_ws(s, value_end);
    if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
  }
  return found;
}

// Inserts `"name":value` as the first member of the object whose '{' is at `open`.
void insert_member(std::string& body, size_t open, std::string_view name, std::string_view value) {
  const size_t next = skip_ws(body, open + 1);
  const bool empty = next < body.size() && body[next] == '}';
  std::string member;
  member.append("\"").append(name).append("\":").append(value);
  if (!empty) member.push_back(',');
  body.insert(open + 1, member);
}

// Writes the cap into the object at `open`: replaces a null `name`, or inserts it.
void write_cap(std::string& body, size_t open, std::string_view name, uint64_t cap) {
  const std::string value = std::to_string(cap);
  if (const std::optional<Span> existing = find_member(body, open, name)) {
    body.replace(existing->begin, existing->end - existing->begin, value);
  } else {
    insert_member(body, open, name, value);
  }
}

bool is_fetched_url(JsonView value) {
  return value.is_string() && !value.text().starts_with("data:");
}

// One content part or source object that names an input the provider fetches.
bool is_reference(JsonView object) {
  const JsonView image_url = object.member("image_url");
  if (is_fetched_url(image_url)) return true;                // Responses input_image
  if (is_fetched_url(image_url.member("url"))) return true;  // Chat
  if (object.member("file_id").is_string()) return true;
  if (is_fetched_url(object.member("file_url"))) return true;
  for (const char* name : {"fileData", "file_data"}) {
    const JsonView data = object.member(name);
    if (data.is_object() && (data.contains("fileUri") || data.contains("file_uri"))) return true;
  }
  // Anthropic image/document blocks: {"source": {"type": "url" | "file", ...}}.
  const std::string type = object.member("source", "type").text();
  return type == "url" || type == "file";
}

// Most requests carry none of these names, and a many-MiB prompt's tree is not walked for them.
bool may_hold_references(std::string_view request_body) {
  static constexpr std::string_view kMarkers[] = {"\"image_url\"", "\"file_id\"",   "\"file_url\"",
                                                  "\"fileData\"",  "\"file_data\"", "\"source\""};
  return std::any_of(std::begin(kMarkers), std::end(kMarkers), [&](std::string_view marker) {
    return request_body.find(marker) != std::string_view::npos;
  });
}

void count_references(JsonView value, uint64_t& count) {
  if (value.is_object()) {
    if (is_reference(value)) ++count;
    for (const auto [name, member] : value.members()) {
      // Already judged with the object that holds them: Chat's {"image_url": {"url": ...}} is one
      // reference, not two.
      if (name == "image_url" || name == "source" || name == "fileData" || name == "file_data") {
        continue;
      }
      count_references(member, count);
    }
  } else if (value.is_array()) {
    for (const JsonView item : value.items()) count_references(item, count);
  }
}

}  // namespace

// Byte-level BPE tokenizers (OpenAI's o200k/cl100k, Anthropic's) emit at least one byte of text
// per token, and SentencePiece (Gemini) falls back to one token per byte at worst, so a text's
// UTF-8 byte count bounds its token count. JSON only adds bytes around the text (quotes, escapes,
// keys, punctuation), more than the few tokens a chat template adds per message, so the body's
// byte count is a safe bound that needs no tokenizer and no parse. Inputs passed by reference
// (image or file URLs, file ids, Gemini fileData) are fetched and billed by the provider at a size
// the body does not show, so each adds the policy's per-reference allowance; a reference billed
// above it, or tokens added by server-side tools, settle above the reservation
// (Reservation::settle reports it).
uint64_t input_token_bound(std::string_view request_body, JsonView request,
                           uint64_t tokens_per_reference) {
  const uint64_t references = count_input_references(request_body, request);
  return add_sat(request_body.size(), mul_sat(references, tokens_per_reference));
}

uint64_t count_input_references(std::string_view request_body, JsonView request) {
  if (!may_hold_references(request_body)) return 0;
  uint64_t count = 0;
  count_references(request, count);
  return count;
}

OutputCap apply_output_cap(Api api, std::string& body, uint64_t default_cap) {
  const JsonDocument parsed(body);
  return apply_output_cap(api, body, default_cap, parsed.root());
}

OutputCap apply_output_cap(Api api, std::string& body, uint64_t default_cap, JsonView j) {
  OutputCap result;
  result.per_choice = default_cap;
  result.tokens = default_cap;
  const size_t open = skip_ws(body, 0);
  if (!j.is_object() || open >= body.size() || body[open] != '{') {
    result.valid = false;
    return result;
  }

  Count cap;
  Count choices;
  size_t cap_object = open;
  std::string_view cap_name;
  switch (api) {
    case Api::kOpenAiChat: {
      cap_name = "max_completion_tokens";
      const Count completion = read_count(j, "max_completion_tokens");
      const Count legacy = read_count(j, "max_tokens");
      cap = completion;
      if (legacy.present &&
          (!cap.present || (cap.value && (!legacy.value || *legacy.value > *cap.value)))) {
        cap = legacy;
      }
      choices = read_count(j, "n");
      break;
    }
    case Api::kOpenAiResponses:
      cap_name = "max_output_tokens";
      cap = read_count(j, cap_name);
      break;
    case Api::kAnthropicMessages:
      cap_name = "max_tokens";
      cap = read_count(j, cap_name);
      break;
    case Api::kGeminiGenerate: {
      // Protobuf JSON accepts the snake_case field names too; keep to the client's spelling.
      const bool snake = !j.contains("generationConfig") && j.contains("generation_config");
      const std::string_view config_name = snake ? "generation_config" : "generationConfig";
      cap_name = snake ? "max_output_tokens" : "maxOutputTokens";
      const JsonView config = j.member(config_name);
      if (!config) {
        if (j.contains(config_name)) {
          const std::optional<Span> span = find_member(body, open, config_name);
          body.replace(span->begin, span->end - span->begin, "{}");
        } else {
          insert_member(body, open, config_name, "{}");
        }
        cap_object = find_member(body, open, config_name)->begin;
        break;
      }
      if (!config.is_object()) {
        result.valid = false;
        return result;
      }
      cap_object = find_member(body, open, config_name)->begin;
      cap = read_count(config, cap_name);
      const std::string_view other_name = snake ? "maxOutputTokens" : "max_output_tokens";
      if (!cap.present && read_count(config, other_name).present) {
        cap = read_count(config, other_name);
      }
      choices = read_count(config, "candidateCount");
      if (!choices.present) choices = read_count(config, "candidate_count");
      break;
    }
  }

  if (choices.present) {
    if (!choices.value) {
      result.valid = false;
    } else {
      result.choices = std::max<uint64_t>(1, *choices.value);
    }
  }
  if (cap.present && !cap.value) {
    result.valid = false;
  } else if (cap.present) {
    result.per_choice = *cap.value;
  } else {
    write_cap(body, cap_object, cap_name, default_cap);
    result.inserted = true;
  }
  result.tokens = mul_sat(result.per_choice, result.choices);
  return result;
}

Amount worst_case(const Price& price, uint64_t input_bound, uint64_t output_cap) {
  const Picodollars input_price = std::max({price.input, price.cache_read.value_or(price.input),
                                            price.cache_write.value_or(price.input),
                                            price.cache_write_1h.value_or(price.input)});
  const Picodollars input = price_times(input_bound, input_price);
  const Picodollars output = price_times(output_cap, price.output);
  Amount amount;
  amount.usd = output > std::numeric_limits<Picodollars>::max() - input
                   ? std::numeric_limits<Picodollars>::max()
                   : input + output;
  amount.tokens = add_sat(input_bound, output_cap);
  return amount;
}

}  // namespace airlock::control::budget
