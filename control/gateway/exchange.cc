#include "control/gateway/exchange.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <set>
#include <span>
#include <utility>

#include <boost/beast/core/string.hpp>
#include <nlohmann/json.hpp>

#include "control/budget/estimate.h"
#include "control/events/pre_request_hook.h"
#include "control/gateway/api.h"
#include "control/gateway/errors.h"
#include "control/gateway/guarding.h"
#include "control/gateway/headers.h"
#include "control/gateway/models.h"
#include "control/gateway/record_events.h"
#include "control/gateway/relay.h"
#include "control/gateway/request_body.h"
#include "control/gateway/socket_session.h"
#include "control/metering/json_parse.h"
#include "control/metering/session.h"
#include "control/metering/tool_results.h"
#include "control/metering/usage.h"

namespace airlock::control::gateway {

namespace bhttp = boost::beast::http;
using nlohmann::json;

std::string_view sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

bool istarts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         boost::beast::iequals(boost::beast::string_view(text.data(), prefix.size()),
                               boost::beast::string_view(prefix.data(), prefix.size()));
}

int64_t micros_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

asio::ip::address normalized(const asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return address;
}

namespace {

// Redaction scans a little past the body cap, so a key straddling the cut is still found and a
// prefix of it cannot survive the truncation.
constexpr std::size_t kRedactSlack = 4096;
// Provider error bodies are a few hundred bytes; past this the body is no error message.
constexpr std::size_t kMaxHeldErrorBody = 1u << 20;
// Without body logging a tool's output is still worth its first lines ("what did the agent
// see"), not its whole file dumps.
constexpr std::size_t kMaxUnloggedToolResult = 2048;
// One parse of the body serves routing, the session and the tool results.
BodyFields inspect_body(std::string_view body) {
  BodyFields out;
  out.parsed = std::make_unique<JsonDocument>(body);
  out.valid_json = out.parsed->valid();
  const JsonView root = out.root();
  out.model = root.member("model").text();
  out.stream = root.member("stream").boolean().value_or(false);
  return out;
}

// GET /airlock/budgets: a sandbox asks what it has left (the only Airlock path on the gateway).
bool is_own_budget_path(std::string_view target) {
  return target.substr(0, target.find('?')) == "/airlock/budgets";
}
std::string dollars(Picodollars amount) {
  // Cents are what people budget in; six decimals keep a single cheap request visible.
  char text[48];
  std::snprintf(text, sizeof text, "$%.6f", static_cast<double>(amount) / 1e12);
  return text;
}

}  // namespace

asio::awaitable<void> Exchange::run() {
  std::string body;
  bool strip_usage = false;
  const policy::ProviderSpec* provider = co_await prepare(body, strip_usage);
  if (provider == nullptr) co_return;
  co_await forward(*provider, std::move(body), strip_usage);
}

asio::awaitable<const policy::ProviderSpec*> Exchange::prepare(std::string& body,
                                                               bool& strip_usage) {
  record_.id = new_request_id();
  record_.time_ms = now_unix_ms();
  route_ = classify(request_.method(), sv(request_.target()));
  record_.api = std::string(api_name(route_.kind));
  format_ = error_format(route_.kind, wants_anthropic_list(request_));

  const asio::ip::address remote = normalized(client_.remote_address);
  const std::shared_ptr<const policy::PeerEntry> peer = core_.lookup(remote);
  if (!peer) {
    co_await refuse(GatewayError::kUnknownPeer,
                    "unknown peer: " + remote.to_string() +
                        " is not the address of a WireGuard peer of this gateway");
    co_return nullptr;
  }
  const policy::Identity& identity = peer->identity;
  record_.user = identity.user;
  record_.device = identity.device;
  record_.tags = identity.tags;
  record_.groups = identity.groups;
  record_.peer_key = peer->key_base64;

  if (body_status_ == http::BodyStatus::kTooLarge) {
    co_await refuse(GatewayError::kBodyTooLarge,
                    "request body exceeds the gateway's limit of " +
                        std::to_string(core_.options.server.max_body_bytes) + " bytes");
    co_return nullptr;
  }
  if (request_.method() == bhttp::verb::get && is_own_budget_path(sv(request_.target()))) {
    co_await list_own_budgets(identity);
    co_return nullptr;
  }
  const std::string_view target = sv(request_.target());
  const std::string path(target.substr(0, target.find('?')));
  // Codex opens a WebSocket on /v1/responses first. On 426 it switches to HTTP within the same
  // turn; on any other status it first retries with backoff, which stalls the agent for seconds.
  if (boost::beast::iequals(request_[bhttp::field::upgrade], "websocket")) {
    std::optional<std::string> why_not =
        "no WebSocket API at " + path + ": the gateway relays HTTP and SSE streams there";
    const bool responses = request_.method() == bhttp::verb::get &&
                           classify(bhttp::verb::post, path).kind == ApiKind::kOpenAiResponses;
    if (responses) why_not = socket_refusal(document(), identity);
    if (!why_not) {
      if (std::optional<http::TakenConnection> taken = writer_.take_connection()) {
        guard_.discard();
        co_await run_socket_session(core_, request_, client_, *taken);
      }
      co_return nullptr;
    }
    close_after_response_ = true;
    co_await refuse(GatewayError::kNoWebSocket,
                    *why_not +
                        " (for Codex, supports_websockets = false on its model provider "
                        "skips the attempt)");
    co_return nullptr;
  }
  if (route_.kind == ApiKind::kUnknown) {
    co_await refuse(GatewayError::kUnknownRoute,
                    "no API at " + std::string(sv(request_.method_string())) + " " + path);
    co_return nullptr;
  }
  if (route_.kind == ApiKind::kModels) {
    co_await list_models(identity);
    co_return nullptr;
  }

  DecodedBody decoded =
      decode_request_body(sv(request_[bhttp::field::content_encoding]), std::move(request_.body()),
                          core_.options.server.max_body_bytes);
  switch (decoded.status) {
    case DecodedBody::Status::kOk:
      break;
    case DecodedBody::Status::kUnsupported:
      co_await refuse(GatewayError::kUnsupportedEncoding, decoded.error);
      co_return nullptr;
    case DecodedBody::Status::kCorrupt:
      co_await refuse(GatewayError::kBadEncoding, decoded.error);
      co_return nullptr;
    case DecodedBody::Status::kTooLarge:
      co_await refuse(GatewayError::kBodyTooLarge, decoded.error);
      co_return nullptr;
  }
  body = std::move(decoded.body);
  // Before anything keeps or forwards the prompt, so a redacted secret reaches neither the log
  // nor the provider.
  if (!co_await guard_prompt(identity, body)) co_return nullptr;
  record_.request_body = loggable(body);

  BodyFields fields = inspect_body(body);
  if (!fields.valid_json) {
    // Built before the co_await: GCC 12 frees a ?: temporary inside one twice.
    std::string why = "request body is not valid JSON";
    if (nests_too_deep(body)) {
      why = "request body nests arrays and objects deeper than " + std::to_string(kMaxJsonDepth) +
            " levels";
    }
    co_await refuse(GatewayError::kBadJson, why);
    co_return nullptr;
  }
  const bool gemini = is_gemini(route_.kind);
  const std::string model = gemini ? route_.model : fields.model;
  if (model.empty()) {
    co_await refuse(GatewayError::kMissingModel, "request body has no \"model\" string");
    co_return nullptr;
  }
  record_.model = model;
  record_.streamed = fields.stream || route_.kind == ApiKind::kGeminiStream;

  const policy::ProviderSpec* provider = document().provider_for_model(model);
  if (provider == nullptr) {
    co_await refuse(GatewayError::kUnknownModel,
                    "model \"" + model + "\" is not served by any provider");
    co_return nullptr;
  }
  record_.provider = provider->name;
  if (!provider_speaks(provider->kind, route_.kind)) {
    co_await refuse(GatewayError::kWrongApi,
                    "model \"" + model + "\" is served by provider \"" + provider->name + "\" (" +
                        std::string(policy::provider_kind_name(provider->kind)) +
                        "), which does not serve " + std::string(api_name(route_.kind)));
    co_return nullptr;
  }
  if (!document().model_granted(identity, provider->name, model)) {
    co_await refuse(GatewayError::kNotGranted, "model \"" + provider->name + "/" + model +
                                                   "\" is not granted to this peer (user \"" +
                                                   identity.user + "\")");
    co_return nullptr;
  }

  const Api api = *meter_api(route_.kind);
  const auto header = [this](std::string_view name) -> std::optional<std::string_view> {
    const auto it = request_.find(boost::beast::string_view(name.data(), name.size()));
    if (it == request_.end()) return std::nullopt;
    return sv(it->value());
  };
  record_.session_id = session_of_json(api, header, fields.root(), record_.peer_key);
  record_.tool_results = tool_results_from_json(api, fields.root());
  // Tool output is prompt text: kept whole only as far as the policy keeps bodies.
  const std::size_t result_cap =
      document().request_log.bodies
          ? static_cast<std::size_t>(document().request_log.max_body_bytes)
          : kMaxUnloggedToolResult;
  for (ToolResult& result : record_.tool_results) {
    if (result.content.size() > result_cap) result.content.resize(result_cap);
    result.content = redact(result.content, secrets_);
  }

  // The one parse of the body also serves the budget's output cap and the usage injection; a
  // hook's rewrite is parsed once more.
  if (!co_await run_hooks(identity, *provider, model, body, fields)) co_return nullptr;
  if (!co_await admit(identity)) co_return nullptr;
  if (!co_await reserve_budget(identity, *provider, model, body, fields.root())) co_return nullptr;

  // The cap reserve_budget may have written leaves `stream_options` as the document has it.
  strip_usage =
      route_.kind == ApiKind::kOpenAiChat && fields.stream && wants_usage_injection(fields.root());
  if (strip_usage) body = inject_include_usage(body, fields.root());
  co_return provider;
}

asio::awaitable<void> Exchange::respond(int status, std::string body) {
  http::Response response{static_cast<bhttp::status>(status), request_.version()};
  response.set(bhttp::field::content_type, "application/json");
  response.set("x-airlock-request-id", record_.id);
  if (retry_after_s_) response.set(bhttp::field::retry_after, std::to_string(*retry_after_s_));
  if (close_after_response_) response.keep_alive(false);
  response.body() = std::move(body);
  record_.status = status;
  if (co_await writer_.write(std::move(response))) {
    guard_.first_byte();
  } else {
    record_.client_disconnected = true;
  }
  guard_.ended();
}

asio::awaitable<void> Exchange::refuse(GatewayError error, std::string message) {
  record_.error = message;
  record_.cost = 0;  // nothing reached a provider
  std::string body = error_body(format_, error, message);
  record_.response_body = loggable(body);
  co_await respond(error_status(error), std::move(body));
}

asio::awaitable<bool> Exchange::guard_prompt(const policy::Identity& identity, std::string& body) {
  if (!state_->guardrails) co_return true;
  for (const policy::GuardrailSpec* spec : document().guardrails_for(identity)) {
    guardrails_.push_back(static_cast<std::size_t>(spec - document().guardrails.data()));
  }
  if (guardrails_.empty()) co_return true;
  const guardrails::PromptVerdict verdict = state_->guardrails->scan_prompt(guardrails_, body);
  const guardrails::PromptMatch* blocking = nullptr;
  for (const guardrails::PromptMatch& match : verdict.matches) {
    std::string_view action = action_name(match.action);
    if (verdict.blocked && match.action != policy::PromptAction::kFlag) {
      action = "block";
      if (blocking == nullptr) blocking = &match;
    }
    record_.guardrail_hits.push_back(
        {match.guardrail, match.pattern, std::string(action), "prompt"});
  }
  if (!verdict.blocked) co_return true;
  // A blocked body is left as it was scanned, so the match offsets still apply.
  if (document().request_log.bodies) record_.request_body = loggable(masked(body, verdict.matches));
  std::string message = "request blocked by guardrail";
  if (blocking != nullptr) {
    message += " \"" + blocking->guardrail + "\": the prompt matches \"" + blocking->pattern + "\"";
  }
  if (verdict.redaction_unsafe) message += " (it cannot be redacted without breaking the JSON)";
  co_await refuse(GatewayError::kGuardrailBlocked, std::move(message));
  co_return false;
}

asio::awaitable<bool> Exchange::run_hooks(const policy::Identity& identity,
                                          const policy::ProviderSpec& provider,
                                          const std::string& model, std::string& body,
                                          BodyFields& fields) {
  for (const policy::PreRequestHookSpec* hook : document().pre_request_hooks_for(identity)) {
    events::HookRequest request{record_.id,    identity.user,   identity.device,
                                identity.tags, identity.groups, provider.name,
                                model,         record_.api,     body};
    const events::HookVerdict verdict =
        co_await events::call_pre_request_hook(*core_.hook_pool, *hook, request);
    switch (verdict.action) {
      case events::HookVerdict::Action::kAllow:
        break;
      case events::HookVerdict::Action::kModify: {
        BodyFields rewritten = inspect_body(verdict.body);
        if (same_route(fields, rewritten)) {
          body = verdict.body;
          fields = std::move(rewritten);
          if (document().request_log.bodies) record_.request_body = loggable(body);
          break;
        }
        const std::string message = "pre-request hook " + hook->url +
                                    " failed: its \"modify\" changed the model or \"stream\"; a "
                                    "hook may rewrite a request but not reroute it";
        // Failing open forwards the request as it was before this hook.
        if (hook->fail_open) break;
        co_await refuse(GatewayError::kHookFailed, message);
        co_return false;
      }
      case events::HookVerdict::Action::kBlock: {
        const bool failed = !verdict.error.empty();
        const GatewayError error = failed ? GatewayError::kHookFailed : GatewayError::kHookBlocked;
        std::string message = failed ? verdict.error : verdict.message;
        if (message.empty()) message = "request blocked by the pre-request hook";
        const std::string refusal = error_body(format_, error, message);
        record_.error = message;
        record_.cost = 0;
        record_.response_body = loggable(refusal);
        const int status = failed ? error_status(error) : verdict.status;
        co_await respond(status, refusal);
        co_return false;
      }
    }
  }
  co_return true;
}

// Grants, provider, price and metering were decided on the original model and stream, so a
// rewrite that changes either would bypass them.
bool Exchange::same_route(const BodyFields& original, const BodyFields& rewritten) const {
  const bool gemini = is_gemini(route_.kind);
  return rewritten.valid_json && rewritten.stream == original.stream &&
         (gemini || rewritten.model == original.model);
}

asio::awaitable<bool> Exchange::admit(const policy::Identity& identity) {
  const std::vector<const policy::RateLimitSpec*> limits = document().rate_limits_for(identity);
  if (limits.empty()) co_return true;
  budget::AdmitResult result = core_.rate_limiter.admit(
      limits, budget::RateKeys{identity.user, record_.peer_key}, now_unix_ms());
  if (auto* admission = std::get_if<budget::Admission>(&result)) {
    admission_ = std::move(*admission);
    co_return true;
  }
  const budget::RateRefusal& refusal = std::get<budget::RateRefusal>(result);
  std::string what;
  switch (refusal.limit) {
    case budget::RateRefusal::Limit::kRequestsPerMinute:
      what = "requests per minute";
      break;
    case budget::RateRefusal::Limit::kTokensPerMinute:
      what = "tokens per minute";
      break;
    case budget::RateRefusal::Limit::kConcurrentStreams:
      what = "concurrent requests";
      break;
  }
  retry_after_s_ = refusal.retry_after_s;
  co_await refuse(GatewayError::kRateLimited,
                  "rate limit for " + refusal.key + ": " + std::to_string(refusal.current) + " " +
                      what + " of " + std::to_string(refusal.allowed) + " allowed; retry after " +
                      std::to_string(refusal.retry_after_s) + " s");
  co_return false;
}

asio::awaitable<bool> Exchange::reserve_budget(const policy::Identity& identity,
                                               const policy::ProviderSpec& provider,
                                               const std::string& model, std::string& body,
                                               JsonView parsed) {
  // Counting tokens is free.
  if (counts_tokens(route_.kind)) co_return true;
  const std::vector<policy::Document::BudgetCharge> budgets =
      document().budgets_for(identity, provider.name, model);
  if (budgets.empty()) co_return true;
  const std::optional<Price> price = state_->prices.find(provider.kind, model);
  if (!price) {
    co_await refuse(GatewayError::kNoPrice,
                    "model \"" + provider.name + "/" + model +
                        "\" is under a budget but has no price, so its cost cannot be bounded; "
                        "add it to the policy's \"prices\"");
    co_return false;
  }
  uint64_t output_cap = 0;
  if (route_.kind != ApiKind::kOpenAiEmbeddings) {
    const budget::OutputCap cap = budget::apply_output_cap(
        *meter_api(route_.kind), body, document().default_max_output_tokens, parsed);
    if (!cap.valid) {
      co_await refuse(GatewayError::kBadJson,
                      "the request's output token cap is not a non-negative integer, so its "
                      "cost cannot be bounded");
      co_return false;
    }
    output_cap = cap.tokens;
  }
  const budget::Amount worst = budget::worst_case(
      *price, budget::input_token_bound(body, parsed, document().reference_input_tokens),
      output_cap);
  std::vector<budget::Charge> charges;
  charges.reserve(budgets.size());
  for (const auto& charge : budgets) charges.push_back({charge.budget->name, charge.balance_key});
  budget::ReserveResult result = core_.ledger.reserve(charges, worst, now_unix_ms());
  if (auto* reservation = std::get_if<budget::Reservation>(&result)) {
    reservation_ = std::move(*reservation);
    co_return true;
  }
  const budget::Refusal& refusal = std::get<budget::Refusal>(result);
  const std::string key = refusal.balance_key.substr(refusal.balance_key.find('|') + 1);
  std::string message = "budget \"" + refusal.budget + "\" (" + key + ") cannot cover this request";
  if (refusal.usd_exhausted) {
    message += ": its worst case is " + dollars(worst.usd) + ", and " + dollars(refusal.spent_usd) +
               " of " + dollars(refusal.limit_usd.value_or(0)) + " is spent with " +
               dollars(refusal.reserved_usd) + " held by requests in flight";
  } else if (refusal.tokens_exhausted) {
    message += ": its worst case is " + std::to_string(worst.tokens) + " tokens, and " +
               std::to_string(refusal.spent_tokens) + " of " +
               std::to_string(refusal.limit_tokens.value_or(0)) + " tokens are spent with " +
               std::to_string(refusal.reserved_tokens) + " held by requests in flight";
  }
  if (refusal.never_fits) {
    message += "; it is larger than the whole budget (a lower max output tokens may fit)";
  } else {
    retry_after_s_ = refusal.retry_after_s;
    message += "; retry after " + std::to_string(refusal.retry_after_s) + " s";
  }
  co_await refuse(GatewayError::kBudgetExceeded, std::move(message));
  co_return false;
}

bool Exchange::scans_tool_calls() const {
  return std::any_of(guardrails_.begin(), guardrails_.end(), [this](std::size_t index) {
    return document().guardrails[index].response != policy::ResponseAction::kOff;
  });
}

bool Exchange::cuts_tool_calls() const {
  // Embeddings and token counts carry no tool calls, so they are never held back for the check.
  if (route_.kind == ApiKind::kOpenAiEmbeddings || counts_tokens(route_.kind)) {
    return false;
  }
  return std::any_of(guardrails_.begin(), guardrails_.end(), [this](std::size_t index) {
    return document().guardrails[index].response == policy::ResponseAction::kCut;
  });
}

// A response that is not streamed is scanned once it is whole. Unless it was held back for this
// (`can_cut`), it has already gone to the client, so its matches are recorded (and raise events)
// but cannot cut it.
void Exchange::scan_whole_tool_calls(std::span<const ToolCall> calls, bool can_cut) {
  guardrails::ToolCallScanner scanner(state_->guardrails, guardrails_);
  for (std::size_t i = 0; i < calls.size(); ++i)
    scanner.feed(std::to_string(i), calls[i].arguments);
  scanner.close();
  for (const guardrails::ToolCallMatch& match : scanner.matches()) {
    const policy::ResponseAction action = can_cut ? match.action : policy::ResponseAction::kFlag;
    record_tool_call_hit(match, action, calls[std::stoul(match.call_key)].name);
  }
}

// A held body the client must not get (a guardrail cut it, or the upstream did not finish it so
// it could not be checked) becomes the gateway's error in the provider's format.
void Exchange::replace_held_body(const policy::ProviderSpec& provider,
                                 const http::UpstreamResult& result, http::ResponseHeader& header,
                                 std::string& body) {
  GatewayError error = GatewayError::kGuardrailCut;
  std::string message = cut_reason_.value_or("");
  if (!cut_reason_) {
    error = GatewayError::kUpstreamFailed;
    message = "upstream \"" + provider.name + "\" failed mid-response (" +
              std::string(http::upstream_error_name(result.error)) + "): " + result.message;
  }
  body = error_body(format_, error, redact(message, secrets_));
  record_.status = error_status(error);
  header = http::ResponseHeader();
  header.version(request_.version());
  header.result(static_cast<bhttp::status>(record_.status));
  header.set(bhttp::field::content_type, "application/json");
  header.set(bhttp::field::content_length, std::to_string(body.size()));
  header.set("x-airlock-request-id", record_.id);
}

// The first match that cuts gives the reason the client and the record get.
void Exchange::record_tool_call_hit(const guardrails::ToolCallMatch& match,
                                    policy::ResponseAction action, std::string_view call_name) {
  record_.guardrail_hits.push_back(
      {match.guardrail, match.pattern, std::string(action_name(action)), "response"});
  if (action != policy::ResponseAction::kCut || cut_reason_) return;
  cut_reason_ = "response cut by guardrail \"" + match.guardrail + "\": tool call \"" +
                std::string(call_name) + "\" matches \"" + match.pattern + "\"";
}

void Exchange::watch_tool_calls(Relay& relay) {
  if (!scans_tool_calls()) return;
  tool_scanner_.emplace(state_->guardrails, guardrails_);
  relay.set_event_check([this](const UsageMeter& meter) {
    std::size_t n = 0;
    meter.visit_tool_calls([&](const ToolCall& call) {
      if (scanned_bytes_.size() <= n) scanned_bytes_.push_back(0);
      std::size_t& done = scanned_bytes_[n];
      if (call.arguments.size() > done) {
        const std::string key = std::to_string(n);
        for (const guardrails::ToolCallMatch& match :
             tool_scanner_->feed(key, std::string_view(call.arguments).substr(done))) {
          record_tool_call_hit(match, match.action, call.name);
        }
        done = call.arguments.size();
      }
      ++n;
    });
    return !cut_reason_;
  });
}

void Exchange::settle(const Usage& usage) {
  const uint64_t tokens = usage.input + usage.output + usage.cache_read + usage.cache_write;
  const int64_t now = now_unix_ms();
  if (reservation_.active()) reservation_.settle({record_.cost.value_or(0), tokens}, now);
  admission_.record_tokens(tokens, now);
}

// The caller's own balances: every balance of a budget some grant of theirs names, under a key
// that is theirs.
asio::awaitable<void> Exchange::list_own_budgets(const policy::Identity& identity) {
  record_.api = "budgets";
  std::set<std::string> keys;
  keys.insert("user:" + identity.user);
  keys.insert("peer:" + record_.peer_key);
  keys.insert("shared");
  for (const std::string& tag : identity.tags) keys.insert("tag:" + tag);
  for (const std::string& group : identity.groups) keys.insert("group:" + group);
  std::set<std::string> named;
  for (const policy::GrantSpec& grant : document().grants) {
    const bool mine = std::any_of(grant.from.begin(), grant.from.end(), [&](const std::string& s) {
      return policy::Document::selector_matches(s, identity);
    });
    if (!mine) continue;
    for (const policy::GrantBudget& budget : grant.budgets) named.insert(budget.name);
  }
  json list = json::array();
  for (const budget::Balance& balance :
       core_.ledger.balances(std::nullopt, std::nullopt, now_unix_ms())) {
    const std::string key = balance.balance_key.substr(balance.balance_key.find('|') + 1);
    if (!named.contains(balance.budget) || !keys.contains(key)) continue;
    json item = {{"budget", balance.budget},
                 {"key", key},
                 {"spent_usd", static_cast<double>(balance.spent_usd) / 1e12},
                 {"reserved_usd", static_cast<double>(balance.reserved_usd) / 1e12},
                 {"spent_tokens", balance.spent_tokens},
                 {"window_end_ms", balance.window_end_ms}};
    item["limit_usd"] =
        balance.limit_usd ? json(static_cast<double>(*balance.limit_usd) / 1e12) : json(nullptr);
    item["limit_tokens"] = balance.limit_tokens ? json(*balance.limit_tokens) : json(nullptr);
    item["remaining_usd"] = balance.remaining_usd
                                ? json(static_cast<double>(*balance.remaining_usd) / 1e12)
                                : json(nullptr);
    list.push_back(std::move(item));
  }
  record_.cost = 0;
  record_.usage_complete = true;
  json answer = json::object();
  answer["user"] = identity.user;
  answer["budgets"] = std::move(list);
  std::string body = answer.dump();
  co_await respond(200, std::move(body));
}

asio::awaitable<void> Exchange::list_models(const policy::Identity& identity) {
  std::vector<GrantedModel> models = granted_models(document(), identity);
  std::string body;
  if (wants_gemini_list(route_.version, route_.query, request_)) {
    // Only Gemini providers speak the routes a Gemini client calls.
    std::erase_if(models,
                  [](const GrantedModel& m) { return m.kind != policy::ProviderKind::kGemini; });
    body = gemini_models_body(models);
  } else if (wants_anthropic_list(request_)) {
    body = anthropic_models_body(models, state_->loaded_unix_s);
  } else {
    body = openai_models_body(models, state_->loaded_unix_s);
  }
  record_.cost = 0;
  record_.usage_complete = true;
  record_.response_body = loggable(body);
  co_await respond(200, std::move(body));
}

std::optional<std::string> Exchange::loggable(std::string_view body) const {
  const policy::RequestLogSpec& spec = document().request_log;
  if (!spec.bodies) return std::nullopt;
  const std::size_t cap = static_cast<std::size_t>(spec.max_body_bytes);
  std::string out = redact(body.substr(0, cap + kRedactSlack), secrets_);
  if (out.size() > cap) out.resize(cap);
  return out;
}

http::ResponseHeader Exchange::redacted(const http::ResponseHeader& header) const {
  http::ResponseHeader out;
  out.version(header.version());
  out.result(header.result_int());
  out.reason(header.reason());
  for (const auto& field : header) {
    const std::string value = redact(sv(field.value()), secrets_);
    // By the field's code too: by its name alone Beast would look the code up again.
    out.insert(field.name(), field.name_string(),
               boost::beast::string_view(value.data(), value.size()));
  }
  return out;
}

asio::awaitable<void> Exchange::forward(const policy::ProviderSpec& provider, std::string body,
                                        bool strip_usage) {
  // make_gateway_state parsed every provider's base_url, or refused the policy.
  const auto parsed_url = state_->base_urls.find(provider.name);
  if (parsed_url == state_->base_urls.end()) {
    co_return co_await refuse(GatewayError::kUpstreamFailed,
                              "provider \"" + provider.name + "\" has an unusable base_url");
  }
  const http::Url& url = parsed_url->second;
  std::optional<std::string_view> key;
  if (const auto it = state_->keys.find(provider.name); it != state_->keys.end()) {
    key = it->second.reveal();
  }

  http::Request upstream;
  // The fields are moved in whole, not copied one by one; method and target are set after, as
  // the assignment replaces them.
  static_cast<bhttp::fields&>(upstream) = upstream_request_fields(request_, provider, key);
  upstream.method(request_.method());
  upstream.target(upstream_target(route_, url.base_path, !provider.passthrough));
  upstream.version(11);
  upstream.body() = std::move(body);

  const Api api = *meter_api(route_.kind);
  const bool log_bodies = document().request_log.bodies;
  const std::size_t log_cap =
      static_cast<std::size_t>(document().request_log.max_body_bytes) + kRedactSlack;
  std::optional<Relay> relay;
  std::string to_client;
  std::string response_copy;
  bool client_gone = false;
  // An error answer is small, so it is held whole and sent with the provider keys redacted:
  // some upstreams quote the credential they rejected, and the sandbox must never see it.
  bool hold = false;
  std::string held;
  // The client's header until it is sent: at once, or with a body held for the guardrails when
  // that body is let through.
  std::optional<http::ResponseHeader> client_header;

  // The provider's piece that ends its body, held so that it goes out with the response's end.
  std::string tail;

  // `body_follows`: bytes are at hand, so the header goes out with them in one write.
  const auto start = [&](bool body_follows) -> asio::awaitable<bool> {
    http::ResponseHeader header = std::move(*client_header);
    client_header.reset();
    if (!co_await writer_.start(std::move(header), body_follows)) {
      client_gone = true;
      co_return false;
    }
    guard_.first_byte();
    co_return true;
  };
  // `end`: these are the last bytes, and the response ends with them.
  const auto send = [&](std::string_view bytes, bool end) -> asio::awaitable<bool> {
    if (bytes.empty() && !end) co_return true;
    if (client_header) {
      if (!co_await start(true)) co_return false;
    }
    if (log_bodies && response_copy.size() < log_cap) {
      response_copy.append(bytes.substr(0, log_cap - response_copy.size()));
    }
    bool sent = false;
    if (end) {
      sent = co_await writer_.finish_with(bytes);
    } else {
      sent = co_await writer_.chunk(bytes);
    }
    if (!sent) client_gone = true;
    co_return sent;
  };
  const auto pass = [&](std::string_view bytes, bool last, bool end) -> asio::awaitable<bool> {
    if (!hold) co_return co_await send(bytes, end);
    held.append(bytes);
    if (!last && held.size() <= kMaxHeldErrorBody) co_return true;
    hold = false;
    const std::string clean = redact(held, secrets_);
    held.clear();
    co_return co_await send(clean, end);
  };

  const http::OnHeaders on_headers = [&](const http::ResponseHeader& header,
                                         bool body_at_hand) -> asio::awaitable<bool> {
    record_.status = static_cast<int>(header.result_int());
    const bool sse = istarts_with(sv(header[bhttp::field::content_type]), "text/event-stream");
    hold = record_.status / 100 != 2;
    RelayOptions relay_options{api, sse, strip_usage && sse};
    relay_options.hold_events = sse && !hold && cuts_tool_calls();
    // A whole JSON answer can only be cut before any of it is sent.
    relay_options.hold_body = !sse && !hold && cuts_tool_calls();
    relay.emplace(relay_options);
    if (sse && !hold) watch_tool_calls(*relay);
    client_header = redacted(header);
    prepare_client_header(*client_header, (strip_usage && sse) || hold);
    client_header->set("x-airlock-request-id", record_.id);
    if (relay_options.hold_body) co_return true;
    co_return co_await start(body_at_hand);
  };
  const http::OnBody on_body = [&](std::string_view data, bool last) -> asio::awaitable<bool> {
    to_client.clear();
    relay->feed(data, to_client);
    if (last && !relay->cut()) {
      tail = std::move(to_client);
      co_return true;
    }
    if (!co_await pass(to_client, false, false)) co_return false;
    if (!relay->cut()) co_return true;
    // The event that completed the match was held back; the client gets the provider-style
    // error in its place and the upstream request is cancelled.
    const std::string event =
        error_event(format_, GatewayError::kGuardrailCut, cut_reason_.value_or("guardrail"));
    co_await send(event, false);
    co_return false;
  };

  const http::UpstreamResult result =
      co_await core_.pool->send(url, std::move(upstream), on_headers, on_body);

  if (!result.headers_received) {
    using Error = http::UpstreamResult::Error;
    const bool timeout =
        result.error == Error::kConnectTimeout || result.error == Error::kFirstByteTimeout;
    const GatewayError error =
        timeout ? GatewayError::kUpstreamTimeout : GatewayError::kUpstreamFailed;
    std::string message =
        "upstream \"" + provider.name + "\" " + (timeout ? "timed out" : "failed") + " (" +
        std::string(http::upstream_error_name(result.error)) + "): " + result.message;
    co_return co_await refuse(error, redact(message, secrets_));
  }

  to_client = std::move(tail);
  relay->finish(to_client);
  // Still unsent, the header belongs to a body held whole (see RelayOptions::hold_body).
  const bool held_whole = client_header.has_value();
  const bool scan_whole = record_.status / 100 == 2 && !tool_scanner_ && scans_tool_calls();
  if (held_whole && scan_whole) scan_whole_tool_calls(relay->tool_calls(), true);
  const bool replaced =
      held_whole && (cut_reason_ || result.error != http::UpstreamResult::Error::kNone);
  if (replaced) replace_held_body(provider, result, *client_header, to_client);
  // A transport failure after the header leaves the response unfinished: the server then
  // closes the connection without the final chunk, so the client sees a truncated body.
  const bool ends = result.error == http::UpstreamResult::Error::kNone || cut_reason_ || replaced;
  // A held body may be empty.
  if (client_header) co_await start(true);
  if (!client_gone) co_await pass(to_client, true, ends);
  // What the client already has is metered and scanned now that it has it.
  relay->meter_body();
  if (!held_whole && scan_whole) scan_whole_tool_calls(relay->tool_calls(), false);
  if (log_bodies) record_.response_body = loggable(response_copy);
  finish_record(provider, *relay, result, client_gone);
}

void Exchange::finish_record(const policy::ProviderSpec& provider, const Relay& relay,
                             const http::UpstreamResult& result, bool client_gone) {
  const bool transport_ok = result.error == http::UpstreamResult::Error::kNone && !client_gone;
  const bool success = record_.status >= 200 && record_.status < 300;
  record_.client_disconnected = client_gone;

  std::string error;
  if (!transport_ok && !client_gone) {
    error = "upstream \"" + provider.name + "\" " +
            std::string(http::upstream_error_name(result.error)) + ": " + result.message;
  } else if (!success) {
    error = "upstream status " + std::to_string(record_.status);
    if (relay.error()) error += ": " + *relay.error();
  } else if (relay.error()) {
    error = *relay.error();
  } else if (relay.metering_error()) {
    error = "metering: " + *relay.metering_error();
  }
  if (cut_reason_) error = *cut_reason_;
  record_.error = redact(error, secrets_);

  record_.tool_calls = relay.tool_calls();
  // Counting tokens is free and its answer is not usage.
  const Usage usage = counts_tokens(route_.kind) ? Usage{} : relay.usage();
  record_usage(
      provider, usage,
      counts_tokens(route_.kind) ? transport_ok && success : transport_ok && usage.complete);
  if (tool_scanner_) {
    for (const guardrails::ToolCallMatch& match : tool_scanner_->close()) {
      record_.guardrail_hits.push_back(
          {match.guardrail, match.pattern, std::string(action_name(match.action)), "response"});
    }
  }
  settle(usage);
  guard_.ended();
}

void Exchange::record_usage(const policy::ProviderSpec& provider, const Usage& usage,
                            bool complete) {
  record_.input_tokens = usage.input;
  record_.output_tokens = usage.output;
  record_.cache_read_tokens = usage.cache_read;
  record_.cache_write_tokens = usage.cache_write;
  record_.reasoning_tokens = usage.reasoning;
  record_.usage_complete = complete;
  std::optional<Price> price = state_->prices.find(provider.kind, record_.model);
  if (!price && !usage.model.empty()) price = state_->prices.find(provider.kind, usage.model);
  record_.cost = price ? std::optional<Picodollars>(cost_of(*price, usage)) : std::nullopt;
}

}  // namespace airlock::control::gateway
