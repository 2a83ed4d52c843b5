#include "control/gateway/guarding.h"

#include <algorithm>
#include <vector>

namespace airlock::control::gateway {

std::string_view action_name(policy::PromptAction action) {
  switch (action) {
    case policy::PromptAction::kOff:
      return "off";
    case policy::PromptAction::kFlag:
      return "flag";
    case policy::PromptAction::kRedact:
      return "redact";
    case policy::PromptAction::kBlock:
      return "block";
  }
  return "unknown";
}

std::string_view action_name(policy::ResponseAction action) {
  switch (action) {
    case policy::ResponseAction::kOff:
      return "off";
    case policy::ResponseAction::kFlag:
      return "flag";
    case policy::ResponseAction::kCut:
      return "cut";
  }
  return "unknown";
}

std::string masked(std::string_view body, std::span<const guardrails::PromptMatch> matches) {
  std::vector<const guardrails::PromptMatch*> order;
  for (const auto& match : matches) {
    if (match.offset < body.size()) order.push_back(&match);
  }
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return a->offset < b->offset; });
  std::string out;
  out.reserve(body.size());
  std::size_t at = 0;
  for (const auto* match : order) {
    const std::size_t end = std::min(body.size(), match->offset + match->length);
    if (end <= at) continue;
    out.append(body.substr(at, match->offset > at ? match->offset - at : 0));
    if (match->offset >= at) out.append("[REDACTED:" + match->pattern + "]");
    at = end;
  }
  out.append(body.substr(at));
  return out;
}

}  // namespace airlock::control::gateway
