#include "control/gateway/errors.h"

#include <nlohmann/json.hpp>

namespace airlock::control::gateway {
namespace {

using nlohmann::json;

struct ErrorNames {
  int status;
  const char* openai_type;
  const char* code;  // OpenAI `code`
  const char* anthropic_type;
  const char* gemini_status;
};

ErrorNames names_of(GatewayError error) {
  switch (error) {
    case GatewayError::kUnknownPeer:
      return {403, "permission_error", "unknown_peer", "permission_error", "PERMISSION_DENIED"};
    case GatewayError::kUnknownRoute:
      return {404, "invalid_request_error", "unknown_url", "not_found_error", "NOT_FOUND"};
    case GatewayError::kNoWebSocket:
      return {426, "invalid_request_error", "websocket_not_supported", "invalid_request_error",
              "FAILED_PRECONDITION"};
    case GatewayError::kTurnInFlight:
      return {409, "invalid_request_error", "response_in_progress", "invalid_request_error",
              "FAILED_PRECONDITION"};
    case GatewayError::kBodyTooLarge:
      return {413, "invalid_request_error", "request_too_large", "request_too_large",
              "INVALID_ARGUMENT"};
    case GatewayError::kUnsupportedEncoding:
      return {415, "invalid_request_error", "unsupported_content_encoding", "invalid_request_error",
              "INVALID_ARGUMENT"};
    case GatewayError::kBadEncoding:
      return {400, "invalid_request_error", "invalid_content_encoding", "invalid_request_error",
              "INVALID_ARGUMENT"};
    case GatewayError::kBadJson:
      return {400, "invalid_request_error", "invalid_json", "invalid_request_error",
              "INVALID_ARGUMENT"};
    case GatewayError::kMissingModel:
      return {400, "invalid_request_error", "missing_model", "invalid_request_error",
              "INVALID_ARGUMENT"};
    case GatewayError::kWrongApi:
      return {400, "invalid_request_error", "unsupported_api", "invalid_request_error",
              "INVALID_ARGUMENT"};
    case GatewayError::kUnknownModel:
      return {404, "invalid_request_error", "model_not_found", "not_found_error", "NOT_FOUND"};
    case GatewayError::kNotGranted:
      return {403, "permission_error", "model_not_granted", "permission_error",
              "PERMISSION_DENIED"};
    case GatewayError::kUpstreamFailed:
      return {502, "server_error", "upstream_unavailable", "api_error", "UNAVAILABLE"};
    case GatewayError::kUpstreamTimeout:
      return {504, "server_error", "upstream_timeout", "timeout_error", "DEADLINE_EXCEEDED"};
    case GatewayError::kBudgetExceeded:
      return {429, "insufficient_quota", "budget_exceeded", "rate_limit_error",
              "RESOURCE_EXHAUSTED"};
    case GatewayError::kRateLimited:
      return {429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error",
              "RESOURCE_EXHAUSTED"};
    case GatewayError::kNoPrice:
      return {403, "permission_error", "model_not_priced", "permission_error", "PERMISSION_DENIED"};
    case GatewayError::kGuardrailBlocked:
      return {400, "invalid_request_error", "guardrail_blocked", "invalid_request_error",
              "INVALID_ARGUMENT"};
    case GatewayError::kGuardrailCut:
      return {400, "invalid_request_error", "guardrail_cut", "invalid_request_error",
              "INVALID_ARGUMENT"};
    case GatewayError::kHookBlocked:
      return {403, "permission_error", "blocked_by_hook", "permission_error", "PERMISSION_DENIED"};
    case GatewayError::kHookFailed:
      return {503, "server_error", "hook_unavailable", "overloaded_error", "UNAVAILABLE"};
  }
  return {500, "server_error", "internal_error", "api_error", "INTERNAL"};
}

bool names_model(GatewayError error) {
  return error == GatewayError::kMissingModel || error == GatewayError::kUnknownModel ||
         error == GatewayError::kNotGranted || error == GatewayError::kWrongApi ||
         error == GatewayError::kNoPrice;
}

}  // namespace

ErrorFormat error_format(ApiKind kind, bool anthropic_client) {
  switch (kind) {
    case ApiKind::kAnthropicMessages:
    case ApiKind::kAnthropicCountTokens:
      return ErrorFormat::kAnthropic;
    case ApiKind::kGeminiGenerate:
    case ApiKind::kGeminiStream:
    case ApiKind::kGeminiCountTokens:
      return ErrorFormat::kGemini;
    case ApiKind::kOpenAiChat:
    case ApiKind::kOpenAiResponses:
    case ApiKind::kOpenAiEmbeddings:
      return ErrorFormat::kOpenAi;
    case ApiKind::kModels:
    case ApiKind::kUnknown:
      break;
  }
  return anthropic_client ? ErrorFormat::kAnthropic : ErrorFormat::kOpenAi;
}

int error_status(GatewayError error) {
  return names_of(error).status;
}

std::string error_body(ErrorFormat format, GatewayError error, std::string_view message) {
  const ErrorNames names = names_of(error);
  json body;
  switch (format) {
    case ErrorFormat::kOpenAi:
      body = {{"error",
               {{"message", message},
                {"type", names.openai_type},
                {"param", names_model(error) ? json("model") : json(nullptr)},
                {"code", names.code}}}};
      break;
    case ErrorFormat::kAnthropic:
      body = {{"type", "error"}, {"error", {{"type", names.anthropic_type}, {"message", message}}}};
      break;
    case ErrorFormat::kGemini:
      body = {{"error",
               {{"code", names.status}, {"message", message}, {"status", names.gemini_status}}}};
      break;
  }
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_event(ErrorFormat format, GatewayError error, std::string_view message) {
  const std::string data = error_body(format, error, message);
  if (format == ErrorFormat::kAnthropic) return "event: error\ndata: " + data + "\n\n";
  return "data: " + data + "\n\n";
}

}  // namespace airlock::control::gateway
