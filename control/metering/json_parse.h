// The JSON parse for readers that need an nlohmann tree (a pre-request hook's reply, a socket's
// error event), and the nesting limit every parse keeps. Request bodies and provider answers are
// read in place instead (JsonDocument, json_view.h).
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace airlock::control {

// Arrays and objects nested deeper than this are refused. Serialising a tree and walking it
// recurse once per level, so a few hundred KiB of brackets in an agent's request crashed the
// gateway's thread stack; simdjson refuses the same depth, and no provider API nests this deep.
constexpr int kMaxJsonDepth = 1024;

// Whether `text` nests arrays and objects deeper than kMaxJsonDepth (brackets inside strings do
// not count). A scan, not a parse: it says why valid-looking text was refused.
bool nests_too_deep(std::string_view text);

// The tree nlohmann::json::parse(text, nullptr, false) builds, value for value and type for
// type (a discarded value for text that is not JSON; "-0" alone comes back unsigned), built from
// simdjson's parse: nlohmann's own parser reads about 100 MB/s here. Unlike nlohmann's, a document
// nested deeper than kMaxJsonDepth is discarded too.
nlohmann::json parse_json(std::string_view text);

}  // namespace airlock::control
