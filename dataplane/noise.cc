#include "dataplane/noise.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string_view>

namespace airlock::dp {
namespace {

using crypto::Key;

// Message structs are overlaid on wire bytes, and the wire is little-endian.
static_assert(std::endian::native == std::endian::little);

constexpr std::string_view kConstruction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
constexpr std::string_view kIdentifier = "WireGuard v1 zx2c4 Jason@zx2c4.com";

std::span<const uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

struct InitialChain {
  Key chaining_key;  // C0
  Key hash;          // H0
};

const InitialChain& initial_chain() {
  static const InitialChain chain = [] {
    InitialChain c{};
    crypto::hash(c.chaining_key, {bytes_of(kConstruction)});
    crypto::hash(c.hash, {c.chaining_key, bytes_of(kIdentifier)});
    return c;
  }();
  return chain;
}

bool header_is(const MessageHeader& header, MessageType type) {
  return header.type == static_cast<uint8_t>(type) && header.reserved[0] == 0 &&
         header.reserved[1] == 0 && header.reserved[2] == 0;
}

void set_header(MessageHeader& header, MessageType type) {
  header = MessageHeader{static_cast<uint8_t>(type), {0, 0, 0}};
}

// Noise's SymmetricState (chaining key C, hash H, current AEAD key k). Every mix uses KDF2 even
// where the whitepaper writes KDF1: KDF1's output is KDF2's first output, and the unused k is
// overwritten by the next mix, so the transcript is identical.
class SymmetricState {
 public:
  SymmetricState(const Key& chaining_key, const Key& hash) : ck_(chaining_key), h_(hash) {}
  SymmetricState(const SymmetricState&) = delete;
  SymmetricState& operator=(const SymmetricState&) = delete;
  ~SymmetricState() {
    crypto::wipe(ck_);
    crypto::wipe(h_);
    crypto::wipe(k_);
  }

  // The state both sides start from: C0 and HASH(H0 || responder's static public key).
  static SymmetricState for_responder(const Key& responder_static) {
    Key hash;
    crypto::hash(hash, {initial_chain().hash, responder_static});
    return SymmetricState(initial_chain().chaining_key, hash);
  }

  const Key& chaining_key() const { return ck_; }
  const Key& hash() const { return h_; }

  void mix_hash(std::span<const uint8_t> data) { crypto::hash(h_, {h_, data}); }
  void mix_key(std::span<const uint8_t> data) { crypto::kdf2(ck_, k_, ck_, data); }

  // An unencrypted ephemeral key enters both C and H.
  void mix_ephemeral(const Key& ephemeral_public) {
    mix_key(ephemeral_public);
    mix_hash(ephemeral_public);
  }

  [[nodiscard]] bool mix_dh(const Key& priv, const Key& pub) {
    Key shared;
    const bool ok = crypto::dh(shared, priv, pub);
    if (ok) mix_key(shared);
    crypto::wipe(shared);
    return ok;
  }

  void mix_psk(const Key& psk) {
    Key tau;
    crypto::kdf3(ck_, tau, k_, ck_, psk);
    mix_hash(tau);
    crypto::wipe(tau);
  }

  void encrypt_and_hash(std::span<uint8_t> out, std::span<const uint8_t> plaintext) {
    crypto::aead_encrypt(out, k_, 0, plaintext, h_);
    mix_hash(out);
  }

  [[nodiscard]] bool decrypt_and_hash(std::span<uint8_t> out, std::span<const uint8_t> ciphertext) {
    if (!crypto::aead_decrypt(out, k_, 0, ciphertext, h_)) return false;
    mix_hash(ciphertext);
    return true;
  }

  // Transport keys: (T1, T2) = KDF2(C, empty); T1 protects initiator -> responder.
  void split(Key& initiator_to_responder, Key& responder_to_initiator) const {
    crypto::kdf2(initiator_to_responder, responder_to_initiator, ck_, {});
  }

 private:
  Key ck_;
  Key h_;
  Key k_{};
};

Key copy_key(const uint8_t (&bytes)[kKeyLen]) {
  Key key;
  std::copy(std::begin(bytes), std::end(bytes), key.begin());
  return key;
}

}  // namespace

LocalIdentity LocalIdentity::from_private(const Key& private_key) {
  return LocalIdentity{private_key, crypto::public_from_private(private_key)};
}

LocalIdentity::~LocalIdentity() {
  crypto::wipe(private_key);
}

PeerKeys::~PeerKeys() {
  crypto::wipe(psk);
  crypto::wipe(static_static);
}

PeerKeys make_peer_keys_deferred(const Key& peer_public, const Key& psk) {
  PeerKeys peer;
  peer.public_key = peer_public;
  peer.psk = psk;
  peer.static_static_pending = true;
  return peer;
}

PeerKeys make_peer_keys(const LocalIdentity& local, const Key& peer_public, const Key& psk) {
  PeerKeys peer = make_peer_keys_deferred(peer_public, psk);
  complete_static_static(peer, local);
  return peer;
}

bool complete_static_static(PeerKeys& peer, const LocalIdentity& local) {
  if (peer.static_static_pending) {
    peer.static_static_ok = crypto::dh(peer.static_static, local.private_key, peer.public_key);
    peer.static_static_pending = false;
  }
  return peer.static_static_ok;
}

void Handshake::reset() {
  state = HandshakeState::kNone;
  crypto::wipe(hash);
  crypto::wipe(chaining_key);
  crypto::wipe(ephemeral_private);
  crypto::wipe(remote_ephemeral);
  local_index = 0;
  remote_index = 0;
}

Handshake::~Handshake() {
  reset();
}

SessionKeys::~SessionKeys() {
  crypto::wipe(send);
  crypto::wipe(receive);
}

InitiationScan::~InitiationScan() {
  crypto::wipe(chaining_key);
  crypto::wipe(hash);
}

bool create_initiation(MessageInitiation& out, Handshake& handshake, const LocalIdentity& local,
                       const PeerKeys& peer, const Key& ephemeral_private, uint32_t local_index,
                       std::span<const uint8_t, kTimestampLen> timestamp) {
  handshake.reset();
  if (!peer.static_static_ok) return false;
  const Key ephemeral_public = crypto::public_from_private(ephemeral_private);

  SymmetricState chain = SymmetricState::for_responder(peer.public_key);
  chain.mix_ephemeral(ephemeral_public);
  if (!chain.mix_dh(ephemeral_private, peer.public_key)) return false;  // es
  chain.encrypt_and_hash(out.encrypted_static, local.public_key);
  chain.mix_key(peer.static_static);  // ss
  chain.encrypt_and_hash(out.encrypted_timestamp, timestamp);

  set_header(out.header, MessageType::kInitiation);
  out.sender_index = local_index;
  std::copy(ephemeral_public.begin(), ephemeral_public.end(), out.unencrypted_ephemeral);
  out.macs = MessageMacs{};

  handshake.state = HandshakeState::kInitiationCreated;
  handshake.chaining_key = chain.chaining_key();
  handshake.hash = chain.hash();
  handshake.ephemeral_private = ephemeral_private;
  handshake.local_index = local_index;
  return true;
}

bool consume_response(const MessageResponse& msg, Handshake& handshake, const LocalIdentity& local,
                      const PeerKeys& peer, SessionKeys& out) {
  if (!header_is(msg.header, MessageType::kResponse) ||
      handshake.state != HandshakeState::kInitiationCreated ||
      msg.receiver_index != handshake.local_index) {
    return false;
  }
  const Key responder_ephemeral = copy_key(msg.unencrypted_ephemeral);

  SymmetricState chain(handshake.chaining_key, handshake.hash);
  chain.mix_ephemeral(responder_ephemeral);
  if (!chain.mix_dh(handshake.ephemeral_private, responder_ephemeral)) return false;  // ee
  if (!chain.mix_dh(local.private_key, responder_ephemeral)) return false;            // se
  chain.mix_psk(peer.psk);
  if (!chain.decrypt_and_hash({}, msg.encrypted_nothing)) return false;

  chain.split(out.send, out.receive);
  out.local_index = handshake.local_index;
  out.remote_index = msg.sender_index;
  out.we_initiated = true;
  handshake.reset();
  return true;
}

std::optional<InitiationScan> begin_consume_initiation(const MessageInitiation& msg,
                                                       const LocalIdentity& local) {
  if (!header_is(msg.header, MessageType::kInitiation)) return std::nullopt;
  std::optional<InitiationScan> scan(std::in_place);
  scan->remote_ephemeral = copy_key(msg.unencrypted_ephemeral);

  SymmetricState chain = SymmetricState::for_responder(local.public_key);
  chain.mix_ephemeral(scan->remote_ephemeral);
  if (!chain.mix_dh(local.private_key, scan->remote_ephemeral)) return std::nullopt;  // es
  if (!chain.decrypt_and_hash(scan->initiator_static, msg.encrypted_static)) return std::nullopt;

  scan->sender_index = msg.sender_index;
  scan->chaining_key = chain.chaining_key();
  scan->hash = chain.hash();
  std::copy(std::begin(msg.encrypted_timestamp), std::end(msg.encrypted_timestamp),
            scan->encrypted_timestamp.begin());
  return scan;
}

bool finish_consume_initiation(const InitiationScan& scan, Handshake& handshake,
                               const PeerKeys& peer, uint64_t now_ns) {
  if (!peer.static_static_ok || !crypto::equal_ct(peer.public_key, scan.initiator_static)) {
    return false;
  }
  SymmetricState chain(scan.chaining_key, scan.hash);
  chain.mix_key(peer.static_static);  // ss
  crypto::Tai64n timestamp;
  if (!chain.decrypt_and_hash(timestamp, scan.encrypted_timestamp)) return false;

  // Timestamps are big-endian, so byte order is time order.
  const bool replayed =
      std::memcmp(timestamp.data(), handshake.greatest_timestamp.data(), timestamp.size()) <= 0;
  const bool flood = handshake.consumed_any_initiation &&
                     now_ns < handshake.last_initiation_consumed_ns + kMinInitiationIntervalNs;
  if (replayed || flood) return false;

  handshake.reset();
  handshake.state = HandshakeState::kInitiationConsumed;
  handshake.chaining_key = chain.chaining_key();
  handshake.hash = chain.hash();
  handshake.remote_ephemeral = scan.remote_ephemeral;
  handshake.remote_index = scan.sender_index;
  handshake.greatest_timestamp = timestamp;
  handshake.last_initiation_consumed_ns = now_ns;
  handshake.consumed_any_initiation = true;
  return true;
}

bool create_response(MessageResponse& out, Handshake& handshake, const PeerKeys& peer,
                     const Key& ephemeral_private, uint32_t local_index, SessionKeys& out_keys) {
  if (handshake.state != HandshakeState::kInitiationConsumed) return false;
  const Key ephemeral_public = crypto::public_from_private(ephemeral_private);

  SymmetricState chain(handshake.chaining_key, handshake.hash);
  chain.mix_ephemeral(ephemeral_public);
  if (!chain.mix_dh(ephemeral_private, handshake.remote_ephemeral)) return false;  // ee
  if (!chain.mix_dh(ephemeral_private, peer.public_key)) return false;             // se
  chain.mix_psk(peer.psk);
  chain.encrypt_and_hash(out.encrypted_nothing, {});

  set_header(out.header, MessageType::kResponse);
  out.sender_index = local_index;
  out.receiver_index = handshake.remote_index;
  std::copy(ephemeral_public.begin(), ephemeral_public.end(), out.unencrypted_ephemeral);
  out.macs = MessageMacs{};

  chain.split(out_keys.receive, out_keys.send);
  out_keys.local_index = local_index;
  out_keys.remote_index = handshake.remote_index;
  out_keys.we_initiated = false;

  const uint32_t remote_index = handshake.remote_index;
  handshake.reset();
  handshake.state = HandshakeState::kResponseCreated;
  handshake.local_index = local_index;
  handshake.remote_index = remote_index;
  return true;
}

}  // namespace airlock::dp
