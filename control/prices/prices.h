// Model prices and request cost. Built-in prices for current OpenAI, Anthropic and Gemini models,
// replaced per model by a LiteLLM-format price file and by the policy's overrides.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "control/metering/usage.h"
#include "control/store/store.h"
#include "policy/document.h"

namespace airlock::control {

using policy::ProviderKind;

// Picodollars per token. A missing cache price falls back to the input price.
struct Price {
  Picodollars input = 0;
  Picodollars output = 0;
  std::optional<Picodollars> cache_read;
  std::optional<Picodollars> cache_write;     // Anthropic 5-minute writes, OpenAI writes
  std::optional<Picodollars> cache_write_1h;  // Anthropic 1-hour writes
  friend bool operator==(const Price&, const Price&) = default;
};

class PriceTable {
 public:
  // The built-in table (see builtin_prices.cc for the list and its source).
  static PriceTable builtin();

  // Merges a LiteLLM `model_prices_and_context_window.json` document: every entry with
  // input_cost_per_token and output_cost_per_token replaces the same model's price. Keys such
  // as "gemini/gemini-2.5-pro" or "anthropic/claude-x" apply to that provider kind; bare keys
  // apply to the provider kind their "litellm_provider" names. Returns the number of entries
  // taken, or nullopt with *error on malformed JSON.
  std::optional<size_t> import_litellm(std::string_view json, std::string* error);

  void set(ProviderKind kind, std::string model, Price price);

  // Exact model first, then the model without a date suffix ("-20250929", "-2026-04-23"),
  // then without a "models/" prefix. OpenAI-compatible upstreams use the OpenAI table.
  std::optional<Price> find(ProviderKind kind, std::string_view model) const;

  size_t size() const { return prices_.size(); }

 private:
  std::map<std::pair<ProviderKind, std::string>, Price, std::less<>> prices_;
};

// cost = input·input + cache_read·cache_read + (cache_write − cache_write_1h)·cache_write
//      + cache_write_1h·cache_write_1h + output·output  (see Usage for the normalisation).
Picodollars cost_of(const Price& price, const Usage& usage);

// Parses "$3", "3", "3.75" or "0.025" dollars per million tokens into picodollars per token,
// exactly (no floating point). nullopt on anything else.
std::optional<Picodollars> parse_per_million(std::string_view text);

// "$0.001234" style text for tables: dollars with up to 6 decimals, trailing zeros trimmed.
std::string format_dollars(Picodollars amount);

}  // namespace airlock::control
