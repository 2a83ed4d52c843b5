// The whole policy as people write it (one JSON file with comments): peers and their identities,
// groups, network rules, the gateway, LLM providers, model grants, price overrides, request-log
// options and the policy's own tests. parse_document() checks everything and runs the tests;
// compile() yields the data plane's buffer. The control plane keeps the Document for what the
// data plane never sees (providers, grants, prices).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/builder.h"
#include "policy/policy.h"

namespace airlock::policy {

enum class ProviderKind { kOpenAi, kAnthropic, kGemini, kOpenAiCompatible };

// "openai", "anthropic", "gemini", "openai-compatible".
std::string_view provider_kind_name(ProviderKind kind);
std::optional<ProviderKind> parse_provider_kind(std::string_view name);

// Who a peer is. Groups come from the peer's own "groups" plus every group whose members
// select it (see GroupSpec).
struct Identity {
  std::string user;
  std::string device;
  std::vector<std::string> tags;
  std::vector<std::string> groups;
  Key public_key{};
};

// "groups": {"NAME": ["user:alice", "tag:ci", ...]}: a peer is in the group when any selector
// matches it. Group selectors inside groups are not allowed (no nesting, no cycles).
struct GroupSpec {
  std::string name;
  std::vector<std::string> members;
};

struct ProviderSpec {
  std::string name;  // unique; the first path element of a grant glob ("anthropic/claude-*")
  ProviderKind kind = ProviderKind::kOpenAi;
  std::string base_url;             // "https://api.anthropic.com" or "http://127.0.0.1:8080"
  std::vector<std::string> models;  // globs of the models this provider serves, e.g. "claude-*"
  // JSON "key": where the central key comes from, "env:NAME" or "file:PATH". Never the key itself
  // (a value of any other shape is an error). Absent: requests go without a key (local upstreams).
  std::optional<std::string> key_ref;
  bool passthrough = false;  // forward the client's own auth headers instead of the key
};

// A budget named by a grant: "budgets": ["team-daily", {"name": "opus", "models": ["anthropic/
// claude-opus-*"]}]. It charges the grant's callers for the grant's models, or only for
// `models` when given (each must also be one of the grant's globs or narrower).
struct GrantBudget {
  std::string name;
  std::vector<std::string> models;  // "PROVIDER/MODEL_GLOB"; empty: every model of the grant
};

// "grants": [{"from": [selectors], "models": ["anthropic/claude-*", "openai/gpt-5*"],
//             "budgets": [...]}].
// Default deny: a model is usable only when some grant matching the caller lists it.
struct GrantSpec {
  std::vector<std::string> from;
  std::vector<std::string> models;  // "PROVIDER/MODEL_GLOB"; "*" for everything
  std::vector<GrantBudget> budgets;
};

// Whose balance a budget keeps: one per user, per device (peer), per tag or group the caller
// has (a caller with two tags is charged to both balances), or one shared by every caller it is
// attached to.
enum class BudgetScope { kUser, kDevice, kTag, kGroup, kShared };
// Calendar windows in UTC (a "day" budget resets at 00:00 UTC, "week" on Monday, "month" on the
// 1st), or a token bucket that refills continuously up to its limit.
enum class BudgetWindow { kMinute, kHour, kDay, kWeek, kMonth, kBucket };

// "budgets": {"NAME": {"per": "user", "usd": "25", "tokens": 2000000, "window": "day",
//                      "thresholds": [50, 80, 100]}}
// A bucket: {"per": "device", "usd": "5", "window": "bucket",
//            "refill": {"usd": "1", "tokens": 100000, "every": "hour"}}
// At least one of usd/tokens. Amounts are dollars as strings or numbers (like prices).
struct BudgetSpec {
  std::string name;
  BudgetScope scope = BudgetScope::kUser;
  std::optional<int64_t> usd_picodollars;  // limit per window (bucket: capacity)
  std::optional<uint64_t> tokens;          // input + output + cache tokens per window
  BudgetWindow window = BudgetWindow::kDay;
  // kBucket only: added every `refill_every_s` seconds, pro rata in between, up to the limit.
  int64_t refill_picodollars = 0;
  uint64_t refill_tokens = 0;
  uint32_t refill_every_s = 0;
  std::vector<uint32_t> thresholds_percent{50, 80, 100};  // ascending, 1..100
  int line = 0;
};

// "rate_limits": [{"from": ["group:ci"], "per": "user", "requests_per_minute": 60,
//                  "tokens_per_minute": 200000, "concurrent_streams": 4}]
// Every entry whose `from` matches the caller applies; each keeps one counter per user (or per
// device with "per": "device").
struct RateLimitSpec {
  std::vector<std::string> from;
  BudgetScope scope = BudgetScope::kUser;  // kUser or kDevice only
  std::optional<uint32_t> requests_per_minute;
  std::optional<uint64_t> tokens_per_minute;
  std::optional<uint32_t> concurrent_streams;
};

enum class PromptAction { kOff, kFlag, kRedact, kBlock };
enum class ResponseAction { kOff, kFlag, kCut };

// {"name": "aws-key", "regex": "AKIA[0-9A-Z]{16}"} or {"name": "rm-root", "literal": "rm -rf /"};
// "case_insensitive": true is allowed on both.
struct GuardPattern {
  std::string name;
  std::string expression;
  bool literal = false;
  bool case_insensitive = false;
  int line = 0;
};

// "guardrails": [{"name": "secrets", "from": ["*"], "builtin": ["provider_keys", "private_keys",
//                 "cloud_credentials", "personal_data"], "patterns": [...],
//                 "prompt": "redact", "response": "cut"}]
// Prompts (request bodies) are scanned before forwarding; the model's tool calls are scanned as
// they stream. Defaults: "prompt": "block", "response": "flag".
struct GuardrailSpec {
  std::string name;
  std::vector<std::string> from;  // absent in the JSON (empty here): everyone
  std::vector<std::string> builtin;
  std::vector<GuardPattern> patterns;
  PromptAction prompt = PromptAction::kBlock;
  ResponseAction response = ResponseAction::kFlag;
  int line = 0;
};

// "webhooks": [{"url": "https://hooks.example/airlock", "secret": "env:AIRLOCK_HOOK_SECRET",
//               "events": ["budget.exceeded", "guardrail.match"]}]
// Event names: request.completed, tool.call, budget.threshold, budget.exceeded, access.denied,
// guardrail.match, policy.pushed. Absent "events": all of them. The secret is a reference like a
// provider key, never the value.
struct WebhookSpec {
  std::string url;
  std::string secret_ref;
  std::vector<std::string> events;  // absent in the JSON: every event is listed here
};

// "hooks": {"pre_request": [{"url": "http://127.0.0.1:7000/check", "from": ["*"],
//                            "timeout_ms": 300, "on_failure": "deny"}]}
struct PreRequestHookSpec {
  std::string url;
  std::vector<std::string> from;  // absent in the JSON (empty here): everyone
  uint32_t timeout_ms = 500;
  bool fail_open = false;  // "on_failure": "allow" | "deny" (default)
};

// "prices": {"PROVIDER/MODEL": {"input": "3", "output": "15", "cache_read": "0.3",
// "cache_write": "3.75", "cache_write_1h": "6"}}, dollars per million tokens as strings or
// numbers.
struct PriceOverride {
  std::string provider;  // provider name
  std::string model;     // exact model name
  std::string input, output;
  std::optional<std::string> cache_read, cache_write, cache_write_1h;
};

// "request_log": {"bodies": true, "max_body_bytes": 65536}.
struct RequestLogSpec {
  bool bodies = false;
  uint64_t max_body_bytes = uint64_t{64} * 1024;
};

// "tests": [{"from": "user:alice", "to": "100.80.0.3", "proto": "tcp", "port": 22,
//            "expect": "deny"},
//           {"from": "user:alice", "model": "anthropic/claude-sonnet-4-5", "expect": "allow"}]
// `from` selects the peers the assertion is about (all of them must satisfy it; it must select
// at least one). Network assertions evaluate the rules exactly as the data plane does (first
// match, default drop; "punt" counts as allow for the gateway address).
struct PolicyTestSpec {
  std::string from;
  std::optional<IpPrefix> to;  // host address
  uint8_t protocol = 0;
  uint16_t port = 0;
  std::optional<std::string> model;  // "PROVIDER/MODEL"
  bool expect_allow = false;
  int line = 0;  // where it is written, for failure messages
};

struct Document {
  uint64_t version = 0;
  std::vector<IpPrefix> gateway;
  std::vector<PeerSpec> peers;  // as parsed; identities() resolves groups
  std::vector<GroupSpec> groups;
  std::vector<RuleSpec> rules;
  std::vector<ProviderSpec> providers;
  std::vector<GrantSpec> grants;
  std::vector<PriceOverride> prices;
  RequestLogSpec request_log;
  std::vector<PolicyTestSpec> tests;
  std::vector<BudgetSpec> budgets;
  // "default_max_output_tokens": applied to a budgeted request that sets no output cap, so its
  // worst-case cost is bounded.
  uint64_t default_max_output_tokens = 4096;
  // "reference_input_tokens": what a budgeted request's worst case allows for each input the
  // provider fetches itself (an image or file by URL or id), whose size the body does not show.
  uint64_t reference_input_tokens = 32'768;
  std::vector<RateLimitSpec> rate_limits;
  std::vector<GuardrailSpec> guardrails;
  std::vector<WebhookSpec> webhooks;
  std::vector<PreRequestHookSpec> pre_request_hooks;

  // One identity per peer, in peer order, groups resolved.
  std::vector<Identity> identities() const;
  // The identity whose allowed IPs contain `address` by longest prefix (the data plane's
  // cryptokey routing), or nullopt.
  std::optional<Identity> identity_of_address(const IpPrefix& host_address) const;
  std::optional<Identity> identity_of_key(const Key& public_key) const;
  // Whether `identity` may use `model` of provider `provider` (grants, default deny).
  bool model_granted(const Identity& identity, std::string_view provider,
                     std::string_view model) const;
  // The provider serving `model` (first provider whose model globs match), or nullptr.
  const ProviderSpec* provider_for_model(std::string_view model) const;
  // Budgets charged when `identity` uses provider/model: from every grant that matches the
  // caller and lists the model, in grant order, each budget once. The balance keys follow the
  // budget's scope, e.g. "team-daily|user:alice", "ci|tag:ci", "pool|shared"; a per-tag or
  // per-group budget gives one charge for each of the caller's tags or groups (none when the
  // caller has none). Device names repeat across users ("laptop"), so a per-device balance is
  // the peer's: "NAME|peer:B64KEY".
  struct BudgetCharge {
    const BudgetSpec* budget;
    std::string balance_key;
  };
  std::vector<BudgetCharge> budgets_for(const Identity& identity, std::string_view provider,
                                        std::string_view model) const;
  // The entries that apply to `identity`, in document order. A guardrail or hook without
  // "from" applies to everyone.
  std::vector<const RateLimitSpec*> rate_limits_for(const Identity& identity) const;
  std::vector<const GuardrailSpec*> guardrails_for(const Identity& identity) const;
  std::vector<const PreRequestHookSpec*> pre_request_hooks_for(const Identity& identity) const;
  // Selector semantics shared with the data plane's ACL: "*", "user:X"/"X", "group:X",
  // "tag:X", "device:X", "peer:B64".
  static bool selector_matches(std::string_view selector, const Identity& identity);
};

// Parses and checks `text`. Errors are "FILE:LINE: PATH: message", e.g.
// "policy.json:14: peers[1].allowed_ips[0]: prefix length 33 exceeds 32". A failing entry of
// `tests` is an error naming its line and what actually happens. Secrets are never echoed.
std::optional<Document> parse_document(std::string_view text, std::string_view file_name,
                                       std::string* error);

// The data plane's buffer (passes load_policy).
std::optional<std::vector<uint8_t>> compile(const Document& document, std::string* error);

// Glob with '*' (any run, including '/') and '?' (one character); case-sensitive.
bool glob_match(std::string_view pattern, std::string_view text);

// Whether a grant's model list ("PROVIDER/MODEL_GLOB" entries, "*" for everything) names
// `model` of `provider`.
bool lists_model(const std::vector<std::string>& entries, std::string_view provider,
                 std::string_view model);

}  // namespace airlock::policy
