// The control lcore's half of the protocol: handshake and cookie messages handed over by the
// workers, and the handshake/keepalive packets the timers ask for. Cheapest checks first
// (exact size was checked by the worker, then mac1, then load → mac2 and rate limit), and no
// state changes until a message authenticated (whitepaper §5.3, wireguard.md §3.5).
#include <rte_byteorder.h>
#include <rte_mbuf.h>

#include <array>
#include <chrono>
#include <cstring>

#include "dataplane/hub.h"

namespace airlock::dp {
namespace {

constexpr uint64_t kUnderLoadStickyNs = 1'000'000'000;
constexpr uint32_t kHandshakesPerTick = 64;

uint64_t unix_now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// The cookie binds the source address and port; only we ever recompute it, so the encoding
// is ours: IPv4 address then big-endian port, as the kernel does.
std::array<uint8_t, 6> cookie_source(const WireguardFrame& f) {
  std::array<uint8_t, 6> s;
  std::memcpy(s.data(), &f.src_ipv4_be, 4);
  std::memcpy(s.data() + 4, &f.src_port_be, 2);
  return s;
}

Endpoint endpoint_of(const WireguardFrame& f) {
  Endpoint e;
  e.ipv4_be = f.src_ipv4_be;
  e.port_be = f.src_port_be;
  e.mac = f.src_mac;
  return e;
}

}  // namespace

void Hub::process_handshake_messages(uint64_t now) {
  if (rte_ring_count(handshake_ring_.get()) >= cfg_.under_load_queue_depth) {
    under_load_until_ns_ = now + kUnderLoadStickyNs;
  }
  rte_mbuf* msgs[kHandshakesPerTick];
  unsigned n = rte_ring_sc_dequeue_burst(handshake_ring_.get(), reinterpret_cast<void**>(msgs),
                                         kHandshakesPerTick, nullptr);
  if (now - rate_window_start_ns_ >= kUnderLoadStickyNs) {
    rate_window_start_ns_ = now;
    rate_window_count_ = 0;
  }
  rate_window_count_ += n;
  if (rate_window_count_ > cfg_.under_load_rate) under_load_until_ns_ = now + kUnderLoadStickyNs;
  for (unsigned i = 0; i < n; ++i) {
    WireguardFrame f{};
    if (classify_frame(msgs[i], underlay_, listen_port_be_, &f) != FrameKind::kWireguard) {
      learn_neighbor(msgs[i]);
    } else {
      switch (static_cast<MessageType>(f.payload[0])) {
        case MessageType::kInitiation:
          count_handshake(HandshakeEvent::kInitiationRx);
          handle_initiation(f, now);
          break;
        case MessageType::kResponse:
          count_handshake(HandshakeEvent::kResponseRx);
          handle_response(f, now);
          break;
        case MessageType::kCookieReply:
          count_handshake(HandshakeEvent::kCookieRx);
          handle_cookie_reply(f, now);
          break;
        default:
          break;
      }
    }
    rte_pktmbuf_free(msgs[i]);
  }
}

bool Hub::pass_load_checks(std::span<uint8_t> msg, uint32_t sender_index, const WireguardFrame& f,
                           uint64_t now) {
  if (!cookie_checker_->mac1_valid(msg)) {
    count_control_drop(DropReason::kBadMac);
    return false;
  }
  if (now >= under_load_until_ns_) return true;
  auto source = cookie_source(f);
  if (!cookie_checker_->mac2_valid(msg, source, now)) {
    std::array<uint8_t, kXNonceLen> nonce;
    crypto::random_bytes(nonce);
    MessageCookieReply reply;
    cookie_checker_->create_reply(reply, msg, sender_index, source, nonce, now);
    if (send_message(std::span(reinterpret_cast<const uint8_t*>(&reply), sizeof(reply)),
                     endpoint_of(f))) {
      count_handshake(HandshakeEvent::kCookieTx);
    }
    count_control_drop(DropReason::kRateLimited);
    return false;
  }
  if (!ratelimiter_.allow(std::span(source.data(), 4), now)) {
    count_control_drop(DropReason::kRateLimited);
    return false;
  }
  return true;
}

void Hub::handle_initiation(const WireguardFrame& f, uint64_t now) {
  MessageInitiation msg;
  std::memcpy(&msg, f.payload, sizeof(msg));
  if (!pass_load_checks(std::span(f.payload, sizeof(msg)), rte_le_to_cpu_32(msg.sender_index), f,
                        now)) {
    return;
  }
  auto scan = begin_consume_initiation(msg, identity_);
  auto slot = scan ? peers_.find(scan->initiator_static) : std::nullopt;
  if (!slot || !peers_.at(*slot).active.load(std::memory_order_relaxed)) {
    count_control_drop(DropReason::kBadMac);  // cannot be authenticated as any peer of ours
    return;
  }
  PeerState& peer = peers_.at(*slot);
  // Our own pending initiation to this peer is superseded by theirs.
  uint32_t our_pending =
      peer.handshake.state == HandshakeState::kInitiationCreated ? peer.handshake.local_index : 0;
  if (!complete_static_static(peer.keys, identity_) ||
      !finish_consume_initiation(*scan, peer.handshake, peer.keys, now)) {
    count_control_drop(DropReason::kReplay);
    return;
  }
  if (our_pending != 0) index_.release(our_pending);
  auto index = index_.reserve(*slot);
  if (!index) {
    count_control_drop(DropReason::kNoSession);
    peer.handshake.reset();
    return;
  }
  MessageResponse resp;
  SessionKeys keys;
  if (!create_response(resp, peer.handshake, peer.keys, crypto::generate_private(), *index, keys) ||
      !install_keypair(*slot, keys, now)) {
    index_.release(*index);
    peer.handshake.reset();
    count_control_drop(DropReason::kNoSession);
    return;
  }
  peer.cookie_maker->add_macs(std::span(reinterpret_cast<uint8_t*>(&resp), sizeof(resp)), now);
  peer.endpoint.store(endpoint_of(f));
  peer.last_rx_auth_ns.store(now, std::memory_order_relaxed);
  count_handshake(HandshakeEvent::kCompleted);
  if (send_message(std::span(reinterpret_cast<const uint8_t*>(&resp), sizeof(resp)),
                   endpoint_of(f))) {
    count_handshake(HandshakeEvent::kResponseTx);
  }
  peer.last_tx_auth_ns.store(now, std::memory_order_relaxed);
  // A response counts as our handshake for REKEY_TIMEOUT, as in the kernel and wireguard-go:
  // packets waiting for this peer must not make us cross-initiate while it confirms.
  peer.timers.last_initiation_sent_ns = now;
}

void Hub::handle_response(const WireguardFrame& f, uint64_t now) {
  MessageResponse msg;
  std::memcpy(&msg, f.payload, sizeof(msg));
  if (!pass_load_checks(std::span(f.payload, sizeof(msg)), rte_le_to_cpu_32(msg.sender_index), f,
                        now)) {
    return;
  }
  auto slot = index_.reserved_peer(rte_le_to_cpu_32(msg.receiver_index));
  if (!slot || !peers_.at(*slot).active.load(std::memory_order_relaxed)) {
    count_control_drop(DropReason::kNoSession);
    return;
  }
  PeerState& peer = peers_.at(*slot);
  SessionKeys keys;
  if (!complete_static_static(peer.keys, identity_) ||
      !consume_response(msg, peer.handshake, identity_, peer.keys, keys)) {
    count_control_drop(DropReason::kBadMac);
    return;
  }
  if (!install_keypair(*slot, keys, now)) {
    index_.release(keys.local_index);
    count_control_drop(DropReason::kNoSession);
    return;
  }
  count_handshake(HandshakeEvent::kCompleted);
  peer.endpoint.store(endpoint_of(f));
  peer.last_rx_auth_ns.store(now, std::memory_order_relaxed);
  note_handshake_complete(peer.timers);
  peer.want_handshake.store(false, std::memory_order_relaxed);
  // The responder cannot send until it hears from us on the new keys (whitepaper §5.4.6).
  send_keepalive(*slot, now);
}

void Hub::handle_cookie_reply(const WireguardFrame& f, uint64_t now) {
  MessageCookieReply msg;
  std::memcpy(&msg, f.payload, sizeof(msg));
  auto slot = index_.reserved_peer(rte_le_to_cpu_32(msg.receiver_index));
  if (!slot || !peers_.at(*slot).cookie_maker ||
      !peers_.at(*slot).cookie_maker->consume_reply(msg, now)) {
    count_control_drop(DropReason::kBadMac);
  }
  // A cookie reply is not authenticated as the peer: no timers, no endpoint change.
}

bool Hub::install_keypair(uint32_t slot, const SessionKeys& keys, uint64_t now) {
  Keypair* kp = keypairs_.acquire();
  if (kp == nullptr) return false;
  PeerState& peer = peers_.at(slot);
  kp->send_key = keys.send;
  kp->receive_key = keys.receive;
  kp->send_counter.store(0, std::memory_order_relaxed);
  kp->replay.reset();
  kp->birth_ns = now;
  kp->local_index = keys.local_index;
  kp->remote_index = keys.remote_index;
  kp->peer_slot = slot;
  kp->we_initiated = keys.we_initiated;
  kp->confirmed.store(false, std::memory_order_relaxed);
  if (keys.we_initiated) {
    // Initiator (§1.9): usable at once; an unconfirmed `next` becomes `previous`.
    Keypair* old_next = peer.next.exchange(nullptr, std::memory_order_acq_rel);
    Keypair* old_current = peer.current.load(std::memory_order_relaxed);
    Keypair* old_previous =
        peer.previous.exchange(old_next ? old_next : old_current, std::memory_order_acq_rel);
    if (old_next) retire_keypair(old_current);
    retire_keypair(old_previous);
    peer.current.store(kp, std::memory_order_release);
  } else {
    // Responder: held as `next` until the peer's first packet under it confirms it.
    retire_keypair(peer.next.exchange(kp, std::memory_order_acq_rel));
    retire_keypair(peer.previous.exchange(nullptr, std::memory_order_acq_rel));
  }
  index_.publish(keys.local_index, kp);
  session_epoch_.fetch_add(1, std::memory_order_release);
  peer.keys_derived_ns = now;
  peer.last_handshake_unix_ns = unix_now_ns();
  return true;
}

void Hub::send_initiation(uint32_t slot, uint64_t now) {
  PeerState& peer = peers_.at(slot);
  Endpoint to = peer.endpoint.load();
  if (!to.known() || !complete_static_static(peer.keys, identity_)) return;
  if (rte_is_zero_ether_addr(&to.mac)) {
    to.mac = neighbor_mac(to.ipv4_be);
    if (rte_is_zero_ether_addr(&to.mac)) {
      send_arp_request(to.ipv4_be, now);
      return;
    }
    peer.endpoint.store(to);
  }
  if (peer.handshake.state == HandshakeState::kInitiationCreated) {
    index_.release(peer.handshake.local_index);
  }
  auto index = index_.reserve(slot);
  if (!index) return;
  MessageInitiation msg;
  auto ts = crypto::tai64n(unix_now_ns());
  if (!create_initiation(msg, peer.handshake, identity_, peer.keys, crypto::generate_private(),
                         *index, ts)) {
    index_.release(*index);
    return;
  }
  peer.cookie_maker->add_macs(std::span(reinterpret_cast<uint8_t*>(&msg), sizeof(msg)), now);
  if (send_message(std::span(reinterpret_cast<const uint8_t*>(&msg), sizeof(msg)), to)) {
    count_handshake(HandshakeEvent::kInitiationTx);
  }
  note_initiation_sent(peer.timers, now);
  peer.last_tx_auth_ns.store(now, std::memory_order_relaxed);
}

void Hub::send_keepalive(uint32_t slot, uint64_t now) {
  PeerState& peer = peers_.at(slot);
  Keypair* kp = peer.current.load(std::memory_order_acquire);
  Endpoint to = peer.endpoint.load();
  if (kp == nullptr || !to.known() || now - kp->birth_ns >= cfg_.timers.reject_after_ns) return;
  uint64_t counter = kp->send_counter.fetch_add(1, std::memory_order_relaxed);
  std::array<uint8_t, kDataMinLen> msg{};
  MessageDataHeader hdr{{uint8_t(MessageType::kTransportData), {0, 0, 0}},
                        rte_cpu_to_le_32(kp->remote_index),
                        rte_cpu_to_le_64(counter)};
  std::memcpy(msg.data(), &hdr, sizeof(hdr));
  crypto::aead_encrypt(std::span(msg.data() + sizeof(hdr), kTagLen), kp->send_key, counter, {}, {});
  send_message(msg, to);
  peer.last_tx_auth_ns.store(now, std::memory_order_relaxed);
}

void Hub::learn_neighbor(rte_mbuf* m) {
  uint32_t ip;
  rte_ether_addr mac;
  if (!parse_arp_sender(m, &ip, &mac) || ip == 0 || rte_is_zero_ether_addr(&mac)) return;
  // Only answers to our own requests (for configured endpoints) are kept, so hosts on the
  // segment can neither grow the table nor redirect a peer's traffic.
  if (!arp_requested_ns_.contains(ip)) return;
  neighbors_[ip] = mac;
}

rte_ether_addr Hub::neighbor_mac(uint32_t ipv4_be) const {
  auto it = neighbors_.find(ipv4_be);
  return it == neighbors_.end() ? rte_ether_addr{} : it->second;
}

void Hub::send_arp_request(uint32_t ipv4_be, uint64_t now) {
  constexpr uint64_t kArpRetryNs = 1'000'000'000;
  uint64_t& last = arp_requested_ns_[ipv4_be];
  if (last != 0 && now - last < kArpRetryNs) return;
  last = now;
  rte_mbuf* m = rte_pktmbuf_alloc(pool_.get());
  if (m == nullptr) return;
  build_arp_request(m, underlay_, ipv4_be);
  if (rte_ring_sp_enqueue(control_tx_[0].get(), m) != 0) rte_pktmbuf_free(m);
}

bool Hub::send_message(std::span<const uint8_t> msg, const Endpoint& to) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool_.get());
  if (m == nullptr) {
    count_control_drop(DropReason::kTxFull);
    return false;
  }
  char* dst = rte_pktmbuf_append(m, static_cast<uint16_t>(msg.size()));
  std::memcpy(dst, msg.data(), msg.size());
  UdpEndpoint udp{to.ipv4_be, to.port_be, to.mac};
  if (!prepend_outer_headers(m, underlay_, listen_port_be_, udp, ip_id_++) ||
      rte_ring_sp_enqueue(control_tx_[0].get(), m) != 0) {
    rte_pktmbuf_free(m);
    count_control_drop(DropReason::kTxFull);
    return false;
  }
  return true;
}

}  // namespace airlock::dp
