// Handshake rates per core, with the real Noise_IKpsk2 and mac code, in the order the control
// lcore runs it (handshake.cc). Hub::handle_initiation itself is private and needs a port, so
// the responder benchmark replays its steps on the same public pieces: mac1 check, decryption
// of the initiator's static key, peer lookup among 10k peers, authentication and replay checks,
// receiver index reservation, a fresh ephemeral key, the response and its macs. Not under load,
// so no mac2 or rate limiter, as in the normal case. Every initiation is valid and accepted.
#include <benchmark/benchmark.h>
#include <sodium.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include "dataplane/cookie.h"
#include "dataplane/noise.h"
#include "dataplane/peers.h"

namespace {

namespace crypto = airlock::dp::crypto;
using airlock::dp::CookieChecker;
using airlock::dp::CookieMaker;
using airlock::dp::Handshake;
using airlock::dp::IndexTable;
using airlock::dp::LocalIdentity;
using airlock::dp::MessageInitiation;
using airlock::dp::MessageResponse;
using airlock::dp::PeerKeys;
using airlock::dp::PeerTable;
using airlock::dp::SessionKeys;

constexpr uint32_t kPeers = 10000;
constexpr size_t kInitiations = 256;
constexpr uint64_t kNowNs = 1'000'000'000'000;
constexpr uint64_t kUnixNs = 1'700'000'000ULL * 1'000'000'000ULL;

template <typename Message>
std::span<uint8_t> bytes_of(Message& msg) {
  return {reinterpret_cast<uint8_t*>(&msg), sizeof(msg)};
}

// Our side (responder) with kPeers configured peers; the initiator is one of them.
struct Responder {
  LocalIdentity identity = LocalIdentity::from_private(crypto::generate_private());
  CookieChecker cookie_checker{identity.public_key};
  PeerTable peers{kPeers};
  IndexTable index;
  uint32_t initiator_slot = 0;

  explicit Responder(const LocalIdentity& initiator) {
    for (uint32_t i = 0; i < kPeers; ++i) {
      const bool is_initiator = i == kPeers / 2;
      // The other peers only fill the lookup table, so random bytes serve as their keys and
      // they get no per-peer DH.
      crypto::Key key = initiator.public_key;
      if (!is_initiator) crypto::random_bytes(key);
      const std::optional<uint32_t> slot = peers.allocate(key);
      if (!slot) throw std::runtime_error("peer table full");
      if (is_initiator) {
        initiator_slot = *slot;
        peers.at(*slot).keys = airlock::dp::make_peer_keys(identity, key);
        peers.at(*slot).cookie_maker.emplace(key);
      }
    }
  }
};

struct Initiator {
  LocalIdentity identity = LocalIdentity::from_private(crypto::generate_private());
};

// Initiations to `responder` with distinct ephemerals and indices, macs filled as sent.
std::vector<MessageInitiation> make_initiations(const Initiator& initiator,
                                                const LocalIdentity& responder) {
  const PeerKeys keys = airlock::dp::make_peer_keys(initiator.identity, responder.public_key);
  CookieMaker cookie_maker(responder.public_key);
  std::vector<MessageInitiation> out(kInitiations);
  for (size_t i = 0; i < out.size(); ++i) {
    Handshake handshake;
    if (!airlock::dp::create_initiation(out[i], handshake, initiator.identity, keys,
                                        crypto::generate_private(), static_cast<uint32_t>(i + 1),
                                        crypto::tai64n(kUnixNs))) {
      throw std::runtime_error("create_initiation failed");
    }
    cookie_maker.add_macs(bytes_of(out[i]), kNowNs);
  }
  return out;
}

// The control lcore's path for one initiation; false where it would drop the message.
bool respond(Responder& r, MessageInitiation& msg, MessageResponse& resp) {
  if (!r.cookie_checker.mac1_valid(bytes_of(msg))) return false;
  const std::optional<airlock::dp::InitiationScan> scan =
      airlock::dp::begin_consume_initiation(msg, r.identity);
  if (!scan) return false;
  const std::optional<uint32_t> slot = r.peers.find(scan->initiator_static);
  if (!slot) return false;
  airlock::dp::PeerState& peer = r.peers.at(*slot);
  // A fresh state per message: the pool of initiations is replayed, and the peer's
  // replay/flood history would (rightly) reject a repeat.
  Handshake handshake;
  if (!airlock::dp::finish_consume_initiation(*scan, handshake, peer.keys, kNowNs)) return false;
  const std::optional<uint32_t> index = r.index.reserve(*slot);
  if (!index) return false;
  SessionKeys keys;
  const bool ok = airlock::dp::create_response(resp, handshake, peer.keys,
                                               crypto::generate_private(), *index, keys);
  // The index would stay reserved for the session; the benchmark hands it back to keep going.
  r.index.release(*index);
  if (!ok) return false;
  peer.cookie_maker->add_macs(bytes_of(resp), kNowNs);
  return true;
}

void BM_ResponderInitiationToResponse(benchmark::State& state) {
  const Initiator initiator;
  Responder responder(initiator.identity);
  std::vector<MessageInitiation> initiations = make_initiations(initiator, responder.identity);
  MessageResponse resp;
  size_t at = 0;
  for (auto _ : state) {
    if (!respond(responder, initiations[at], resp)) {
      state.SkipWithError("a valid initiation was rejected");
      return;
    }
    benchmark::DoNotOptimize(resp);
    at = (at + 1) % kInitiations;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResponderInitiationToResponse);

// A flood of initiations with a bad mac1: what the control lcore spends to drop each one.
void BM_ResponderDropBadMac1(benchmark::State& state) {
  const Initiator initiator;
  const LocalIdentity responder = LocalIdentity::from_private(crypto::generate_private());
  const CookieChecker checker(responder.public_key);
  std::vector<MessageInitiation> initiations = make_initiations(initiator, responder);
  for (MessageInitiation& msg : initiations) msg.macs.mac1[0] ^= 1;
  size_t at = 0;
  for (auto _ : state) {
    if (checker.mac1_valid(bytes_of(initiations[at]))) {
      state.SkipWithError("a corrupted mac1 was accepted");
      return;
    }
    at = (at + 1) % kInitiations;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResponderDropBadMac1);

// Hub::send_initiation's work: ephemeral key, timestamp, message 1, macs.
void BM_InitiatorCreateInitiation(benchmark::State& state) {
  const Initiator initiator;
  const LocalIdentity responder = LocalIdentity::from_private(crypto::generate_private());
  const PeerKeys keys = airlock::dp::make_peer_keys(initiator.identity, responder.public_key);
  CookieMaker cookie_maker(responder.public_key);
  Handshake handshake;
  MessageInitiation msg;
  uint64_t unix_ns = kUnixNs;
  for (auto _ : state) {
    if (!airlock::dp::create_initiation(msg, handshake, initiator.identity, keys,
                                        crypto::generate_private(), 1, crypto::tai64n(unix_ns))) {
      state.SkipWithError("create_initiation failed");
      return;
    }
    cookie_maker.add_macs(bytes_of(msg), kNowNs);
    benchmark::DoNotOptimize(msg);
    unix_ns += 1'000'000;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InitiatorCreateInitiation);

// Hub::handle_response's cryptographic part: mac1 check and message 2 into session keys.
void BM_InitiatorConsumeResponse(benchmark::State& state) {
  const Initiator initiator;
  Responder responder(initiator.identity);
  const PeerKeys keys =
      airlock::dp::make_peer_keys(initiator.identity, responder.identity.public_key);
  CookieMaker cookie_maker(responder.identity.public_key);
  MessageInitiation msg;
  Handshake pending;
  if (!airlock::dp::create_initiation(msg, pending, initiator.identity, keys,
                                      crypto::generate_private(), 1, crypto::tai64n(kUnixNs))) {
    state.SkipWithError("create_initiation failed");
    return;
  }
  cookie_maker.add_macs(bytes_of(msg), kNowNs);
  MessageResponse resp;
  if (!respond(responder, msg, resp)) {
    state.SkipWithError("responder rejected the initiation");
    return;
  }
  const CookieChecker checker(initiator.identity.public_key);
  for (auto _ : state) {
    // consume_response wipes the pending state on success; each round starts from a copy.
    Handshake handshake = pending;
    SessionKeys session;
    if (!checker.mac1_valid(bytes_of(resp)) ||
        !airlock::dp::consume_response(resp, handshake, initiator.identity, keys, session)) {
      state.SkipWithError("a valid response was rejected");
      return;
    }
    benchmark::DoNotOptimize(session);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InitiatorConsumeResponse);

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) {
    std::fprintf(stderr, "sodium_init failed\n");
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
