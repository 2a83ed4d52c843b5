// The gateway's own refusals and failures, written in the error format of the API the client
// is speaking, so its SDK raises the usual exception with a readable message (the SDKs pick the
// exception class from the HTTP status, and show the message).
#pragma once

#include <string>
#include <string_view>

#include "control/gateway/api.h"

namespace airlock::control::gateway {

enum class ErrorFormat { kOpenAi, kAnthropic, kGemini };

// `anthropic_client`: the request carried anthropic-version or x-api-key, which decides the
// format for the routes every provider shares (/v1/models, unknown paths).
ErrorFormat error_format(ApiKind kind, bool anthropic_client);

enum class GatewayError {
  kUnknownPeer,          // 403: the connection is not from a known WireGuard peer
  kUnknownRoute,         // 404
  kNoWebSocket,          // 426: a WebSocket upgrade; Codex falls back to HTTP at once on 426 only
  kBodyTooLarge,         // 413
  kUnsupportedEncoding,  // 415: a Content-Encoding the gateway cannot decode
  kBadEncoding,          // 400: a corrupt compressed body
  kBadJson,              // 400
  kMissingModel,         // 400
  kWrongApi,             // 400: the model's provider does not speak this API
  kUnknownModel,         // 404: no provider serves the model
  kNotGranted,           // 403
  kUpstreamFailed,       // 502: refused, unreachable, TLS or protocol failure
  kUpstreamTimeout,      // 504
  kBudgetExceeded,       // 429 with Retry-After: a budget cannot cover the request's worst case
  kRateLimited,          // 429 with Retry-After: requests, tokens or streams per identity
  kNoPrice,              // 403: a budgeted model without a price cannot be bounded
  kGuardrailBlocked,     // 400: a guardrail matched the prompt
  kGuardrailCut,         // 400: a guardrail matched the model's tool call (a stream keeps its 200)
  kHookBlocked,          // 403 unless the hook names another status
  kHookFailed,           // 503: a fail-closed pre-request hook did not answer
  kTurnInFlight,         // 409: a response.create while the WebSocket's last turn still streams
};

int error_status(GatewayError error);

// OpenAI {"error":{"message","type","param","code"}}, Anthropic {"type":"error","error":{"type",
// "message"}}, Gemini {"error":{"code","message","status"}}.
std::string error_body(ErrorFormat format, GatewayError error, std::string_view message);

// The same error as one server-sent event, for a stream already under way: OpenAI `data:
// {"error":...}`, Anthropic `event: error`, Gemini `data: {"error":...}`.
std::string error_event(ErrorFormat format, GatewayError error, std::string_view message);

}  // namespace airlock::control::gateway
