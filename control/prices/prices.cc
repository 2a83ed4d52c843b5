#include "control/prices/prices.h"

#include <cmath>
#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

namespace airlock::control {
namespace {

constexpr Picodollars kMax = std::numeric_limits<Picodollars>::max();

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool all_digits(std::string_view text) {
  for (char c : text) {
    if (!is_digit(c)) return false;
  }
  return true;
}

// "-20250929" or "-2026-04-23" at the end of a model name.
std::string_view without_date_suffix(std::string_view model) {
  if (model.size() > 9) {
    const std::string_view tail = model.substr(model.size() - 9);
    if (tail[0] == '-' && all_digits(tail.substr(1))) return model.substr(0, model.size() - 9);
  }
  if (model.size() > 11) {
    const std::string_view tail = model.substr(model.size() - 11);
    if (tail[0] == '-' && all_digits(tail.substr(1, 4)) && tail[5] == '-' &&
        all_digits(tail.substr(6, 2)) && tail[8] == '-' && all_digits(tail.substr(9, 2))) {
      return model.substr(0, model.size() - 11);
    }
  }
  return model;
}

// A usage count times a price. Saturates instead of wrapping so that an absurd token count
// (corrupt or hostile upstream usage) reads as a huge cost, never a negative one.
Picodollars times(uint64_t tokens, Picodollars price) {
  if (price <= 0 || tokens == 0) return 0;
  Picodollars product = 0;
  if (tokens > static_cast<uint64_t>(kMax) ||
      __builtin_mul_overflow(static_cast<Picodollars>(tokens), price, &product)) {
    return kMax;
  }
  return product;
}

Picodollars plus(Picodollars a, Picodollars b) {
  Picodollars sum = 0;
  return __builtin_add_overflow(a, b, &sum) ? kMax : sum;
}

// LiteLLM writes per-token prices as JSON numbers (3e-06, 1.25e-07). The nearest double to such
// a decimal is within a relative 2^-53 of it, and the product with 1e12 (itself exact) adds one
// more rounding of the same size; for prices up to $1 per token (at most 1e12 picodollars) the
// product is therefore within 1e12 * 2^-52 < 0.001 of the exact picodollar count, and rounding
// recovers the decimal exactly whenever it is a whole number of picodollars, as real prices are
// (anything finer is rounded to the nearest picodollar).
std::optional<Picodollars> per_token_price(const nlohmann::json& entry, const char* key) {
  const auto it = entry.find(key);
  if (it == entry.end() || !it->is_number()) return std::nullopt;
  const double dollars = it->get<double>();
  // Negative or above the bound of exactness: not a price we can trust, so "unknown".
  if (!(dollars >= 0.0) || dollars > 1.0) return std::nullopt;
  return static_cast<Picodollars>(std::llround(dollars * 1e12));
}

std::optional<ProviderKind> litellm_provider_kind(std::string_view provider) {
  // "vertex_ai-language-models" also lists Gemini models, but at Vertex prices, which differ
  // from the Gemini API's; only the Gemini API is a provider kind of ours.
  if (provider == "openai") return ProviderKind::kOpenAi;
  if (provider == "anthropic") return ProviderKind::kAnthropic;
  if (provider == "gemini") return ProviderKind::kGemini;
  return std::nullopt;
}

}  // namespace

std::optional<size_t> PriceTable::import_litellm(std::string_view json, std::string* error) {
  const nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    *error = "price file is not valid JSON";
    return std::nullopt;
  }
  if (!doc.is_object()) {
    *error = "price file is not a JSON object keyed by model name";
    return std::nullopt;
  }
  static constexpr std::pair<std::string_view, ProviderKind> kPrefixes[] = {
      {"openai/", ProviderKind::kOpenAi},
      {"anthropic/", ProviderKind::kAnthropic},
      {"gemini/", ProviderKind::kGemini},
  };
  size_t taken = 0;
  for (const auto& [key, entry] : doc.items()) {
    if (key == "sample_spec" || !entry.is_object()) continue;
    std::string_view model = key;
    std::optional<ProviderKind> kind;
    for (const auto& [prefix, prefix_kind] : kPrefixes) {
      if (model.starts_with(prefix)) {
        kind = prefix_kind;
        model.remove_prefix(prefix.size());
        break;
      }
    }
    if (!kind) {
      const auto provider = entry.find("litellm_provider");
      if (provider == entry.end() || !provider->is_string()) continue;
      kind = litellm_provider_kind(provider->get_ref<const std::string&>());
    }
    if (!kind || model.empty()) continue;
    // A missing core price means "unknown", not free: such an entry must not zero a price.
    const std::optional<Picodollars> input = per_token_price(entry, "input_cost_per_token");
    const std::optional<Picodollars> output = per_token_price(entry, "output_cost_per_token");
    if (!input || !output) continue;
    set(*kind, std::string(model),
        Price{
            .input = *input,
            .output = *output,
            .cache_read = per_token_price(entry, "cache_read_input_token_cost"),
            .cache_write = per_token_price(entry, "cache_creation_input_token_cost"),
            .cache_write_1h = per_token_price(entry, "cache_creation_input_token_cost_above_1hr")});
    ++taken;
  }
  return taken;
}

void PriceTable::set(ProviderKind kind, std::string model, Price price) {
  prices_[{kind, std::move(model)}] = price;
}

std::optional<Price> PriceTable::find(ProviderKind kind, std::string_view model) const {
  // Names to try, most specific first. Gemini clients may send the resource name
  // "models/gemini-2.5-pro"; dated snapshots are priced like their alias unless listed.
  std::string_view candidates[4] = {model, without_date_suffix(model)};
  size_t count = 2;
  if (model.starts_with("models/")) {
    const std::string_view bare = model.substr(7);
    candidates[count++] = bare;
    candidates[count++] = without_date_suffix(bare);
  }
  // An OpenAI-compatible upstream's own entries (policy overrides) win over OpenAI's prices.
  ProviderKind kinds[2] = {kind, ProviderKind::kOpenAi};
  const size_t kind_count = kind == ProviderKind::kOpenAiCompatible ? 2 : 1;
  for (size_t k = 0; k < kind_count; ++k) {
    for (size_t i = 0; i < count; ++i) {
      const auto it = prices_.find(std::pair{kinds[k], std::string(candidates[i])});
      if (it != prices_.end()) return it->second;
    }
  }
  return std::nullopt;
}

Picodollars cost_of(const Price& price, const Usage& usage) {
  const Picodollars cache_read = price.cache_read.value_or(price.input);
  const Picodollars cache_write = price.cache_write.value_or(price.input);
  const Picodollars cache_write_1h = price.cache_write_1h.value_or(price.input);
  // cache_write_1h is a part of cache_write; a provider reporting more 1h writes than writes
  // in total is billed for the 1h ones only rather than for a negative number of 5m ones.
  const uint64_t plain_writes =
      usage.cache_write > usage.cache_write_1h ? usage.cache_write - usage.cache_write_1h : 0;
  Picodollars cost = times(usage.input, price.input);
  cost = plus(cost, times(usage.cache_read, cache_read));
  cost = plus(cost, times(plain_writes, cache_write));
  cost = plus(cost, times(usage.cache_write_1h, cache_write_1h));
  cost = plus(cost, times(usage.output, price.output));
  return cost;
}

// Dollars per million tokens are picodollars per token times 1e-6, so six decimals are exact.
// More decimals are accepted only when the extra ones are zeros ("0.0250000"): anything finer
// than a picodollar per token would need rounding, and a price file should not be silently
// altered.
std::optional<Picodollars> parse_per_million(std::string_view text) {
  if (text.starts_with('$')) text.remove_prefix(1);
  const size_t point = text.find('.');
  const std::string_view whole = text.substr(0, point);
  const std::string_view fraction =
      point == std::string_view::npos ? std::string_view() : text.substr(point + 1);
  if (whole.empty() || !all_digits(whole) || !all_digits(fraction)) return std::nullopt;
  if (point != std::string_view::npos && fraction.empty()) return std::nullopt;
  if (fraction.size() > 6 && fraction.find_first_not_of('0', 6) != std::string_view::npos) {
    return std::nullopt;
  }
  Picodollars result = 0;
  for (char c : whole) {
    if (__builtin_mul_overflow(result, 10, &result) ||
        __builtin_add_overflow(result, c - '0', &result)) {
      return std::nullopt;
    }
  }
  for (size_t i = 0; i < 6; ++i) {
    const int digit = i < fraction.size() ? fraction[i] - '0' : 0;
    if (__builtin_mul_overflow(result, 10, &result) ||
        __builtin_add_overflow(result, digit, &result)) {
      return std::nullopt;
    }
  }
  return result;
}

std::string format_dollars(Picodollars amount) {
  // Magnitude in unsigned arithmetic so that the most negative amount has one too.
  const bool negative = amount < 0;
  const uint64_t magnitude =
      negative ? ~static_cast<uint64_t>(amount) + 1 : static_cast<uint64_t>(amount);
  constexpr uint64_t kPicoPerMicro = 1'000'000;
  const uint64_t micros = magnitude / kPicoPerMicro + (magnitude % kPicoPerMicro >= 500'000);
  const uint64_t dollars = micros / 1'000'000;
  std::string fraction = std::to_string(micros % 1'000'000);
  fraction.insert(0, 6 - fraction.size(), '0');
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  std::string out = negative && micros != 0 ? "-$" : "$";
  out += std::to_string(dollars);
  if (!fraction.empty()) out += "." + fraction;
  return out;
}

}  // namespace airlock::control
