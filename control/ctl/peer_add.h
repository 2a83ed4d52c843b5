// `airlockctl peer add`: a fresh WireGuard key pair, the peer entry written into the policy text
// people edit (comments and layout kept), the next free address, and the sandbox's wg-quick
// configuration.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/document.h"

namespace airlock::control::ctl {

struct KeyPair {
  policy::Key private_key{};  // clamped Curve25519 scalar
  policy::Key public_key{};
  KeyPair() = default;
  KeyPair(const KeyPair&) = delete;
  KeyPair& operator=(const KeyPair&) = delete;
  ~KeyPair();  // wipes the private key
};

// A new key pair from libsodium's generator, as `wg genkey | wg pubkey` would make.
void generate_key_pair(KeyPair* pair);

// The lowest free IPv4 host address ("a.b.c.d/32") in the subnet of the existing peers'
// addresses: the smallest prefix holding every peer's IPv4 host address, widened to a /24 when
// narrower. Its network and broadcast addresses, the gateway and every address inside
// any peer's allowed IPs are skipped. nullopt with *error when there are no peer addresses to
// start from or the subnet is full.
std::optional<std::string> next_free_address(const policy::Document& document, std::string* error);

struct NewPeer {
  std::string user;
  std::string device;  // empty: left out
  std::vector<std::string> tags;
  std::optional<std::string> address;  // "100.80.0.9" or a prefix; nullopt: next free one
};

struct PeerAdded {
  std::string text;     // the whole new policy text
  std::string address;  // the peer's allowed IP, as written
  uint64_t version = 0;
};

// Adds `peer` with `public_key` to the policy `text`: checks the current text, inserts the
// entry at the end of "peers", raises "version" above both the file's and `min_version` (the
// version the control plane runs), then checks the result with parse_document (its tests
// included).
std::optional<PeerAdded> add_peer(std::string_view text, std::string_view file_name,
                                  const NewPeer& peer, const policy::Key& public_key,
                                  uint64_t min_version, std::string* error);

struct HubEndpoint {
  std::string public_key;
  std::string endpoint;
  std::vector<std::string> gateway;
};

// [Interface] PrivateKey, Address; [Peer] the hub, routing only the gateway through the tunnel.
std::string wg_quick_config(std::string_view name, const KeyPair& keys, std::string_view address,
                            const HubEndpoint& hub);

}  // namespace airlock::control::ctl
