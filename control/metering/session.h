// Which agent session a request belongs to, so the request log can group the turns of one
// conversation (and the tool calls made in it) without any help from the client.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "control/metering/usage.h"

namespace airlock::control {

class JsonView;

// A request header's value by name, nullopt when absent. Names are given in lower case and must
// be matched case-insensitively (as Beast's fields do), so metering needs no HTTP library.
using HeaderLookup = std::function<std::optional<std::string_view>(std::string_view name)>;

// The session id, first match wins:
// - Claude Code: header `x-claude-code-session-id`, or the body's `metadata.user_id`, either
//   "user_<h>_account_<uuid>_session_<uuid>" or a JSON object text with "session_id"
//   -> "cc_<id>";
// - Codex: header `session_id`, else `conversation_id` -> "cx_<id>";
// - otherwise a fingerprint of the conversation's start, the same on every turn:
//   "fp_" + the first 16 hex digits of SHA-256(identity_key + "\n" + system text + "\n" +
//   first user message text), where the system text is Anthropic `system`, the first Chat
//   system/developer message, Responses `instructions` (else its first system/developer
//   item), or Gemini `systemInstruction`; text parts are joined with "\n".
// Client-supplied ids keep printable ASCII only (no spaces) and at most 128 characters.
// `identity_key` (e.g. the peer's public key) keeps equal prompts of different callers apart.
// Returns "" when there is nothing to go on: no id and neither system nor user text (e.g. an
// unparseable body).
std::string session_of(Api api, const HeaderLookup& header, std::string_view body,
                       std::string_view identity_key);
// The same for a body the caller has parsed already (absent or not an object: no body).
std::string session_of_json(Api api, const HeaderLookup& header, JsonView body,
                            std::string_view identity_key);

}  // namespace airlock::control
