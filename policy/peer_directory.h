// A policy's peers indexed for the gateway, which resolves the identity of every request: by
// public key, and by inner address with cryptokey routing's longest-prefix match. The
// Document's own identity_of_key and identity_of_address scan and parse every peer on each call,
// which at 10k peers cost milliseconds a request; the directory is built once per policy.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "policy/document.h"

namespace airlock::policy {

// A peer as requests see it. Its key's base64 text, which the request log, rate limits and
// session ids carry, is encoded once per policy: per request it cost more than the lookup.
struct PeerEntry {
  Identity identity;
  std::string key_base64;
};

class PeerDirectory {
 public:
  // Identities as Document::identities() gives them. Where peers repeat a key or an allowed
  // prefix, the first one holds it, as the Document's lookups answer.
  explicit PeerDirectory(const Document& document);

  // nullptr when no peer has the key / no allowed prefix contains the address.
  const PeerEntry* by_key(const Key& public_key) const;
  const PeerEntry* by_address(const IpPrefix& host_address) const;

  size_t size() const { return peers_.size(); }

 private:
  struct KeyHash {
    // Public keys are uniformly distributed curve points: any 8 of their bytes hash well.
    size_t operator()(const Key& key) const;
  };
  struct PrefixHash {
    size_t operator()(const IpPrefix& prefix) const;
  };

  std::vector<PeerEntry> peers_;
  std::unordered_map<Key, uint32_t, KeyHash> by_key_;
  std::unordered_map<IpPrefix, uint32_t, PrefixHash> by_prefix_;  // network_of each prefix
  // The prefix lengths present per family (0: IPv4, 1: IPv6), longest first.
  std::array<std::vector<uint8_t>, 2> lengths_;
};

}  // namespace airlock::policy
