#include "control/metering/usage.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "control/metering/json_access.h"
#include "control/metering/json_parse.h"

namespace airlock::control {
namespace {

using nlohmann::json;

using json_access::member;
using json_access::raw_of;
using json_access::text_of;

std::optional<uint64_t> count_of(const json* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is_number_unsigned()) return v->get<uint64_t>();
  if (v->is_number_integer() && v->get<int64_t>() >= 0) {
    return static_cast<uint64_t>(v->get<int64_t>());
  }
  return std::nullopt;
}

int64_t index_of(const json& j, const char* key, int64_t fallback) {
  const json* v = member(j, key);
  return v && v->is_number_integer() ? v->get<int64_t>() : fallback;
}

void merge(std::optional<uint64_t>& field, const json* v) {
  if (auto n = count_of(v)) field = n;
}

uint64_t value(const std::optional<uint64_t>& v) {
  return v.value_or(0);
}

uint64_t minus(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}

std::string describe_error(const json& err) {
  if (err.is_string()) return err.get<std::string>();
  // OpenAI and Anthropic name the error in `type`, Gemini in `status`, Responses in `code`.
  std::string kind = text_of(member(err, "type"));
  if (kind == "error") kind.clear();
  if (kind.empty()) kind = text_of(member(err, "status"));
  if (kind.empty()) {
    const json* code = member(err, "code");
    kind = code && !code->is_string() ? raw_of(code) : text_of(code);
  }
  const std::string message = text_of(member(err, "message"));
  if (kind.empty() && message.empty()) return raw_of(&err);
  if (kind.empty()) return message;
  return message.empty() ? kind : kind + ": " + message;
}

std::optional<ToolCall> responses_tool_call(const json& item) {
  const std::string type = text_of(member(item, "type"));
  std::string id = text_of(member(item, "call_id"));
  if (id.empty()) id = text_of(member(item, "id"));
  if (type == "function_call") {
    return ToolCall{id, text_of(member(item, "name")), text_of(member(item, "arguments"))};
  }
  if (type == "custom_tool_call") {
    return ToolCall{id, text_of(member(item, "name")), text_of(member(item, "input"))};
  }
  if (type == "local_shell_call")
    return ToolCall{id, "local_shell", raw_of(member(item, "action"))};
  if (type == "shell_call") return ToolCall{id, "shell", raw_of(member(item, "action"))};
  if (type == "apply_patch_call") {
    return ToolCall{id, "apply_patch", raw_of(member(item, "operation"))};
  }
  return std::nullopt;
}

// Responses streams carry many high-rate events (text deltas) that hold nothing to meter;
// skipping them by name avoids parsing their JSON.
bool responses_event_matters(std::string_view name) {
  static constexpr std::string_view kMetered[] = {
      "error",
      "response.created",
      "response.in_progress",
      "response.completed",
      "response.incomplete",
      "response.failed",
      "response.output_item.added",
      "response.output_item.done",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.custom_tool_call_input.delta",
      "response.custom_tool_call_input.done",
  };
  return name.empty() ||
         std::find(std::begin(kMetered), std::end(kMetered), name) != std::end(kMetered);
}

}  // namespace

void UsageMeter::feed_body(std::string_view body) {
  const json j = parse_json(body);
  if (j.is_discarded()) return;
  if (api_ == Api::kGeminiGenerate && j.is_array()) {
    for (const json& chunk : j) on_gemini(chunk);
    return;
  }
  switch (api_) {
    case Api::kOpenAiChat:
      on_chat(j);
      break;
    case Api::kOpenAiResponses:
      on_responses_body(j);
      break;
    case Api::kAnthropicMessages:
      on_anthropic_body(j);
      if (member(j, "usage")) complete_ = true;
      break;
    case Api::kGeminiGenerate:
      on_gemini(j);
      break;
  }
}

void UsageMeter::feed_event(const SseEvent& event) {
  if (event.data.empty() || event.data == "[DONE]" || event.event == "ping") return;
  if (api_ == Api::kOpenAiResponses && !responses_event_matters(event.event)) return;
  feed_json(event.data, event.event);
}

void UsageMeter::feed_json(std::string_view data, std::string_view event_name) {
  const json j = parse_json(data);
  if (j.is_discarded()) return;
  std::string type = text_of(member(j, "type"));
  if (type.empty()) type = event_name;
  switch (api_) {
    case Api::kOpenAiChat:
      on_chat(j);
      break;
    case Api::kOpenAiResponses:
      on_responses(j, type);
      break;
    case Api::kAnthropicMessages:
      on_anthropic(j, type);
      break;
    case Api::kGeminiGenerate:
      on_gemini(j);
      break;
  }
}

void UsageMeter::set_model(const json& holder, const char* key) {
  std::string model = text_of(member(holder, key));
  if (!model.empty()) model_ = std::move(model);
}

void UsageMeter::on_chat(const json& chunk) {
  if (const json* err = member(chunk, "error")) {
    error_ = describe_error(*err);
    return;
  }
  set_model(chunk, "model");
  // Compatible upstreams put usage on content chunks too, so any non-null usage counts.
  if (const json* usage = member(chunk, "usage"); usage && usage->is_object()) {
    merge(counters_.input, member(*usage, "prompt_tokens"));
    merge(counters_.cache_read, member(*usage, "prompt_tokens_details", "cached_tokens"));
    merge(counters_.cache_write, member(*usage, "prompt_tokens_details", "cache_write_tokens"));
    merge(counters_.output, member(*usage, "completion_tokens"));
    merge(counters_.reasoning, member(*usage, "completion_tokens_details", "reasoning_tokens"));
    complete_ = true;
  }
  const json* choices = member(chunk, "choices");
  if (!choices || !choices->is_array()) return;
  for (const json& choice : *choices) {
    const int64_t choice_index = index_of(choice, "index", 0);
    const json* delta = member(choice, "delta");
    const bool streamed = delta != nullptr;
    const json* calls =
        streamed ? member(*delta, "tool_calls") : member(choice, "message", "tool_calls");
    if (!calls || !calls->is_array()) continue;
    int64_t position = 0;
    for (const json& fragment : *calls) {
      // Stream fragments are keyed by their `index`; a whole message lists calls in order.
      const int64_t tool_index = streamed ? index_of(fragment, "index", position) : position;
      ++position;
      ToolCall& call = tools_[{choice_index, tool_index}];
      if (std::string id = text_of(member(fragment, "id")); !id.empty()) call.id = std::move(id);
      for (const char* kind : {"function", "custom"}) {
        const json* body = member(fragment, kind);
        if (!body) continue;
        if (std::string name = text_of(member(*body, "name")); !name.empty()) call.name = name;
        call.arguments += text_of(member(*body, "arguments"));
        call.arguments += text_of(member(*body, "input"));
      }
    }
  }
}

void UsageMeter::on_responses_body(const json& response) {
  set_model(response, "model");
  if (const json* err = member(response, "error")) error_ = describe_error(*err);
  if (const json* usage = member(response, "usage"); usage && usage->is_object()) {
    merge(counters_.input, member(*usage, "input_tokens"));
    merge(counters_.cache_read, member(*usage, "input_tokens_details", "cached_tokens"));
    merge(counters_.cache_write, member(*usage, "input_tokens_details", "cache_write_tokens"));
    merge(counters_.output, member(*usage, "output_tokens"));
    merge(counters_.reasoning, member(*usage, "output_tokens_details", "reasoning_tokens"));
    complete_ = true;
  }
  const json* output = member(response, "output");
  if (!output || !output->is_array()) return;
  for (std::size_t i = 0; i < output->size(); ++i) {
    if (auto call = responses_tool_call((*output)[i])) {
      tools_[{static_cast<int64_t>(i), 0}] = std::move(*call);
    }
  }
}

void UsageMeter::on_responses(const json& event, std::string_view type) {
  if (type == "error") {
    error_ = describe_error(event);
    return;
  }
  if (type == "response.created" || type == "response.in_progress") {
    if (const json* response = member(event, "response")) set_model(*response, "model");
    return;
  }
  if (type == "response.completed" || type == "response.incomplete" || type == "response.failed") {
    if (const json* response = member(event, "response")) on_responses_body(*response);
    return;
  }
  const std::pair<int64_t, int64_t> key{index_of(event, "output_index", 0), 0};
  if (type == "response.output_item.added" || type == "response.output_item.done") {
    if (const json* item = member(event, "item")) {
      if (auto call = responses_tool_call(*item)) tools_[key] = std::move(*call);
    }
    return;
  }
  const auto it = tools_.find(key);
  if (it == tools_.end()) return;
  if (type == "response.function_call_arguments.delta" ||
      type == "response.custom_tool_call_input.delta") {
    it->second.arguments += text_of(member(event, "delta"));
  } else if (type == "response.function_call_arguments.done") {
    it->second.arguments = text_of(member(event, "arguments"));
  } else if (type == "response.custom_tool_call_input.done") {
    it->second.arguments = text_of(member(event, "input"));
  }
}

void UsageMeter::on_anthropic_body(const json& message) {
  if (text_of(member(message, "type")) == "error") {
    if (const json* err = member(message, "error")) error_ = describe_error(*err);
    return;
  }
  set_model(message, "model");
  if (const json* usage = member(message, "usage"); usage && usage->is_object()) {
    merge(counters_.input, member(*usage, "input_tokens"));
    merge(counters_.cache_read, member(*usage, "cache_read_input_tokens"));
    merge(counters_.cache_write, member(*usage, "cache_creation_input_tokens"));
    merge(counters_.cache_write_1h, member(*usage, "cache_creation", "ephemeral_1h_input_tokens"));
    merge(counters_.output, member(*usage, "output_tokens"));
    merge(counters_.reasoning, member(*usage, "output_tokens_details", "thinking_tokens"));
  }
  const json* content = member(message, "content");
  if (!content || !content->is_array()) return;
  for (std::size_t i = 0; i < content->size(); ++i) {
    const json& block = (*content)[i];
    if (text_of(member(block, "type")) != "tool_use") continue;
    tools_[{static_cast<int64_t>(i), 0}] =
        ToolCall{text_of(member(block, "id")), text_of(member(block, "name")),
                 raw_of(member(block, "input"))};
  }
}

void UsageMeter::on_anthropic(const json& event, std::string_view type) {
  if (type == "error") {
    const json* err = member(event, "error");
    error_ = describe_error(err ? *err : event);
  } else if (type == "message_start") {
    // Its output_tokens is a placeholder: the usage is not final until message_delta.
    if (const json* message = member(event, "message")) on_anthropic_body(*message);
  } else if (type == "message_delta") {
    on_anthropic_body(event);
    complete_ = true;
  } else if (type == "content_block_start") {
    const json* block = member(event, "content_block");
    if (!block || text_of(member(*block, "type")) != "tool_use") return;
    const json* input = member(*block, "input");
    // The input normally streams as input_json_delta after an empty `{}` here.
    const bool has_input = input && input->is_object() && !input->empty();
    tools_[{index_of(event, "index", 0), 0}] =
        ToolCall{text_of(member(*block, "id")), text_of(member(*block, "name")),
                 has_input ? raw_of(input) : ""};
  } else if (type == "content_block_delta") {
    const auto it = tools_.find({index_of(event, "index", 0), 0});
    const json* delta = member(event, "delta");
    if (it == tools_.end() || !delta) return;
    if (text_of(member(*delta, "type")) == "input_json_delta") {
      it->second.arguments += text_of(member(*delta, "partial_json"));
    }
  } else if (type == "content_block_stop") {
    const auto it = tools_.find({index_of(event, "index", 0), 0});
    if (it != tools_.end() && it->second.arguments.empty()) it->second.arguments = "{}";
  }
}

void UsageMeter::on_gemini(const json& chunk) {
  if (const json* err = member(chunk, "error")) {
    error_ = describe_error(*err);
    return;
  }
  set_model(chunk, "modelVersion");
  if (const json* usage = member(chunk, "usageMetadata"); usage && usage->is_object()) {
    merge(counters_.input, member(*usage, "promptTokenCount"));
    merge(counters_.cache_read, member(*usage, "cachedContentTokenCount"));
    merge(counters_.output, member(*usage, "candidatesTokenCount"));
    merge(counters_.reasoning, member(*usage, "thoughtsTokenCount"));
    merge(counters_.tool_prompt, member(*usage, "toolUsePromptTokenCount"));
  }
  // A blocked prompt ends the response without candidates.
  if (member(chunk, "promptFeedback", "blockReason")) complete_ = true;
  const json* candidates = member(chunk, "candidates");
  if (!candidates || !candidates->is_array()) return;
  for (const json& candidate : *candidates) {
    if (member(candidate, "finishReason")) complete_ = true;
    const json* parts = member(candidate, "content", "parts");
    if (!parts || !parts->is_array()) continue;
    for (const json& part : *parts) {
      const json* call = member(part, "functionCall");
      if (!call) continue;
      tools_[{index_of(candidate, "index", 0), gemini_calls_++}] =
          ToolCall{text_of(member(*call, "id")), text_of(member(*call, "name")),
                   raw_of(member(*call, "args"))};
    }
  }
}

Usage UsageMeter::usage() const {
  const Counters& c = counters_;
  Usage u;
  u.model = model_;
  u.cache_read = value(c.cache_read);
  u.cache_write = value(c.cache_write);
  u.reasoning = value(c.reasoning);
  switch (api_) {
    case Api::kOpenAiChat:
    case Api::kOpenAiResponses:
      u.input = minus(value(c.input), u.cache_read + u.cache_write);
      u.output = value(c.output);
      break;
    case Api::kAnthropicMessages:
      u.input = value(c.input);
      u.cache_write_1h = std::min(value(c.cache_write_1h), u.cache_write);
      u.output = value(c.output);
      break;
    case Api::kGeminiGenerate:
      u.input = minus(value(c.input), u.cache_read) + value(c.tool_prompt);
      u.output = value(c.output) + u.reasoning;
      break;
  }
  const bool any_usage = c.input || c.output || c.cache_read || c.cache_write || c.reasoning;
  u.complete = complete_ && any_usage;
  return u;
}

std::vector<ToolCall> UsageMeter::tool_calls() const {
  std::vector<ToolCall> calls;
  calls.reserve(tools_.size());
  for (const auto& [key, call] : tools_) calls.push_back(call);
  return calls;
}

std::string model_from_request(Api api, std::string_view body, std::string_view url_path) {
  if (api == Api::kGeminiGenerate) {
    url_path = url_path.substr(0, url_path.find('?'));
    const std::size_t start = url_path.rfind("models/");
    if (start == std::string_view::npos) return "";
    std::string_view rest = url_path.substr(start + 7);
    return std::string(rest.substr(0, rest.find_first_of(":/")));
  }
  const json j = parse_json(body);
  return text_of(member(j, "model"));
}

bool wants_usage_injection(const json& j) {
  const json* stream = member(j, "stream");
  if (!stream || !stream->is_boolean() || !stream->get<bool>()) return false;
  const json* include = member(j, "stream_options", "include_usage");
  return !(include && include->is_boolean() && include->get<bool>());
}

std::string inject_include_usage(std::string_view body, const json& j) {
  if (!j.is_object()) return std::string(body);
  if (!j.contains("stream_options")) {
    // Insert rather than re-serialise so every byte the client sent reaches the provider.
    constexpr std::string_view kMember = R"("stream_options":{"include_usage":true})";
    const std::size_t open = body.find('{');
    const std::size_t next = body.find_first_not_of(" \t\r\n", open + 1);
    const bool empty = next != std::string_view::npos && body[next] == '}';
    std::string out;
    out.reserve(body.size() + kMember.size() + 1);
    out.append(body.substr(0, open + 1)).append(kMember).append(empty ? "" : ",");
    out.append(body.substr(open + 1));
    return out;
  }
  nlohmann::ordered_json edited =
      nlohmann::ordered_json::parse(body.begin(), body.end(), nullptr, false);
  auto& options = edited["stream_options"];
  if (!options.is_object()) options = nlohmann::ordered_json::object();
  options["include_usage"] = true;
  return edited.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

bool is_injected_usage_chunk(const SseEvent& event) {
  if (event.data.empty() || event.data.front() != '{') return false;
  const json j = parse_json(event.data);
  const json* choices = member(j, "choices");
  const json* usage = member(j, "usage");
  return choices && choices->is_array() && choices->empty() && usage && usage->is_object();
}

}  // namespace airlock::control
