// The tool results a client sends back to the model: what the agent's tools actually returned,
// taken from the request body so the request log can show each call next to its outcome.
#pragma once

#include <string_view>
#include <vector>

#include "control/metering/usage.h"

namespace airlock::control {

class JsonView;

// The tool results that are new in this request, i.e. those after the model's last turn; the
// conversation history repeats every older result on each turn, so only these are new:
// - Anthropic: `tool_result` blocks of the last message when it is the user's;
// - OpenAI Chat: `role:"tool"` messages after the last assistant message;
// - Responses: `*_call_output` input items after the last item the model produced;
// - Gemini: `functionResponse` parts of the last content when it is not the model's.
// `content` is a string's text, or any other JSON value serialised. `name` comes from the
// result when it carries one, else from the matching call earlier in the body, else empty.
// Lenient: an unparseable body or an unknown shape gives no results; never throws.
std::vector<ToolResult> tool_results_from_request(Api api, std::string_view body);
// The same for a body the caller has parsed already.
std::vector<ToolResult> tool_results_from_json(Api api, JsonView body);

}  // namespace airlock::control
