#include "control/app/identity.h"

namespace airlock::control {

IpAddress to_ip_address(const boost::asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return to_ip_address(
        boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6()));
  }
  if (address.is_v4()) {
    const auto bytes = address.to_v4().to_bytes();
    return IpAddress::v4(std::span<const uint8_t, 4>(bytes.data(), 4));
  }
  const auto bytes = address.to_v6().to_bytes();
  return IpAddress::v6(std::span<const uint8_t, 16>(bytes.data(), 16));
}

std::optional<policy::Key> IdentityResolver::key_of(const IpAddress& address) const {
  for (const PuntSource& source : sources_) {
    const std::optional<uint32_t> slot = source.ring->peer_of(address);
    if (!slot || source.stats == nullptr) continue;
    if (const std::optional<dp::PeerRecord> peer = source.stats->peer(*slot)) {
      return peer->public_key;
    }
  }
  return std::nullopt;
}

const policy::PeerEntry* IdentityResolver::resolve(const policy::PeerDirectory& peers,
                                                   const boost::asio::ip::address& remote) const {
  if (remote.is_loopback() && local_peer_) return peers.by_key(*local_peer_);
  const IpAddress address = to_ip_address(remote);
  const std::optional<policy::Key> key = key_of(address);
  if (!key) return nullptr;
  policy::IpPrefix host;
  host.family = address.family == AF_INET6 ? policy::Family::V6 : policy::Family::V4;
  std::copy_n(address.bytes.begin(), address.size(), host.addr.begin());
  host.len = policy::max_prefix_length(host.family);
  const policy::PeerEntry* routed = peers.by_address(host);
  if (routed == nullptr || routed->identity.public_key != *key) return nullptr;
  return routed;
}

}  // namespace airlock::control
