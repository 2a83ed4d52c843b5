#include "control/gateway/api.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>

namespace airlock::control::gateway {
namespace {

namespace http = boost::beast::http;

bool is_digit(char c) {
  return std::isdigit(static_cast<unsigned char>(c)) != 0;
}

// "v1", "v2", "v1beta", "v1alpha", "v1beta1".
bool is_version_segment(std::string_view s) {
  if (s.size() < 2 || s[0] != 'v' || !is_digit(s[1])) return false;
  std::size_t i = 1;
  while (i < s.size() && is_digit(s[i])) ++i;
  std::string_view rest = s.substr(i);
  for (std::string_view tag : {"alpha", "beta"}) {
    if (rest.starts_with(tag)) {
      rest.remove_prefix(tag.size());
      break;
    }
  }
  return std::all_of(rest.begin(), rest.end(), is_digit);
}

// The model goes back into the upstream path, so only the characters model names use are
// accepted; anything else ("..", '%', ';') cannot be smuggled into the provider's URL.
bool is_model_segment(std::string_view s) {
  if (s.empty() || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
  });
}

constexpr std::size_t kMaxSegments = 4;

struct Segments {
  std::array<std::string_view, kMaxSegments> items;
  std::size_t size = 0;
  bool overflow = false;
};

// Empty segments ("//", a trailing '/') are skipped: they name nothing, and the upstream
// target is rebuilt from the matched segments, never copied from the client.
Segments split_path(std::string_view path) {
  Segments out;
  while (!path.empty()) {
    const std::size_t slash = path.find('/');
    const std::string_view segment = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(slash + 1);
    if (segment.empty()) continue;
    if (out.size == kMaxSegments) {
      out.overflow = true;
      break;
    }
    out.items[out.size++] = segment;
  }
  return out;
}

ApiKind classify_segments(http::verb method, const Segments& s, std::string* gemini_model) {
  const auto is = [&](std::initializer_list<std::string_view> want) {
    return s.size == want.size() && std::equal(want.begin(), want.end(), s.items.begin());
  };
  if (method == http::verb::get) return is({"models"}) ? ApiKind::kModels : ApiKind::kUnknown;
  if (method != http::verb::post) return ApiKind::kUnknown;
  if (is({"chat", "completions"})) return ApiKind::kOpenAiChat;
  if (is({"responses"})) return ApiKind::kOpenAiResponses;
  if (is({"embeddings"})) return ApiKind::kOpenAiEmbeddings;
  if (is({"messages"})) return ApiKind::kAnthropicMessages;
  if (is({"messages", "count_tokens"})) return ApiKind::kAnthropicCountTokens;
  if (s.size == 2 && s.items[0] == "models") {
    const std::string_view last = s.items[1];
    const std::size_t colon = last.rfind(':');
    if (colon == std::string_view::npos) return ApiKind::kUnknown;
    const std::string_view model = last.substr(0, colon);
    const std::string_view action = last.substr(colon + 1);
    if (!is_model_segment(model)) return ApiKind::kUnknown;
    ApiKind kind = ApiKind::kUnknown;
    if (action == "generateContent") kind = ApiKind::kGeminiGenerate;
    if (action == "streamGenerateContent") kind = ApiKind::kGeminiStream;
    if (action == "countTokens") kind = ApiKind::kGeminiCountTokens;
    if (kind != ApiKind::kUnknown) gemini_model->assign(model);
    return kind;
  }
  return ApiKind::kUnknown;
}

std::string_view canonical_path(ApiKind kind) {
  switch (kind) {
    case ApiKind::kOpenAiChat:
      return "/chat/completions";
    case ApiKind::kOpenAiResponses:
      return "/responses";
    case ApiKind::kOpenAiEmbeddings:
      return "/embeddings";
    case ApiKind::kAnthropicMessages:
      return "/messages";
    case ApiKind::kAnthropicCountTokens:
      return "/messages/count_tokens";
    case ApiKind::kModels:
      return "/models";
    case ApiKind::kGeminiGenerate:
    case ApiKind::kGeminiStream:
    case ApiKind::kGeminiCountTokens:
    case ApiKind::kUnknown:
      break;
  }
  return "";
}

std::string_view gemini_action(ApiKind kind) {
  switch (kind) {
    case ApiKind::kGeminiStream:
      return ":streamGenerateContent";
    case ApiKind::kGeminiCountTokens:
      return ":countTokens";
    default:
      return ":generateContent";
  }
}

// Gemini's `key=` query credential.
bool is_key_param(std::string_view param) {
  return param == "key" || param.starts_with("key=");
}

// Takes the next '&'-separated parameter off the front of `query`.
std::string_view take_param(std::string_view& query) {
  const std::size_t amp = query.find('&');
  const std::string_view param = query.substr(0, amp);
  query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
  return param;
}

std::string filtered_query(std::string_view query, bool drop_key_param) {
  if (!drop_key_param) return std::string(query);
  std::string out;
  while (!query.empty()) {
    const std::string_view param = take_param(query);
    if (param.empty() || is_key_param(param)) continue;
    if (!out.empty()) out.push_back('&');
    out.append(param);
  }
  return out;
}

}  // namespace

ApiRoute classify(http::verb method, std::string_view target) {
  ApiRoute route;
  const std::size_t question = target.find('?');
  if (question != std::string_view::npos) route.query.assign(target.substr(question + 1));
  Segments segments = split_path(target.substr(0, question));
  if (segments.overflow || segments.size == 0) return route;
  if (is_version_segment(segments.items[0])) {
    route.version.assign(segments.items[0]);
    std::move(segments.items.begin() + 1, segments.items.end(), segments.items.begin());
    --segments.size;
  }
  route.kind = classify_segments(method, segments, &route.model);
  return route;
}

bool has_key_param(std::string_view query) {
  while (!query.empty()) {
    if (is_key_param(take_param(query))) return true;
  }
  return false;
}

bool is_gemini(ApiKind kind) {
  return kind == ApiKind::kGeminiGenerate || kind == ApiKind::kGeminiStream ||
         kind == ApiKind::kGeminiCountTokens;
}

bool counts_tokens(ApiKind kind) {
  return kind == ApiKind::kAnthropicCountTokens || kind == ApiKind::kGeminiCountTokens;
}

std::string_view api_name(ApiKind kind) {
  switch (kind) {
    case ApiKind::kOpenAiChat:
      return "openai.chat";
    case ApiKind::kOpenAiResponses:
      return "openai.responses";
    case ApiKind::kOpenAiEmbeddings:
      return "openai.embeddings";
    case ApiKind::kAnthropicMessages:
      return "anthropic.messages";
    case ApiKind::kAnthropicCountTokens:
      return "anthropic.count_tokens";
    case ApiKind::kGeminiGenerate:
      return "gemini.generate";
    case ApiKind::kGeminiStream:
      return "gemini.stream";
    case ApiKind::kGeminiCountTokens:
      return "gemini.count_tokens";
    case ApiKind::kModels:
      return "models";
    case ApiKind::kUnknown:
      break;
  }
  return "";
}

std::optional<Api> meter_api(ApiKind kind) {
  switch (kind) {
    // Embeddings report `usage.prompt_tokens` like a chat completion without completion tokens.
    case ApiKind::kOpenAiChat:
    case ApiKind::kOpenAiEmbeddings:
      return Api::kOpenAiChat;
    case ApiKind::kOpenAiResponses:
      return Api::kOpenAiResponses;
    case ApiKind::kAnthropicMessages:
    case ApiKind::kAnthropicCountTokens:
      return Api::kAnthropicMessages;
    case ApiKind::kGeminiGenerate:
    case ApiKind::kGeminiStream:
    case ApiKind::kGeminiCountTokens:
      return Api::kGeminiGenerate;
    case ApiKind::kModels:
    case ApiKind::kUnknown:
      break;
  }
  return std::nullopt;
}

bool provider_speaks(policy::ProviderKind kind, ApiKind api) {
  switch (api) {
    case ApiKind::kOpenAiChat:
    case ApiKind::kOpenAiResponses:
    case ApiKind::kOpenAiEmbeddings:
      return kind == policy::ProviderKind::kOpenAi ||
             kind == policy::ProviderKind::kOpenAiCompatible;
    case ApiKind::kAnthropicMessages:
    case ApiKind::kAnthropicCountTokens:
      return kind == policy::ProviderKind::kAnthropic;
    case ApiKind::kGeminiGenerate:
    case ApiKind::kGeminiStream:
    case ApiKind::kGeminiCountTokens:
      return kind == policy::ProviderKind::kGemini;
    case ApiKind::kModels:
    case ApiKind::kUnknown:
      break;
  }
  return false;
}

std::string upstream_target(const ApiRoute& route, std::string_view base_path,
                            bool drop_key_param) {
  const bool gemini = is_gemini(route.kind);
  const std::string version = !route.version.empty() ? route.version : gemini ? "v1beta" : "v1";
  std::string target;
  // A base URL such as "http://host/v1" already names the version (the OpenAI SDK habit).
  const bool base_has_version = base_path.ends_with(version) && base_path.size() > version.size() &&
                                base_path[base_path.size() - version.size() - 1] == '/';
  if (!base_has_version) target.append("/").append(version);
  if (gemini) {
    target.append("/models/").append(route.model).append(gemini_action(route.kind));
  } else {
    target.append(canonical_path(route.kind));
  }
  const std::string query = filtered_query(route.query, drop_key_param);
  if (!query.empty()) target.append("?").append(query);
  return target;
}

}  // namespace airlock::control::gateway
