#include "policy/peer_directory.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string_view>

#include "policy/builder.h"
#include "policy/policy.h"

namespace airlock::policy {
namespace {

size_t family_index(Family family) {
  return family == Family::V4 ? 0 : 1;
}

}  // namespace

size_t PeerDirectory::KeyHash::operator()(const Key& key) const {
  size_t hash;
  std::memcpy(&hash, key.data(), sizeof(hash));
  return hash;
}

size_t PeerDirectory::PrefixHash::operator()(const IpPrefix& prefix) const {
  const std::string_view bytes(reinterpret_cast<const char*>(prefix.addr.data()),
                               prefix.addr.size());
  return std::hash<std::string_view>{}(bytes) ^ (size_t{prefix.len} << 1) ^
         static_cast<size_t>(prefix.family);
}

PeerDirectory::PeerDirectory(const Document& document) {
  std::vector<Identity> identities = document.identities();
  peers_.reserve(identities.size());
  for (Identity& identity : identities) {
    std::string key = encode_key_base64(identity.public_key);
    peers_.push_back({std::move(identity), std::move(key)});
  }
  for (size_t i = 0; i < document.peers.size(); ++i) {
    const auto index = static_cast<uint32_t>(i);
    by_key_.emplace(peers_[i].identity.public_key, index);
    for (const PrefixSpec& spec : document.peers[i].allowed_ips) {
      const std::optional<IpPrefix> prefix = prefix_of(spec);
      if (!prefix) continue;
      if (by_prefix_.emplace(network_of(*prefix), index).second) {
        lengths_[family_index(prefix->family)].push_back(prefix->len);
      }
    }
  }
  for (std::vector<uint8_t>& lengths : lengths_) {
    std::sort(lengths.begin(), lengths.end(), std::greater<>());
    lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  }
}

const PeerEntry* PeerDirectory::by_key(const Key& public_key) const {
  const auto it = by_key_.find(public_key);
  return it == by_key_.end() ? nullptr : &peers_[it->second];
}

const PeerEntry* PeerDirectory::by_address(const IpPrefix& host_address) const {
  for (const uint8_t len : lengths_[family_index(host_address.family)]) {
    if (len > host_address.len) continue;
    IpPrefix network = host_address;
    network.len = len;
    const auto it = by_prefix_.find(network_of(network));
    if (it != by_prefix_.end()) return &peers_[it->second];
  }
  return nullptr;
}

}  // namespace airlock::policy
