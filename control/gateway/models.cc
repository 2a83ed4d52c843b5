#include "control/gateway/models.h"

#include <ctime>
#include <set>

#include <nlohmann/json.hpp>

#include "control/gateway/api.h"

namespace airlock::control::gateway {
namespace {

using nlohmann::json;

bool is_glob(const std::string& name) {
  return name.find_first_of("*?") != std::string::npos;
}

// RFC 3339 in UTC, as Anthropic writes created_at.
std::string rfc3339(int64_t unix_s) {
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::vector<GrantedModel> granted_models(const policy::Document& document,
                                         const policy::Identity& identity) {
  std::vector<GrantedModel> out;
  std::set<std::string, std::less<>> seen;
  for (const policy::ProviderSpec& provider : document.providers) {
    for (const std::string& model : provider.models) {
      if (is_glob(model) || seen.contains(model)) continue;
      // An earlier provider whose glob matches takes the requests, so listing the model here
      // would advertise a route that is not the one taken.
      if (document.provider_for_model(model) != &provider) continue;
      if (!document.model_granted(identity, provider.name, model)) continue;
      seen.insert(model);
      out.push_back({model, provider.name, provider.kind});
    }
  }
  return out;
}

bool wants_anthropic_list(const boost::beast::http::fields& request) {
  return request.find("anthropic-version") != request.end() ||
         request.find("x-api-key") != request.end();
}

bool wants_gemini_list(std::string_view version, std::string_view query,
                       const boost::beast::http::fields& request) {
  if (version.starts_with("v1beta") || version.starts_with("v1alpha")) return true;
  return request.find("x-goog-api-key") != request.end() || has_key_param(query);
}

std::string gemini_models_body(std::span<const GrantedModel> models) {
  json list = json::array();
  for (const GrantedModel& m : models) {
    list.push_back({{"name", "models/" + m.id},
                    {"displayName", m.id},
                    {"supportedGenerationMethods",
                     {"generateContent", "streamGenerateContent", "countTokens"}}});
  }
  return dump({{"models", std::move(list)}});
}

std::string openai_models_body(std::span<const GrantedModel> models, int64_t created_s) {
  json data = json::array();
  for (const GrantedModel& m : models) {
    data.push_back(
        {{"id", m.id}, {"object", "model"}, {"created", created_s}, {"owned_by", m.provider}});
  }
  return dump({{"object", "list"}, {"data", std::move(data)}});
}

std::string anthropic_models_body(std::span<const GrantedModel> models, int64_t created_s) {
  const std::string created_at = rfc3339(created_s);
  json data = json::array();
  for (const GrantedModel& m : models) {
    data.push_back(
        {{"type", "model"}, {"id", m.id}, {"display_name", m.id}, {"created_at", created_at}});
  }
  const json first = models.empty() ? json(nullptr) : json(models.front().id);
  const json last = models.empty() ? json(nullptr) : json(models.back().id);
  return dump(
      {{"data", std::move(data)}, {"has_more", false}, {"first_id", first}, {"last_id", last}});
}

}  // namespace airlock::control::gateway
