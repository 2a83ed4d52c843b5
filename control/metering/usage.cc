#include "control/metering/usage.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "control/metering/json_view.h"

namespace airlock::control {
namespace {

// Providers' numbers are counts; a negative or fractional one is not a count and is ignored.
void merge(std::optional<uint64_t>& field, JsonView v) {
  if (auto n = v.count()) field = n;
}

int64_t index_of(JsonView j, std::string_view key, int64_t fallback) {
  return j.member(key).integer().value_or(fallback);
}

uint64_t value(const std::optional<uint64_t>& v) {
  return v.value_or(0);
}

uint64_t minus(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}

std::string describe_error(JsonView err) {
  if (err.is_string()) return err.text();
  // OpenAI and Anthropic name the error in `type`, Gemini in `status`, Responses in `code`.
  std::string kind = err.member("type").text();
  if (kind == "error") kind.clear();
  if (kind.empty()) kind = err.member("status").text();
  if (kind.empty()) kind = err.member("code").raw();
  std::string message = err.member("message").text();
  if (kind.empty() && message.empty()) return err.raw();
  if (kind.empty()) return message;
  return message.empty() ? kind : kind + ": " + message;
}

std::optional<ToolCall> responses_tool_call(JsonView item) {
  const std::string type = item.member("type").text();
  std::string id = item.member("call_id").text();
  if (id.empty()) id = item.member("id").text();
  if (type == "function_call") {
    return ToolCall{id, item.member("name").text(), item.member("arguments").text()};
  }
  if (type == "custom_tool_call") {
    return ToolCall{id, item.member("name").text(), item.member("input").text()};
  }
  if (type == "local_shell_call") return ToolCall{id, "local_shell", item.member("action").raw()};
  if (type == "shell_call") return ToolCall{id, "shell", item.member("action").raw()};
  if (type == "apply_patch_call") {
    return ToolCall{id, "apply_patch", item.member("operation").raw()};
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
  const JsonDocument document(body);
  const JsonView j = document.root();
  if (!j) return;
  if (api_ == Api::kGeminiGenerate && j.is_array()) {
    for (const JsonView chunk : j.items()) on_gemini(chunk);
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
      if (j.member("usage")) complete_ = true;
      break;
    case Api::kGeminiGenerate:
      on_gemini(j);
      break;
  }
}

void UsageMeter::feed_event(const SseEvent& event) {
  last_event_only_usage_ = false;
  if (event.data.empty() || event.data == "[DONE]" || event.event == "ping") return;
  if (api_ == Api::kOpenAiResponses && !responses_event_matters(event.event)) return;
  feed_json(event.data, event.event);
}

void UsageMeter::feed_json(std::string_view data, std::string_view event_name) {
  const JsonDocument document(data);
  const JsonView j = document.root();
  if (!j) return;
  std::string type = j.member("type").text();
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

void UsageMeter::set_model(const JsonView& holder, std::string_view key) {
  std::string model = holder.member(key).text();
  if (!model.empty()) model_ = std::move(model);
}

void UsageMeter::on_chat(const JsonView& chunk) {
  if (const JsonView err = chunk.member("error")) {
    error_ = describe_error(err);
    return;
  }
  set_model(chunk, "model");
  // Compatible upstreams put usage on content chunks too, so any non-null usage counts.
  const JsonView usage = chunk.member("usage");
  if (usage.is_object()) {
    merge(counters_.input, usage.member("prompt_tokens"));
    merge(counters_.cache_read, usage.member("prompt_tokens_details", "cached_tokens"));
    merge(counters_.cache_write, usage.member("prompt_tokens_details", "cache_write_tokens"));
    merge(counters_.output, usage.member("completion_tokens"));
    merge(counters_.reasoning, usage.member("completion_tokens_details", "reasoning_tokens"));
    complete_ = true;
  }
  const JsonView choices = chunk.member("choices");
  last_event_only_usage_ = choices.is_array() && choices.size() == 0 && usage.is_object();
  for (const JsonView choice : choices.items()) {
    const int64_t choice_index = index_of(choice, "index", 0);
    const JsonView delta = choice.member("delta");
    const bool streamed = static_cast<bool>(delta);
    const JsonView calls =
        streamed ? delta.member("tool_calls") : choice.member("message", "tool_calls");
    int64_t position = 0;
    for (const JsonView fragment : calls.items()) {
      // Stream fragments are keyed by their `index`; a whole message lists calls in order.
      const int64_t tool_index = streamed ? index_of(fragment, "index", position) : position;
      ++position;
      ToolCall& call = tools_[{choice_index, tool_index}];
      if (std::string id = fragment.member("id").text(); !id.empty()) call.id = std::move(id);
      for (const std::string_view kind : {"function", "custom"}) {
        const JsonView body = fragment.member(kind);
        if (!body) continue;
        if (std::string name = body.member("name").text(); !name.empty()) call.name = name;
        call.arguments += body.member("arguments").text();
        call.arguments += body.member("input").text();
      }
    }
  }
}

void UsageMeter::on_responses_body(const JsonView& response) {
  set_model(response, "model");
  if (const JsonView err = response.member("error")) error_ = describe_error(err);
  if (const JsonView usage = response.member("usage"); usage.is_object()) {
    merge(counters_.input, usage.member("input_tokens"));
    merge(counters_.cache_read, usage.member("input_tokens_details", "cached_tokens"));
    merge(counters_.cache_write, usage.member("input_tokens_details", "cache_write_tokens"));
    merge(counters_.output, usage.member("output_tokens"));
    merge(counters_.reasoning, usage.member("output_tokens_details", "reasoning_tokens"));
    complete_ = true;
  }
  int64_t index = 0;
  for (const JsonView item : response.member("output").items()) {
    if (auto call = responses_tool_call(item)) tools_[{index, 0}] = std::move(*call);
    ++index;
  }
}

void UsageMeter::on_responses(const JsonView& event, std::string_view type) {
  if (type == "error") {
    error_ = describe_error(event);
    return;
  }
  if (type == "response.created" || type == "response.in_progress") {
    if (const JsonView response = event.member("response")) set_model(response, "model");
    return;
  }
  if (type == "response.completed" || type == "response.incomplete" || type == "response.failed") {
    if (const JsonView response = event.member("response")) on_responses_body(response);
    return;
  }
  const std::pair<int64_t, int64_t> key{index_of(event, "output_index", 0), 0};
  if (type == "response.output_item.added" || type == "response.output_item.done") {
    if (const JsonView item = event.member("item")) {
      if (auto call = responses_tool_call(item)) tools_[key] = std::move(*call);
    }
    return;
  }
  const auto it = tools_.find(key);
  if (it == tools_.end()) return;
  if (type == "response.function_call_arguments.delta" ||
      type == "response.custom_tool_call_input.delta") {
    it->second.arguments += event.member("delta").text();
  } else if (type == "response.function_call_arguments.done") {
    it->second.arguments = event.member("arguments").text();
  } else if (type == "response.custom_tool_call_input.done") {
    it->second.arguments = event.member("input").text();
  }
}

void UsageMeter::on_anthropic_body(const JsonView& message) {
  if (message.member("type").text() == "error") {
    if (const JsonView err = message.member("error")) error_ = describe_error(err);
    return;
  }
  set_model(message, "model");
  if (const JsonView usage = message.member("usage"); usage.is_object()) {
    merge(counters_.input, usage.member("input_tokens"));
    merge(counters_.cache_read, usage.member("cache_read_input_tokens"));
    merge(counters_.cache_write, usage.member("cache_creation_input_tokens"));
    merge(counters_.cache_write_1h, usage.member("cache_creation", "ephemeral_1h_input_tokens"));
    merge(counters_.output, usage.member("output_tokens"));
    merge(counters_.reasoning, usage.member("output_tokens_details", "thinking_tokens"));
  }
  int64_t index = 0;
  for (const JsonView block : message.member("content").items()) {
    if (block.member("type").text() == "tool_use") {
      tools_[{index, 0}] = ToolCall{block.member("id").text(), block.member("name").text(),
                                    block.member("input").raw()};
    }
    ++index;
  }
}

void UsageMeter::on_anthropic(const JsonView& event, std::string_view type) {
  if (type == "error") {
    const JsonView err = event.member("error");
    error_ = describe_error(err ? err : event);
  } else if (type == "message_start") {
    // Its output_tokens is a placeholder: the usage is not final until message_delta.
    if (const JsonView message = event.member("message")) on_anthropic_body(message);
  } else if (type == "message_delta") {
    on_anthropic_body(event);
    complete_ = true;
  } else if (type == "content_block_start") {
    const JsonView block = event.member("content_block");
    if (block.member("type").text() != "tool_use") return;
    const JsonView input = block.member("input");
    // The input normally streams as input_json_delta after an empty `{}` here.
    const bool has_input = input.is_object() && input.size() > 0;
    tools_[{index_of(event, "index", 0), 0}] = ToolCall{
        block.member("id").text(), block.member("name").text(), has_input ? input.raw() : ""};
  } else if (type == "content_block_delta") {
    const auto it = tools_.find({index_of(event, "index", 0), 0});
    const JsonView delta = event.member("delta");
    if (it == tools_.end() || !delta) return;
    if (delta.member("type").text() == "input_json_delta") {
      it->second.arguments += delta.member("partial_json").text();
    }
  } else if (type == "content_block_stop") {
    const auto it = tools_.find({index_of(event, "index", 0), 0});
    if (it != tools_.end() && it->second.arguments.empty()) it->second.arguments = "{}";
  }
}

void UsageMeter::on_gemini(const JsonView& chunk) {
  if (const JsonView err = chunk.member("error")) {
    error_ = describe_error(err);
    return;
  }
  set_model(chunk, "modelVersion");
  if (const JsonView usage = chunk.member("usageMetadata"); usage.is_object()) {
    merge(counters_.input, usage.member("promptTokenCount"));
    merge(counters_.cache_read, usage.member("cachedContentTokenCount"));
    merge(counters_.output, usage.member("candidatesTokenCount"));
    merge(counters_.reasoning, usage.member("thoughtsTokenCount"));
    merge(counters_.tool_prompt, usage.member("toolUsePromptTokenCount"));
  }
  // A blocked prompt ends the response without candidates.
  if (chunk.member("promptFeedback", "blockReason")) complete_ = true;
  for (const JsonView candidate : chunk.member("candidates").items()) {
    if (candidate.member("finishReason")) complete_ = true;
    for (const JsonView part : candidate.member("content", "parts").items()) {
      const JsonView call = part.member("functionCall");
      if (!call) continue;
      tools_[{index_of(candidate, "index", 0), gemini_calls_++}] =
          ToolCall{call.member("id").text(), call.member("name").text(), call.member("args").raw()};
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
  const JsonDocument document(body);
  return document.root().member("model").text();
}

bool wants_usage_injection(JsonView j) {
  return j.member("stream").boolean().value_or(false) &&
         !j.member("stream_options", "include_usage").boolean().value_or(false);
}

std::string inject_include_usage(std::string_view body, JsonView j) {
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

}  // namespace airlock::control
