// A large synthetic policy for the policy benchmarks (bench_policy, bench_dataplane
// --swap-every-ms), shaped like a big deployment rather than a worst case:
//   peers: one IPv4 /32 each in 10.64.0.0/10, user "uN", device "devN", in one team of 50
//          ("teamK", consecutive peers) and tagged by OS;
//   rules: 9 in 10 let a team reach a service, 1 in 10 gives one user a personal host. Services
//          are 10 000 destinations in 172.16.0.0/12 (every 4th a /24, the rest /32), TCP, one
//          port or a 100-port range; 1 rule in 20 drops.
// Every user has a rule of its own only when rules >= 10 * peers, so at 10k/100k each peer is
// an identity class of its own (the ACL's worst class count), while each team rule still
// compiles to one class range.
// Peer keys are derived from (key_set, index): two key sets give two policies with disjoint
// peers, as a full re-provisioning would.
#pragma once

#include <sodium.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "policy/builder.h"

namespace airlock::bench {

inline constexpr uint32_t kPeersPerTeam = 50;
inline constexpr uint32_t kServices = 10000;

inline policy::Key synthetic_key(uint32_t key_set, uint32_t index) {
  const uint32_t seed[2] = {key_set, index};
  policy::Key key;
  crypto_generichash(key.data(), key.size(), reinterpret_cast<const uint8_t*>(seed), sizeof(seed),
                     nullptr, 0);
  return key;
}

inline std::string dotted(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return std::to_string(a) + "." + std::to_string(b) + "." + std::to_string(c) + "." +
         std::to_string(d);
}

inline std::vector<policy::PeerSpec> synthetic_peers(uint32_t count, uint32_t key_set) {
  std::vector<policy::PeerSpec> peers;
  peers.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    policy::PeerSpec p;
    p.public_key = synthetic_key(key_set, i);
    p.allowed_ips = {dotted(10, 64 + (i >> 16), (i >> 8) & 0xff, i & 0xff) + "/32"};
    p.user = "u" + std::to_string(i);
    p.device = "dev" + std::to_string(i);
    p.groups = {"team" + std::to_string(i / kPeersPerTeam)};
    p.tags = {i % 3 == 0 ? "os-macos" : "os-linux"};
    peers.push_back(std::move(p));
  }
  return peers;
}

inline std::vector<policy::RuleSpec> synthetic_rules(uint32_t count, uint32_t peers) {
  const uint32_t teams = std::max<uint32_t>(1, peers / kPeersPerTeam);
  std::vector<policy::RuleSpec> rules;
  rules.reserve(count);
  for (uint32_t k = 0; k < count; ++k) {
    policy::RuleSpec r;
    const uint32_t service = (k * 7919) % kServices;
    const uint32_t b = 16 + service / 1024, c = (service / 4) % 256;
    if (k % 10 == 9) {
      r.name = "personal-" + std::to_string(k);
      r.sources = {"user:u" + std::to_string((k / 10) % peers)};
      r.destinations = {dotted(172, b, c, service % 256) + "/32"};
      r.port_low = r.port_high = 22;
    } else {
      r.name = "team-" + std::to_string(k);
      r.sources = {"group:team" + std::to_string(k % teams)};
      r.destinations = {service % 4 == 0 ? dotted(172, b, c, 0) + "/24"
                                         : dotted(172, b, c, service % 256) + "/32"};
      r.port_low = k % 3 == 0 ? 8000 : 443;
      r.port_high = k % 3 == 0 ? 8099 : 443;
    }
    r.protocol = 6;
    r.action = k % 20 == 7 ? policy::Action::Drop : policy::Action::Forward;
    rules.push_back(std::move(r));
  }
  return rules;
}

}  // namespace airlock::bench
