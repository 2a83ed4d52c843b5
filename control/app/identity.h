// Who is on the other end of a gateway connection. The proof is the WireGuard key: the data plane
// hands each punted packet over with the slot of the peer whose session decrypted it, RingTun
// binds the packet's inner source address to that slot, and the slot's public key (published by
// the data plane in its counters region) names the policy peer. Cryptokey routing guarantees the
// address lies in that peer's allowed IPs; that is checked again here, so a stale binding after a
// policy change can never lend one peer's address to another.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "control/tun/ring_tun.h"
#include "dataplane/stats.h"
#include "policy/document.h"
#include "policy/peer_directory.h"

namespace airlock::control {

struct PuntSource {
  RingTun* ring = nullptr;           // the channel the flow arrived on
  dp::StatsReader* stats = nullptr;  // counters region of the same data plane (slot -> key)
};

class IdentityResolver {
 public:
  IdentityResolver(std::vector<PuntSource> sources, std::optional<policy::Key> local_peer)
      : sources_(std::move(sources)), local_peer_(local_peer) {}

  // Safe to call from several threads at once. The entry lives in `peers`; nullptr for an
  // unknown or mismatched peer.
  const policy::PeerEntry* resolve(const policy::PeerDirectory& peers,
                                   const boost::asio::ip::address& remote) const;

 private:
  std::optional<policy::Key> key_of(const IpAddress& address) const;

  std::vector<PuntSource> sources_;
  std::optional<policy::Key> local_peer_;
};

IpAddress to_ip_address(const boost::asio::ip::address& address);

}  // namespace airlock::control
