// Data-plane throughput of one worker core, against the bare IPsec-MB rate in the same run.
//
// Per inner size (64, 512, 1420 bytes) and mode, a pcap of valid transport packets from peer A
// (consecutive counters, sealed with libsodium, so a wrong decryption shows up as bad_tag drops)
// is replayed by net_pcap with infinite_rx=1 into Worker::poll_once on lcore 1, while lcore 0
// runs Hub::control_tick as airlock-dataplane does:
//   receive  (a) decrypt + replay + allowed-IPs + ACL + destination lookup. The policy forwards
//            A -> B, but B has no session, so every packet ends at the sealing step: staged
//            for a handshake while the staging queue has room, then dropped as no_session.
//   acl-drop the same up to the ACL verdict, with a rule that drops A -> B: (a) without the
//            staging queue's cost, for reference.
//   forward  (b) as receive, with a session and endpoint for B: re-encrypt, outer headers, TX.
// net_pcap has no TX stream here, so TX frees the mbufs (and counts them) exactly as net_null
// would; the worker drives a single port for RX and TX, so a separate net_null sink is not
// possible without changing the worker.
//
// Why only the first pass over the pcap is measured: infinite_rx replays the same counters, and
// the second time round every packet is a replay (decrypted, then dropped before allowed-IPs),
// which is less work than the path being measured. A session cannot be re-keyed under the same
// receiver index between passes either. So the pcap holds --packets distinct packets (default
// 512 Ki, a multiple of the burst) and the worker stops after exactly one pass; infinite_rx still
// matters because it preloads the file into mbufs, which keeps file reading off the worker core.
// The cost is memory: net_pcap needs one mbuf per packet in the file (dpdk.md §1.3).
//
// Rates come from the median time of a poll_once that received a full burst of 32, the same
// statistic bench_crypto uses for the bare IPsec-MB rates (the 2 cores are shared, and a
// preempted burst says nothing about the code). The wall-clock rate over the whole pass is
// printed next to it. "pmd" is net_pcap alone (rx_burst + free): the copy every packet costs
// before the worker sees it, which a NIC doing DMA would not charge to the core; "%bare-pmd"
// compares the bare rate with the worker's time per packet minus that copy.
//
// Policy swaps under traffic (--swap-every-ms N): the policy is a synthetic one of 10 000 peers
// and 100 000 rules by default (--swap-policy; bench/synthetic_policy.h) that also holds A and B,
// the A -> B rule in the middle. During each pass the control lcore loads exactly --swaps fresh
// versions of it, N ms apart (after the previous load and its grace period), each with the other
// set of synthetic peers and another port in one synthetic rule, so every swap removes and adds
// all peers but A and B, which stay with their keys, allowed IPs and rule, and builds the ACL
// anew (a swap that keeps the ACL reuses it: bench_policy's Apply with new_peers=1). The worker is
// paced so that the pass spans all the swaps and packets are in flight around each publish; it
// never gets more than its share ahead of the swaps, and the last share waits for the last swap.
// The counters must add up exactly as without swaps; a second table gives per pass the swaps, the
// load time (Hub::apply_policy), the grace period (publish until the worker passed a quiescent
// state) and the control_tick that frees the old generation. Rates in this mode are of a paced,
// shared core: only the counters matter.
//
// Usage (root): bench_dataplane [--packets N] [--bare-seconds X] [--pcap-dir DIR]
//                               [--only receive|acl-drop|forward] [--huge]
//                               [--swap-every-ms N [--swaps K] [--swap-policy PEERS,RULES]]
#include <pcap/pcap.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>
#include <rte_udp.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/inner_packet.h"
#include "bench/synthetic_policy.h"
#include "dataplane/crypto_batch.h"
#include "dataplane/heap.h"
#include "dataplane/hub.h"
#include "dataplane/port.h"
#include "dataplane/simd.h"
#include "dataplane/stats.h"
#include "dataplane/worker.h"
#include "policy/builder.h"

namespace {

using namespace airlock::dp;
namespace pol = airlock::policy;

constexpr uint32_t kSizes[] = {64, 512, 1420};
constexpr uint16_t kHubPort = 51820;
constexpr uint16_t kPeerPort = 51821;
// Per-mbuf footprint in the pool (object header, struct rte_mbuf, default data room), rounded
// up; sizes EAL memory for the pool.
constexpr uint64_t kMbufFootprint = 2560;
constexpr uint32_t kPoolSlack = 16383;
// Everything else in EAL memory: two policies' LPM, LPM6 and ACL tables (the old one lives
// until its grace period ends), rings, the pcap PMD.
constexpr uint64_t kOtherMemoryMb = 2048;

// EAL memory for the swapped policy's generations, two live during a swap. Each is mostly
// allowed-IPs tables: two 64 MiB tbl24s plus tbl8s for 4 prefixes per peer of each family
// (1 KiB per IPv4 and 13 KiB per IPv6 prefix); the ACL needs far less (~25 MiB at 100k rules).
uint64_t swap_memory_mb(uint32_t peers, uint32_t rules) {
  const uint64_t generation_mb = 128 + uint64_t{peers} * 4 * 14 / 1024 + rules / 2000;
  return 2 * generation_mb + 512;
}

struct Options {
  uint32_t packets = 512 * 1024;
  double bare_seconds = 1.0;
  std::string pcap_dir = "/tmp";
  std::string only_mode;        // empty: every mode; else run just this one (for profiling)
  int swap_every_ms = -1;       // < 0: no policy swaps
  uint32_t swaps = 3;           // per pass, with swap_every_ms
  uint32_t swap_peers = 10000;  // size of the swapped policy, A and B included
  uint32_t swap_rules = 100000;
  // Hugepages (reserved beforehand: scripts/hugepages N), as a deployment runs, instead of
  // --no-huge: with 4 KiB pages every packet net_pcap copies out of its preloaded mbufs also
  // costs TLB misses (64 B receive: 57-58% of bare against 62-63%).
  bool huge = false;
};

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--packets" && i + 1 < argc) {
      o.packets = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
      if (o.packets < 1024 || o.packets % kBurst != 0) return std::nullopt;
    } else if (arg == "--bare-seconds" && i + 1 < argc) {
      o.bare_seconds = std::strtod(argv[++i], nullptr);
      if (o.bare_seconds <= 0) return std::nullopt;
    } else if (arg == "--pcap-dir" && i + 1 < argc) {
      o.pcap_dir = argv[++i];
    } else if (arg == "--swap-every-ms" && i + 1 < argc) {
      o.swap_every_ms = std::atoi(argv[++i]);
      if (o.swap_every_ms < 0) return std::nullopt;
    } else if (arg == "--swap-policy" && i + 1 < argc) {
      char* end = nullptr;
      o.swap_peers = static_cast<uint32_t>(std::strtoul(argv[++i], &end, 10));
      if (*end != ',') return std::nullopt;
      o.swap_rules = static_cast<uint32_t>(std::strtoul(end + 1, nullptr, 10));
      if (o.swap_peers < 2 || o.swap_rules < 1) return std::nullopt;
    } else if (arg == "--swaps" && i + 1 < argc) {
      o.swaps = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
      if (o.swaps == 0) return std::nullopt;
    } else if (arg == "--huge") {
      o.huge = true;
    } else if (arg == "--only" && i + 1 < argc) {
      o.only_mode = argv[++i];
      if (o.only_mode != "receive" && o.only_mode != "acl-drop" && o.only_mode != "forward") {
        return std::nullopt;
      }
    } else {
      return std::nullopt;
    }
  }
  return o;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_dataplane: %s\n", what.c_str());
  std::exit(1);
}

uint32_t ipv4_be(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return rte_cpu_to_be_32(RTE_IPV4(a, b, c, d));
}

crypto::Key random_key() {
  crypto::Key k;
  randombytes_buf(k.data(), k.size());
  return k;
}

crypto::Key public_of(const crypto::Key& private_key) {
  crypto::Key pub;
  crypto_scalarmult_base(pub.data(), private_key.data());
  return pub;
}

std::array<uint8_t, 12> wireguard_nonce(uint64_t counter) {
  std::array<uint8_t, 12> nonce{};
  for (size_t i = 0; i < 8; ++i) nonce[4 + i] = static_cast<uint8_t>(counter >> (8 * i));
  return nonce;
}

// Runs fn on lcore 1 and waits for it, calling `meanwhile` on this lcore until it returns.
void on_worker_lcore(const std::function<void()>& fn,
                     const std::function<void()>& meanwhile = nullptr) {
  struct Task {
    const std::function<void()>* fn;
    std::atomic<bool> done{false};
  } task{&fn};
  auto trampoline = [](void* arg) {
    auto* t = static_cast<Task*>(arg);
    (*t->fn)();
    t->done.store(true);
    return 0;
  };
  const unsigned lcore = rte_get_next_lcore(rte_get_main_lcore(), 1, 0);
  if (rte_eal_remote_launch(trampoline, &task, lcore) != 0) {
    die("cannot launch on lcore " + std::to_string(lcore));
  }
  while (meanwhile && !task.done.load()) meanwhile();
  rte_eal_wait_lcore(lcore);
}

// Ops per second from the median of per-burst cycle counts.
double rate_from_median(std::vector<uint64_t> cycles, uint32_t per_burst) {
  if (cycles.empty()) return 0;
  auto mid = cycles.begin() + static_cast<ptrdiff_t>(cycles.size() / 2);
  std::nth_element(cycles.begin(), mid, cycles.end());
  return static_cast<double>(per_burst) * static_cast<double>(rte_get_tsc_hz()) /
         static_cast<double>(std::max<uint64_t>(*mid, 1));
}

// ---- bare IPsec-MB, as in bench_crypto.cc (not shared: that file is a program, not a library).

// kBurst in-cache packets sealed under one key. Decrypting in place alternates the buffer
// between plaintext and ciphertext, so each packet keeps the tag over both and decrypt-only
// rounds alternate them; a decrypt+encrypt round leaves the ciphertext and its tag as it found
// them.
class BareWorkload {
 public:
  explicit BareWorkload(uint32_t len) : len_(len), storage_(size_t{kBurst} * len) {
    randombytes_buf(key_.data(), key_.size());
    randombytes_buf(storage_.data(), storage_.size());
    for (size_t i = 0; i < kBurst; ++i) {
      seal(i, tag_over_c_[i].data());
      seal(i, tag_over_p_[i].data());
    }
    seal_all();  // buffers hold ciphertext from here on
  }
  std::vector<BatchCrypto::Op> ops(bool over_ciphertext) {
    std::vector<BatchCrypto::Op> ops(kBurst);
    for (size_t i = 0; i < kBurst; ++i) {
      ops[i] = {data(i), len_, key_.data(), 1000 + i,
                over_ciphertext ? tag_over_c_[i].data() : tag_over_p_[i].data()};
    }
    return ops;
  }

 private:
  uint8_t* data(size_t i) { return storage_.data() + i * len_; }
  void seal(size_t i, uint8_t* tag) {
    const auto nonce = wireguard_nonce(1000 + i);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        data(i), tag, nullptr, data(i), len_, nullptr, 0, nullptr, nonce.data(), key_.data());
  }
  void seal_all() {
    std::array<uint8_t, kTagLen> scratch;
    for (size_t i = 0; i < kBurst; ++i) seal(i, scratch.data());
  }

  uint32_t len_;
  std::vector<uint8_t> storage_;
  crypto::Key key_{};
  std::array<std::array<uint8_t, kTagLen>, kBurst> tag_over_c_{}, tag_over_p_{};
};

struct BareRates {
  double decrypt = 0;
  double decrypt_encrypt = 0;
};

// Runs on lcore 1, the core the worker uses.
BareRates measure_bare(uint32_t len, double seconds) {
  auto crypto = BatchCrypto::create();
  if (!crypto) die("no usable IPsec-MB manager");
  BareWorkload w(len);
  const auto over_c = w.ops(true);
  const auto over_p = w.ops(false);
  std::array<bool, kBurst> ok{};
  auto timed = [&](auto&& burst) {
    std::vector<uint64_t> cycles;
    cycles.reserve(1 << 20);
    const uint64_t end = rte_get_tsc_cycles() + static_cast<uint64_t>(seconds * rte_get_tsc_hz());
    for (uint64_t round = 0; cycles.size() < cycles.capacity(); ++round) {
      const uint64_t start = rte_rdtsc();
      if (start >= end) break;
      burst(round);
      cycles.push_back(rte_rdtsc() - start);
      if (!std::all_of(ok.begin(), ok.end(), [](bool b) { return b; })) {
        die("bare decrypt failed to verify a tag");
      }
    }
    return rate_from_median(std::move(cycles), kBurst);
  };
  BareRates r;
  // Decrypt+encrypt first: it leaves the buffers holding ciphertext, where decrypt-only starts.
  r.decrypt_encrypt = timed([&](uint64_t) {
    crypto->decrypt(over_c, ok);
    crypto->encrypt(over_c);
  });
  r.decrypt = timed([&](uint64_t round) { crypto->decrypt(round % 2 ? over_p : over_c, ok); });
  return r;
}

// ---- the packets

struct PeerSide {
  crypto::Key private_key{};
  uint32_t slot = 0;
  Endpoint endpoint;
  uint32_t inner_ipv4_be = 0;
};

// An inner IPv4/UDP packet of exactly `size` bytes from A to B.
std::vector<uint8_t> inner_packet(uint32_t size, const PeerSide& a, const PeerSide& b) {
  return airlock::bench::inner_udp_packet(size, a.inner_ipv4_be, b.inner_ipv4_be, 40000, 5201);
}

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
  void operator()(pcap_dumper_t* d) const { pcap_dump_close(d); }
};

// Writes `count` transport packets from `from` to the hub, counters 0..count-1, each carrying
// `inner` sealed with `send_key` (the hub's receive key for this session).
void write_pcap(const std::string& path, uint32_t count, std::span<const uint8_t> inner,
                const crypto::Key& send_key, uint32_t receiver_index, const PeerSide& from,
                const UnderlayAddr& hub, uint16_t hub_port_be) {
  std::unique_ptr<pcap_t, PcapCloser> dead(pcap_open_dead(DLT_EN10MB, 65535));
  std::unique_ptr<pcap_dumper_t, PcapCloser> out(pcap_dump_open(dead.get(), path.c_str()));
  if (!out) die("cannot write " + path + ": " + pcap_geterr(dead.get()));
  const uint32_t wg_len = static_cast<uint32_t>(sizeof(MessageDataHeader) + inner.size() + kTagLen);
  std::vector<uint8_t> frame(kOuterHeaderLen + wg_len);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(frame.data());
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  auto* wg = reinterpret_cast<uint8_t*>(udp + 1);
  eth->dst_addr = hub.mac;
  eth->src_addr = from.endpoint.mac;
  eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(frame.size() - sizeof(*eth)));
  ip->time_to_live = 64;
  ip->next_proto_id = IPPROTO_UDP;
  ip->src_addr = from.endpoint.ipv4_be;
  ip->dst_addr = hub.ipv4_be;
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  udp->src_port = from.endpoint.port_be;
  udp->dst_port = hub_port_be;
  udp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(sizeof(*udp) + wg_len));

  pcap_pkthdr rec{};
  rec.caplen = rec.len = static_cast<uint32_t>(frame.size());
  MessageDataHeader hdr{};
  hdr.header.type = uint8_t(MessageType::kTransportData);
  hdr.receiver_index = rte_cpu_to_le_32(receiver_index);
  uint8_t* body = wg + sizeof(hdr);
  for (uint32_t counter = 0; counter < count; ++counter) {
    hdr.counter = rte_cpu_to_le_64(counter);
    std::memcpy(wg, &hdr, sizeof(hdr));
    const auto nonce = wireguard_nonce(counter);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(body, body + inner.size(), nullptr,
                                                       inner.data(), inner.size(), nullptr, 0,
                                                       nullptr, nonce.data(), send_key.data());
    pcap_dump(reinterpret_cast<u_char*>(out.get()), &rec, frame.data());
  }
  if (pcap_dump_flush(out.get()) != 0) die("short write to " + path);
}

// A net_pcap port replaying one file forever; removed on destruction.
class PcapPort {
 public:
  PcapPort(const std::string& file, rte_mempool* pool) {
    static uint32_t serial = 0;
    name_ = "net_pcap_bench" + std::to_string(serial++);
    const std::string args = "rx_pcap=" + file + ",infinite_rx=1";
    if (rte_eal_hotplug_add("vdev", name_.c_str(), args.c_str()) != 0) {
      die("cannot create " + name_);
    }
    uint16_t id;
    if (rte_eth_dev_get_port_by_name(name_.c_str(), &id) != 0) die("no port " + name_);
    std::string error;
    port_ = Port::open(PortConfig{id, 1, 1024, 1024, pool}, &error);
    if (!port_) die(error);
  }
  ~PcapPort() {
    port_.reset();
    rte_eal_hotplug_remove("vdev", name_.c_str());
  }
  PcapPort(const PcapPort&) = delete;
  PcapPort& operator=(const PcapPort&) = delete;
  const Port& port() const { return *port_; }

 private:
  std::string name_;
  std::optional<Port> port_;
};

uint64_t rx_packets(uint16_t port) {
  rte_eth_stats s{};
  rte_eth_stats_get(port, &s);
  return s.ipackets;
}

// Policy swaps during one pass.
struct SwapStats {
  std::vector<double> apply_ms;  // Hub::apply_policy
  std::vector<double> grace_us;  // from the publish until the worker passed a quiescent state
  std::vector<double> free_ms;   // the control_tick that frees the old generation
  bool peers_kept = true;        // A and B kept their slots through every swap
};

struct PassResult {
  double median_rate = 0;  // packets/s
  double wall_rate = 0;
  WorkerSnapshot counters;  // delta over the pass
  SwapStats swaps;
};

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  auto mid = v.begin() + static_cast<ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

double max_of(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

double seconds_of(uint64_t cycles) {
  return static_cast<double>(cycles) / static_cast<double>(rte_get_tsc_hz());
}

enum class Mode { kReceive, kAclDrop, kForward };

class Bench {
 public:
  explicit Bench(const Options& o) : options_(o) {}

  void setup() {
    Config cfg;
    cfg.address_be = ipv4_be(192, 0, 2, 1);
    cfg.listen_port = kHubPort;
    cfg.instance = "airlock-bench-" + std::to_string(getpid());
    cfg.max_peers = 16;
    cfg.max_rules = 16;
    if (swapping()) {
      // Both sets of synthetic peers, as removed ones wait for their grace period.
      const uint32_t others = options_.swap_peers - 2;
      cfg.max_peers = 2 * others + 16;
      cfg.max_rules = options_.swap_rules;
      fillers_[0] = airlock::bench::synthetic_peers(others, 0);
      fillers_[1] = airlock::bench::synthetic_peers(others, 1);
      filler_rules_ =
          airlock::bench::synthetic_rules(options_.swap_rules - 1, std::max(1u, others));
    }
    cfg.mbufs = options_.packets + kPoolSlack;
    // Timers play no part in throughput; keep rekeying, and in passes that last as long as
    // swaps do, keepalives and handshakes to the silent B, out of the measurement.
    cfg.timers.rekey_after_ns = cfg.timers.reject_after_ns = 3600'000'000'000ULL;
    cfg.timers.keepalive_timeout_ns = 3600'000'000'000ULL;
    std::string error;
    hub_ = Hub::create(cfg, random_key(), 1, &error);
    if (!hub_) die("Hub::create: " + error);
    a_ = make_peer(2);
    b_ = make_peer(3);
    apply_policy(pol::Action::Forward);
    a_.slot = *hub_->slot_of(public_of(a_.private_key));
    b_.slot = *hub_->slot_of(public_of(b_.private_key));
    stats_ = StatsReader::open(cfg.instance + "-stats", &error);
    if (!stats_) die("StatsReader: " + error);
    worker_.emplace(*hub_, 0, 0);
    on_worker_lcore([&] {
      if (!worker_->init(&error)) die(error);
    });
  }

  void teardown() {
    hub_->stopping().store(true);
    on_worker_lcore([&] { worker_->run(); });  // returns at once: goes offline for RCU
    worker_.reset();
    hub_.reset();
  }

  BareRates bare(uint32_t size) {
    BareRates r;
    on_worker_lcore([&] { r = measure_bare(size, options_.bare_seconds); });
    return r;
  }

  // Peers A and B; one rule for A -> B with `action`. When swapping, inside the synthetic
  // policy with the current set of other peers.
  void apply_policy(pol::Action action) {
    action_ = action;
    const uint64_t start = rte_rdtsc();
    const std::vector<uint8_t> bytes = policy_bytes();
    std::string error;
    if (!hub_->apply_policy(bytes, &error)) die("policy: " + error);
    last_load_s_ = seconds_of(rte_rdtsc() - start);
  }

  bool swapping() const { return options_.swap_every_ms >= 0; }
  // Building and applying the last policy (the first one after setup adds every peer).
  double last_load_seconds() const { return last_load_s_; }

  // Gives B a session and an endpoint: from here on A's packets are re-encrypted to B.
  void establish_b() {
    crypto::Key unused = install(b_);
    sodium_memzero(unused.data(), unused.size());
  }

  // One pass over a fresh pcap through the worker, then net_pcap's own rate on the same file.
  PassResult run(uint32_t size, double* pmd_rate) {
    crypto::Key a_send = install(a_);
    const std::string path = options_.pcap_dir + "/airlock-bench-" + std::to_string(getpid()) +
                             "-" + std::to_string(size) + ".pcap";
    write_pcap(path, options_.packets, inner_packet(size, a_, b_), a_send, a_index_, a_,
               hub_->underlay(), hub_->listen_port_be());
    sodium_memzero(a_send.data(), a_send.size());
    PassResult r;
    {
      PcapPort port(path, hub_->pool());
      hub_->attach_port(port.port().id(), port.port().info().mac);
      r = one_pass(port.port().id());
    }
    {
      PcapPort port(path, hub_->pool());
      *pmd_rate = pmd_only(port.port().id());
    }
    std::remove(path.c_str());
    return r;
  }

  uint32_t packets() const { return options_.packets; }

 private:
  std::vector<uint8_t> policy_bytes() {
    pol::PolicyBuilder policy;
    policy.version(++policy_version_);
    for (const PeerSide* p : {&a_, &b_}) {
      pol::PeerSpec spec;
      spec.public_key = public_of(p->private_key);
      spec.allowed_ips = {p == &a_ ? "10.0.0.2/32" : "10.0.0.3/32"};
      spec.user = p == &a_ ? "a" : "b";
      policy.add_peer(spec);
    }
    pol::RuleSpec rule;
    rule.name = "a-to-b";
    rule.sources = {"user:a"};
    rule.destinations = {"10.0.0.3/32"};
    rule.protocol = IPPROTO_UDP;
    rule.action = action_;
    if (swapping()) {
      for (const pol::PeerSpec& p : fillers_[filler_set_]) policy.add_peer(p);
      const size_t middle = filler_rules_.size() / 2;
      for (size_t i = 0; i < filler_rules_.size(); ++i) {
        if (i == middle) policy.add_rule(rule);
        pol::RuleSpec filler = filler_rules_[i];
        // A rule that differs between the two versions, so that no swap can reuse the running
        // ACL: each one builds everything anew.
        if (i == 0 && filler_set_ == 1) filler.port_low = filler.port_high = 9999;
        policy.add_rule(filler);
      }
    } else {
      policy.add_rule(rule);
    }
    std::string error;
    auto bytes = policy.finish(&error);
    if (!bytes) die("policy: " + error);
    return std::move(*bytes);
  }

  // On the control lcore during a pass: the next version with the other set of peers, its grace
  // period, then the control_tick that frees the old generation.
  void swap_policy(SwapStats& s) {
    filler_set_ ^= 1;
    const std::vector<uint8_t> bytes = policy_bytes();
    std::string error;
    const uint64_t t0 = rte_rdtsc();
    if (!hub_->apply_policy(bytes, &error)) die("policy swap: " + error);
    const uint64_t t1 = rte_rdtsc();
    const uint64_t token = rte_rcu_qsbr_start(hub_->rcu());
    while (rte_rcu_qsbr_check(hub_->rcu(), token, false) != 1) rte_pause();
    const uint64_t t2 = rte_rdtsc();
    hub_->control_tick();
    const uint64_t t3 = rte_rdtsc();
    s.apply_ms.push_back(seconds_of(t1 - t0) * 1e3);
    s.grace_us.push_back(seconds_of(t2 - t1) * 1e6);
    s.free_ms.push_back(seconds_of(t3 - t2) * 1e3);
    s.peers_kept &= hub_->slot_of(public_of(a_.private_key)) == a_.slot &&
                    hub_->slot_of(public_of(b_.private_key)) == b_.slot;
  }

  PeerSide make_peer(uint8_t n) {
    PeerSide p;
    p.private_key = random_key();
    p.endpoint.ipv4_be = ipv4_be(192, 0, 2, n);
    p.endpoint.port_be = rte_cpu_to_be_16(kPeerPort);
    p.endpoint.mac = rte_ether_addr{{0x02, 0, 0, 0, 0, n}};
    p.inner_ipv4_be = ipv4_be(10, 0, 0, n);
    return p;
  }

  // Installs a fresh session for the peer and returns the peer's send key (the hub's receive
  // key). A fresh session per pass gives a fresh replay window.
  crypto::Key install(PeerSide& peer) {
    SessionKeys keys;
    keys.send = random_key();
    keys.receive = random_key();
    keys.remote_index = 0x100 + peer.slot;
    const crypto::Key peer_send = keys.receive;
    auto index = hub_->install_session(peer.slot, keys, peer.endpoint);
    if (!index) die("install_session failed");
    if (&peer == &a_) a_index_ = *index;
    return peer_send;
  }

  PassResult one_pass(uint16_t port) {
    const uint64_t target = options_.packets;
    std::vector<uint64_t> bursts;
    bursts.reserve(target / kBurst + 1);
    const WorkerSnapshot before = stats_->snapshot().total;
    uint64_t wall = 0;
    PassResult r;
    // With swaps, the worker spreads the pass over one interval more than there are swaps,
    // guessing an interval from the last load, and takes share i + 1 of the packets only once
    // swap i is done. The control lcore stops at exactly `swaps`, so none is in its grace period
    // (which needs the worker) when the worker leaves.
    const uint32_t swaps = swapping() ? options_.swaps : 0;
    const double interval_s = last_load_s_ + std::max(0, options_.swap_every_ms) / 1e3;
    const double pace_cycles = (swaps + 1) * interval_s * static_cast<double>(rte_get_tsc_hz());
    std::atomic<uint32_t> swaps_done{0};
    auto next_swap = std::chrono::steady_clock::now();
    // lcore 0 meanwhile does what airlock-dataplane's main loop does.
    auto control = [&] {
      hub_->control_tick();
      if (swaps_done.load() < swaps && std::chrono::steady_clock::now() >= next_swap) {
        swap_policy(r.swaps);
        swaps_done.fetch_add(1);
        next_swap =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.swap_every_ms);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    };
    on_worker_lcore(
        [&] {
          const uint64_t base = rx_packets(port);
          uint64_t seen = 0;
          const uint64_t start = rte_rdtsc();
          while (seen < target) {
            if (swaps > 0) {
              const auto by_time =
                  static_cast<uint64_t>(static_cast<double>(target) *
                                        static_cast<double>(rte_rdtsc() - start) / pace_cycles);
              const uint64_t by_swaps = target * (swaps_done.load() + 1) / (swaps + 1);
              if (seen + kBurst > std::min(by_time, by_swaps)) {
                // Idle as an empty poll would be, quiescent state included.
                rte_rcu_qsbr_quiescent(hub_->rcu(), 0);
                rte_pause();
                continue;
              }
            }
            const uint64_t t0 = rte_rdtsc();
            worker_->poll_once();
            const uint64_t t1 = rte_rdtsc();
            const uint64_t now_seen = rx_packets(port) - base;
            if (now_seen - seen == kBurst) bursts.push_back(t1 - t0);
            seen = now_seen;
          }
          wall = rte_rdtsc() - start;
          if (seen != target) die("pass ended off a burst boundary: " + std::to_string(seen));
        },
        control);
    r.median_rate = rate_from_median(std::move(bursts), kBurst);
    r.wall_rate = static_cast<double>(target) * static_cast<double>(rte_get_tsc_hz()) /
                  static_cast<double>(wall);
    r.counters = delta(before, stats_->snapshot().total);
    return r;
  }

  double pmd_only(uint16_t port) {
    std::vector<uint64_t> bursts;
    bursts.reserve(options_.packets / kBurst + 1);
    on_worker_lcore([&] {
      std::array<rte_mbuf*, kBurst> pkts;
      for (uint32_t seen = 0; seen < options_.packets;) {
        const uint64_t t0 = rte_rdtsc();
        const uint16_t n = rte_eth_rx_burst(port, 0, pkts.data(), kBurst);
        rte_pktmbuf_free_bulk(pkts.data(), n);
        if (n == kBurst) bursts.push_back(rte_rdtsc() - t0);
        seen += n;
      }
    });
    return rate_from_median(std::move(bursts), kBurst);
  }

  static WorkerSnapshot delta(const WorkerSnapshot& a, const WorkerSnapshot& b) {
    WorkerSnapshot d;
    d.rx_packets = b.rx_packets - a.rx_packets;
    d.tx_packets = b.tx_packets - a.tx_packets;
    d.forwarded_packets = b.forwarded_packets - a.forwarded_packets;
    for (size_t i = 0; i < kDropReasonCount; ++i) d.drops[i] = b.drops[i] - a.drops[i];
    return d;
  }

  Options options_;
  std::unique_ptr<Hub> hub_;
  std::optional<StatsReader> stats_;
  std::optional<Worker> worker_;
  PeerSide a_, b_;
  uint32_t a_index_ = 0;
  uint64_t policy_version_ = 0;
  pol::Action action_ = pol::Action::Forward;
  double last_load_s_ = 0;
  // Two sets of other peers for the swapped policy, alternated by each swap.
  std::array<std::vector<pol::PeerSpec>, 2> fillers_;
  uint32_t filler_set_ = 0;
  std::vector<pol::RuleSpec> filler_rules_;
};

// Every packet of the pass must have taken the measured path, or the rate means nothing.
// Packets staged for B (receive mode) leave as no_session drops rekey_timeout later, possibly
// during the next pass, or go to B once it has a session: kMaxStaged either way. The control
// lcore's own packets (ARP requests, say) also leave through the worker.
constexpr uint64_t kControlSlack = 16;
std::string check_counters(const WorkerSnapshot& c, Mode mode, uint64_t packets) {
  const auto drops = [&c](DropReason r) { return c.drops[size_t(r)]; };
  uint64_t other_drops = 0;
  for (size_t i = 0; i < kDropReasonCount; ++i) other_drops += c.drops[i];
  bool ok = c.rx_packets == packets;
  switch (mode) {
    case Mode::kReceive: {
      const uint64_t no_session = drops(DropReason::kNoSession);
      ok &= no_session + kMaxStaged >= packets && no_session <= packets + kMaxStaged &&
            other_drops == no_session;
      break;
    }
    case Mode::kAclDrop:
      ok &= drops(DropReason::kAclDeny) == packets && other_drops == packets;
      break;
    case Mode::kForward:
      ok &= c.tx_packets >= packets && c.tx_packets <= packets + kMaxStaged + kControlSlack &&
            other_drops == 0;
      break;
  }
  if (ok) return {};
  std::string why = "rx " + std::to_string(c.rx_packets) + " forwarded " +
                    std::to_string(c.forwarded_packets) + " tx " + std::to_string(c.tx_packets);
  for (size_t i = 0; i < kDropReasonCount; ++i) {
    if (c.drops[i] != 0) {
      why += " " + std::string(drop_reason_name(DropReason(i))) + " " + std::to_string(c.drops[i]);
    }
  }
  return why;
}

// A pass with swaps counts only if all of them happened during it and left A and B in place.
std::string check_swaps(const SwapStats& s, uint32_t wanted) {
  if (s.apply_ms.size() != wanted) {
    return std::to_string(s.apply_ms.size()) + " of " + std::to_string(wanted) + " swaps";
  }
  return s.peers_kept ? std::string() : "A or B lost its slot in a swap";
}

struct Row {
  uint32_t size;
  Mode mode;
  PassResult pass;
  double bare;
  double pmd;
  std::string invalid;
};

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kReceive:
      return "receive";
    case Mode::kAclDrop:
      return "acl-drop";
    case Mode::kForward:
      return "forward";
  }
  return "?";
}

// The targets, as a share of the bare rate; 0 = none for this point.
double target_percent(Mode mode, uint32_t size) {
  if (mode == Mode::kReceive) return size == 64 ? 60 : (size == 1420 ? 80 : 0);
  if (mode == Mode::kForward) return size == 1420 ? 80 : 0;
  return 0;
}

void print_row(const Row& r) {
  const double pct = 100.0 * r.pass.median_rate / r.bare;
  const double worker_s = 1 / r.pass.median_rate - 1 / r.pmd;
  const double pct_without_pmd = 100.0 / (r.bare * worker_s);
  const double target = target_percent(r.mode, r.size);
  char verdict[32] = "-";
  if (target > 0) {
    std::snprintf(verdict, sizeof(verdict), "%s (>=%.0f%%)", pct >= target ? "met" : "MISSED",
                  target);
  }
  std::printf("%5u %-8s %7.3f %7.2f %8.3f %9.3f %6.1f%% %7.3f %8.1f%%  %s%s%s\n", r.size,
              mode_name(r.mode), r.pass.median_rate / 1e6, r.pass.median_rate * r.size * 8 / 1e9,
              r.pass.wall_rate / 1e6, r.bare / 1e6, pct, r.pmd / 1e6, pct_without_pmd, verdict,
              r.invalid.empty() ? "" : "  INVALID: ", r.invalid.c_str());
}

void print_swap_row(const Row& r) {
  const SwapStats& s = r.pass.swaps;
  const bool met = r.invalid.empty() && max_of(s.apply_ms) < 1000;
  std::printf("%5u %-8s %5zu %8.0f %8.0f %9.0f %9.0f %8.1f  %-8s  %s\n", r.size, mode_name(r.mode),
              s.apply_ms.size(), median_of(s.apply_ms), max_of(s.apply_ms), median_of(s.grace_us),
              max_of(s.grace_us), max_of(s.free_ms), r.invalid.empty() ? "exact" : "INVALID",
              met ? "met" : "MISSED");
}

int run(const Options& options) {
  Bench bench(options);
  bench.setup();
  std::vector<Row> rows;
  // The bare rate and net_pcap's own rate are taken right before each pass, not once per run:
  // the shared cores' speed drifts over a minute by more than the effects being measured.
  auto measure = [&](Mode mode, size_t i) {
    if (!options.only_mode.empty() && options.only_mode != mode_name(mode)) return;
    const BareRates bare = bench.bare(kSizes[i]);
    Row r{kSizes[i], mode, {}, mode == Mode::kForward ? bare.decrypt_encrypt : bare.decrypt, 0, {}};
    r.pass = bench.run(kSizes[i], &r.pmd);
    r.invalid = check_counters(r.pass.counters, mode, options.packets);
    if (bench.swapping() && r.invalid.empty()) r.invalid = check_swaps(r.pass.swaps, options.swaps);
    rows.push_back(r);
  };
  const double first_load_s = bench.last_load_seconds();
  bench.apply_policy(airlock::policy::Action::Drop);
  for (size_t i = 0; i < std::size(kSizes); ++i) measure(Mode::kAclDrop, i);
  bench.apply_policy(airlock::policy::Action::Forward);
  for (size_t i = 0; i < std::size(kSizes); ++i) measure(Mode::kReceive, i);
  bench.establish_b();
  for (size_t i = 0; i < std::size(kSizes); ++i) measure(Mode::kForward, i);
  bench.teardown();

  std::printf(
      "One worker lcore, net_pcap infinite_rx, first pass of %u distinct packets per point; "
      "rates from the median 32-packet burst; %s.\n"
      "bare = IPsec-MB %s on lcore 1 just before each pass (acl-drop, receive: decrypt; forward: "
      "decrypt+encrypt). "
      "Gbit/s counts inner bytes.\n",
      options.packets, options.huge ? "2 MiB hugepages" : "4 KiB pages (--no-huge)",
      std::string(BatchCrypto::create()->arch_name()).c_str());
  std::printf("%5s %-8s %7s %7s %8s %9s %7s %7s %9s  %s\n", "inner", "mode", "Mpps", "Gbit/s",
              "wallMpps", "bareMpps", "%bare", "pmdMpps", "%bare-pmd", "target");
  bool valid = true;
  for (const Row& r : rows) {
    print_row(r);
    valid &= r.invalid.empty();
  }
  if (bench.swapping()) {
    std::printf(
        "\nPolicy swaps per pass: %u peers / %u rules each, every %d ms, each replacing the %u "
        "other peers and changing one rule (the ACL is built anew); A and B stay. First load "
        "(every peer new, builder included): %.2f s.\n"
        "load = Hub::apply_policy; grace = publish until the worker was quiescent; free = the "
        "control_tick freeing the old generation. Target: loaded in under 1 s, zero packets "
        "lost.\n",
        options.swap_peers, options.swap_rules, options.swap_every_ms, options.swap_peers - 2,
        first_load_s);
    std::printf("%5s %-8s %5s %8s %8s %9s %9s %8s  %-8s  %s\n", "inner", "mode", "swaps", "loadMed",
                "loadMax", "graceMed", "graceMax", "freeMax", "counters", "target");
    std::printf("%5s %-8s %5s %8s %8s %9s %9s %8s\n", "", "", "", "ms", "ms", "us", "us", "ms");
    for (const Row& r : rows) print_swap_row(r);
  }
  return valid ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const auto options = parse_options(argc, argv);
  if (!options) {
    std::fprintf(stderr,
                 "usage: %s [--packets N (multiple of %u, >= 1024)] [--bare-seconds X] "
                 "[--pcap-dir DIR] [--only receive|acl-drop|forward] [--huge] "
                 "[--swap-every-ms N [--swaps K (>= 1)] [--swap-policy PEERS,RULES]]\n",
                 argv[0], kBurst);
    return 2;
  }
  if (sodium_init() < 0) return 1;
  // Policy swaps run with the heap airlock-dataplane sets up.
  if (std::string why; !airlock::dp::retain_heap_between_policy_builds(&why)) {
    std::fprintf(stderr, "%s\n", why.c_str());
    return 1;
  }
  const uint64_t mem_mb =
      (uint64_t{options->packets} + kPoolSlack) * kMbufFootprint / (1 << 20) + kOtherMemoryMb +
      (options->swap_every_ms >= 0 ? swap_memory_mb(options->swap_peers, options->swap_rules) : 0);
  const std::string mem = std::to_string(mem_mb);
  // A per-process prefix lets this run beside other DPDK processes.
  const std::string prefix = "--file-prefix=bench-dataplane-" + std::to_string(getpid());
  std::vector<const char*> eal = {argv[0], "--no-pci", "--no-shconf",           "--no-telemetry",
                                  "-l",    "0,1",      "--log-level=*:warning", prefix.c_str()};
  // With hugepages EAL grows its memory as the pools need it; without, it must be sized up front.
  if (!options->huge) {
    eal.push_back("--no-huge");
    eal.push_back("-m");
    eal.push_back(mem.c_str());
  }
  if (rte_eal_init(static_cast<int>(eal.size()), const_cast<char**>(eal.data())) < 0) {
    std::fprintf(stderr, "EAL init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  if (rte_lcore_count() < 2) {
    std::fprintf(stderr, "needs lcores 0 and 1\n");
    return 1;
  }
  // As airlock-dataplane sets it, which decides the classify code rte_acl picks.
  std::printf("DPDK vector code up to %u bits.\n", airlock::dp::use_avx512_where_available());
  const int rc = run(*options);
  rte_eal_cleanup();
  return rc;
}
