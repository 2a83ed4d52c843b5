// One generation of the compiled policy as the workers see it: read-only tables built on the
// control lcore from a verified policy buffer and published with an RCU pointer swap.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/acl.h"
#include "dataplane/allowedips.h"

namespace airlock::dp {

struct PolicySnapshot {
  uint64_t version = 0;
  AllowedIps allowed_ips;
  AclTable acl;
  std::vector<std::string> rule_names;
};

}  // namespace airlock::dp
