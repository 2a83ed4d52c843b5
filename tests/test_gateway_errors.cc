#include "control/gateway/errors.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace airlock::control::gateway {
namespace {

using nlohmann::json;

TEST(GatewayErrors, StatusesFollowTheFailure) {
  EXPECT_EQ(error_status(GatewayError::kBadJson), 400);
  EXPECT_EQ(error_status(GatewayError::kMissingModel), 400);
  EXPECT_EQ(error_status(GatewayError::kWrongApi), 400);
  EXPECT_EQ(error_status(GatewayError::kUnknownModel), 404);
  EXPECT_EQ(error_status(GatewayError::kNotGranted), 403);
  EXPECT_EQ(error_status(GatewayError::kUnknownPeer), 403);
  EXPECT_EQ(error_status(GatewayError::kBodyTooLarge), 413);
  EXPECT_EQ(error_status(GatewayError::kUnsupportedEncoding), 415);
  EXPECT_EQ(error_status(GatewayError::kUpstreamFailed), 502);
  EXPECT_EQ(error_status(GatewayError::kUpstreamTimeout), 504);
}

TEST(GatewayErrors, OpenAiShape) {
  const json body =
      json::parse(error_body(ErrorFormat::kOpenAi, GatewayError::kNotGranted, "no \"x\" for you"));
  EXPECT_EQ(body["error"]["message"], "no \"x\" for you");
  EXPECT_EQ(body["error"]["type"], "permission_error");
  EXPECT_EQ(body["error"]["param"], "model");
  EXPECT_EQ(body["error"]["code"], "model_not_granted");
  EXPECT_EQ(body.size(), 1u);

  const json timeout =
      json::parse(error_body(ErrorFormat::kOpenAi, GatewayError::kUpstreamTimeout, "slow"));
  EXPECT_TRUE(timeout["error"]["param"].is_null());
}

TEST(GatewayErrors, AnthropicShape) {
  const json body =
      json::parse(error_body(ErrorFormat::kAnthropic, GatewayError::kUnknownModel, "m"));
  EXPECT_EQ(body["type"], "error");
  EXPECT_EQ(body["error"]["type"], "not_found_error");
  EXPECT_EQ(body["error"]["message"], "m");
  EXPECT_EQ(json::parse(error_body(ErrorFormat::kAnthropic, GatewayError::kBodyTooLarge,
                                   "big"))["error"]["type"],
            "request_too_large");
  EXPECT_EQ(json::parse(error_body(ErrorFormat::kAnthropic, GatewayError::kNotGranted,
                                   "no"))["error"]["type"],
            "permission_error");
}

TEST(GatewayErrors, GeminiShape) {
  const json body =
      json::parse(error_body(ErrorFormat::kGemini, GatewayError::kNotGranted, "denied"));
  EXPECT_EQ(body["error"]["code"], 403);
  EXPECT_EQ(body["error"]["message"], "denied");
  EXPECT_EQ(body["error"]["status"], "PERMISSION_DENIED");
  EXPECT_EQ(json::parse(error_body(ErrorFormat::kGemini, GatewayError::kUpstreamTimeout,
                                   "t"))["error"]["status"],
            "DEADLINE_EXCEEDED");
}

TEST(GatewayErrors, InvalidUtf8InMessageStillGivesJson) {
  const std::string body =
      error_body(ErrorFormat::kOpenAi, GatewayError::kUnsupportedEncoding, "coding \xff\xfe");
  EXPECT_FALSE(json::parse(body, nullptr, false).is_discarded());
}

TEST(GatewayErrors, FormatFollowsTheApi) {
  EXPECT_EQ(error_format(ApiKind::kAnthropicMessages, false), ErrorFormat::kAnthropic);
  EXPECT_EQ(error_format(ApiKind::kGeminiGenerate, true), ErrorFormat::kGemini);
  EXPECT_EQ(error_format(ApiKind::kOpenAiChat, true), ErrorFormat::kOpenAi);
  EXPECT_EQ(error_format(ApiKind::kModels, true), ErrorFormat::kAnthropic);
  EXPECT_EQ(error_format(ApiKind::kModels, false), ErrorFormat::kOpenAi);
  EXPECT_EQ(error_format(ApiKind::kUnknown, false), ErrorFormat::kOpenAi);
}

}  // namespace
}  // namespace airlock::control::gateway
