// OpenAI: Chat Completions, Responses, embeddings and the model list (protocols.md §1, §2, §5).
#include <cmath>
#include <cstring>

#include "control/sim/responder.h"

namespace airlock::control::sim {
namespace {

Reply json_reply(JsonOut& out) {
  Reply reply;
  reply.body = out.take();
  return reply;
}

Reply stream_reply() {
  Reply reply;
  reply.streamed = true;
  reply.content_type = "text/event-stream";
  return reply;
}

bool is_true(const Json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

// The declared tools with a name, and their parameter schemas. Chat nests both under
// `function` (or `custom`); Responses puts them on the tool itself. Built-in tools without a
// name (web_search, local_shell) are skipped.
ToolPick pick_tool(const Json& body) {
  ToolPick pick;
  const auto tools = body.find("tools");
  if (tools == body.end() || !tools->is_array()) return pick;
  for (const Json& tool : *tools) {
    if (!tool.is_object()) continue;
    const Json* holder = &tool;
    for (const char* nested : {"function", "custom"}) {
      const auto it = tool.find(nested);
      if (it != tool.end() && it->is_object()) holder = &*it;
    }
    const auto name = holder->find("name");
    if (name == holder->end() || !name->is_string()) continue;
    const auto params = holder->find("parameters");
    pick.offer(name->get_ref<const std::string&>(), params == holder->end() ? nullptr : &*params);
  }
  return pick;
}

// Chat: the last message is a tool's (role "tool", or the legacy "function"). Responses: the
// last input item is a tool's output (function_call_output, custom_tool_call_output,
// local_shell_call_output, ...).
bool ends_with_tool_result(const Json& body) {
  const auto messages = body.find("messages");
  if (messages != body.end() && messages->is_array() && !messages->empty()) {
    const std::string_view role = string_member(messages->back(), "role");
    return role == "tool" || role == "function";
  }
  const auto input = body.find("input");
  if (input == body.end() || !input->is_array() || input->empty()) return false;
  return string_member(input->back(), "type").ends_with("_output");
}

Script script_for(const Request& request) {
  if (ends_with_tool_result(request.json)) return make_script(request, "", nullptr);
  const ToolPick pick = pick_tool(request.json);
  return make_script(request, pick.name, pick.schema);
}

std::string id_of(std::string_view prefix, uint64_t serial) {
  return std::string(prefix).append(std::to_string(serial));
}

constexpr std::string_view kMidstreamMessage =
    "airlock-sim-upstream (simulated): the stream failed midway (model sim-midstream-error)";

// ---------------------------------------------------------------- Chat Completions

void chat_usage(JsonOut& w, const Script& s) {
  w.begin_object()
      .field("prompt_tokens", s.input)
      .field("completion_tokens", s.output)
      .field("total_tokens", s.input + s.output);
  w.key("prompt_tokens_details")
      .begin_object()
      .field("cached_tokens", s.cached)
      .field("audio_tokens", 0)
      .end_object();
  w.key("completion_tokens_details")
      .begin_object()
      .field("reasoning_tokens", 0)
      .field("audio_tokens", 0)
      .field("accepted_prediction_tokens", 0)
      .field("rejected_prediction_tokens", 0)
      .end_object();
  w.end_object();
}

void chat_head(JsonOut& w, const Request& request, std::string_view object, int64_t created) {
  w.begin_object()
      .field("id", id_of("chatcmpl-sim", request.serial))
      .field("object", object)
      .field("created", static_cast<uint64_t>(created))
      .field("model", request.model)
      .field("system_fingerprint", nullptr);
}

// One streamed chunk: `delta` writes the members of choices[0].delta.
template <class Delta>
std::string chat_chunk(const Request& request, int64_t created, bool include_usage,
                       const Delta& delta, const char* finish_reason) {
  JsonOut w("data: ");
  chat_head(w, request, "chat.completion.chunk", created);
  w.key("choices").begin_array().begin_object().field("index", 0).key("delta").begin_object();
  delta(w);
  w.end_object().field("logprobs", nullptr).key("finish_reason");
  if (finish_reason) {
    w.str(finish_reason);
  } else {
    w.null();
  }
  w.end_object().end_array();
  // Usage stays off the chunks unless asked for: a client that did not ask must see none.
  if (include_usage) w.field("usage", nullptr);
  return w.end_object().text("\n\n").take();
}

Reply chat_stream(const Request& request, const Script& s) {
  const auto options = request.json.find("stream_options");
  const bool usage =
      options != request.json.end() && options->is_object() && is_true(*options, "include_usage");
  const int64_t created = unix_time();
  Reply reply = stream_reply();
  auto& events = reply.events;
  events.push_back(chat_chunk(
      request, created, usage,
      [](JsonOut& w) {
        w.field("role", "assistant").field("content", "").field("refusal", nullptr);
      },
      nullptr));
  for (std::size_t i = 0; i < s.pieces.size(); ++i) {
    const std::string_view piece = s.pieces[i];
    events.push_back(chat_chunk(
        request, created, usage, [piece](JsonOut& w) { w.field("content", piece); }, nullptr));
    if (request.fault == Fault::kMidstreamError && i == 1) {
      JsonOut w("data: ");
      w.begin_object().key("error").begin_object();
      w.field("message", kMidstreamMessage).field("type", "server_error");
      w.field("param", nullptr).field("code", nullptr).end_object().end_object();
      events.push_back(w.text("\n\n").take());
      return reply;
    }
  }
  if (s.tool) {
    // The first fragment names the call; the arguments follow in pieces under the same index.
    const std::string call_id = id_of("call_sim", request.serial);
    events.push_back(chat_chunk(
        request, created, usage,
        [&](JsonOut& w) {
          w.key("tool_calls").begin_array().begin_object();
          w.field("index", 0).field("id", call_id).field("type", "function");
          w.key("function").begin_object().field("name", s.tool->name).field("arguments", "");
          w.end_object().end_object().end_array();
        },
        nullptr));
    for (std::string_view piece : s.tool->pieces()) {
      events.push_back(chat_chunk(
          request, created, usage,
          [piece](JsonOut& w) {
            w.key("tool_calls").begin_array().begin_object().field("index", 0);
            w.key("function").begin_object().field("arguments", piece).end_object();
            w.end_object().end_array();
          },
          nullptr));
    }
  }
  events.push_back(chat_chunk(
      request, created, usage, [](JsonOut&) {}, s.tool ? "tool_calls" : "stop"));
  if (usage) {
    JsonOut w("data: ");
    chat_head(w, request, "chat.completion.chunk", created);
    w.key("choices").begin_array().end_array().key("usage");
    chat_usage(w, s);
    events.push_back(w.end_object().text("\n\n").take());
  }
  events.push_back("data: [DONE]\n\n");
  apply_stream_faults(reply, request.fault, "\n");
  return reply;
}

// ---------------------------------------------------------------- Responses

void responses_usage(JsonOut& w, const Script& s) {
  w.begin_object().field("input_tokens", s.input);
  w.key("input_tokens_details").begin_object().field("cached_tokens", s.cached).end_object();
  w.field("output_tokens", s.output);
  w.key("output_tokens_details").begin_object().field("reasoning_tokens", 0).end_object();
  w.field("total_tokens", s.input + s.output).end_object();
}

void output_text(JsonOut& w, std::string_view text) {
  w.begin_object().field("type", "output_text").field("text", text);
  w.key("annotations").begin_array().end_array();
  w.key("logprobs").begin_array().end_array().end_object();
}

// The assistant message item; `text` null: in progress, no content yet.
void message_item(JsonOut& w, const Request& request, const std::string* text) {
  w.begin_object()
      .field("type", "message")
      .field("id", id_of("msg_sim", request.serial))
      .field("status", text ? "completed" : "in_progress")
      .field("role", "assistant");
  w.key("content").begin_array();
  if (text) output_text(w, *text);
  w.end_array().end_object();
}

void function_call_item(JsonOut& w, const Request& request, const ToolCallScript& tool, bool done) {
  w.begin_object()
      .field("type", "function_call")
      .field("id", id_of("fc_sim", request.serial))
      .field("call_id", id_of("call_sim", request.serial))
      .field("name", tool.name)
      .field("arguments", done ? std::string_view(tool.arguments) : std::string_view())
      .field("status", done ? "completed" : "in_progress")
      .end_object();
}

// The response object; `text` null: in progress, with no output and no usage yet.
void response_object(JsonOut& w, const Request& request, const Script& s, int64_t created,
                     const std::string* text) {
  w.begin_object()
      .field("id", id_of("resp_sim", request.serial))
      .field("object", "response")
      .field("created_at", static_cast<uint64_t>(created))
      .field("status", text ? "completed" : "in_progress")
      .field("error", nullptr)
      .field("incomplete_details", nullptr)
      .field("instructions", nullptr)
      .field("model", request.model);
  w.key("output").begin_array();
  if (text) {
    message_item(w, request, text);
    if (s.tool) function_call_item(w, request, *s.tool, true);
  }
  w.end_array().field("parallel_tool_calls", true).field("tool_choice", "auto");
  w.key("tools").begin_array().end_array().key("usage");
  if (text) {
    responses_usage(w, s);
  } else {
    w.null();
  }
  w.end_object();
}

Reply responses_stream(const Request& request, const Script& s) {
  Reply reply = stream_reply();
  const int64_t created = unix_time();
  const std::string message_id = id_of("msg_sim", request.serial);
  uint64_t sequence = 0;
  // Every event names its type twice (event line and `type`) and carries a sequence number;
  // `body` writes the remaining members.
  const auto emit = [&](std::string_view type, const auto& body) {
    JsonOut w("event: ");
    w.text(type).text("\ndata: ");
    w.begin_object().field("type", type).field("sequence_number", sequence++);
    body(w);
    reply.events.push_back(w.end_object().text("\n\n").take());
  };
  const auto text_position = [&](JsonOut& w) {
    w.field("item_id", message_id).field("output_index", 0).field("content_index", 0);
  };
  for (const char* type : {"response.created", "response.in_progress"}) {
    emit(type,
         [&](JsonOut& w) { response_object(w.key("response"), request, s, created, nullptr); });
  }
  emit("response.output_item.added",
       [&](JsonOut& w) { message_item(w.field("output_index", 0).key("item"), request, nullptr); });
  emit("response.content_part.added", [&](JsonOut& w) {
    text_position(w);
    output_text(w.key("part"), "");
  });
  for (std::size_t i = 0; i < s.pieces.size(); ++i) {
    emit("response.output_text.delta", [&](JsonOut& w) {
      text_position(w);
      w.field("delta", s.pieces[i]).key("logprobs").begin_array().end_array();
    });
    if (request.fault == Fault::kMidstreamError && i == 1) {
      emit("error", [](JsonOut& w) {
        w.field("code", "server_error").field("message", kMidstreamMessage).field("param", nullptr);
      });
      return reply;
    }
  }
  const std::string text = s.text();
  emit("response.output_text.done", [&](JsonOut& w) {
    text_position(w);
    w.field("text", text).key("logprobs").begin_array().end_array();
  });
  emit("response.content_part.done", [&](JsonOut& w) {
    text_position(w);
    output_text(w.key("part"), text);
  });
  emit("response.output_item.done",
       [&](JsonOut& w) { message_item(w.field("output_index", 0).key("item"), request, &text); });
  if (s.tool) {
    const std::string item_id = id_of("fc_sim", request.serial);
    emit("response.output_item.added", [&](JsonOut& w) {
      function_call_item(w.field("output_index", 1).key("item"), request, *s.tool, false);
    });
    for (std::string_view piece : s.tool->pieces()) {
      emit("response.function_call_arguments.delta", [&](JsonOut& w) {
        w.field("item_id", item_id).field("output_index", 1).field("delta", piece);
      });
    }
    emit("response.function_call_arguments.done", [&](JsonOut& w) {
      w.field("item_id", item_id).field("output_index", 1);
      w.field("name", s.tool->name).field("arguments", s.tool->arguments);
    });
    emit("response.output_item.done", [&](JsonOut& w) {
      function_call_item(w.field("output_index", 1).key("item"), request, *s.tool, true);
    });
  }
  emit("response.completed",
       [&](JsonOut& w) { response_object(w.key("response"), request, s, created, &text); });
  apply_stream_faults(reply, request.fault, "\n");
  return reply;
}

// ---------------------------------------------------------------- embeddings

// Embeddings depend only on the input text, so equal inputs get equal vectors.
std::vector<float> embedding_of(const Json& input, std::size_t dimensions) {
  const std::string text = input.dump(-1, ' ', false, Json::error_handler_t::replace);
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (const char c : text) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  std::vector<float> v(dimensions);
  double norm = 0;
  for (float& x : v) {
    hash ^= hash >> 29;
    hash *= 0xbf58476d1ce4e5b9ull;
    x = static_cast<float>(static_cast<int64_t>(hash % 2001) - 1000) / 1000.0f;
    norm += static_cast<double>(x) * x;
  }
  const float scale = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 0.0f;
  for (float& x : v) x *= scale;
  return v;
}

}  // namespace

Reply openai_error(Failure failure, std::string_view detail) {
  struct Shape {
    unsigned status;
    const char* type;
    const char* code;
  };
  static constexpr Shape kShapes[] = {
      {500, "server_error", "internal_error"},
      {503, "server_error", "overloaded"},
      {400, "invalid_request_error", "invalid_request"},
      {404, "invalid_request_error", "unknown_url"},
      {413, "invalid_request_error", "request_too_large"},
  };
  const Shape& shape = kShapes[static_cast<int>(failure)];
  JsonOut w;
  w.begin_object().key("error").begin_object();
  w.field("message", std::string(kSimName) + " (simulated): " + std::string(detail));
  w.field("type", shape.type).field("param", nullptr).field("code", shape.code);
  w.end_object().end_object();
  Reply reply = json_reply(w);
  reply.status = shape.status;
  return reply;
}

Reply openai_chat(const Request& request) {
  const Script s = script_for(request);
  if (is_true(request.json, "stream")) return chat_stream(request, s);
  JsonOut w;
  chat_head(w, request, "chat.completion", unix_time());
  w.key("choices").begin_array().begin_object().field("index", 0);
  w.key("message").begin_object().field("role", "assistant").field("content", s.text());
  w.field("refusal", nullptr);
  if (s.tool) {
    w.key("tool_calls").begin_array().begin_object();
    w.field("id", id_of("call_sim", request.serial)).field("type", "function");
    w.key("function").begin_object().field("name", s.tool->name);
    w.field("arguments", s.tool->arguments).end_object().end_object().end_array();
  }
  w.end_object().field("logprobs", nullptr);
  w.field("finish_reason", s.tool ? "tool_calls" : "stop").end_object().end_array();
  chat_usage(w.key("usage"), s);
  w.field("service_tier", "default").end_object();
  return json_reply(w);
}

Reply openai_responses(const Request& request) {
  const Script s = script_for(request);
  if (is_true(request.json, "stream")) return responses_stream(request, s);
  const std::string text = s.text();
  JsonOut w;
  response_object(w, request, s, unix_time(), &text);
  return json_reply(w);
}

Reply openai_embeddings(const Request& request) {
  const auto input = request.json.find("input");
  if (input == request.json.end() || input->is_null()) {
    return openai_error(Failure::kBadRequest, "embeddings need an `input`");
  }
  std::size_t dimensions = 16;
  if (const auto d = request.json.find("dimensions"); d != request.json.end()) {
    if (!d->is_number_unsigned() || d->get<uint64_t>() == 0 || d->get<uint64_t>() > 4096) {
      return openai_error(Failure::kBadRequest, "`dimensions` must be 1 to 4096");
    }
    dimensions = d->get<std::size_t>();
  }
  const auto format = request.json.find("encoding_format");
  const bool as_base64 = format != request.json.end() && *format == "base64";
  // A string or a token array is one input; an array of strings or of token arrays is several.
  std::vector<const Json*> items;
  if (input->is_array() && !input->empty() && !(*input)[0].is_number()) {
    for (const Json& item : *input) items.push_back(&item);
  } else {
    items.push_back(&*input);
  }
  JsonOut w;
  w.begin_object().field("object", "list").key("data").begin_array();
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::vector<float> v = embedding_of(*items[i], dimensions);
    w.begin_object()
        .field("object", "embedding")
        .field("index", static_cast<uint64_t>(i))
        .key("embedding");
    if (as_base64) {
      // Little-endian float32, as the API sends it (x86 and ARM hosts are little-endian).
      std::string bytes(v.size() * sizeof(float), '\0');
      std::memcpy(bytes.data(), v.data(), bytes.size());
      w.str(base64(bytes));
    } else {
      w.begin_array();
      for (const float x : v) w.num(static_cast<double>(x));
      w.end_array();
    }
    w.end_object();
  }
  const uint64_t tokens = prompt_tokens(request.body);
  w.end_array().field("model", request.model).key("usage").begin_object();
  w.field("prompt_tokens", tokens).field("total_tokens", tokens).end_object().end_object();
  return json_reply(w);
}

Reply openai_models(const Request&) {
  JsonOut w;
  w.begin_object().field("object", "list").key("data").begin_array();
  for (const char* id : {"gpt-5.5", "gpt-5-mini", "text-embedding-3-small"}) {
    w.begin_object().field("id", id).field("object", "model").field("created", 1745000000);
    w.field("owned_by", kSimName).end_object();
  }
  w.end_array().end_object();
  return json_reply(w);
}

}  // namespace airlock::control::sim
