// Replay window (wireguard.md §1.8): the kinds of cases of the kernel's counter self-test
// (in order, reordered, duplicates, too old, window edge, message limit), written from the
// algorithm, the wireguard-go observation of §2.3, and a randomized comparison with a naive
// model (accept iff below the limit, unseen, and at most kWindowSize below the highest).
#include "dataplane/replay.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

namespace airlock::dp {
namespace {

constexpr uint64_t kW = ReplayWindow::kWindowSize;
constexpr uint64_t kLimit = kRejectAfterMessages;

struct Step {
  uint64_t counter;
  bool accepted;
};

void run(ReplayWindow& window, std::initializer_list<Step> steps) {
  size_t i = 0;
  for (const Step& step : steps) {
    EXPECT_EQ(window.check_and_set(step.counter), step.accepted)
        << "step " << i << ", counter " << step.counter;
    ++i;
  }
}

TEST(ReplayWindow, GeometryMatchesKernel) {
  EXPECT_EQ(kW, 8128u);
  EXPECT_EQ(kLimit, ~0ULL - 8192) << "2^64 - 2^13 - 1";
}

TEST(ReplayWindow, InOrderReorderedAndDuplicates) {
  ReplayWindow window;
  run(window, {
                  {0, true},
                  {1, true},
                  {1, false},  // duplicate
                  {9, true},
                  {8, true},
                  {7, true},  // reordered within the window
                  {7, false},
                  {0, false},
                  {9, false},
                  {2, true},
                  {3, true},
                  {10, true},
              });
}

TEST(ReplayWindow, WindowEdgeAfterSmallJump) {
  ReplayWindow window;
  run(window, {
                  {0, true},
                  {kW + 1, true},  // highest = 8129
                  {kW, true},      // 1 below
                  {kW, false},
                  {1, true},        // exactly kW below the highest: still inside
                  {0, false},       // seen earlier, and now outside the window
                  {kW + 17, true},  // highest = 8145
                  {16, false},      // 8129 below
                  {17, true},       // exactly kW below
                  {kW + 17, false},
              });
}

TEST(ReplayWindow, LargeJumpClearsTheWholeRing) {
  ReplayWindow window;
  for (uint64_t c = 0; c < 200; ++c) ASSERT_TRUE(window.check_and_set(c));
  const uint64_t high = 4 * (kW + 1);
  run(window, {
                  {high, true},
                  {high - kW, true},       // edge, never seen
                  {high - kW - 1, false},  // one beyond the edge
                  {150, false},
                  {high - kW, false},
                  {high - 1, true},
                  {high - 64, true},  // same ring word as a cleared old counter
                  {high + 64 * 128, true},
                  {high, false},  // now too old
              });
}

// Sliding one word at a time must clear exactly the word left behind: the counter exactly kW
// below the highest keeps its bit, the one just below it is refused.
TEST(ReplayWindow, WordBoundarySlides) {
  ReplayWindow window;
  for (uint64_t c = 0; c <= 3 * kW; c += ReplayWindow::kWordBits) {
    ASSERT_TRUE(window.check_and_set(c)) << c;
    ASSERT_FALSE(window.check_and_set(c)) << c;
    if (c <= kW) continue;
    EXPECT_FALSE(window.check_and_set(c - kW - 1)) << "too old, " << c;
    EXPECT_FALSE(window.check_and_set(c - kW)) << "seen at the edge, " << c;
    EXPECT_TRUE(window.check_and_set(c - kW + 1)) << "unseen inside, " << c;
  }
}

TEST(ReplayWindow, FullWindowAscendingThenDescending) {
  ReplayWindow window;
  for (uint64_t c = 1; c <= kW; ++c) ASSERT_TRUE(window.check_and_set(c)) << c;
  EXPECT_TRUE(window.check_and_set(0)) << "0 is exactly kW below kW";
  for (uint64_t c = 0; c <= kW; ++c) ASSERT_FALSE(window.check_and_set(c)) << c;

  window.reset();
  for (uint64_t c = kW + 1; c >= 2; --c) ASSERT_TRUE(window.check_and_set(c)) << c;
  EXPECT_TRUE(window.check_and_set(1));
  EXPECT_FALSE(window.check_and_set(0)) << "kW + 1 below the highest";
}

TEST(ReplayWindow, LimitsAtRejectAfterMessages) {
  ReplayWindow window;
  run(window, {
                  {kLimit, false},
                  {kLimit + 1, false},
                  {~0ULL, false},
                  {kLimit - 1, true},
                  {kLimit, false},
                  {kLimit - 1, false},
                  {kLimit - 2, true},
                  {kLimit - 1 - kW, true},
                  {kLimit - 2 - kW, false},
                  {0, false},
              });
}

TEST(ReplayWindow, ResetForgetsEverything) {
  ReplayWindow window;
  ASSERT_TRUE(window.check_and_set(100000));
  ASSERT_FALSE(window.check_and_set(5));
  window.reset();
  EXPECT_TRUE(window.check_and_set(5));
  EXPECT_TRUE(window.check_and_set(0));
}

// wireguard.md §2.3 experiment C against wireguard-go.
TEST(ReplayWindow, ObservedWireguardGoBehaviour) {
  ReplayWindow window;
  run(window, {
                  {0, true},
                  {5, true},
                  {3, true},
                  {3, false},
                  {8200, true},
                  {71, false},
                  {72, true},
                  {72, false},
              });
}

TEST(ReplayWindow, MatchesNaiveModelOnRandomTraffic) {
  std::mt19937_64 rng(20261126);
  for (int round = 0; round < 4; ++round) {
    ReplayWindow window;
    std::set<uint64_t> seen;
    uint64_t highest = 0;
    bool any = false;
    uint64_t base = round == 3 ? kLimit - 40000 : 0;
    for (int i = 0; i < 20000; ++i) {
      const uint64_t r = rng() % 100;
      uint64_t c;
      if (r < 50) {
        c = base++;
      } else if (r < 85) {
        c = base - std::min<uint64_t>(base, rng() % (kW + 200));
      } else if (r < 97) {
        c = base + rng() % 300;
      } else {
        base += rng() % (3 * kW);
        c = base;
      }
      // Near the limit, keep counters far from 2^64 so the model's arithmetic cannot wrap.
      base = std::min(base, kLimit + 50);
      const bool expected = c < kLimit && !seen.count(c) && (!any || c + kW >= highest);
      ASSERT_EQ(window.check_and_set(c), expected) << "round " << round << " step " << i;
      if (expected) {
        seen.insert(c);
        highest = any ? std::max(highest, c) : c;
        any = true;
      }
    }
  }
}

}  // namespace
}  // namespace airlock::dp
