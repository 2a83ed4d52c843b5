#include "policy/json.h"

#include <algorithm>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <set>

#include "policy/builder.h"

namespace airlock::policy {
namespace {

using nlohmann::json;

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoSctp = 132;

std::nullopt_t fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return std::nullopt;
}

std::string member(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string indexed(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string at(const std::string& path) {
  return path.empty() ? "" : path + ": ";
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

// Converts parsed JSON into builder specs, checking everything whose error should name a JSON path
// (the JSON field names differ from the schema's in places, e.g. "from" vs "sources").
class JsonReader {
 public:
  explicit JsonReader(std::string* error) : error_(error) {}

  std::optional<PolicyBuilder> policy(const json& root) {
    if (!has_only_keys(root, "", {"version", "gateway", "peers", "rules"})) return std::nullopt;
    PolicyBuilder builder;
    const json* version_json = required(root, "version", "");
    if (!version_json) return std::nullopt;
    const auto version = number(*version_json, "version", UINT64_MAX);
    if (!version) return std::nullopt;
    builder.version(*version);
    if (const json* gateway = optional(root, "gateway")) {
      const auto prefixes = prefix_list(*gateway, "gateway");
      if (!prefixes) return std::nullopt;
      for (const PrefixSpec& prefix : *prefixes) builder.gateway(prefix);
    }
    if (!each(root, "peers", [&](const json& item, const std::string& path) {
          auto spec = peer(item, path);
          if (spec) builder.add_peer(std::move(*spec));
          return spec.has_value();
        })) {
      return std::nullopt;
    }
    if (!each(root, "rules", [&](const json& item, const std::string& path) {
          auto spec = rule(item, path);
          if (spec) builder.add_rule(std::move(*spec));
          return spec.has_value();
        })) {
      return std::nullopt;
    }
    return builder;
  }

 private:
  bool reject(std::string message) {
    fail(error_, std::move(message));
    return false;
  }

  bool has_only_keys(const json& object, const std::string& path,
                     std::initializer_list<std::string_view> allowed) {
    if (!object.is_object()) return reject(at(path) + "expected an object");
    for (const auto& [key, value] : object.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        return reject(at(path) + "unknown key \"" + key + "\"");
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
    if (!value) reject(member(path, key) + ": required");
    return value;
  }

  // Calls visit(item, path) for each element of the optional array object[key].
  template <typename Visit>
  bool each(const json& object, std::string_view key, Visit visit) {
    const json* array = optional(object, key);
    if (!array) return true;
    const std::string path = member("", key);
    if (!array->is_array()) return reject(path + ": expected an array");
    for (size_t i = 0; i < array->size(); ++i) {
      if (!visit((*array)[i], indexed(path, i))) return false;
    }
    return true;
  }

  std::optional<std::string> string(const json& value, const std::string& path) {
    if (!value.is_string()) return fail(error_, path + ": expected a string");
    return value.get<std::string>();
  }

  std::optional<std::vector<std::string>> string_list(const json& value, const std::string& path) {
    if (!value.is_array()) return fail(error_, path + ": expected an array of strings");
    std::vector<std::string> strings;
    for (size_t i = 0; i < value.size(); ++i) {
      auto text = string(value[i], indexed(path, i));
      if (!text) return std::nullopt;
      strings.push_back(std::move(*text));
    }
    return strings;
  }

  std::optional<uint64_t> number(const json& value, const std::string& path, uint64_t max) {
    if (!value.is_number_unsigned() || value.get<uint64_t>() > max) {
      return fail(error_, path + ": expected an integer from 0 to " + std::to_string(max));
    }
    return value.get<uint64_t>();
  }

  std::optional<std::string> name(const json& value, const std::string& path) {
    auto text = string(value, path);
    if (text && !is_valid_name(*text)) {
      return fail(error_, path + ": \"" + *text +
                              "\" is not a valid name (non-empty printable ASCII without "
                              "whitespace)");
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

  // Never echoes the text: it may be a preshared key.
  std::optional<std::string> key(const json& value, const std::string& path) {
    auto text = string(value, path);
    if (text && !decode_key_base64(*text)) {
      return fail(error_, path + ": not a base64-encoded 32-byte key");
    }
    return text;
  }

  std::optional<std::vector<PrefixSpec>> prefix_list(const json& value, const std::string& path) {
    const auto texts = string_list(value, path);
    if (!texts) return std::nullopt;
    std::vector<PrefixSpec> prefixes;
    std::string why;
    for (size_t i = 0; i < texts->size(); ++i) {
      if (!parse_prefix((*texts)[i], &why)) return fail(error_, indexed(path, i) + ": " + why);
      prefixes.emplace_back((*texts)[i]);
    }
    return prefixes;
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
      if (!parse_endpoint(*text, &why)) return fail(error_, endpoint_path + ": " + why);
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
    if (!rule_sources(value, path, &spec) || !rule_destinations(value, path, &spec) ||
        !rule_protocol(value, path, &spec) || !rule_ports(value, path, &spec) ||
        !rule_action(value, path, &spec)) {
      return std::nullopt;
    }
    return spec;
  }

  bool rule_sources(const json& value, const std::string& path, RuleSpec* spec) {
    const json* from = required(value, "from", path);
    if (!from) return false;
    const std::string from_path = member(path, "from");
    auto sources = string_list(*from, from_path);
    if (!sources) return false;
    if (sources->empty()) return reject(from_path + ": empty (use [\"*\"] for any source)");
    std::string why;
    for (size_t i = 0; i < sources->size(); ++i) {
      if (!is_valid_selector((*sources)[i], &why))
        return reject(indexed(from_path, i) + ": " + why);
    }
    spec->sources = std::move(*sources);
    return true;
  }

  bool rule_destinations(const json& value, const std::string& path, RuleSpec* spec) {
    const json* to = required(value, "to", path);
    if (!to) return false;
    const std::string to_path = member(path, "to");
    if (*to == json::array({"*"})) return true;  // an empty destination list means any
    if (to->is_array() && to->empty()) {
      return reject(to_path + ": empty (use [\"*\"] for any destination)");
    }
    if (to->is_array() && std::find(to->begin(), to->end(), json("*")) != to->end()) {
      return reject(to_path + ": \"*\" must be the only destination");
    }
    auto prefixes = prefix_list(*to, to_path);
    if (!prefixes) return false;
    spec->destinations = std::move(*prefixes);
    return true;
  }

  bool rule_protocol(const json& value, const std::string& path, RuleSpec* spec) {
    const json* proto = optional(value, "proto");
    if (!proto) return true;
    const std::string proto_path = member(path, "proto");
    if (proto->is_number_unsigned()) {
      const auto number_value = number(*proto, proto_path, UINT8_MAX);
      if (!number_value) return false;
      spec->protocol = static_cast<uint8_t>(*number_value);
      return true;
    }
    const auto text = string(*proto, proto_path);
    if (!text) return false;
    static const std::pair<std::string_view, uint8_t> kNames[] = {
        {"any", 0}, {"icmp", kProtoIcmp}, {"tcp", kProtoTcp}, {"udp", kProtoUdp}};
    for (const auto& [protocol_name, number_value] : kNames) {
      if (*text == protocol_name) {
        spec->protocol = number_value;
        return true;
      }
    }
    const auto number_value = parse_decimal(*text, UINT8_MAX);
    if (!number_value) {
      return reject(proto_path + ": \"" + *text +
                    "\" is not tcp, udp, icmp, any or a protocol number 0-255");
    }
    spec->protocol = static_cast<uint8_t>(*number_value);
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
      return reject(ports_path + ": only valid with proto tcp, udp or sctp (132)");
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
      return reject(ports_path + ": \"" + *text + "\" is not PORT or LOW-HIGH within 0-65535");
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
      return reject(action_path + ": \"" + *text + "\" is not forward, punt or drop");
    }
    return true;
  }

  std::string* error_;
};

}  // namespace

std::optional<std::vector<uint8_t>> compile_policy_json(std::string_view text, std::string* error) {
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
    return fail(error, std::string("invalid JSON: ") + e.what());
  }
  if (duplicates.duplicate()) return fail(error, *duplicates.duplicate() + ": duplicate key");
  auto builder = JsonReader(error).policy(root);
  if (!builder) return std::nullopt;
  return builder->finish(error);
}

}  // namespace airlock::policy
