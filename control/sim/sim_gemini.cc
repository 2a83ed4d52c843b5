// Gemini: generateContent, streamGenerateContent (SSE with alt=sse, else a streamed JSON array),
// countTokens and the model list (protocols.md §4, §5).
#include "control/sim/responder.h"

namespace airlock::control::sim {
namespace {

Reply json_reply(JsonOut& out) {
  Reply reply;
  reply.body = out.take();
  return reply;
}

bool has_query_param(std::string_view query, std::string_view param) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    if (query.substr(0, amp) == param) return true;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

// The last content carries a functionResponse part.
bool ends_with_tool_result(const Json& body) {
  const auto contents = body.find("contents");
  if (contents == body.end() || !contents->is_array() || contents->empty()) return false;
  const Json& last = contents->back();
  const auto parts = last.is_object() ? last.find("parts") : last.end();
  if (!last.is_object() || parts == last.end() || !parts->is_array()) return false;
  return std::any_of(parts->begin(), parts->end(), [](const Json& part) {
    return part.is_object() && part.contains("functionResponse");
  });
}

// Declarations sit in tools[].functionDeclarations[]; tools such as googleSearch have none.
Script script_for(const Request& request) {
  if (ends_with_tool_result(request.json)) return make_script(request, "", nullptr);
  ToolPick pick;
  const auto tools = request.json.find("tools");
  if (tools != request.json.end() && tools->is_array()) {
    for (const Json& tool : *tools) {
      const auto decls = tool.is_object() ? tool.find("functionDeclarations") : tool.end();
      if (!tool.is_object() || decls == tool.end() || !decls->is_array()) continue;
      for (const Json& decl : *decls) {
        const auto name = decl.is_object() ? decl.find("name") : decl.end();
        if (!decl.is_object() || name == decl.end() || !name->is_string()) continue;
        auto schema = decl.find("parameters");
        if (schema == decl.end()) schema = decl.find("parametersJsonSchema");
        pick.offer(name->get_ref<const std::string&>(), schema == decl.end() ? nullptr : &*schema);
      }
    }
  }
  return make_script(request, pick.name, pick.schema);
}

// Gemini's prompt count includes the cached part; candidates are the output words so far.
void usage_of(JsonOut& w, const Script& s, uint64_t candidates) {
  w.begin_object()
      .field("promptTokenCount", s.input)
      .field("candidatesTokenCount", candidates)
      .field("totalTokenCount", s.input + candidates);
  if (s.cached > 0) w.field("cachedContentTokenCount", s.cached);
  w.key("promptTokensDetails").begin_array().begin_object();
  w.field("modality", "TEXT").field("tokenCount", s.input).end_object().end_array();
  w.end_object();
}

void function_call_part(JsonOut& w, const ToolCallScript& tool) {
  w.begin_object().key("functionCall").begin_object().field("name", tool.name);
  w.key("args").raw(tool.arguments).end_object().end_object();
}

// One GenerateContentResponse; `parts` writes the candidate's parts.
template <class Parts>
void response_of(JsonOut& w, const Request& request, const Script& s, const Parts& parts,
                 bool finished, uint64_t candidates) {
  w.begin_object().key("candidates").begin_array().begin_object();
  w.key("content").begin_object().key("parts").begin_array();
  parts(w);
  w.end_array().field("role", "model").end_object();
  if (finished) w.field("finishReason", "STOP");
  w.field("index", 0).end_object().end_array().key("usageMetadata");
  usage_of(w, s, candidates);
  w.field("modelVersion", request.model);
  w.field("responseId", "sim" + std::to_string(request.serial)).end_object();
}

void error_of(JsonOut& w, unsigned code, std::string_view status, std::string_view message) {
  w.begin_object().key("error").begin_object().field("code", uint64_t{code});
  w.field("message", std::string(kSimName) + " (simulated): " + std::string(message));
  w.field("status", status).end_object().end_object();
}

Reply generate_stream(const Request& request, const Script& s) {
  const bool sse = has_query_param(request.query, "alt=sse");
  Reply reply;
  reply.streamed = true;
  reply.content_type = sse ? "text/event-stream" : "application/json";
  // SSE events use CRLF framing; without alt=sse the chunks form one JSON array.
  const auto emit = [&](const auto& chunk) {
    JsonOut w(sse ? "data: " : reply.events.empty() ? "[" : ",\r\n");
    chunk(w);
    if (sse) w.text("\r\n\r\n");
    reply.events.push_back(w.take());
  };
  uint64_t words = 0;
  for (std::size_t i = 0; i < s.pieces.size(); ++i) {
    words += count_words(s.pieces[i]);
    const bool last = i + 1 == s.pieces.size() && !s.tool;
    const std::string_view piece = s.pieces[i];
    emit([&](JsonOut& w) {
      response_of(
          w, request, s,
          [piece](JsonOut& p) { p.begin_object().field("text", piece).end_object(); }, last, words);
    });
    if (request.fault == Fault::kMidstreamError && i == 1) {
      emit([](JsonOut& w) {
        error_of(w, 500, "INTERNAL", "the stream failed midway (model sim-midstream-error)");
      });
      break;
    }
  }
  if (s.tool && request.fault != Fault::kMidstreamError) {
    emit([&](JsonOut& w) {
      response_of(
          w, request, s, [&](JsonOut& p) { function_call_part(p, *s.tool); }, true, s.output);
    });
  }
  if (!sse) reply.events.back().append("]");
  apply_stream_faults(reply, request.fault, "\r\n");
  return reply;
}

}  // namespace

Reply gemini_error(Failure failure, std::string_view detail) {
  struct Shape {
    unsigned status;
    const char* status_text;
  };
  static constexpr Shape kShapes[] = {
      {500, "INTERNAL"},  {503, "UNAVAILABLE"},      {400, "INVALID_ARGUMENT"},
      {404, "NOT_FOUND"}, {413, "INVALID_ARGUMENT"},
  };
  const Shape& shape = kShapes[static_cast<int>(failure)];
  JsonOut w;
  error_of(w, shape.status, shape.status_text, detail);
  Reply reply = json_reply(w);
  reply.status = shape.status;
  return reply;
}

Reply gemini_generate(const Request& request, bool stream) {
  const Script s = script_for(request);
  if (stream) return generate_stream(request, s);
  JsonOut w;
  const auto parts = [&](JsonOut& p) {
    p.begin_object().field("text", s.text()).end_object();
    if (s.tool) function_call_part(p, *s.tool);
  };
  response_of(w, request, s, parts, true, s.output);
  return json_reply(w);
}

Reply gemini_count_tokens(const Request& request) {
  JsonOut w;
  w.begin_object().field("totalTokens", prompt_tokens(request.body)).end_object();
  return json_reply(w);
}

Reply gemini_models(const Request&) {
  static constexpr std::pair<const char*, const char*> kModels[] = {
      {"models/gemini-2.5-pro", "Gemini 2.5 Pro (simulated)"},
      {"models/gemini-2.5-flash", "Gemini 2.5 Flash (simulated)"},
  };
  JsonOut w;
  w.begin_object().key("models").begin_array();
  for (const auto& [name, display] : kModels) {
    w.begin_object().field("name", name).field("displayName", display);
    w.field("inputTokenLimit", 1048576).field("outputTokenLimit", 65536);
    w.key("supportedGenerationMethods").begin_array();
    for (const char* method : {"generateContent", "streamGenerateContent", "countTokens"}) {
      w.str(method);
    }
    w.end_array().end_object();
  }
  w.end_array().end_object();
  return json_reply(w);
}

}  // namespace airlock::control::sim
