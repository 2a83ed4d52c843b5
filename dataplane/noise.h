// The Noise_IKpsk2 handshake of WireGuard (whitepaper §5.4, wireguard.md §1.4), sans-I/O and
// deterministic: the caller supplies ephemeral private keys, local indices, timestamps and the
// clock, so a transcript can be replayed byte for byte. mac1/mac2 are left zero here; cookie.h
// fills and checks them. Not thread-safe: the caller serialises work on one peer's Handshake.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "dataplane/crypto_prims.h"
#include "dataplane/messages.h"

namespace airlock::dp {

// A responder accepts at most one initiation per peer per 20 ms (INITIATIONS_PER_SECOND = 50).
inline constexpr uint64_t kMinInitiationIntervalNs = 20'000'000;

// Our static key pair.
struct LocalIdentity {
  crypto::Key private_key{};
  crypto::Key public_key{};

  static LocalIdentity from_private(const crypto::Key& private_key);
  ~LocalIdentity();
};

// Per-peer key material, fixed while the peer's configuration is unchanged.
struct PeerKeys {
  crypto::Key public_key{};
  crypto::Key psk{};            // all zero when no pre-shared key is configured
  crypto::Key static_static{};  // DH(our private, peer public), computed once per peer
  // False while pending, or for good when the peer key is a low-order point (no handshake).
  bool static_static_ok = false;
  bool static_static_pending = false;  // left for complete_static_static

  ~PeerKeys();
};

PeerKeys make_peer_keys(const LocalIdentity& local, const crypto::Key& peer_public,
                        const crypto::Key& psk = {});

// As make_peer_keys, but the static-static DH waits for complete_static_static at the peer's
// first handshake. An X25519 costs about 36 µs here, so a policy that brings 10k new peers would
// otherwise spend 0.36 s of its swap on keys that most of those peers will not use for a while.
PeerKeys make_peer_keys_deferred(const crypto::Key& peer_public, const crypto::Key& psk = {});

// Computes a deferred static-static DH the first time; true when the peer can handshake.
bool complete_static_static(PeerKeys& peer, const LocalIdentity& local);

enum class HandshakeState : uint8_t {
  kNone,
  kInitiationCreated,   // we initiated and wait for the response
  kInitiationConsumed,  // we accepted the peer's initiation and may answer it
  kResponseCreated,     // we answered; secrets already wiped, indices kept for the caller
};

// One peer's handshake state.
struct Handshake {
  HandshakeState state = HandshakeState::kNone;
  crypto::Key hash{};
  crypto::Key chaining_key{};
  crypto::Key ephemeral_private{};
  crypto::Key remote_ephemeral{};
  uint32_t local_index = 0;
  uint32_t remote_index = 0;
  // Replay and flood history of consumed initiations; kept across resets.
  crypto::Tai64n greatest_timestamp{};
  uint64_t last_initiation_consumed_ns = 0;
  bool consumed_any_initiation = false;

  // Back to kNone with secrets and indices wiped; the history above survives.
  void reset();
  ~Handshake();
};

// Transport keys of one session (whitepaper §5.4.5).
struct SessionKeys {
  crypto::Key send{};
  crypto::Key receive{};
  uint32_t local_index = 0;   // the receiver index the peer puts on packets to us
  uint32_t remote_index = 0;  // the receiver index we put on packets to the peer
  bool we_initiated = false;

  ~SessionKeys();
};

// Responder state after the first half of an initiation: enough to find the peer by its static
// key, not yet authenticated against that peer.
struct InitiationScan {
  crypto::Key initiator_static{};  // the peer's claimed static public key
  uint32_t sender_index = 0;
  crypto::Key remote_ephemeral{};
  crypto::Key chaining_key{};
  crypto::Key hash{};
  std::array<uint8_t, kTimestampLen + kTagLen> encrypted_timestamp{};

  ~InitiationScan();
};

// Initiator, message 1. Overwrites `handshake` (a previous pending initiation is superseded).
// Returns false only if a DH result is zero (peer key unusable).
[[nodiscard]] bool create_initiation(MessageInitiation& out, Handshake& handshake,
                                     const LocalIdentity& local, const PeerKeys& peer,
                                     const crypto::Key& ephemeral_private, uint32_t local_index,
                                     std::span<const uint8_t, kTimestampLen> timestamp);

// Initiator, message 2. Succeeds only for a response to the initiation `handshake` holds; on
// success fills `out` and resets `handshake`, on failure leaves both untouched.
[[nodiscard]] bool consume_response(const MessageResponse& msg, Handshake& handshake,
                                    const LocalIdentity& local, const PeerKeys& peer,
                                    SessionKeys& out);

// Responder, message 1, step 1: decrypts the initiator's static key. nullopt: drop silently.
std::optional<InitiationScan> begin_consume_initiation(const MessageInitiation& msg,
                                                       const LocalIdentity& local);

// Responder, message 1, step 2, with the peer found by scan.initiator_static: authenticates,
// rejects replayed timestamps and initiations closer than kMinInitiationIntervalNs to the last
// accepted one, and only then stores the state (superseding any initiation of ours to this
// peer). `handshake` is untouched on failure.
[[nodiscard]] bool finish_consume_initiation(const InitiationScan& scan, Handshake& handshake,
                                             const PeerKeys& peer, uint64_t now_ns);

// Responder, message 2, after finish_consume_initiation. Fills `out_keys`; the session must not
// be used for sending before the peer's first transport packet confirms it (§1.9).
[[nodiscard]] bool create_response(MessageResponse& out, Handshake& handshake, const PeerKeys& peer,
                                   const crypto::Key& ephemeral_private, uint32_t local_index,
                                   SessionKeys& out_keys);

}  // namespace airlock::dp
