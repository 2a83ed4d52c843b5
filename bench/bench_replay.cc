// ReplayWindow::check_and_set rate, the per-packet step after decryption: counters in order
// (the common case) and a reordered stream with duplicates, as multipath or a retransmitting
// middlebox produces it. One window, one thread, as one worker owns a keypair.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "dataplane/replay.h"

namespace {

using airlock::dp::ReplayWindow;

constexpr size_t kBatch = 4096;

void BM_InOrder(benchmark::State& state) {
  ReplayWindow window;
  uint64_t counter = 0;
  int64_t accepted = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < kBatch; ++i) accepted += window.check_and_set(counter++);
  }
  if (accepted != state.iterations() * static_cast<int64_t>(kBatch)) {
    state.SkipWithError("an in-order counter was rejected");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBatch));
}
BENCHMARK(BM_InOrder);

// Offsets of one batch from its base counter: 0..kBatch-1 shuffled within blocks of
// `reorder_span`, then a `duplicate_percent` share of them replaced by a repeat of a counter
// seen at most 64 packets earlier. Every batch starts kBatch above the previous one, so the
// pattern can be replayed without wrapping the window.
std::vector<uint64_t> reordered_offsets(size_t reorder_span, int duplicate_percent) {
  std::mt19937_64 rng(42);
  std::vector<uint64_t> offsets(kBatch);
  for (size_t i = 0; i < kBatch; ++i) offsets[i] = i;
  for (size_t block = 0; block < kBatch; block += reorder_span) {
    std::shuffle(offsets.begin() + static_cast<ptrdiff_t>(block),
                 offsets.begin() + static_cast<ptrdiff_t>(std::min(block + reorder_span, kBatch)),
                 rng);
  }
  std::uniform_int_distribution<int> percent(0, 99);
  std::uniform_int_distribution<size_t> back(1, 64);
  for (size_t i = 64; i < kBatch; ++i) {
    if (percent(rng) < duplicate_percent) offsets[i] = offsets[i - back(rng)];
  }
  return offsets;
}

// Args: reorder span (packets), duplicates (percent).
void BM_ReorderedWithDuplicates(benchmark::State& state) {
  const std::vector<uint64_t> offsets =
      reordered_offsets(static_cast<size_t>(state.range(0)), static_cast<int>(state.range(1)));
  ReplayWindow window;
  uint64_t base = 0;
  int64_t accepted = 0;
  for (auto _ : state) {
    for (uint64_t offset : offsets) accepted += window.check_and_set(base + offset);
    base += kBatch;
  }
  const int64_t items = state.iterations() * static_cast<int64_t>(kBatch);
  state.SetItemsProcessed(items);
  state.counters["accepted_share"] = static_cast<double>(accepted) / static_cast<double>(items);
}
BENCHMARK(BM_ReorderedWithDuplicates)->Args({32, 0})->Args({32, 10})->Args({1024, 10});

}  // namespace

BENCHMARK_MAIN();
