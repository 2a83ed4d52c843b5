// The built-in price table, used until a LiteLLM price file or the policy says otherwise.
//
// Source: shared/research/protocols.md §6 (2026-11), which took these from BerriAI/litellm's
// model_prices_and_context_window.json (MIT; snapshot commit 00035b69) and, for the gpt-5,
// gpt-5.1, gpt-5.2, gpt-5-mini and Gemini rows, from a LiteLLM-synced mirror last synced
// 2026-07-24. gemini-2.5-flash is Google's published Gemini API price. Standard tier only: the
// long-context tiers (above 200k/272k prompt tokens), priority/flex/batch tiers and regional
// uplifts are not modelled, so such requests are under-counted; a price file or policy override
// corrects a model when that matters.
#include "control/prices/prices.h"

#include <string>
#include <vector>

namespace airlock::control {
namespace {

// Prices are written in picodollars per token, which is also microdollars per million
// tokens: 3'750'000 is $3.75 per million.
struct Row {
  ProviderKind kind;
  std::vector<std::string> models;
  Price price;
};

constexpr Price anthropic(Picodollars input, Picodollars output, Picodollars cache_read,
                          Picodollars cache_write_5m, Picodollars cache_write_1h) {
  return {input, output, cache_read, cache_write_5m, cache_write_1h};
}

// OpenAI and Gemini bill no cache writes for these models (a write costs the input price).
constexpr Price uncached_writes(Picodollars input, Picodollars output, Picodollars cache_read) {
  return {input, output, cache_read, std::nullopt, std::nullopt};
}

}  // namespace

PriceTable PriceTable::builtin() {
  using enum ProviderKind;
  const Row rows[] = {
      // Anthropic: cache writes with the default 5-minute TTL, then the 1-hour TTL.
      {kAnthropic,
       {"claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-sonnet-4-6",
        "claude-sonnet-4-20250514"},
       anthropic(3'000'000, 15'000'000, 300'000, 3'750'000, 6'000'000)},
      {kAnthropic,
       {"claude-haiku-4-5", "claude-haiku-4-5-20251001"},
       anthropic(1'000'000, 5'000'000, 100'000, 1'250'000, 2'000'000)},
      {kAnthropic,
       {"claude-opus-4-1", "claude-opus-4-1-20250805"},
       anthropic(15'000'000, 75'000'000, 1'500'000, 18'750'000, 30'000'000)},
      {kAnthropic,
       {"claude-opus-4-5", "claude-opus-4-5-20251101", "claude-opus-4-6", "claude-opus-4-7",
        "claude-opus-4-8"},
       anthropic(5'000'000, 25'000'000, 500'000, 6'250'000, 10'000'000)},
      // Listed as promotional pricing until 2026-08-31 by the mirror.
      {kAnthropic,
       {"claude-sonnet-5"},
       anthropic(2'000'000, 10'000'000, 200'000, 2'500'000, 4'000'000)},
      // OpenAI.
      {kOpenAi, {"gpt-5.5", "gpt-5.5-2026-04-23"}, uncached_writes(5'000'000, 30'000'000, 500'000)},
      {kOpenAi, {"gpt-5.4"}, uncached_writes(2'500'000, 15'000'000, 250'000)},
      {kOpenAi, {"gpt-5.6-sol"}, {5'000'000, 30'000'000, 500'000, 6'250'000, std::nullopt}},
      {kOpenAi, {"gpt-5.6-terra"}, {2'500'000, 15'000'000, 250'000, 3'125'000, std::nullopt}},
      {kOpenAi, {"gpt-5.6-luna"}, {1'000'000, 6'000'000, 100'000, 1'250'000, std::nullopt}},
      {kOpenAi,
       {"gpt-5", "gpt-5-codex", "gpt-5.1", "gpt-5.1-codex"},
       uncached_writes(1'250'000, 10'000'000, 125'000)},
      {kOpenAi, {"gpt-5-mini"}, uncached_writes(250'000, 2'000'000, 25'000)},
      {kOpenAi,
       {"gpt-5.2", "gpt-5.2-codex", "gpt-5.3-codex"},
       uncached_writes(1'750'000, 14'000'000, 175'000)},
      // Gemini API (AI Studio), prompts up to 200k tokens.
      {kGemini, {"gemini-2.5-pro"}, uncached_writes(1'250'000, 10'000'000, 125'000)},
      {kGemini, {"gemini-2.5-flash"}, uncached_writes(300'000, 2'500'000, 30'000)},
      {kGemini,
       {"gemini-3-pro-preview", "gemini-3.1-pro-preview"},
       uncached_writes(2'000'000, 12'000'000, 200'000)},
  };
  PriceTable table;
  for (const Row& row : rows) {
    for (const std::string& model : row.models) table.set(row.kind, model, row.price);
  }
  return table;
}

}  // namespace airlock::control
