// One generation of the compiled policy as the workers see it: read-only tables built from a
// verified policy buffer and published with an RCU pointer swap.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/acl.h"
#include "dataplane/allowedips.h"
#include "dataplane/noise.h"
#include "policy/policy.h"

namespace airlock::dp {

struct PolicySnapshot {
  uint64_t version = 0;
  AllowedIps allowed_ips;
  AclTable acl;
  std::vector<std::string> rule_names;
};

// A policy on its way in (Hub::begin_policy / finish_policy). compile() reads only what the
// build holds and writes only its own tables, so it may run on any thread while the control
// lcore goes on with handshakes and timers.
class PolicyBuild {
 public:
  explicit PolicyBuild(airlock::policy::LoadedPolicy loaded) : loaded_(std::move(loaded)) {}

  // Builds the allowed-IPs and ACL tables; false with error() set if either fails.
  bool compile();
  const std::string& error() const { return error_; }

 private:
  friend class Hub;

  airlock::policy::LoadedPolicy loaded_;
  std::vector<uint32_t> slots_;      // slot of policy peer i
  std::vector<bool> fresh_;          // policy peer i starts afresh (new keys, timers and counters)
  std::vector<uint32_t> allocated_;  // slots allocated for this build (released if it fails)
  std::vector<std::vector<Prefix>> peer_prefixes_;
  uint32_t v4_prefixes_ = 0, v6_prefixes_ = 0;
  std::vector<AclIdentity> identities_;
  std::vector<AclRule> rules_;
  std::shared_ptr<const AclContexts> running_acl_;  // reused if this policy's ACL is the same
  std::vector<std::string> rule_names_;
  std::optional<AllowedIps> allowed_;
  std::optional<AclTable> acl_;
  std::string error_;
};

}  // namespace airlock::dp
