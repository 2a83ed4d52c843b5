// Anthropic: Messages, count_tokens and the model list (protocols.md §3, §5).
#include "control/sim/responder.h"

namespace airlock::control::sim {
namespace {

Reply json_reply(JsonOut& out) {
  Reply reply;
  reply.body = out.take();
  return reply;
}

std::string id_of(std::string_view prefix, uint64_t serial) {
  return std::string(prefix).append(std::to_string(serial));
}

// The last message is the user's and carries a tool_result block.
bool ends_with_tool_result(const Json& body) {
  const auto messages = body.find("messages");
  if (messages == body.end() || !messages->is_array() || messages->empty()) return false;
  const Json& last = messages->back();
  if (string_member(last, "role") != "user") return false;
  const auto content = last.find("content");
  if (content == last.end() || !content->is_array()) return false;
  return std::any_of(content->begin(), content->end(), [](const Json& block) {
    return string_member(block, "type") == "tool_result";
  });
}

Script script_for(const Request& request) {
  if (ends_with_tool_result(request.json)) return make_script(request, "", nullptr);
  ToolPick pick;
  const auto tools = request.json.find("tools");
  if (tools != request.json.end() && tools->is_array()) {
    for (const Json& tool : *tools) {
      const auto name = tool.is_object() ? tool.find("name") : tool.end();
      if (!tool.is_object() || name == tool.end() || !name->is_string()) continue;
      const auto schema = tool.find("input_schema");
      pick.offer(name->get_ref<const std::string&>(), schema == tool.end() ? nullptr : &*schema);
    }
  }
  return make_script(request, pick.name, pick.schema);
}

// Anthropic's input_tokens excludes cache reads: input + cache read = T. message_delta repeats
// the counts cumulatively but without the breakdown and tier (`full` false).
void usage_of(JsonOut& w, const Script& s, uint64_t output, bool full) {
  w.begin_object()
      .field("input_tokens", s.input - s.cached)
      .field("cache_creation_input_tokens", 0)
      .field("cache_read_input_tokens", s.cached);
  if (full) {
    w.key("cache_creation").begin_object();
    w.field("ephemeral_5m_input_tokens", 0).field("ephemeral_1h_input_tokens", 0).end_object();
  }
  w.field("output_tokens", output);
  if (full) w.field("service_tier", "standard");
  w.end_object();
}

// The message; `content` writes the content blocks (none at message_start).
template <class Content>
void message_of(JsonOut& w, const Request& request, const Script& s, const Content& content,
                const char* stop_reason, uint64_t output) {
  w.begin_object()
      .field("id", id_of("msg_sim", request.serial))
      .field("type", "message")
      .field("role", "assistant")
      .field("model", request.model);
  w.key("content").begin_array();
  content(w);
  w.end_array().key("stop_reason");
  if (stop_reason) {
    w.str(stop_reason);
  } else {
    w.null();
  }
  w.field("stop_sequence", nullptr).key("usage");
  usage_of(w, s, output, true);
  w.end_object();
}

const char* stop_reason_of(const Script& s) {
  return s.tool ? "tool_use" : "end_turn";
}

Reply messages_stream(const Request& request, const Script& s) {
  Reply reply;
  reply.streamed = true;
  reply.content_type = "text/event-stream";
  // `body` writes the members after `type`.
  const auto emit = [&](std::string_view type, const auto& body) {
    JsonOut w("event: ");
    w.text(type).text("\ndata: ").begin_object().field("type", type);
    body(w);
    reply.events.push_back(w.end_object().text("\n\n").take());
  };
  const auto text_delta = [&](std::string_view text) {
    emit("content_block_delta", [text](JsonOut& w) {
      w.field("index", 0).key("delta").begin_object();
      w.field("type", "text_delta").field("text", text).end_object();
    });
  };
  const auto json_delta = [&](std::string_view json) {
    emit("content_block_delta", [json](JsonOut& w) {
      w.field("index", 1).key("delta").begin_object();
      w.field("type", "input_json_delta").field("partial_json", json).end_object();
    });
  };
  // The real service reports a placeholder output count of 1 until message_delta.
  emit("message_start", [&](JsonOut& w) {
    message_of(
        w.key("message"), request, s, [](JsonOut&) {}, nullptr, 1);
  });
  emit("content_block_start", [](JsonOut& w) {
    w.field("index", 0).key("content_block").begin_object();
    w.field("type", "text").field("text", "").end_object();
  });
  emit("ping", [](JsonOut&) {});
  for (std::size_t i = 0; i < s.pieces.size(); ++i) {
    text_delta(s.pieces[i]);
    if (request.fault == Fault::kMidstreamError && i == 1) {
      emit("error", [](JsonOut& w) {
        w.key("error").begin_object().field("type", "overloaded_error");
        w.field("message",
                "Overloaded (simulated by airlock-sim-upstream, model sim-midstream-error)");
        w.end_object();
      });
      return reply;
    }
  }
  emit("content_block_stop", [](JsonOut& w) { w.field("index", 0); });
  if (s.tool) {
    emit("content_block_start", [&](JsonOut& w) {
      w.field("index", 1).key("content_block").begin_object().field("type", "tool_use");
      w.field("id", id_of("toolu_sim", request.serial)).field("name", s.tool->name);
      w.key("input").begin_object().end_object().end_object();
    });
    // The service's first input_json_delta is usually empty.
    json_delta("");
    for (std::string_view piece : s.tool->pieces()) json_delta(piece);
    emit("content_block_stop", [](JsonOut& w) { w.field("index", 1); });
  }
  emit("message_delta", [&](JsonOut& w) {
    w.key("delta").begin_object().field("stop_reason", stop_reason_of(s));
    w.field("stop_sequence", nullptr).end_object().key("usage");
    usage_of(w, s, s.output, false);
  });
  emit("message_stop", [](JsonOut&) {});
  apply_stream_faults(reply, request.fault, "\n");
  return reply;
}

}  // namespace

Reply anthropic_error(Failure failure, std::string_view detail) {
  struct Shape {
    unsigned status;
    const char* type;
  };
  static constexpr Shape kShapes[] = {
      {500, "api_error"},       {529, "overloaded_error"},  {400, "invalid_request_error"},
      {404, "not_found_error"}, {413, "request_too_large"},
  };
  const Shape& shape = kShapes[static_cast<int>(failure)];
  JsonOut w;
  w.begin_object().field("type", "error").key("error").begin_object().field("type", shape.type);
  w.field("message", std::string(kSimName) + " (simulated): " + std::string(detail));
  w.end_object().end_object();
  Reply reply = json_reply(w);
  reply.status = shape.status;
  return reply;
}

Reply anthropic_messages(const Request& request) {
  const Script s = script_for(request);
  const auto stream = request.json.find("stream");
  if (stream != request.json.end() && stream->is_boolean() && stream->get<bool>()) {
    return messages_stream(request, s);
  }
  JsonOut w;
  const auto content = [&](JsonOut& out) {
    out.begin_object().field("type", "text").field("text", s.text()).end_object();
    if (s.tool) {
      out.begin_object().field("type", "tool_use");
      out.field("id", id_of("toolu_sim", request.serial)).field("name", s.tool->name);
      out.key("input").raw(s.tool->arguments).end_object();
    }
  };
  message_of(w, request, s, content, stop_reason_of(s), s.output);
  return json_reply(w);
}

Reply anthropic_count_tokens(const Request& request) {
  JsonOut w;
  w.begin_object().field("input_tokens", prompt_tokens(request.body)).end_object();
  return json_reply(w);
}

Reply anthropic_models(const Request&) {
  static constexpr std::pair<const char*, const char*> kModels[] = {
      {"claude-sonnet-4-6", "Claude Sonnet 4.6 (simulated)"},
      {"claude-opus-4-7", "Claude Opus 4.7 (simulated)"},
      {"claude-haiku-4-5", "Claude Haiku 4.5 (simulated)"},
  };
  JsonOut w;
  w.begin_object().key("data").begin_array();
  for (const auto& [id, name] : kModels) {
    w.begin_object().field("type", "model").field("id", id).field("display_name", name);
    w.field("created_at", "2026-01-01T00:00:00Z").end_object();
  }
  w.end_array().field("has_more", false).field("first_id", kModels[0].first);
  w.field("last_id", std::end(kModels)[-1].first).end_object();
  return json_reply(w);
}

}  // namespace airlock::control::sim
