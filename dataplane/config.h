// Command-line configuration of airlock-dataplane (the part after EAL's "--").
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "dataplane/crypto_batch.h"
#include "dataplane/messages.h"

namespace airlock::dp {

struct Config {
  uint32_t address_be = 0;  // our underlay IPv4 address, answered by the ARP responder
  uint16_t listen_port = 51820;
  std::string private_key_file;      // base64 as written by `wg genkey`
  std::string policy_file;           // compiled policy (FlatBuffers), optional at start
  std::string static_sessions_file;  // benchmarks only: see static_sessions.h
  std::string instance = "airlock";  // names the shared-memory regions and the control socket
  std::string control_socket;        // default /run/airlock/<instance>.sock
  uint16_t port_id = 0;
  uint32_t max_peers = 1024;
  uint32_t max_rules = 1024;
  uint32_t ring_slots = 4096;
  uint32_t mbufs = 16383;
  uint16_t inner_mtu = 1420;
  // Handshake messages waiting for the control lcore; at or above this the hub is "under
  // load" and demands cookies (mac2) before doing any Diffie-Hellman.
  uint32_t under_load_queue_depth = 128;
  // Handshake messages per second above which the hub is also "under load".
  uint32_t under_load_rate = 2000;
  ProtocolTimers timers;
  // IPsec-MB's instruction-set path for the transport data. kBest is the fastest the CPU has;
  // pinning another one trades speed for its properties (BatchCrypto::caveat). The encrypt
  // direction can be pinned on its own: decrypt settles a wrong library tag, encrypt cannot.
  BatchCrypto::Arch crypto = BatchCrypto::Arch::kBest;
  std::optional<BatchCrypto::Arch> crypto_encrypt;  // default: `crypto`

  BatchCrypto::Arch encrypt_path() const { return crypto_encrypt.value_or(crypto); }
};

// Parses the application arguments. On error returns nullopt and a message naming the flag.
std::optional<Config> parse_config(std::span<char*> args, std::string* error);
std::string config_usage();

}  // namespace airlock::dp
