#include "control/gateway/api.h"

#include <gtest/gtest.h>

namespace airlock::control::gateway {
namespace {

namespace http = boost::beast::http;

ApiKind kind_of(http::verb method, std::string_view target) {
  return classify(method, target).kind;
}

TEST(GatewayApi, ClassifiesEveryProviderRoute) {
  EXPECT_EQ(kind_of(http::verb::post, "/v1/chat/completions"), ApiKind::kOpenAiChat);
  EXPECT_EQ(kind_of(http::verb::post, "/v1/responses"), ApiKind::kOpenAiResponses);
  EXPECT_EQ(kind_of(http::verb::post, "/v1/embeddings"), ApiKind::kOpenAiEmbeddings);
  EXPECT_EQ(kind_of(http::verb::post, "/v1/messages"), ApiKind::kAnthropicMessages);
  EXPECT_EQ(kind_of(http::verb::post, "/v1/messages/count_tokens"), ApiKind::kAnthropicCountTokens);
  EXPECT_EQ(kind_of(http::verb::post, "/v1beta/models/gemini-2.5-pro:countTokens"),
            ApiKind::kGeminiCountTokens);
  EXPECT_EQ(kind_of(http::verb::get, "/v1beta/models"), ApiKind::kModels);
  EXPECT_EQ(kind_of(http::verb::post, "/v1beta/models/gemini-2.5-pro:generateContent"),
            ApiKind::kGeminiGenerate);
  EXPECT_EQ(kind_of(http::verb::post, "/v1beta/models/gemini-2.5-pro:streamGenerateContent"),
            ApiKind::kGeminiStream);
  EXPECT_EQ(kind_of(http::verb::get, "/v1/models"), ApiKind::kModels);
}

TEST(GatewayApi, ToleratesMissingVersionQueriesAndSlashes) {
  EXPECT_EQ(kind_of(http::verb::post, "/chat/completions"), ApiKind::kOpenAiChat);
  EXPECT_EQ(kind_of(http::verb::post, "/messages"), ApiKind::kAnthropicMessages);
  EXPECT_EQ(kind_of(http::verb::get, "/models"), ApiKind::kModels);
  EXPECT_EQ(kind_of(http::verb::post, "/v1/chat/completions/"), ApiKind::kOpenAiChat);

  const ApiRoute claude = classify(http::verb::post, "/v1/messages?beta=true");
  EXPECT_EQ(claude.kind, ApiKind::kAnthropicMessages);
  EXPECT_EQ(claude.version, "v1");
  EXPECT_EQ(claude.query, "beta=true");

  const ApiRoute gemini =
      classify(http::verb::post, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
  EXPECT_EQ(gemini.kind, ApiKind::kGeminiStream);
  EXPECT_EQ(gemini.model, "gemini-2.5-flash");
  EXPECT_EQ(gemini.version, "v1beta");
  EXPECT_EQ(gemini.query, "alt=sse");
}

TEST(GatewayApi, RefusesWrongMethodsAndUnknownPaths) {
  EXPECT_EQ(kind_of(http::verb::get, "/v1/chat/completions"), ApiKind::kUnknown);
  EXPECT_EQ(kind_of(http::verb::post, "/v1/models"), ApiKind::kUnknown);
  EXPECT_EQ(kind_of(http::verb::head, "/"), ApiKind::kUnknown);
  EXPECT_EQ(kind_of(http::verb::post, "/api/event_logging/batch"), ApiKind::kUnknown);
  EXPECT_EQ(kind_of(http::verb::post, "/v1/chat/completions/extra"), ApiKind::kUnknown);
  EXPECT_EQ(kind_of(http::verb::post, "/v1/messages/batches"), ApiKind::kUnknown);
  EXPECT_EQ(kind_of(http::verb::post, "/v1beta/models/gemini-2.5-pro:embedContent"),
            ApiKind::kUnknown);
  EXPECT_EQ(kind_of(http::verb::post, "/v1beta/models/gemini-2.5-pro"), ApiKind::kUnknown);
}

TEST(GatewayApi, GeminiModelCannotCarryPathOrEscapes) {
  EXPECT_EQ(kind_of(http::verb::post, "/v1beta/models/..:generateContent"), ApiKind::kUnknown);
  EXPECT_EQ(kind_of(http::verb::post, "/v1beta/models/a%2F..%2Fb:generateContent"),
            ApiKind::kUnknown);
  EXPECT_EQ(kind_of(http::verb::post, "/v1beta/models/:generateContent"), ApiKind::kUnknown);
  EXPECT_EQ(kind_of(http::verb::post, "/v1beta/models/x/../y:generateContent"), ApiKind::kUnknown);
}

TEST(GatewayApi, UpstreamTargetIsCanonical) {
  const ApiRoute bare = classify(http::verb::post, "/chat/completions");
  EXPECT_EQ(upstream_target(bare, "", false), "/v1/chat/completions");
  // The OpenAI SDK habit: the base URL ends in /v1 already.
  EXPECT_EQ(upstream_target(bare, "/v1", false), "/chat/completions");
  EXPECT_EQ(upstream_target(bare, "/proxy/v1", false), "/chat/completions");
  EXPECT_EQ(upstream_target(bare, "/xv1", false), "/v1/chat/completions");

  const ApiRoute claude = classify(http::verb::post, "//v1//messages?beta=true");
  EXPECT_EQ(upstream_target(claude, "", false), "/v1/messages?beta=true");

  const ApiRoute count = classify(http::verb::post, "/v1/messages/count_tokens");
  EXPECT_EQ(upstream_target(count, "", false), "/v1/messages/count_tokens");

  const ApiRoute gemini_count =
      classify(http::verb::post, "/models/gemini-2.5-pro:countTokens?key=k");
  EXPECT_EQ(upstream_target(gemini_count, "", true), "/v1beta/models/gemini-2.5-pro:countTokens");

  const ApiRoute gemini = classify(http::verb::post, "/models/gemini-2.5-pro:generateContent");
  EXPECT_EQ(upstream_target(gemini, "", false), "/v1beta/models/gemini-2.5-pro:generateContent");
}

TEST(GatewayApi, GeminiKeyQueryDroppedWhenGatewayHoldsTheKey) {
  const ApiRoute route = classify(
      http::verb::post, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?key=abc&alt=sse");
  EXPECT_EQ(upstream_target(route, "", true),
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse");
  EXPECT_EQ(upstream_target(route, "", false),
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?key=abc&alt=sse");
  const ApiRoute only_key =
      classify(http::verb::post, "/v1beta/models/gemini-2.5-pro:generateContent?key=abc");
  EXPECT_EQ(upstream_target(only_key, "", true), "/v1beta/models/gemini-2.5-pro:generateContent");
}

TEST(GatewayApi, ProvidersSpeakTheirOwnApis) {
  using policy::ProviderKind;
  EXPECT_TRUE(provider_speaks(ProviderKind::kOpenAi, ApiKind::kOpenAiResponses));
  EXPECT_TRUE(provider_speaks(ProviderKind::kOpenAiCompatible, ApiKind::kOpenAiChat));
  EXPECT_TRUE(provider_speaks(ProviderKind::kOpenAiCompatible, ApiKind::kOpenAiEmbeddings));
  EXPECT_FALSE(provider_speaks(ProviderKind::kOpenAi, ApiKind::kAnthropicMessages));
  EXPECT_FALSE(provider_speaks(ProviderKind::kOpenAiCompatible, ApiKind::kAnthropicMessages));
  EXPECT_TRUE(provider_speaks(ProviderKind::kAnthropic, ApiKind::kAnthropicCountTokens));
  EXPECT_FALSE(provider_speaks(ProviderKind::kAnthropic, ApiKind::kOpenAiChat));
  EXPECT_TRUE(provider_speaks(ProviderKind::kGemini, ApiKind::kGeminiStream));
  EXPECT_TRUE(provider_speaks(ProviderKind::kGemini, ApiKind::kGeminiCountTokens));
  EXPECT_FALSE(provider_speaks(ProviderKind::kAnthropic, ApiKind::kGeminiCountTokens));
  EXPECT_FALSE(provider_speaks(ProviderKind::kGemini, ApiKind::kOpenAiChat));
}

TEST(GatewayApi, NamesAndMeters) {
  EXPECT_EQ(api_name(ApiKind::kOpenAiChat), "openai.chat");
  EXPECT_EQ(api_name(ApiKind::kAnthropicCountTokens), "anthropic.count_tokens");
  EXPECT_EQ(api_name(ApiKind::kGeminiStream), "gemini.stream");
  EXPECT_EQ(api_name(ApiKind::kGeminiCountTokens), "gemini.count_tokens");
  EXPECT_EQ(api_name(ApiKind::kModels), "models");
  EXPECT_EQ(meter_api(ApiKind::kOpenAiEmbeddings), Api::kOpenAiChat);
  EXPECT_EQ(meter_api(ApiKind::kGeminiStream), Api::kGeminiGenerate);
  EXPECT_FALSE(meter_api(ApiKind::kModels));
}

}  // namespace
}  // namespace airlock::control::gateway
