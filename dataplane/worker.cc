#include "dataplane/worker.h"

#include <rte_byteorder.h>
#include <rte_ethdev.h>
#include <rte_ip.h>

#include <algorithm>
#include <cstring>

#include "dataplane/messages.h"

namespace airlock::dp {
namespace {

constexpr uint32_t kNotInPolicy = kNoPeer;

// The inner packet's declared length, or 0 if it is not a well-formed IPv4/IPv6 header
// inside `len` bytes (whitepaper §5.4.6: the length comes from the inner header, the rest
// is padding).
uint32_t inner_length(const uint8_t* p, uint32_t len) {
  if (len < 1) return 0;
  switch (p[0] >> 4) {
    case 4: {
      if (len < sizeof(rte_ipv4_hdr)) return 0;
      uint32_t ihl = (p[0] & 0x0f) * 4u;
      uint32_t total = (uint32_t{p[2]} << 8) | p[3];
      if (ihl < sizeof(rte_ipv4_hdr) || total < ihl || total > len) return 0;
      return total;
    }
    case 6: {
      if (len < sizeof(rte_ipv6_hdr)) return 0;
      uint32_t total = sizeof(rte_ipv6_hdr) + ((uint32_t{p[4]} << 8) | p[5]);
      return total <= len ? total : 0;
    }
    default:
      return 0;
  }
}

bool is_arp(const rte_mbuf* m) {
  return rte_pktmbuf_data_len(m) >= sizeof(rte_ether_hdr) &&
         rte_pktmbuf_mtod(m, const rte_ether_hdr*)->ether_type == RTE_BE16(RTE_ETHER_TYPE_ARP);
}

bool counter_usable(const Keypair* kp, uint64_t now, const ProtocolTimers& t) {
  return now - kp->birth_ns < t.reject_after_ns;
}

}  // namespace

Worker::Worker(Hub& hub, uint32_t id, uint16_t queue) : hub_(hub), id_(id), queue_(queue) {}

Worker::~Worker() {
  for (uint16_t i = 0; i < n_tx_; ++i) rte_pktmbuf_free(tx_[i]);
  for (uint16_t i = 0; i < n_staged_; ++i) rte_pktmbuf_free(staged_[i].m);
}

bool Worker::init(std::string* error) {
  const Config& config = hub_.config();
  crypto_ = BatchCrypto::create(config.crypto);
  if (config.encrypt_path() != config.crypto)
    own_encryptor_ = BatchCrypto::create(config.encrypt_path());
  if (!crypto_ || (config.encrypt_path() != config.crypto && !own_encryptor_)) {
    *error = "worker " + std::to_string(id_) +
             ": cannot initialise IPsec-MB (--crypto, --crypto-encrypt)";
    return false;
  }
  stats_ = &hub_.stats().worker(id_);
  staged_by_slot_.assign(hub_.peers().capacity(), 0);
  if (rte_rcu_qsbr_thread_register(hub_.rcu(), id_) != 0) {
    *error = "worker " + std::to_string(id_) + ": RCU registration failed";
    return false;
  }
  rte_rcu_qsbr_thread_online(hub_.rcu(), id_);
  return true;
}

void Worker::run() {
  while (!hub_.stopping().load(std::memory_order_relaxed)) poll_once();
  rte_rcu_qsbr_thread_offline(hub_.rcu(), id_);
  rte_rcu_qsbr_thread_unregister(hub_.rcu(), id_);
}

void Worker::poll_once() {
  rte_mbuf* pkts[kBurst];
  uint16_t n = rte_eth_rx_burst(hub_.port_id(), queue_, pkts, kBurst);
  uint64_t now = hub_.now_ns();
  if (n > 0) handle_burst(pkts, n, now);
  take_gateway_returns(now, hub_.policy_acquire());
  encrypt_and_send(now);
  take_control_tx();
  flush_tx();
  stats_->count_loop();
  rte_rcu_qsbr_quiescent(hub_.rcu(), id_);
}

void Worker::handle_burst(rte_mbuf** pkts, uint16_t n, uint64_t now) {
  // One policy generation for the whole burst, so no packet is judged by a mix of two.
  const PolicySnapshot* policy = hub_.policy_acquire();
  for (uint16_t done = 0; done < n; done += kBurst) {
    handle_chunk(pkts + done, std::min<uint16_t>(kBurst, n - done), now, policy);
  }
}

void Worker::handle_chunk(rte_mbuf** pkts, uint16_t n, uint64_t now, const PolicySnapshot* policy) {
  for (uint16_t i = 0; i < n; ++i) take_frame(pkts[i], now, policy);
  decrypt_data(now, policy);
  classify_and_dispatch(policy, now);
  encrypt_and_send(now);
}

void Worker::take_frame(rte_mbuf* m, uint64_t now, const PolicySnapshot* policy) {
  stats_->count_rx(1, rte_pktmbuf_pkt_len(m));
  WireguardFrame f{};
  switch (classify_frame(m, hub_.underlay(), hub_.listen_port_be(), &f)) {
    case FrameKind::kArpRequestForUs:
      make_arp_reply(m, hub_.underlay());
      tx(m);
      return;
    case FrameKind::kWireguard:
      break;
    case FrameKind::kMalformed:
    case FrameKind::kFragment:
      drop(m, DropReason::kMalformed);
      return;
    case FrameKind::kOther:
      // ARP from neighbours feeds the control lcore's neighbour table.
      if (is_arp(m) && rte_ring_mp_enqueue(hub_.handshake_ring(), m) == 0) return;
      drop(m, DropReason::kNotWireguard);
      return;
  }
  if (policy == nullptr) {
    drop(m, DropReason::kNoSession);
    return;
  }
  if (f.len < sizeof(MessageHeader) || f.payload[1] != 0 || f.payload[2] != 0 ||
      f.payload[3] != 0) {
    drop(m, DropReason::kMalformed);
    return;
  }
  switch (static_cast<MessageType>(f.payload[0])) {
    case MessageType::kTransportData:
      if (f.len < kDataMinLen) break;
      queue_data(m, f, now, policy);
      return;
    case MessageType::kInitiation:
      if (f.len != sizeof(MessageInitiation)) break;
      [[fallthrough]];
    case MessageType::kResponse:
      if (f.payload[0] == uint8_t(MessageType::kResponse) && f.len != sizeof(MessageResponse)) {
        break;
      }
      [[fallthrough]];
    case MessageType::kCookieReply:
      if (f.payload[0] == uint8_t(MessageType::kCookieReply) &&
          f.len != sizeof(MessageCookieReply)) {
        break;
      }
      // Handshakes cost Diffie-Hellman: the control lcore does them, and the depth of this
      // ring is the "under load" signal.
      if (rte_ring_mp_enqueue(hub_.handshake_ring(), m) != 0) {
        drop(m, DropReason::kHandshakeQueueFull);
      }
      return;
  }
  drop(m, DropReason::kMalformed);
}

void Worker::queue_data(rte_mbuf* m, const WireguardFrame& f, uint64_t now,
                        const PolicySnapshot* policy) {
  MessageDataHeader hdr;
  std::memcpy(&hdr, f.payload, sizeof(hdr));
  Keypair* kp = hub_.index().lookup(rte_le_to_cpu_32(hdr.receiver_index));
  if (kp == nullptr || !hub_.peers().at(kp->peer_slot).active.load(std::memory_order_relaxed)) {
    drop(m, DropReason::kNoSession);
    return;
  }
  uint64_t counter = rte_le_to_cpu_64(hdr.counter);
  if (!counter_usable(kp, now, hub_.config().timers) || counter >= kRejectAfterMessages) {
    drop(m, DropReason::kKeypairExpired);
    return;
  }
  data_[n_data_++] = DataPacket{m, kp, f.payload, f.len, f};
  if (n_data_ == kBurst) decrypt_data(now, policy);
}

void Worker::decrypt_data(uint64_t now, const PolicySnapshot* policy) {
  if (n_data_ == 0) return;
  std::array<BatchCrypto::Op, kBurst> ops;
  std::array<bool, kBurst> ok;
  for (uint16_t i = 0; i < n_data_; ++i) {
    DataPacket& p = data_[i];
    MessageDataHeader hdr;
    std::memcpy(&hdr, p.wg, sizeof(hdr));
    uint32_t ct_len = p.wg_len - static_cast<uint32_t>(sizeof(MessageDataHeader)) - kTagLen;
    ops[i] =
        BatchCrypto::Op{p.wg + sizeof(MessageDataHeader), ct_len, p.kp->receive_key.data(),
                        rte_le_to_cpu_64(hdr.counter), p.wg + sizeof(MessageDataHeader) + ct_len};
  }
  crypto_->decrypt(std::span(ops.data(), n_data_), std::span(ok.data(), n_data_));
  uint16_t n = n_data_;
  n_data_ = 0;
  for (uint16_t i = 0; i < n; ++i) {
    DataPacket& p = data_[i];
    if (!ok[i]) {
      drop(p.m, DropReason::kBadTag);
      continue;
    }
    // Only authenticated packets move the window (whitepaper §5.4.6).
    if (!p.kp->replay.check_and_set(ops[i].counter)) {
      drop(p.m, DropReason::kReplay);
      continue;
    }
    if (!accept_inner(p, now, policy)) continue;
  }
}

bool Worker::accept_inner(DataPacket& p, uint64_t now, const PolicySnapshot* policy) {
  uint32_t slot = p.kp->peer_slot;
  PeerState& peer = hub_.peers().at(slot);
  peer.endpoint.update_if_changed(p.frame.src_ipv4_be, p.frame.src_port_be, p.frame.src_mac);
  peer.last_rx_auth_ns.store(now, std::memory_order_relaxed);
  if (!p.kp->confirmed.load(std::memory_order_relaxed) &&
      peer.next.load(std::memory_order_relaxed) == p.kp) {
    p.kp->confirmed.store(true, std::memory_order_release);
    confirmed_a_keypair_ = true;
  }
  stats_->count_peer_rx(slot, p.wg_len);

  uint32_t plain_len = p.wg_len - static_cast<uint32_t>(sizeof(MessageDataHeader)) - kTagLen;
  if (plain_len == 0) {  // keepalive
    rte_pktmbuf_free(p.m);
    return false;
  }
  peer.last_rx_data_ns.store(now, std::memory_order_relaxed);
  uint8_t* inner = p.wg + sizeof(MessageDataHeader);
  uint32_t len = inner_length(inner, plain_len);
  if (len == 0) {
    drop(p.m, DropReason::kMalformed);
    return false;
  }
  rte_pktmbuf_adj(p.m, static_cast<uint16_t>(inner - rte_pktmbuf_mtod(p.m, uint8_t*)));
  rte_pktmbuf_trim(p.m, static_cast<uint16_t>(rte_pktmbuf_pkt_len(p.m) - len));

  // Cryptokey routing: the inner source must be one of this peer's allowed IPs.
  bool v4 = (inner[0] >> 4) == 4;
  uint32_t owner;
  if (v4) {
    uint32_t src;
    std::memcpy(&src, inner + offsetof(rte_ipv4_hdr, src_addr), 4);
    owner = policy->allowed_ips.lookup_v4(src);
  } else {
    owner = policy->allowed_ips.lookup_v6(inner + offsetof(rte_ipv6_hdr, src_addr));
  }
  if (owner != slot) {
    drop(p.m, DropReason::kSrcNotAllowed);
    return false;
  }
  uint32_t klass = policy->acl.class_of(slot);
  if (v4) {
    fill_key_v4(v4_keys_[n_v4_], klass, inner, len);
    v4_[n_v4_] = p.m;
    v4_src_[n_v4_++] = slot;
  } else {
    fill_key_v6(v6_keys_[n_v6_], klass, inner, len);
    v6_[n_v6_] = p.m;
    v6_src_[n_v6_++] = slot;
  }
  return true;
}

void Worker::classify_and_dispatch(const PolicySnapshot* policy, uint64_t now) {
  (void)now;
  std::array<const AclKeyV4*, kBurst> k4;
  std::array<const AclKeyV6*, kBurst> k6;
  std::array<uint32_t, kBurst> results;
  if (n_v4_ > 0) {
    for (uint16_t i = 0; i < n_v4_; ++i) k4[i] = &v4_keys_[i];
    policy->acl.classify_v4(k4.data(), results.data(), n_v4_);
    for (uint16_t i = 0; i < n_v4_; ++i) dispatch(v4_[i], v4_src_[i], results[i], policy);
    n_v4_ = 0;
  }
  if (n_v6_ > 0) {
    for (uint16_t i = 0; i < n_v6_; ++i) k6[i] = &v6_keys_[i];
    policy->acl.classify_v6(k6.data(), results.data(), n_v6_);
    for (uint16_t i = 0; i < n_v6_; ++i) dispatch(v6_[i], v6_src_[i], results[i], policy);
    n_v6_ = 0;
  }
}

void Worker::dispatch(rte_mbuf* m, uint32_t src_slot, uint32_t result,
                      const PolicySnapshot* policy) {
  if (result != 0) stats_->count_rule_hit(result - 1);
  switch (policy->acl.action_of(result)) {
    case AclAction::kDrop:
      drop(m, DropReason::kAclDeny);
      return;
    case AclAction::kPuntToGateway: {
      std::span<const uint8_t> bytes(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m));
      if (hub_.channel(id_).send(Direction::kToGateway, src_slot, bytes)) {
        stats_->count_punted();
        rte_pktmbuf_free(m);
      } else {
        drop(m, DropReason::kRingFull);
      }
      return;
    }
    case AclAction::kForward: {
      const uint8_t* inner = rte_pktmbuf_mtod(m, const uint8_t*);
      uint32_t dst_slot;
      if ((inner[0] >> 4) == 4) {
        uint32_t dst;
        std::memcpy(&dst, inner + offsetof(rte_ipv4_hdr, dst_addr), 4);
        dst_slot = policy->allowed_ips.lookup_v4(dst);
      } else {
        dst_slot = policy->allowed_ips.lookup_v6(inner + offsetof(rte_ipv6_hdr, dst_addr));
      }
      if (dst_slot == kNotInPolicy) {
        drop(m, DropReason::kNoRoute);
        return;
      }
      out_[n_out_++] = Routed{m, dst_slot, true};
      return;
    }
  }
  drop(m, DropReason::kAclDeny);
}

void Worker::take_gateway_returns(uint64_t now, const PolicySnapshot* policy) {
  if (policy == nullptr) return;
  uint32_t room = static_cast<uint32_t>(out_.size() - n_out_);
  if (room == 0) {
    encrypt_and_send(now);
    room = static_cast<uint32_t>(out_.size());
  }
  hub_.channel(id_).receive(
      Direction::kFromGateway, std::min<uint32_t>(room, kBurst),
      [&](uint32_t slot, std::span<const uint8_t> pkt) {
        uint32_t len = inner_length(pkt.data(), static_cast<uint32_t>(pkt.size()));
        if (len == 0 || len > hub_.config().inner_mtu) {
          stats_->count_drop(DropReason::kMalformed);
          return;
        }
        // The gateway may only answer a peer at one of that peer's own addresses.
        uint32_t owner;
        if ((pkt[0] >> 4) == 4) {
          uint32_t dst;
          std::memcpy(&dst, pkt.data() + offsetof(rte_ipv4_hdr, dst_addr), 4);
          owner = policy->allowed_ips.lookup_v4(dst);
        } else {
          owner = policy->allowed_ips.lookup_v6(pkt.data() + offsetof(rte_ipv6_hdr, dst_addr));
        }
        if (slot >= hub_.peers().capacity() || owner != slot) {
          stats_->count_drop(DropReason::kNoRoute);
          return;
        }
        rte_mbuf* m = rte_pktmbuf_alloc(hub_.pool());
        if (m == nullptr) {
          stats_->count_drop(DropReason::kTxFull);
          return;
        }
        char* dst = rte_pktmbuf_append(m, static_cast<uint16_t>(len));
        if (dst == nullptr) {
          rte_pktmbuf_free(m);
          stats_->count_drop(DropReason::kMalformed);
          return;
        }
        std::memcpy(dst, pkt.data(), len);
        stats_->count_returned();
        out_[n_out_++] = Routed{m, slot, false};
      });
}

Keypair* Worker::usable_keypair(PeerState& peer, uint64_t now) const {
  Keypair* kp = peer.current.load(std::memory_order_acquire);
  Keypair* next = peer.next.load(std::memory_order_acquire);
  if (next != nullptr && next->confirmed.load(std::memory_order_acquire)) kp = next;
  if (kp == nullptr || !counter_usable(kp, now, hub_.config().timers) ||
      !peer.endpoint.load().known()) {
    return nullptr;
  }
  return kp;
}

void Worker::stage(const Routed& r, uint64_t now) {
  if (n_staged_ == staged_.size()) {
    drop(r.m, DropReason::kNoSession);
    return;
  }
  uint32_t generation = hub_.peers().at(r.peer_slot).generation.load(std::memory_order_acquire);
  staged_[n_staged_++] = Staged{r.m, r.peer_slot, generation, r.forwarded, now};
  staged_by_slot_[r.peer_slot]++;
}

void Worker::release_staged(uint64_t now, BatchCrypto::Op* ops, Routed* sealed, uint16_t* n) {
  constexpr uint64_t kScanIntervalNs = 20'000;
  next_staged_scan_ns_ = now + kScanIntervalNs;
  uint16_t kept = 0;
  for (uint16_t i = 0; i < n_staged_; ++i) {
    Staged s = staged_[i];
    PeerState& peer = hub_.peers().at(s.peer_slot);
    if (!peer.active.load(std::memory_order_relaxed) ||
        peer.generation.load(std::memory_order_acquire) != s.generation) {
      drop(s.m, DropReason::kNoRoute);
    } else if (usable_keypair(peer, now) != nullptr) {
      Routed r{s.m, s.peer_slot, s.forwarded};
      if (seal(r, now, &ops[*n], true)) sealed[(*n)++] = r;
    } else if (now - s.since_ns >= hub_.config().timers.rekey_timeout_ns) {
      drop(s.m, DropReason::kNoSession);
    } else {
      staged_[kept++] = s;
      continue;
    }
    staged_by_slot_[s.peer_slot]--;
  }
  n_staged_ = kept;
}

bool Worker::seal(Routed& r, uint64_t now, BatchCrypto::Op* op, bool from_staging) {
  PeerState& peer = hub_.peers().at(r.peer_slot);
  if (!peer.active.load(std::memory_order_relaxed)) {
    drop(r.m, DropReason::kNoRoute);
    return false;
  }
  Keypair* kp =
      from_staging || staged_by_slot_[r.peer_slot] == 0 ? usable_keypair(peer, now) : nullptr;
  if (kp == nullptr) {
    peer.want_handshake.store(true, std::memory_order_relaxed);
    stage(r, now);
    return false;
  }
  uint64_t counter = kp->send_counter.fetch_add(1, std::memory_order_relaxed);
  if (counter >= kRejectAfterMessages) {
    peer.want_handshake.store(true, std::memory_order_relaxed);
    drop(r.m, DropReason::kNoSession);
    return false;
  }
  if (counter >= kRekeyAfterMessages) peer.want_handshake.store(true, std::memory_order_relaxed);

  // Pad to a multiple of 16 without exceeding the MTU (whitepaper §5.4.6).
  uint32_t len = rte_pktmbuf_pkt_len(r.m);
  uint32_t mtu = hub_.config().inner_mtu;
  uint32_t padded = len >= mtu ? len : std::min<uint32_t>(mtu, (len + 15) & ~15u);
  uint8_t* tail = reinterpret_cast<uint8_t*>(
      rte_pktmbuf_append(r.m, static_cast<uint16_t>(padded - len + kTagLen)));
  auto* hdr =
      reinterpret_cast<MessageDataHeader*>(rte_pktmbuf_prepend(r.m, sizeof(MessageDataHeader)));
  if (tail == nullptr || hdr == nullptr || r.m->nb_segs != 1) {
    drop(r.m, DropReason::kMalformed);
    return false;
  }
  std::memset(tail, 0, padded - len);
  hdr->header = MessageHeader{uint8_t(MessageType::kTransportData), {0, 0, 0}};
  hdr->receiver_index = rte_cpu_to_le_32(kp->remote_index);
  hdr->counter = rte_cpu_to_le_64(counter);
  uint8_t* plain = reinterpret_cast<uint8_t*>(hdr) + sizeof(MessageDataHeader);
  *op = BatchCrypto::Op{plain, padded, kp->send_key.data(), counter, plain + padded};
  peer.last_tx_data_ns.store(now, std::memory_order_relaxed);
  peer.last_tx_auth_ns.store(now, std::memory_order_relaxed);
  stats_->count_peer_tx(r.peer_slot, rte_pktmbuf_pkt_len(r.m));
  return true;
}

void Worker::encrypt_and_send(uint64_t now) {
  if (n_out_ == 0 && n_staged_ == 0) return;
  std::array<BatchCrypto::Op, kSealMax> ops;
  std::array<Routed, kSealMax> sealed;
  uint16_t n = 0;
  // Staged packets whose peer has a session now go first: a peer's packets keep their order.
  if (n_staged_ > 0) {
    uint64_t epoch = hub_.session_epoch();
    if (now >= next_staged_scan_ns_ || epoch != seen_session_epoch_ || confirmed_a_keypair_) {
      seen_session_epoch_ = epoch;
      confirmed_a_keypair_ = false;
      release_staged(now, ops.data(), sealed.data(), &n);
    }
  }
  for (uint16_t i = 0; i < n_out_; ++i) {
    if (seal(out_[i], now, &ops[n])) sealed[n++] = out_[i];
  }
  n_out_ = 0;
  encryptor().encrypt(std::span(ops.data(), n));
  for (uint16_t i = 0; i < n; ++i) {
    Endpoint ep = hub_.peers().at(sealed[i].peer_slot).endpoint.load();
    UdpEndpoint to{ep.ipv4_be, ep.port_be, ep.mac};
    if (!prepend_outer_headers(sealed[i].m, hub_.underlay(), hub_.listen_port_be(), to, ip_id_++,
                               hub_.data_checksum())) {
      drop(sealed[i].m, DropReason::kMalformed);
      continue;
    }
    if (sealed[i].forwarded) stats_->count_forwarded();
    tx(sealed[i].m);
  }
}

void Worker::take_control_tx() {
  rte_mbuf* pkts[kBurst];
  unsigned n = rte_ring_sc_dequeue_burst(hub_.control_tx_ring(id_), reinterpret_cast<void**>(pkts),
                                         kBurst, nullptr);
  for (unsigned i = 0; i < n; ++i) tx(pkts[i]);
}

void Worker::tx(rte_mbuf* m) {
  if (n_tx_ == tx_.size()) flush_tx();
  tx_[n_tx_++] = m;
}

void Worker::flush_tx() {
  // Byte counts are taken before the burst: sent mbufs belong to the driver afterwards.
  uint64_t bytes = 0;
  for (uint16_t i = 0; i < n_tx_; ++i) bytes += rte_pktmbuf_pkt_len(tx_[i]);
  uint16_t sent = 0;
  while (sent < n_tx_) {
    uint16_t k = rte_eth_tx_burst(hub_.port_id(), queue_, tx_.data() + sent, n_tx_ - sent);
    if (k == 0) break;
    sent += k;
  }
  for (uint16_t i = sent; i < n_tx_; ++i) {
    bytes -= rte_pktmbuf_pkt_len(tx_[i]);
    drop(tx_[i], DropReason::kTxFull);
  }
  stats_->count_tx(sent, bytes);
  n_tx_ = 0;
}

void Worker::drop(rte_mbuf* m, DropReason why) {
  stats_->count_drop(why);
  rte_pktmbuf_free(m);
}

}  // namespace airlock::dp
