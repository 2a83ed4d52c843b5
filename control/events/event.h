// Events the control plane tells the outside world about (budget crossed, guardrail matched, ...)
// and their JSON envelope, the body every webhook receives.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace airlock::control::events {

inline constexpr std::string_view kRequestCompleted = "request.completed";
inline constexpr std::string_view kToolCall = "tool.call";
inline constexpr std::string_view kBudgetThreshold = "budget.threshold";
inline constexpr std::string_view kBudgetExceeded = "budget.exceeded";
inline constexpr std::string_view kAccessDenied = "access.denied";
inline constexpr std::string_view kGuardrailMatch = "guardrail.match";
inline constexpr std::string_view kPolicyPushed = "policy.pushed";

inline constexpr std::array<std::string_view, 7> kEventTypes = {
    kRequestCompleted, kToolCall,       kBudgetThreshold, kBudgetExceeded,
    kAccessDenied,     kGuardrailMatch, kPolicyPushed,
};

bool is_event_type(std::string_view type);

struct Event {
  std::string id;  // "evt_" + 32 hex digits; receivers deduplicate on it
  std::string type;
  int64_t time_ms = 0;    // Unix epoch milliseconds
  std::string data_json;  // a JSON object; empty means {}
};

// A new event with a fresh random id and the current time.
Event make_event(std::string_view type, std::string data_json);

// {"id":"evt_...","type":"budget.exceeded","time":1700000000000,"data":{...}}; "time" is the
// event's time_ms. data_json is embedded as is when it is valid JSON; anything else arrives as a
// JSON string, so the envelope itself is always valid JSON.
std::string envelope_json(const Event& event);

}  // namespace airlock::control::events
