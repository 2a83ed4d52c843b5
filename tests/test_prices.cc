#include "control/prices/prices.h"

#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <string_view>

// Expected costs are worked out by hand from the prices in shared/research/protocols.md §6:
// $X per million tokens is X·1e6 picodollars per token.
namespace airlock::control {

// Readable failure messages (found by GoogleTest through argument-dependent lookup).
void PrintTo(const Price& price, std::ostream* out) {
  const auto optional = [](const std::optional<Picodollars>& value) {
    return value ? std::to_string(*value) : std::string("none");
  };
  *out << "{input " << price.input << ", output " << price.output << ", cache_read "
       << optional(price.cache_read) << ", cache_write " << optional(price.cache_write)
       << ", cache_write_1h " << optional(price.cache_write_1h) << "}";
}

namespace {

using policy::ProviderKind;

// Input, output and cache-read prices; cache writes unpriced.
Price price_of(Picodollars input, Picodollars output,
               std::optional<Picodollars> cache_read = std::nullopt) {
  return Price{.input = input,
               .output = output,
               .cache_read = cache_read,
               .cache_write = std::nullopt,
               .cache_write_1h = std::nullopt};
}

constexpr Price kSonnet45{.input = 3'000'000,
                          .output = 15'000'000,
                          .cache_read = 300'000,
                          .cache_write = 3'750'000,
                          .cache_write_1h = 6'000'000};

// ---------------------------------------------------------------- parse_per_million

TEST(ParsePerMillion, AcceptsDollarTextExactly) {
  EXPECT_EQ(parse_per_million("3"), 3'000'000);
  EXPECT_EQ(parse_per_million("$3"), 3'000'000);
  EXPECT_EQ(parse_per_million("3.75"), 3'750'000);
  EXPECT_EQ(parse_per_million("0.025"), 25'000);
  EXPECT_EQ(parse_per_million("0.30"), 300'000);
  EXPECT_EQ(parse_per_million("0"), 0);
  EXPECT_EQ(parse_per_million("0.000001"), 1);
  EXPECT_EQ(parse_per_million("1234567.123456"), 1'234'567'123'456);
  // Zeros beyond the sixth decimal change nothing, so they are fine.
  EXPECT_EQ(parse_per_million("0.0250000"), 25'000);
  // The largest whole-dollar price int64 picodollars can hold.
  EXPECT_EQ(parse_per_million("9223372036854"), 9'223'372'036'854'000'000);
}

TEST(ParsePerMillion, RejectsEverythingElse) {
  for (std::string_view bad : {"", "$", ".", "3.", ".5", "-1", "+1", "1e-6", " 3", "3 ", "3.7.5",
                               "$$3", "abc", "3,5", "USD 3", "3$",
                               // Finer than a picodollar per token: would need rounding.
                               "0.0000001", "0.0000005",
                               // Overflows int64 picodollars.
                               "9223372036855", "99999999999999999999"}) {
    EXPECT_FALSE(parse_per_million(bad)) << "'" << bad << "'";
  }
}

// ---------------------------------------------------------------- cost_of

TEST(CostOf, AnthropicWithFiveMinuteAndOneHourCacheWrites) {
  Usage usage;
  usage.input = 1000;
  usage.cache_read = 20'000;
  usage.cache_write = 3000;  // 2000 written with the 5-minute TTL, 1000 with the 1-hour TTL
  usage.cache_write_1h = 1000;
  usage.output = 500;
  // 1000·3e6 + 20000·3e5 + 2000·3.75e6 + 1000·6e6 + 500·15e6
  //  = 3e9 + 6e9 + 7.5e9 + 6e9 + 7.5e9 = 30e9 picodollars = $0.03.
  EXPECT_EQ(cost_of(kSonnet45, usage), 30'000'000'000);
}

TEST(CostOf, OpenAiWithCachedPrompt) {
  const std::optional<Price> price = PriceTable::builtin().find(ProviderKind::kOpenAi, "gpt-5.5");
  ASSERT_TRUE(price);
  // prompt_tokens 1200 with 1024 cached, completion 80 (reasoning included).
  Usage usage;
  usage.input = 176;
  usage.cache_read = 1024;
  usage.output = 80;
  usage.reasoning = 64;
  // 176·5e6 + 1024·0.5e6 + 80·30e6 = 880e6 + 512e6 + 2400e6.
  EXPECT_EQ(cost_of(*price, usage), 3'792'000'000);
}

TEST(CostOf, GeminiFlash) {
  const std::optional<Price> price =
      PriceTable::builtin().find(ProviderKind::kGemini, "gemini-2.5-flash");
  ASSERT_TRUE(price);
  Usage usage;
  usage.input = 1000;
  usage.cache_read = 4000;
  usage.output = 300;  // candidates plus thoughts
  // 1000·0.3e6 + 4000·0.03e6 + 300·2.5e6 = 300e6 + 120e6 + 750e6.
  EXPECT_EQ(cost_of(*price, usage), 1'170'000'000);
}

TEST(CostOf, MissingCachePricesFallBackToInputPrice) {
  const Price price = price_of(2'000'000, 8'000'000);
  Usage usage;
  usage.input = 10;
  usage.cache_read = 100;
  usage.cache_write = 30;
  usage.cache_write_1h = 20;
  usage.output = 1;
  // Every prompt token at the input price: (10 + 100 + 10 + 20)·2e6 + 1·8e6.
  EXPECT_EQ(cost_of(price, usage), 288'000'000);
}

TEST(CostOf, AbsurdUsageSaturatesInsteadOfGoingNegative) {
  Usage usage;
  usage.output = UINT64_MAX / 2;
  EXPECT_EQ(cost_of(kSonnet45, usage), INT64_MAX);
}

// ---------------------------------------------------------------- the built-in table

TEST(BuiltinPrices, HasDocumentedPrices) {
  const PriceTable table = PriceTable::builtin();
  EXPECT_EQ(table.find(ProviderKind::kAnthropic, "claude-sonnet-4-5"), kSonnet45);
  EXPECT_EQ(table.find(ProviderKind::kOpenAi, "gpt-5.5"), price_of(5'000'000, 30'000'000, 500'000));
  EXPECT_EQ(table.find(ProviderKind::kGemini, "gemini-2.5-pro"),
            price_of(1'250'000, 10'000'000, 125'000));
  EXPECT_EQ(table.find(ProviderKind::kGemini, "gemini-2.5-flash"),
            price_of(300'000, 2'500'000, 30'000));
}

TEST(BuiltinPrices, PricesBelongToTheirProviderKind) {
  const PriceTable table = PriceTable::builtin();
  EXPECT_FALSE(table.find(ProviderKind::kGemini, "gpt-5.5"));
  EXPECT_FALSE(table.find(ProviderKind::kOpenAi, "claude-sonnet-4-5"));
  EXPECT_FALSE(table.find(ProviderKind::kAnthropic, "no-such-model"));
}

TEST(BuiltinPrices, DatedNamesFallBackToTheirAlias) {
  const PriceTable table = PriceTable::builtin();
  const std::optional<Price> opus = table.find(ProviderKind::kAnthropic, "claude-opus-4-7");
  ASSERT_TRUE(opus);
  EXPECT_EQ(table.find(ProviderKind::kAnthropic, "claude-opus-4-7-20260416"), opus);
  EXPECT_EQ(table.find(ProviderKind::kOpenAi, "gpt-5.4-2026-03-05"),
            table.find(ProviderKind::kOpenAi, "gpt-5.4"));
  // Not a date: no fallback.
  EXPECT_FALSE(table.find(ProviderKind::kOpenAi, "gpt-5.4-2026-3-05"));
  EXPECT_FALSE(table.find(ProviderKind::kOpenAi, "gpt-5.4-latest"));
}

TEST(BuiltinPrices, GeminiResourceNames) {
  const PriceTable table = PriceTable::builtin();
  EXPECT_EQ(table.find(ProviderKind::kGemini, "models/gemini-2.5-pro"),
            table.find(ProviderKind::kGemini, "gemini-2.5-pro"));
}

TEST(PriceTable, OpenAiCompatibleUsesOpenAiPricesUnlessSetItself) {
  PriceTable table = PriceTable::builtin();
  EXPECT_EQ(table.find(ProviderKind::kOpenAiCompatible, "gpt-5.5"),
            table.find(ProviderKind::kOpenAi, "gpt-5.5"));
  const Price local = price_of(0, 0);
  table.set(ProviderKind::kOpenAiCompatible, "gpt-5.5", local);
  EXPECT_EQ(table.find(ProviderKind::kOpenAiCompatible, "gpt-5.5"), local);
  EXPECT_EQ(table.find(ProviderKind::kOpenAi, "gpt-5.5")->input, 5'000'000);
}

// ---------------------------------------------------------------- LiteLLM price files

// Shaped like entries of LiteLLM's model_prices_and_context_window.json.
constexpr std::string_view kLiteLlm = R"({
  "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                  "litellm_provider": "openai", "mode": "chat"},
  "claude-sonnet-4-5": {"input_cost_per_token": 3.3e-06, "output_cost_per_token": 1.65e-05,
                        "cache_read_input_token_cost": 3.3e-07,
                        "cache_creation_input_token_cost": 4.125e-06,
                        "cache_creation_input_token_cost_above_1hr": 6.6e-06,
                        "litellm_provider": "anthropic", "mode": "chat"},
  "gpt-9": {"input_cost_per_token": 1.2e-07, "output_cost_per_token": 4.8e-07,
            "cache_read_input_token_cost": 3e-08, "litellm_provider": "openai"},
  "openai/gpt-9-mini": {"input_cost_per_token": 7.5e-07, "output_cost_per_token": 4.5e-06},
  "gemini/gemini-2.5-flash": {"input_cost_per_token": 3.5e-07, "output_cost_per_token": 3e-06,
                              "litellm_provider": "gemini"},
  "gemini-2.5-pro": {"input_cost_per_token": 9e-06, "output_cost_per_token": 9e-05,
                     "litellm_provider": "vertex_ai-language-models"},
  "azure/gpt-5.5": {"input_cost_per_token": 9e-06, "output_cost_per_token": 9e-05,
                    "litellm_provider": "azure"},
  "gpt-no-output-price": {"input_cost_per_token": 1e-06, "litellm_provider": "openai"},
  "claude-no-input-price": {"output_cost_per_token": 1e-06, "litellm_provider": "anthropic"},
  "dall-e-9": {"output_cost_per_image": 0.04, "litellm_provider": "openai"}
})";

TEST(ImportLiteLlm, OverridesAddsAndSkips) {
  PriceTable table = PriceTable::builtin();
  const size_t before = table.size();
  std::string error;
  // claude-sonnet-4-5, gpt-9, gpt-9-mini and gemini-2.5-flash.
  EXPECT_EQ(table.import_litellm(kLiteLlm, &error), 4u) << error;
  EXPECT_EQ(table.size(), before + 2);

  EXPECT_EQ(table.find(ProviderKind::kAnthropic, "claude-sonnet-4-5"),
            (Price{.input = 3'300'000,
                   .output = 16'500'000,
                   .cache_read = 330'000,
                   .cache_write = 4'125'000,
                   .cache_write_1h = 6'600'000}));
  // The dated name has its own built-in entry, which the file did not replace.
  EXPECT_EQ(table.find(ProviderKind::kAnthropic, "claude-sonnet-4-5-20250929"), kSonnet45);
  // These three are just below the whole picodollar as doubles times 1e12 (119999.99999999999):
  // truncating instead of rounding would be off by one.
  EXPECT_EQ(table.find(ProviderKind::kOpenAi, "gpt-9"), price_of(120'000, 480'000, 30'000));
  EXPECT_EQ(table.find(ProviderKind::kOpenAi, "gpt-9-mini"), price_of(750'000, 4'500'000));
  EXPECT_EQ(table.find(ProviderKind::kGemini, "gemini-2.5-flash"), price_of(350'000, 3'000'000));

  // The Vertex price is not the Gemini API's, and Azure is not OpenAI.
  EXPECT_EQ(table.find(ProviderKind::kGemini, "gemini-2.5-pro")->input, 1'250'000);
  EXPECT_EQ(table.find(ProviderKind::kOpenAi, "gpt-5.5")->input, 5'000'000);
  EXPECT_FALSE(table.find(ProviderKind::kOpenAi, "azure/gpt-5.5"));
  // A missing core price is unknown, never zero.
  EXPECT_FALSE(table.find(ProviderKind::kOpenAi, "gpt-no-output-price"));
  EXPECT_FALSE(table.find(ProviderKind::kAnthropic, "claude-no-input-price"));
  EXPECT_FALSE(table.find(ProviderKind::kOpenAi, "dall-e-9"));
  EXPECT_FALSE(table.find(ProviderKind::kOpenAi, "sample_spec"));
}

TEST(ImportLiteLlm, MalformedJsonIsAnErrorAndChangesNothing) {
  PriceTable table = PriceTable::builtin();
  const size_t before = table.size();
  for (std::string_view bad : {R"({"gpt-9": {"input_cost_per_token": 1e-06,)", "[]", ""}) {
    std::string error;
    EXPECT_FALSE(table.import_litellm(bad, &error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
  EXPECT_EQ(table.size(), before);
}

// ---------------------------------------------------------------- format_dollars

TEST(FormatDollars, SixDecimalsTrailingZerosTrimmed) {
  EXPECT_EQ(format_dollars(0), "$0");
  EXPECT_EQ(format_dollars(30'000'000'000), "$0.03");
  EXPECT_EQ(format_dollars(3'792'000'000), "$0.003792");
  EXPECT_EQ(format_dollars(5 * kPicodollarsPerDollar), "$5");
  EXPECT_EQ(format_dollars(12'500'000'000'000), "$12.5");
  // Rounded to the nearest microdollar.
  EXPECT_EQ(format_dollars(1'234'567'890'123), "$1.234568");
  EXPECT_EQ(format_dollars(499'999), "$0");
  EXPECT_EQ(format_dollars(500'000), "$0.000001");
  EXPECT_EQ(format_dollars(-1'500'000'000'000), "-$1.5");
}

}  // namespace
}  // namespace airlock::control
