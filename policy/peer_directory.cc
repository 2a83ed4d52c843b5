#include "policy/peer_directory.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string_view>

#include "policy/builder.h"

namespace airlock::policy {
namespace {

size_t family_index(Family family) {
  return family == Family::V4 ? 0 : 1;
}

IpPrefix masked(const IpPrefix& address, uint8_t len) {
  IpPrefix out;
  out.family = address.family;
  out.len = len;
  const size_t whole = len / 8;
  std::copy_n(address.addr.begin(), whole, out.addr.begin());
  if (len % 8 != 0) {
    out.addr[whole] = static_cast<uint8_t>(address.addr[whole] & (0xff00 >> (len % 8)));
  }
  return out;
}

}  // namespace

size_t PeerDirectory::KeyHash::operator()(const Key& key) const {
  size_t hash;
  std::memcpy(&hash, key.data(), sizeof(hash));
  return hash;
}

size_t PeerDirectory::RouteHash::operator()(const Route& route) const {
  const std::string_view bytes(reinterpret_cast<const char*>(route.prefix.addr.data()),
                               route.prefix.addr.size());
  return std::hash<std::string_view>{}(bytes) ^ (size_t{route.prefix.len} << 1) ^
         static_cast<size_t>(route.prefix.family);
}

PeerDirectory::PeerDirectory(const Document& document) : identities_(document.identities()) {
  for (size_t i = 0; i < document.peers.size(); ++i) {
    const auto index = static_cast<uint32_t>(i);
    by_key_.emplace(identities_[i].public_key, index);
    for (const PrefixSpec& spec : document.peers[i].allowed_ips) {
      const std::optional<IpPrefix> prefix = prefix_of(spec);
      if (!prefix) continue;
      if (by_route_.emplace(Route{masked(*prefix, prefix->len)}, index).second) {
        lengths_[family_index(prefix->family)].push_back(prefix->len);
      }
    }
  }
  for (std::vector<uint8_t>& lengths : lengths_) {
    std::sort(lengths.begin(), lengths.end(), std::greater<>());
    lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  }
}

const Identity* PeerDirectory::by_key(const Key& public_key) const {
  const auto it = by_key_.find(public_key);
  return it == by_key_.end() ? nullptr : &identities_[it->second];
}

const Identity* PeerDirectory::by_address(const IpPrefix& host_address) const {
  for (const uint8_t len : lengths_[family_index(host_address.family)]) {
    if (len > host_address.len) continue;
    const auto it = by_route_.find(Route{masked(host_address, len)});
    if (it != by_route_.end()) return &identities_[it->second];
  }
  return nullptr;
}

}  // namespace airlock::policy
