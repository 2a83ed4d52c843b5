// airlock-bench-pcap: everything a DUT benchmark replays, with keys and counters consistent so
// that the data plane accepts every packet of the first pass.
//
// A pcap sealed in advance can only be accepted by a DUT that knows its session keys, and keys
// from a real handshake depend on a random ephemeral. So this tool picks the transport keys
// itself (from --seed) and writes them in a file that airlock-dataplane installs with
// --static-sessions. In OUT_DIR:
//   wg-SIZE.pcap      per inner size: transport-data packets (type 4) from every peer to the DUT,
//                     peers interleaved, counters 0..P-1 per peer, sealed with each peer's key.
//                     Inner IPv4/UDP from peer i's address to peer i+1's (mod N), port 5201.
//   policy.json       N peers "bench-0".. with one /32 each in 10.200.0.0/16 and a rule that
//                     forwards UDP/5201 among them; policy.alp is the same, compiled.
//   dut.key, dut.pub  the DUT's identity (base64, as `wg genkey` / `wg pubkey` write them).
//   static-sessions   per peer: receiver index, receive key, send key, endpoint (0600: a secret).
// So every packet is decrypted, passes allowed-IPs and the ACL, and is re-encrypted to the next
// peer, whose endpoint is the generator (the DUT sends it back where the traffic came from).
// Peer i's outer source port is --gen-port + i, so RSS spreads peers over queues.
//
// Usage: airlock-bench-pcap --out DIR [--peers N] [--sizes 64,512,1420] [--packets P]
//          [--dut-ip A] [--dut-port N] [--dut-mac M] [--gen-ip A] [--gen-port N] [--gen-mac M]
//          [--seed N]
//        airlock-bench-pcap --check-tx STATIC_SESSIONS PCAP
// --check-tx checks what the DUT sent (e.g. net_pcap's tx_pcap): every frame must be a
// transport message to a session's endpoint that opens with that session's send key, with no
// counter seen twice. Prints the count; exits 1 on any other frame.
#include <arpa/inet.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_udp.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bench/inner_packet.h"
#include "dataplane/crypto_prims.h"
#include "dataplane/messages.h"
#include "dataplane/peers.h"
#include "dataplane/static_sessions.h"
#include "dataplane/underlay.h"
#include "policy/document.h"
#include "policy/policy.h"

namespace {

using airlock::dp::crypto::Key;
namespace dp = airlock::dp;
namespace pol = airlock::policy;

constexpr uint32_t kMaxPeers = 4096;
// Inner packets: IPv4 + UDP headers at least; at most the WireGuard interface MTU, which keeps
// frames within 1514 bytes, the largest pktgen loads from a pcap without truncating.
constexpr uint32_t kMinInner = sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr);
constexpr uint32_t kMaxInner = 1420;
constexpr uint16_t kInnerSrcPort = 40000;
constexpr uint16_t kInnerDstPort = 5201;
constexpr uint32_t kInnerBase = 0x0ac80000;  // 10.200.0.0/16; peer i has .0.0 + 2 + i

struct Options {
  std::string out_dir;
  uint32_t peers = 16;
  std::vector<uint32_t> sizes{64, 512, 1420};
  uint32_t packets = 8192;  // per peer, per size
  std::string dut_ip = "198.18.0.1";
  uint16_t dut_port = 51820;
  std::string dut_mac = "02:00:00:00:00:01";
  std::string gen_ip = "198.18.0.2";
  uint16_t gen_port = 40000;
  std::string gen_mac = "02:00:00:00:00:02";
  std::optional<uint64_t> seed;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "airlock-bench-pcap: %s\n", what.c_str());
  std::exit(1);
}

template <class T>
bool parse_number(std::string_view s, T* out, T min, T max) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < min || v > max) return false;
  *out = v;
  return true;
}

std::optional<std::vector<uint32_t>> parse_sizes(std::string_view s) {
  std::vector<uint32_t> sizes;
  while (!s.empty()) {
    const size_t comma = s.find(',');
    uint32_t v;
    if (!parse_number<uint32_t>(s.substr(0, comma), &v, kMinInner, kMaxInner)) return std::nullopt;
    sizes.push_back(v);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
  }
  if (sizes.empty()) return std::nullopt;
  return sizes;
}

std::string usage() {
  return "usage: airlock-bench-pcap --out DIR [--peers N (1-" + std::to_string(kMaxPeers) +
         ", 16)] [--sizes S,S,.. (inner IPv4 bytes, " + std::to_string(kMinInner) + "-" +
         std::to_string(kMaxInner) +
         ", 64,512,1420)]\n"
         "         [--packets P (per peer and size, 8192)] [--dut-ip A (198.18.0.1)]\n"
         "         [--dut-port N (51820)] [--dut-mac M (02:00:00:00:00:01)]\n"
         "         [--gen-ip A (198.18.0.2)] [--gen-port N (40000; peer i sends from N+i)]\n"
         "         [--gen-mac M (02:00:00:00:00:02)] [--seed N (random)]\n"
         "       airlock-bench-pcap --check-tx STATIC_SESSIONS DUT_OUTPUT.pcap\n";
}

std::optional<Options> parse_options(int argc, char** argv, std::string* error) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) {
      *error = std::string(flag) + ": missing value (or unknown flag)";
      return std::nullopt;
    }
    const std::string_view v = argv[++i];
    bool ok = true;
    if (flag == "--out") {
      o.out_dir = v;
      ok = !v.empty();
    } else if (flag == "--peers") {
      ok = parse_number<uint32_t>(v, &o.peers, 1, kMaxPeers);
    } else if (flag == "--sizes") {
      auto sizes = parse_sizes(v);
      ok = sizes.has_value();
      if (ok) o.sizes = *sizes;
    } else if (flag == "--packets") {
      ok = parse_number<uint32_t>(v, &o.packets, 1, 1u << 24);
    } else if (flag == "--dut-ip") {
      o.dut_ip = v;
    } else if (flag == "--dut-port") {
      ok = parse_number<uint16_t>(v, &o.dut_port, 1, 65535);
    } else if (flag == "--dut-mac") {
      o.dut_mac = v;
    } else if (flag == "--gen-ip") {
      o.gen_ip = v;
    } else if (flag == "--gen-port") {
      ok = parse_number<uint16_t>(v, &o.gen_port, 1, 65535);
    } else if (flag == "--gen-mac") {
      o.gen_mac = v;
    } else if (flag == "--seed") {
      uint64_t seed = 0;
      ok = parse_number<uint64_t>(v, &seed, 0, UINT64_MAX);
      o.seed = seed;
    } else {
      *error = "unknown flag " + std::string(flag);
      return std::nullopt;
    }
    if (!ok) {
      *error = "invalid value for " + std::string(flag) + ": '" + std::string(v) + "'";
      return std::nullopt;
    }
  }
  if (o.out_dir.empty()) {
    *error = "--out is required";
    return std::nullopt;
  }
  if (uint32_t{o.gen_port} + o.peers - 1 > 65535) {
    *error = "--gen-port + --peers - 1 exceeds 65535";
    return std::nullopt;
  }
  return o;
}

uint32_t parse_ipv4(const std::string& text, const char* flag) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1 || a.s_addr == 0) {
    die(std::string(flag) + ": not an IPv4 address: " + text);
  }
  return a.s_addr;
}

rte_ether_addr parse_mac(const std::string& text, const char* flag) {
  rte_ether_addr mac;
  if (text.size() != RTE_ETHER_ADDR_FMT_SIZE - 1 ||
      rte_ether_unformat_addr(text.c_str(), &mac) != 0) {
    die(std::string(flag) + ": not a MAC address xx:xx:xx:xx:xx:xx: " + text);
  }
  return mac;
}

std::string ipv4_text(uint32_t be) {
  char buf[INET_ADDRSTRLEN];
  in_addr a{be};
  inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

std::string mac_text(const rte_ether_addr& mac) {
  char buf[RTE_ETHER_ADDR_FMT_SIZE];
  rte_ether_format_addr(buf, sizeof(buf), &mac);
  return buf;
}

// Every key and index comes from BLAKE2b(seed; label, peer), so one seed reproduces a run.
class Derive {
 public:
  explicit Derive(uint64_t seed) {
    for (size_t i = 0; i < 8; ++i) seed_[i] = static_cast<uint8_t>(seed >> (8 * i));
  }
  Key key(std::string_view label, uint32_t peer) const {
    Key k;
    bytes(label, peer, k);
    return k;
  }
  // Clamped as `wg genkey` does, so the file is an ordinary WireGuard private key.
  Key private_key(std::string_view label, uint32_t peer) const {
    Key k = key(label, peer);
    k[0] &= 248;
    k[31] = static_cast<uint8_t>((k[31] & 127) | 64);
    return k;
  }
  uint32_t u32(std::string_view label, uint32_t peer) const {
    std::array<uint8_t, 4> b;
    bytes(label, peer, b);
    return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
  }

 private:
  void bytes(std::string_view label, uint32_t peer, std::span<uint8_t> out) const {
    std::string msg(label);
    msg.push_back('\0');
    for (size_t i = 0; i < 4; ++i) msg.push_back(static_cast<char>(peer >> (8 * i)));
    crypto_generichash(out.data(), out.size(), reinterpret_cast<const uint8_t*>(msg.data()),
                       msg.size(), seed_.data(), seed_.size());
  }
  std::array<uint8_t, 16> seed_{};  // crypto_generichash needs a key of at least 16 bytes
};

struct Peer {
  Key public_key{};
  Key receive{};  // the DUT's receive key: peer -> DUT packets are sealed with it
  Key send{};     // the DUT's send key
  uint32_t local_index = 0;
  uint32_t remote_index = 0;
  uint32_t inner_be = 0;
  uint16_t port = 0;  // outer source port, host order
  ~Peer() {
    sodium_memzero(receive.data(), receive.size());
    sodium_memzero(send.data(), send.size());
  }
};

uint32_t inner_address_be(uint32_t peer) {
  return rte_cpu_to_be_32(kInnerBase + 2 + peer);
}

// Files holding keys are created 0600 before anything is written to them.
void write_secret_file(const std::string& path, const std::string& text) {
  unlink(path.c_str());
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) die(path + ": " + std::strerror(errno));
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  if (close(fd) != 0 || !ok) die(path + ": write failed");
}

void write_file(const std::string& path, std::span<const uint8_t> bytes) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) {
    die(path + ": write failed");
  }
}

std::string policy_json(const Options& o, uint64_t seed, const std::vector<Peer>& peers) {
  std::string j = "{\n  // Bench policy from airlock-bench-pcap --seed " + std::to_string(seed) +
                  ": peer i sends UDP/" + std::to_string(kInnerDstPort) + " to peer i+1 (mod " +
                  std::to_string(o.peers) +
                  "), which the DUT forwards.\n  \"version\": 1,\n  \"peers\": [\n";
  for (size_t i = 0; i < peers.size(); ++i) {
    j += "    {\"public_key\": \"" + pol::encode_key_base64(peers[i].public_key) +
         "\", \"allowed_ips\": [\"" + ipv4_text(peers[i].inner_be) + "/32\"], \"user\": \"bench-" +
         std::to_string(i) + "\"}" + (i + 1 < peers.size() ? ",\n" : "\n");
  }
  const std::string next = ipv4_text(inner_address_be(o.peers > 1 ? 1 : 0));
  j += "  ],\n  \"rules\": [\n    {\"name\": \"bench\", \"from\": [\"*\"], \"to\": [\"" +
       ipv4_text(rte_cpu_to_be_32(kInnerBase)) + "/16\"], \"proto\": \"udp\", \"ports\": \"" +
       std::to_string(kInnerDstPort) +
       "\", \"action\": \"forward\"}\n  ],\n  \"tests\": [\n    {\"from\": \"user:bench-0\", "
       "\"to\": \"" +
       next + "\", \"proto\": \"udp\", \"port\": " + std::to_string(kInnerDstPort) +
       ", \"expect\": \"allow\"}\n  ]\n}\n";
  return j;
}

std::string sessions_text(uint64_t seed, const Options& o, const std::vector<Peer>& peers,
                          const rte_ether_addr& gen_mac) {
  std::string t =
      "# airlock-dataplane --static-sessions, from airlock-bench-pcap --seed " +
      std::to_string(seed) +
      ". BENCHMARKS ONLY. SECRET: these keys open and forge the bench traffic.\n"
      "# peer_public_key local_index remote_index receive_key send_key endpoint endpoint_mac\n";
  char index[2][16];
  for (const Peer& p : peers) {
    std::snprintf(index[0], sizeof(index[0]), "0x%08" PRIx32, p.local_index);
    std::snprintf(index[1], sizeof(index[1]), "0x%08" PRIx32, p.remote_index);
    t += pol::encode_key_base64(p.public_key) + " " + index[0] + " " + index[1] + " " +
         pol::encode_key_base64(p.receive) + " " + pol::encode_key_base64(p.send) + " " + o.gen_ip +
         ":" + std::to_string(p.port) + " " + mac_text(gen_mac) + "\n";
  }
  return t;
}

// The inner packet from `from` to `to`, `size` bytes, padded with zeros to a multiple of 16 (as
// WireGuard senders pad, capped at the MTU).
std::vector<uint8_t> inner_packet(uint32_t size, const Peer& from, const Peer& to) {
  std::vector<uint8_t> p = airlock::bench::inner_udp_packet(size, from.inner_be, to.inner_be,
                                                            kInnerSrcPort, kInnerDstPort);
  p.resize(std::min<uint32_t>((size + 15) & ~15u, kMaxInner), 0);
  return p;
}

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
  void operator()(pcap_dumper_t* d) const { pcap_dump_close(d); }
};

struct Underlay {
  uint32_t dut_be, gen_be;
  uint16_t dut_port_be;
  rte_ether_addr dut_mac, gen_mac;
};

// Returns the frame size of the size's packets.
size_t write_pcap(const std::string& path, uint32_t size, uint32_t packets,
                  const std::vector<Peer>& peers, const Underlay& u) {
  std::unique_ptr<pcap_t, PcapCloser> dead(pcap_open_dead(DLT_EN10MB, 65535));
  std::unique_ptr<pcap_dumper_t, PcapCloser> out(pcap_dump_open(dead.get(), path.c_str()));
  if (!out) die("cannot write " + path + ": " + pcap_geterr(dead.get()));
  std::vector<std::vector<uint8_t>> inner;
  for (size_t i = 0; i < peers.size(); ++i) {
    inner.push_back(inner_packet(size, peers[i], peers[(i + 1) % peers.size()]));
  }
  const size_t wg_len = sizeof(dp::MessageDataHeader) + inner[0].size() + dp::kTagLen;
  std::vector<uint8_t> frame(dp::kOuterHeaderLen + wg_len);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(frame.data());
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  auto* wg = reinterpret_cast<uint8_t*>(udp + 1);
  uint8_t* body = wg + sizeof(dp::MessageDataHeader);
  pcap_pkthdr rec{};
  rec.caplen = rec.len = static_cast<uint32_t>(frame.size());
  uint16_t ip_id = 0;
  for (uint32_t counter = 0; counter < packets; ++counter) {
    for (size_t i = 0; i < peers.size(); ++i) {
      const Peer& p = peers[i];
      eth->dst_addr = u.dut_mac;
      eth->src_addr = u.gen_mac;
      eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
      *ip = rte_ipv4_hdr{};
      ip->version_ihl = RTE_IPV4_VHL_DEF;
      ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(frame.size() - sizeof(*eth)));
      ip->packet_id = rte_cpu_to_be_16(ip_id++);
      ip->time_to_live = 64;
      ip->next_proto_id = IPPROTO_UDP;
      ip->src_addr = u.gen_be;
      ip->dst_addr = u.dut_be;
      ip->hdr_checksum = rte_ipv4_cksum(ip);
      udp->src_port = rte_cpu_to_be_16(p.port);
      udp->dst_port = u.dut_port_be;
      udp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(sizeof(*udp) + wg_len));
      udp->dgram_cksum = 0;
      dp::MessageDataHeader hdr{};
      hdr.header.type = static_cast<uint8_t>(dp::MessageType::kTransportData);
      hdr.receiver_index = rte_cpu_to_le_32(p.local_index);
      hdr.counter = rte_cpu_to_le_64(counter);
      std::memcpy(wg, &hdr, sizeof(hdr));
      dp::crypto::aead_encrypt(std::span(body, inner[i].size() + dp::kTagLen), p.receive, counter,
                               inner[i], {});
      udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
      pcap_dump(reinterpret_cast<u_char*>(out.get()), &rec, frame.data());
    }
  }
  if (pcap_dump_flush(out.get()) != 0) die("short write to " + path);
  return frame.size();
}

// What is wrong with one frame the DUT sent, or empty if it opens.
std::string check_frame(std::span<const uint8_t> f,
                        const std::unordered_map<uint32_t, const dp::StaticSession*>& by_remote,
                        std::unordered_map<uint32_t, std::unordered_set<uint64_t>>& seen) {
  if (f.size() < dp::kOuterHeaderLen + dp::kDataMinLen) return "too short";
  rte_ether_hdr eth;
  rte_ipv4_hdr ip;
  rte_udp_hdr udp;
  std::memcpy(&eth, f.data(), sizeof(eth));
  std::memcpy(&ip, f.data() + sizeof(eth), sizeof(ip));
  std::memcpy(&udp, f.data() + sizeof(eth) + sizeof(ip), sizeof(udp));
  if (eth.ether_type != RTE_BE16(RTE_ETHER_TYPE_IPV4) || ip.version_ihl != RTE_IPV4_VHL_DEF ||
      ip.next_proto_id != IPPROTO_UDP) {
    return "not IPv4/UDP without options";
  }
  const size_t wg_len = rte_be_to_cpu_16(udp.dgram_len) - sizeof(udp);
  if (dp::kOuterHeaderLen + wg_len > f.size() || wg_len < dp::kDataMinLen) return "bad UDP length";
  const auto wg = f.subspan(dp::kOuterHeaderLen, wg_len);
  dp::MessageDataHeader hdr;
  std::memcpy(&hdr, wg.data(), sizeof(hdr));
  if (hdr.header.type != static_cast<uint8_t>(dp::MessageType::kTransportData)) {
    return "WireGuard message type " + std::to_string(hdr.header.type);
  }
  const auto it = by_remote.find(rte_le_to_cpu_32(hdr.receiver_index));
  if (it == by_remote.end()) return "receiver index of no session";
  const dp::StaticSession& s = *it->second;
  if (ip.dst_addr != s.endpoint.ipv4_be || udp.dst_port != s.endpoint.port_be ||
      !rte_is_same_ether_addr(&eth.dst_addr, &s.endpoint.mac)) {
    return "not sent to the session's endpoint";
  }
  const uint64_t counter = rte_le_to_cpu_64(hdr.counter);
  std::vector<uint8_t> plain(wg_len - sizeof(hdr) - dp::kTagLen);
  if (!dp::crypto::aead_decrypt(plain, s.send, counter, wg.subspan(sizeof(hdr)), {})) {
    return "does not open with the session's send key";
  }
  if (!seen[s.remote_index].insert(counter).second) return "counter sent twice";
  return {};
}

int check_tx(const std::string& sessions_path, const std::string& pcap_path) {
  std::string error;
  const auto sessions = dp::read_static_sessions(sessions_path, &error);
  if (!sessions) die(sessions_path + ": " + error);
  std::unordered_map<uint32_t, const dp::StaticSession*> by_remote;
  for (const dp::StaticSession& s : *sessions) by_remote[s.remote_index] = &s;
  char errbuf[PCAP_ERRBUF_SIZE];
  std::unique_ptr<pcap_t, PcapCloser> in(pcap_open_offline(pcap_path.c_str(), errbuf));
  if (!in) die(pcap_path + ": " + errbuf);
  std::unordered_map<uint32_t, std::unordered_set<uint64_t>> seen;
  uint64_t frames = 0;
  pcap_pkthdr* rec;
  const u_char* data;
  while (pcap_next_ex(in.get(), &rec, &data) == 1) {
    ++frames;
    const std::string why = check_frame(std::span(data, rec->caplen), by_remote, seen);
    if (!why.empty()) die(pcap_path + ": frame " + std::to_string(frames) + ": " + why);
  }
  std::printf("%" PRIu64
              " frames, all transport data that opens with the send key of one of %zu "
              "sessions (%zu received some)\n",
              frames, sessions->size(), seen.size());
  return frames > 0 ? 0 : 1;
}

int run(const Options& o) {
  uint64_t seed;
  if (o.seed) {
    seed = *o.seed;
  } else {
    randombytes_buf(&seed, sizeof(seed));
  }
  const Underlay u{parse_ipv4(o.dut_ip, "--dut-ip"), parse_ipv4(o.gen_ip, "--gen-ip"),
                   rte_cpu_to_be_16(o.dut_port), parse_mac(o.dut_mac, "--dut-mac"),
                   parse_mac(o.gen_mac, "--gen-mac")};
  if (mkdir(o.out_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    die(o.out_dir + ": " + std::strerror(errno));
  }
  const Derive derive(seed);
  Key dut_private = derive.private_key("dut", 0);
  const Key dut_public = dp::crypto::public_from_private(dut_private);
  std::string key_text = pol::encode_key_base64(dut_private) + "\n";
  sodium_memzero(dut_private.data(), dut_private.size());
  write_secret_file(o.out_dir + "/dut.key", key_text);
  sodium_memzero(key_text.data(), key_text.size());
  write_secret_file(o.out_dir + "/dut.pub", pol::encode_key_base64(dut_public) + "\n");

  std::vector<Peer> peers(o.peers);
  // The low 16 bits of a local index pick its index-table entry (entry 0 is never used); the
  // high bits are as random as the hub's own.
  const uint32_t high = derive.u32("index", 0) & ~(dp::kIndexTableSize - 1);
  for (uint32_t i = 0; i < o.peers; ++i) {
    Peer& p = peers[i];
    Key priv = derive.private_key("peer", i);
    p.public_key = dp::crypto::public_from_private(priv);
    sodium_memzero(priv.data(), priv.size());
    p.receive = derive.key("receive", i);
    p.send = derive.key("send", i);
    p.local_index = high | (i + 1);
    p.remote_index = derive.u32("remote", i) | 1;
    p.inner_be = inner_address_be(i);
    p.port = static_cast<uint16_t>(o.gen_port + i);
  }

  const std::string json = policy_json(o, seed, peers);
  std::string error;
  const std::string json_path = o.out_dir + "/policy.json";
  auto document = pol::parse_document(json, json_path, &error);
  if (!document) die("generated policy does not parse: " + error);
  auto compiled = pol::compile(*document, &error);
  if (!compiled) die("generated policy does not compile: " + error);
  write_file(json_path, std::span(reinterpret_cast<const uint8_t*>(json.data()), json.size()));
  write_file(o.out_dir + "/policy.alp", *compiled);

  std::string sessions = sessions_text(seed, o, peers, u.gen_mac);
  write_secret_file(o.out_dir + "/static-sessions", sessions);
  sodium_memzero(sessions.data(), sessions.size());

  std::printf("seed %" PRIu64 ", %u peer(s), DUT %s:%u (%s), generator %s:%u-%u (%s)\n", seed,
              o.peers, o.dut_ip.c_str(), o.dut_port, mac_text(u.dut_mac).c_str(), o.gen_ip.c_str(),
              o.gen_port, o.gen_port + o.peers - 1, mac_text(u.gen_mac).c_str());
  for (uint32_t size : o.sizes) {
    const std::string path = o.out_dir + "/wg-" + std::to_string(size) + ".pcap";
    const size_t frame = write_pcap(path, size, o.packets, peers, u);
    std::printf("pcap %s packets %" PRIu64 " frame_bytes %zu inner_bytes %u\n", path.c_str(),
                uint64_t{o.packets} * o.peers, frame, size);
  }
  std::printf("policy %s/policy.json %s/policy.alp\n", o.out_dir.c_str(), o.out_dir.c_str());
  std::printf("dut_key %s/dut.key\nstatic_sessions %s/static-sessions\n", o.out_dir.c_str(),
              o.out_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) die("libsodium init failed");
  if (argc == 4 && std::string_view(argv[1]) == "--check-tx") return check_tx(argv[2], argv[3]);
  std::string error;
  const auto options = parse_options(argc, argv, &error);
  if (!options) {
    std::fprintf(stderr, "airlock-bench-pcap: %s\n%s", error.c_str(), usage().c_str());
    return 2;
  }
  return run(*options);
}
