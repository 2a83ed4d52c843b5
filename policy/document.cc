#include "policy/document.h"

#include <algorithm>
#include <array>

#include "policy/policy_tests.h"

namespace airlock::policy {
namespace {

constexpr std::array<std::pair<std::string_view, ProviderKind>, 4> kProviderKinds = {{
    {"openai", ProviderKind::kOpenAi},
    {"anthropic", ProviderKind::kAnthropic},
    {"gemini", ProviderKind::kGemini},
    {"openai-compatible", ProviderKind::kOpenAiCompatible},
}};

bool contains(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

Key key_of(const KeySpec& spec) {
  if (const auto* raw = std::get_if<Key>(&spec)) return *raw;
  return decode_key_base64(std::get<std::string>(spec)).value_or(Key{});
}

// Group selectors cannot appear inside groups, so whether a peer is in one group never depends
// on its other groups: a single pass in definition order resolves them all.
Identity identity_of_peer(const Document& document, const PeerSpec& peer, const Key& key) {
  Identity identity{peer.user, peer.device, peer.tags, peer.groups, key};
  for (const GroupSpec& group : document.groups) {
    if (contains(identity.groups, group.name)) continue;
    if (std::any_of(group.members.begin(), group.members.end(), [&](const std::string& selector) {
          return Document::selector_matches(selector, identity);
        })) {
      identity.groups.push_back(group.name);
    }
  }
  return identity;
}

Identity identity_of_peer(const Document& document, const PeerSpec& peer) {
  return identity_of_peer(document, peer, key_of(peer.public_key));
}

bool any_selects(const std::vector<std::string>& selectors, const Identity& identity) {
  return std::any_of(selectors.begin(), selectors.end(), [&](const std::string& selector) {
    return Document::selector_matches(selector, identity);
  });
}

// An empty "from" (absent in the JSON) selects everyone.
template <typename Spec>
std::vector<const Spec*> applying_to(const std::vector<Spec>& specs, const Identity& identity) {
  std::vector<const Spec*> result;
  for (const Spec& spec : specs) {
    if (spec.from.empty() || any_selects(spec.from, identity)) result.push_back(&spec);
  }
  return result;
}

void add_charges(const BudgetSpec& budget, const Identity& identity,
                 std::vector<Document::BudgetCharge>* charges) {
  const std::string prefix = budget.name + "|";
  const auto charge = [&](std::string key) { charges->push_back({&budget, prefix + key}); };
  switch (budget.scope) {
    case BudgetScope::kUser:
      charge("user:" + identity.user);
      break;
    case BudgetScope::kDevice:
      charge("peer:" + encode_key_base64(identity.public_key));
      break;
    case BudgetScope::kTag:
      for (const std::string& tag : identity.tags) charge("tag:" + tag);
      break;
    case BudgetScope::kGroup:
      for (const std::string& group : identity.groups) charge("group:" + group);
      break;
    case BudgetScope::kShared:
      charge("shared");
      break;
  }
}

}  // namespace

std::string_view provider_kind_name(ProviderKind kind) {
  for (const auto& [name, value] : kProviderKinds) {
    if (value == kind) return name;
  }
  return "unknown";
}

std::optional<ProviderKind> parse_provider_kind(std::string_view name) {
  for (const auto& [kind_name, value] : kProviderKinds) {
    if (kind_name == name) return value;
  }
  return std::nullopt;
}

std::vector<Identity> Document::identities() const {
  std::vector<Identity> result;
  result.reserve(peers.size());
  for (const PeerSpec& peer : peers) result.push_back(identity_of_peer(*this, peer));
  return result;
}

std::optional<Identity> Document::identity_of_address(const IpPrefix& host_address) const {
  const PeerSpec* best = nullptr;
  int best_len = -1;
  for (const PeerSpec& peer : peers) {
    for (const PrefixSpec& spec : peer.allowed_ips) {
      const auto prefix = prefix_of(spec);
      if (prefix && prefix->len > best_len && prefix_contains(*prefix, host_address)) {
        best = &peer;
        best_len = prefix->len;
      }
    }
  }
  if (!best) return std::nullopt;
  return identity_of_peer(*this, *best);
}

std::optional<Identity> Document::identity_of_key(const Key& public_key) const {
  for (const PeerSpec& peer : peers) {
    // Decoding is the cost of a lookup: the match's key is not decoded a second time.
    if (key_of(peer.public_key) == public_key) return identity_of_peer(*this, peer, public_key);
  }
  return std::nullopt;
}

bool Document::model_granted(const Identity& identity, std::string_view provider,
                             std::string_view model) const {
  return first_grant(*this, identity, provider, model).has_value();
}

const ProviderSpec* Document::provider_for_model(std::string_view model) const {
  for (const ProviderSpec& provider : providers) {
    if (std::any_of(provider.models.begin(), provider.models.end(),
                    [&](const std::string& glob) { return glob_match(glob, model); })) {
      return &provider;
    }
  }
  return nullptr;
}

std::vector<Document::BudgetCharge> Document::budgets_for(const Identity& identity,
                                                          std::string_view provider,
                                                          std::string_view model) const {
  std::vector<BudgetCharge> charges;
  std::vector<std::string> charged;
  for (const GrantSpec& grant : grants) {
    if (!any_selects(grant.from, identity) || !lists_model(grant.models, provider, model)) continue;
    for (const GrantBudget& entry : grant.budgets) {
      if (contains(charged, entry.name)) continue;
      if (!entry.models.empty() && !lists_model(entry.models, provider, model)) continue;
      const auto budget = std::find_if(budgets.begin(), budgets.end(), [&](const BudgetSpec& spec) {
        return spec.name == entry.name;
      });
      // parse_document() refuses unknown names; a Document built by hand may still have them.
      if (budget == budgets.end()) continue;
      charged.push_back(entry.name);
      add_charges(*budget, identity, &charges);
    }
  }
  return charges;
}

std::vector<const RateLimitSpec*> Document::rate_limits_for(const Identity& identity) const {
  return applying_to(rate_limits, identity);
}

std::vector<const GuardrailSpec*> Document::guardrails_for(const Identity& identity) const {
  return applying_to(guardrails, identity);
}

std::vector<const PreRequestHookSpec*> Document::pre_request_hooks_for(
    const Identity& identity) const {
  return applying_to(pre_request_hooks, identity);
}

bool Document::selector_matches(std::string_view selector, const Identity& identity) {
  if (selector == "*") return true;
  const size_t colon = selector.find(':');
  if (colon == std::string_view::npos) return !selector.empty() && identity.user == selector;
  const std::string_view kind = selector.substr(0, colon);
  const std::string_view name = selector.substr(colon + 1);
  if (name.empty()) return false;
  if (kind == "user") return identity.user == name;
  if (kind == "group") return contains(identity.groups, name);
  if (kind == "tag") return contains(identity.tags, name);
  if (kind == "device") return identity.device == name;
  if (kind == "peer") {
    const auto key = decode_key_base64(name);
    return key && *key == identity.public_key;
  }
  return false;
}

std::optional<std::vector<uint8_t>> compile(const Document& document, std::string* error) {
  PolicyBuilder builder;
  builder.version(document.version);
  for (const IpPrefix& prefix : document.gateway) builder.gateway(format_prefix(prefix));
  // The data plane knows groups only through each peer's identity, so definitions are folded in.
  for (const PeerSpec& peer : document.peers) {
    PeerSpec resolved = peer;
    resolved.groups = identity_of_peer(document, peer).groups;
    builder.add_peer(std::move(resolved));
  }
  for (const RuleSpec& rule : document.rules) builder.add_rule(rule);
  return builder.finish(error);
}

bool lists_model(const std::vector<std::string>& entries, std::string_view provider,
                 std::string_view model) {
  return std::any_of(entries.begin(), entries.end(), [&](const std::string& entry) {
    if (entry == "*") return true;
    const size_t slash = entry.find('/');
    return slash != std::string::npos && std::string_view(entry).substr(0, slash) == provider &&
           glob_match(std::string_view(entry).substr(slash + 1), model);
  });
}

// Backtracking to the last '*' suffices: a later '*' can absorb whatever an earlier one would
// have, so the match is linear in practice and O(pattern * text) at worst.
bool glob_match(std::string_view pattern, std::string_view text) {
  size_t p = 0;
  size_t t = 0;
  size_t star = std::string_view::npos;
  size_t resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace airlock::policy
