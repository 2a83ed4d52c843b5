// GET /v1/models, answered by the gateway itself: the models the caller may use, in the list
// shape its client parses. Claude Code (gateway model discovery) reads only the Anthropic shape;
// OpenAI SDKs, Codex and OpenCode read the OpenAI one; Gemini's SDKs read their own.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/fields.hpp>

#include "policy/document.h"

namespace airlock::control::gateway {

struct GrantedModel {
  std::string id;
  std::string provider;  // the provider's name in the policy
  policy::ProviderKind kind;
};

// The exact (non-glob) model names of the providers' `models` lists that `identity` is granted,
// in policy order, each listed once and under the provider that requests for it route to.
std::vector<GrantedModel> granted_models(const policy::Document& document,
                                         const policy::Identity& identity);

// anthropic-version (sent by every Anthropic SDK and Claude Code) or x-api-key asks for the
// Anthropic shape.
bool wants_anthropic_list(const boost::beast::http::fields& request);

// Gemini's SDKs list models at GET /v1beta/models (or v1alpha) with x-goog-api-key or `key=`.
// `version` and `query` are the route's (see api.h).
bool wants_gemini_list(std::string_view version, std::string_view query,
                       const boost::beast::http::fields& request);

// {"models":[{"name":"models/ID","displayName","supportedGenerationMethods"}]}, every model on
// the one page; the caller passes only models that Gemini providers serve.
std::string gemini_models_body(std::span<const GrantedModel> models);

// {"object":"list","data":[{"id","object":"model","created","owned_by"}]}. `created_s` is the
// Unix time the gateway reports for every model (it has no release dates).
std::string openai_models_body(std::span<const GrantedModel> models, int64_t created_s);

// {"data":[{"type":"model","id","display_name","created_at"}],"has_more":false,"first_id",
// "last_id"}; every model is on the one page.
std::string anthropic_models_body(std::span<const GrantedModel> models, int64_t created_s);

}  // namespace airlock::control::gateway
