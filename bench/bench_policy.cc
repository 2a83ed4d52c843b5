// What a policy load costs, step by step, at 1k peers / 10k rules and 10k peers / 100k rules
// (bench/synthetic_policy.h describes the shape):
//   Build      the control plane serialises the FlatBuffers policy (PolicyBuilder, unchecked);
//   Verify     load_policy: flatbuffers verifier + semantic checks, which both the control
//              plane's finish() and the data plane's apply_policy run;
//   AllowedIps / AclCompile  the two tables apply_policy builds aside, alone;
//   Apply      a policy load in the steps airlock-dataplane takes: begin_policy (verify, peer
//              slots) and finish_policy (peer updates, publish) on the control lcore, counted
//              as control_ms, and the tables compiled on its policy thread in between, counted
//              as compile_ms. new_peers=0 keeps the peers and changes one rule, so the ACL
//              is built anew; 1 swaps in 10k peers with other keys but the same identities
//              (each new peer costs an X25519 for its static-static secret, made with the
//              tables, the removed ones are reclaimed, and the running ACL contexts are reused);
//   Swap       after the publish: the RCU grace period until a worker-like reader on lcore 1
//              has passed a quiescent state, then the control_tick that frees the old tables.
// The reader classifies a burst of 32 keys against the running policy per loop and reports
// quiescence after each, as Worker::poll_once does; it runs only during Apply and Swap.
// Counters: peers/s and rules/s over the step's time; heap_MiB is EAL memory held by the result
// (a running policy lives twice during a swap, old and new). Apply and Swap report manual time,
// the wall clock of the step alone; their CPU column covers whole iterations. On shared cores
// the CPU time of the other steps is the better guide to an idle machine.
//
// The heap is set up as airlock-dataplane sets it (dataplane/heap.h: a build's memory is kept
// for the next one); --default-heap leaves glibc's defaults, to see what that saves.
//
// Usage (root): bench_policy [--default-heap] [--benchmark_filter=...] [--benchmark_min_time=...]
#include <benchmark/benchmark.h>
#include <rte_byteorder.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ip.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bench/synthetic_policy.h"
#include "dataplane/acl.h"
#include "dataplane/allowedips.h"
#include "dataplane/heap.h"
#include "dataplane/hub.h"
#include "dataplane/simd.h"
#include "policy/builder.h"
#include "policy/policy.h"

namespace {

using namespace airlock::dp;
namespace pol = airlock::policy;
namespace syn = airlock::bench;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kMaxPeers = 10000;
constexpr uint32_t kMaxRules = 100000;
constexpr uint32_t kReaderBurst = 32;

std::unique_ptr<Hub> g_hub;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double heap_mib() {
  rte_malloc_socket_stats s{};
  rte_malloc_get_socket_stats(static_cast<int>(rte_socket_id()), &s);
  return static_cast<double>(s.heap_allocsz_bytes) / (1 << 20);
}

pol::PolicyBuilder builder_of(const std::vector<pol::PeerSpec>& peers,
                              const std::vector<pol::RuleSpec>& rules, uint64_t version) {
  pol::PolicyBuilder b;
  b.version(version);
  for (const auto& p : peers) b.add_peer(p);
  for (const auto& r : rules) b.add_rule(r);
  return b;
}

Prefix dp_prefix(const pol::PrefixSpec& spec) {
  const auto p = pol::prefix_of(spec);
  return Prefix{uint8_t(p->family == pol::Family::V6 ? 6 : 4), p->addr, p->len};
}

// One policy size, with everything each step starts from prepared outside the timed region.
struct Workload {
  std::vector<pol::PeerSpec> peers;
  std::vector<pol::RuleSpec> rules;
  std::vector<uint8_t> bytes;          // peer key set 0
  std::vector<uint8_t> changed_bytes;  // key set 0, one rule's port changed
  std::vector<uint8_t> other_bytes;    // key set 1: the same shape with disjoint peers
  std::vector<std::pair<Prefix, uint32_t>> allowed;  // with the peer's slot (= its index)
  std::vector<AclIdentity> identities;
  std::vector<AclRule> acl_rules;
};

const Workload& workload(uint32_t peers, uint32_t rules) {
  static std::map<std::pair<uint32_t, uint32_t>, Workload> cache;
  auto [it, inserted] = cache.try_emplace({peers, rules});
  Workload& w = it->second;
  if (!inserted) return w;
  w.peers = syn::synthetic_peers(peers, 0);
  w.rules = syn::synthetic_rules(rules, peers);
  std::string error;
  auto bytes = builder_of(w.peers, w.rules, 1).finish(&error);
  std::vector<pol::RuleSpec> changed_rules = w.rules;
  changed_rules[rules / 2].port_low = changed_rules[rules / 2].port_high = 9999;
  auto changed = builder_of(w.peers, changed_rules, 1).finish(&error);
  auto other = builder_of(syn::synthetic_peers(peers, 1), w.rules, 1).finish(&error);
  if (!bytes || !changed || !other) throw std::runtime_error("synthetic policy: " + error);
  w.bytes = std::move(*bytes);
  w.changed_bytes = std::move(*changed);
  w.other_bytes = std::move(*other);
  for (uint32_t i = 0; i < peers; ++i) {
    const pol::PeerSpec& p = w.peers[i];
    for (const auto& ip : p.allowed_ips) w.allowed.emplace_back(dp_prefix(ip), i);
    AclIdentity id;
    id.peer_slot = i;
    id.user = p.user;
    id.device = p.device;
    id.public_key_b64 = pol::encode_key_base64(std::get<pol::Key>(p.public_key));
    id.tags = p.tags;
    id.groups = p.groups;
    w.identities.push_back(std::move(id));
  }
  for (const pol::RuleSpec& r : w.rules) {
    AclRule rule;
    rule.name = r.name;
    rule.sources = r.sources;
    for (const auto& d : r.destinations) rule.destinations.push_back(dp_prefix(d));
    rule.protocol = r.protocol;
    rule.port_low = r.port_low;
    rule.port_high = r.port_high;
    rule.action = static_cast<AclAction>(r.action);
    w.acl_rules.push_back(std::move(rule));
  }
  return w;
}

void set_rates(benchmark::State& state, uint32_t peers, uint32_t rules) {
  state.counters["peers/s"] =
      benchmark::Counter(peers, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["rules/s"] =
      benchmark::Counter(rules, benchmark::Counter::kIsIterationInvariantRate);
}

// A stand-in for a worker on lcore 1: reads the running policy once per loop, as a worker does
// once per burst, then reports a quiescent state.
class Reader {
 public:
  Reader() {
    for (uint32_t i = 0; i < kReaderBurst; ++i) {
      keys_[i].proto = 6;
      keys_[i].dst = rte_cpu_to_be_32(RTE_IPV4(172, 16, 0, static_cast<uint8_t>(i)));
      keys_[i].dport = rte_cpu_to_be_16(443);
      ptrs_[i] = &keys_[i];
    }
    const unsigned lcore = rte_get_next_lcore(rte_get_main_lcore(), 1, 0);
    if (rte_eal_remote_launch(&Reader::main, this, lcore) != 0) {
      throw std::runtime_error("cannot launch the reader on lcore " + std::to_string(lcore));
    }
    lcore_ = lcore;
    while (!online_.load()) rte_pause();
  }
  ~Reader() {
    stop_.store(true);
    rte_eal_wait_lcore(lcore_);
  }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

 private:
  static int main(void* arg) {
    auto* self = static_cast<Reader*>(arg);
    rte_rcu_qsbr* rcu = g_hub->rcu();
    if (rte_rcu_qsbr_thread_register(rcu, 0) != 0) {
      std::fprintf(stderr, "reader: RCU registration failed\n");
      std::abort();
    }
    rte_rcu_qsbr_thread_online(rcu, 0);
    self->online_.store(true);
    std::array<uint32_t, kReaderBurst> results{};
    uint32_t src = 0;
    while (!self->stop_.load(std::memory_order_relaxed)) {
      if (const PolicySnapshot* p = g_hub->policy_acquire()) {
        src = (src + 1) % kMaxPeers;
        const uint32_t slot = p->allowed_ips.lookup_v4(
            rte_cpu_to_be_32(RTE_IPV4(10, 64 + (src >> 16), (src >> 8) & 0xff, src & 0xff)));
        for (AclKeyV4& k : self->keys_) k.klass = rte_cpu_to_be_32(p->acl.class_of(slot));
        p->acl.classify_v4(self->ptrs_.data(), results.data(), kReaderBurst);
        benchmark::DoNotOptimize(results);
      }
      rte_rcu_qsbr_quiescent(rcu, 0);
    }
    rte_rcu_qsbr_thread_offline(rcu, 0);
    rte_rcu_qsbr_thread_unregister(rcu, 0);
    return 0;
  }

  std::array<AclKeyV4, kReaderBurst> keys_{};
  std::array<const AclKeyV4*, kReaderBurst> ptrs_{};
  std::atomic<bool> stop_{false};
  std::atomic<bool> online_{false};
  unsigned lcore_ = 0;
};

// Waits for the reader's grace period and lets the control lcore free what the last swap
// retired. Returns {grace seconds, control_tick seconds}.
std::pair<double, double> finish_swap() {
  const Clock::time_point start = Clock::now();
  const uint64_t token = rte_rcu_qsbr_start(g_hub->rcu());
  while (rte_rcu_qsbr_check(g_hub->rcu(), token, false) != 1) rte_pause();
  const double grace = seconds_since(start);
  const Clock::time_point tick = Clock::now();
  g_hub->control_tick();
  return {grace, seconds_since(tick)};
}

void apply_or_fail(benchmark::State& state, const std::vector<uint8_t>& bytes) {
  std::string error;
  if (!g_hub->apply_policy(bytes, &error)) state.SkipWithError(("apply_policy: " + error).c_str());
}

void BM_Build(benchmark::State& state) {
  const auto peers = static_cast<uint32_t>(state.range(0));
  const auto rules = static_cast<uint32_t>(state.range(1));
  const Workload& w = workload(peers, rules);
  std::string error;
  for (auto _ : state) {
    auto bytes = builder_of(w.peers, w.rules, 1).finish_unchecked(&error);
    if (!bytes) state.SkipWithError(error.c_str());
    benchmark::DoNotOptimize(bytes);
  }
  set_rates(state, peers, rules);
  state.counters["policy_MiB"] = static_cast<double>(w.bytes.size()) / (1 << 20);
}

void BM_Verify(benchmark::State& state) {
  const Workload& w =
      workload(static_cast<uint32_t>(state.range(0)), static_cast<uint32_t>(state.range(1)));
  std::string error;
  for (auto _ : state) {
    auto loaded = pol::load_policy(w.bytes, &error);
    if (!loaded) state.SkipWithError(error.c_str());
    benchmark::DoNotOptimize(loaded);
  }
  set_rates(state, static_cast<uint32_t>(state.range(0)), static_cast<uint32_t>(state.range(1)));
}

// Sized as PolicyBuild::compile sizes them: by the policy's prefixes of each family.
void BM_AllowedIps(benchmark::State& state) {
  const auto peers = static_cast<uint32_t>(state.range(0));
  const Workload& w = workload(peers, static_cast<uint32_t>(state.range(1)));
  uint32_t v4 = 0, v6 = 0;
  for (const auto& entry : w.allowed) ++(entry.first.family == 4 ? v4 : v6);
  const double heap_before = heap_mib();
  double held = 0;
  std::string error;
  for (auto _ : state) {
    auto table = AllowedIps::create(v4, v6, &error);
    if (!table) {
      state.SkipWithError(error.c_str());
      break;
    }
    for (const auto& [prefix, slot] : w.allowed) {
      if (!table->add(prefix, slot, &error)) state.SkipWithError(error.c_str());
    }
    held = heap_mib() - heap_before;
  }
  state.counters["peers/s"] =
      benchmark::Counter(peers, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["heap_MiB"] = held;
}

void BM_AclCompile(benchmark::State& state) {
  const auto peers = static_cast<uint32_t>(state.range(0));
  const auto rules = static_cast<uint32_t>(state.range(1));
  const Workload& w = workload(peers, rules);
  const double heap_before = heap_mib();
  double held = 0;
  uint32_t classes = 0;
  std::string error;
  for (auto _ : state) {
    auto table = AclTable::compile(w.identities, w.acl_rules, &error);
    if (!table) {
      state.SkipWithError(error.c_str());
      break;
    }
    held = heap_mib() - heap_before;
    classes = table->class_count();
  }
  state.counters["rules/s"] =
      benchmark::Counter(rules, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["classes"] = classes;
  state.counters["heap_MiB"] = held;
}

// Applies in the three steps airlock-dataplane takes. Returns {seconds on the control lcore
// (begin_policy + finish_policy), seconds compiling (on the data plane's policy thread)}.
std::pair<double, double> apply_in_steps(benchmark::State& state,
                                         const std::vector<uint8_t>& bytes) {
  std::string error;
  Clock::time_point start = Clock::now();
  std::unique_ptr<PolicyBuild> build = g_hub->begin_policy(bytes, &error);
  if (!build) {
    state.SkipWithError(("begin_policy: " + error).c_str());
    return {0, 0};
  }
  const double begin = seconds_since(start);
  start = Clock::now();
  build->compile();
  const double compile = seconds_since(start);
  start = Clock::now();
  if (!g_hub->finish_policy(std::move(build), &error)) {
    state.SkipWithError(("finish_policy: " + error).c_str());
  }
  return {begin + seconds_since(start), compile};
}

// What Apply and Swap load on odd iterations, alternating with w.bytes: one rule changed (the
// ACL is built anew), or all peers replaced by others with the same identities (the running
// ACL contexts are reused).
const std::vector<uint8_t>& next_policy(const Workload& w, bool new_peers, bool odd) {
  if (!odd) return w.bytes;
  return new_peers ? w.other_bytes : w.changed_bytes;
}

// Args: peers, rules, new_peers. Time = the whole apply; control_ms is the part that holds the
// control lcore, compile_ms the part on the policy thread.
void BM_Apply(benchmark::State& state) {
  const auto peers = static_cast<uint32_t>(state.range(0));
  const auto rules = static_cast<uint32_t>(state.range(1));
  const bool new_peers = state.range(2) != 0;
  const Workload& w = workload(peers, rules);
  Reader reader;
  apply_or_fail(state, w.bytes);
  finish_swap();
  const double heap_before = heap_mib();
  double held = 0, control = 0, compile = 0;
  bool odd = false;
  for (auto _ : state) {
    odd = !odd;
    const auto [on_control, compiling] = apply_in_steps(state, next_policy(w, new_peers, odd));
    state.SetIterationTime(on_control + compiling);
    control += on_control;
    compile += compiling;
    held = heap_mib() - heap_before;
    finish_swap();
  }
  set_rates(state, peers, rules);
  const auto n = static_cast<double>(std::max<benchmark::IterationCount>(1, state.iterations()));
  state.counters["heap_MiB"] = held;
  state.counters["control_ms"] = control / n * 1e3;
  state.counters["compile_ms"] = compile / n * 1e3;
}

// Args: peers, rules, new_peers. Time = grace period + the control_tick that frees the old
// tables; both are also given alone (grace_us, free_ms).
void BM_Swap(benchmark::State& state) {
  const auto peers = static_cast<uint32_t>(state.range(0));
  const auto rules = static_cast<uint32_t>(state.range(1));
  const bool new_peers = state.range(2) != 0;
  const Workload& w = workload(peers, rules);
  Reader reader;
  apply_or_fail(state, w.bytes);
  finish_swap();
  double grace = 0, freeing = 0;
  bool odd = false;
  for (auto _ : state) {
    odd = !odd;
    apply_or_fail(state, next_policy(w, new_peers, odd));
    const auto [g, f] = finish_swap();
    grace += g;
    freeing += f;
    state.SetIterationTime(g + f);
  }
  const auto n = static_cast<double>(std::max<benchmark::IterationCount>(1, state.iterations()));
  state.counters["grace_us"] = grace / n * 1e6;
  state.counters["free_ms"] = freeing / n * 1e3;
}

void sizes(benchmark::internal::Benchmark* b) {
  b->Args({1000, 10000})->Args({kMaxPeers, kMaxRules})->Unit(benchmark::kMillisecond);
}
void sizes_and_peer_change(benchmark::internal::Benchmark* b) {
  b->ArgNames({"peers", "rules", "new_peers"});
  for (const int64_t change : {0, 1}) {
    b->Args({1000, 10000, change})->Args({kMaxPeers, kMaxRules, change});
  }
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_Build)->Apply(sizes)->ArgNames({"peers", "rules"});
BENCHMARK(BM_Verify)->Apply(sizes)->ArgNames({"peers", "rules"});
BENCHMARK(BM_AllowedIps)->Apply(sizes)->ArgNames({"peers", "rules"});
BENCHMARK(BM_AclCompile)->Apply(sizes)->ArgNames({"peers", "rules"});
BENCHMARK(BM_Apply)->Apply(sizes_and_peer_change);
// A fixed count: each swap needs an untimed apply of the next policy first (seconds at 10k/100k),
// which a minimum time over the short timed part would repeat hundreds of times.
BENCHMARK(BM_Swap)->Apply(sizes_and_peer_change)->Iterations(5);

}  // namespace

int main(int argc, char** argv) {
  bool default_heap = false;
  if (argc > 1 && std::string_view(argv[1]) == "--default-heap") {
    default_heap = true;
    std::copy(argv + 2, argv + argc + 1, argv + 1);
    --argc;
  }
  if (std::string why; !default_heap && !retain_heap_between_policy_builds(&why)) {
    std::fprintf(stderr, "%s\n", why.c_str());
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (sodium_init() < 0) return 1;
  // Two generations of the largest policy (LPM, LPM6, ACL) live during a swap, besides the
  // tables AllowedIps and AclCompile build alone. A per-process prefix lets this run beside
  // other DPDK processes. The hub has no port, so its counters export fails every tick: ethdev
  // would log that each time.
  const std::string prefix = "--file-prefix=bench-policy-" + std::to_string(getpid());
  const char* eal[] = {argv[0],
                       "--no-huge",
                       "-m",
                       "6144",
                       "--no-pci",
                       "--no-shconf",
                       "--no-telemetry",
                       "-l",
                       "0,1",
                       "--log-level=*:warning",
                       "--log-level=lib.ethdev:critical",
                       prefix.c_str()};
  if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char**>(eal)) < 0) {
    std::fprintf(stderr, "EAL init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  if (rte_lcore_count() < 2) {
    std::fprintf(stderr, "needs lcores 0 and 1\n");
    return 1;
  }
  // As airlock-dataplane sets it, which decides the classify code rte_acl picks.
  benchmark::AddCustomContext("dpdk_simd_bits", std::to_string(use_avx512_where_available()));
  Config cfg;
  cfg.instance = "airlock-bench-policy-" + std::to_string(getpid());
  // Room for both key sets while the removed peers wait for reclamation.
  cfg.max_peers = 2 * kMaxPeers + 64;
  cfg.max_rules = kMaxRules;
  crypto::Key key;
  randombytes_buf(key.data(), key.size());
  std::string error;
  g_hub = Hub::create(cfg, key, 1, &error);
  if (!g_hub) {
    std::fprintf(stderr, "Hub::create: %s\n", error.c_str());
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_hub.reset();
  rte_eal_cleanup();
  return 0;
}
