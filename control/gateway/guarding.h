// How guardrail verdicts show up in the gateway's own output: the names recorded for each
// action, and the prompt as the request log may keep it when the guardrail blocked it.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "control/guardrails/guardrails.h"
#include "policy/document.h"

namespace airlock::control::gateway {

std::string_view action_name(policy::PromptAction action);
std::string_view action_name(policy::ResponseAction action);

// `body` with every matched span replaced by "[REDACTED:<pattern>]". Unlike the guardrail's own
// redaction this never refuses: the result is for the log, which must not keep the secret even
// when the JSON around it no longer parses.
std::string masked(std::string_view body, std::span<const guardrails::PromptMatch> matches);

}  // namespace airlock::control::gateway
