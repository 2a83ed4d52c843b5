#include "control/gateway/headers.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace airlock::control::gateway {
namespace {

namespace bhttp = boost::beast::http;

policy::ProviderSpec provider(policy::ProviderKind kind, bool passthrough = false) {
  policy::ProviderSpec p;
  p.name = "p";
  p.kind = kind;
  p.passthrough = passthrough;
  return p;
}

std::vector<std::string> values(const bhttp::fields& fields, boost::beast::string_view name) {
  std::vector<std::string> out;
  for (const auto& f : fields) {
    if (boost::beast::iequals(f.name_string(), name)) out.emplace_back(f.value());
  }
  return out;
}

bhttp::fields client_headers() {
  bhttp::fields h;
  h.insert("Host", "100.80.0.1:8080");
  h.insert("Authorization", "Bearer sandbox-token");
  h.insert("x-api-key", "sandbox-key");
  h.insert("X-Goog-Api-Key", "sandbox-goog");
  h.insert("api-key", "sandbox-azure");
  h.insert("Content-Type", "application/json");
  h.insert("Content-Length", "123");
  h.insert("Content-Encoding", "zstd");
  h.insert("Accept-Encoding", "gzip, br");
  h.insert("Connection", "keep-alive, X-Hop");
  h.insert("Keep-Alive", "timeout=5");
  h.insert("Transfer-Encoding", "chunked");
  h.insert("TE", "trailers");
  h.insert("Upgrade", "websocket");
  h.insert("Proxy-Authorization", "Basic xyz");
  h.insert("X-Hop", "named by Connection");
  h.insert("anthropic-version", "2023-06-01");
  h.insert("anthropic-beta", "fine-grained-tool-streaming-2025-05-14, context-1m-2025-08-07");
  h.insert("anthropic-beta", "interleaved-thinking-2025-05-14");
  h.insert("X-Claude-Code-Session-Id", "abc");
  return h;
}

TEST(GatewayHeaders, AnthropicGetsTheKeyAndNoClientCredential) {
  const bhttp::fields out = upstream_request_fields(
      client_headers(), provider(policy::ProviderKind::kAnthropic), "sk-ant-central");
  EXPECT_EQ(values(out, "x-api-key"), std::vector<std::string>{"sk-ant-central"});
  EXPECT_TRUE(values(out, "authorization").empty());
  EXPECT_TRUE(values(out, "x-goog-api-key").empty());
  EXPECT_TRUE(values(out, "api-key").empty());
  // Forwarded byte for byte, repeats and order kept.
  EXPECT_EQ(values(out, "anthropic-version"), std::vector<std::string>{"2023-06-01"});
  EXPECT_EQ(
      values(out, "anthropic-beta"),
      (std::vector<std::string>{"fine-grained-tool-streaming-2025-05-14, context-1m-2025-08-07",
                                "interleaved-thinking-2025-05-14"}));
  EXPECT_EQ(values(out, "x-claude-code-session-id"), std::vector<std::string>{"abc"});
  EXPECT_EQ(values(out, "content-type"), std::vector<std::string>{"application/json"});
}

TEST(GatewayHeaders, HopByHopAndRecomputedHeadersDropped) {
  const bhttp::fields out = upstream_request_fields(
      client_headers(), provider(policy::ProviderKind::kOpenAi), "sk-openai");
  for (const char* name :
       {"host", "content-length", "content-encoding", "accept-encoding", "connection", "keep-alive",
        "transfer-encoding", "te", "upgrade", "proxy-authorization", "x-hop"}) {
    EXPECT_TRUE(values(out, name).empty()) << name;
  }
}

TEST(GatewayHeaders, KeyPlacementPerProviderKind) {
  const auto key_headers = [](policy::ProviderKind kind) {
    const bhttp::fields out = upstream_request_fields(client_headers(), provider(kind), "K");
    return std::vector<std::vector<std::string>>{
        values(out, "authorization"), values(out, "x-api-key"), values(out, "x-goog-api-key")};
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(key_headers(policy::ProviderKind::kOpenAi), (std::vector<V>{V{"Bearer K"}, V{}, V{}}));
  EXPECT_EQ(key_headers(policy::ProviderKind::kOpenAiCompatible),
            (std::vector<V>{V{"Bearer K"}, V{}, V{}}));
  EXPECT_EQ(key_headers(policy::ProviderKind::kAnthropic), (std::vector<V>{V{}, V{"K"}, V{}}));
  EXPECT_EQ(key_headers(policy::ProviderKind::kGemini), (std::vector<V>{V{}, V{}, V{"K"}}));
}

TEST(GatewayHeaders, NoKeyMeansNoCredentialAtAll) {
  const bhttp::fields out = upstream_request_fields(
      client_headers(), provider(policy::ProviderKind::kOpenAiCompatible), std::nullopt);
  EXPECT_TRUE(values(out, "authorization").empty());
  EXPECT_TRUE(values(out, "x-api-key").empty());
}

TEST(GatewayHeaders, PassthroughKeepsClientCredentialsAndIgnoresKey) {
  const bhttp::fields out = upstream_request_fields(
      client_headers(), provider(policy::ProviderKind::kAnthropic, true), "sk-central");
  EXPECT_EQ(values(out, "authorization"), std::vector<std::string>{"Bearer sandbox-token"});
  EXPECT_EQ(values(out, "x-api-key"), std::vector<std::string>{"sandbox-key"});
  EXPECT_TRUE(values(out, "proxy-authorization").empty());
}

TEST(GatewayHeaders, ClientResponseHeader) {
  http::ResponseHeader h;
  h.result(bhttp::status::ok);
  h.insert("Content-Type", "text/event-stream");
  h.insert("Content-Length", "42");
  h.insert("Transfer-Encoding", "chunked");
  h.insert("Connection", "close, X-Upstream-Hop");
  h.insert("X-Upstream-Hop", "1");
  h.insert("Keep-Alive", "timeout=5");
  h.insert("request-id", "req_upstream");

  http::ResponseHeader kept = h;
  prepare_client_header(kept, false);
  EXPECT_EQ(values(kept, "content-length"), std::vector<std::string>{"42"});
  EXPECT_EQ(values(kept, "request-id"), std::vector<std::string>{"req_upstream"});
  EXPECT_EQ(values(kept, "content-type"), std::vector<std::string>{"text/event-stream"});
  for (const char* name : {"transfer-encoding", "connection", "keep-alive", "x-upstream-hop"}) {
    EXPECT_TRUE(values(kept, name).empty()) << name;
  }

  prepare_client_header(h, true);
  EXPECT_TRUE(values(h, "content-length").empty());
  EXPECT_EQ(values(h, "request-id"), std::vector<std::string>{"req_upstream"});
}

}  // namespace
}  // namespace airlock::control::gateway
