// The built-in pattern sets a guardrail names in "builtin": provider_keys, private_keys,
// cloud_credentials, personal_data and dangerous_commands. Expressions use Hyperscan's PCRE
// subset (no look-around, no back-references), so exclusions are spelled out as alternatives.
#pragma once

#include <span>
#include <string_view>

namespace airlock::control::guardrails {

struct BuiltinPattern {
  std::string_view name;        // stable, "<set>/<pattern>", e.g. "provider_keys/openai"
  std::string_view expression;  // Hyperscan regular expression
  bool case_insensitive = false;
  // A check on the matched text that a regex cannot express (Luhn for card numbers); a match it
  // rejects is dropped. nullptr: every match counts.
  bool (*validate)(std::string_view match) = nullptr;
};

// The patterns of the set called `name`; empty for an unknown name.
std::span<const BuiltinPattern> builtin_set(std::string_view name);

// Every set name, for error messages and documentation.
std::span<const std::string_view> builtin_set_names();

// True when the digits of `text` (spaces and dashes ignored) are 13 to 19 long and pass the Luhn
// check that every payment card number satisfies.
bool luhn_valid(std::string_view text);

}  // namespace airlock::control::guardrails
