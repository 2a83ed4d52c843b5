#include "policy/policy_tests.h"

#include <algorithm>

namespace airlock::policy {
namespace {

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;

bool has_ports(uint8_t protocol) {
  return protocol == kProtoTcp || protocol == kProtoUdp;
}

bool rule_matches(const RuleSpec& rule, const Identity& identity, const IpPrefix& destination,
                  uint8_t protocol, uint16_t port) {
  if (std::none_of(rule.sources.begin(), rule.sources.end(), [&](const std::string& selector) {
        return Document::selector_matches(selector, identity);
      })) {
    return false;
  }
  if (!rule.destinations.empty() &&
      std::none_of(rule.destinations.begin(), rule.destinations.end(), [&](const PrefixSpec& spec) {
        const auto prefix = prefix_of(spec);
        return prefix && prefix_contains(*prefix, destination);
      })) {
    return false;
  }
  if (rule.protocol != 0 && rule.protocol != protocol) return false;
  const uint16_t classified_port = has_ports(protocol) ? port : 0;
  return rule.port_low <= classified_port && classified_port <= rule.port_high;
}

bool grant_gives(const GrantSpec& grant, const Identity& identity, std::string_view provider,
                 std::string_view model) {
  if (std::none_of(grant.from.begin(), grant.from.end(), [&](const std::string& selector) {
        return Document::selector_matches(selector, identity);
      })) {
    return false;
  }
  return lists_model(grant.models, provider, model);
}

std::string address_text(const IpPrefix& address) {
  const std::string text = format_prefix(address);
  return text.substr(0, text.rfind('/'));
}

std::string flow_text(const PolicyTestSpec& test) {
  const std::string to = address_text(*test.to);
  switch (test.protocol) {
    case kProtoTcp:
      return to + " tcp/" + std::to_string(test.port);
    case kProtoUdp:
      return to + " udp/" + std::to_string(test.port);
    case kProtoIcmp:
      return to + " icmp";
    default:
      return to + " proto " + std::to_string(test.protocol);
  }
}

std::string rule_label(const Document& document, size_t index) {
  const std::string path = "rules[" + std::to_string(index) + "]";
  const std::string& name = document.rules[index].name;
  return name.empty() ? path : "rule \"" + name + "\" (" + path + ")";
}

const char* verb(Action action) {
  switch (action) {
    case Action::Forward:
      return "forwards";
    case Action::PuntToGateway:
      return "punts";
    case Action::Drop:
      break;
  }
  return "drops";
}

std::string expectation(const PolicyTestSpec& test) {
  return test.expect_allow ? "expected allow but " : "expected deny but ";
}

std::optional<std::string> flow_problem(const Document& document, const PolicyTestSpec& test,
                                        const Identity& identity, const std::string& subject) {
  const FlowVerdict verdict = evaluate_flow(document, identity, *test.to, test.protocol, test.port);
  if (verdict.allowed() == test.expect_allow) return std::nullopt;
  const std::string decided = verdict.rule
                                  ? rule_label(document, *verdict.rule) + " " + verb(verdict.action)
                                  : "no rule matched (default deny) for";
  return expectation(test) + decided + " " + subject + " -> " + flow_text(test);
}

std::optional<std::string> model_problem(const Document& document, const PolicyTestSpec& test,
                                         const Identity& identity, const std::string& subject) {
  const std::string_view written = *test.model;
  const size_t slash = written.find('/');
  const std::string_view provider = written.substr(0, slash);
  const std::string_view model = written.substr(slash + 1);
  const ProviderSpec* routed = document.provider_for_model(model);
  const auto grant = first_grant(document, identity, provider, model);
  const bool allowed = routed && routed->name == provider && grant;
  if (allowed == test.expect_allow) return std::nullopt;
  const std::string quoted_model = "\"" + std::string(model) + "\"";
  if (!test.expect_allow) {
    return expectation(test) + "grants[" + std::to_string(*grant) + "] gives " + subject + " " +
           std::string(written);
  }
  if (!routed) return expectation(test) + "no provider serves " + quoted_model;
  if (routed->name != provider) {
    return expectation(test) + quoted_model + " is served by provider \"" + routed->name + "\"";
  }
  return expectation(test) + "no grant gives " + subject + " " + std::string(written) +
         " (default deny)";
}

}  // namespace

FlowVerdict evaluate_flow(const Document& document, const Identity& identity,
                          const IpPrefix& destination, uint8_t protocol, uint16_t port) {
  for (size_t i = 0; i < document.rules.size(); ++i) {
    if (rule_matches(document.rules[i], identity, destination, protocol, port)) {
      return {i, document.rules[i].action};
    }
  }
  return {};
}

std::optional<size_t> first_grant(const Document& document, const Identity& identity,
                                  std::string_view provider, std::string_view model) {
  for (size_t i = 0; i < document.grants.size(); ++i) {
    if (grant_gives(document.grants[i], identity, provider, model)) return i;
  }
  return std::nullopt;
}

std::optional<PolicyTestFailure> run_policy_tests(const Document& document) {
  const std::vector<Identity> identities = document.identities();
  for (size_t i = 0; i < document.tests.size(); ++i) {
    const PolicyTestSpec& test = document.tests[i];
    const std::string path = "tests[" + std::to_string(i) + "]";
    std::vector<size_t> selected;
    for (size_t peer = 0; peer < identities.size(); ++peer) {
      if (Document::selector_matches(test.from, identities[peer])) selected.push_back(peer);
    }
    if (selected.empty()) {
      return PolicyTestFailure{path + ".from", test.line, "\"" + test.from + "\" selects no peer"};
    }
    for (const size_t peer : selected) {
      const Identity& identity = identities[peer];
      // With several peers selected, say which one breaks the assertion.
      const std::string subject =
          selected.size() == 1
              ? test.from
              : test.from + " (peers[" + std::to_string(peer) + "], user " + identity.user + ")";
      auto problem = test.model ? model_problem(document, test, identity, subject)
                                : flow_problem(document, test, identity, subject);
      if (problem) return PolicyTestFailure{path, test.line, std::move(*problem)};
    }
  }
  return std::nullopt;
}

}  // namespace airlock::policy
