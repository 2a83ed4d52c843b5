// Noise_IKpsk2 against the deterministic transcript of wireguard.md §2.2 (accepted by
// wireguard-go), in both roles, with and without psk, plus the rejection rules of §1.4.
#include "dataplane/noise.h"
#include "tests/hex.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::dp {
namespace {

using crypto::Key;

using test::from_hex;
using test::key_from_hex;

template <typename Message>
std::vector<uint8_t> bytes_of(const Message& msg) {
  const auto* p = reinterpret_cast<const uint8_t*>(&msg);
  return {p, p + sizeof(msg)};
}

template <typename Message>
Message message_from_hex(std::string_view hex) {
  const auto bytes = from_hex(hex);
  Message msg;
  EXPECT_EQ(bytes.size(), sizeof(msg));
  std::memcpy(&msg, bytes.data(), sizeof(msg));
  return msg;
}

std::vector<uint8_t> without_macs(std::vector<uint8_t> bytes) {
  std::fill(bytes.end() - sizeof(MessageMacs), bytes.end(), 0);
  return bytes;
}

// wireguard.md §2.2 inputs and outputs.
const Key kInitiatorStaticPriv =
    key_from_hex("10eeae0d3e0537f311a98be08f7fc86b26634b3a6555657eaf345ed340a1777d");
const Key kInitiatorStaticPub =
    key_from_hex("3293d144ca91467dd70184453ad2799003762fa6075bcb2eea6ad52242e7a12d");
const Key kResponderStaticPriv =
    key_from_hex("603a3496ad2ec7ba2f6be70254de54fbe9fe7a31c878c1a772ec1c9de282ee49");
const Key kResponderStaticPub =
    key_from_hex("7c486854dc4004f033c8ca26a5dc8cf158189d68e1206b7104dd3d8531035c49");
const Key kInitiatorEphemeralPriv =
    key_from_hex("c8a0e85162cec8feb232e3f3ac85818a0af8b014848e429471630d2217d4c260");
const Key kResponderEphemeralPriv =
    key_from_hex("e0311aaec4e5cdff66fad8f153c667e36873727bd7f5df4fbb228f4e640c0f5d");
const Key kPsk = key_from_hex("233edfa58c84847712e911572533907dc46771c2af022cea0766b422d44f31e5");
constexpr uint32_t kInitiatorIndex = 0x11223344;
constexpr uint32_t kResponderIndex = 0x0badcafe;
constexpr uint64_t kUnixNs = 1'700'000'000ULL * 1'000'000'000ULL;

constexpr std::string_view kInitiationHex =
    "0100000044332211c67c4dc63cf6e5a8c9f9b03805497361dd4da613d03359d1474c07fa514734787db86cd6d6"
    "8628037466dc80bfa7d1e7f6ec7f5f485401b09a280c6dd08ef55a7e25e46903fa0c8bd9427e9e5b6f084155d1"
    "33108189d440ef8225511a06da66be4ac9c1b66c05139392b7799d653391d9e4a875694a169e5cf49df9000000"
    "00000000000000000000000000";
constexpr std::string_view kChainAfterInitiationHex =
    "02aed1efc211fa6c80aaa088e77151d9d86bd5c95a03f4bbf52011fb0ffa989b";
constexpr std::string_view kHashAfterInitiationHex =
    "9348500e705eb75b4fc913ed3e527d59e6fcb827516dbda9faab8aee1e5c6af0";

struct Outcome {
  std::string_view response_hex;
  std::string_view t1_hex;  // initiator -> responder
  std::string_view t2_hex;  // responder -> initiator
};

constexpr Outcome kWithPsk = {
    "02000000fecaad0b443322112826e24190cbbb8fe6bd4113f36dc8e0a4b92d63c935671fdb6d657df90d4955"
    "37d1c76b5f9ec03d0e251b66edfed65d9057caadee14f4d73b804e2a513364e100000000000000000000000000"
    "000000",
    "18d06222ad7529a6edf847c4bd79fdc5f62e05c69f5d198bf3faf7603f7dd624",
    "095bf4bc6b19fd768a9984687b2b64acf3c0d975cdaab8b49565108a5903574b"};

constexpr Outcome kWithoutPsk = {
    "02000000fecaad0b443322112826e24190cbbb8fe6bd4113f36dc8e0a4b92d63c935671fdb6d657df90d4955"
    "170f0760887a01b85dbe6fa834b6efd56f83f207e53c781cad0133ee1569af0e00000000000000000000000000"
    "000000",
    "b1bf3187c8b21869424319a24f0941dd91a1b22874be5664462553a417dce12f",
    "9603b1c79cad56660f7a83a34acae95d41ca47b6ea44d6a5ca2aa52f0ba95b67"};

struct Parties {
  explicit Parties(const Key& psk)
      : initiator(LocalIdentity::from_private(kInitiatorStaticPriv)),
        responder(LocalIdentity::from_private(kResponderStaticPriv)),
        responder_as_seen_by_initiator(make_peer_keys(initiator, kResponderStaticPub, psk)),
        initiator_as_seen_by_responder(make_peer_keys(responder, kInitiatorStaticPub, psk)) {}

  LocalIdentity initiator;
  LocalIdentity responder;
  PeerKeys responder_as_seen_by_initiator;
  PeerKeys initiator_as_seen_by_responder;
};

crypto::Tai64n timestamp_at(uint64_t unix_ns) {
  return crypto::tai64n(unix_ns);
}

class NoiseVector : public ::testing::TestWithParam<bool> {
 protected:
  bool with_psk() const { return GetParam(); }
  const Outcome& outcome() const { return with_psk() ? kWithPsk : kWithoutPsk; }
  Parties parties{with_psk() ? kPsk : Key{}};
};

TEST_P(NoiseVector, InitiatorProducesTheInitiationBytes) {
  Handshake handshake;
  MessageInitiation msg;
  const auto ts = timestamp_at(kUnixNs);
  ASSERT_TRUE(create_initiation(msg, handshake, parties.initiator,
                                parties.responder_as_seen_by_initiator, kInitiatorEphemeralPriv,
                                kInitiatorIndex, ts));
  // mac1/mac2 belong to cookie.h; the vector carries mac1, this layer leaves it zero.
  EXPECT_EQ(bytes_of(msg), without_macs(from_hex(kInitiationHex)));
  EXPECT_EQ(handshake.state, HandshakeState::kInitiationCreated);
  EXPECT_EQ(handshake.chaining_key, key_from_hex(kChainAfterInitiationHex));
  EXPECT_EQ(handshake.hash, key_from_hex(kHashAfterInitiationHex));
  EXPECT_EQ(handshake.local_index, kInitiatorIndex);
}

TEST_P(NoiseVector, ResponderConsumesInitiationAndProducesResponseAndKeys) {
  const auto initiation = message_from_hex<MessageInitiation>(kInitiationHex);
  const auto scan = begin_consume_initiation(initiation, parties.responder);
  ASSERT_TRUE(scan.has_value());
  EXPECT_EQ(scan->initiator_static, kInitiatorStaticPub);
  EXPECT_EQ(scan->sender_index, kInitiatorIndex);

  Handshake handshake;
  ASSERT_TRUE(finish_consume_initiation(*scan, handshake, parties.initiator_as_seen_by_responder,
                                        5'000'000'000));
  EXPECT_EQ(handshake.state, HandshakeState::kInitiationConsumed);
  EXPECT_EQ(handshake.chaining_key, key_from_hex(kChainAfterInitiationHex));
  EXPECT_EQ(handshake.hash, key_from_hex(kHashAfterInitiationHex));
  EXPECT_EQ(handshake.remote_index, kInitiatorIndex);
  EXPECT_EQ(std::vector<uint8_t>(handshake.greatest_timestamp.begin(),
                                 handshake.greatest_timestamp.end()),
            from_hex("400000006553f10a00000000"));

  MessageResponse response;
  SessionKeys keys;
  ASSERT_TRUE(create_response(response, handshake, parties.initiator_as_seen_by_responder,
                              kResponderEphemeralPriv, kResponderIndex, keys));
  EXPECT_EQ(bytes_of(response), without_macs(from_hex(outcome().response_hex)));
  EXPECT_EQ(keys.receive, key_from_hex(outcome().t1_hex));
  EXPECT_EQ(keys.send, key_from_hex(outcome().t2_hex));
  EXPECT_EQ(keys.local_index, kResponderIndex);
  EXPECT_EQ(keys.remote_index, kInitiatorIndex);
  EXPECT_FALSE(keys.we_initiated);
  EXPECT_EQ(handshake.state, HandshakeState::kResponseCreated);
  EXPECT_EQ(handshake.chaining_key, Key{}) << "secrets are wiped once the keys exist";
  EXPECT_EQ(handshake.hash, Key{});
}

TEST_P(NoiseVector, InitiatorConsumesResponseAndDerivesKeys) {
  Handshake handshake;
  MessageInitiation initiation;
  const auto ts = timestamp_at(kUnixNs);
  ASSERT_TRUE(create_initiation(initiation, handshake, parties.initiator,
                                parties.responder_as_seen_by_initiator, kInitiatorEphemeralPriv,
                                kInitiatorIndex, ts));
  const auto response = message_from_hex<MessageResponse>(outcome().response_hex);
  SessionKeys keys;
  ASSERT_TRUE(consume_response(response, handshake, parties.initiator,
                               parties.responder_as_seen_by_initiator, keys));
  EXPECT_EQ(keys.send, key_from_hex(outcome().t1_hex));
  EXPECT_EQ(keys.receive, key_from_hex(outcome().t2_hex));
  EXPECT_EQ(keys.local_index, kInitiatorIndex);
  EXPECT_EQ(keys.remote_index, kResponderIndex);
  EXPECT_TRUE(keys.we_initiated);
  EXPECT_EQ(handshake.state, HandshakeState::kNone);
  EXPECT_EQ(handshake.ephemeral_private, Key{}) << "the ephemeral key is wiped";

  SessionKeys again;
  EXPECT_FALSE(consume_response(response, handshake, parties.initiator,
                                parties.responder_as_seen_by_initiator, again))
      << "a replayed response has no initiation to answer";
}

INSTANTIATE_TEST_SUITE_P(PskOnOff, NoiseVector, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "WithPsk" : "WithoutPsk"; });

// The §2.2 transport messages: header {4, receiver, counter} then AEAD(no AD) with T1 / T2.
std::vector<uint8_t> transport_message(const Key& key, uint32_t receiver, uint64_t counter,
                                       const std::vector<uint8_t>& plaintext) {
  MessageDataHeader header{
      {static_cast<uint8_t>(MessageType::kTransportData), {0, 0, 0}}, receiver, counter};
  std::vector<uint8_t> out = bytes_of(header);
  std::vector<uint8_t> sealed(plaintext.size() + kTagLen);
  crypto::aead_encrypt(sealed, key, counter, plaintext, {});
  out.insert(out.end(), sealed.begin(), sealed.end());
  return out;
}

TEST(NoiseTransport, KeepaliveAndDataVectors) {
  const Key t1 = key_from_hex(kWithPsk.t1_hex);
  const Key t2 = key_from_hex(kWithPsk.t2_hex);
  EXPECT_EQ(transport_message(t1, kResponderIndex, 0, {}),
            from_hex("04000000fecaad0b00000000000000001feb177a7643efba90acd9cdfede8cdd"));

  std::vector<uint8_t> plaintext(16);
  for (size_t i = 0; i < plaintext.size(); ++i) plaintext[i] = static_cast<uint8_t>(i);
  const auto data = from_hex(
      "0400000044332211010000000000000094382534b501ac9ba4e116383ef2ff426e80dabbff3e73bc6e155244"
      "01c29ffb");
  EXPECT_EQ(transport_message(t2, kInitiatorIndex, 1, plaintext), data);

  std::vector<uint8_t> opened(plaintext.size());
  const auto ciphertext = std::span(data).subspan(sizeof(MessageDataHeader));
  ASSERT_TRUE(crypto::aead_decrypt(opened, t2, 1, ciphertext, {}));
  EXPECT_EQ(opened, plaintext);
  EXPECT_FALSE(crypto::aead_decrypt(opened, t1, 1, ciphertext, {})) << "wrong direction key";
}

// Negative cases share a responder that has consumed nothing yet.
class NoiseRejects : public ::testing::Test {
 protected:
  Parties parties{kPsk};
  MessageInitiation initiation = message_from_hex<MessageInitiation>(kInitiationHex);

  bool initiation_accepted(const MessageInitiation& msg, Handshake& handshake, uint64_t now_ns) {
    const auto scan = begin_consume_initiation(msg, parties.responder);
    return scan && finish_consume_initiation(*scan, handshake,
                                             parties.initiator_as_seen_by_responder, now_ns);
  }

  MessageInitiation fresh_initiation(uint64_t unix_ns, uint32_t index) {
    Handshake scratch;
    MessageInitiation msg;
    const auto ts = timestamp_at(unix_ns);
    EXPECT_TRUE(create_initiation(msg, scratch, parties.initiator,
                                  parties.responder_as_seen_by_initiator,
                                  crypto::generate_private(), index, ts));
    return msg;
  }
};

TEST_F(NoiseRejects, FlippedBitInEachInitiationField) {
  struct Field {
    const char* name;
    size_t offset;
    size_t length;
  };
  const Field fields[] = {
      {"ephemeral", offsetof(MessageInitiation, unencrypted_ephemeral), kKeyLen},
      {"encrypted_static", offsetof(MessageInitiation, encrypted_static), kKeyLen + kTagLen},
      {"encrypted_timestamp", offsetof(MessageInitiation, encrypted_timestamp),
       kTimestampLen + kTagLen},
  };
  for (const Field& field : fields) {
    for (size_t pos : {field.offset, field.offset + field.length - 1}) {
      SCOPED_TRACE(std::string(field.name) + " byte " + std::to_string(pos));
      MessageInitiation tampered = initiation;
      reinterpret_cast<uint8_t*>(&tampered)[pos] ^= 0x01;
      Handshake handshake;
      EXPECT_FALSE(initiation_accepted(tampered, handshake, 1'000'000'000));
      EXPECT_EQ(handshake.state, HandshakeState::kNone);
      EXPECT_FALSE(handshake.consumed_any_initiation) << "a rejected message leaves no trace";
    }
  }
  Handshake handshake;
  EXPECT_TRUE(initiation_accepted(initiation, handshake, 1'000'000'000));
}

TEST_F(NoiseRejects, WrongTypeOrNonZeroReservedBytes) {
  for (size_t pos = 0; pos < sizeof(MessageHeader); ++pos) {
    MessageInitiation tampered = initiation;
    reinterpret_cast<uint8_t*>(&tampered)[pos] ^= 0x04;
    EXPECT_FALSE(begin_consume_initiation(tampered, parties.responder).has_value()) << pos;
  }
}

TEST_F(NoiseRejects, EqualOrOlderTimestamp) {
  Handshake handshake;
  uint64_t now = 1'000'000'000;
  ASSERT_TRUE(initiation_accepted(initiation, handshake, now));
  now += 1'000'000'000;
  EXPECT_FALSE(initiation_accepted(initiation, handshake, now)) << "exact replay";
  EXPECT_FALSE(initiation_accepted(fresh_initiation(kUnixNs - 1'000'000'000, 7), handshake, now))
      << "older timestamp";
  // Same second, sub-2^24 ns later: identical TAI64N label, so still a replay.
  EXPECT_FALSE(initiation_accepted(fresh_initiation(kUnixNs + 1000, 8), handshake, now));
  EXPECT_TRUE(initiation_accepted(fresh_initiation(kUnixNs + 1'000'000'000, 9), handshake, now));
}

TEST_F(NoiseRejects, SecondInitiationWithin20Milliseconds) {
  Handshake handshake;
  const uint64_t first = 3'000'000'000;
  ASSERT_TRUE(initiation_accepted(initiation, handshake, first));
  EXPECT_FALSE(initiation_accepted(fresh_initiation(kUnixNs + 1'000'000'000, 2), handshake,
                                   first + kMinInitiationIntervalNs - 1));
  EXPECT_TRUE(initiation_accepted(fresh_initiation(kUnixNs + 2'000'000'000, 3), handshake,
                                  first + kMinInitiationIntervalNs));
}

TEST_F(NoiseRejects, UnknownStaticKeyIsNotTakenForTheConfiguredPeer) {
  const LocalIdentity stranger = LocalIdentity::from_private(crypto::generate_private());
  const PeerKeys hub_for_stranger = make_peer_keys(stranger, kResponderStaticPub, kPsk);
  Handshake stranger_handshake;
  MessageInitiation msg;
  const auto ts = timestamp_at(kUnixNs);
  ASSERT_TRUE(create_initiation(msg, stranger_handshake, stranger, hub_for_stranger,
                                crypto::generate_private(), 99, ts));
  const auto scan = begin_consume_initiation(msg, parties.responder);
  ASSERT_TRUE(scan.has_value());
  EXPECT_EQ(scan->initiator_static, stranger.public_key);
  EXPECT_NE(scan->initiator_static, kInitiatorStaticPub);
  Handshake handshake;
  EXPECT_FALSE(finish_consume_initiation(*scan, handshake, parties.initiator_as_seen_by_responder,
                                         1'000'000'000))
      << "the scan must not authenticate against another peer's keys";
}

TEST_F(NoiseRejects, InitiationForAnotherResponder) {
  const LocalIdentity other = LocalIdentity::from_private(crypto::generate_private());
  EXPECT_FALSE(begin_consume_initiation(initiation, other).has_value());
}

TEST_F(NoiseRejects, LowOrderKeys) {
  const PeerKeys bad_peer = make_peer_keys(parties.initiator, Key{});
  EXPECT_FALSE(bad_peer.static_static_ok);
  Handshake handshake;
  MessageInitiation msg;
  const auto ts = timestamp_at(kUnixNs);
  EXPECT_FALSE(create_initiation(msg, handshake, parties.initiator, bad_peer,
                                 kInitiatorEphemeralPriv, 1, ts));

  MessageInitiation zero_ephemeral = initiation;
  std::fill(std::begin(zero_ephemeral.unencrypted_ephemeral),
            std::end(zero_ephemeral.unencrypted_ephemeral), 0);
  EXPECT_FALSE(begin_consume_initiation(zero_ephemeral, parties.responder).has_value());
}

TEST_F(NoiseRejects, ResponseWithoutConsumedInitiation) {
  Handshake handshake;
  MessageResponse response;
  SessionKeys keys;
  EXPECT_FALSE(create_response(response, handshake, parties.initiator_as_seen_by_responder,
                               kResponderEphemeralPriv, kResponderIndex, keys));
}

class NoiseResponseRejects : public NoiseRejects {
 protected:
  void SetUp() override {
    const auto ts = timestamp_at(kUnixNs);
    ASSERT_TRUE(create_initiation(sent, initiator_handshake, parties.initiator,
                                  parties.responder_as_seen_by_initiator, kInitiatorEphemeralPriv,
                                  kInitiatorIndex, ts));
  }

  bool response_accepted(const MessageResponse& msg) {
    SessionKeys keys;
    return consume_response(msg, initiator_handshake, parties.initiator,
                            parties.responder_as_seen_by_initiator, keys);
  }

  MessageInitiation sent;
  Handshake initiator_handshake;
  MessageResponse response = message_from_hex<MessageResponse>(kWithPsk.response_hex);
};

TEST_F(NoiseResponseRejects, FlippedBitInEachResponseField) {
  const std::pair<const char*, size_t> positions[] = {
      {"ephemeral first", offsetof(MessageResponse, unencrypted_ephemeral)},
      {"ephemeral last", offsetof(MessageResponse, unencrypted_ephemeral) + kKeyLen - 1},
      {"encrypted_nothing first", offsetof(MessageResponse, encrypted_nothing)},
      {"encrypted_nothing last", offsetof(MessageResponse, encrypted_nothing) + kTagLen - 1},
      {"receiver_index", offsetof(MessageResponse, receiver_index)},
      {"type", 0},
      {"reserved", 3},
  };
  for (const auto& [name, pos] : positions) {
    SCOPED_TRACE(name);
    MessageResponse tampered = response;
    reinterpret_cast<uint8_t*>(&tampered)[pos] ^= 0x01;
    EXPECT_FALSE(response_accepted(tampered));
    EXPECT_EQ(initiator_handshake.state, HandshakeState::kInitiationCreated)
        << "a rejected response leaves the pending initiation intact";
  }
  EXPECT_TRUE(response_accepted(response));
}

TEST_F(NoiseResponseRejects, WrongPsk) {
  const PeerKeys wrong_psk = make_peer_keys(parties.initiator, kResponderStaticPub, Key{});
  SessionKeys keys;
  EXPECT_FALSE(consume_response(response, initiator_handshake, parties.initiator, wrong_psk, keys));
}

TEST_F(NoiseResponseRejects, ResponseToSupersededInitiation) {
  // A retransmission uses a new index and ephemeral; the answer to the old one must fail even
  // though the old index is copied into it.
  const auto ts = timestamp_at(kUnixNs + 5'000'000'000);
  ASSERT_TRUE(create_initiation(sent, initiator_handshake, parties.initiator,
                                parties.responder_as_seen_by_initiator, crypto::generate_private(),
                                kInitiatorIndex + 1, ts));
  EXPECT_FALSE(response_accepted(response));
  MessageResponse old_with_new_index = response;
  old_with_new_index.receiver_index = kInitiatorIndex + 1;
  EXPECT_FALSE(response_accepted(old_with_new_index));
}

TEST_F(NoiseResponseRejects, ResponseAfterPeerInitiationSupersededOurs) {
  // Simultaneous initiation: accepting the peer's initiation replaces our pending one.
  const LocalIdentity& hub = parties.responder;
  const PeerKeys peer_for_hub = make_peer_keys(hub, kInitiatorStaticPub, kPsk);
  Handshake hub_handshake;
  MessageInitiation from_hub;
  const auto ts = timestamp_at(kUnixNs);
  ASSERT_TRUE(create_initiation(from_hub, hub_handshake, hub, peer_for_hub,
                                crypto::generate_private(), 77, ts));
  const auto scan = begin_consume_initiation(from_hub, parties.initiator);
  ASSERT_TRUE(scan.has_value());
  ASSERT_TRUE(finish_consume_initiation(*scan, initiator_handshake,
                                        parties.responder_as_seen_by_initiator, 1'000'000'000));
  EXPECT_FALSE(response_accepted(response));
}

// The hub defers each new peer's static-static DH to its first handshake.
TEST(NoiseDeferredKeys, CompletedOnceTheyEqualTheEagerOnes) {
  const LocalIdentity initiator = LocalIdentity::from_private(kInitiatorStaticPriv);
  const PeerKeys eager = make_peer_keys(initiator, kResponderStaticPub, kPsk);
  PeerKeys deferred = make_peer_keys_deferred(kResponderStaticPub, kPsk);
  const auto ts = timestamp_at(kUnixNs);
  Handshake handshake;
  MessageInitiation before;
  EXPECT_FALSE(
      create_initiation(before, handshake, initiator, deferred, kInitiatorEphemeralPriv, 1, ts))
      << "a key whose DH is still pending must not be usable";

  ASSERT_TRUE(complete_static_static(deferred, initiator));
  EXPECT_EQ(deferred.static_static, eager.static_static);
  ASSERT_TRUE(complete_static_static(deferred, initiator)) << "a second call keeps the result";
  MessageInitiation from_eager;
  MessageInitiation from_deferred;
  Handshake h1;
  Handshake h2;
  ASSERT_TRUE(create_initiation(from_eager, h1, initiator, eager, kInitiatorEphemeralPriv, 1, ts));
  ASSERT_TRUE(
      create_initiation(from_deferred, h2, initiator, deferred, kInitiatorEphemeralPriv, 1, ts));
  EXPECT_EQ(0, std::memcmp(&from_eager, &from_deferred, sizeof(from_eager)));
}

TEST(NoiseDeferredKeys, LowOrderKeyNeverCompletes) {
  const LocalIdentity initiator = LocalIdentity::from_private(kInitiatorStaticPriv);
  PeerKeys bad_peer = make_peer_keys_deferred(Key{});
  EXPECT_FALSE(complete_static_static(bad_peer, initiator));
  EXPECT_FALSE(complete_static_static(bad_peer, initiator));
  EXPECT_FALSE(bad_peer.static_static_ok);
}

// Random keys end to end, as the data plane will run it.
TEST(NoiseRoundTrip, RandomKeysBothSidesAgree) {
  const LocalIdentity alice = LocalIdentity::from_private(crypto::generate_private());
  const LocalIdentity bob = LocalIdentity::from_private(crypto::generate_private());
  const PeerKeys bob_for_alice = make_peer_keys(alice, bob.public_key);
  const PeerKeys alice_for_bob = make_peer_keys(bob, alice.public_key);

  Handshake alice_handshake;
  Handshake bob_handshake;
  MessageInitiation initiation;
  const auto ts = crypto::tai64n(kUnixNs);
  ASSERT_TRUE(create_initiation(initiation, alice_handshake, alice, bob_for_alice,
                                crypto::generate_private(), 1, ts));
  const auto scan = begin_consume_initiation(initiation, bob);
  ASSERT_TRUE(scan && scan->initiator_static == alice.public_key);
  ASSERT_TRUE(finish_consume_initiation(*scan, bob_handshake, alice_for_bob, 0));
  MessageResponse response;
  SessionKeys bob_keys;
  ASSERT_TRUE(create_response(response, bob_handshake, alice_for_bob, crypto::generate_private(), 2,
                              bob_keys));
  SessionKeys alice_keys;
  ASSERT_TRUE(consume_response(response, alice_handshake, alice, bob_for_alice, alice_keys));
  EXPECT_EQ(alice_keys.send, bob_keys.receive);
  EXPECT_EQ(alice_keys.receive, bob_keys.send);
  EXPECT_NE(alice_keys.send, alice_keys.receive);
  EXPECT_EQ(alice_keys.remote_index, bob_keys.local_index);
  EXPECT_EQ(bob_keys.remote_index, alice_keys.local_index);
}

}  // namespace
}  // namespace airlock::dp
