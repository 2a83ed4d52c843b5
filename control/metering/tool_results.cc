#include "control/metering/tool_results.h"

#include <map>
#include <string>

#include "control/metering/json_view.h"

namespace airlock::control {
namespace {

// Call id -> tool name, from the model's earlier turns in the same body, for formats whose
// results do not repeat the name.
using CallNames = std::map<std::string, std::string, std::less<>>;

std::string name_of(const CallNames& names, const std::string& call_id) {
  const auto it = names.find(call_id);
  return it == names.end() ? "" : it->second;
}

// The last element of an array; absent for an empty array or anything else.
JsonView last_item(JsonView list) {
  JsonView last;
  for (const JsonView item : list.items()) last = item;
  return last;
}

std::vector<ToolResult> anthropic_results(JsonView body) {
  std::vector<ToolResult> results;
  const JsonView messages = body.member("messages");
  const JsonView last = last_item(messages);
  if (last.member("role").text() != "user") return results;
  const JsonView content = last.member("content");
  if (!content.is_array()) return results;
  CallNames names;
  for (const JsonView message : messages.items()) {
    if (message.member("role").text() != "assistant") continue;
    for (const JsonView block : message.member("content").items()) {
      if (block.member("type").text() == "tool_use") {
        names[block.member("id").text()] = block.member("name").text();
      }
    }
  }
  for (const JsonView block : content.items()) {
    if (block.member("type").text() != "tool_result") continue;
    ToolResult& r = results.emplace_back();
    r.call_id = block.member("tool_use_id").text();
    r.name = name_of(names, r.call_id);
    r.content = block.member("content").raw();
    r.is_error = block.member("is_error").boolean().value_or(false);
  }
  return results;
}

std::vector<ToolResult> chat_results(JsonView body) {
  std::vector<ToolResult> results;
  const JsonView messages = body.member("messages");
  std::size_t start = 0;
  std::size_t index = 0;
  CallNames names;
  for (const JsonView message : messages.items()) {
    ++index;
    if (message.member("role").text() != "assistant") continue;
    start = index;
    for (const JsonView call : message.member("tool_calls").items()) {
      std::string name = call.member("function", "name").text();
      if (name.empty()) name = call.member("custom", "name").text();
      names[call.member("id").text()] = std::move(name);
    }
  }
  index = 0;
  for (const JsonView message : messages.items()) {
    if (index++ < start || message.member("role").text() != "tool") continue;
    ToolResult& r = results.emplace_back();
    r.call_id = message.member("tool_call_id").text();
    r.name = message.member("name").text();
    if (r.name.empty()) r.name = name_of(names, r.call_id);
    r.content = message.member("content").raw();
  }
  return results;
}

// Items the model produced: its messages and every kind of call (function_call, custom_tool_call,
// local_shell_call, shell_call, apply_patch_call, web_search_call, ...) and reasoning.
bool model_produced(JsonView item) {
  const std::string type = item.member("type").text();
  return item.member("role").text() == "assistant" || type == "reasoning" ||
         type.ends_with("_call");
}

std::vector<ToolResult> responses_results(JsonView body) {
  std::vector<ToolResult> results;
  // A string `input` is a single user message; with previous_response_id the input holds only
  // the new items, which the scan below handles the same way.
  const JsonView input = body.member("input");
  std::size_t start = 0;
  std::size_t index = 0;
  CallNames names;
  for (const JsonView item : input.items()) {
    ++index;
    if (!model_produced(item)) continue;
    start = index;
    const std::string type = item.member("type").text();
    std::string name = item.member("name").text();
    if (name.empty() && type.ends_with("_call")) name = type.substr(0, type.size() - 5);
    names[item.member("call_id").text()] = std::move(name);
  }
  index = 0;
  for (const JsonView item : input.items()) {
    if (index++ < start || !item.member("type").text().ends_with("_call_output")) continue;
    ToolResult& r = results.emplace_back();
    r.call_id = item.member("call_id").text();
    r.name = name_of(names, r.call_id);
    r.content = item.member("output").raw();
    // Only apply_patch_call_output reports failure in the item itself.
    r.is_error = item.member("status").text() == "failed";
  }
  return results;
}

std::vector<ToolResult> gemini_results(JsonView body) {
  std::vector<ToolResult> results;
  // Results come in a "user" content (older Vertex clients used "function"); absent means user.
  const JsonView last = last_item(body.member("contents"));
  if (!last || last.member("role").text() == "model") return results;
  for (const JsonView part : last.member("parts").items()) {
    const JsonView response = part.member("functionResponse");
    if (!response) continue;
    ToolResult& r = results.emplace_back();
    r.call_id = response.member("id").text();
    r.name = response.member("name").text();
    const JsonView payload = response.member("response");
    r.content = payload.raw();
    // Gemini's convention: the function's output under "output", a failure under "error".
    r.is_error = static_cast<bool>(payload.member("error"));
  }
  return results;
}

}  // namespace

std::vector<ToolResult> tool_results_from_json(Api api, JsonView body) {
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
  const JsonDocument parsed(body);
  return tool_results_from_json(api, parsed.root());
}

}  // namespace airlock::control
