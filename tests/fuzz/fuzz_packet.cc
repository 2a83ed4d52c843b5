// libFuzzer target for the worker's packet entry point (Worker::handle_burst) and what it hands
// to the control lcore (Hub::control_tick) and the gateway channel.
//
// The first input byte picks how the rest reaches the hub:
//   0  the rest is a whole Ethernet frame as received on the port;
//   1  byte 1 picks peer A or B, the rest is the UDP payload of a well-formed datagram from that
//      peer's endpoint to the hub's WireGuard port;
//   2  byte 1 picks the peer (bit 0) and whether to repeat its last counter (bit 1); the rest is
//      an inner packet sealed under that peer's established session, so it passes decryption
//      and reaches replay, allowed-IPs, ACL, forwarding and re-encryption;
//   3  byte 1 picks a destination peer slot, the rest is an inner packet the gateway hands back
//      on the packet channel.
// After every input all mbufs must be back in the pool: a leak or a double free aborts.
// With FUZZ_PACKET_VERBOSE=1 in the environment each input prints the worker counters it moved,
// which tells what happened to a reproducer or a seed.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>
#include <sodium.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/hub.h"
#include "dataplane/port.h"
#include "dataplane/ring.h"
#include "dataplane/stats.h"
#include "dataplane/worker.h"
#include "policy/builder.h"

namespace {

using namespace airlock::dp;
namespace pol = airlock::policy;

enum Mode : uint8_t { kRawFrame, kUdpPayload, kSealedInner, kGatewayReturn, kModeCount };

constexpr uint16_t kHubPort = 51820;
constexpr uint16_t kPeerPort = 51821;
constexpr uint32_t kMaxFrame = RTE_MBUF_DEFAULT_DATAROOM;

uint32_t ipv4_be(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return rte_cpu_to_be_32(RTE_IPV4(a, b, c, d));
}

// Fixed keys keep a crash reproducible from its input alone.
crypto::Key fixed_key(uint8_t seed) {
  crypto::Key k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(seed + 7 * i);
  return k;
}

crypto::Key public_of(const crypto::Key& private_key) {
  crypto::Key pub;
  crypto_scalarmult_base(pub.data(), private_key.data());
  return pub;
}

struct SimPeer {
  uint32_t slot = 0;
  uint32_t hub_index = 0;  // receiver index the hub gave this peer's session
  crypto::Key send_key{};  // = the hub's receive key for this peer
  uint64_t next_counter = 0;
  Endpoint endpoint;
};

struct Harness {
  std::unique_ptr<Hub> hub;
  std::optional<Port> port;
  std::optional<Worker> worker;
  std::optional<PacketChannel> gateway;  // the control plane's end of worker 0's channel
  std::array<SimPeer, 2> peers;
  unsigned mbufs_at_rest = 0;
  std::optional<StatsReader> stats;  // only with FUZZ_PACKET_VERBOSE
  WorkerSnapshot last;
};

// Lives until exit so that its destructors remove the shared-memory regions it created.
std::unique_ptr<Harness> g;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "fuzz_packet: %s\n", what.c_str());
  std::abort();
}

void init_eal(const char* argv0) {
  std::vector<const char*> args = {argv0,
                                   "--no-huge",
                                   "-m",
                                   "512",
                                   "--no-pci",
                                   "--no-shconf",
                                   "-l",
                                   "0",
                                   "--no-telemetry",
                                   "--vdev=net_null0,no-rx=1",
                                   "--log-level=*:error"};
  if (rte_eal_init(static_cast<int>(args.size()), const_cast<char**>(args.data())) < 0) {
    die(std::string("EAL init failed: ") + rte_strerror(rte_errno));
  }
}

std::vector<uint8_t> make_policy() {
  pol::PolicyBuilder b;
  b.version(1).gateway("10.0.0.1/32").gateway("fd00::1/128");
  pol::PeerSpec alice;
  alice.public_key = public_of(fixed_key(0x20));
  alice.allowed_ips = {"10.0.0.2/32", "fd00::2/128"};
  alice.user = "alice";
  b.add_peer(alice);
  pol::PeerSpec bob;
  bob.public_key = public_of(fixed_key(0x30));
  bob.allowed_ips = {"10.0.0.3/32", "10.1.0.0/16", "fd00::3/128"};
  bob.user = "bob";
  bob.groups = {"servers"};
  b.add_peer(bob);
  auto rule = [&b](std::string name, std::string source, std::vector<pol::PrefixSpec> to,
                   pol::Action action, uint8_t protocol = 0, uint16_t port = 0) {
    pol::RuleSpec r;
    r.name = std::move(name);
    r.sources = {std::move(source)};
    r.destinations = std::move(to);
    r.action = action;
    r.protocol = protocol;
    if (port != 0) r.port_low = r.port_high = port;
    b.add_rule(r);
  };
  rule("to-gateway", "*", {"10.0.0.1/32", "fd00::1/128"}, pol::Action::PuntToGateway);
  rule("no-ssh", "*", {}, pol::Action::Drop, IPPROTO_TCP, 22);
  rule("alice-to-servers", "user:alice", {}, pol::Action::Forward);
  rule("servers-to-alice", "group:servers", {"10.0.0.2/32", "fd00::2/128"}, pol::Action::Forward);
  std::string error;
  auto bytes = b.finish(&error);
  if (!bytes) die("policy: " + error);
  return *bytes;
}

SimPeer establish(Hub& hub, uint8_t key_seed, uint8_t last_octet) {
  SimPeer p;
  auto slot = hub.slot_of(public_of(fixed_key(key_seed)));
  if (!slot) die("peer missing from the policy");
  p.slot = *slot;
  p.endpoint.ipv4_be = ipv4_be(192, 0, 2, last_octet);
  p.endpoint.port_be = rte_cpu_to_be_16(kPeerPort);
  p.endpoint.mac = rte_ether_addr{{0x02, 0, 0, 0, 0, last_octet}};
  SessionKeys keys;
  keys.send = fixed_key(key_seed + 1);     // hub -> peer
  keys.receive = fixed_key(key_seed + 2);  // peer -> hub
  keys.remote_index = 0x1000u + last_octet;
  p.send_key = keys.receive;
  auto index = hub.install_session(p.slot, keys, p.endpoint);
  if (!index) die("install_session failed");
  p.hub_index = *index;
  return p;
}

void setup(const char* argv0) {
  if (sodium_init() < 0) die("libsodium init failed");
  init_eal(argv0);
  auto h = std::make_unique<Harness>();
  Config cfg;
  cfg.address_be = ipv4_be(192, 0, 2, 1);
  cfg.listen_port = kHubPort;
  cfg.instance = "airlock-fuzz-" + std::to_string(getpid());
  cfg.max_peers = 8;
  cfg.max_rules = 8;
  cfg.ring_slots = 64;
  cfg.mbufs = 2047;
  // A long fuzzing run must not expire the sessions it relies on.
  cfg.timers.rekey_after_ns = cfg.timers.reject_after_ns = 1'000'000'000'000'000ULL;
  std::string error;
  h->hub = Hub::create(cfg, fixed_key(0x10), 1, &error);
  if (!h->hub) die("Hub::create: " + error);
  uint16_t port_id;
  if (rte_eth_dev_get_port_by_name("net_null0", &port_id) != 0) die("no net_null0 port");
  h->port = Port::open(PortConfig{port_id, 1, 512, 512, h->hub->pool()}, &error);
  if (!h->port) die("Port::open: " + error);
  h->hub->attach_port(h->port->id(), h->port->info().mac);
  if (!h->hub->apply_policy(make_policy(), &error)) die("apply_policy: " + error);
  h->peers[0] = establish(*h->hub, 0x20, 2);
  h->peers[1] = establish(*h->hub, 0x30, 3);
  h->gateway = PacketChannel::attach(cfg.instance + "-ring-0", &error);
  if (!h->gateway) die("PacketChannel::attach: " + error);
  h->worker.emplace(*h->hub, 0, 0);
  if (!h->worker->init(&error)) die("Worker::init: " + error);
  h->worker->poll_once();
  h->mbufs_at_rest = rte_mempool_avail_count(h->hub->pool());
  if (std::getenv("FUZZ_PACKET_VERBOSE") != nullptr) {
    h->stats = StatsReader::open(cfg.instance + "-stats", &error);
    if (!h->stats) die("StatsReader::open: " + error);
    h->last = h->stats->snapshot().total;
  }
  g = std::move(h);
}

// Ethernet + IPv4 + UDP from `from` to the hub, then `payload`. Empty if it cannot fit.
std::vector<uint8_t> udp_frame(const Endpoint& from, std::span<const uint8_t> payload) {
  std::vector<uint8_t> f;
  if (payload.size() > kMaxFrame - kOuterHeaderLen) return f;
  f.resize(kOuterHeaderLen + payload.size());
  auto* eth = reinterpret_cast<rte_ether_hdr*>(f.data());
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  eth->dst_addr = g->hub->underlay().mac;
  eth->src_addr = from.mac;
  eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(f.size() - sizeof(rte_ether_hdr)));
  ip->time_to_live = 64;
  ip->next_proto_id = IPPROTO_UDP;
  ip->src_addr = from.ipv4_be;
  ip->dst_addr = g->hub->underlay().ipv4_be;
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  udp->src_port = from.port_be;
  udp->dst_port = g->hub->listen_port_be();
  udp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(sizeof(rte_udp_hdr) + payload.size()));
  std::memcpy(udp + 1, payload.data(), payload.size());
  return f;
}

// A transport data message carrying `inner` under the peer's session.
std::vector<uint8_t> sealed(SimPeer& peer, bool repeat_counter, std::span<const uint8_t> inner) {
  uint64_t counter =
      repeat_counter && peer.next_counter > 0 ? peer.next_counter - 1 : peer.next_counter++;
  std::vector<uint8_t> msg(sizeof(MessageDataHeader) + inner.size() + kTagLen);
  MessageDataHeader hdr{};
  hdr.header.type = uint8_t(MessageType::kTransportData);
  hdr.receiver_index = rte_cpu_to_le_32(peer.hub_index);
  hdr.counter = rte_cpu_to_le_64(counter);
  std::memcpy(msg.data(), &hdr, sizeof(hdr));
  std::array<uint8_t, crypto_aead_chacha20poly1305_ietf_NPUBBYTES> nonce{};
  for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<uint8_t>(counter >> (8 * i));
  uint8_t* body = msg.data() + sizeof(hdr);
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(body, body + inner.size(), nullptr,
                                                     inner.data(), inner.size(), nullptr, 0,
                                                     nullptr, nonce.data(), peer.send_key.data());
  return msg;
}

rte_mbuf* to_mbuf(std::span<const uint8_t> frame) {
  if (frame.empty() || frame.size() > kMaxFrame) return nullptr;
  rte_mbuf* m = rte_pktmbuf_alloc(g->hub->pool());
  if (m == nullptr) die("mbuf pool empty");
  char* dst = rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size()));
  if (dst == nullptr) die("mbuf too small for a frame of " + std::to_string(frame.size()));
  std::memcpy(dst, frame.data(), frame.size());
  return m;
}

void send_from_gateway(uint8_t slot_pick, std::span<const uint8_t> inner) {
  uint32_t slot = slot_pick < 128 ? g->peers[slot_pick & 1].slot : slot_pick - 128u;
  g->gateway->send(Direction::kFromGateway, slot, inner);
}

void print_counter_changes() {
  const WorkerSnapshot now = g->stats->snapshot().total;
  const WorkerSnapshot& was = g->last;
  std::string line = "counters:";
  auto add = [&line](std::string_view name, uint64_t before, uint64_t after) {
    if (after != before) line += " " + std::string(name) + "+" + std::to_string(after - before);
  };
  add("rx", was.rx_packets, now.rx_packets);
  add("tx", was.tx_packets, now.tx_packets);
  add("forwarded", was.forwarded_packets, now.forwarded_packets);
  add("punted", was.punted_packets, now.punted_packets);
  add("returned", was.returned_packets, now.returned_packets);
  for (size_t i = 0; i < kDropReasonCount; ++i) {
    add(drop_reason_name(static_cast<DropReason>(i)), was.drops[i], now.drops[i]);
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  g->last = now;
}

void drain_punted() {
  g->gateway->receive(Direction::kToGateway, g->gateway->nb_slots(),
                      [](uint32_t, std::span<const uint8_t>) {});
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  (void)argc;
  setup((*argv)[0]);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const auto mode = static_cast<Mode>(data[0] % kModeCount);
  const uint8_t pick = data[1];
  std::span<const uint8_t> rest(data + 2, size - 2);
  SimPeer& peer = g->peers[pick & 1];

  std::vector<uint8_t> frame;
  switch (mode) {
    case kRawFrame:
      frame.assign(data + 1, data + size);
      break;
    case kUdpPayload:
      frame = udp_frame(peer.endpoint, rest);
      break;
    case kSealedInner:
      if (rest.size() <= kMaxFrame - kOuterHeaderLen - kDataMinLen) {
        frame = udp_frame(peer.endpoint, sealed(peer, (pick & 2) != 0, rest));
      }
      break;
    case kGatewayReturn:
      send_from_gateway(pick, rest);
      break;
    case kModeCount:
      break;
  }
  if (rte_mbuf* m = to_mbuf(frame)) g->worker->handle_burst(&m, 1, g->hub->now_ns());
  g->hub->control_tick();
  g->worker->poll_once();
  g->worker->flush_tx();
  drain_punted();
  if (g->stats) print_counter_changes();

  unsigned free_now = rte_mempool_avail_count(g->hub->pool());
  if (free_now != g->mbufs_at_rest) {
    die("mbufs not back in the pool after the input: " + std::to_string(free_now) + " free, " +
        std::to_string(g->mbufs_at_rest) + " expected");
  }
  return 0;
}
