#include "control/budget/ledger.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <latch>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace airlock::control::budget {
namespace {

namespace fs = std::filesystem;
using policy::BudgetSpec;
using policy::BudgetWindow;

constexpr Picodollars kDollar = kPicodollarsPerDollar;
constexpr Picodollars kCent = kDollar / 100;

int64_t at(std::chrono::sys_days day, std::chrono::milliseconds time_of_day = {}) {
  return (std::chrono::sys_time<std::chrono::milliseconds>(day) + time_of_day)
      .time_since_epoch()
      .count();
}

using namespace std::chrono_literals;
using std::chrono::March;
// Wednesday 2025-03-05 12:00 UTC.
const int64_t kNoon = at(std::chrono::year{2025} / March / 5, 12h);
const int64_t kNextMidnight = at(std::chrono::year{2025} / March / 6);

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "airlock-budget-XXXXXX").string();
    const char* made = ::mkdtemp(pattern.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

BudgetSpec usd_budget(std::string name, Picodollars limit,
                      BudgetWindow window = BudgetWindow::kDay) {
  BudgetSpec spec;
  spec.name = std::move(name);
  spec.usd_picodollars = limit;
  spec.window = window;
  return spec;
}

BudgetSpec token_budget(std::string name, uint64_t limit,
                        BudgetWindow window = BudgetWindow::kDay) {
  BudgetSpec spec;
  spec.name = std::move(name);
  spec.tokens = limit;
  spec.window = window;
  return spec;
}

std::unique_ptr<Ledger> memory_ledger(std::vector<BudgetSpec> budgets) {
  std::string error;
  auto ledger = Ledger::open("", &error);
  if (!ledger) throw std::runtime_error(error);
  ledger->set_budgets(std::move(budgets));
  return ledger;
}

Amount usd(Picodollars amount) {
  return {amount, 0};
}

std::vector<Charge> one(std::string budget, std::string key) {
  return {Charge{std::move(budget), std::move(key)}};
}

Balance balance_of(const Ledger& ledger, const std::string& budget, const std::string& key,
                   int64_t now_ms) {
  for (Balance& b : ledger.balances(budget, key, now_ms)) {
    if (b.balance_key == key) return b;
  }
  throw std::runtime_error("no balance " + budget + " " + key);
}

// Reserves and settles at once; fails the test when refused.
void spend(Ledger& ledger, const std::vector<Charge>& charges, Amount amount, int64_t now_ms) {
  ReserveResult result = ledger.reserve(charges, amount, now_ms);
  ASSERT_TRUE(std::holds_alternative<Reservation>(result));
  std::get<Reservation>(result).settle(amount, now_ms);
}

const Refusal& refused(const ReserveResult& result) {
  if (!std::holds_alternative<Refusal>(result)) throw std::runtime_error("not refused");
  return std::get<Refusal>(result);
}

struct Recorder {
  std::mutex mutex;
  std::vector<ThresholdEvent> events;
  void attach(Ledger& ledger) {
    ledger.set_event_handler([this](const ThresholdEvent& e) {
      std::lock_guard lock(mutex);
      events.push_back(e);
    });
  }
  std::vector<uint32_t> thresholds() {
    std::lock_guard lock(mutex);
    std::vector<uint32_t> out;
    for (const auto& e : events) {
      if (e.kind == ThresholdEvent::Kind::kThreshold) out.push_back(e.percent);
    }
    return out;
  }
  size_t exceeded() {
    std::lock_guard lock(mutex);
    return static_cast<size_t>(std::count_if(events.begin(), events.end(), [](const auto& e) {
      return e.kind == ThresholdEvent::Kind::kExceeded;
    }));
  }
};

// THE property: 200 threads race for a $1 budget with worst cases adding up to several
// dollars; at no instant is more than $1 spent or promised, and what the ledger shows spent is
// exactly what was settled. File-backed, so the writer thread runs alongside.
TEST(BudgetLedger, ConcurrentReservationsNeverOvershoot) {
  constexpr int kRounds = 50;
  constexpr int kThreads = 200;
  TempDir dir;
  std::string error;
  auto ledger = Ledger::open(dir.file("ledger.db"), &error);
  ASSERT_TRUE(ledger) << error;
  std::vector<BudgetSpec> budgets;
  for (int round = 0; round < kRounds; ++round) {
    budgets.push_back(usd_budget("round" + std::to_string(round), kDollar));
  }
  ledger->set_budgets(budgets);

  int64_t total_refusals = 0;
  for (int round = 0; round < kRounds; ++round) {
    const std::string name = "round" + std::to_string(round);
    const std::vector<Charge> charges = one(name, name + "|shared");
    std::atomic<Picodollars> settled{0};
    std::atomic<int> refusals{0};
    std::atomic<int> done{0};
    std::atomic<bool> violation{false};
    std::latch start(kThreads + 1);

    std::thread monitor([&] {
      start.arrive_and_wait();
      while (done.load() < kThreads) {
        for (const Balance& b : ledger->balances(name, std::nullopt, kNoon)) {
          if (b.spent_usd > kDollar || b.spent_usd + b.reserved_usd > kDollar) violation = true;
        }
        std::this_thread::yield();
      }
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(static_cast<uint64_t>(round * kThreads + t));
        // $0.01 to $0.05 each: ~$6 of worst cases against $1.
        const Picodollars worst = kCent + static_cast<Picodollars>(rng() % (4 * kCent));
        start.arrive_and_wait();
        ReserveResult result = ledger->reserve(charges, usd(worst), kNoon);
        if (auto* reservation = std::get_if<Reservation>(&result)) {
          const uint64_t choice = rng() % 4;
          if (choice == 0) {
            reservation->release();
          } else if (choice == 1) {
            // Destroyed unsettled: released.
            Reservation dropped = std::move(*reservation);
          } else {
            const Picodollars actual = static_cast<Picodollars>(rng() % (worst + 1));
            reservation->settle(usd(actual), kNoon);
            settled += actual;
          }
        } else {
          ++refusals;
        }
        ++done;
      });
    }
    for (auto& thread : threads) thread.join();
    monitor.join();

    const Balance b = balance_of(*ledger, name, name + "|shared", kNoon);
    EXPECT_FALSE(violation.load()) << "round " << round;
    EXPECT_LE(b.spent_usd, kDollar);
    EXPECT_EQ(b.spent_usd, settled.load()) << "round " << round;
    EXPECT_EQ(b.reserved_usd, 0);
    EXPECT_EQ(*b.remaining_usd, kDollar - settled.load());
    total_refusals += refusals.load();
  }
  // The race was real: far more was asked for than the budgets held.
  EXPECT_GT(total_refusals, kRounds * 10);
  EXPECT_TRUE(ledger->flush());
}

// Every request is charged to its user's budget and a shared pool; each must allow it. All or
// nothing means the pool's spend is exactly the sum of the users' spends.
TEST(BudgetLedger, ConcurrentMultiBudgetIsAllOrNothing) {
  constexpr int kRounds = 50;
  constexpr int kThreads = 200;
  constexpr int kUsers = 5;
  constexpr Picodollars kUserLimit = 30 * kCent;
  for (int round = 0; round < kRounds; ++round) {
    auto ledger = memory_ledger({usd_budget("user", kUserLimit), usd_budget("pool", kDollar)});
    std::atomic<Picodollars> settled{0};
    std::atomic<int> done{0};
    std::atomic<bool> violation{false};
    std::latch start(kThreads + 1);
    std::thread monitor([&] {
      start.arrive_and_wait();
      while (done.load() < kThreads) {
        for (const Balance& b : ledger->balances(std::nullopt, std::nullopt, kNoon)) {
          if (b.spent_usd + b.reserved_usd > *b.limit_usd) violation = true;
        }
        std::this_thread::yield();
      }
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(static_cast<uint64_t>(round * kThreads + t + 7));
        const std::string user = "user:u" + std::to_string(t % kUsers);
        const std::vector<Charge> charges = {{"user", "user|" + user}, {"pool", "pool|shared"}};
        const Picodollars worst = kCent + static_cast<Picodollars>(rng() % (4 * kCent));
        start.arrive_and_wait();
        ReserveResult result = ledger->reserve(charges, usd(worst), kNoon);
        if (auto* reservation = std::get_if<Reservation>(&result)) {
          if (rng() % 5 != 0) {
            const Picodollars actual = static_cast<Picodollars>(rng() % (worst + 1));
            reservation->settle(usd(actual), kNoon);
            settled += actual;
          }
        }
        ++done;
      });
    }
    for (auto& thread : threads) thread.join();
    monitor.join();

    EXPECT_FALSE(violation.load());
    Picodollars users_total = 0;
    for (const Balance& b : ledger->balances("user", std::nullopt, kNoon)) {
      EXPECT_LE(b.spent_usd, kUserLimit);
      EXPECT_EQ(b.reserved_usd, 0);
      users_total += b.spent_usd;
    }
    const Balance pool = balance_of(*ledger, "pool", "pool|shared", kNoon);
    EXPECT_EQ(pool.spent_usd, settled.load());
    EXPECT_EQ(users_total, settled.load());
    EXPECT_EQ(pool.reserved_usd, 0);
  }
}

TEST(BudgetLedger, RefusedWhenAnyChargedBalanceIsFullAndNothingIsHeld) {
  auto ledger = memory_ledger({usd_budget("user", kDollar), usd_budget("pool", 10 * kDollar)});
  spend(*ledger, one("user", "user|user:alice"), usd(90 * kCent), kNoon);
  const std::vector<Charge> charges = {{"pool", "pool|shared"}, {"user", "user|user:alice"}};
  const ReserveResult result = ledger->reserve(charges, usd(20 * kCent), kNoon);
  const Refusal& r = refused(result);
  EXPECT_EQ(r.budget, "user");
  EXPECT_EQ(r.balance_key, "user|user:alice");
  EXPECT_TRUE(r.usd_exhausted);
  EXPECT_FALSE(r.tokens_exhausted);
  EXPECT_EQ(r.spent_usd, 90 * kCent);
  EXPECT_EQ(*r.limit_usd, kDollar);
  // The pool, checked first, holds nothing for the refused request.
  EXPECT_EQ(balance_of(*ledger, "pool", "pool|shared", kNoon).reserved_usd, 0);
}

TEST(BudgetLedger, CalendarWindowsInUtc) {
  using std::chrono::February;
  const int64_t wednesday = at(std::chrono::year{2025} / March / 5, 13h + 7min + 5s);
  EXPECT_EQ(calendar_window(BudgetWindow::kMinute, wednesday).start_ms,
            at(std::chrono::year{2025} / March / 5, 13h + 7min));
  EXPECT_EQ(calendar_window(BudgetWindow::kHour, wednesday).end_ms,
            at(std::chrono::year{2025} / March / 5, 14h));
  EXPECT_EQ(calendar_window(BudgetWindow::kDay, wednesday).start_ms,
            at(std::chrono::year{2025} / March / 5));
  const WindowBounds week = calendar_window(BudgetWindow::kWeek, wednesday);
  EXPECT_EQ(week.start_ms, at(std::chrono::year{2025} / March / 3));  // Monday
  EXPECT_EQ(week.end_ms, at(std::chrono::year{2025} / March / 10));
  // A Monday at midnight starts its own week.
  EXPECT_EQ(calendar_window(BudgetWindow::kWeek, week.end_ms).start_ms, week.end_ms);
  const WindowBounds february =
      calendar_window(BudgetWindow::kMonth, at(std::chrono::year{2024} / February / 29, 23h));
  EXPECT_EQ(february.start_ms, at(std::chrono::year{2024} / February / 1));
  EXPECT_EQ(february.end_ms, at(std::chrono::year{2024} / March / 1));
  const WindowBounds december = calendar_window(
      BudgetWindow::kMonth, at(std::chrono::year{2025} / std::chrono::December / 31));
  EXPECT_EQ(december.end_ms, at(std::chrono::year{2026} / std::chrono::January / 1));
}

TEST(BudgetLedger, SpendResetsWhenTheWindowRolls) {
  auto ledger = memory_ledger({usd_budget("daily", kDollar)});
  const auto charges = one("daily", "daily|user:alice");
  spend(*ledger, charges, usd(60 * kCent), kNoon);
  const ReserveResult result = ledger->reserve(charges, usd(60 * kCent), kNoon);
  const Refusal& r = refused(result);
  EXPECT_EQ(r.retry_after_s, 12 * 3600);  // until midnight UTC
  EXPECT_FALSE(r.never_fits);

  EXPECT_TRUE(std::holds_alternative<Refusal>(
      ledger->reserve(charges, usd(60 * kCent), kNextMidnight - 1)));
  Balance b = balance_of(*ledger, "daily", "daily|user:alice", kNextMidnight);
  EXPECT_EQ(b.spent_usd, 0);
  EXPECT_EQ(b.window_start_ms, kNextMidnight);
  EXPECT_EQ(b.window_end_ms, kNextMidnight + 24 * 3600 * 1000);
  spend(*ledger, charges, usd(60 * kCent), kNextMidnight);
  EXPECT_EQ(balance_of(*ledger, "daily", "daily|user:alice", kNextMidnight).spent_usd, 60 * kCent);
}

TEST(BudgetLedger, TokenLimitCountsTokens) {
  auto ledger = memory_ledger({token_budget("tokens", 1000, BudgetWindow::kHour)});
  const auto charges = one("tokens", "tokens|user:bob");
  spend(*ledger, charges, {5 * kDollar, 700}, kNoon);  // dollars are not limited
  const ReserveResult result = ledger->reserve(charges, {0, 301}, kNoon + 1000);
  const Refusal& r = refused(result);
  EXPECT_TRUE(r.tokens_exhausted);
  EXPECT_FALSE(r.usd_exhausted);
  EXPECT_EQ(r.retry_after_s, 3600 - 1);
  EXPECT_TRUE(std::holds_alternative<Reservation>(ledger->reserve(charges, {0, 300}, kNoon)));
}

TEST(BudgetLedger, RetryAfterForInFlightAndOversizedRequests) {
  auto ledger = memory_ledger({usd_budget("daily", kDollar)});
  const auto charges = one("daily", "daily|user:alice");
  ReserveResult held = ledger->reserve(charges, usd(80 * kCent), kNoon);
  ASSERT_TRUE(std::holds_alternative<Reservation>(held));
  const ReserveResult busy = ledger->reserve(charges, usd(50 * kCent), kNoon);
  EXPECT_EQ(refused(busy).retry_after_s, 1);  // in-flight requests will settle
  EXPECT_EQ(refused(busy).reserved_usd, 80 * kCent);
  const ReserveResult huge = ledger->reserve(charges, usd(2 * kDollar), kNoon);
  EXPECT_TRUE(refused(huge).never_fits);
}

TEST(BudgetLedger, ReleaseAndSettleAreOnceOnly) {
  auto ledger = memory_ledger({usd_budget("daily", kDollar)});
  const auto charges = one("daily", "daily|user:alice");
  {
    ReserveResult result = ledger->reserve(charges, usd(40 * kCent), kNoon);
    EXPECT_EQ(balance_of(*ledger, "daily", "daily|user:alice", kNoon).reserved_usd, 40 * kCent);
  }
  Balance b = balance_of(*ledger, "daily", "daily|user:alice", kNoon);
  EXPECT_EQ(b.reserved_usd, 0);
  EXPECT_EQ(b.spent_usd, 0);

  ReserveResult result = ledger->reserve(charges, usd(40 * kCent), kNoon);
  Reservation moved = std::move(std::get<Reservation>(result));
  EXPECT_FALSE(std::get<Reservation>(result).active());
  const Reservation::Settlement s = moved.settle(usd(50 * kCent), kNoon);
  EXPECT_TRUE(s.exceeded_worst_case);
  EXPECT_EQ(s.overrun.usd, 10 * kCent);
  moved.settle(usd(50 * kCent), kNoon);
  moved.release();
  b = balance_of(*ledger, "daily", "daily|user:alice", kNoon);
  EXPECT_EQ(b.spent_usd, 50 * kCent);  // charged in full, once
  EXPECT_EQ(b.reserved_usd, 0);
}

TEST(BudgetLedger, BucketRefillsProRataUpToCapacity) {
  BudgetSpec bucket = usd_budget("burst", kDollar, BudgetWindow::kBucket);
  bucket.refill_picodollars = kDollar;  // $1 per hour
  bucket.refill_every_s = 3600;
  auto ledger = memory_ledger({bucket});
  const auto charges = one("burst", "burst|device:laptop");
  spend(*ledger, charges, usd(kDollar), kNoon);
  const ReserveResult result = ledger->reserve(charges, usd(50 * kCent), kNoon);
  EXPECT_EQ(refused(result).retry_after_s, 1800);

  const int64_t half_hour = kNoon + 1800 * 1000;
  EXPECT_EQ(balance_of(*ledger, "burst", "burst|device:laptop", half_hour).spent_usd, 50 * kCent);
  spend(*ledger, charges, usd(50 * kCent), half_hour);

  // Ten hours later the bucket is full, not ten dollars full.
  const int64_t later = kNoon + 10 * 3600 * 1000;
  const Balance b = balance_of(*ledger, "burst", "burst|device:laptop", later);
  EXPECT_EQ(b.spent_usd, 0);
  EXPECT_EQ(b.window_end_ms, 0);
  EXPECT_TRUE(refused(ledger->reserve(charges, usd(kDollar + 1), later)).never_fits);
  EXPECT_TRUE(std::holds_alternative<Reservation>(ledger->reserve(charges, usd(kDollar), later)));
}

TEST(BudgetLedger, BucketRefillIsExactUnderFrequentUse) {
  BudgetSpec bucket = token_budget("tokens", 1000, BudgetWindow::kBucket);
  bucket.refill_tokens = 1000;  // one token per second
  bucket.refill_every_s = 1000;
  auto ledger = memory_ledger({bucket});
  const auto charges = one("tokens", "tokens|user:alice");
  spend(*ledger, charges, {0, 1000}, kNoon);
  // A request every millisecond must not round the refill away.
  for (int64_t ms = 1; ms <= 10'000; ++ms) {
    ReserveResult r = ledger->reserve(charges, {0, 0}, kNoon + ms);
    ASSERT_TRUE(std::holds_alternative<Reservation>(r));
  }
  EXPECT_EQ(balance_of(*ledger, "tokens", "tokens|user:alice", kNoon + 10'000).spent_tokens, 990);
}

TEST(BudgetLedger, ThresholdsFireOncePerWindow) {
  BudgetSpec daily = usd_budget("daily", kDollar);
  daily.thresholds_percent = {50, 80, 100};
  auto ledger = memory_ledger({daily});
  Recorder recorder;
  recorder.attach(*ledger);
  const auto charges = one("daily", "daily|user:alice");
  spend(*ledger, charges, usd(30 * kCent), kNoon);
  EXPECT_TRUE(recorder.thresholds().empty());
  spend(*ledger, charges, usd(20 * kCent), kNoon);  // exactly 50%
  EXPECT_EQ(recorder.thresholds(), (std::vector<uint32_t>{50}));
  spend(*ledger, charges, usd(10 * kCent), kNoon);
  EXPECT_EQ(recorder.thresholds(), (std::vector<uint32_t>{50}));
  spend(*ledger, charges, usd(40 * kCent), kNoon);  // 80% and 100% at once
  EXPECT_EQ(recorder.thresholds(), (std::vector<uint32_t>{50, 80, 100}));
  {
    std::lock_guard lock(recorder.mutex);
    const ThresholdEvent& last = recorder.events.back();
    EXPECT_EQ(last.budget, "daily");
    EXPECT_EQ(last.balance_key, "daily|user:alice");
    EXPECT_EQ(last.spent_usd, kDollar);
    EXPECT_EQ(*last.limit_usd, kDollar);
    EXPECT_EQ(last.window_start_ms, at(std::chrono::year{2025} / March / 5));
  }
  spend(*ledger, charges, usd(0), kNoon);
  EXPECT_EQ(recorder.thresholds().size(), 3u);
  // A new day, new events.
  spend(*ledger, charges, usd(60 * kCent), kNextMidnight);
  EXPECT_EQ(recorder.thresholds(), (std::vector<uint32_t>{50, 80, 100, 50}));
}

TEST(BudgetLedger, ThresholdsOnTokensToo) {
  BudgetSpec both = usd_budget("both", 100 * kDollar);
  both.tokens = 1000;
  auto ledger = memory_ledger({both});
  Recorder recorder;
  recorder.attach(*ledger);
  spend(*ledger, one("both", "both|user:a"), {kCent, 500}, kNoon);
  EXPECT_EQ(recorder.thresholds(), (std::vector<uint32_t>{50}));
}

TEST(BudgetLedger, ExceededFiresOncePerWindow) {
  auto ledger = memory_ledger({usd_budget("daily", kDollar)});
  Recorder recorder;
  recorder.attach(*ledger);
  const auto charges = one("daily", "daily|user:alice");
  spend(*ledger, charges, usd(90 * kCent), kNoon);
  EXPECT_EQ(recorder.exceeded(), 0u);
  EXPECT_TRUE(std::holds_alternative<Refusal>(ledger->reserve(charges, usd(20 * kCent), kNoon)));
  EXPECT_EQ(recorder.exceeded(), 1u);
  {
    std::lock_guard lock(recorder.mutex);
    EXPECT_EQ(recorder.events.back().spent_usd, 90 * kCent);
    EXPECT_EQ(recorder.events.back().balance_key, "daily|user:alice");
  }
  EXPECT_TRUE(std::holds_alternative<Refusal>(ledger->reserve(charges, usd(20 * kCent), kNoon)));
  EXPECT_EQ(recorder.exceeded(), 1u);
  spend(*ledger, charges, usd(90 * kCent), kNextMidnight);
  EXPECT_TRUE(
      std::holds_alternative<Refusal>(ledger->reserve(charges, usd(20 * kCent), kNextMidnight)));
  EXPECT_EQ(recorder.exceeded(), 2u);
}

TEST(BudgetLedger, AddFundsAndReset) {
  auto ledger = memory_ledger({usd_budget("daily", kDollar)});
  const auto charges = one("daily", "daily|user:alice");
  spend(*ledger, charges, usd(kDollar), kNoon);
  EXPECT_TRUE(std::holds_alternative<Refusal>(ledger->reserve(charges, usd(kCent), kNoon)));
  EXPECT_TRUE(ledger->add_funds("daily", "daily|user:alice", usd(50 * kCent), kNoon));
  spend(*ledger, charges, usd(50 * kCent), kNoon);
  EXPECT_TRUE(std::holds_alternative<Refusal>(ledger->reserve(charges, usd(kCent), kNoon)));

  EXPECT_TRUE(ledger->reset("daily", "daily|user:alice", kNoon));
  EXPECT_EQ(balance_of(*ledger, "daily", "daily|user:alice", kNoon).spent_usd, 0);

  // Credit beyond the spend is extra allowance for this window.
  EXPECT_TRUE(ledger->add_funds("daily", "daily|user:bob", usd(2 * kDollar), kNoon));
  const Balance bob = balance_of(*ledger, "daily", "daily|user:bob", kNoon);
  EXPECT_EQ(bob.spent_usd, -2 * kDollar);
  EXPECT_EQ(*bob.remaining_usd, 3 * kDollar);
  spend(*ledger, one("daily", "daily|user:bob"), usd(3 * kDollar), kNoon);
  // ... and gone with the window.
  EXPECT_EQ(*balance_of(*ledger, "daily", "daily|user:bob", kNextMidnight).remaining_usd, kDollar);

  EXPECT_FALSE(ledger->add_funds("nope", "nope|user:bob", usd(kDollar), kNoon));
  EXPECT_FALSE(ledger->reset("nope", "nope|user:bob", kNoon));
}

TEST(BudgetLedger, BalancesFilterByBudgetAndKeyPrefix) {
  auto ledger = memory_ledger({usd_budget("a", kDollar), usd_budget("b", kDollar)});
  spend(*ledger, one("a", "a|user:alice"), usd(kCent), kNoon);
  spend(*ledger, one("a", "a|user:bob"), usd(kCent), kNoon);
  spend(*ledger, one("b", "b|user:alice"), usd(kCent), kNoon);
  EXPECT_EQ(ledger->balances(std::nullopt, std::nullopt, kNoon).size(), 3u);
  EXPECT_EQ(ledger->balances("a", std::nullopt, kNoon).size(), 2u);
  const auto alice = ledger->balances("a", "a|user:al", kNoon);
  ASSERT_EQ(alice.size(), 1u);
  EXPECT_EQ(alice[0].balance_key, "a|user:alice");
}

TEST(BudgetLedger, PolicySwapKeepsSurvivingBalances) {
  auto ledger = memory_ledger({usd_budget("keep", kDollar), usd_budget("drop", kDollar)});
  spend(*ledger, one("keep", "keep|user:a"), usd(70 * kCent), kNoon);
  spend(*ledger, one("drop", "drop|user:a"), usd(70 * kCent), kNoon);

  ledger->set_budgets({usd_budget("keep", kDollar), usd_budget("new", kDollar)});
  EXPECT_EQ(balance_of(*ledger, "keep", "keep|user:a", kNoon).spent_usd, 70 * kCent);
  EXPECT_TRUE(ledger->balances("drop", std::nullopt, kNoon).empty());
  // The removed budget no longer refuses or charges.
  spend(*ledger, {{"drop", "drop|user:a"}, {"new", "new|user:a"}}, usd(50 * kCent), kNoon);
  EXPECT_EQ(balance_of(*ledger, "new", "new|user:a", kNoon).spent_usd, 50 * kCent);

  // A raised limit applies to the surviving balance at once.
  ledger->set_budgets({usd_budget("keep", 2 * kDollar), usd_budget("drop", kDollar)});
  spend(*ledger, one("keep", "keep|user:a"), usd(kDollar), kNoon);
  EXPECT_EQ(balance_of(*ledger, "drop", "drop|user:a", kNoon).spent_usd, 70 * kCent);
}

TEST(BudgetLedger, PersistsAcrossRestarts) {
  TempDir dir;
  const std::string path = dir.file("ledger.db");
  BudgetSpec daily = usd_budget("daily", kDollar);
  daily.tokens = 10'000;
  BudgetSpec bucket = usd_budget("bucket", kDollar, BudgetWindow::kBucket);
  bucket.refill_picodollars = kDollar;
  bucket.refill_every_s = 3600;
  std::string error;
  {
    auto ledger = Ledger::open(path, &error);
    ASSERT_TRUE(ledger) << error;
    ledger->set_budgets({daily, bucket});
    Recorder recorder;
    recorder.attach(*ledger);
    spend(*ledger, one("daily", "daily|user:alice"), {60 * kCent, 1234}, kNoon);
    spend(*ledger, one("bucket", "bucket|user:alice"), usd(kDollar), kNoon);
    EXPECT_EQ(recorder.thresholds(), (std::vector<uint32_t>{50, 50, 80, 100}));
    EXPECT_TRUE(ledger->flush());
    spend(*ledger, one("daily", "daily|user:bob"), usd(kCent), kNoon);
    ledger->set_event_handler(nullptr);
    // Destroyed without flush(): the destructor writes bob's balance.
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto ledger = Ledger::open(path, &error);
  ASSERT_TRUE(ledger) << error;
  ledger->set_budgets({daily, bucket});
  Recorder recorder;
  recorder.attach(*ledger);
  Balance alice = balance_of(*ledger, "daily", "daily|user:alice", kNoon);
  EXPECT_EQ(alice.spent_usd, 60 * kCent);
  EXPECT_EQ(alice.spent_tokens, 1234);
  EXPECT_EQ(balance_of(*ledger, "daily", "daily|user:bob", kNoon).spent_usd, kCent);
  // The bucket kept refilling while the gateway was down.
  EXPECT_EQ(balance_of(*ledger, "bucket", "bucket|user:alice", kNoon + 900'000).spent_usd,
            75 * kCent);
  // Thresholds already reported are not reported again after a restart.
  spend(*ledger, one("daily", "daily|user:alice"), usd(kCent), kNoon);
  EXPECT_TRUE(recorder.thresholds().empty());
  // A row from an old window resets on first use.
  EXPECT_EQ(balance_of(*ledger, "daily", "daily|user:alice", kNextMidnight).spent_usd, 0);
  spend(*ledger, one("daily", "daily|user:alice"), usd(kCent), kNextMidnight);
  EXPECT_TRUE(ledger->flush());
  ledger.reset();
  ledger = Ledger::open(path, &error);
  ledger->set_budgets({daily, bucket});
  EXPECT_EQ(balance_of(*ledger, "daily", "daily|user:alice", kNextMidnight).spent_usd, kCent);
}

TEST(BudgetLedger, OpenReportsAnUnusablePath) {
  std::string error;
  EXPECT_EQ(Ledger::open("/nonexistent-dir/ledger.db", &error), nullptr);
  EXPECT_NE(error.find("/nonexistent-dir/ledger.db"), std::string::npos);
}

}  // namespace
}  // namespace airlock::control::budget
