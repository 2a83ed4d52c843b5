// What the gateway pays per request to learn who is asking, at 100, 1k and 10k peers (the
// peers of bench/synthetic_policy.h, one /32 each):
//   IdentityOfAddress / IdentityOfKey: the policy Document's scan, which parses every peer's
//     prefixes or key on each call (what a request paid before PeerDirectory), against the
//     PeerDirectory built once per policy;
//   PeerKeyOfSlot: the data plane's counters region read whole (StatsReader::snapshot, which
//     the slot-to-key step used) against the one slot it needs (StatsReader::peer), in a region
//     sized for the peers and 1024 rules.
// Lookups cycle over every peer; items/s counts lookups.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/synthetic_policy.h"
#include "dataplane/stats.h"
#include "policy/document.h"
#include "policy/peer_directory.h"
#include "policy/policy.h"

namespace {

namespace pol = airlock::policy;
namespace dp = airlock::dp;

struct Peers {
  pol::Document document;
  std::unique_ptr<pol::PeerDirectory> directory;
  std::vector<pol::IpPrefix> hosts;
  std::vector<pol::Key> keys;
};

const Peers& peers(uint32_t count) {
  static std::map<uint32_t, Peers> cache;
  Peers& p = cache[count];
  if (p.directory) return p;
  p.document.peers = airlock::bench::synthetic_peers(count, 0);
  for (const pol::PeerSpec& peer : p.document.peers) {
    p.hosts.push_back(*pol::prefix_of(peer.allowed_ips.front()));
    p.keys.push_back(std::get<pol::Key>(peer.public_key));
  }
  p.directory = std::make_unique<pol::PeerDirectory>(p.document);
  return p;
}

template <typename Lookup>
void run_lookups(benchmark::State& state, size_t count, Lookup lookup) {
  size_t i = 0;
  for (auto _ : state) {
    if (!lookup(i)) state.SkipWithError("a peer was not found");
    i = (i + 1) % count;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_IdentityOfAddress_Scan(benchmark::State& state) {
  const Peers& p = peers(static_cast<uint32_t>(state.range(0)));
  run_lookups(state, p.hosts.size(),
              [&](size_t i) { return p.document.identity_of_address(p.hosts[i]).has_value(); });
}

void BM_IdentityOfAddress_Directory(benchmark::State& state) {
  const Peers& p = peers(static_cast<uint32_t>(state.range(0)));
  run_lookups(state, p.hosts.size(),
              [&](size_t i) { return p.directory->by_address(p.hosts[i]) != nullptr; });
}

void BM_IdentityOfKey_Scan(benchmark::State& state) {
  const Peers& p = peers(static_cast<uint32_t>(state.range(0)));
  run_lookups(state, p.keys.size(),
              [&](size_t i) { return p.document.identity_of_key(p.keys[i]).has_value(); });
}

void BM_IdentityOfKey_Directory(benchmark::State& state) {
  const Peers& p = peers(static_cast<uint32_t>(state.range(0)));
  run_lookups(state, p.keys.size(),
              [&](size_t i) { return p.directory->by_key(p.keys[i]) != nullptr; });
}

// A counters region with `count` active peer slots.
struct Region {
  std::optional<dp::StatsRegion> region;
  std::optional<dp::StatsReader> reader;
};

Region& region(uint32_t count) {
  static std::map<uint32_t, Region> cache;
  Region& r = cache[count];
  if (r.reader) return r;
  const std::string name =
      "airlock-bench-identity-" + std::to_string(getpid()) + "-" + std::to_string(count);
  std::string error;
  r.region = dp::StatsRegion::create(name, 1, count, 1024, &error);
  if (!r.region) throw std::runtime_error(error);
  for (uint32_t slot = 0; slot < count; ++slot) {
    dp::PeerRecord record;
    record.public_key = airlock::bench::synthetic_key(0, slot);
    r.region->publish_peer(slot, record);
  }
  r.reader = dp::StatsReader::open(name, &error);
  if (!r.reader) throw std::runtime_error(error);
  return r;
}

void BM_PeerKeyOfSlot_Snapshot(benchmark::State& state) {
  const auto count = static_cast<uint32_t>(state.range(0));
  const dp::StatsReader& reader = *region(count).reader;
  run_lookups(state, count, [&](size_t slot) {
    for (const dp::PeerSnapshot& peer : reader.snapshot().peers) {
      if (peer.slot == slot) return true;
    }
    return false;
  });
}

void BM_PeerKeyOfSlot_OneSlot(benchmark::State& state) {
  const auto count = static_cast<uint32_t>(state.range(0));
  const dp::StatsReader& reader = *region(count).reader;
  run_lookups(state, count,
              [&](size_t slot) { return reader.peer(static_cast<uint32_t>(slot)).has_value(); });
}

void sizes(benchmark::internal::Benchmark* b) {
  b->Arg(100)->Arg(1000)->Arg(10000);
}

BENCHMARK(BM_IdentityOfAddress_Scan)->Apply(sizes);
BENCHMARK(BM_IdentityOfAddress_Directory)->Apply(sizes);
BENCHMARK(BM_IdentityOfKey_Scan)->Apply(sizes);
BENCHMARK(BM_IdentityOfKey_Directory)->Apply(sizes);
BENCHMARK(BM_PeerKeyOfSlot_Snapshot)->Apply(sizes);
BENCHMARK(BM_PeerKeyOfSlot_OneSlot)->Apply(sizes);

}  // namespace

BENCHMARK_MAIN();
