#include "control/gateway/models.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace airlock::control::gateway {
namespace {

using nlohmann::json;

policy::Document document() {
  policy::Document d;
  policy::ProviderSpec anthropic;
  anthropic.name = "anthropic";
  anthropic.kind = policy::ProviderKind::kAnthropic;
  anthropic.models = {"claude-sonnet-4-5", "claude-opus-4-7", "claude-*"};
  policy::ProviderSpec openai;
  openai.name = "openai";
  openai.kind = policy::ProviderKind::kOpenAi;
  // claude-sonnet-4-5 is served by the first provider; gpt-5.5 appears twice.
  openai.models = {"gpt-5.5", "gpt-5-mini", "claude-sonnet-4-5", "gpt-5.5", "gpt-?"};
  d.providers = {anthropic, openai};
  d.grants = {
      {{"user:alice"}, {"anthropic/claude-sonnet-*", "openai/*"}, {}},
      {{"group:ops"}, {"*"}, {}},
  };
  return d;
}

policy::Identity user(std::string name, std::vector<std::string> groups = {}) {
  policy::Identity id;
  id.user = std::move(name);
  id.groups = std::move(groups);
  return id;
}

std::vector<std::string> ids(const std::vector<GrantedModel>& models) {
  std::vector<std::string> out;
  for (const auto& m : models) out.push_back(m.provider + "/" + m.id);
  return out;
}

TEST(GatewayModels, OnlyGrantedExactNames) {
  const policy::Document d = document();
  EXPECT_EQ(ids(granted_models(d, user("alice"))),
            (std::vector<std::string>{"anthropic/claude-sonnet-4-5", "openai/gpt-5.5",
                                      "openai/gpt-5-mini"}));
  EXPECT_EQ(ids(granted_models(d, user("bob", {"ops"}))),
            (std::vector<std::string>{"anthropic/claude-sonnet-4-5", "anthropic/claude-opus-4-7",
                                      "openai/gpt-5.5", "openai/gpt-5-mini"}));
  EXPECT_TRUE(granted_models(d, user("mallory")).empty());
}

TEST(GatewayModels, OpenAiShape) {
  const std::vector<GrantedModel> models = {
      {"gpt-5.5", "openai", policy::ProviderKind::kOpenAi},
      {"claude-opus-4-7", "anth", policy::ProviderKind::kAnthropic}};
  const json body = json::parse(openai_models_body(models, 1700000000));
  EXPECT_EQ(body["object"], "list");
  ASSERT_EQ(body["data"].size(), 2u);
  EXPECT_EQ(body["data"][0], (json{{"id", "gpt-5.5"},
                                   {"object", "model"},
                                   {"created", 1700000000},
                                   {"owned_by", "openai"}}));
  EXPECT_EQ(body["data"][1]["id"], "claude-opus-4-7");
}

TEST(GatewayModels, AnthropicShape) {
  const std::vector<GrantedModel> models = {
      {"claude-sonnet-4-5", "a", policy::ProviderKind::kAnthropic},
      {"claude-opus-4-7", "a", policy::ProviderKind::kAnthropic}};
  const json body = json::parse(anthropic_models_body(models, 1700000000));
  ASSERT_EQ(body["data"].size(), 2u);
  EXPECT_EQ(body["data"][0]["type"], "model");
  EXPECT_EQ(body["data"][0]["id"], "claude-sonnet-4-5");
  EXPECT_EQ(body["data"][0]["display_name"], "claude-sonnet-4-5");
  EXPECT_EQ(body["data"][0]["created_at"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(body["has_more"], false);
  EXPECT_EQ(body["first_id"], "claude-sonnet-4-5");
  EXPECT_EQ(body["last_id"], "claude-opus-4-7");

  const json empty = json::parse(anthropic_models_body({}, 0));
  EXPECT_TRUE(empty["data"].empty());
  EXPECT_TRUE(empty["first_id"].is_null());
}

TEST(GatewayModels, ShapeFromHeaders) {
  boost::beast::http::fields h;
  EXPECT_FALSE(wants_anthropic_list(h));
  h.insert("Authorization", "Bearer x");
  EXPECT_FALSE(wants_anthropic_list(h));
  h.insert("Anthropic-Version", "2023-06-01");
  EXPECT_TRUE(wants_anthropic_list(h));
  boost::beast::http::fields k;
  k.insert("x-api-key", "whatever");
  EXPECT_TRUE(wants_anthropic_list(k));
}

}  // namespace
}  // namespace airlock::control::gateway
