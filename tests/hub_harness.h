// In-process harness for tests of the whole packet path: a Hub and one Worker on a port made of
// two rte_rings (the test enqueues received frames and dequeues transmitted ones), plus a small
// software WireGuard peer built on the protocol core. Frames and checksums are built and checked
// here byte by byte, independently of the data plane's underlay code, so they act as an oracle.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <sodium.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "dataplane/config.h"
#include "dataplane/cookie.h"
#include "dataplane/crypto_prims.h"
#include "dataplane/hub.h"
#include "dataplane/messages.h"
#include "dataplane/noise.h"
#include "dataplane/port.h"
#include "dataplane/stats.h"
#include "dataplane/worker.h"
#include "policy/builder.h"
#include "tests/eal_env.h"

namespace airlock::test {

using dp::crypto::Key;
using Bytes = std::vector<uint8_t>;

// ---------------------------------------------------------------------------------------------
// Addresses and byte helpers

inline uint32_t ip(const char* dotted) {
  in_addr a{};
  inet_pton(AF_INET, dotted, &a);
  return a.s_addr;
}

inline rte_ether_addr mac(uint8_t last) {
  return rte_ether_addr{{0x02, 0, 0, 0, 0x42, last}};
}

inline void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
inline void put_raw(Bytes& b, const void* p, size_t n) {
  const auto* c = static_cast<const uint8_t*>(p);
  b.insert(b.end(), c, c + n);
}
inline uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
inline uint32_t get_raw32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// RFC 1071 one's complement sum, written out so that checksums are not checked with the code
// that computed them.
inline uint32_t sum16(std::span<const uint8_t> d, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < d.size(); i += 2) acc += static_cast<uint32_t>((d[i] << 8) | d[i + 1]);
  if (d.size() % 2 != 0) acc += static_cast<uint32_t>(d.back() << 8);
  return acc;
}
inline uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc & 0xffff);
}
inline uint32_t pseudo_v4(uint32_t src_be, uint32_t dst_be, uint8_t proto, size_t len) {
  uint8_t ph[12];
  std::memcpy(ph, &src_be, 4);
  std::memcpy(ph + 4, &dst_be, 4);
  ph[8] = 0;
  ph[9] = proto;
  ph[10] = static_cast<uint8_t>(len >> 8);
  ph[11] = static_cast<uint8_t>(len);
  return sum16(ph);
}

// ---------------------------------------------------------------------------------------------
// Inner and outer packets

inline Bytes ipv4_packet(uint32_t src_be, uint32_t dst_be, uint8_t proto, const Bytes& l4,
                         uint16_t id = 1) {
  Bytes p;
  p.push_back(0x45);
  p.push_back(0);
  put16(p, static_cast<uint16_t>(20 + l4.size()));
  put16(p, id);
  put16(p, 0);
  p.push_back(64);
  p.push_back(proto);
  put16(p, 0);
  put_raw(p, &src_be, 4);
  put_raw(p, &dst_be, 4);
  uint16_t c = fold(sum16(p));
  p[10] = static_cast<uint8_t>(c >> 8);
  p[11] = static_cast<uint8_t>(c);
  p.insert(p.end(), l4.begin(), l4.end());
  return p;
}

inline Bytes udp_segment(uint32_t src_be, uint32_t dst_be, uint16_t sport, uint16_t dport,
                         std::span<const uint8_t> payload) {
  Bytes u;
  put16(u, sport);
  put16(u, dport);
  put16(u, static_cast<uint16_t>(8 + payload.size()));
  put16(u, 0);
  u.insert(u.end(), payload.begin(), payload.end());
  uint16_t c = fold(sum16(u, pseudo_v4(src_be, dst_be, IPPROTO_UDP, u.size())));
  if (c == 0) c = 0xffff;
  u[6] = static_cast<uint8_t>(c >> 8);
  u[7] = static_cast<uint8_t>(c);
  return u;
}

inline Bytes udp_packet(uint32_t src_be, uint32_t dst_be, uint16_t sport, uint16_t dport,
                        std::span<const uint8_t> payload) {
  return ipv4_packet(src_be, dst_be, IPPROTO_UDP,
                     udp_segment(src_be, dst_be, sport, dport, payload));
}

// ICMP echo request (type 8) or reply (type 0) with `payload_len` patterned bytes.
inline Bytes icmp_echo(uint32_t src_be, uint32_t dst_be, uint16_t seq, size_t payload_len,
                       uint8_t type = 8) {
  Bytes m{type, 0, 0, 0};
  put16(m, 0x4242);
  put16(m, seq);
  for (size_t i = 0; i < payload_len; ++i) m.push_back(static_cast<uint8_t>(i * 7 + seq));
  uint16_t c = fold(sum16(m));
  m[2] = static_cast<uint8_t>(c >> 8);
  m[3] = static_cast<uint8_t>(c);
  return ipv4_packet(src_be, dst_be, IPPROTO_ICMP, m, seq);
}

inline Bytes tcp_syn(uint32_t src_be, uint32_t dst_be, uint16_t sport, uint16_t dport) {
  Bytes t;
  put16(t, sport);
  put16(t, dport);
  put16(t, 0x1234);  // sequence number
  put16(t, 0x5678);
  put16(t, 0);  // acknowledgement number
  put16(t, 0);
  t.push_back(5 << 4);
  t.push_back(0x02);  // SYN
  put16(t, 65535);
  put16(t, 0);
  put16(t, 0);
  uint16_t c = fold(sum16(t, pseudo_v4(src_be, dst_be, IPPROTO_TCP, t.size())));
  t[16] = static_cast<uint8_t>(c >> 8);
  t[17] = static_cast<uint8_t>(c);
  return ipv4_packet(src_be, dst_be, IPPROTO_TCP, t);
}

inline Bytes udp6_packet(const std::array<uint8_t, 16>& src, const std::array<uint8_t, 16>& dst,
                         uint16_t sport, uint16_t dport, std::span<const uint8_t> payload) {
  Bytes u;
  put16(u, sport);
  put16(u, dport);
  put16(u, static_cast<uint16_t>(8 + payload.size()));
  put16(u, 0);
  u.insert(u.end(), payload.begin(), payload.end());
  uint32_t acc = sum16(src) + sum16(dst) + static_cast<uint32_t>(u.size()) + IPPROTO_UDP;
  uint16_t c = fold(sum16(u, acc));
  if (c == 0) c = 0xffff;
  u[6] = static_cast<uint8_t>(c >> 8);
  u[7] = static_cast<uint8_t>(c);
  Bytes p{0x60, 0, 0, 0};
  put16(p, static_cast<uint16_t>(u.size()));
  p.push_back(IPPROTO_UDP);
  p.push_back(64);
  p.insert(p.end(), src.begin(), src.end());
  p.insert(p.end(), dst.begin(), dst.end());
  p.insert(p.end(), u.begin(), u.end());
  return p;
}

inline std::array<uint8_t, 16> ip6(const char* text) {
  std::array<uint8_t, 16> a{};
  inet_pton(AF_INET6, text, a.data());
  return a;
}

// Ethernet + IPv4 (no options) + UDP: where the WireGuard message starts in a frame we build.
inline constexpr size_t kOuterLen = 14 + 20 + 8;

// One end of a UDP conversation on the underlay.
struct Underlay {
  rte_ether_addr mac{};
  uint32_t ip_be = 0;
  uint16_t port = 0;
};

inline Bytes ether(const rte_ether_addr& dst, const rte_ether_addr& src, uint16_t type) {
  Bytes f;
  put_raw(f, dst.addr_bytes, 6);
  put_raw(f, src.addr_bytes, 6);
  put16(f, type);
  return f;
}

inline Bytes udp_frame(const Underlay& from, const Underlay& to, std::span<const uint8_t> payload) {
  Bytes f = ether(to.mac, from.mac, RTE_ETHER_TYPE_IPV4);
  Bytes p = ipv4_packet(from.ip_be, to.ip_be, IPPROTO_UDP,
                        udp_segment(from.ip_be, to.ip_be, from.port, to.port, payload));
  f.insert(f.end(), p.begin(), p.end());
  return f;
}

inline Bytes arp_frame(uint16_t op, const rte_ether_addr& eth_dst, const rte_ether_addr& sha,
                       uint32_t sip_be, const rte_ether_addr& tha, uint32_t tip_be) {
  Bytes f = ether(eth_dst, sha, RTE_ETHER_TYPE_ARP);
  put16(f, 1);
  put16(f, RTE_ETHER_TYPE_IPV4);
  f.push_back(6);
  f.push_back(4);
  put16(f, op);
  put_raw(f, sha.addr_bytes, 6);
  put_raw(f, &sip_be, 4);
  put_raw(f, tha.addr_bytes, 6);
  put_raw(f, &tip_be, 4);
  f.resize(60, 0);
  return f;
}

// A transmitted frame, decoded.
struct Frame {
  Bytes bytes;
  rte_ether_addr dst{}, src{};
  uint16_t ether_type = 0;
  // ARP
  uint16_t arp_op = 0;
  rte_ether_addr sha{}, tha{};
  uint32_t sip = 0, tip = 0;
  // IPv4 / UDP
  bool udp = false;
  bool ip_checksum_ok = false;
  bool udp_checksum_ok = false;
  uint32_t ip_src = 0, ip_dst = 0;
  uint16_t sport = 0, dport = 0;
  Bytes payload;  // UDP payload

  bool is_arp() const { return ether_type == RTE_ETHER_TYPE_ARP; }
  uint8_t wg_type() const { return udp && !payload.empty() ? payload[0] : 0; }
  bool is_wg(dp::MessageType t) const { return wg_type() == static_cast<uint8_t>(t); }
  bool is_data() const { return is_wg(dp::MessageType::kTransportData); }
  bool to(const Underlay& u) const {
    return udp && ip_dst == u.ip_be && dport == u.port && rte_is_same_ether_addr(&dst, &u.mac);
  }
};

inline Frame parse_frame(Bytes bytes) {
  Frame f;
  f.bytes = std::move(bytes);
  const uint8_t* b = f.bytes.data();
  if (f.bytes.size() < 14) return f;
  std::memcpy(f.dst.addr_bytes, b, 6);
  std::memcpy(f.src.addr_bytes, b + 6, 6);
  f.ether_type = get16(b + 12);
  if (f.is_arp() && f.bytes.size() >= 42) {
    const uint8_t* a = b + 14;
    f.arp_op = get16(a + 6);
    std::memcpy(f.sha.addr_bytes, a + 8, 6);
    f.sip = get_raw32(a + 14);
    std::memcpy(f.tha.addr_bytes, a + 18, 6);
    f.tip = get_raw32(a + 24);
    return f;
  }
  if (f.ether_type != RTE_ETHER_TYPE_IPV4 || f.bytes.size() < 14 + 28) return f;
  const uint8_t* iph = b + 14;
  size_t ihl = (iph[0] & 0x0f) * 4u;
  size_t total = get16(iph + 2);
  if (iph[9] != IPPROTO_UDP || ihl < 20 || total > f.bytes.size() - 14 || total < ihl + 8) {
    return f;
  }
  f.ip_checksum_ok = fold(sum16(std::span(iph, ihl))) == 0;
  f.ip_src = get_raw32(iph + 12);
  f.ip_dst = get_raw32(iph + 16);
  const uint8_t* u = iph + ihl;
  size_t ulen = get16(u + 4);
  if (ulen != total - ihl) return f;
  f.udp = true;
  f.sport = get16(u);
  f.dport = get16(u + 2);
  f.udp_checksum_ok =
      get16(u + 6) == 0 ||
      fold(sum16(std::span(u, ulen), pseudo_v4(f.ip_src, f.ip_dst, IPPROTO_UDP, ulen))) == 0;
  f.payload.assign(u + 8, u + ulen);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Software WireGuard peer

inline uint64_t steady_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}
inline uint64_t unix_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// A decrypted transport message.
struct Opened {
  Bytes plain;  // with padding
  uint32_t receiver_index = 0;
  uint64_t counter = 0;
};

class SoftPeer {
 public:
  struct Session {
    Key send{}, receive{};
    uint32_t local_index = 0, remote_index = 0;
    uint64_t send_counter = 0;
    std::set<uint64_t> received;
    bool confirmed = false;
    ~Session() {
      sodium_memzero(send.data(), send.size());
      sodium_memzero(receive.data(), receive.size());
    }
  };

  SoftPeer(const Key& hub_public, const Underlay& hub, const Underlay& self, uint32_t inner_ip_be)
      : id_(dp::LocalIdentity::from_private(dp::crypto::generate_private())),
        hub_keys_(dp::make_peer_keys(id_, hub_public)),
        maker_(std::make_unique<dp::CookieMaker>(hub_public)),
        checker_(std::make_unique<dp::CookieChecker>(id_.public_key)),
        hub_(hub),
        self_(self),
        inner_ip_(inner_ip_be) {}

  const Key& public_key() const { return id_.public_key; }
  const Underlay& underlay() const { return self_; }
  void set_underlay(const Underlay& u) { self_ = u; }
  uint32_t inner_ip() const { return inner_ip_; }
  uint32_t current_local_index() const { return current_ ? current_->local_index : 0; }

  // A UDP frame from this peer to the hub.
  Bytes frame(std::span<const uint8_t> wg_message) const {
    return udp_frame(self_, hub_, wg_message);
  }

  Bytes initiation() {
    dp::MessageInitiation msg;
    uint32_t index = fresh_index();
    if (!dp::create_initiation(msg, hs_, id_, hub_keys_, dp::crypto::generate_private(), index,
                               dp::crypto::tai64n(unix_ns()))) {
      ADD_FAILURE() << "create_initiation failed";
    }
    maker_->add_macs(std::span(reinterpret_cast<uint8_t*>(&msg), sizeof(msg)), steady_ns());
    return frame(std::span(reinterpret_cast<const uint8_t*>(&msg), sizeof(msg)));
  }

  // Consumes the hub's response; the session is usable at once (we initiated).
  bool take_response(const Frame& f) {
    if (!f.is_wg(dp::MessageType::kResponse) || f.payload.size() != sizeof(dp::MessageResponse)) {
      return false;
    }
    if (!checker_->mac1_valid(f.payload)) return false;
    dp::MessageResponse msg;
    std::memcpy(&msg, f.payload.data(), sizeof(msg));
    dp::SessionKeys keys;
    if (!dp::consume_response(msg, hs_, id_, hub_keys_, keys)) return false;
    Session& s = add_session(keys);
    s.confirmed = true;
    current_ = &s;
    return true;
  }

  // Consumes the hub's initiation and returns our response frame. The new session waits for the
  // hub's first transport message before we send on it.
  std::optional<Bytes> take_initiation(const Frame& f) {
    if (!f.is_wg(dp::MessageType::kInitiation) ||
        f.payload.size() != sizeof(dp::MessageInitiation) || !checker_->mac1_valid(f.payload)) {
      return std::nullopt;
    }
    dp::MessageInitiation msg;
    std::memcpy(&msg, f.payload.data(), sizeof(msg));
    auto scan = dp::begin_consume_initiation(msg, id_);
    if (!scan || scan->initiator_static != hub_keys_.public_key ||
        !dp::finish_consume_initiation(*scan, hs_, hub_keys_, steady_ns())) {
      return std::nullopt;
    }
    dp::MessageResponse resp;
    dp::SessionKeys keys;
    if (!dp::create_response(resp, hs_, hub_keys_, dp::crypto::generate_private(), fresh_index(),
                             keys)) {
      return std::nullopt;
    }
    maker_->add_macs(std::span(reinterpret_cast<uint8_t*>(&resp), sizeof(resp)), steady_ns());
    add_session(keys);
    return frame(std::span(reinterpret_cast<const uint8_t*>(&resp), sizeof(resp)));
  }

  // A transport message (header, ciphertext, tag) carrying `inner` padded to 16 bytes.
  Bytes data_message(std::span<const uint8_t> inner) {
    if (current_ == nullptr) {
      ADD_FAILURE() << "no session to send on";
      return {};
    }
    Bytes plain(inner.begin(), inner.end());
    plain.resize((plain.size() + 15) & ~size_t{15}, 0);
    uint64_t counter = current_->send_counter++;
    dp::MessageDataHeader hdr{{static_cast<uint8_t>(dp::MessageType::kTransportData), {0, 0, 0}},
                              rte_cpu_to_le_32(current_->remote_index),
                              rte_cpu_to_le_64(counter)};
    Bytes msg(sizeof(hdr) + plain.size() + dp::kTagLen);
    std::memcpy(msg.data(), &hdr, sizeof(hdr));
    dp::crypto::aead_encrypt(std::span(msg.data() + sizeof(hdr), plain.size() + dp::kTagLen),
                             current_->send, counter, plain, {});
    return msg;
  }
  Bytes data(std::span<const uint8_t> inner) { return frame(data_message(inner)); }
  Bytes keepalive() { return data({}); }

  // Decrypts a transport message from the hub; nullopt if it does not authenticate or replays.
  std::optional<Opened> open(const Frame& f) {
    if (!f.is_data() || f.payload.size() < dp::kDataMinLen) return std::nullopt;
    dp::MessageDataHeader hdr;
    std::memcpy(&hdr, f.payload.data(), sizeof(hdr));
    if (hdr.header.reserved[0] || hdr.header.reserved[1] || hdr.header.reserved[2]) {
      return std::nullopt;
    }
    auto it = sessions_.find(rte_le_to_cpu_32(hdr.receiver_index));
    if (it == sessions_.end()) return std::nullopt;
    Session& s = *it->second;
    Opened out;
    out.receiver_index = rte_le_to_cpu_32(hdr.receiver_index);
    out.counter = rte_le_to_cpu_64(hdr.counter);
    out.plain.resize(f.payload.size() - sizeof(hdr) - dp::kTagLen);
    if (!dp::crypto::aead_decrypt(out.plain, s.receive, out.counter,
                                  std::span(f.payload).subspan(sizeof(hdr)), {})) {
      return std::nullopt;
    }
    if (!s.received.insert(out.counter).second) return std::nullopt;
    if (!s.confirmed) {
      s.confirmed = true;
      current_ = &s;
    }
    return out;
  }

 private:
  Session& add_session(const dp::SessionKeys& keys) {
    auto s = std::make_unique<Session>();
    s->send = keys.send;
    s->receive = keys.receive;
    s->local_index = keys.local_index;
    s->remote_index = keys.remote_index;
    Session& ref = *s;
    sessions_[keys.local_index] = std::move(s);
    return ref;
  }
  static uint32_t fresh_index() {
    uint32_t i = 0;
    while (i == 0) i = randombytes_random();
    return i;
  }

  dp::LocalIdentity id_;
  dp::PeerKeys hub_keys_;
  // Behind pointers so that a SoftPeer can move (the cookie classes cannot).
  std::unique_ptr<dp::CookieMaker> maker_;
  std::unique_ptr<dp::CookieChecker> checker_;
  dp::Handshake hs_;
  Underlay hub_;
  Underlay self_;
  uint32_t inner_ip_;
  std::map<uint32_t, std::unique_ptr<Session>> sessions_;
  Session* current_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Hub + worker on a two-ring port

struct RigOptions {
  uint32_t max_peers = 8;
  uint32_t max_rules = 16;
  dp::ProtocolTimers timers{};
  dp::BatchCrypto::Arch crypto = dp::BatchCrypto::Arch::kBest;
  std::optional<dp::BatchCrypto::Arch> crypto_encrypt;
};

inline std::string unique_suffix() {
  static std::atomic<uint32_t> n{0};
  return std::to_string(getpid()) + "-" + std::to_string(n.fetch_add(1));
}

class HubRig {
 public:
  static constexpr uint16_t kWgPort = 51820;

  static std::unique_ptr<HubRig> create(const RigOptions& o, std::string* error) {
    ensure_eal();
    std::unique_ptr<HubRig> r(new HubRig);
    std::string suffix = unique_suffix();
    r->rx_ = rte_ring_create(("h8rx" + suffix).c_str(), 1024, SOCKET_ID_ANY,
                             RING_F_SP_ENQ | RING_F_SC_DEQ);
    r->tx_ = rte_ring_create(("h8tx" + suffix).c_str(), 1024, SOCKET_ID_ANY,
                             RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (r->rx_ == nullptr || r->tx_ == nullptr) {
      *error = "rte_ring_create failed";
      return nullptr;
    }
    // Ethdev names are per process; the ring PMD rejects names of 20 characters and more.
    static uint32_t ports = 0;
    int port_id = rte_eth_from_rings(("net_ring_h8_" + std::to_string(ports++)).c_str(), &r->rx_, 1,
                                     &r->tx_, 1, static_cast<unsigned>(rte_socket_id()));
    if (port_id < 0) {
      *error = "rte_eth_from_rings failed";
      return nullptr;
    }
    r->cfg_.address_be = ip("192.0.2.1");
    r->cfg_.listen_port = kWgPort;
    r->cfg_.instance = "h8-" + suffix;
    r->cfg_.max_peers = o.max_peers;
    r->cfg_.max_rules = o.max_rules;
    r->cfg_.ring_slots = 64;
    r->cfg_.mbufs = 2047;
    r->cfg_.timers = o.timers;
    r->cfg_.crypto = o.crypto;
    r->cfg_.crypto_encrypt = o.crypto_encrypt;
    Key priv = dp::crypto::generate_private();
    r->hub_ = dp::Hub::create(r->cfg_, priv, 1, error);
    sodium_memzero(priv.data(), priv.size());
    if (!r->hub_) return nullptr;
    r->port_ =
        dp::Port::open({static_cast<uint16_t>(port_id), 1, 256, 256, r->hub_->pool()}, error);
    if (!r->port_) {
      rte_eth_dev_close(static_cast<uint16_t>(port_id));
      return nullptr;
    }
    r->hub_->attach_port(r->port_->id(), r->port_->info().mac);
    r->underlay_ = {r->port_->info().mac, r->cfg_.address_be, kWgPort};
    r->worker_ = std::make_unique<dp::Worker>(*r->hub_, 0, 0);
    if (!r->worker_->init(error)) return nullptr;
    r->stats_ = dp::StatsReader::open(r->cfg_.instance + "-stats", error);
    if (!r->stats_) return nullptr;
    r->initial_mbufs_ = rte_mempool_avail_count(r->hub_->pool());
    return r;
  }

  ~HubRig() {
    worker_.reset();
    free_ring(rx_);
    free_ring(tx_);
    port_.reset();
    hub_.reset();
    rte_ring_free(rx_);
    rte_ring_free(tx_);
  }
  HubRig(const HubRig&) = delete;
  HubRig& operator=(const HubRig&) = delete;

  dp::Hub& hub() { return *hub_; }
  const dp::Config& config() const { return cfg_; }
  const Underlay& underlay() const { return underlay_; }
  const std::string& instance() const { return cfg_.instance; }

  SoftPeer make_peer(const Underlay& self, uint32_t inner_ip_be) {
    return SoftPeer(hub_->identity().public_key, underlay_, self, inner_ip_be);
  }

  // Queues a frame as if the NIC had received it.
  void inject(std::span<const uint8_t> frame) {
    rte_mbuf* m = rte_pktmbuf_alloc(hub_->pool());
    ASSERT_NE(m, nullptr) << "mbuf pool exhausted";
    char* dst = rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size()));
    ASSERT_NE(dst, nullptr) << "frame of " << frame.size() << " bytes does not fit an mbuf";
    if (!frame.empty()) std::memcpy(dst, frame.data(), frame.size());
    ASSERT_EQ(rte_ring_enqueue(rx_, m), 0);
  }

  // Polls until the Rx ring is empty, runs one control tick and polls again (handshake replies
  // and timer packets go out on the worker's next poll). Returns what the hub transmitted.
  std::vector<Frame> pump(int rounds = 1) {
    std::vector<Frame> out;
    for (int i = 0; i < rounds; ++i) {
      do {
        worker_->poll_once();
      } while (rte_ring_count(rx_) > 0);
      hub_->control_tick();
      worker_->poll_once();
      drain_tx(&out);
    }
    return out;
  }

  bool apply(const policy::PolicyBuilder& b, std::string* error) {
    auto bytes = b.finish(error);
    return bytes && hub_->apply_policy(*bytes, error);
  }

  dp::StatsSnapshot snapshot() const { return stats_->snapshot(); }
  uint64_t drops(dp::DropReason why) const {
    return snapshot().total.drops[static_cast<size_t>(why)];
  }
  unsigned mbufs_in_pool() const { return rte_mempool_avail_count(hub_->pool()); }
  unsigned initial_mbufs() const { return initial_mbufs_; }

 private:
  HubRig() = default;
  void drain_tx(std::vector<Frame>* out) {
    rte_mbuf* m = nullptr;
    while (rte_ring_dequeue(tx_, reinterpret_cast<void**>(&m)) == 0) {
      Bytes b(rte_pktmbuf_pkt_len(m));
      const void* p = rte_pktmbuf_read(m, 0, static_cast<uint32_t>(b.size()), b.data());
      if (p != b.data()) std::memcpy(b.data(), p, b.size());
      rte_pktmbuf_free(m);
      out->push_back(parse_frame(std::move(b)));
    }
  }
  static void free_ring(rte_ring* r) {
    if (r == nullptr) return;
    rte_mbuf* m = nullptr;
    while (rte_ring_dequeue(r, reinterpret_cast<void**>(&m)) == 0) rte_pktmbuf_free(m);
  }

  dp::Config cfg_;
  rte_ring* rx_ = nullptr;
  rte_ring* tx_ = nullptr;
  std::unique_ptr<dp::Hub> hub_;
  std::optional<dp::Port> port_;
  std::unique_ptr<dp::Worker> worker_;
  std::optional<dp::StatsReader> stats_;
  Underlay underlay_;
  unsigned initial_mbufs_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Scenario helpers

inline std::vector<Frame> frames_to(const std::vector<Frame>& frames, const Underlay& u) {
  std::vector<Frame> out;
  for (const Frame& f : frames) {
    if (f.to(u)) out.push_back(f);
  }
  return out;
}

// The peer initiates, consumes the hub's response and confirms the session with a keepalive.
// Anything else the hub sends meanwhile is returned in *others (packets that waited for the
// session leave after the keepalive).
inline ::testing::AssertionResult handshake_as_initiator(HubRig& rig, SoftPeer& peer,
                                                         std::vector<Frame>* others = nullptr) {
  rig.inject(peer.initiation());
  std::vector<Frame> responses;
  for (Frame& f : rig.pump()) {
    if (f.to(peer.underlay()) && f.is_wg(dp::MessageType::kResponse)) {
      responses.push_back(std::move(f));
    } else if (others != nullptr) {
      others->push_back(std::move(f));
    }
  }
  if (responses.size() != 1) {
    return ::testing::AssertionFailure() << "expected one response, hub sent " << responses.size();
  }
  const Frame& r = responses[0];
  if (!r.ip_checksum_ok || !r.udp_checksum_ok || r.sport != HubRig::kWgPort) {
    return ::testing::AssertionFailure() << "response has bad outer headers";
  }
  if (!peer.take_response(r)) {
    return ::testing::AssertionFailure() << "response does not complete the handshake";
  }
  rig.inject(peer.keepalive());
  auto after = rig.pump();
  if (others != nullptr) others->insert(others->end(), after.begin(), after.end());
  return ::testing::AssertionSuccess();
}

inline policy::PeerSpec peer_spec(const SoftPeer& p, const std::string& user,
                                  std::vector<policy::PrefixSpec> allowed) {
  policy::PeerSpec s;
  s.public_key = p.public_key();
  s.allowed_ips = std::move(allowed);
  s.user = user;
  return s;
}

inline policy::RuleSpec rule(std::string name, std::string source, std::string destination,
                             policy::Action action, uint8_t proto = 0, uint16_t port_low = 0,
                             uint16_t port_high = 65535) {
  policy::RuleSpec r;
  r.name = std::move(name);
  r.sources = {std::move(source)};
  if (!destination.empty()) r.destinations = {std::move(destination)};
  r.action = action;
  r.protocol = proto;
  r.port_low = port_low;
  r.port_high = port_high;
  return r;
}

inline uint64_t rule_hits(const dp::StatsSnapshot& s, const std::string& name) {
  for (const auto& r : s.rules) {
    if (r.name == name) return r.hits;
  }
  return ~0ULL;
}

}  // namespace airlock::test
