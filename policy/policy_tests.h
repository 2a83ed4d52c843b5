// The decisions a policy makes, evaluated offline: what the data plane's ACL does with a flow,
// which grant lets an identity use a model, and the policy's own "tests" built from both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "policy/document.h"

namespace airlock::policy {

// The ACL's decision: the first rule whose sources select the identity and whose destination
// prefix, protocol and destination port range match; no match drops. As in the data plane, only
// TCP and UDP have ports (any other protocol is classified with port 0).
struct FlowVerdict {
  std::optional<size_t> rule;  // index into Document::rules; nullopt when no rule matched
  Action action = Action::Drop;
  // Forwarded or punted to the gateway: the packet gets through.
  bool allowed() const { return action != Action::Drop; }
};
FlowVerdict evaluate_flow(const Document& document, const Identity& identity,
                          const IpPrefix& destination, uint8_t protocol, uint16_t port);

// The index of the first grant that lets `identity` use `model` of `provider`, or nullopt
// (default deny).
std::optional<size_t> first_grant(const Document& document, const Identity& identity,
                                  std::string_view provider, std::string_view model);

struct PolicyTestFailure {
  std::string path;  // "tests[3]", or "tests[3].from" when it selects no peer
  int line = 0;      // the test's PolicyTestSpec::line
  std::string message;
};

// Checks document.tests in order against every peer each one selects; the first failure, or
// nullopt when every assertion holds. A model assertion "PROVIDER/MODEL" holds as allowed when
// requests for MODEL route to PROVIDER (provider_for_model) and a grant gives it.
std::optional<PolicyTestFailure> run_policy_tests(const Document& document);

}  // namespace airlock::policy
