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

// "grants": [{"from": [selectors], "models": ["anthropic/claude-*", "openai/gpt-5*"]}].
// Default deny: a model is usable only when some grant matching the caller lists it.
struct GrantSpec {
  std::vector<std::string> from;
  std::vector<std::string> models;  // "PROVIDER/MODEL_GLOB"; "*" for everything
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
  uint64_t max_body_bytes = 64 * 1024;
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

}  // namespace airlock::policy
