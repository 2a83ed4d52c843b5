#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "policy/document.h"
#include "policy/json.h"
#include "policy/locate.h"
#include "policy/policy_tests.h"

namespace airlock::policy {
namespace {

Key filled_key(uint8_t value) {
  Key key;
  key.fill(value);
  return key;
}

std::string key_text(uint8_t value) {
  return encode_key_base64(filled_key(value));
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// The line of the first occurrence of `needle` (after `after`, when given), counted by hand.
int line_of(const std::string& text, const std::string& needle, const std::string& after = "") {
  const size_t start = after.empty() ? 0 : text.find(after);
  const size_t at = text.find(needle, start);
  EXPECT_NE(at, std::string::npos) << needle;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
}

std::string at_line(int line) {
  return "policy.json:" + std::to_string(line) + ": ";
}

// Every section, with comments holding the characters a naive line scanner would trip over.
std::string full_document() {
  std::string text = R"({
  // Lab policy. "quotes", [brackets] and {braces} in comments are not JSON.
  "version": 7,
  "gateway": ["100.80.0.1/32", "fd00:80::1/128"],
  "peers": [
    {"public_key": "@ALICE@", "allowed_ips": ["100.80.0.2/32", "fd00:80::2/128"],
     "user": "alice", "device": "laptop", "groups": ["eng"]},
    /* bob owns the sandbox subnet: "peers": [ ... */
    {"public_key": "@BOB@", "allowed_ips": ["100.80.1.0/24", "fd00:81::/64"],
     "user": "bob", "tags": ["ci"]},
    {"public_key": "@CI@", "allowed_ips": ["100.80.1.7/32"], "user": "ci-runner",
     "device": "runner-7", "tags": ["ci"]}
  ],
  "groups": {
    "builders": ["tag:ci"],
    "admins": ["user:alice", "device:none"]
  },
  "rules": [
    {"name": "ssh-to-sandboxes", "from": ["group:admins"], "to": ["100.80.1.0/24"],
     "proto": "tcp", "ports": 22, "action": "forward"},
    {"name": "gateway", "from": ["*"], "to": ["100.80.0.1/32"], "proto": "tcp",
     "ports": "80-443", "action": "punt"},
    {"name": "sandboxes", "from": ["group:builders"], "to": ["100.80.0.0/16"],
     "action": "drop"}
  ],
  "providers": [
    {"name": "anthropic", "kind": "anthropic", "base_url": "https://api.anthropic.com",
     "models": ["claude-*"], "key": "env:ANTHROPIC_API_KEY"},
    {"name": "openai", "kind": "openai", "base_url": "https://api.openai.com/v1",
     "models": ["gpt-*", "o?-mini"], "key": "file:/etc/airlock/openai.key"},
    {"name": "local", "kind": "openai-compatible", "base_url": "http://127.0.0.1:8080",
     "models": ["*"], "passthrough": true}
  ],
  "grants": [
    {"from": ["group:eng"], "models": ["anthropic/claude-sonnet-*", "openai/gpt-5*"],
     "budgets": ["team", {"name": "sonnet", "models": ["anthropic/claude-sonnet-4-*"]}, "pool"]},
    {"from": ["tag:ci"], "models": ["local/*"], "budgets": ["ci", "builders", "team"]}
  ],
  "prices": {
    "anthropic/claude-sonnet-4-5": {"input": "3", "output": 15, "cache_read": 0.3,
                                    "cache_write": "3.75", "cache_write_1h": "6"}
  },
  "request_log": {"bodies": true, "max_body_bytes": 4096},
  "budgets": {
    "team": {"per": "user", "usd": "25.5", "tokens": 2000000, "window": "day",
             "thresholds": [50, 90]},
    "sonnet": {"per": "device", "usd": 5, "window": "bucket",
               "refill": {"usd": "0.000000000001", "every": "hour"}},
    "ci": {"per": "tag", "tokens": 100000, "window": "month"},
    "builders": {"per": "group", "usd": 100.25, "window": "week"},
    "pool": {"per": "shared", "usd": "2000"}
  },
  "default_max_output_tokens": 8192,
  "reference_input_tokens": 100000,
  "rate_limits": [
    {"from": ["group:builders"], "per": "device", "requests_per_minute": 60,
     "tokens_per_minute": 200000, "concurrent_streams": 4},
    {"from": ["*"], "requests_per_minute": 600}
  ],
  "guardrails": [
    {"name": "secrets", "builtin": ["provider_keys", "private_keys"],
     "patterns": [
       {"name": "aws-key", "regex": "AKIA[0-9A-Z]{16}"},
       {"name": "rm-root", "literal": "rm -rf /", "case_insensitive": true}
     ],
     "prompt": "redact", "response": "cut"},
    {"name": "ci-only", "from": ["tag:ci"], "builtin": ["dangerous_commands"]}
  ],
  "webhooks": [
    {"url": "https://hooks.example/airlock", "secret": "env:AIRLOCK_HOOK_SECRET",
     "events": ["budget.exceeded", "guardrail.match"]},
    {"url": "http://127.0.0.1:9000/all", "secret": "file:/etc/airlock/hook.secret"}
  ],
  "hooks": {"pre_request": [
    {"url": "http://127.0.0.1:7000/check", "from": ["group:eng"], "timeout_ms": 300,
     "on_failure": "allow"},
    {"url": "https://policy.example/check"}
  ]},
  "tests": [
    {"from": "user:alice", "to": "100.80.1.9", "proto": "tcp", "port": 22, "expect": "allow"},
    {"from": "tag:ci", "to": "100.80.0.2", "proto": "tcp", "port": 22, "expect": "deny"},
    {"from": "*", "to": "100.80.0.1", "proto": "tcp", "port": 443, "expect": "allow"},
    {"from": "user:alice", "model": "anthropic/claude-sonnet-4-5", "expect": "allow"},
    {"from": "user:bob", "model": "anthropic/claude-sonnet-4-5", "expect": "deny"}
  ]
})";
  text = replaced(text, "@ALICE@", key_text(0xa1));
  text = replaced(text, "@BOB@", key_text(0xb0));
  return replaced(text, "@CI@", key_text(0xc1));
}

std::string parse_error(const std::string& text) {
  std::string error;
  EXPECT_FALSE(parse_document(text, "policy.json", &error)) << text;
  return error;
}

Document parsed(const std::string& text) {
  std::string error;
  auto document = parse_document(text, "policy.json", &error);
  EXPECT_TRUE(document) << error;
  return document.value_or(Document{});
}

IpPrefix address(const char* text) {
  return parse_prefix(text).value();
}

// Replaces the tests section of the full document.
std::string with_tests(const std::string& tests) {
  const std::string text = full_document();
  const size_t begin = text.find("\"tests\": [");
  const size_t end = text.find("\n  ]\n}", begin);
  return text.substr(0, begin) + "\"tests\": [\n    " + tests + text.substr(end);
}

TEST(Document, ParsesEverySection) {
  const Document document = parsed(full_document());
  EXPECT_EQ(document.version, 7u);
  ASSERT_EQ(document.gateway.size(), 2u);
  EXPECT_EQ(document.gateway[1], address("fd00:80::1"));
  ASSERT_EQ(document.peers.size(), 3u);
  ASSERT_EQ(document.rules.size(), 3u);
  EXPECT_EQ(document.rules[1].action, Action::PuntToGateway);
  EXPECT_EQ(document.rules[1].port_low, 80);
  EXPECT_EQ(document.rules[1].port_high, 443);

  ASSERT_EQ(document.providers.size(), 3u);
  const ProviderSpec& anthropic = document.providers[0];
  EXPECT_EQ(anthropic.name, "anthropic");
  EXPECT_EQ(anthropic.kind, ProviderKind::kAnthropic);
  EXPECT_EQ(anthropic.base_url, "https://api.anthropic.com");
  EXPECT_EQ(anthropic.models, std::vector<std::string>{"claude-*"});
  EXPECT_EQ(anthropic.key_ref, "env:ANTHROPIC_API_KEY");
  EXPECT_FALSE(anthropic.passthrough);
  EXPECT_EQ(document.providers[1].key_ref, "file:/etc/airlock/openai.key");
  EXPECT_EQ(document.providers[2].kind, ProviderKind::kOpenAiCompatible);
  EXPECT_FALSE(document.providers[2].key_ref);
  EXPECT_TRUE(document.providers[2].passthrough);

  ASSERT_EQ(document.grants.size(), 2u);
  EXPECT_EQ(document.grants[1].from, std::vector<std::string>{"tag:ci"});
  EXPECT_EQ(document.grants[1].models, std::vector<std::string>{"local/*"});

  ASSERT_EQ(document.prices.size(), 1u);
  const PriceOverride& price = document.prices[0];
  EXPECT_EQ(price.provider, "anthropic");
  EXPECT_EQ(price.model, "claude-sonnet-4-5");
  EXPECT_EQ(price.input, "3");
  EXPECT_EQ(price.output, "15");
  EXPECT_EQ(price.cache_read, "0.3");
  EXPECT_EQ(price.cache_write, "3.75");
  EXPECT_EQ(price.cache_write_1h, "6");

  EXPECT_TRUE(document.request_log.bodies);
  EXPECT_EQ(document.request_log.max_body_bytes, 4096u);

  ASSERT_EQ(document.tests.size(), 5u);
  const std::string text = full_document();
  EXPECT_EQ(document.tests[0].line, line_of(text, "\"to\": \"100.80.1.9\""));
  EXPECT_EQ(document.tests[0].to, address("100.80.1.9"));
  EXPECT_EQ(document.tests[0].protocol, 6);
  EXPECT_EQ(document.tests[0].port, 22);
  EXPECT_TRUE(document.tests[0].expect_allow);
  EXPECT_EQ(document.tests[4].model, "anthropic/claude-sonnet-4-5");
  EXPECT_FALSE(document.tests[4].expect_allow);
}

TEST(Document, DefaultsForOptionalSections) {
  const Document document = parsed(R"({"version": 1})");
  EXPECT_TRUE(document.peers.empty());
  EXPECT_TRUE(document.providers.empty());
  EXPECT_FALSE(document.request_log.bodies);
  EXPECT_EQ(document.request_log.max_body_bytes, 64u * 1024);
}

TEST(Document, IdentitiesResolveGroupsFromPeersAndDefinitions) {
  const auto identities = parsed(full_document()).identities();
  ASSERT_EQ(identities.size(), 3u);
  EXPECT_EQ(identities[0].user, "alice");
  EXPECT_EQ(identities[0].device, "laptop");
  EXPECT_EQ(identities[0].public_key, filled_key(0xa1));
  EXPECT_EQ(identities[0].groups, (std::vector<std::string>{"eng", "admins"}));
  EXPECT_EQ(identities[1].user, "bob");
  EXPECT_EQ(identities[1].tags, std::vector<std::string>{"ci"});
  EXPECT_EQ(identities[1].groups, std::vector<std::string>{"builders"});
  EXPECT_EQ(identities[2].groups, std::vector<std::string>{"builders"});
}

TEST(Document, IdentityOfAddressIsTheLongestPrefix) {
  const Document document = parsed(full_document());
  EXPECT_EQ(document.identity_of_address(address("100.80.0.2"))->user, "alice");
  EXPECT_EQ(document.identity_of_address(address("fd00:80::2"))->user, "alice");
  EXPECT_EQ(document.identity_of_address(address("100.80.1.8"))->user, "bob");
  EXPECT_EQ(document.identity_of_address(address("100.80.1.7"))->user, "ci-runner");
  EXPECT_EQ(document.identity_of_address(address("fd00:81::1234"))->user, "bob");
  EXPECT_FALSE(document.identity_of_address(address("100.80.0.9")));
  EXPECT_FALSE(document.identity_of_address(address("fd00:82::1")));
  // Groups are resolved here too.
  EXPECT_EQ(document.identity_of_address(address("100.80.1.7"))->groups,
            std::vector<std::string>{"builders"});
}

TEST(Document, IdentityOfKey) {
  const Document document = parsed(full_document());
  EXPECT_EQ(document.identity_of_key(filled_key(0xc1))->device, "runner-7");
  EXPECT_FALSE(document.identity_of_key(filled_key(0x77)));
}

TEST(Document, SelectorsMatchLikeTheDataPlane) {
  const Identity alice = parsed(full_document()).identities()[0];
  for (const std::string& selector :
       std::vector<std::string>{"*", "alice", "user:alice", "group:eng", "group:admins",
                                "device:laptop", "peer:" + key_text(0xa1)}) {
    EXPECT_TRUE(Document::selector_matches(selector, alice)) << selector;
  }
  for (const std::string& selector :
       std::vector<std::string>{"bob", "user:bob", "group:builders", "tag:ci", "device:phone",
                                "peer:" + key_text(0xb0), "usr:alice", "", "user:"}) {
    EXPECT_FALSE(Document::selector_matches(selector, alice)) << selector;
  }
}

TEST(Document, GrantsDefaultDeny) {
  const Document document = parsed(full_document());
  const auto identities = document.identities();
  const Identity& alice = identities[0];
  const Identity& bob = identities[1];
  EXPECT_TRUE(document.model_granted(alice, "anthropic", "claude-sonnet-4-5"));
  EXPECT_TRUE(document.model_granted(alice, "openai", "gpt-5-mini"));
  EXPECT_FALSE(document.model_granted(alice, "anthropic", "claude-opus-4-1"));
  EXPECT_FALSE(document.model_granted(alice, "openai", "claude-sonnet-4-5"));
  EXPECT_FALSE(document.model_granted(alice, "local", "llama-3"));
  EXPECT_TRUE(document.model_granted(bob, "local", "llama-3"));
  EXPECT_FALSE(document.model_granted(bob, "anthropic", "claude-sonnet-4-5"));

  Document no_grants = document;
  no_grants.grants.clear();
  EXPECT_FALSE(no_grants.model_granted(alice, "anthropic", "claude-sonnet-4-5"));
  Document everything = document;
  everything.grants = {GrantSpec{{"user:bob"}, {"*"}, {}}};
  EXPECT_TRUE(everything.model_granted(bob, "openai", "anything"));
  EXPECT_FALSE(everything.model_granted(alice, "openai", "gpt-5"));
}

TEST(Document, ProviderForModelIsTheFirstWhoseGlobsMatch) {
  const Document document = parsed(full_document());
  EXPECT_EQ(document.provider_for_model("claude-sonnet-4-5")->name, "anthropic");
  EXPECT_EQ(document.provider_for_model("gpt-5")->name, "openai");
  EXPECT_EQ(document.provider_for_model("o3-mini")->name, "openai");
  EXPECT_EQ(document.provider_for_model("o10-mini")->name, "local");  // '?' is one character
  EXPECT_EQ(document.provider_for_model("llama-3")->name, "local");
  Document without_catch_all = document;
  without_catch_all.providers.pop_back();
  EXPECT_EQ(without_catch_all.provider_for_model("llama-3"), nullptr);
}

TEST(Document, ProviderKindNames) {
  for (const auto kind : {ProviderKind::kOpenAi, ProviderKind::kAnthropic, ProviderKind::kGemini,
                          ProviderKind::kOpenAiCompatible}) {
    EXPECT_EQ(parse_provider_kind(provider_kind_name(kind)), kind);
  }
  EXPECT_EQ(provider_kind_name(ProviderKind::kOpenAiCompatible), "openai-compatible");
  EXPECT_FALSE(parse_provider_kind("OpenAI"));
}

TEST(Glob, StarAndQuestionMark) {
  EXPECT_TRUE(glob_match("claude-*", "claude-sonnet-4-5"));
  EXPECT_TRUE(glob_match("claude-*", "claude-"));
  EXPECT_FALSE(glob_match("claude-*", "claude"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("*", "models/gemini-2.5-pro"));  // '*' crosses '/'
  EXPECT_TRUE(glob_match("gpt-?o", "gpt-4o"));
  EXPECT_FALSE(glob_match("gpt-?o", "gpt-o"));
  EXPECT_TRUE(glob_match("a*b*c", "axxbyybzc"));
  EXPECT_FALSE(glob_match("a*b*c", "axxbyybz"));
  EXPECT_TRUE(glob_match("*-mini", "o4-mini"));
  EXPECT_FALSE(glob_match("GPT-*", "gpt-5"));  // case-sensitive
  EXPECT_TRUE(glob_match("exact", "exact"));
  EXPECT_FALSE(glob_match("exact", "exact2"));
  EXPECT_FALSE(glob_match("", "x"));
}

TEST(Document, CompileFoldsGroupDefinitionsIntoTheBuffer) {
  std::string error;
  const auto bytes = compile(parsed(full_document()), &error);
  ASSERT_TRUE(bytes) << error;
  const auto loaded = load_policy(*bytes, &error);
  ASSERT_TRUE(loaded) << error;
  const Policy& policy = *loaded->root();
  EXPECT_EQ(policy.version(), 7u);
  ASSERT_EQ(policy.peers()->size(), 3u);
  const auto* groups = policy.peers()->Get(0)->identity()->groups();
  ASSERT_NE(groups, nullptr);
  ASSERT_EQ(groups->size(), 2u);
  EXPECT_EQ(groups->Get(0)->str(), "eng");
  EXPECT_EQ(groups->Get(1)->str(), "admins");
  EXPECT_EQ(policy.peers()->Get(1)->identity()->groups()->Get(0)->str(), "builders");
  EXPECT_EQ(policy.rules()->size(), 3u);
  EXPECT_EQ(policy.gateway()->size(), 2u);
}

TEST(Document, CompileOfALegacyDocumentEqualsCompilePolicyJson) {
  const std::string legacy = R"({
  "version": 3, "gateway": ["100.80.0.1/32"],
  "peers": [{"public_key": ")" +
                             key_text(0xa1) + R"(", "preshared_key": ")" + key_text(0x5e) +
                             R"(",
             "allowed_ips": ["100.80.0.2/32"], "user": "alice", "groups": ["eng"],
             "endpoint": "198.51.100.3:51820", "persistent_keepalive": 25}],
  "rules": [{"from": ["group:eng"], "to": ["*"], "proto": "udp", "ports": "53",
             "action": "punt"}]
})";
  std::string error;
  const auto document = parse_document(legacy, "legacy.json", &error);
  ASSERT_TRUE(document) << error;
  const auto compiled = compile(*document, &error);
  ASSERT_TRUE(compiled) << error;
  EXPECT_TRUE(load_policy(*compiled, &error)) << error;
  const auto legacy_compiled = compile_policy_json(legacy, &error);
  ASSERT_TRUE(legacy_compiled) << error;
  EXPECT_EQ(*compiled, *legacy_compiled);
}

TEST(DocumentErrors, CompilePolicyJsonKeepsPathOnlyErrors) {
  std::string error;
  EXPECT_FALSE(
      compile_policy_json(replaced(full_document(), "\"output\": 15", "\"output\": -1"), &error));
  EXPECT_EQ(error.rfind("prices.anthropic/claude-sonnet-4-5.output: ", 0), 0u) << error;
}

TEST(DocumentErrors, UnknownAndDuplicateKeysNameTheirLine) {
  std::string text = replaced(full_document(), "\"passthrough\": true", "\"pasthrough\": true");
  EXPECT_EQ(parse_error(text),
            at_line(line_of(text, "pasthrough")) + "providers[2]: unknown key \"pasthrough\"");
  text = replaced(full_document(), "\"request_log\": {", "\"request_logs\": {");
  EXPECT_EQ(parse_error(text),
            at_line(line_of(text, "request_logs")) + "unknown key \"request_logs\"");
  text = replaced(full_document(), "\"max_body_bytes\": 4096}",
                  "\"max_body_bytes\": 4096,\n    \"bodies\": false}");
  EXPECT_EQ(parse_error(text),
            at_line(line_of(text, "\"bodies\": false")) + "request_log.bodies: duplicate key");
}

TEST(DocumentErrors, InvalidJsonNamesTheLine) {
  const std::string text = replaced(full_document(), "\"version\": 7,", "\"version\": 7,,");
  const std::string error = parse_error(text);
  EXPECT_EQ(error.rfind(at_line(line_of(text, "\"version\"")) + "invalid JSON: ", 0), 0u) << error;
}

TEST(DocumentErrors, PeerErrorsNameTheirLine) {
  std::string text = replaced(full_document(), "100.80.1.7/32", "100.80.1.7/33");
  EXPECT_EQ(parse_error(text), at_line(line_of(text, "100.80.1.7/33")) +
                                   "peers[2].allowed_ips[0]: prefix length 33 exceeds 32 for IPv4");
  text = replaced(full_document(), key_text(0xc1), key_text(0xa1));
  EXPECT_EQ(parse_error(text),
            at_line(line_of(text, "\"ci-runner\"")) + "peers[2].public_key: same key as peers[0]");
  text = replaced(full_document(), "100.80.1.7/32", "100.80.0.2/32");
  EXPECT_EQ(parse_error(text), at_line(line_of(text, "\"ci-runner\"")) +
                                   "peers[2].allowed_ips[0]: 100.80.0.2/32 is already assigned "
                                   "to peers[0]");
  text = replaced(full_document(), "\"user\": \"ci-runner\",", "");
  EXPECT_EQ(parse_error(text), at_line(line_of(text, key_text(0xc1))) + "peers[2].user: required");
}

TEST(DocumentErrors, KeyRefIsNeverEchoed) {
  const std::string pasted_key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789";
  for (const std::string& bad :
       {pasted_key, std::string("env:"), std::string("env:1ABC"), std::string("env:A-B"),
        std::string("file:relative/key"), std::string("file:/"), std::string("ENV:KEY"),
        std::string("file:/etc/key\\u0001")}) {
    const std::string text =
        replaced(full_document(), "\"env:ANTHROPIC_API_KEY\"", "\"" + bad + "\"");
    const std::string error = parse_error(text);
    EXPECT_EQ(error, at_line(line_of(text, "\"key\"")) +
                         "providers[0].key: must be \"env:NAME\" or \"file:/absolute/path\" "
                         "(the value is not shown: it may be a key)")
        << bad;
  }
  const std::string text =
      replaced(full_document(), "\"env:ANTHROPIC_API_KEY\"", "\"" + pasted_key + "\"");
  EXPECT_EQ(parse_error(text).find("sk-ant"), std::string::npos);
  std::string error;
  EXPECT_FALSE(compile_policy_json(text, &error));
  EXPECT_EQ(error.find("sk-ant"), std::string::npos);
  // A syntax error inside the value must not quote it either.
  const std::string broken =
      replaced(full_document(), "\"env:ANTHROPIC_API_KEY\"", "\"" + pasted_key + "\n\"");
  EXPECT_EQ(parse_error(broken).find("sk-ant"), std::string::npos);
}

TEST(DocumentErrors, ProviderChecks) {
  const std::string base = full_document();
  const struct {
    std::string from, to, needle, expected;
  } cases[] = {
      {"\"name\": \"local\"", "\"name\": \"openai\"", "\"name\": \"openai\", \"kind\": \"openai-",
       "providers[2].name: \"openai\" is already defined by providers[1]"},
      {"\"name\": \"local\"", "\"name\": \"lo cal\"", "\"lo cal\"",
       "providers[2].name: \"lo cal\" is not a valid name (non-empty printable ASCII without "
       "whitespace)"},
      {"\"name\": \"local\"", "\"name\": \"lo/cal\"", "\"lo/cal\"",
       "providers[2].name: \"lo/cal\" must not contain '/'"},
      {"\"kind\": \"openai-compatible\"", "\"kind\": \"ollama\"", "\"ollama\"",
       "providers[2].kind: \"ollama\" is not openai, anthropic, gemini or openai-compatible"},
      {"\"http://127.0.0.1:8080\"", "\"ftp://127.0.0.1\"",
       "ftp:", "providers[2].base_url: must start with http:// or https://"},
      {"\"http://127.0.0.1:8080\"", "\"127.0.0.1:8080\"", "\"127.0.0.1:8080\"",
       "providers[2].base_url: must start with http:// or https://"},
      {"\"http://127.0.0.1:8080\"", "\"https:///v1\"", "https:///v1",
       "providers[2].base_url: has no host"},
      {"\"http://127.0.0.1:8080\"", "\"http://127.0.0.1:0\"", "127.0.0.1:0",
       "providers[2].base_url: has an invalid port"},
      {"\"http://127.0.0.1:8080\"", "\"http://[::1]:8080/v1\"", "", ""},
      {"\"http://127.0.0.1:8080\"", "\"https://api host\"", "api host",
       "providers[2].base_url: must not contain whitespace, control or non-ASCII characters"},
      {"\"models\": [\"*\"]", "\"models\": []", "\"models\": []",
       "providers[2].models: empty (use [\"*\"] for every model)"},
      {"\"passthrough\": true", "\"passthrough\": \"yes\"", "\"yes\"",
       "providers[2].passthrough: expected true or false"},
      {"\"passthrough\": true", "\"passthrough\": true, \"key\": \"env:K\"", "env:K",
       "providers[2]: key and passthrough exclude each other"},
      {"\"kind\": \"openai-compatible\", ", "", "\"name\": \"local\"",
       "providers[2].kind: required"},
  };
  for (const auto& c : cases) {
    const std::string text = replaced(base, c.from, c.to);
    if (c.expected.empty()) {
      parsed(text);
      continue;
    }
    EXPECT_EQ(parse_error(text), at_line(line_of(text, c.needle)) + c.expected) << c.to;
  }
  // Credentials in a URL are refused without repeating them.
  const std::string text =
      replaced(base, "\"http://127.0.0.1:8080\"", "\"https://me:s3cret@api.example\"");
  const std::string error = parse_error(text);
  EXPECT_EQ(error,
            at_line(line_of(text, "s3cret")) +
                "providers[2].base_url: must not carry credentials (use \"key\": \"env:NAME\")");
  EXPECT_EQ(error.find("s3cret"), std::string::npos);
}

TEST(DocumentErrors, GrantsGroupsPricesAndRequestLog) {
  const std::string base = full_document();
  const struct {
    std::string from, to, needle, expected;
  } cases[] = {
      {"\"local/*\"", "\"lokal/*\"", "lokal",
       "grants[1].models[0]: no provider named \"lokal\" (defined: anthropic, openai, local)"},
      {"\"local/*\"", "\"llama-*\"", "llama",
       "grants[1].models[0]: \"llama-*\" is not \"PROVIDER/MODEL_GLOB\" or \"*\""},
      {"\"local/*\"", "\"local/\"", "\"local/\"",
       "grants[1].models[0]: \"local/\" is not \"PROVIDER/MODEL_GLOB\" or \"*\""},
      {"\"local/*\"", "\"local/*\", \"openai/o?-mini\"", "", ""},
      {"{\"from\": [\"tag:ci\"], ", "{\"from\": [], ", "\"from\": []",
       "grants[1].from: empty (use [\"*\"] for everyone)"},
      {"{\"from\": [\"tag:ci\"], ", "{\"from\": [\"tags:ci\"], ", "tags:ci",
       "grants[1].from[0]: \"tags:ci\": unknown selector kind \"tags\" (expected user, group, "
       "tag, device or peer)"},
      {"\"builders\": [\"tag:ci\"]", "\"builders\": [\"tag:ci\", \"group:admins\"]", "\"builders\"",
       "groups.builders[1]: \"group:admins\": groups cannot contain groups"},
      {"\"builders\": [\"tag:ci\"]", "\"builders\": [\"tag: ci\"]", "\"builders\"",
       "groups.builders[0]: \"tag: ci\": name must be non-empty printable ASCII without "
       "whitespace"},
      {"\"builders\": [\"tag:ci\"]", "\"build ers\": [\"tag:ci\"]", "\"build ers\"",
       "groups.build ers: \"build ers\" is not a valid group name (non-empty printable ASCII "
       "without whitespace)"},
      {"\"anthropic/claude-sonnet-4-5\": {", "\"antropic/claude-sonnet-4-5\": {", "antropic/",
       "prices.antropic/claude-sonnet-4-5: no provider named \"antropic\" (defined: anthropic, "
       "openai, local)"},
      {"\"anthropic/claude-sonnet-4-5\": {", "\"claude-sonnet-4-5\": {", "\"claude-sonnet-4-5\"",
       "prices.claude-sonnet-4-5: \"claude-sonnet-4-5\" is not \"PROVIDER/MODEL\""},
      {"\"input\": \"3\"", "\"input\": \"$3\"", "$3",
       "prices.anthropic/claude-sonnet-4-5.input: \"$3\" is not dollars per million tokens: "
       "non-negative digits with an optional decimal point and at most 6 decimals, e.g. "
       "\"3.75\""},
      {"\"input\": \"3\"", "\"input\": -3", "-3",
       "prices.anthropic/claude-sonnet-4-5.input: \"-3\" is not dollars per million tokens: "
       "non-negative digits with an optional decimal point and at most 6 decimals, e.g. "
       "\"3.75\""},
      {"\"input\": \"3\"", "\"input\": 1e-9", "1e-9",
       "prices.anthropic/claude-sonnet-4-5.input: \"1e-09\" is not dollars per million tokens: "
       "non-negative digits with an optional decimal point and at most 6 decimals, e.g. "
       "\"3.75\""},
      {"\"input\": \"3\"", "\"input\": \"3.\"", "\"3.\"",
       "prices.anthropic/claude-sonnet-4-5.input: \"3.\" is not dollars per million tokens: "
       "non-negative digits with an optional decimal point and at most 6 decimals, e.g. "
       "\"3.75\""},
      {"\"input\": \"3\"", "\"input\": true", "\"input\"",
       "prices.anthropic/claude-sonnet-4-5.input: expected dollars per million tokens as a "
       "number or a string"},
      {"\"input\": \"3\", ", "", "\"anthropic/claude-sonnet-4-5\"",
       "prices.anthropic/claude-sonnet-4-5.input: required"},
      {"\"cache_write\": \"3.75\"", "\"cache_write\": \"3.000001\"", "", ""},
      {"\"bodies\": true", "\"bodies\": 1", "\"bodies\"",
       "request_log.bodies: expected true or false"},
      {"\"max_body_bytes\": 4096", "\"max_body_bytes\": -1", "max_body_bytes",
       "request_log.max_body_bytes: expected an integer from 0 to 1073741824"},
  };
  for (const auto& c : cases) {
    const std::string text = replaced(base, c.from, c.to);
    if (c.expected.empty()) {
      parsed(text);
      continue;
    }
    EXPECT_EQ(parse_error(text), at_line(line_of(text, c.needle)) + c.expected) << c.to;
  }
}

TEST(DocumentErrors, MalformedTests) {
  const struct {
    std::string test, expected;
  } cases[] = {
      {R"({"from": "user:zed", "to": "100.80.1.9", "proto": "tcp", "port": 22, "expect": "deny"})",
       "tests[0].from: \"user:zed\" selects no peer"},
      {R"({"from": "user:alice", "to": "100.80.1.9", "proto": "tcp", "port": 22, "expect": "no"})",
       "tests[0].expect: \"no\" is not allow or deny"},
      {R"({"from": "user:alice", "to": "100.80.1.0/24", "proto": "tcp", "port": 22,
           "expect": "deny"})",
       "tests[0].to: \"100.80.1.0/24\" is not a single address"},
      {R"({"from": "user:alice", "to": "100.80.1.9", "proto": "tcp", "expect": "deny"})",
       "tests[0].port: required with proto tcp or udp"},
      {R"({"from": "user:alice", "to": "100.80.1.9", "proto": "icmp", "port": 1, "expect": "deny"})",
       "tests[0].port: only valid with proto tcp or udp"},
      {R"({"from": "user:alice", "to": "100.80.1.9", "proto": "any", "expect": "deny"})",
       "tests[0].proto: a packet has a protocol, not any"},
      {R"({"from": "user:alice", "to": "100.80.1.9", "expect": "deny"})",
       "tests[0].proto: required"},
      {R"({"from": "user:alice", "expect": "deny"})",
       "tests[0]: needs \"to\" (a network assertion) or \"model\""},
      {R"({"from": "user:alice", "to": "100.80.1.9", "model": "local/x", "expect": "deny"})",
       "tests[0]: \"model\" and \"to\" exclude each other"},
      {R"({"from": "user:alice", "model": "ollama/x", "expect": "deny"})",
       "tests[0].model: no provider named \"ollama\" (defined: anthropic, openai, local)"},
      {R"({"from": "user:alice", "model": "local/x", "port": 1, "expect": "deny"})",
       "tests[0].port: only valid with \"to\""},
      {R"({"from": "user:alice", "model": "local/x", "expected": "deny"})",
       "tests[0]: unknown key \"expected\""},
  };
  for (const auto& c : cases) {
    const std::string text = with_tests(c.test);
    EXPECT_EQ(parse_error(text), at_line(line_of(text, "\"from\"", "\"tests\"")) + c.expected)
        << c.test;
  }
}

TEST(PolicyTests, FailingNetworkAssertionsNameTheDecidingRule) {
  const struct {
    std::string test, expected;
  } cases[] = {
      {R"({"from": "user:alice", "to": "100.80.1.9", "proto": "tcp", "port": 22, "expect": "deny"})",
       "tests[0]: expected deny but rule \"ssh-to-sandboxes\" (rules[0]) forwards user:alice -> "
       "100.80.1.9 tcp/22"},
      {R"({"from": "user:alice", "to": "100.80.1.9", "proto": "tcp", "port": 23, "expect": "allow"})",
       "tests[0]: expected allow but no rule matched (default deny) for user:alice -> 100.80.1.9 "
       "tcp/23"},
      {R"({"from": "user:bob", "to": "100.80.0.1", "proto": "tcp", "port": 80, "expect": "deny"})",
       "tests[0]: expected deny but rule \"gateway\" (rules[1]) punts user:bob -> 100.80.0.1 "
       "tcp/80"},
      {R"({"from": "tag:ci", "to": "100.80.0.2", "proto": "udp", "port": 53, "expect": "allow"})",
       "tests[0]: expected allow but rule \"sandboxes\" (rules[2]) drops tag:ci (peers[1], user "
       "bob) -> 100.80.0.2 udp/53"},
      {R"({"from": "user:alice", "to": "fd00:81::9", "proto": 47, "expect": "allow"})",
       "tests[0]: expected allow but no rule matched (default deny) for user:alice -> fd00:81::9 "
       "proto 47"},
  };
  for (const auto& c : cases) {
    const std::string text = with_tests(c.test);
    EXPECT_EQ(parse_error(text), at_line(line_of(text, "\"from\"", "\"tests\"")) + c.expected)
        << c.test;
  }
}

TEST(PolicyTests, FailingModelAssertionsSayWhy) {
  const struct {
    std::string test, expected;
  } cases[] = {
      {R"({"from": "user:alice", "model": "anthropic/claude-sonnet-4-5", "expect": "deny"})",
       "tests[0]: expected deny but grants[0] gives user:alice anthropic/claude-sonnet-4-5"},
      {R"({"from": "user:alice", "model": "anthropic/claude-opus-4-1", "expect": "allow"})",
       "tests[0]: expected allow but no grant gives user:alice anthropic/claude-opus-4-1 "
       "(default deny)"},
      {R"({"from": "user:alice", "model": "openai/claude-sonnet-4-5", "expect": "allow"})",
       "tests[0]: expected allow but \"claude-sonnet-4-5\" is served by provider \"anthropic\""},
  };
  for (const auto& c : cases) {
    const std::string text = with_tests(c.test);
    EXPECT_EQ(parse_error(text), at_line(line_of(text, "\"from\"", "\"tests\"")) + c.expected)
        << c.test;
  }
  // No provider at all serves the model once the catch-all is gone.
  std::string text =
      with_tests(R"({"from": "user:bob", "model": "local/llama-3", "expect": "allow"})");
  parsed(text);
  text = replaced(text, "\"models\": [\"*\"]", "\"models\": [\"llama-*\"]");
  text = replaced(text, "\"local/llama-3\"", "\"local/mistral\"");
  EXPECT_EQ(parse_error(text), at_line(line_of(text, "\"from\"", "\"tests\"")) +
                                   "tests[0]: expected allow but no provider serves \"mistral\"");
}

TEST(PolicyTests, PassingAssertionsAreAccepted) {
  parsed(with_tests(
      R"({"from": "group:builders", "to": "100.80.0.2", "proto": "tcp", "port": 22, "expect": "deny"},
    {"from": "device:laptop", "to": "100.80.0.1", "proto": "tcp", "port": 80, "expect": "allow"},
    {"from": "*", "to": "fd00:80::1", "proto": "udp", "port": 53, "expect": "deny"},
    {"from": "tag:ci", "model": "local/llama-3", "expect": "allow"},
    {"from": "group:eng", "model": "openai/gpt-5", "expect": "allow"},
    {"from": "user:alice", "model": "openai/gpt-4o", "expect": "deny"})"));
}

TEST(PolicyTests, EvaluateFlowMatchesPortsOnlyForTcpAndUdp) {
  Document document = parsed(full_document());
  // A rule with a port range that excludes 0 never matches a protocol without ports.
  document.rules = {RuleSpec{"sctp-9", {"*"}, {}, 132, 9, 9, Action::Forward}};
  const Identity alice = document.identities()[0];
  EXPECT_FALSE(evaluate_flow(document, alice, address("100.80.1.9"), 132, 9).allowed());
  document.rules = {RuleSpec{"sctp-any", {"*"}, {}, 132, 0, 65535, Action::Forward}};
  const FlowVerdict verdict = evaluate_flow(document, alice, address("100.80.1.9"), 132, 9);
  EXPECT_TRUE(verdict.allowed());
  EXPECT_EQ(verdict.rule, 0u);
}

TEST(Document, ParsesBudgetsLimitsGuardrailsAndHooks) {
  const std::string text = full_document();
  const Document document = parsed(text);

  // The budgets object is read in key order.
  ASSERT_EQ(document.budgets.size(), 5u);
  const auto budget = [&](const std::string& name) -> const BudgetSpec& {
    const auto it = std::find_if(document.budgets.begin(), document.budgets.end(),
                                 [&](const BudgetSpec& spec) { return spec.name == name; });
    EXPECT_NE(it, document.budgets.end()) << name;
    return *it;
  };
  const BudgetSpec& team = budget("team");
  EXPECT_EQ(team.scope, BudgetScope::kUser);
  EXPECT_EQ(team.usd_picodollars, 25'500'000'000'000);
  EXPECT_EQ(team.tokens, 2'000'000u);
  EXPECT_EQ(team.window, BudgetWindow::kDay);
  EXPECT_EQ(team.thresholds_percent, (std::vector<uint32_t>{50, 90}));
  EXPECT_EQ(team.line, line_of(text, "\"team\": {"));
  const BudgetSpec& sonnet = budget("sonnet");
  EXPECT_EQ(sonnet.scope, BudgetScope::kDevice);
  EXPECT_EQ(sonnet.usd_picodollars, 5'000'000'000'000);
  EXPECT_FALSE(sonnet.tokens);
  EXPECT_EQ(sonnet.window, BudgetWindow::kBucket);
  EXPECT_EQ(sonnet.refill_picodollars, 1);  // the twelfth decimal is kept exactly
  EXPECT_EQ(sonnet.refill_tokens, 0u);
  EXPECT_EQ(sonnet.refill_every_s, 3600u);
  EXPECT_EQ(sonnet.thresholds_percent, (std::vector<uint32_t>{50, 80, 100}));
  EXPECT_EQ(budget("ci").scope, BudgetScope::kTag);
  EXPECT_EQ(budget("ci").window, BudgetWindow::kMonth);
  EXPECT_FALSE(budget("ci").usd_picodollars);
  EXPECT_EQ(budget("builders").scope, BudgetScope::kGroup);
  EXPECT_EQ(budget("builders").usd_picodollars, 100'250'000'000'000);
  EXPECT_EQ(budget("pool").scope, BudgetScope::kShared);
  EXPECT_EQ(budget("pool").window, BudgetWindow::kDay);

  ASSERT_EQ(document.grants[0].budgets.size(), 3u);
  EXPECT_EQ(document.grants[0].budgets[0].name, "team");
  EXPECT_TRUE(document.grants[0].budgets[0].models.empty());
  EXPECT_EQ(document.grants[0].budgets[1].name, "sonnet");
  EXPECT_EQ(document.grants[0].budgets[1].models,
            std::vector<std::string>{"anthropic/claude-sonnet-4-*"});
  EXPECT_EQ(document.default_max_output_tokens, 8192u);
  EXPECT_EQ(document.reference_input_tokens, 100000u);

  ASSERT_EQ(document.rate_limits.size(), 2u);
  EXPECT_EQ(document.rate_limits[0].scope, BudgetScope::kDevice);
  EXPECT_EQ(document.rate_limits[0].requests_per_minute, 60u);
  EXPECT_EQ(document.rate_limits[0].tokens_per_minute, 200'000u);
  EXPECT_EQ(document.rate_limits[0].concurrent_streams, 4u);
  EXPECT_EQ(document.rate_limits[1].scope, BudgetScope::kUser);
  EXPECT_FALSE(document.rate_limits[1].tokens_per_minute);

  ASSERT_EQ(document.guardrails.size(), 2u);
  const GuardrailSpec& secrets = document.guardrails[0];
  EXPECT_EQ(secrets.name, "secrets");
  EXPECT_TRUE(secrets.from.empty());
  EXPECT_EQ(secrets.builtin, (std::vector<std::string>{"provider_keys", "private_keys"}));
  EXPECT_EQ(secrets.prompt, PromptAction::kRedact);
  EXPECT_EQ(secrets.response, ResponseAction::kCut);
  EXPECT_EQ(secrets.line, line_of(text, "{\"name\": \"secrets\""));
  ASSERT_EQ(secrets.patterns.size(), 2u);
  EXPECT_EQ(secrets.patterns[0].name, "aws-key");
  EXPECT_EQ(secrets.patterns[0].expression, "AKIA[0-9A-Z]{16}");
  EXPECT_FALSE(secrets.patterns[0].literal);
  EXPECT_FALSE(secrets.patterns[0].case_insensitive);
  EXPECT_EQ(secrets.patterns[0].line, line_of(text, "\"aws-key\""));
  EXPECT_TRUE(secrets.patterns[1].literal);
  EXPECT_TRUE(secrets.patterns[1].case_insensitive);
  EXPECT_EQ(secrets.patterns[1].expression, "rm -rf /");
  EXPECT_EQ(secrets.patterns[1].line, line_of(text, "\"rm-root\""));
  EXPECT_EQ(document.guardrails[1].from, std::vector<std::string>{"tag:ci"});
  EXPECT_EQ(document.guardrails[1].prompt, PromptAction::kBlock);
  EXPECT_EQ(document.guardrails[1].response, ResponseAction::kFlag);

  ASSERT_EQ(document.webhooks.size(), 2u);
  EXPECT_EQ(document.webhooks[0].url, "https://hooks.example/airlock");
  EXPECT_EQ(document.webhooks[0].secret_ref, "env:AIRLOCK_HOOK_SECRET");
  EXPECT_EQ(document.webhooks[0].events,
            (std::vector<std::string>{"budget.exceeded", "guardrail.match"}));
  EXPECT_EQ(document.webhooks[1].secret_ref, "file:/etc/airlock/hook.secret");
  EXPECT_EQ(document.webhooks[1].events.size(), 7u);  // absent: every event

  ASSERT_EQ(document.pre_request_hooks.size(), 2u);
  EXPECT_EQ(document.pre_request_hooks[0].url, "http://127.0.0.1:7000/check");
  EXPECT_EQ(document.pre_request_hooks[0].timeout_ms, 300u);
  EXPECT_TRUE(document.pre_request_hooks[0].fail_open);
  EXPECT_EQ(document.pre_request_hooks[1].timeout_ms, 500u);
  EXPECT_FALSE(document.pre_request_hooks[1].fail_open);
  EXPECT_TRUE(document.pre_request_hooks[1].from.empty());

  // The data plane's buffer does not change with the control plane's sections.
  std::string error;
  EXPECT_TRUE(compile_policy_json(text, &error)) << error;
}

TEST(Document, DefaultsOfTheControlPlaneSections) {
  const Document document = parsed(R"({"version": 1})");
  EXPECT_TRUE(document.budgets.empty());
  EXPECT_EQ(document.default_max_output_tokens, 4096u);
  EXPECT_EQ(document.reference_input_tokens, 32768u);
  EXPECT_TRUE(document.rate_limits.empty());
  EXPECT_TRUE(document.guardrails.empty());
  EXPECT_TRUE(document.webhooks.empty());
  EXPECT_TRUE(document.pre_request_hooks.empty());
}

TEST(Document, BudgetsForFollowTheScopeAndTheModelRestriction) {
  const Document document = parsed(full_document());
  const auto identities = document.identities();
  const Identity& alice = identities[0];  // groups eng, admins; no tags
  const Identity& bob = identities[1];    // tag ci, group builders
  const auto keys = [&](const Identity& identity, std::string_view provider,
                        std::string_view model) {
    std::vector<std::string> result;
    for (const auto& charge : document.budgets_for(identity, provider, model)) {
      EXPECT_EQ(charge.balance_key.substr(0, charge.balance_key.find('|')), charge.budget->name);
      result.push_back(charge.balance_key);
    }
    return result;
  };
  EXPECT_EQ(keys(alice, "anthropic", "claude-sonnet-4-5"),
            (std::vector<std::string>{"team|user:alice", "sonnet|peer:" + key_text(0xa1),
                                      "pool|shared"}));
  // "sonnet" is restricted to claude-sonnet-4-*; the grant itself gives more.
  EXPECT_EQ(keys(alice, "anthropic", "claude-sonnet-3-7"),
            (std::vector<std::string>{"team|user:alice", "pool|shared"}));
  EXPECT_EQ(keys(alice, "openai", "gpt-5"),
            (std::vector<std::string>{"team|user:alice", "pool|shared"}));
  EXPECT_TRUE(keys(alice, "local", "llama-3").empty());  // no grant, no budget
  EXPECT_EQ(keys(bob, "local", "llama-3"),
            (std::vector<std::string>{"ci|tag:ci", "builders|group:builders", "team|user:bob"}));
  EXPECT_TRUE(keys(bob, "anthropic", "claude-sonnet-4-5").empty());

  // One charge per tag and per group the caller has.
  Identity tagged = bob;
  tagged.tags.push_back("gpu");
  tagged.groups.push_back("night-shift");
  EXPECT_EQ(keys(tagged, "local", "llama-3"),
            (std::vector<std::string>{"ci|tag:ci", "ci|tag:gpu", "builders|group:builders",
                                      "builders|group:night-shift", "team|user:bob"}));

  // Two peers with the same device name keep separate per-device balances.
  Identity other_laptop = alice;
  other_laptop.public_key = filled_key(0x77);
  EXPECT_EQ(keys(other_laptop, "anthropic", "claude-sonnet-4-5")[1],
            "sonnet|peer:" + key_text(0x77));

  // A budget named by several matching grants is charged once, in grant order; a per-tag budget
  // charges nothing to a caller without tags.
  Document overlapping = document;
  overlapping.grants.push_back(GrantSpec{{"*"}, {"*"}, {{"ci", {}}, {"team", {}}}});
  std::vector<std::string> overlapping_keys;
  for (const auto& charge : overlapping.budgets_for(alice, "openai", "gpt-5")) {
    overlapping_keys.push_back(charge.balance_key);
  }
  EXPECT_EQ(overlapping_keys, (std::vector<std::string>{"team|user:alice", "pool|shared"}));
}

TEST(Document, LimitsGuardrailsAndHooksForAnIdentity) {
  const Document document = parsed(full_document());
  const auto identities = document.identities();
  const Identity& alice = identities[0];
  const Identity& bob = identities[1];
  EXPECT_EQ(document.rate_limits_for(alice),
            std::vector<const RateLimitSpec*>{&document.rate_limits[1]});
  EXPECT_EQ(
      document.rate_limits_for(bob),
      (std::vector<const RateLimitSpec*>{&document.rate_limits[0], &document.rate_limits[1]}));
  // No "from": everyone.
  EXPECT_EQ(document.guardrails_for(alice),
            std::vector<const GuardrailSpec*>{&document.guardrails[0]});
  EXPECT_EQ(document.guardrails_for(bob),
            (std::vector<const GuardrailSpec*>{&document.guardrails[0], &document.guardrails[1]}));
  EXPECT_EQ(document.pre_request_hooks_for(alice),
            (std::vector<const PreRequestHookSpec*>{&document.pre_request_hooks[0],
                                                    &document.pre_request_hooks[1]}));
  EXPECT_EQ(document.pre_request_hooks_for(bob),
            std::vector<const PreRequestHookSpec*>{&document.pre_request_hooks[1]});
}

TEST(DocumentErrors, BudgetsAndGrantBudgets) {
  const std::string base = full_document();
  const std::string not_dollars =
      " is not dollars: non-negative digits with an optional decimal point and at most 12 "
      "decimals, e.g. \"25.50\"";
  const struct {
    std::string from, to, needle, expected;
  } cases[] = {
      {"\"window\": \"day\"", "\"window\": \"fortnight\"", "fortnight",
       "budgets.team.window: unknown window \"fortnight\" (minute, hour, day, week, month, "
       "bucket)"},
      {"\"per\": \"user\"", "\"per\": \"team\"", "\"per\": \"team\"",
       "budgets.team.per: unknown scope \"team\" (user, device, tag, group, shared)"},
      {"\"pool\": {\"per\": \"shared\", \"usd\": \"2000\"}", "\"pool\": {\"per\": \"shared\"}",
       "\"pool\": {", "budgets.pool: needs \"usd\" or \"tokens\""},
      {"\"pool\": {", "\"\": {", "\"\": {",
       "budgets.: \"\" is not a valid budget name (non-empty printable ASCII without whitespace "
       "or '|')"},
      {"\"pool\": {", "\"po|ol\": {", "po|ol",
       "budgets.po|ol: \"po|ol\" is not a valid budget name (non-empty printable ASCII without "
       "whitespace or '|')"},
      {"\"window\": \"month\"", "\"windows\": \"month\"", "windows",
       "budgets.ci: unknown key \"windows\""},
      {"\"window\": \"month\"", "\"window\": \"bucket\"", "\"ci\": {",
       "budgets.ci.refill: required with \"window\": \"bucket\""},
      {"\"usd\": 5, \"window\": \"bucket\"", "\"usd\": 5, \"window\": \"hour\"", "\"refill\"",
       "budgets.sonnet.refill: only valid with \"window\": \"bucket\""},
      {"\"every\": \"hour\"", "\"every\": \"fortnight\"", "fortnight",
       "budgets.sonnet.refill.every: unknown period \"fortnight\" (second, minute, hour, day)"},
      {"\"refill\": {\"usd\": \"0.000000000001\", ", "\"refill\": {", "\"refill\"",
       "budgets.sonnet.refill.usd: required (the budget has \"usd\")"},
      {"\"every\": \"hour\"", "\"every\": \"hour\", \"tokens\": 5", "\"refill\"",
       "budgets.sonnet.refill.tokens: only valid when the budget has \"tokens\""},
      {"[50, 90]", "[90, 50]", "[90, 50]",
       "budgets.team.thresholds[1]: 50 does not follow 90 (ascending)"},
      {"[50, 90]", "[50, 50]", "[50, 50]",
       "budgets.team.thresholds[1]: 50 does not follow 50 (ascending)"},
      {"[50, 90]", "[0, 50]", "[0, 50]",
       "budgets.team.thresholds[0]: expected an integer from 1 to 100"},
      {"[50, 90]", "[50, 101]", "[50, 101]",
       "budgets.team.thresholds[1]: expected an integer from 1 to 100"},
      {"\"usd\": \"25.5\"", "\"usd\": \"-1\"", "\"-1\"", "budgets.team.usd: \"-1\"" + not_dollars},
      {"\"usd\": \"25.5\"", "\"usd\": \"0.0000000000001\"", "0.0000000000001",
       "budgets.team.usd: \"0.0000000000001\"" + not_dollars},
      {"\"usd\": \"25.5\"", "\"usd\": \"9223372.036854775808\"", "9223372",
       "budgets.team.usd: \"9223372.036854775808\" exceeds the largest amount, "
       "9223372.036854775807"},
      {"\"usd\": \"25.5\"", "\"usd\": \"9223372.036854775807\"", "", ""},
      {"\"tokens\": 100000", "\"tokens\": \"100000\"", "\"100000\"",
       "budgets.ci.tokens: expected an integer from 0 to 18446744073709551615"},
      {"\"budgets\": [\"ci\", ", "\"budgets\": [\"cj\", ", "\"cj\"",
       "grants[1].budgets[0]: no budget named \"cj\" (defined: builders, ci, pool, sonnet, "
       "team)"},
      {"\"name\": \"sonnet\"", "\"name\": \"sonet\"", "sonet",
       "grants[0].budgets[1].name: no budget named \"sonet\" (defined: builders, ci, pool, "
       "sonnet, team)"},
      {", \"pool\"]}", ", 5]}", ", 5]",
       "grants[0].budgets[2]: expected a budget name or {\"name\": ..., \"models\": [...]}"},
      {"\"name\": \"sonnet\", ", "", "\"models\": [\"anthropic/claude-sonnet-4-*\"]",
       "grants[0].budgets[1].name: required"},
      {"\"anthropic/claude-sonnet-4-*\"", "\"antropic/claude-sonnet-4-*\"", "antropic",
       "grants[0].budgets[1].models[0]: no provider named \"antropic\" (defined: anthropic, "
       "openai, local)"},
      {"\"anthropic/claude-sonnet-4-*\"", "\"*\"", "\"name\": \"sonnet\"",
       "grants[0].budgets[1].models[0]: \"*\" is not \"PROVIDER/MODEL_GLOB\""},
      {"\"anthropic/claude-sonnet-4-*\"", "\"local/llama-*\"", "local/llama",
       "grants[0].budgets[1].models[0]: \"local/llama-*\": the grant gives no model of provider "
       "\"local\""},
      {"\"models\": [\"anthropic/claude-sonnet-4-*\"]", "\"models\": []", "\"models\": []",
       "grants[0].budgets[1].models: empty (omit \"models\" for every model of the grant)"},
      {"\"default_max_output_tokens\": 8192", "\"default_max_output_tokens\": 0",
       "default_max_output_tokens",
       "default_max_output_tokens: expected an integer from 1 to "
       "4294967295"},
      {"\"reference_input_tokens\": 100000", "\"reference_input_tokens\": -1",
       "reference_input_tokens",
       "reference_input_tokens: expected an integer from 0 to 4294967295"},
  };
  for (const auto& c : cases) {
    const std::string text = replaced(base, c.from, c.to);
    if (c.expected.empty()) {
      parsed(text);
      continue;
    }
    EXPECT_EQ(parse_error(text), at_line(line_of(text, c.needle)) + c.expected) << c.to;
  }
}

TEST(DocumentErrors, RateLimitsGuardrailsWebhooksAndHooks) {
  const std::string base = full_document();
  const struct {
    std::string from, to, needle, expected;
  } cases[] = {
      {"\"per\": \"device\", \"requests_per_minute\"", "\"per\": \"tag\", \"requests_per_minute\"",
       "\"per\": \"tag\", \"requests",
       "rate_limits[0].per: unknown rate limit scope \"tag\" (user, device)"},
      {"{\"from\": [\"*\"], \"requests_per_minute\": 600}", "{\"from\": [\"*\"]}",
       "{\"from\": [\"*\"]}",
       "rate_limits[1]: needs requests_per_minute, tokens_per_minute or concurrent_streams"},
      {"\"requests_per_minute\": 600", "\"requests_per_minute\": 0", "\"requests_per_minute\": 0",
       "rate_limits[1].requests_per_minute: expected an integer from 1 to 4294967295"},
      {"{\"from\": [\"*\"], \"requests_per_minute\": 600}", "{\"requests_per_minute\": 600}",
       "{\"requests_per_minute\": 600}", "rate_limits[1].from: required"},
      {"\"name\": \"ci-only\"", "\"name\": \"secrets\"", "\"from\": [\"tag:ci\"], \"builtin\"",
       "guardrails[1].name: \"secrets\" is already defined by guardrails[0]"},
      {"\"name\": \"ci-only\"", "\"name\": \"\"", "\"name\": \"\"",
       "guardrails[1].name: \"\" is not a valid name (non-empty printable ASCII without "
       "whitespace)"},
      {"\"dangerous_commands\"", "\"shell\"", "\"shell\"",
       "guardrails[1].builtin[0]: unknown builtin \"shell\" (provider_keys, private_keys, "
       "cloud_credentials, personal_data, dangerous_commands)"},
      {", \"builtin\": [\"dangerous_commands\"]}", "}", "\"ci-only\"",
       "guardrails[1]: needs \"builtin\" or \"patterns\""},
      {"\"literal\": \"rm -rf /\"", "\"literal\": \"rm -rf /\", \"regex\": \"rm\"", "\"rm-root\"",
       "guardrails[0].patterns[1]: \"regex\" and \"literal\" exclude each other"},
      {"\"literal\": \"rm -rf /\", ", "", "\"rm-root\"",
       "guardrails[0].patterns[1]: needs \"regex\" or \"literal\""},
      {"\"literal\": \"rm -rf /\"", "\"literal\": \"\"", "\"rm-root\"",
       "guardrails[0].patterns[1].literal: empty"},
      {"{\"name\": \"aws-key\", ", "{", "AKIA", "guardrails[0].patterns[0].name: required"},
      {"\"name\": \"rm-root\"", "\"name\": \"aws-key\"", "\"literal\"",
       "guardrails[0].patterns[1].name: \"aws-key\" is already a pattern of guardrail "
       "\"secrets\""},
      {"\"case_insensitive\": true", "\"case_insensitive\": 1", "case_insensitive",
       "guardrails[0].patterns[1].case_insensitive: expected true or false"},
      {"\"prompt\": \"redact\"", "\"prompt\": \"mask\"", "\"mask\"",
       "guardrails[0].prompt: unknown action \"mask\" (off, flag, redact, block)"},
      {"\"response\": \"cut\"", "\"response\": \"redact\"", "\"response\"",
       "guardrails[0].response: unknown action \"redact\" (off, flag, cut)"},
      {"\"https://hooks.example/airlock\"", "\"ftp://hooks.example\"",
       "ftp:", "webhooks[0].url: must start with http:// or https://"},
      {"\"https://hooks.example/airlock\"", "\"https://hooks.example:0/airlock\"", ":0/",
       "webhooks[0].url: has an invalid port"},
      {"\"secret\": \"env:AIRLOCK_HOOK_SECRET\",", "", "\"https://hooks.example/airlock\"",
       "webhooks[0].secret: required"},
      {"\"budget.exceeded\"", "\"budget.exhausted\"", "\"budget.exhausted\"",
       "webhooks[0].events[0]: unknown event \"budget.exhausted\" (request.completed, tool.call, "
       "budget.threshold, budget.exceeded, access.denied, guardrail.match, policy.pushed)"},
      {"[\"budget.exceeded\", \"guardrail.match\"]", "[]", "\"events\": []",
       "webhooks[0].events: empty"},
      {"\"hooks\": {\"pre_request\"", "\"hooks\": {\"post_request\"", "post_request",
       "hooks: unknown key \"post_request\""},
      {"\"timeout_ms\": 300", "\"timeout_ms\": 60001", "60001",
       "hooks.pre_request[0].timeout_ms: expected an integer from 1 to 60000"},
      {"\"timeout_ms\": 300", "\"timeout_ms\": 0", "\"timeout_ms\": 0",
       "hooks.pre_request[0].timeout_ms: expected an integer from 1 to 60000"},
      {"\"timeout_ms\": 300", "\"timeout_ms\": 60000", "", ""},
      {"\"on_failure\": \"allow\"", "\"on_failure\": \"ignore\"", "ignore",
       "hooks.pre_request[0].on_failure: unknown action \"ignore\" (allow, deny)"},
      {"\"https://policy.example/check\"", "\"policy.example/check\"", "\"policy.example/check\"",
       "hooks.pre_request[1].url: must start with http:// or https://"},
      {"\"from\": [\"group:eng\"], \"timeout_ms\"", "\"from\": [], \"timeout_ms\"",
       "\"from\": [], \"timeout_ms\"",
       "hooks.pre_request[0].from: empty (use [\"*\"] for everyone)"},
  };
  for (const auto& c : cases) {
    const std::string text = replaced(base, c.from, c.to);
    if (c.expected.empty()) {
      parsed(text);
      continue;
    }
    EXPECT_EQ(parse_error(text), at_line(line_of(text, c.needle)) + c.expected) << c.to;
  }
}

TEST(DocumentErrors, RegexesAreCheckedByHyperscan) {
  const std::string base = full_document();
  std::string text = replaced(base, "\"AKIA[0-9A-Z]{16}\"", "\"AKIA([0-9A-Z]{16}\"");
  EXPECT_EQ(parse_error(text), at_line(line_of(text, "AKIA")) +
                                   "guardrails[0].patterns[0].regex: pattern \"aws-key\" of "
                                   "guardrail \"secrets\": Missing close parenthesis for group "
                                   "started at index 4.");
  // Hyperscan refuses patterns that match everywhere; so does the policy.
  text = replaced(base, "\"AKIA[0-9A-Z]{16}\"", "\"(AKIA)?\"");
  EXPECT_EQ(parse_error(text), at_line(line_of(text, "(AKIA)?")) +
                                   "guardrails[0].patterns[0].regex: pattern \"aws-key\" of "
                                   "guardrail \"secrets\": matches the empty string");
  // A literal is not a regex: its metacharacters are plain text.
  parsed(replaced(base, "\"rm -rf /\"", "\"rm -rf (\""));
  // Case-insensitive regexes are checked with the caseless flag.
  parsed(replaced(base, "{\"name\": \"aws-key\", \"regex\": \"AKIA[0-9A-Z]{16}\"}",
                  "{\"name\": \"aws-key\", \"regex\": \"akia[0-9a-z]{16}\", "
                  "\"case_insensitive\": true}"));
}

TEST(DocumentErrors, WebhookSecretIsNeverEchoed) {
  const std::string secret = "whsec_0123456789abcdefghijklmnop";
  const std::string text =
      replaced(full_document(), "\"env:AIRLOCK_HOOK_SECRET\"", "\"" + secret + "\"");
  const std::string error = parse_error(text);
  EXPECT_EQ(error, at_line(line_of(text, secret)) +
                       "webhooks[0].secret: must be \"env:NAME\" or \"file:/absolute/path\" (the "
                       "value is not shown: it may be a secret)");
  EXPECT_EQ(error.find("whsec"), std::string::npos);
  const std::string credentials = replaced(full_document(), "\"https://hooks.example/airlock\"",
                                           "\"https://hook:s3cret@hooks.example/airlock\"");
  const std::string url_error = parse_error(credentials);
  EXPECT_EQ(url_error, at_line(line_of(credentials, "s3cret")) +
                           "webhooks[0].url: must not carry credentials");
}

TEST(SourceLines, LocatesValuesAndFallsBackToTheEnclosingOne) {
  const std::string text =
      "{\n  // \"a\": [\n  \"a\": [\n    1,\n    /* , */ {\"b\\u0022c\": 2}\n"
      "  ],\n  \"d\": \"x\\\"}\"\n}";
  const SourceLines lines(text);
  EXPECT_EQ(lines.line_of(""), 1);
  EXPECT_EQ(lines.line_of("a"), 3);
  EXPECT_EQ(lines.line_of("a[0]"), 4);
  EXPECT_EQ(lines.line_of("a[1]"), 5);
  EXPECT_EQ(lines.line_of("a[1].b\"c"), 5);
  EXPECT_EQ(lines.line_of("a[1].missing"), 5);
  EXPECT_EQ(lines.line_of("d"), 7);
  EXPECT_EQ(lines.line_of("nothing.at.all"), 1);
  EXPECT_EQ(line_at_offset(text, 0), 1);
  EXPECT_EQ(line_at_offset(text, text.find("\"d\"")), 7);
}

}  // namespace
}  // namespace airlock::policy
