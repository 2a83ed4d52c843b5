// Fluent construction of policy buffers for tests and the CLI. finish() yields only buffers that
// load_policy accepts; finish_unchecked() writes raw values as given so tests can produce buffers
// that the semantic checks must reject.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "policy/policy.h"

namespace airlock::policy {

// Written to the buffer exactly as given, even when invalid.
struct RawPrefix {
  Family family = Family::V4;
  std::vector<uint8_t> addr;
  uint8_t len = 0;
};

struct RawEndpoint {
  RawPrefix addr;
  uint16_t port = 0;
};

// Base64 text or raw bytes. An empty string leaves the key out of the buffer.
using KeySpec = std::variant<std::string, Key>;
// Prefix text as parse_prefix accepts it, or raw values.
using PrefixSpec = std::variant<std::string, RawPrefix>;
// Endpoint text as parse_endpoint accepts it, or raw values.
using EndpointSpec = std::variant<std::string, RawEndpoint>;

// The prefix a spec denotes, or nullopt when it is not a valid prefix.
std::optional<IpPrefix> prefix_of(const PrefixSpec& spec);

struct PeerSpec {
  KeySpec public_key;
  std::optional<KeySpec> preshared_key;
  std::vector<PrefixSpec> allowed_ips;
  std::string user;    // always written, even when empty
  std::string device;  // empty: left out
  std::vector<std::string> tags;
  std::vector<std::string> groups;
  std::optional<EndpointSpec> endpoint;
  uint16_t persistent_keepalive = 0;
};

struct RuleSpec {
  std::string name;
  std::vector<std::string> sources;
  std::vector<PrefixSpec> destinations;  // empty: any
  uint8_t protocol = 0;                  // 0: any
  uint16_t port_low = 0;
  uint16_t port_high = 65535;
  Action action = Action::Drop;
};

class PolicyBuilder {
 public:
  PolicyBuilder& version(uint64_t version);
  // Defaults to kSchemaVersion; other values exist to test version gating.
  PolicyBuilder& schema_version(uint32_t schema_version);
  PolicyBuilder& gateway(PrefixSpec prefix);
  PolicyBuilder& add_peer(PeerSpec peer);
  PolicyBuilder& add_rule(RuleSpec rule);

  // Fails on unparsable text (error names the field path, e.g. "peers[1].allowed_ips[0]: ...")
  // or when load_policy rejects the result.
  std::optional<std::vector<uint8_t>> finish(std::string* error) const;
  // Fails only on unparsable text; skips load_policy.
  std::optional<std::vector<uint8_t>> finish_unchecked(std::string* error) const;

 private:
  uint64_t version_ = 0;
  uint32_t schema_version_ = kSchemaVersion;
  std::vector<PrefixSpec> gateway_;
  std::vector<PeerSpec> peers_;
  std::vector<RuleSpec> rules_;
};

}  // namespace airlock::policy
