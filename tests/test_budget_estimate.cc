#include "control/budget/estimate.h"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "control/metering/json_view.h"

namespace airlock::control::budget {
namespace {

using nlohmann::json;

uint64_t references_in(std::string_view body) {
  const JsonDocument parsed(body);
  return count_input_references(body, parsed.root());
}
uint64_t bound_of(std::string_view body, uint64_t tokens_per_reference) {
  const JsonDocument parsed(body);
  return input_token_bound(body, parsed.root(), tokens_per_reference);
}

TEST(BudgetEstimate, InputBoundIsTheByteCount) {
  EXPECT_EQ(bound_of(R"({"messages":[{"role":"user","content":"hi"}]})", 1000), 45u);
  EXPECT_EQ(bound_of("", 1000), 0u);
}

// Request shapes from each provider's documentation (shared/research/protocols.md).
TEST(BudgetEstimate, EveryInputPassedByReferenceIsCountedOnce) {
  const std::string chat = R"({"model":"gpt-5","messages":[{"role":"user","content":[
    {"type":"text","text":"compare"},
    {"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"high"}},
    {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
    {"type":"file","file":{"file_id":"file-abc"}},
    {"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0="}}]}]})";
  EXPECT_EQ(references_in(chat), 2u);

  const std::string responses = R"({"model":"gpt-5","input":[{"role":"user","content":[
    {"type":"input_image","image_url":"https://example.com/b.jpg"},
    {"type":"input_image","file_id":"file-img"},
    {"type":"input_file","file_url":"https://example.com/report.pdf"},
    {"type":"input_text","text":"image_url file_id"}]}]})";
  EXPECT_EQ(references_in(responses), 3u);

  const std::string anthropic = R"({"model":"claude-sonnet-4-5","max_tokens":100,"messages":[
    {"role":"user","content":[
      {"type":"image","source":{"type":"url","url":"https://example.com/c.png"}},
      {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
      {"type":"document","source":{"type":"file","file_id":"file_011"}}]}]})";
  EXPECT_EQ(references_in(anthropic), 2u);

  const std::string gemini = R"({"contents":[{"parts":[{"text":"describe"},
    {"fileData":{"mimeType":"video/mp4","fileUri":"https://generativelanguage.googleapis.com/v1beta/files/x"}},
    {"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}]}]})";
  EXPECT_EQ(references_in(gemini), 1u);

  EXPECT_EQ(references_in(R"({"messages":[{"role":"user","content":"hi"}]})"), 0u);
  EXPECT_EQ(references_in(R"({"image_url": "https://x", )"), 0u);  // not JSON
  // Odd shapes an agent can send count nothing and throw nothing.
  EXPECT_EQ(references_in(R"({"source":{"type":5},"image_url":7,"fileData":[],"file_url":null})"),
            0u);
}

TEST(BudgetEstimate, EachReferenceAddsItsAllowanceToTheInputBound) {
  const std::string body =
      R"({"input":[{"type":"input_file","file_id":"f1"},{"type":"input_file","file_id":"f2"}]})";
  EXPECT_EQ(bound_of(body, 32768), body.size() + 2 * 32768);
  EXPECT_EQ(bound_of(body, 0), body.size());
  EXPECT_EQ(bound_of(body, std::numeric_limits<uint64_t>::max()),
            std::numeric_limits<uint64_t>::max());
}

TEST(BudgetEstimate, ClientCapIsReadAndBodyUntouched) {
  std::string body = R"({"model":"gpt-5", "max_completion_tokens": 300, "messages":[]})";
  const std::string original = body;
  const OutputCap cap = apply_output_cap(Api::kOpenAiChat, body, 4096);
  EXPECT_EQ(cap.tokens, 300u);
  EXPECT_FALSE(cap.inserted);
  EXPECT_TRUE(cap.valid);
  EXPECT_EQ(body, original);
}

TEST(BudgetEstimate, OpenAiChatTakesTheLargerOfBothCapsAndMultipliesByN) {
  std::string body = R"({"max_tokens":500,"max_completion_tokens":200,"n":3})";
  const OutputCap cap = apply_output_cap(Api::kOpenAiChat, body, 4096);
  EXPECT_EQ(cap.per_choice, 500u);
  EXPECT_EQ(cap.choices, 3u);
  EXPECT_EQ(cap.tokens, 1500u);
}

TEST(BudgetEstimate, DefaultCapIsInsertedKeepingEveryByte) {
  const std::string tail = R"(
  "model" : "gpt-5",   "messages": [{"role":"user","content":"caf\u00e9 {\"max_tokens\":1}"}]
})";
  std::string body = "{" + tail;
  const OutputCap cap = apply_output_cap(Api::kOpenAiChat, body, 4096);
  EXPECT_TRUE(cap.inserted);
  EXPECT_EQ(cap.tokens, 4096u);
  EXPECT_EQ(body, R"({"max_completion_tokens":4096,)" + tail);
  EXPECT_EQ(json::parse(body)["max_completion_tokens"], 4096);
}

TEST(BudgetEstimate, InsertedPerApi) {
  std::string responses = R"({"model":"gpt-5","input":"hi"})";
  EXPECT_EQ(apply_output_cap(Api::kOpenAiResponses, responses, 100).tokens, 100u);
  EXPECT_EQ(responses, R"({"max_output_tokens":100,"model":"gpt-5","input":"hi"})");

  std::string anthropic = R"({"model":"claude-sonnet-4-5","messages":[]})";
  apply_output_cap(Api::kAnthropicMessages, anthropic, 100);
  EXPECT_EQ(anthropic, R"({"max_tokens":100,"model":"claude-sonnet-4-5","messages":[]})");

  std::string empty = " { } ";
  apply_output_cap(Api::kAnthropicMessages, empty, 7);
  EXPECT_EQ(empty, R"( {"max_tokens":7 } )");
}

TEST(BudgetEstimate, NullCapIsReplaced) {
  std::string body = R"({"max_tokens": null, "model":"claude"})";
  const OutputCap cap = apply_output_cap(Api::kAnthropicMessages, body, 64);
  EXPECT_TRUE(cap.inserted);
  EXPECT_EQ(body, R"({"max_tokens": 64, "model":"claude"})");
}

TEST(BudgetEstimate, GeminiCapGoesIntoGenerationConfig) {
  std::string none = R"({"contents":[{"parts":[{"text":"hi"}]}]})";
  EXPECT_EQ(apply_output_cap(Api::kGeminiGenerate, none, 256).tokens, 256u);
  EXPECT_EQ(
      none,
      R"({"generationConfig":{"maxOutputTokens":256},"contents":[{"parts":[{"text":"hi"}]}]})");

  std::string existing =
      R"({"contents":[],"generationConfig": {"temperature": 0.2, "candidateCount": 2}})";
  const OutputCap cap = apply_output_cap(Api::kGeminiGenerate, existing, 256);
  EXPECT_EQ(
      existing,
      R"({"contents":[],"generationConfig": {"maxOutputTokens":256,"temperature": 0.2, "candidateCount": 2}})");
  EXPECT_EQ(cap.choices, 2u);
  EXPECT_EQ(cap.tokens, 512u);

  std::string set = R"({"generationConfig":{"maxOutputTokens":"1000"}})";
  const std::string original = set;
  EXPECT_EQ(apply_output_cap(Api::kGeminiGenerate, set, 256).tokens, 1000u);
  EXPECT_EQ(set, original);

  std::string snake = R"({"generation_config":{"temperature":1}})";
  apply_output_cap(Api::kGeminiGenerate, snake, 8);
  EXPECT_EQ(snake, R"({"generation_config":{"max_output_tokens":8,"temperature":1}})");

  std::string null_config = R"({"generationConfig":null})";
  apply_output_cap(Api::kGeminiGenerate, null_config, 8);
  EXPECT_EQ(null_config, R"({"generationConfig":{"maxOutputTokens":8}})");
}

TEST(BudgetEstimate, InvalidCapsAreReported) {
  std::string negative = R"({"max_tokens":-1})";
  EXPECT_FALSE(apply_output_cap(Api::kAnthropicMessages, negative, 10).valid);
  EXPECT_EQ(negative, R"({"max_tokens":-1})");
  std::string text = R"({"max_output_tokens":"lots"})";
  EXPECT_FALSE(apply_output_cap(Api::kOpenAiResponses, text, 10).valid);
  std::string not_json = "max_tokens=5";
  EXPECT_FALSE(apply_output_cap(Api::kAnthropicMessages, not_json, 10).valid);
  EXPECT_EQ(not_json, "max_tokens=5");
  std::string array = "[1]";
  EXPECT_FALSE(apply_output_cap(Api::kOpenAiChat, array, 10).valid);
}

TEST(BudgetEstimate, WorstCasePricesInputAtTheDearestRate) {
  Price price;
  price.input = 3'000'000;    // $3 per million tokens
  price.output = 15'000'000;  // $15 per million
  price.cache_read = 300'000;
  price.cache_write = 3'750'000;
  price.cache_write_1h = 6'000'000;
  const Amount a = worst_case(price, 1000, 200);
  EXPECT_EQ(a.usd, Picodollars{1000} * 6'000'000 + Picodollars{200} * 15'000'000);
  EXPECT_EQ(a.tokens, 1200u);

  Price plain;
  plain.input = 2'000'000;
  plain.output = 8'000'000;
  EXPECT_EQ(worst_case(plain, 10, 5).usd, 10 * 2'000'000 + 5 * 8'000'000);
  // Missing cache prices fall back to the input price, as in cost_of.
  Price cheap_write = plain;
  cheap_write.cache_write = 1'000'000;
  EXPECT_EQ(worst_case(cheap_write, 10, 0).usd, 10 * 2'000'000);

  // The bound dominates the real cost of any split of the same tokens.
  Usage usage;
  usage.input = 100;
  usage.cache_write = 800;
  usage.cache_write_1h = 500;
  usage.cache_read = 100;
  usage.output = 200;
  EXPECT_GE(worst_case(price, 1000, 200).usd, cost_of(price, usage));
}

TEST(BudgetEstimate, WorstCaseSaturates) {
  Price price;
  price.input = 1'000'000'000;
  price.output = 1'000'000'000;
  const uint64_t huge = std::numeric_limits<uint64_t>::max() / 2;
  const Amount a = worst_case(price, huge, huge);
  EXPECT_EQ(a.usd, std::numeric_limits<Picodollars>::max());
  EXPECT_EQ(worst_case(price, huge, huge + 10).tokens, std::numeric_limits<uint64_t>::max());
}

}  // namespace
}  // namespace airlock::control::budget
