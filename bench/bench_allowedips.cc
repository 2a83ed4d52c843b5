// Cryptokey-routing lookup rate (AllowedIps over rte_lpm / rte_lpm6) with realistic tables:
// every peer owns one host address (/32, /128), one peer in 20 also routes a site prefix
// (/24, /48) and 16 peers route a wide one (/16, /32). Lookups come from a pre-generated random
// array: 70% peer hosts, 20% inside site prefixes, 5% inside wide ones, 5% misses. The worker
// calls the scalar lookup_v4 / lookup_v6 once per packet; the bulk v4 call is measured as well.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "bench/eal_benchmark.h"
#include "dataplane/allowedips.h"

namespace {

using airlock::dp::AllowedIps;
using airlock::dp::kNoPeer;
using airlock::dp::Prefix;

constexpr uint32_t kBurst = 32;
constexpr size_t kLookups = 1 << 16;
constexpr uint32_t kSitePeerEvery = 20;
constexpr uint32_t kWidePrefixes = 16;

using Addr6 = std::array<uint8_t, 16>;

Prefix v4_prefix(uint32_t host_order, uint8_t len) {
  Prefix prefix{4, {}, len};
  const uint32_t be = htonl(host_order);
  std::memcpy(prefix.addr.data(), &be, 4);
  return prefix;
}

Prefix v6_prefix(const Addr6& addr, uint8_t len) {
  return Prefix{6, addr, len};
}

// fd7a:115c:a1e0::<peer> (hosts), 2001:db8:<site>::/48 (sites), fd10:<n>::/32 (wide).
Addr6 v6_host(uint32_t peer) {
  Addr6 a{0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0};
  for (int i = 0; i < 4; ++i) a[12 + i] = static_cast<uint8_t>(peer >> (24 - 8 * i));
  return a;
}
Addr6 v6_site(uint32_t site) {
  return Addr6{0x20, 0x01, 0x0d, 0xb8, static_cast<uint8_t>(site >> 8), static_cast<uint8_t>(site)};
}
Addr6 v6_wide(uint32_t n) {
  return Addr6{0xfd, 0x10, 0x00, static_cast<uint8_t>(n)};
}

// 100.64.0.0/10 + peer (hosts), 10.<site>.0/24 (sites), 172.<16 + n>.0.0/16 (wide).
uint32_t v4_host(uint32_t peer) {
  return 0x64400000u + peer + 1;
}
uint32_t v4_site(uint32_t site) {
  return 0x0a000000u + (site << 8);
}
uint32_t v4_wide(uint32_t n) {
  return 0xac100000u + (n << 16);
}

enum class Target { kHost, kSite, kWide, kMiss };

Target pick_target(std::mt19937_64& rng) {
  const auto roll = std::uniform_int_distribution<int>(0, 99)(rng);
  if (roll < 70) return Target::kHost;
  if (roll < 90) return Target::kSite;
  if (roll < 95) return Target::kWide;
  return Target::kMiss;
}

std::unique_ptr<AllowedIps> create_table(uint32_t max_v4, uint32_t max_v6) {
  std::string error;
  std::optional<AllowedIps> table = AllowedIps::create(max_v4, max_v6, &error);
  if (!table) throw std::runtime_error(error);
  return std::make_unique<AllowedIps>(std::move(*table));
}

void add(AllowedIps& table, const Prefix& prefix, uint32_t slot) {
  std::string error;
  if (!table.add(prefix, slot, &error)) throw std::runtime_error(error);
}

// One table per family and peer count, with lookups and the slot each one must return.
struct Workload {
  std::unique_ptr<AllowedIps> table;
  std::vector<uint32_t> v4_be;
  std::vector<Addr6> v6;
  std::vector<uint32_t> expected;
};

Workload build_v4(uint32_t peers) {
  const uint32_t sites = peers / kSitePeerEvery;
  Workload w{create_table(peers + sites + kWidePrefixes, 0), {}, {}, {}};
  for (uint32_t p = 0; p < peers; ++p) add(*w.table, v4_prefix(v4_host(p), 32), p);
  for (uint32_t s = 0; s < sites; ++s) add(*w.table, v4_prefix(v4_site(s), 24), s);
  for (uint32_t n = 0; n < kWidePrefixes; ++n) add(*w.table, v4_prefix(v4_wide(n), 16), n);
  std::mt19937_64 rng(4);
  auto below = [&rng](uint32_t n) {
    return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng);
  };
  for (size_t i = 0; i < kLookups; ++i) {
    uint32_t addr = 0;
    uint32_t slot = kNoPeer;
    switch (pick_target(rng)) {
      case Target::kHost:
        slot = below(peers);
        addr = v4_host(slot);
        break;
      case Target::kSite:
        slot = below(sites);
        addr = v4_site(slot) + below(256);
        break;
      case Target::kWide:
        slot = below(kWidePrefixes);
        addr = v4_wide(slot) + below(1u << 16);
        break;
      case Target::kMiss:
        addr = 0xc6120000u + below(1u << 17);  // 198.18.0.0/15, routed by nobody
        break;
    }
    w.v4_be.push_back(htonl(addr));
    w.expected.push_back(slot);
  }
  return w;
}

Workload build_v6(uint32_t peers) {
  const uint32_t sites = peers / kSitePeerEvery;
  Workload w{create_table(0, peers + sites + kWidePrefixes), {}, {}, {}};
  for (uint32_t p = 0; p < peers; ++p) add(*w.table, v6_prefix(v6_host(p), 128), p);
  for (uint32_t s = 0; s < sites; ++s) add(*w.table, v6_prefix(v6_site(s), 48), s);
  for (uint32_t n = 0; n < kWidePrefixes; ++n) add(*w.table, v6_prefix(v6_wide(n), 32), n);
  std::mt19937_64 rng(6);
  auto below = [&rng](uint32_t n) {
    return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng);
  };
  auto randomize_from = [&rng](Addr6& a, size_t first_byte) {
    for (size_t b = first_byte; b < a.size(); ++b) a[b] = static_cast<uint8_t>(rng());
  };
  for (size_t i = 0; i < kLookups; ++i) {
    Addr6 addr{};
    uint32_t slot = kNoPeer;
    switch (pick_target(rng)) {
      case Target::kHost:
        slot = below(peers);
        addr = v6_host(slot);
        break;
      case Target::kSite:
        slot = below(sites);
        addr = v6_site(slot);
        randomize_from(addr, 6);
        break;
      case Target::kWide:
        slot = below(kWidePrefixes);
        addr = v6_wide(slot);
        randomize_from(addr, 4);
        break;
      case Target::kMiss:
        addr = Addr6{0x20, 0x01, 0x0d, 0xb9};  // 2001:db9::/32, routed by nobody
        randomize_from(addr, 4);
        break;
    }
    w.v6.push_back(addr);
    w.expected.push_back(slot);
  }
  return w;
}

// Tables are built once per size and kept for the whole run: the library calls a benchmark
// function several times while it settles on an iteration count. Cleared before EAL cleanup.
std::map<std::pair<int, uint32_t>, Workload> g_workloads;

const Workload& workload(int family, uint32_t peers) {
  auto it = g_workloads.find({family, peers});
  if (it == g_workloads.end()) {
    it = g_workloads
             .emplace(std::pair{family, peers}, family == 4 ? build_v4(peers) : build_v6(peers))
             .first;
  }
  return it->second;
}

// The lookups must return the owners they were generated for, or the rate is meaningless.
bool verify_v4(const Workload& w) {
  for (size_t i = 0; i < kLookups; ++i) {
    if (w.table->lookup_v4(w.v4_be[i]) != w.expected[i]) return false;
  }
  return true;
}

bool verify_v6(const Workload& w) {
  for (size_t i = 0; i < kLookups; ++i) {
    if (w.table->lookup_v6(w.v6[i].data()) != w.expected[i]) return false;
  }
  return true;
}

void set_counters(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * kBurst);
  const auto peers = static_cast<uint32_t>(state.range(0));
  state.counters["prefixes"] = peers + peers / kSitePeerEvery + kWidePrefixes;
}

void BM_LookupV4(benchmark::State& state) {
  const Workload& w = workload(4, static_cast<uint32_t>(state.range(0)));
  if (!verify_v4(w)) {
    state.SkipWithError("lookup returned the wrong peer");
    return;
  }
  size_t at = 0;
  for (auto _ : state) {
    for (uint32_t i = 0; i < kBurst; ++i) {
      benchmark::DoNotOptimize(w.table->lookup_v4(w.v4_be[at + i]));
    }
    at = (at + kBurst) % kLookups;
  }
  set_counters(state);
}
BENCHMARK(BM_LookupV4)->Arg(1000)->Arg(10000)->Arg(100000);

void BM_LookupV4Bulk(benchmark::State& state) {
  const Workload& w = workload(4, static_cast<uint32_t>(state.range(0)));
  if (!verify_v4(w)) {
    state.SkipWithError("lookup returned the wrong peer");
    return;
  }
  std::array<uint32_t, kBurst> slots;
  size_t at = 0;
  for (auto _ : state) {
    w.table->lookup_v4_bulk(&w.v4_be[at], slots.data(), kBurst);
    benchmark::DoNotOptimize(slots);
    at = (at + kBurst) % kLookups;
  }
  set_counters(state);
}
BENCHMARK(BM_LookupV4Bulk)->Arg(1000)->Arg(10000)->Arg(100000);

void BM_LookupV6(benchmark::State& state) {
  const Workload& w = workload(6, static_cast<uint32_t>(state.range(0)));
  if (!verify_v6(w)) {
    state.SkipWithError("lookup returned the wrong peer");
    return;
  }
  size_t at = 0;
  for (auto _ : state) {
    for (uint32_t i = 0; i < kBurst; ++i) {
      benchmark::DoNotOptimize(w.table->lookup_v6(w.v6[at + i].data()));
    }
    at = (at + kBurst) % kLookups;
  }
  set_counters(state);
}
BENCHMARK(BM_LookupV6)->Arg(1000)->Arg(10000);

}  // namespace

int main(int argc, char** argv) {
  // The memory covers every table built: 64 MiB of tbl24 per IPv4 table plus the worst-case
  // tbl8 groups (1 KiB per IPv4 rule, 13 KiB per IPv6 rule).
  return airlock::bench::run_on_eal(argc, argv, "allowedips", "1536", [] { g_workloads.clear(); });
}
