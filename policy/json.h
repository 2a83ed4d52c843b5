// The human-written policy format (JSON with comments) compiled into a policy buffer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::policy {

// Compiles policy JSON:
//   { "version": 1, "gateway": ["100.80.0.1/32"],
//     "peers": [{"public_key": B64, "preshared_key": B64, "allowed_ips": [...], "user": "alice",
//                "device": "laptop", "tags": [...], "groups": [...], "endpoint": "ADDR:PORT",
//                "persistent_keepalive": 25}],
//     "rules": [{"name": "a-to-b", "from": ["user:alice"], "to": ["100.80.0.3/32"] or ["*"],
//                "proto": "tcp|udp|icmp|any|N", "ports": "5201" or "1000-2000",
//                "action": "forward|punt|drop"}] }
// Comments are allowed. Unknown and duplicate keys are errors, so a typo cannot silently widen a
// policy. Errors name the JSON path, e.g. "peers[1].allowed_ips[0]: ...". The result passes
// load_policy. The same reader as parse_document() (document.h), so every section of the
// document is accepted and checked and its tests run; only the error wording (no file and line)
// differs.
std::optional<std::vector<uint8_t>> compile_policy_json(std::string_view text, std::string* error);

}  // namespace airlock::policy
