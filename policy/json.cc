// The one reader of the policy language: parse_document() and the legacy compile_policy_json()
// share it and differ only in how they word an error.
#include "policy/json.h"

#include <hs/hs.h>

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "policy/builder.h"
#include "policy/document.h"
#include "policy/locate.h"
#include "policy/policy_tests.h"

namespace airlock::policy {
namespace {

using nlohmann::json;

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoSctp = 132;

constexpr uint64_t kMaxLoggedBodyBytes = uint64_t{1} << 30;
// Prices become picodollars per token: a millionth of a dollar per million tokens is the
// smallest step that stays exact.
constexpr size_t kMaxPriceDecimals = 6;
// Budgets are kept in picodollars.
constexpr size_t kMaxDollarDecimals = 12;

constexpr std::pair<std::string_view, BudgetScope> kBudgetScopes[] = {
    {"user", BudgetScope::kUser},
    {"device", BudgetScope::kDevice},
    {"tag", BudgetScope::kTag},
    {"group", BudgetScope::kGroup},
    {"shared", BudgetScope::kShared}};
constexpr std::pair<std::string_view, BudgetScope> kRateLimitScopes[] = {
    {"user", BudgetScope::kUser}, {"device", BudgetScope::kDevice}};
constexpr std::pair<std::string_view, BudgetWindow> kBudgetWindows[] = {
    {"minute", BudgetWindow::kMinute}, {"hour", BudgetWindow::kHour},
    {"day", BudgetWindow::kDay},       {"week", BudgetWindow::kWeek},
    {"month", BudgetWindow::kMonth},   {"bucket", BudgetWindow::kBucket}};
constexpr std::pair<std::string_view, uint32_t> kRefillPeriods[] = {
    {"second", 1}, {"minute", 60}, {"hour", 3600}, {"day", 86400}};
constexpr std::pair<std::string_view, PromptAction> kPromptActions[] = {
    {"off", PromptAction::kOff},
    {"flag", PromptAction::kFlag},
    {"redact", PromptAction::kRedact},
    {"block", PromptAction::kBlock}};
constexpr std::pair<std::string_view, ResponseAction> kResponseActions[] = {
    {"off", ResponseAction::kOff}, {"flag", ResponseAction::kFlag}, {"cut", ResponseAction::kCut}};
// Whether a hook that cannot be reached lets the request through (PreRequestHookSpec::fail_open).
constexpr std::pair<std::string_view, bool> kFailureActions[] = {{"allow", true}, {"deny", false}};
constexpr std::string_view kBuiltinGuards[] = {"provider_keys", "private_keys", "cloud_credentials",
                                               "personal_data", "dangerous_commands"};
constexpr std::string_view kWebhookEvents[] = {
    "request.completed", "tool.call",       "budget.threshold", "budget.exceeded",
    "access.denied",     "guardrail.match", "policy.pushed"};
constexpr uint64_t kMaxHookTimeoutMs = 60000;

// What went wrong and where: `path` and `message` make the text, `where` is the path whose line
// is reported (a member that does not exist yet, say), `line` when it is already known.
struct Problem {
  std::string path;
  std::string message;
  std::string where;
  int line = 0;
};

std::string member(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string indexed(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string quote(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

// nlohmann::json keeps the last of repeated keys; this parse callback finds them (with their path)
// so that a repeated key cannot silently override an earlier, narrower value.
class DuplicateKeyFinder {
 public:
  bool operator()(json::parse_event_t event, const json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        frames_.emplace_back().is_array = event == json::parse_event_t::array_start;
        break;
      case json::parse_event_t::key:
        frames_.back().key = parsed.get<std::string>();
        if (!frames_.back().keys.insert(frames_.back().key).second && !duplicate_) {
          duplicate_ = path();
        }
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames_.pop_back();
        element_done();
        break;
      case json::parse_event_t::value:
        element_done();
        break;
    }
    return true;
  }

  const std::optional<std::string>& duplicate() const { return duplicate_; }

 private:
  struct Frame {
    bool is_array = false;
    size_t index = 0;
    std::string key;
    std::set<std::string> keys;
  };

  void element_done() {
    if (!frames_.empty() && frames_.back().is_array) ++frames_.back().index;
  }

  std::string path() const {
    std::string path;
    for (const Frame& frame : frames_) {
      path = frame.is_array ? indexed(path, frame.index) : member(path, frame.key);
    }
    return path;
  }

  std::vector<Frame> frames_;
  std::optional<std::string> duplicate_;
};

// nlohmann's message without its exception prefix and position (the caller reports the line) and
// without the "last read" excerpt, which may be part of a key.
std::string parse_error_text(const json::exception& e) {
  std::string text = e.what();
  if (const size_t column = text.find("column "); column != std::string::npos) {
    if (const size_t colon = text.find(": ", column); colon != std::string::npos) {
      text.erase(0, colon + 2);
    }
  } else if (const size_t bracket = text.find("] "); bracket != std::string::npos) {
    text.erase(0, bracket + 2);
  }
  if (const size_t excerpt = text.find("; last read"); excerpt != std::string::npos) {
    text.erase(excerpt);
  }
  return text;
}

bool is_env_name(std::string_view name) {
  const auto is_word = [](char c) {
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  return !name.empty() && !(name[0] >= '0' && name[0] <= '9') &&
         std::all_of(name.begin(), name.end(), is_word);
}

// Non-negative digits with an optional decimal point and at most `max_decimals` decimals.
bool is_decimal_text(std::string_view text, size_t max_decimals) {
  const size_t point = text.find('.');
  const std::string_view whole = text.substr(0, point);
  const std::string_view fraction =
      point == std::string_view::npos ? std::string_view("0") : text.substr(point + 1);
  const auto digits = [](std::string_view part) {
    return !part.empty() &&
           std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  return digits(whole) && digits(fraction) && fraction.size() <= max_decimals;
}

// Splits "PROVIDER/REST" at the first '/'.
std::optional<std::pair<std::string_view, std::string_view>> split_provider(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  return std::pair{text.substr(0, slash), text.substr(slash + 1)};
}

// Hyperscan's own parser with the flags the gateway compiles with, so that a policy is not
// accepted with a pattern the gateway cannot load. Hyperscan refuses patterns that match the
// empty string (they would match everywhere); its parser does not, so that is checked here.
std::optional<std::string> regex_problem(const std::string& expression, bool case_insensitive) {
  if (expression.find('\0') != std::string::npos) return "contains a NUL character";
  const unsigned flags = HS_FLAG_SOM_LEFTMOST | (case_insensitive ? HS_FLAG_CASELESS : 0u);
  hs_expr_info_t* info = nullptr;
  hs_compile_error_t* error = nullptr;
  const hs_error_t status = hs_expression_info(expression.c_str(), flags, &info, &error);
  const std::unique_ptr<hs_compile_error_t, decltype(&hs_free_compile_error)> owned_error(
      error, &hs_free_compile_error);
  // Allocated with Hyperscan's misc allocator, which is malloc unless the program sets another.
  const std::unique_ptr<hs_expr_info_t, decltype(&std::free)> owned_info(info, &std::free);
  if (status != HS_SUCCESS) return error ? std::string(error->message) : "not a valid expression";
  if (info->min_width == 0) return "matches the empty string";
  return std::nullopt;
}

// Converts parsed JSON into a Document, checking everything whose error should name a JSON path
// (the JSON field names differ from the schema's in places, e.g. "from" vs "sources").
class DocumentReader {
 public:
  explicit DocumentReader(Problem* problem) : problem_(problem) {}

  std::optional<Document> document(const json& root) {
    if (!has_only_keys(
            root, "",
            {"version", "gateway", "peers", "groups", "rules", "providers", "grants", "prices",
             "request_log", "tests", "budgets", "default_max_output_tokens",
             "reference_input_tokens", "rate_limits", "guardrails", "webhooks", "hooks"})) {
      return std::nullopt;
    }
    Document document;
    const json* version_json = required(root, "version", "");
    if (!version_json) return std::nullopt;
    const auto version = number(*version_json, "version", UINT64_MAX);
    if (!version) return std::nullopt;
    document.version = *version;
    if (const json* gateway = optional(root, "gateway")) {
      auto prefixes = prefix_list(*gateway, "gateway");
      if (!prefixes) return std::nullopt;
      for (const PrefixSpec& prefix : *prefixes) {
        document.gateway.push_back(*parse_prefix(std::get<std::string>(prefix)));
      }
    }
    PeerUniqueness uniqueness;
    const bool read =
        collect(root, "peers", &document.peers,
                [&](const json& item, const std::string& path) -> std::optional<PeerSpec> {
                  auto spec = peer(item, path);
                  if (!spec || !unique_peer(*spec, path, document.peers.size(), uniqueness)) {
                    return std::nullopt;
                  }
                  return spec;
                }) &&
        groups(root, &document.groups) &&
        collect(root, "rules", &document.rules,
                [&](const json& item, const std::string& path) { return rule(item, path); }) &&
        collect(root, "providers", &document.providers,
                [&](const json& item, const std::string& path) {
                  return provider(item, path, document.providers);
                }) &&
        budgets(root, &document.budgets) &&
        collect(root, "grants", &document.grants,
                [&](const json& item, const std::string& path) {
                  return grant(item, path, document.providers, document.budgets);
                }) &&
        prices(root, document.providers, &document.prices) &&
        request_log(root, &document.request_log) &&
        top_level_tokens(root, "default_max_output_tokens", 1,
                         &document.default_max_output_tokens) &&
        top_level_tokens(root, "reference_input_tokens", 0, &document.reference_input_tokens) &&
        collect(
            root, "rate_limits", &document.rate_limits,
            [&](const json& item, const std::string& path) { return rate_limit(item, path); }) &&
        collect(root, "guardrails", &document.guardrails,
                [&](const json& item, const std::string& path) {
                  return guardrail(item, path, document.guardrails);
                }) &&
        collect(root, "webhooks", &document.webhooks,
                [&](const json& item, const std::string& path) { return webhook(item, path); }) &&
        hooks(root, &document.pre_request_hooks) &&
        collect(root, "tests", &document.tests, [&](const json& item, const std::string& path) {
          return test(item, path, document.providers);
        });
    if (!read) return std::nullopt;
    return document;
  }

 private:
  // Each allowed-IPs prefix routes to exactly one peer and each key names exactly one peer
  // (load_policy checks the same, but without the line).
  struct PeerUniqueness {
    std::map<Key, size_t> keys;
    std::map<IpPrefix, size_t> prefixes;
  };

  bool reject(std::string path, std::string message, std::string where) {
    *problem_ = {std::move(path), std::move(message), std::move(where), 0};
    return false;
  }
  bool reject(const std::string& path, std::string message) {
    return reject(path, std::move(message), path);
  }
  std::nullopt_t fail(const std::string& path, std::string message) {
    reject(path, std::move(message));
    return std::nullopt;
  }

  bool has_only_keys(const json& object, const std::string& path,
                     std::initializer_list<std::string_view> allowed) {
    if (!object.is_object()) return reject(path, "expected an object");
    for (const auto& [key, value] : object.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        return reject(path, "unknown key " + quote(key), member(path, key));
      }
    }
    return true;
  }

  static const json* optional(const json& object, std::string_view key) {
    const auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
  }

  const json* required(const json& object, std::string_view key, const std::string& path) {
    const json* value = optional(object, key);
    if (!value) reject(member(path, key), "required");
    return value;
  }

  // Calls visit(item, path) for each element of the optional array object[key].
  template <typename Visit>
  bool each(const json& object, std::string_view key, Visit visit) {
    const json* array = optional(object, key);
    if (!array) return true;
    const std::string path = member("", key);
    if (!array->is_array()) return reject(path, "expected an array");
    for (size_t i = 0; i < array->size(); ++i) {
      if (!visit((*array)[i], indexed(path, i))) return false;
    }
    return true;
  }

  // Appends read(item, path) for each element of the optional array object[key].
  template <typename Spec, typename Read>
  bool collect(const json& object, std::string_view key, std::vector<Spec>* specs, Read read) {
    return each(object, key, [&](const json& item, const std::string& path) {
      std::optional<Spec> spec = read(item, path);
      if (spec) specs->push_back(std::move(*spec));
      return spec.has_value();
    });
  }

  std::optional<std::string> string(const json& value, const std::string& path) {
    if (!value.is_string()) return fail(path, "expected a string");
    return value.get<std::string>();
  }

  std::optional<std::vector<std::string>> string_list(const json& value, const std::string& path) {
    if (!value.is_array()) return fail(path, "expected an array of strings");
    std::vector<std::string> strings;
    for (size_t i = 0; i < value.size(); ++i) {
      auto text = string(value[i], indexed(path, i));
      if (!text) return std::nullopt;
      strings.push_back(std::move(*text));
    }
    return strings;
  }

  std::optional<uint64_t> number(const json& value, const std::string& path, uint64_t max) {
    return number(value, path, 0, max);
  }

  std::optional<uint64_t> number(const json& value, const std::string& path, uint64_t min,
                                 uint64_t max) {
    if (!value.is_number_unsigned() || value.get<uint64_t>() < min || value.get<uint64_t>() > max) {
      return fail(path,
                  "expected an integer from " + std::to_string(min) + " to " + std::to_string(max));
    }
    return value.get<uint64_t>();
  }

  // One of `options` (by name), e.g. "unknown window "fortnight" (minute, hour, ...)".
  template <typename T, size_t N>
  std::optional<T> choice(const json& value, const std::string& path, std::string_view what,
                          const std::pair<std::string_view, T> (&options)[N]) {
    const auto text = string(value, path);
    if (!text) return std::nullopt;
    for (const auto& [option, result] : options) {
      if (*text == option) return result;
    }
    std::string names;
    for (const auto& option : options)
      names += (names.empty() ? "" : ", ") + std::string(option.first);
    return fail(path, "unknown " + std::string(what) + " " + quote(*text) + " (" + names + ")");
  }

  // A non-empty list of names from `known`.
  template <size_t N>
  std::optional<std::vector<std::string>> known_names(const json& value, const std::string& path,
                                                      std::string_view what,
                                                      const std::string_view (&known)[N]) {
    auto names = string_list(value, path);
    if (!names) return std::nullopt;
    if (names->empty()) return fail(path, "empty");
    for (size_t i = 0; i < names->size(); ++i) {
      if (std::find(std::begin(known), std::end(known), (*names)[i]) != std::end(known)) continue;
      std::string listed;
      for (const std::string_view name : known)
        listed += (listed.empty() ? "" : ", ") + std::string(name);
      return fail(indexed(path, i),
                  "unknown " + std::string(what) + " " + quote((*names)[i]) + " (" + listed + ")");
    }
    return names;
  }

  std::optional<bool> boolean(const json& value, const std::string& path) {
    if (!value.is_boolean()) return fail(path, "expected true or false");
    return value.get<bool>();
  }

  std::optional<std::string> name(const json& value, const std::string& path) {
    auto text = string(value, path);
    if (text && !is_valid_name(*text)) {
      return fail(path, quote(*text) +
                            " is not a valid name (non-empty printable ASCII without whitespace)");
    }
    return text;
  }

  std::optional<std::vector<std::string>> name_list(const json& value, const std::string& path) {
    auto names = string_list(value, path);
    if (!names) return std::nullopt;
    for (size_t i = 0; i < names->size(); ++i) {
      if (!name((*names)[i], indexed(path, i))) return std::nullopt;
    }
    return names;
  }

  // A non-empty list of selectors; `in_group` forbids "group:" (groups do not nest).
  std::optional<std::vector<std::string>> selector_list(const json& value, const std::string& path,
                                                        bool in_group) {
    auto selectors = string_list(value, path);
    if (!selectors) return std::nullopt;
    if (selectors->empty() && !in_group) return fail(path, "empty (use [\"*\"] for everyone)");
    std::string why;
    for (size_t i = 0; i < selectors->size(); ++i) {
      const std::string& selector = (*selectors)[i];
      if (!is_valid_selector(selector, &why)) return fail(indexed(path, i), why);
      if (in_group && selector.starts_with("group:")) {
        return fail(indexed(path, i), quote(selector) + ": groups cannot contain groups");
      }
    }
    return selectors;
  }

  // Never echoes the text: it may be a preshared key.
  std::optional<std::string> key(const json& value, const std::string& path) {
    auto text = string(value, path);
    if (text && !decode_key_base64(*text)) return fail(path, "not a base64-encoded 32-byte key");
    return text;
  }

  std::optional<std::vector<PrefixSpec>> prefix_list(const json& value, const std::string& path) {
    const auto texts = string_list(value, path);
    if (!texts) return std::nullopt;
    std::vector<PrefixSpec> prefixes;
    std::string why;
    for (size_t i = 0; i < texts->size(); ++i) {
      if (!parse_prefix((*texts)[i], &why)) return fail(indexed(path, i), why);
      prefixes.emplace_back((*texts)[i]);
    }
    return prefixes;
  }

  // "tcp", "udp", "icmp", "any" (0) or a protocol number, as a JSON number or string.
  std::optional<uint8_t> protocol(const json& value, const std::string& path) {
    if (value.is_number_unsigned()) {
      const auto number_value = number(value, path, UINT8_MAX);
      if (!number_value) return std::nullopt;
      return static_cast<uint8_t>(*number_value);
    }
    const auto text = string(value, path);
    if (!text) return std::nullopt;
    static const std::pair<std::string_view, uint8_t> kNames[] = {
        {"any", 0}, {"icmp", kProtoIcmp}, {"tcp", kProtoTcp}, {"udp", kProtoUdp}};
    for (const auto& [protocol_name, number_value] : kNames) {
      if (*text == protocol_name) return number_value;
    }
    const auto number_value = parse_decimal(*text, UINT8_MAX);
    if (!number_value) {
      return fail(path, quote(*text) + " is not tcp, udp, icmp, any or a protocol number 0-255");
    }
    return static_cast<uint8_t>(*number_value);
  }

  std::optional<PeerSpec> peer(const json& value, const std::string& path) {
    if (!has_only_keys(value, path,
                       {"public_key", "preshared_key", "allowed_ips", "user", "device", "tags",
                        "groups", "endpoint", "persistent_keepalive"})) {
      return std::nullopt;
    }
    PeerSpec spec;
    if (!peer_keys(value, path, &spec) || !peer_identity(value, path, &spec)) return std::nullopt;
    const json* allowed_ips = required(value, "allowed_ips", path);
    if (!allowed_ips) return std::nullopt;
    auto prefixes = prefix_list(*allowed_ips, member(path, "allowed_ips"));
    if (!prefixes) return std::nullopt;
    spec.allowed_ips = std::move(*prefixes);
    if (const json* endpoint = optional(value, "endpoint")) {
      const std::string endpoint_path = member(path, "endpoint");
      auto text = string(*endpoint, endpoint_path);
      std::string why;
      if (!text) return std::nullopt;
      if (!parse_endpoint(*text, &why)) return fail(endpoint_path, why);
      spec.endpoint = std::move(*text);
    }
    if (const json* keepalive = optional(value, "persistent_keepalive")) {
      const auto seconds = number(*keepalive, member(path, "persistent_keepalive"), UINT16_MAX);
      if (!seconds) return std::nullopt;
      spec.persistent_keepalive = static_cast<uint16_t>(*seconds);
    }
    return spec;
  }

  bool peer_keys(const json& value, const std::string& path, PeerSpec* spec) {
    const json* public_key = required(value, "public_key", path);
    if (!public_key) return false;
    auto public_text = key(*public_key, member(path, "public_key"));
    if (!public_text) return false;
    spec->public_key = std::move(*public_text);
    if (const json* preshared_key = optional(value, "preshared_key")) {
      auto preshared_text = key(*preshared_key, member(path, "preshared_key"));
      if (!preshared_text) return false;
      spec->preshared_key = std::move(*preshared_text);
    }
    return true;
  }

  bool peer_identity(const json& value, const std::string& path, PeerSpec* spec) {
    const json* user = required(value, "user", path);
    if (!user) return false;
    auto user_name = name(*user, member(path, "user"));
    if (!user_name) return false;
    spec->user = std::move(*user_name);
    if (const json* device = optional(value, "device")) {
      auto device_name = name(*device, member(path, "device"));
      if (!device_name) return false;
      spec->device = std::move(*device_name);
    }
    for (const auto& [field, names] : {std::pair{"tags", &spec->tags}, {"groups", &spec->groups}}) {
      const json* list = optional(value, field);
      if (!list) continue;
      auto parsed = name_list(*list, member(path, field));
      if (!parsed) return false;
      *names = std::move(*parsed);
    }
    return true;
  }

  bool unique_peer(const PeerSpec& spec, const std::string& path, size_t index,
                   PeerUniqueness& uniqueness) {
    const Key public_key = *decode_key_base64(std::get<std::string>(spec.public_key));
    if (std::all_of(public_key.begin(), public_key.end(), [](uint8_t b) { return b == 0; })) {
      return reject(member(path, "public_key"), "all-zero key");
    }
    const auto [key_it, key_is_new] = uniqueness.keys.try_emplace(public_key, index);
    if (!key_is_new) {
      return reject(member(path, "public_key"), "same key as " + indexed("peers", key_it->second));
    }
    for (size_t i = 0; i < spec.allowed_ips.size(); ++i) {
      const IpPrefix prefix = *parse_prefix(std::get<std::string>(spec.allowed_ips[i]));
      const auto [it, is_new] = uniqueness.prefixes.try_emplace(prefix, index);
      if (!is_new) {
        return reject(
            indexed(member(path, "allowed_ips"), i),
            format_prefix(prefix) + " is already assigned to " + indexed("peers", it->second));
      }
    }
    return true;
  }

  bool groups(const json& root, std::vector<GroupSpec>* groups) {
    const json* object = optional(root, "groups");
    if (!object) return true;
    if (!object->is_object()) return reject("groups", "expected an object");
    for (const auto& [group_name, members] : object->items()) {
      const std::string path = member("groups", group_name);
      if (!is_valid_name(group_name)) {
        return reject(path, quote(group_name) +
                                " is not a valid group name (non-empty printable ASCII without "
                                "whitespace)");
      }
      auto selectors = selector_list(members, path, /*in_group=*/true);
      if (!selectors) return false;
      groups->push_back({group_name, std::move(*selectors)});
    }
    return true;
  }

  std::optional<RuleSpec> rule(const json& value, const std::string& path) {
    if (!has_only_keys(value, path, {"name", "from", "to", "proto", "ports", "action"})) {
      return std::nullopt;
    }
    RuleSpec spec;
    if (const json* name_json = optional(value, "name")) {
      auto text = string(*name_json, member(path, "name"));
      if (!text) return std::nullopt;
      spec.name = std::move(*text);
    }
    const json* from = required(value, "from", path);
    if (!from) return std::nullopt;
    auto sources = selector_list(*from, member(path, "from"), /*in_group=*/false);
    if (!sources) return std::nullopt;
    spec.sources = std::move(*sources);
    if (!rule_destinations(value, path, &spec)) return std::nullopt;
    if (const json* proto = optional(value, "proto")) {
      const auto number_value = protocol(*proto, member(path, "proto"));
      if (!number_value) return std::nullopt;
      spec.protocol = *number_value;
    }
    if (!rule_ports(value, path, &spec) || !rule_action(value, path, &spec)) return std::nullopt;
    return spec;
  }

  bool rule_destinations(const json& value, const std::string& path, RuleSpec* spec) {
    const json* to = required(value, "to", path);
    if (!to) return false;
    const std::string to_path = member(path, "to");
    if (*to == json::array({"*"})) return true;  // an empty destination list means any
    if (to->is_array() && to->empty()) {
      return reject(to_path, "empty (use [\"*\"] for any destination)");
    }
    if (to->is_array() && std::find(to->begin(), to->end(), json("*")) != to->end()) {
      return reject(to_path, "\"*\" must be the only destination");
    }
    auto prefixes = prefix_list(*to, to_path);
    if (!prefixes) return false;
    spec->destinations = std::move(*prefixes);
    return true;
  }

  // Port ranges only mean something for protocols with ports; elsewhere they would match whatever
  // bytes sit where a port would be.
  bool rule_ports(const json& value, const std::string& path, RuleSpec* spec) {
    const json* ports = optional(value, "ports");
    if (!ports) return true;
    const std::string ports_path = member(path, "ports");
    if (spec->protocol != kProtoTcp && spec->protocol != kProtoUdp &&
        spec->protocol != kProtoSctp) {
      return reject(ports_path, "only valid with proto tcp, udp or sctp (132)");
    }
    if (ports->is_number_unsigned()) {
      const auto port = number(*ports, ports_path, UINT16_MAX);
      if (!port) return false;
      spec->port_low = spec->port_high = static_cast<uint16_t>(*port);
      return true;
    }
    const auto text = string(*ports, ports_path);
    if (!text) return false;
    const std::string_view range = *text;
    const size_t dash = range.find('-');
    const auto low = parse_decimal(range.substr(0, dash), UINT16_MAX);
    const auto high =
        dash == std::string_view::npos ? low : parse_decimal(range.substr(dash + 1), UINT16_MAX);
    if (!low || !high || *low > *high) {
      return reject(ports_path, quote(*text) + " is not PORT or LOW-HIGH within 0-65535");
    }
    spec->port_low = static_cast<uint16_t>(*low);
    spec->port_high = static_cast<uint16_t>(*high);
    return true;
  }

  bool rule_action(const json& value, const std::string& path, RuleSpec* spec) {
    const json* action = required(value, "action", path);
    if (!action) return false;
    const std::string action_path = member(path, "action");
    const auto text = string(*action, action_path);
    if (!text) return false;
    if (*text == "forward") {
      spec->action = Action::Forward;
    } else if (*text == "punt") {
      spec->action = Action::PuntToGateway;
    } else if (*text == "drop") {
      spec->action = Action::Drop;
    } else {
      return reject(action_path, quote(*text) + " is not forward, punt or drop");
    }
    return true;
  }

  std::optional<ProviderSpec> provider(const json& value, const std::string& path,
                                       const std::vector<ProviderSpec>& defined) {
    if (!has_only_keys(value, path, {"name", "kind", "base_url", "models", "key", "passthrough"})) {
      return std::nullopt;
    }
    ProviderSpec spec;
    const json* name_json = required(value, "name", path);
    if (!name_json) return std::nullopt;
    const std::string name_path = member(path, "name");
    auto provider_name = name(*name_json, name_path);
    if (!provider_name) return std::nullopt;
    if (provider_name->find('/') != std::string::npos) {
      return fail(name_path, quote(*provider_name) + " must not contain '/'");
    }
    for (size_t i = 0; i < defined.size(); ++i) {
      if (defined[i].name == *provider_name) {
        return fail(name_path,
                    quote(*provider_name) + " is already defined by " + indexed("providers", i));
      }
    }
    spec.name = std::move(*provider_name);
    const json* kind_json = required(value, "kind", path);
    if (!kind_json) return std::nullopt;
    const auto kind_text = string(*kind_json, member(path, "kind"));
    if (!kind_text) return std::nullopt;
    const auto kind = parse_provider_kind(*kind_text);
    if (!kind) {
      return fail(member(path, "kind"),
                  quote(*kind_text) + " is not openai, anthropic, gemini or openai-compatible");
    }
    spec.kind = *kind;
    if (!provider_url(value, path, &spec) || !provider_models(value, path, &spec) ||
        !provider_auth(value, path, &spec)) {
      return std::nullopt;
    }
    return spec;
  }

  bool provider_url(const json& value, const std::string& path, ProviderSpec* spec) {
    const json* url_json = required(value, "base_url", path);
    if (!url_json) return false;
    auto url = http_url(*url_json, member(path, "base_url"), " (use \"key\": \"env:NAME\")");
    if (!url) return false;
    spec->base_url = std::move(*url);
    return true;
  }

  // The URL is not echoed: credentials pasted into it must not reach a log.
  std::optional<std::string> http_url(const json& value, const std::string& url_path,
                                      std::string_view credentials_hint) {
    auto url = string(value, url_path);
    if (!url) return std::nullopt;
    const std::string_view text = *url;
    if (std::any_of(text.begin(), text.end(), [](char c) { return c <= ' ' || c > '~'; })) {
      return fail(url_path, "must not contain whitespace, control or non-ASCII characters");
    }
    std::string_view rest;
    if (text.starts_with("https://")) {
      rest = text.substr(8);
    } else if (text.starts_with("http://")) {
      rest = text.substr(7);
    } else {
      return fail(url_path, "must start with http:// or https://");
    }
    const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
    if (authority.find('@') != std::string_view::npos) {
      return fail(url_path, "must not carry credentials" + std::string(credentials_hint));
    }
    std::string_view host = authority;
    std::string_view port;
    if (authority.starts_with('[')) {
      const size_t close = authority.find(']');
      if (close == std::string_view::npos) return fail(url_path, "has an unclosed '[' in its host");
      host = authority.substr(1, close - 1);
      const std::string_view after = authority.substr(close + 1);
      if (!after.empty() && !after.starts_with(':')) return fail(url_path, "has a malformed host");
      if (!after.empty()) port = after.substr(1);
      if (!after.empty() && port.empty()) return fail(url_path, "has an empty port");
    } else if (const size_t colon = authority.find(':'); colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      if (port.empty()) return fail(url_path, "has an empty port");
    }
    if (host.empty()) return fail(url_path, "has no host");
    if (!port.empty()) {
      const auto number_value = parse_decimal(port, 65535);
      if (!number_value || *number_value == 0) return fail(url_path, "has an invalid port");
    }
    return url;
  }

  bool provider_models(const json& value, const std::string& path, ProviderSpec* spec) {
    const json* models = required(value, "models", path);
    if (!models) return false;
    const std::string models_path = member(path, "models");
    auto globs = string_list(*models, models_path);
    if (!globs) return false;
    if (globs->empty()) return reject(models_path, "empty (use [\"*\"] for every model)");
    for (size_t i = 0; i < globs->size(); ++i) {
      if ((*globs)[i].empty()) return reject(indexed(models_path, i), "empty model glob");
    }
    spec->models = std::move(*globs);
    return true;
  }

  bool provider_auth(const json& value, const std::string& path, ProviderSpec* spec) {
    if (const json* key_ref = optional(value, "key")) {
      spec->key_ref = secret_ref(*key_ref, member(path, "key"), "a key");
      if (!spec->key_ref) return false;
    }
    if (const json* passthrough = optional(value, "passthrough")) {
      const auto flag = boolean(*passthrough, member(path, "passthrough"));
      if (!flag) return false;
      spec->passthrough = *flag;
    }
    if (spec->key_ref && spec->passthrough) {
      return reject(path, "key and passthrough exclude each other", member(path, "key"));
    }
    return true;
  }

  // Never echoed: a value of the wrong shape is most likely the secret itself (`what`, e.g.
  // "a key").
  std::optional<std::string> secret_ref(const json& value, const std::string& path,
                                        std::string_view what) {
    if (!value.is_string()) return fail(path, "expected a string");
    const std::string& ref = value.get_ref<const std::string&>();
    const bool is_env = ref.starts_with("env:") && is_env_name(std::string_view(ref).substr(4));
    const bool is_file =
        ref.starts_with("file:/") && ref.size() > 6 &&
        std::none_of(ref.begin(), ref.end(), [](char c) { return c < ' ' || c == 0x7f; });
    if (!is_env && !is_file) {
      return fail(path,
                  "must be \"env:NAME\" or \"file:/absolute/path\" (the value is not shown: "
                  "it may be " +
                      std::string(what) + ")");
    }
    return ref;
  }

  bool known_provider(std::string_view provider_name, const std::vector<ProviderSpec>& defined,
                      const std::string& path) {
    if (std::any_of(defined.begin(), defined.end(),
                    [&](const ProviderSpec& spec) { return spec.name == provider_name; })) {
      return true;
    }
    std::string names;
    for (const ProviderSpec& spec : defined) names += (names.empty() ? "" : ", ") + spec.name;
    return reject(path, "no provider named " + quote(provider_name) +
                            " (defined: " + (names.empty() ? "none" : names) + ")");
  }

  std::optional<GrantSpec> grant(const json& value, const std::string& path,
                                 const std::vector<ProviderSpec>& providers,
                                 const std::vector<BudgetSpec>& budgets) {
    if (!has_only_keys(value, path, {"from", "models", "budgets"})) return std::nullopt;
    GrantSpec spec;
    const json* from = required(value, "from", path);
    if (!from) return std::nullopt;
    auto selectors = selector_list(*from, member(path, "from"), /*in_group=*/false);
    if (!selectors) return std::nullopt;
    spec.from = std::move(*selectors);
    const json* models = required(value, "models", path);
    if (!models) return std::nullopt;
    const std::string models_path = member(path, "models");
    auto entries = string_list(*models, models_path);
    if (!entries) return std::nullopt;
    if (entries->empty()) return fail(models_path, "empty (use [\"*\"] for every model)");
    for (size_t i = 0; i < entries->size(); ++i) {
      const std::string& entry = (*entries)[i];
      if (entry == "*") continue;
      const std::string entry_path = indexed(models_path, i);
      const auto parts = split_provider(entry);
      if (!parts || parts->second.empty()) {
        return fail(entry_path, quote(entry) + " is not \"PROVIDER/MODEL_GLOB\" or \"*\"");
      }
      if (!known_provider(parts->first, providers, entry_path)) return std::nullopt;
    }
    spec.models = std::move(*entries);
    if (const json* list = optional(value, "budgets")) {
      const std::string budgets_path = member(path, "budgets");
      if (!list->is_array()) return fail(budgets_path, "expected an array");
      for (size_t i = 0; i < list->size(); ++i) {
        auto entry = grant_budget((*list)[i], indexed(budgets_path, i), spec, providers, budgets);
        if (!entry) return std::nullopt;
        spec.budgets.push_back(std::move(*entry));
      }
    }
    return spec;
  }

  // "NAME" or {"name": "NAME", "models": ["PROVIDER/MODEL_GLOB", ...]}.
  std::optional<GrantBudget> grant_budget(const json& value, const std::string& path,
                                          const GrantSpec& grant,
                                          const std::vector<ProviderSpec>& providers,
                                          const std::vector<BudgetSpec>& budgets) {
    GrantBudget entry;
    const json* name_json = &value;
    std::string name_path = path;
    if (!value.is_string() && !value.is_object()) {
      return fail(path, "expected a budget name or {\"name\": ..., \"models\": [...]}");
    }
    if (value.is_object()) {
      if (!has_only_keys(value, path, {"name", "models"})) return std::nullopt;
      name_json = required(value, "name", path);
      if (!name_json) return std::nullopt;
      name_path = member(path, "name");
    }
    auto budget_name = string(*name_json, name_path);
    if (!budget_name) return std::nullopt;
    if (std::none_of(budgets.begin(), budgets.end(),
                     [&](const BudgetSpec& spec) { return spec.name == *budget_name; })) {
      std::string names;
      for (const BudgetSpec& spec : budgets) names += (names.empty() ? "" : ", ") + spec.name;
      return fail(name_path, "no budget named " + quote(*budget_name) +
                                 " (defined: " + (names.empty() ? "none" : names) + ")");
    }
    entry.name = std::move(*budget_name);
    const json* models = value.is_object() ? optional(value, "models") : nullptr;
    if (!models) return entry;
    const std::string models_path = member(path, "models");
    auto globs = string_list(*models, models_path);
    if (!globs) return std::nullopt;
    if (globs->empty())
      return fail(models_path, "empty (omit \"models\" for every model of the grant)");
    const bool grants_everything =
        std::find(grant.models.begin(), grant.models.end(), "*") != grant.models.end();
    for (size_t i = 0; i < globs->size(); ++i) {
      const std::string& glob = (*globs)[i];
      const std::string glob_path = indexed(models_path, i);
      const auto parts = split_provider(glob);
      if (!parts || parts->second.empty()) {
        return fail(glob_path, quote(glob) + " is not \"PROVIDER/MODEL_GLOB\"");
      }
      if (!known_provider(parts->first, providers, glob_path)) return std::nullopt;
      // A restriction to a provider the grant does not cover would never charge anything.
      if (!grants_everything &&
          std::none_of(grant.models.begin(), grant.models.end(), [&](const std::string& granted) {
            const auto granted_parts = split_provider(granted);
            return granted_parts && granted_parts->first == parts->first;
          })) {
        return fail(glob_path,
                    quote(glob) + ": the grant gives no model of provider " + quote(parts->first));
      }
    }
    entry.models = std::move(*globs);
    return entry;
  }

  bool budgets(const json& root, std::vector<BudgetSpec>* specs) {
    const json* object = optional(root, "budgets");
    if (!object) return true;
    if (!object->is_object()) return reject("budgets", "expected an object");
    for (const auto& [budget_name, value] : object->items()) {
      const std::string path = member("budgets", budget_name);
      // '|' separates the name in balance keys ("team|user:alice").
      if (!is_valid_name(budget_name) || budget_name.find('|') != std::string::npos) {
        return reject(path, quote(budget_name) +
                                " is not a valid budget name (non-empty printable ASCII without "
                                "whitespace or '|')");
      }
      auto spec = budget(value, path);
      if (!spec) return false;
      spec->name = budget_name;
      specs->push_back(std::move(*spec));
    }
    return true;
  }

  std::optional<BudgetSpec> budget(const json& value, const std::string& path) {
    if (!has_only_keys(value, path, {"per", "usd", "tokens", "window", "thresholds", "refill"})) {
      return std::nullopt;
    }
    BudgetSpec spec;
    if (const json* per = optional(value, "per")) {
      const auto scope = choice(*per, member(path, "per"), "scope", kBudgetScopes);
      if (!scope) return std::nullopt;
      spec.scope = *scope;
    }
    if (const json* usd = optional(value, "usd")) {
      spec.usd_picodollars = picodollars(*usd, member(path, "usd"));
      if (!spec.usd_picodollars) return std::nullopt;
    }
    if (const json* tokens = optional(value, "tokens")) {
      spec.tokens = number(*tokens, member(path, "tokens"), UINT64_MAX);
      if (!spec.tokens) return std::nullopt;
    }
    if (!spec.usd_picodollars && !spec.tokens) return fail(path, "needs \"usd\" or \"tokens\"");
    if (const json* window = optional(value, "window")) {
      const auto parsed = choice(*window, member(path, "window"), "window", kBudgetWindows);
      if (!parsed) return std::nullopt;
      spec.window = *parsed;
    }
    const json* refill = optional(value, "refill");
    const std::string refill_path = member(path, "refill");
    if (spec.window == BudgetWindow::kBucket && !refill) {
      return fail(refill_path, "required with \"window\": \"bucket\"");
    }
    if (spec.window != BudgetWindow::kBucket && refill) {
      return fail(refill_path, "only valid with \"window\": \"bucket\"");
    }
    if (refill && !budget_refill(*refill, refill_path, &spec)) return std::nullopt;
    if (const json* thresholds = optional(value, "thresholds")) {
      if (!budget_thresholds(*thresholds, member(path, "thresholds"), &spec)) return std::nullopt;
    }
    return spec;
  }

  // A bucket refills what it limits: usd when it has a usd capacity, tokens when it has tokens.
  bool budget_refill(const json& value, const std::string& path, BudgetSpec* spec) {
    if (!has_only_keys(value, path, {"usd", "tokens", "every"})) return false;
    const json* every = required(value, "every", path);
    if (!every) return false;
    const auto seconds = choice(*every, member(path, "every"), "period", kRefillPeriods);
    if (!seconds) return false;
    spec->refill_every_s = *seconds;
    const json* usd = optional(value, "usd");
    const json* tokens = optional(value, "tokens");
    for (const auto& [field, amount, limited] :
         {std::tuple{"usd", usd, spec->usd_picodollars.has_value()},
          {"tokens", tokens, spec->tokens.has_value()}}) {
      if (limited && !amount) {
        return reject(member(path, field),
                      "required (the budget has \"" + std::string(field) + "\")");
      }
      if (!limited && amount) {
        return reject(member(path, field),
                      "only valid when the budget has \"" + std::string(field) + "\"");
      }
    }
    if (usd) {
      const auto picos = picodollars(*usd, member(path, "usd"));
      if (!picos) return false;
      spec->refill_picodollars = *picos;
    }
    if (tokens) {
      const auto count = number(*tokens, member(path, "tokens"), UINT64_MAX);
      if (!count) return false;
      spec->refill_tokens = *count;
    }
    return true;
  }

  bool budget_thresholds(const json& value, const std::string& path, BudgetSpec* spec) {
    if (!value.is_array()) return reject(path, "expected an array of percentages");
    spec->thresholds_percent.clear();
    for (size_t i = 0; i < value.size(); ++i) {
      const auto percent = number(value[i], indexed(path, i), 1, 100);
      if (!percent) return false;
      if (!spec->thresholds_percent.empty() && *percent <= spec->thresholds_percent.back()) {
        return reject(indexed(path, i), std::to_string(*percent) + " does not follow " +
                                            std::to_string(spec->thresholds_percent.back()) +
                                            " (ascending)");
      }
      spec->thresholds_percent.push_back(static_cast<uint32_t>(*percent));
    }
    return true;
  }

  // An optional top-level token count; `tokens` keeps its default when the key is absent.
  bool top_level_tokens(const json& root, const std::string& key, uint64_t min, uint64_t* tokens) {
    const json* value = optional(root, key);
    if (!value) return true;
    const auto count = number(*value, key, min, UINT32_MAX);
    if (!count) return false;
    *tokens = *count;
    return true;
  }

  std::optional<RateLimitSpec> rate_limit(const json& value, const std::string& path) {
    if (!has_only_keys(
            value, path,
            {"from", "per", "requests_per_minute", "tokens_per_minute", "concurrent_streams"})) {
      return std::nullopt;
    }
    RateLimitSpec spec;
    const json* from = required(value, "from", path);
    if (!from) return std::nullopt;
    auto selectors = selector_list(*from, member(path, "from"), /*in_group=*/false);
    if (!selectors) return std::nullopt;
    spec.from = std::move(*selectors);
    if (const json* per = optional(value, "per")) {
      const auto scope = choice(*per, member(path, "per"), "rate limit scope", kRateLimitScopes);
      if (!scope) return std::nullopt;
      spec.scope = *scope;
    }
    // Zero would refuse everything, which a grant already expresses; a limit is at least 1.
    for (const auto& [field, target] : {std::pair{"requests_per_minute", &spec.requests_per_minute},
                                        {"concurrent_streams", &spec.concurrent_streams}}) {
      const json* limit = optional(value, field);
      if (!limit) continue;
      const auto count = number(*limit, member(path, field), 1, UINT32_MAX);
      if (!count) return std::nullopt;
      *target = static_cast<uint32_t>(*count);
    }
    if (const json* limit = optional(value, "tokens_per_minute")) {
      spec.tokens_per_minute = number(*limit, member(path, "tokens_per_minute"), 1, UINT64_MAX);
      if (!spec.tokens_per_minute) return std::nullopt;
    }
    if (!spec.requests_per_minute && !spec.tokens_per_minute && !spec.concurrent_streams) {
      return fail(path, "needs requests_per_minute, tokens_per_minute or concurrent_streams");
    }
    return spec;
  }

  std::optional<GuardrailSpec> guardrail(const json& value, const std::string& path,
                                         const std::vector<GuardrailSpec>& defined) {
    if (!has_only_keys(value, path,
                       {"name", "from", "builtin", "patterns", "prompt", "response"})) {
      return std::nullopt;
    }
    GuardrailSpec spec;
    const json* name_json = required(value, "name", path);
    if (!name_json) return std::nullopt;
    const std::string name_path = member(path, "name");
    auto guardrail_name = name(*name_json, name_path);
    if (!guardrail_name) return std::nullopt;
    for (size_t i = 0; i < defined.size(); ++i) {
      if (defined[i].name == *guardrail_name) {
        return fail(name_path,
                    quote(*guardrail_name) + " is already defined by " + indexed("guardrails", i));
      }
    }
    spec.name = std::move(*guardrail_name);
    if (const json* from = optional(value, "from")) {
      auto selectors = selector_list(*from, member(path, "from"), /*in_group=*/false);
      if (!selectors) return std::nullopt;
      spec.from = std::move(*selectors);
    }
    if (const json* builtin = optional(value, "builtin")) {
      auto names = known_names(*builtin, member(path, "builtin"), "builtin", kBuiltinGuards);
      if (!names) return std::nullopt;
      spec.builtin = std::move(*names);
    }
    if (const json* patterns = optional(value, "patterns")) {
      const std::string patterns_path = member(path, "patterns");
      if (!patterns->is_array()) return fail(patterns_path, "expected an array");
      for (size_t i = 0; i < patterns->size(); ++i) {
        auto pattern = guard_pattern((*patterns)[i], indexed(patterns_path, i), spec);
        if (!pattern) return std::nullopt;
        spec.patterns.push_back(std::move(*pattern));
      }
    }
    if (spec.builtin.empty() && spec.patterns.empty()) {
      return fail(path, "needs \"builtin\" or \"patterns\"");
    }
    if (const json* prompt = optional(value, "prompt")) {
      const auto action = choice(*prompt, member(path, "prompt"), "action", kPromptActions);
      if (!action) return std::nullopt;
      spec.prompt = *action;
    }
    if (const json* response = optional(value, "response")) {
      const auto action = choice(*response, member(path, "response"), "action", kResponseActions);
      if (!action) return std::nullopt;
      spec.response = *action;
    }
    return spec;
  }

  std::optional<GuardPattern> guard_pattern(const json& value, const std::string& path,
                                            const GuardrailSpec& guardrail) {
    if (!has_only_keys(value, path, {"name", "regex", "literal", "case_insensitive"})) {
      return std::nullopt;
    }
    GuardPattern pattern;
    const json* name_json = required(value, "name", path);
    if (!name_json) return std::nullopt;
    const std::string name_path = member(path, "name");
    auto pattern_name = name(*name_json, name_path);
    if (!pattern_name) return std::nullopt;
    if (std::any_of(guardrail.patterns.begin(), guardrail.patterns.end(),
                    [&](const GuardPattern& other) { return other.name == *pattern_name; })) {
      return fail(name_path, quote(*pattern_name) + " is already a pattern of guardrail " +
                                 quote(guardrail.name));
    }
    pattern.name = std::move(*pattern_name);
    if (const json* flag = optional(value, "case_insensitive")) {
      const auto parsed = boolean(*flag, member(path, "case_insensitive"));
      if (!parsed) return std::nullopt;
      pattern.case_insensitive = *parsed;
    }
    const json* regex = optional(value, "regex");
    const json* literal = optional(value, "literal");
    if (!regex == !literal) {
      return fail(path, regex ? "\"regex\" and \"literal\" exclude each other"
                              : "needs \"regex\" or \"literal\"");
    }
    pattern.literal = literal != nullptr;
    const std::string expression_path = member(path, literal ? "literal" : "regex");
    auto expression = string(literal ? *literal : *regex, expression_path);
    if (!expression) return std::nullopt;
    if (expression->empty()) return fail(expression_path, "empty");
    if (!pattern.literal) {
      if (auto problem = regex_problem(*expression, pattern.case_insensitive)) {
        return fail(expression_path, "pattern " + quote(pattern.name) + " of guardrail " +
                                         quote(guardrail.name) + ": " + *problem);
      }
    }
    pattern.expression = std::move(*expression);
    return pattern;
  }

  std::optional<WebhookSpec> webhook(const json& value, const std::string& path) {
    if (!has_only_keys(value, path, {"url", "secret", "events"})) return std::nullopt;
    WebhookSpec spec;
    const json* url = required(value, "url", path);
    if (!url) return std::nullopt;
    auto parsed_url = http_url(*url, member(path, "url"), "");
    if (!parsed_url) return std::nullopt;
    spec.url = std::move(*parsed_url);
    const json* secret = required(value, "secret", path);
    if (!secret) return std::nullopt;
    auto ref = secret_ref(*secret, member(path, "secret"), "a secret");
    if (!ref) return std::nullopt;
    spec.secret_ref = std::move(*ref);
    if (const json* events = optional(value, "events")) {
      auto names = known_names(*events, member(path, "events"), "event", kWebhookEvents);
      if (!names) return std::nullopt;
      spec.events = std::move(*names);
    } else {
      spec.events.assign(std::begin(kWebhookEvents), std::end(kWebhookEvents));
    }
    return spec;
  }

  bool hooks(const json& root, std::vector<PreRequestHookSpec>* specs) {
    const json* object = optional(root, "hooks");
    if (!object) return true;
    if (!has_only_keys(*object, "hooks", {"pre_request"})) return false;
    const json* list = optional(*object, "pre_request");
    if (!list) return true;
    const std::string list_path = "hooks.pre_request";
    if (!list->is_array()) return reject(list_path, "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      auto spec = pre_request_hook((*list)[i], indexed(list_path, i));
      if (!spec) return false;
      specs->push_back(std::move(*spec));
    }
    return true;
  }

  std::optional<PreRequestHookSpec> pre_request_hook(const json& value, const std::string& path) {
    if (!has_only_keys(value, path, {"url", "from", "timeout_ms", "on_failure"})) {
      return std::nullopt;
    }
    PreRequestHookSpec spec;
    const json* url = required(value, "url", path);
    if (!url) return std::nullopt;
    auto parsed_url = http_url(*url, member(path, "url"), "");
    if (!parsed_url) return std::nullopt;
    spec.url = std::move(*parsed_url);
    if (const json* from = optional(value, "from")) {
      auto selectors = selector_list(*from, member(path, "from"), /*in_group=*/false);
      if (!selectors) return std::nullopt;
      spec.from = std::move(*selectors);
    }
    if (const json* timeout = optional(value, "timeout_ms")) {
      const auto ms = number(*timeout, member(path, "timeout_ms"), 1, kMaxHookTimeoutMs);
      if (!ms) return std::nullopt;
      spec.timeout_ms = static_cast<uint32_t>(*ms);
    }
    if (const json* on_failure = optional(value, "on_failure")) {
      const auto fail_open =
          choice(*on_failure, member(path, "on_failure"), "action", kFailureActions);
      if (!fail_open) return std::nullopt;
      spec.fail_open = *fail_open;
    }
    return spec;
  }

  bool prices(const json& root, const std::vector<ProviderSpec>& providers,
              std::vector<PriceOverride>* overrides) {
    const json* object = optional(root, "prices");
    if (!object) return true;
    if (!object->is_object()) return reject("prices", "expected an object");
    for (const auto& [model_key, value] : object->items()) {
      const std::string path = member("prices", model_key);
      const auto parts = split_provider(model_key);
      if (!parts || parts->second.empty()) {
        return reject(path, quote(model_key) + " is not \"PROVIDER/MODEL\"");
      }
      if (!known_provider(parts->first, providers, path) ||
          !has_only_keys(value, path,
                         {"input", "output", "cache_read", "cache_write", "cache_write_1h"})) {
        return false;
      }
      PriceOverride price;
      price.provider = parts->first;
      price.model = parts->second;
      for (const auto& [field, target] :
           {std::pair{"input", &price.input}, {"output", &price.output}}) {
        const json* amount = required(value, field, path);
        if (!amount) return false;
        auto text = dollars(*amount, member(path, field));
        if (!text) return false;
        *target = std::move(*text);
      }
      for (const auto& [field, target] : {std::pair{"cache_read", &price.cache_read},
                                          {"cache_write", &price.cache_write},
                                          {"cache_write_1h", &price.cache_write_1h}}) {
        const json* amount = optional(value, field);
        if (!amount) continue;
        *target = dollars(*amount, member(path, field));
        if (!*target) return false;
      }
      overrides->push_back(std::move(price));
    }
    return true;
  }

  // Dollars per million tokens, kept as the decimal text so that it converts exactly.
  std::optional<std::string> dollars(const json& value, const std::string& path) {
    return decimal(value, path, "dollars per million tokens", kMaxPriceDecimals, "3.75");
  }

  // A dollar amount as exact picodollars, from its decimal text.
  std::optional<int64_t> picodollars(const json& value, const std::string& path) {
    const auto text = decimal(value, path, "dollars", kMaxDollarDecimals, "25.50");
    if (!text) return std::nullopt;
    // Whole dollars and the decimals padded to 12 are the picodollars' digits.
    std::string digits = *text;
    const size_t point = digits.find('.');
    const size_t decimals = point == std::string::npos ? 0 : digits.size() - point - 1;
    if (point != std::string::npos) digits.erase(point, 1);
    digits.append(kMaxDollarDecimals - decimals, '0');
    int64_t amount = 0;
    for (const char digit : digits) {
      if (__builtin_mul_overflow(amount, 10, &amount) ||
          __builtin_add_overflow(amount, digit - '0', &amount)) {
        return fail(path, quote(*text) + " exceeds the largest amount, 9223372.036854775807");
      }
    }
    return amount;
  }

  // A decimal amount (of `what`), as a JSON string or number, kept as its text.
  std::optional<std::string> decimal(const json& value, const std::string& path,
                                     std::string_view what, size_t max_decimals,
                                     std::string_view example) {
    std::string text;
    if (value.is_string()) {
      text = value.get<std::string>();
    } else if (value.is_number()) {
      text = value.dump();
    } else {
      return fail(path, "expected " + std::string(what) + " as a number or a string");
    }
    if (!is_decimal_text(text, max_decimals)) {
      return fail(path, quote(text) + " is not " + std::string(what) +
                            ": non-negative digits with an optional decimal point and at most " +
                            std::to_string(max_decimals) + " decimals, e.g. " + quote(example));
    }
    return text;
  }

  bool request_log(const json& root, RequestLogSpec* spec) {
    const json* object = optional(root, "request_log");
    if (!object) return true;
    if (!has_only_keys(*object, "request_log", {"bodies", "max_body_bytes"})) return false;
    if (const json* bodies = optional(*object, "bodies")) {
      const auto flag = boolean(*bodies, "request_log.bodies");
      if (!flag) return false;
      spec->bodies = *flag;
    }
    if (const json* max = optional(*object, "max_body_bytes")) {
      const auto bytes = number(*max, "request_log.max_body_bytes", kMaxLoggedBodyBytes);
      if (!bytes) return false;
      spec->max_body_bytes = *bytes;
    }
    return true;
  }

  std::optional<PolicyTestSpec> test(const json& value, const std::string& path,
                                     const std::vector<ProviderSpec>& providers) {
    if (!has_only_keys(value, path, {"from", "to", "proto", "port", "model", "expect"})) {
      return std::nullopt;
    }
    PolicyTestSpec spec;
    const json* from = required(value, "from", path);
    if (!from) return std::nullopt;
    const std::string from_path = member(path, "from");
    auto selector = string(*from, from_path);
    if (!selector) return std::nullopt;
    std::string why;
    if (!is_valid_selector(*selector, &why)) return fail(from_path, why);
    spec.from = std::move(*selector);
    const json* expect = required(value, "expect", path);
    if (!expect) return std::nullopt;
    const auto verdict = string(*expect, member(path, "expect"));
    if (!verdict) return std::nullopt;
    if (*verdict != "allow" && *verdict != "deny") {
      return fail(member(path, "expect"), quote(*verdict) + " is not allow or deny");
    }
    spec.expect_allow = *verdict == "allow";
    const json* model = optional(value, "model");
    const json* to = optional(value, "to");
    if (!model == !to) {
      return fail(path, model ? "\"model\" and \"to\" exclude each other"
                              : "needs \"to\" (a network assertion) or \"model\"");
    }
    if (model && !test_model(value, *model, path, providers, &spec)) return std::nullopt;
    if (to && !test_flow(value, *to, path, &spec)) return std::nullopt;
    return spec;
  }

  bool test_model(const json& value, const json& model, const std::string& path,
                  const std::vector<ProviderSpec>& providers, PolicyTestSpec* spec) {
    for (const char* field : {"proto", "port"}) {
      if (optional(value, field)) return reject(member(path, field), "only valid with \"to\"");
    }
    const std::string model_path = member(path, "model");
    auto text = string(model, model_path);
    if (!text) return false;
    const auto parts = split_provider(*text);
    if (!parts || parts->second.empty()) {
      return reject(model_path, quote(*text) + " is not \"PROVIDER/MODEL\"");
    }
    if (!known_provider(parts->first, providers, model_path)) return false;
    spec->model = std::move(*text);
    return true;
  }

  // A packet as the ACL sees it: one destination address, a protocol, and a port for TCP and UDP
  // only (the data plane reads no other ports).
  bool test_flow(const json& value, const json& to, const std::string& path, PolicyTestSpec* spec) {
    const std::string to_path = member(path, "to");
    const auto text = string(to, to_path);
    if (!text) return false;
    std::string why;
    const auto address = parse_prefix(*text, &why);
    if (!address) return reject(to_path, why);
    if (address->len != max_prefix_length(address->family)) {
      return reject(to_path, quote(*text) + " is not a single address");
    }
    spec->to = *address;
    const json* proto = required(value, "proto", path);
    if (!proto) return false;
    const auto number_value = protocol(*proto, member(path, "proto"));
    if (!number_value) return false;
    if (*number_value == 0)
      return reject(member(path, "proto"), "a packet has a protocol, not any");
    spec->protocol = *number_value;
    const bool has_ports = spec->protocol == kProtoTcp || spec->protocol == kProtoUdp;
    const json* port = optional(value, "port");
    if (!has_ports) {
      if (port) return reject(member(path, "port"), "only valid with proto tcp or udp");
      return true;
    }
    if (!port) return reject(member(path, "port"), "required with proto tcp or udp");
    const auto port_number = number(*port, member(path, "port"), UINT16_MAX);
    if (!port_number) return false;
    spec->port = static_cast<uint16_t>(*port_number);
    return true;
  }

  Problem* problem_;
};

// The lines of what later messages point at. The text is scanned a second time only when the
// document has such entries.
void record_lines(std::string_view text, Document* document) {
  if (document->tests.empty() && document->budgets.empty() && document->guardrails.empty()) return;
  const SourceLines lines(text);
  for (size_t i = 0; i < document->tests.size(); ++i) {
    document->tests[i].line = lines.line_of(indexed("tests", i));
  }
  for (BudgetSpec& budget : document->budgets) {
    budget.line = lines.line_of(member("budgets", budget.name));
  }
  for (size_t i = 0; i < document->guardrails.size(); ++i) {
    GuardrailSpec& guardrail = document->guardrails[i];
    const std::string path = indexed("guardrails", i);
    guardrail.line = lines.line_of(path);
    for (size_t j = 0; j < guardrail.patterns.size(); ++j) {
      guardrail.patterns[j].line = lines.line_of(indexed(member(path, "patterns"), j));
    }
  }
}

// Everything parse_document() does, with the problem left unworded.
std::optional<Document> read_document(std::string_view text, Problem* problem) {
  DuplicateKeyFinder duplicates;
  json root;
  try {
    root = json::parse(
        text.begin(), text.end(),
        [&duplicates](int, json::parse_event_t event, json& parsed) {
          return duplicates(event, parsed);
        },
        /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    *problem = {"", "invalid JSON: " + parse_error_text(e), "",
                line_at_offset(text, e.byte > 0 ? e.byte - 1 : 0)};
    return std::nullopt;
  } catch (const json::exception& e) {
    *problem = {"", "invalid JSON: " + parse_error_text(e), "", 0};
    return std::nullopt;
  }
  if (duplicates.duplicate()) {
    *problem = {*duplicates.duplicate(), "duplicate key", *duplicates.duplicate(), 0};
    return std::nullopt;
  }
  auto document = DocumentReader(problem).document(root);
  if (!document) return std::nullopt;
  // The reader checks what load_policy checks, so this only fails if the two drift apart; its
  // error then starts with the buffer's field path.
  std::string why;
  auto compiled = compile(*document, &why);
  if (!compiled) {
    *problem = {"", why, why.substr(0, why.find(": ")), 0};
    return std::nullopt;
  }
  detail::wipe(compiled->data(), compiled->size());
  record_lines(text, &*document);
  if (!document->tests.empty()) {
    if (auto failure = run_policy_tests(*document)) {
      *problem = {failure->path, failure->message, failure->path, failure->line};
      return std::nullopt;
    }
  }
  return document;
}

std::string path_and_message(const Problem& problem) {
  return problem.path.empty() ? problem.message : problem.path + ": " + problem.message;
}

}  // namespace

std::optional<Document> parse_document(std::string_view text, std::string_view file_name,
                                       std::string* error) {
  Problem problem;
  auto document = read_document(text, &problem);
  if (!document && error) {
    const int line = problem.line > 0 ? problem.line : SourceLines(text).line_of(problem.where);
    *error = std::string(file_name) + ":" + std::to_string(line) + ": " + path_and_message(problem);
  }
  return document;
}

// Errors stay "PATH: message" without a file and line, as before the document existed.
std::optional<std::vector<uint8_t>> compile_policy_json(std::string_view text, std::string* error) {
  Problem problem;
  const auto document = read_document(text, &problem);
  if (!document) {
    if (error) *error = path_and_message(problem);
    return std::nullopt;
  }
  return compile(*document, error);
}

}  // namespace airlock::policy
