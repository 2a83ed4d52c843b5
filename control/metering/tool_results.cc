#include "control/metering/tool_results.h"

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "control/metering/json_access.h"
#include "control/metering/json_parse.h"

namespace airlock::control {
namespace {

using json_access::member;
using json_access::raw_of;
using json_access::text_of;
using nlohmann::json;

// Call id -> tool name, from the model's earlier turns in the same body, for formats whose
// results do not repeat the name.
using CallNames = std::map<std::string, std::string, std::less<>>;

std::string name_of(const CallNames& names, const std::string& call_id) {
  const auto it = names.find(call_id);
  return it == names.end() ? "" : it->second;
}

const json* array_member(const json& j, const char* key) {
  const json* v = member(j, key);
  return v && v->is_array() ? v : nullptr;
}

std::vector<ToolResult> anthropic_results(const json& body) {
  std::vector<ToolResult> results;
  const json* messages = array_member(body, "messages");
  if (!messages || messages->empty()) return results;
  const json& last = messages->back();
  if (text_of(member(last, "role")) != "user") return results;
  const json* content = array_member(last, "content");
  if (!content) return results;
  CallNames names;
  for (const json& message : *messages) {
    if (text_of(member(message, "role")) != "assistant") continue;
    const json* blocks = array_member(message, "content");
    if (!blocks) continue;
    for (const json& block : *blocks) {
      if (text_of(member(block, "type")) == "tool_use") {
        names[text_of(member(block, "id"))] = text_of(member(block, "name"));
      }
    }
  }
  for (const json& block : *content) {
    if (text_of(member(block, "type")) != "tool_result") continue;
    ToolResult& r = results.emplace_back();
    r.call_id = text_of(member(block, "tool_use_id"));
    r.name = name_of(names, r.call_id);
    r.content = raw_of(member(block, "content"));
    const json* is_error = member(block, "is_error");
    r.is_error = is_error && is_error->is_boolean() && is_error->get<bool>();
  }
  return results;
}

std::vector<ToolResult> chat_results(const json& body) {
  std::vector<ToolResult> results;
  const json* messages = array_member(body, "messages");
  if (!messages) return results;
  std::size_t start = 0;
  CallNames names;
  for (std::size_t i = 0; i < messages->size(); ++i) {
    const json& message = (*messages)[i];
    if (text_of(member(message, "role")) != "assistant") continue;
    start = i + 1;
    const json* calls = array_member(message, "tool_calls");
    if (!calls) continue;
    for (const json& call : *calls) {
      std::string name = text_of(member(call, "function", "name"));
      if (name.empty()) name = text_of(member(call, "custom", "name"));
      names[text_of(member(call, "id"))] = std::move(name);
    }
  }
  for (std::size_t i = start; i < messages->size(); ++i) {
    const json& message = (*messages)[i];
    if (text_of(member(message, "role")) != "tool") continue;
    ToolResult& r = results.emplace_back();
    r.call_id = text_of(member(message, "tool_call_id"));
    r.name = text_of(member(message, "name"));
    if (r.name.empty()) r.name = name_of(names, r.call_id);
    r.content = raw_of(member(message, "content"));
  }
  return results;
}

// Items the model produced: its messages and every kind of call (function_call, custom_tool_call,
// local_shell_call, shell_call, apply_patch_call, web_search_call, ...) and reasoning.
bool model_produced(const json& item) {
  const std::string type = text_of(member(item, "type"));
  return text_of(member(item, "role")) == "assistant" || type == "reasoning" ||
         type.ends_with("_call");
}

std::vector<ToolResult> responses_results(const json& body) {
  std::vector<ToolResult> results;
  // A string `input` is a single user message; with previous_response_id the input holds only
  // the new items, which the scan below handles the same way.
  const json* input = array_member(body, "input");
  if (!input) return results;
  std::size_t start = 0;
  CallNames names;
  for (std::size_t i = 0; i < input->size(); ++i) {
    const json& item = (*input)[i];
    if (!model_produced(item)) continue;
    start = i + 1;
    const std::string type = text_of(member(item, "type"));
    std::string name = text_of(member(item, "name"));
    if (name.empty() && type.ends_with("_call")) name = type.substr(0, type.size() - 5);
    names[text_of(member(item, "call_id"))] = std::move(name);
  }
  for (std::size_t i = start; i < input->size(); ++i) {
    const json& item = (*input)[i];
    const std::string type = text_of(member(item, "type"));
    if (!type.ends_with("_call_output")) continue;
    ToolResult& r = results.emplace_back();
    r.call_id = text_of(member(item, "call_id"));
    r.name = name_of(names, r.call_id);
    r.content = raw_of(member(item, "output"));
    // Only apply_patch_call_output reports failure in the item itself.
    r.is_error = text_of(member(item, "status")) == "failed";
  }
  return results;
}

std::vector<ToolResult> gemini_results(const json& body) {
  std::vector<ToolResult> results;
  const json* contents = array_member(body, "contents");
  if (!contents || contents->empty()) return results;
  // Results come in a "user" content (older Vertex clients used "function"); absent means user.
  const json& last = contents->back();
  if (text_of(member(last, "role")) == "model") return results;
  const json* parts = member(last, "parts");
  if (!parts || !parts->is_array()) return results;
  for (const json& part : *parts) {
    const json* response = member(part, "functionResponse");
    if (!response) continue;
    ToolResult& r = results.emplace_back();
    r.call_id = text_of(member(*response, "id"));
    r.name = text_of(member(*response, "name"));
    const json* payload = member(*response, "response");
    r.content = raw_of(payload);
    // Gemini's convention: the function's output under "output", a failure under "error".
    r.is_error = payload && member(*payload, "error") != nullptr;
  }
  return results;
}

}  // namespace

std::vector<ToolResult> tool_results_from_json(Api api, const json& body) {
  switch (api) {
    case Api::kAnthropicMessages:
      return anthropic_results(body);
    case Api::kOpenAiChat:
      return chat_results(body);
    case Api::kOpenAiResponses:
      return responses_results(body);
    case Api::kGeminiGenerate:
      return gemini_results(body);
  }
  return {};
}

std::vector<ToolResult> tool_results_from_request(Api api, std::string_view body) {
  const json parsed = parse_json(body);
  if (parsed.is_discarded()) return {};
  return tool_results_from_json(api, parsed);
}

}  // namespace airlock::control
