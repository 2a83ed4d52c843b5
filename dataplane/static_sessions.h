// airlock-dataplane --static-sessions FILE: transport keys installed at start as if handshakes
// had completed, so that a pcap sealed in advance (bench/gen_wg_pcap.cc) is accepted without a
// handshake. Benchmarks only: the keys sit in a file, so the sessions have none of the
// handshake's secrecy. The file is a secret; nothing here ever prints a key.
//
// One session per line, seven fields separated by blanks; '#' starts a comment line:
//   PEER_PUBLIC_KEY LOCAL_INDEX REMOTE_INDEX RECEIVE_KEY SEND_KEY ENDPOINT_IPV4:PORT ENDPOINT_MAC
// Keys are base64 (as `wg` prints them). LOCAL_INDEX is the receiver index the peer puts on its
// packets to us, REMOTE_INDEX the one we put on ours; decimal or 0x-prefixed hex. RECEIVE_KEY
// opens the peer's packets, SEND_KEY seals ours. The endpoint is where our packets to the peer
// go (the peer's packets update it, as in any session).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/crypto_prims.h"
#include "dataplane/peers.h"

namespace airlock::dp {

class Hub;

struct StaticSession {
  int line = 0;  // in the file, for errors
  crypto::Key peer_public{};
  uint32_t local_index = 0;
  uint32_t remote_index = 0;
  crypto::Key receive{};
  crypto::Key send{};
  Endpoint endpoint;

  StaticSession() = default;
  StaticSession(const StaticSession&) = default;
  StaticSession& operator=(const StaticSession&) = default;
  ~StaticSession();
};

// Parses the file's text. On error returns nullopt and "LINE: what is wrong" (never the key).
// Rejects an empty file, duplicate peers and two local indices sharing an index-table entry.
std::optional<std::vector<StaticSession>> parse_static_sessions(std::string_view text,
                                                                std::string* error);

// parse_static_sessions on the file's content (the caller names the file in errors).
std::optional<std::vector<StaticSession>> read_static_sessions(const std::string& path,
                                                               std::string* error);

// Installs every session into the hub's running policy (Hub::install_session with the file's
// local index). Control lcore, before the workers start. Stops at the first session whose peer
// is not in the policy or whose index cannot be reserved, with "LINE: why" in `error`.
bool install_static_sessions(Hub& hub, std::span<const StaticSession> sessions, std::string* error);

}  // namespace airlock::dp
