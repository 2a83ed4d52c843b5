#include "control/gateway/headers.h"

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include <boost/beast/core/string.hpp>

namespace airlock::control::gateway {
namespace {

namespace bhttp = boost::beast::http;

std::string_view sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

bool iequals(std::string_view a, std::string_view b) {
  return boost::beast::iequals(boost::beast::string_view(a.data(), a.size()),
                               boost::beast::string_view(b.data(), b.size()));
}

// RFC 9110 §7.6.1 plus the proxy ones that old clients still send.
constexpr std::string_view kHopByHop[] = {
    "connection", "keep-alive", "proxy-connection",    "transfer-encoding",  "te",
    "trailer",    "upgrade",    "proxy-authorization", "proxy-authenticate",
};

// Every way a client can present an API key to a provider (OpenAI, Anthropic, Gemini, Azure).
constexpr std::string_view kCredentials[] = {"authorization", "x-api-key", "x-goog-api-key",
                                             "api-key"};

constexpr std::string_view kRecomputed[] = {"host", "content-length", "accept-encoding",
                                            "content-encoding", "expect"};

bool listed(std::string_view name, std::span<const std::string_view> names) {
  return std::any_of(names.begin(), names.end(),
                     [&](std::string_view n) { return iequals(n, name); });
}

std::string_view trim(std::string_view s) {
  const std::size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

// Headers named by Connection are hop-by-hop for this one message (RFC 9110 §7.6.1).
std::vector<std::string_view> connection_tokens(const bhttp::fields& fields) {
  std::vector<std::string_view> tokens;
  for (auto it = fields.find(bhttp::field::connection);
       it != fields.end() && it->name() == bhttp::field::connection; ++it) {
    std::string_view value = sv(it->value());
    while (!value.empty()) {
      const std::size_t comma = value.find(',');
      if (const std::string_view token = trim(value.substr(0, comma)); !token.empty()) {
        tokens.push_back(token);
      }
      value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    }
  }
  return tokens;
}

bool hop_by_hop(std::string_view name, std::span<const std::string_view> connection) {
  return listed(name, kHopByHop) || listed(name, connection);
}

}  // namespace

bhttp::fields upstream_request_fields(const bhttp::fields& client,
                                      const policy::ProviderSpec& provider,
                                      std::optional<std::string_view> key) {
  const std::vector<std::string_view> connection = connection_tokens(client);
  bhttp::fields out;
  for (const auto& field : client) {
    const std::string_view name = sv(field.name_string());
    if (hop_by_hop(name, connection) || listed(name, kRecomputed)) continue;
    if (!provider.passthrough && listed(name, kCredentials)) continue;
    out.insert(field.name_string(), field.value());
  }
  if (provider.passthrough || !key) return out;
  switch (provider.kind) {
    case policy::ProviderKind::kOpenAi:
    case policy::ProviderKind::kOpenAiCompatible:
      out.set(bhttp::field::authorization, "Bearer " + std::string(*key));
      break;
    case policy::ProviderKind::kAnthropic:
      out.set("x-api-key", boost::beast::string_view(key->data(), key->size()));
      break;
    case policy::ProviderKind::kGemini:
      out.set("x-goog-api-key", boost::beast::string_view(key->data(), key->size()));
      break;
  }
  return out;
}

void prepare_client_header(http::ResponseHeader& header, bool body_may_change) {
  const std::vector<std::string> connection = [&] {
    std::vector<std::string> copy;
    for (std::string_view token : connection_tokens(header)) copy.emplace_back(token);
    return copy;
  }();
  const std::vector<std::string_view> names(connection.begin(), connection.end());
  for (auto it = header.begin(); it != header.end();) {
    const std::string_view name = sv(it->name_string());
    const bool drop =
        hop_by_hop(name, names) || (body_may_change && iequals(name, "content-length"));
    it = drop ? header.erase(it) : std::next(it);
  }
}

}  // namespace airlock::control::gateway
