// The worst-case cost of an LLM request before it runs, for the budget reservation: an upper
// bound on its input tokens, its output cap (inserted into the body when the client set none),
// and their price.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "control/budget/ledger.h"
#include "control/metering/usage.h"
#include "control/prices/prices.h"

namespace airlock::control {
class JsonView;
}

namespace airlock::control::budget {

// Inputs the provider fetches and bills itself, found in a request body: image and file URLs
// (not data: URLs, whose bytes are in the body), file ids, Anthropic `url`/`file` sources and
// Gemini fileData. `request` is `request_body` parsed (absent when it is not JSON: 0).
uint64_t count_input_references(std::string_view request_body, JsonView request);

// An upper bound on the request's input tokens: its size in bytes (see estimate.cc for why), plus
// `tokens_per_reference` for each input passed by reference, whose size the body does not show.
uint64_t input_token_bound(std::string_view request_body, JsonView request,
                           uint64_t tokens_per_reference);

struct OutputCap {
  // Output tokens the request can produce at most: per_choice × choices.
  uint64_t tokens = 0;
  uint64_t per_choice = 0;
  uint64_t choices = 1;   // OpenAI Chat `n`, Gemini `candidateCount`
  bool inserted = false;  // the default cap was written into the body
  // False when the body is not a JSON object or its cap / choice count is not a non-negative
  // integer: the cap cannot be known, and the gateway should refuse the request (400) rather
  // than forward it uncapped.
  bool valid = true;
};

// Reads the client's output cap (OpenAI Chat: max_completion_tokens or max_tokens, the larger if
// both; Responses: max_output_tokens; Anthropic: max_tokens; Gemini: generationConfig.
// maxOutputTokens). When it is absent or null, writes `default_cap` into the body (OpenAI Chat
// as max_completion_tokens), keeping every other byte: the member goes right after the object's
// '{', or into a new or existing generationConfig for Gemini.
OutputCap apply_output_cap(Api api, std::string& body, uint64_t default_cap);
// The same for a body the caller has parsed already (`request` is `body` parsed, before the cap).
OutputCap apply_output_cap(Api api, std::string& body, uint64_t default_cap, JsonView request);

// Input priced at the dearest of the input and cache prices (any part of a prompt can turn out to
// be a cache write), output at the output price; tokens = input_bound + output_cap. Saturates
// instead of overflowing.
Amount worst_case(const Price& price, uint64_t input_bound, uint64_t output_cap);

}  // namespace airlock::control::budget
