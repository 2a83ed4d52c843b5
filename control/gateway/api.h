// Which provider API a request speaks, from its method and target alone. Clients disagree on
// base URLs (with or without "/v1"), Claude Code adds "?beta=true" and Gemini puts the model
// and the action in the path, so routing looks at path segments and the action suffix rather
// than comparing whole targets.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/verb.hpp>

#include "control/metering/usage.h"
#include "policy/document.h"

namespace airlock::control::gateway {

enum class ApiKind {
  kUnknown,
  kOpenAiChat,            // POST /v1/chat/completions
  kOpenAiResponses,       // POST /v1/responses
  kOpenAiEmbeddings,      // POST /v1/embeddings
  kAnthropicMessages,     // POST /v1/messages
  kAnthropicCountTokens,  // POST /v1/messages/count_tokens
  kGeminiGenerate,        // POST /v1beta/models/{model}:generateContent
  kGeminiStream,          // POST /v1beta/models/{model}:streamGenerateContent
  kGeminiCountTokens,     // POST /v1beta/models/{model}:countTokens
  kModels,                // GET /v1/models (and Gemini's GET /v1beta/models)
};

// Gemini's routes name the model in the path, not the body.
bool is_gemini(ApiKind kind);

// Token counting: free, no usage in the answer, no tool calls.
bool counts_tokens(ApiKind kind);

// Whether the query carries Gemini's `key=` credential.
bool has_key_param(std::string_view query);

struct ApiRoute {
  ApiKind kind = ApiKind::kUnknown;
  std::string version;  // the client's version segment ("v1", "v1beta"); empty if it had none
  std::string model;    // Gemini only: the {model} of the path
  std::string query;    // everything after '?', without it
};

ApiRoute classify(boost::beast::http::verb method, std::string_view target);

// The name stored in RequestRecord::api ("openai.chat", ...); empty for kUnknown.
std::string_view api_name(ApiKind kind);

// The metering parser for the response; nullopt for routes that never reach a provider.
std::optional<Api> meter_api(ApiKind kind);

// Whether a provider of `kind` serves this API (OpenAI-compatible upstreams speak the OpenAI
// routes only; nobody is asked for kModels, which the gateway answers itself).
bool provider_speaks(policy::ProviderKind kind, ApiKind api);

// The request target to send upstream, relative to the provider's base path: the canonical
// path of the route (a missing version segment is added back, and one the base path already
// ends with is not repeated) plus the client's query. `drop_key_param` removes Gemini's
// `key=` query credential, which must not reach a provider the gateway holds the key for.
std::string upstream_target(const ApiRoute& route, std::string_view base_path, bool drop_key_param);

}  // namespace airlock::control::gateway
