// libFuzzer target for the gateway's parsers of what agents send and what providers answer: the
// bytes a sandboxed agent controls completely, and a provider's stream, which the gateway meters
// as it relays. No I/O: the same functions the gateway calls on every request.
//
// Byte 0 picks the input, byte 1 the API (bits 0-1: Chat, Responses, Anthropic, Gemini) and
// bits 2-7 a chunk size or flags; the rest is the data:
//   0  a request body, optionally compressed: the data up to the first '\n' (at most 24 bytes)
//      is the Content-Encoding header. Decoding, the JSON parse, the model, the tool results, the
//      session id, the budget's input bound and output cap, and (Chat) the usage injection.
//      parse_json must build the same tree as nlohmann's own parser and accept what JsonDocument
//      accepts; a body with the output cap written into it, and an injected body, must still be
//      the client's JSON object, now holding the cap or asking for usage.
//   1  a streamed response: SSE bytes fed to the parser in chunks of (bits 2-7) + 1 bytes, each
//      event to the usage meter. The events must not depend on where the stream was split.
//   2  a whole response body to the usage meter.
//   3  a request target for the router, bits 2-3 the method; and the upstream target built
//      from it, which must keep no `key=` when asked to drop it.
//   4  a provider's response body through the relay to the client, bits 2-5 its options (SSE,
//      hold events, hold the body, strip the injected usage chunk), the first data byte the
//      chunk size. The client must get every byte unchanged (only the injected usage chunks
//      removed when stripping) however the body was split, and the same usage.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

#include "control/budget/estimate.h"
#include "control/gateway/api.h"
#include "control/gateway/relay.h"
#include "control/gateway/request_body.h"
#include "control/metering/json_parse.h"
#include "control/metering/json_view.h"
#include "control/metering/session.h"
#include "control/metering/sse.h"
#include "control/metering/tool_results.h"
#include "control/metering/usage.h"

namespace {

using airlock::control::Api;
using airlock::control::SseEvent;
using airlock::control::SseParser;
using airlock::control::UsageMeter;
namespace gw = airlock::control::gateway;

// Small enough that the fuzzer reaches the limit; the gateway's own is 16 MiB.
constexpr std::size_t kMaxEventBytes = std::size_t{64} << 10;
constexpr std::size_t kMaxDecodedBytes = 1 << 20;
// nlohmann's parser has no nesting limit, so deeper documents are the one place the two may
// differ (parse_json refuses them, which the gateway answers with a 400).
constexpr int kMaxDepth = airlock::control::kMaxJsonDepth;
constexpr uint64_t kDefaultCap = 4096;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_gateway: %s\n", what);
  std::abort();
}

Api api_of(uint8_t selector) {
  switch (selector & 3) {
    case 0:
      return Api::kOpenAiChat;
    case 1:
      return Api::kOpenAiResponses;
    case 2:
      return Api::kAnthropicMessages;
    default:
      return Api::kGeminiGenerate;
  }
}

int nesting_depth(std::string_view text) {
  int depth = 0;
  int deepest = 0;
  for (char c : text) {
    if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
    if (c == ']' || c == '}') --depth;
  }
  return deepest;
}

void check_same_tree(std::string_view text) {
  const nlohmann::json ours = airlock::control::parse_json(text);
  const nlohmann::json theirs = nlohmann::json::parse(text, nullptr, false);
  if (ours.is_discarded() && nesting_depth(text) > kMaxDepth) return;
  if (ours.is_discarded() != theirs.is_discarded())
    fail("parse_json and nlohmann disagree on validity");
  if (ours.is_discarded()) return;
  // dump() tells integer from floating point, which == does not.
  if (ours.dump() != theirs.dump()) fail("parse_json built a different tree than nlohmann");
}

// The budget's output cap is written into the body's text: the body must stay a JSON object, and
// read again it must hold the cap that was written.
void check_output_cap(Api api, const std::string& body, airlock::control::JsonView request) {
  namespace budget = airlock::control::budget;
  airlock::control::budget::input_token_bound(body, request, 1000);
  std::string capped = body;
  const budget::OutputCap cap = budget::apply_output_cap(api, capped, kDefaultCap, request);
  if (!cap.valid) return;
  if (!cap.inserted) {
    if (capped != body) fail("the output cap changed a body that had one");
    return;
  }
  const airlock::control::JsonDocument after(capped);
  if (!after.root().is_object()) fail("the output cap broke the request body");
  std::string again = capped;
  const budget::OutputCap reread = budget::apply_output_cap(api, again, 1, after.root());
  if (!reread.valid || reread.inserted || reread.per_choice != kDefaultCap) {
    fail("the output cap written into the body does not read back");
  }
}

void fuzz_request(Api api, std::string_view data) {
  std::string_view encoding;
  if (const auto newline = data.find('\n'); newline != std::string_view::npos && newline <= 24) {
    encoding = data.substr(0, newline);
    data.remove_prefix(newline + 1);
  }
  gw::DecodedBody decoded = gw::decode_request_body(encoding, std::string(data), kMaxDecodedBytes);
  if (encoding.empty() &&
      (decoded.status != gw::DecodedBody::Status::kOk || decoded.body != data)) {
    fail("a body without Content-Encoding did not come through unchanged");
  }
  if (decoded.status != gw::DecodedBody::Status::kOk) return;
  if (decoded.body.size() > kMaxDecodedBytes) fail("decoded body over the cap");
  const std::string& body = decoded.body;
  check_same_tree(body);

  const nlohmann::json tree = airlock::control::parse_json(body);
  const airlock::control::JsonDocument document(body);
  if (document.valid() == tree.is_discarded()) fail("JsonDocument and parse_json disagree");
  const airlock::control::JsonView request = document.root();
  airlock::control::model_from_request(api, body, "/v1beta/models/m:generateContent");
  airlock::control::tool_results_from_json(api, request);
  const airlock::control::HeaderLookup no_headers = [](std::string_view) {
    return std::optional<std::string_view>{};
  };
  airlock::control::session_of_json(api, no_headers, request, "peer-key");
  check_output_cap(api, body, request);
  if (api != Api::kOpenAiChat || !airlock::control::wants_usage_injection(request)) return;
  const nlohmann::json injected =
      airlock::control::parse_json(airlock::control::inject_include_usage(body, request));
  if (!injected.is_object()) fail("usage injection broke the request body");
  const auto options = injected.find("stream_options");
  if (options == injected.end() || !options->is_object() ||
      options->value("include_usage", false) != true) {
    fail("usage injection did not ask for usage");
  }
}

std::vector<SseEvent> parse_stream(std::string_view data, std::size_t chunk, bool* ok) {
  SseParser parser(kMaxEventBytes);
  std::vector<SseEvent> events;
  *ok = true;
  for (std::size_t at = 0; at < data.size() && *ok; at += chunk) {
    *ok = parser.feed(data.substr(at, chunk),
                      [&](const SseEvent& event) { events.push_back(event); });
  }
  return events;
}

void fuzz_stream(Api api, std::size_t chunk, std::string_view data) {
  bool split_ok = false;
  bool whole_ok = false;
  const std::vector<SseEvent> events = parse_stream(data, chunk, &split_ok);
  const std::vector<SseEvent> whole = parse_stream(data, data.size() + 1, &whole_ok);
  if (split_ok != whole_ok) fail("whether the SSE stream breaks depends on the chunking");
  if (split_ok && events != whole) fail("SSE events depend on the chunking");
  UsageMeter meter(api);
  for (const SseEvent& event : events) {
    meter.feed_event(event);
    meter.last_event_only_usage();
  }
  meter.usage();
  meter.tool_calls();
}

void fuzz_body(Api api, std::string_view data) {
  UsageMeter meter(api);
  meter.feed_body(data);
  meter.usage();
  meter.tool_calls();
}

void fuzz_route(uint8_t flags, std::string_view target) {
  constexpr boost::beast::http::verb kMethods[] = {
      boost::beast::http::verb::post, boost::beast::http::verb::get, boost::beast::http::verb::put,
      boost::beast::http::verb::delete_};
  const gw::ApiRoute route = gw::classify(kMethods[(flags >> 2) & 3], target);
  gw::api_name(route.kind);
  gw::meter_api(route.kind);
  const bool drop_key = (flags & 0x10) != 0;
  const std::string upstream = gw::upstream_target(route, "/base/v1", drop_key);
  if (drop_key) {
    const auto query = upstream.find('?');
    if (query != std::string::npos &&
        gw::has_key_param(std::string_view(upstream).substr(query + 1))) {
      fail("the upstream target kept key= after dropping it");
    }
  }
}

struct Relayed {
  std::string to_client;
  airlock::control::Usage usage;
};

Relayed relay(const gw::RelayOptions& options, std::string_view body, std::size_t chunk) {
  gw::Relay relay(options);
  Relayed out;
  for (std::size_t at = 0; at < body.size(); at += chunk) {
    relay.feed(body.substr(at, chunk), out.to_client);
  }
  relay.finish(out.to_client);
  relay.meter_body();
  out.usage = relay.usage();
  return out;
}

void fuzz_relay(Api api, uint8_t flags, std::string_view data) {
  if (data.empty()) return;
  const std::size_t chunk = static_cast<uint8_t>(data[0]) + 1u;
  data.remove_prefix(1);
  gw::RelayOptions options;
  options.api = api;
  options.sse = (flags & 0x04) != 0;
  options.hold_events = (flags & 0x08) != 0;
  options.hold_body = (flags & 0x10) != 0;
  options.strip_injected_usage = options.sse && api == Api::kOpenAiChat && (flags & 0x20) != 0;
  options.max_body_copy = kMaxEventBytes;
  const Relayed split = relay(options, data, chunk);
  const Relayed whole = relay(options, data, data.size() + 1);
  if (split.to_client != whole.to_client) fail("what the client gets depends on the chunking");
  if (split.usage != whole.usage) fail("the metered usage depends on the chunking");
  if (!options.strip_injected_usage && split.to_client != data) {
    fail("the relay changed bytes it must pass through");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 2) return 0;
  const std::string_view data(reinterpret_cast<const char*>(bytes) + 2, size - 2);
  const Api api = api_of(bytes[1]);
  switch (bytes[0] % 5) {
    case 0:
      fuzz_request(api, data);
      break;
    case 1:
      fuzz_stream(api, (bytes[1] >> 2) + 1u, data);
      break;
    case 2:
      fuzz_body(api, data);
      break;
    case 3:
      fuzz_route(bytes[1], data);
      break;
    default:
      fuzz_relay(api, bytes[1], data);
      break;
  }
  return 0;
}
