#include "control/gateway/record_events.h"

#include <nlohmann/json.hpp>

#include "control/events/event.h"

namespace airlock::control::gateway {
namespace {

using nlohmann::json;

// Tool arguments can be whole files (apply_patch); a webhook carries the start, the request log
// keeps all of it.
constexpr std::size_t kMaxEventArguments = 8192;

json who(const RequestRecord& record) {
  return {{"request_id", record.id},
          {"user", record.user},
          {"device", record.device},
          {"peer", record.peer_key},
          {"session_id", record.session_id}};
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void publish(events::Outbox& outbox, std::string_view type, const json& data) {
  outbox.publish(events::make_event(type, dump(data)));
}

// A refusal of who may do what (unknown peer, model not granted, hook) rather than a malformed
// request or a provider failure.
bool denied(const RequestRecord& record) {
  return record.status == 403;
}

void publish_completed(events::Outbox& outbox, const RequestRecord& record);

}  // namespace

void publish_record_events(events::Outbox& outbox, const RequestRecord& record) {
  if (outbox.wants(events::kRequestCompleted)) publish_completed(outbox, record);
  if (outbox.wants(events::kToolCall)) {
    for (const ToolCall& call : record.tool_calls) {
      json data = who(record);
      const bool cut = call.arguments.size() > kMaxEventArguments;
      data.update({{"model", record.model},
                   {"call_id", call.id},
                   {"name", call.name},
                   {"arguments", call.arguments.substr(0, kMaxEventArguments)},
                   {"arguments_truncated", cut}});
      publish(outbox, events::kToolCall, data);
    }
  }
  if (denied(record) && outbox.wants(events::kAccessDenied)) {
    json data = who(record);
    data.update({{"model", record.model}, {"provider", record.provider}, {"reason", record.error}});
    publish(outbox, events::kAccessDenied, data);
  }
  if (!record.guardrail_hits.empty() && outbox.wants(events::kGuardrailMatch)) {
    for (const GuardrailHit& hit : record.guardrail_hits) {
      json data = who(record);
      data.update({{"model", record.model},
                   {"guardrail", hit.guardrail},
                   {"pattern", hit.pattern},
                   {"action", hit.action},
                   {"where", hit.where}});
      publish(outbox, events::kGuardrailMatch, data);
    }
  }
}

namespace {

void publish_completed(events::Outbox& outbox, const RequestRecord& record) {
  json completed = who(record);
  completed.update({{"provider", record.provider},
                    {"model", record.model},
                    {"api", record.api},
                    {"status", record.status},
                    {"streamed", record.streamed},
                    {"input_tokens", record.input_tokens},
                    {"output_tokens", record.output_tokens},
                    {"cache_read_tokens", record.cache_read_tokens},
                    {"cache_write_tokens", record.cache_write_tokens},
                    {"reasoning_tokens", record.reasoning_tokens},
                    {"cost_usd", record.cost ? json(static_cast<double>(*record.cost) /
                                                    static_cast<double>(kPicodollarsPerDollar))
                                             : json(nullptr)},
                    {"duration_ms", record.duration_us / 1000},
                    {"tool_calls", record.tool_calls.size()},
                    {"error", record.error}});
  publish(outbox, events::kRequestCompleted, completed);
}

}  // namespace

}  // namespace airlock::control::gateway
