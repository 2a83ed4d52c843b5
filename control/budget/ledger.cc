// The ledger keeps every balance in one map behind one mutex: reserve and settle touch a handful
// of balances for a few hundred nanoseconds, and a single lock is what makes the all-or-nothing
// check over several balances trivially correct. Disk writes happen on a writer thread that copies
// the dirty balances under the lock and writes them without it.
#include "control/budget/ledger.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "control/sqlite/sqlite.h"

namespace airlock::control::budget {

using policy::BudgetSpec;
using policy::BudgetWindow;

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Wide = __int128;

// Changes are gathered this long before a write, so a busy gateway writes a few batches a second
// rather than a transaction per request.
constexpr auto kBatchDelay = 100ms;
constexpr auto kFirstRetryDelay = 100ms;
constexpr auto kMaxRetryDelay = 2s;
// How long flush() and shutdown wait on a database that cannot be written.
constexpr auto kFailingWaitLimit = 10s;
constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS balances (
  budget TEXT NOT NULL,
  balance_key TEXT NOT NULL,
  window INTEGER NOT NULL,
  window_start_ms INTEGER NOT NULL,
  spent_usd INTEGER NOT NULL,
  spent_tokens INTEGER NOT NULL,
  fired_percent INTEGER NOT NULL,
  exceeded_fired INTEGER NOT NULL,
  PRIMARY KEY (budget, balance_key)
) WITHOUT ROWID;
)sql";

int64_t clamp64(Wide value) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  return value > kMax ? kMax : value < kMin ? kMin : static_cast<int64_t>(value);
}

int64_t ceil_seconds(int64_t ms) {
  return std::max<int64_t>(1, (ms + 999) / 1000);
}

bool is_calendar(BudgetWindow window) {
  return window != BudgetWindow::kBucket;
}

using sqlite::column_text;
using sqlite::Db;
using sqlite::exec;
using sqlite::prepare;
using sqlite::Stmt;

constexpr std::string_view kWhat = "budget ledger";

}  // namespace

WindowBounds calendar_window(BudgetWindow window, int64_t now_ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> now{milliseconds{now_ms}};
  const auto ms = [](auto time) {
    return time_point_cast<milliseconds>(time).time_since_epoch().count();
  };
  switch (window) {
    case BudgetWindow::kMinute: {
      const auto start = floor<minutes>(now);
      return {ms(start), ms(start + minutes{1})};
    }
    case BudgetWindow::kHour: {
      const auto start = floor<hours>(now);
      return {ms(start), ms(start + hours{1})};
    }
    case BudgetWindow::kDay: {
      const auto start = floor<days>(now);
      return {ms(start), ms(start + days{1})};
    }
    case BudgetWindow::kWeek: {
      const sys_days day = floor<days>(now);
      const sys_days start = day - (weekday{day} - Monday);
      return {ms(start), ms(start + weeks{1})};
    }
    case BudgetWindow::kMonth: {
      const year_month_day date{floor<days>(now)};
      const year_month month = date.year() / date.month();
      return {ms(sys_days{month / 1}), ms(sys_days{(month + months{1}) / 1})};
    }
    case BudgetWindow::kBucket:
      break;
  }
  return {};
}

namespace detail {

struct Entry {
  std::string budget;
  std::string balance_key;
  BudgetWindow window = BudgetWindow::kDay;
  bool positioned = false;  // window/window_start_ms describe a real window
  // Calendar: the window's start. Bucket: when it was last refilled.
  int64_t window_start_ms = 0;
  Picodollars spent_usd = 0;
  int64_t spent_tokens = 0;
  // Wide, so reservations of absurd worst cases on an unlimited dimension cannot overflow.
  Wide reserved_usd = 0;
  Wide reserved_tokens = 0;
  // Bucket refill not yet credited, in units of 1 / (refill_every_s · 1000): refills computed
  // every millisecond would otherwise round away to nothing.
  int64_t refill_rest_usd = 0;
  int64_t refill_rest_tokens = 0;
  uint32_t fired_percent = 0;  // the highest threshold already reported in this window
  bool exceeded_fired = false;
  bool dirty = false;
};

namespace {

using EntryKey = std::pair<std::string, std::string>;
using EntryView = std::pair<std::string_view, std::string_view>;

struct EntryLess {
  using is_transparent = void;
  static EntryView view(const EntryKey& key) { return {key.first, key.second}; }
  static EntryView view(const EntryView& key) { return key; }
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return view(a) < view(b);
  }
};

bool reached(Wide spent, Wide limit, uint32_t percent) {
  return spent > 0 && spent * 100 >= limit * percent;
}

bool threshold_reached(const Entry& e, const BudgetSpec& spec, uint32_t percent) {
  return (spec.usd_picodollars && reached(e.spent_usd, *spec.usd_picodollars, percent)) ||
         (spec.tokens && reached(e.spent_tokens, *spec.tokens, percent));
}

// After spend went down (refill, credit), thresholds no longer reached fire again when reached.
void rearm(Entry& e, const BudgetSpec& spec) {
  uint32_t still = 0;
  for (const uint32_t t : spec.thresholds_percent) {
    if (t > e.fired_percent || !threshold_reached(e, spec, t)) break;
    still = t;
  }
  e.fired_percent = still;
}

// Credits `elapsed_ms` of refill at `rate` per `period_ms` against `spent`, never past zero
// (a full bucket) and never touching a credit (negative spent) from add_funds.
void refill(int64_t& spent, int64_t& rest, Wide rate, Wide period_ms, int64_t elapsed_ms) {
  if (spent <= 0 || rate <= 0 || period_ms <= 0) {
    rest = 0;
    return;
  }
  const Wide numerator = rate * elapsed_ms + rest;
  const Wide amount = numerator / period_ms;
  if (amount >= spent) {
    spent = 0;
    rest = 0;
  } else {
    spent -= static_cast<int64_t>(amount);
    rest = static_cast<int64_t>(numerator % period_ms);
  }
}

Wide token_refill_rate(const BudgetSpec& spec) {
  return static_cast<Wide>(spec.refill_tokens);
}

Wide period_ms(const BudgetSpec& spec) {
  return static_cast<Wide>(spec.refill_every_s) * 1000;
}

ThresholdEvent make_event(const Entry& e, const BudgetSpec& spec, ThresholdEvent::Kind kind,
                          uint32_t percent) {
  ThresholdEvent event;
  event.kind = kind;
  event.budget = e.budget;
  event.balance_key = e.balance_key;
  event.percent = percent;
  event.spent_usd = e.spent_usd;
  event.spent_tokens = e.spent_tokens;
  event.limit_usd = spec.usd_picodollars;
  event.limit_tokens = spec.tokens;
  event.window_start_ms = is_calendar(spec.window) ? e.window_start_ms : 0;
  return event;
}

}  // namespace

using Handler = std::function<void(const ThresholdEvent&)>;

class Core {
 public:
  // `db` null: in memory only, no writer thread.
  Core(std::string path, Db db) : path_(std::move(path)), db_(std::move(db)) {}

  // After load(): from here on the writer thread owns the connection.
  void start_writer() {
    if (db_) writer_ = std::thread([this] { run_writer(); });
  }

  ~Core() {
    if (!writer_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_.notify_all();
    // The writer writes everything dirty before it exits.
    writer_.join();
  }

  bool load(std::string* error) {
    std::lock_guard lock(mutex_);
    const Stmt stmt = prepare(db_.get(),
                              "SELECT budget, balance_key, window, window_start_ms, spent_usd, "
                              "spent_tokens, fired_percent, exceeded_fired FROM balances");
    if (!stmt) {
      *error = describe();
      return false;
    }
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      const int window = sqlite3_column_int(stmt.get(), 2);
      if (window < 0 || window > static_cast<int>(BudgetWindow::kBucket)) continue;
      Entry& e = entry(column_text(stmt.get(), 0), column_text(stmt.get(), 1));
      e.window = static_cast<BudgetWindow>(window);
      e.positioned = true;
      e.window_start_ms = sqlite3_column_int64(stmt.get(), 3);
      e.spent_usd = sqlite3_column_int64(stmt.get(), 4);
      e.spent_tokens = sqlite3_column_int64(stmt.get(), 5);
      e.fired_percent = static_cast<uint32_t>(sqlite3_column_int64(stmt.get(), 6));
      e.exceeded_fired = sqlite3_column_int(stmt.get(), 7) != 0;
    }
    if (rc != SQLITE_DONE) {
      *error = describe();
      return false;
    }
    return true;
  }

  void set_budgets(std::vector<BudgetSpec> budgets) {
    std::map<std::string, BudgetSpec, std::less<>> specs;
    for (BudgetSpec& spec : budgets) {
      std::string name = spec.name;
      specs.emplace(std::move(name), std::move(spec));
    }
    std::lock_guard lock(mutex_);
    specs_.swap(specs);
  }

  void set_handler(Handler handler) {
    auto shared = std::make_shared<const Handler>(std::move(handler));
    std::lock_guard lock(mutex_);
    handler_ = std::move(shared);
  }

  ReserveResult reserve(std::span<const Charge> charges, Amount worst, int64_t now_ms) {
    worst.usd = std::max<Picodollars>(0, worst.usd);  // a negative cost would mint allowance
    std::vector<Entry*> held;
    held.reserve(charges.size());
    std::optional<Refusal> refusal;
    std::optional<ThresholdEvent> exceeded;
    std::shared_ptr<const Handler> handler;
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      for (const Charge& charge : charges) {
        const BudgetSpec* spec = spec_of(charge.budget);
        if (!spec) continue;
        Entry& e = entry(charge.budget, charge.balance_key);
        if (position(e, *spec, now_ms)) wake |= mark_dirty(e);
        const bool usd_ok = !spec->usd_picodollars ||
                            e.spent_usd + e.reserved_usd + worst.usd <= *spec->usd_picodollars;
        const bool tokens_ok =
            !spec->tokens || e.spent_tokens + e.reserved_tokens + worst.tokens <= *spec->tokens;
        if (!usd_ok || !tokens_ok) {
          refusal = make_refusal(e, *spec, worst, usd_ok, tokens_ok, now_ms);
          if (!e.exceeded_fired) {
            e.exceeded_fired = true;
            wake |= mark_dirty(e);
            exceeded = make_event(e, *spec, ThresholdEvent::Kind::kExceeded, 100);
            handler = handler_;
          }
          break;
        }
        // A bucket has no window to end its "exceeded" episode: room again ends it.
        if (!is_calendar(spec->window) && e.exceeded_fired) {
          e.exceeded_fired = false;
          wake |= mark_dirty(e);
        }
        e.reserved_usd += worst.usd;
        e.reserved_tokens += worst.tokens;
        held.push_back(&e);
      }
      if (refusal) {
        for (Entry* e : held) {
          e->reserved_usd -= worst.usd;
          e->reserved_tokens -= worst.tokens;
        }
      }
    }
    if (wake) work_.notify_one();
    if (exceeded && handler && *handler) (*handler)(*exceeded);
    if (refusal) return std::move(*refusal);
    return Reservation(this, std::move(held), worst);
  }

  Reservation::Settlement settle(std::span<Entry* const> entries, Amount worst,
                                 std::optional<Amount> actual, int64_t now_ms) {
    if (actual) actual->usd = std::max<Picodollars>(0, actual->usd);
    std::vector<ThresholdEvent> events;
    std::shared_ptr<const Handler> handler;
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      for (Entry* e : entries) {
        e->reserved_usd -= worst.usd;
        e->reserved_tokens -= worst.tokens;
        const BudgetSpec* spec = actual ? spec_of(e->budget) : nullptr;
        if (!spec) continue;
        position(*e, *spec, now_ms);
        e->spent_usd = clamp64(Wide{e->spent_usd} + actual->usd);
        e->spent_tokens = clamp64(Wide{e->spent_tokens} + actual->tokens);
        for (const uint32_t t : spec->thresholds_percent) {
          if (t <= e->fired_percent) continue;
          if (!threshold_reached(*e, *spec, t)) break;
          e->fired_percent = t;
          events.push_back(make_event(*e, *spec, ThresholdEvent::Kind::kThreshold, t));
        }
        wake |= mark_dirty(*e);
      }
      if (!events.empty()) handler = handler_;
    }
    if (wake) work_.notify_one();
    if (handler && *handler) {
      for (const ThresholdEvent& event : events) (*handler)(event);
    }
    Reservation::Settlement result;
    if (actual) {
      result.overrun.usd = std::max<Picodollars>(0, actual->usd - worst.usd);
      result.overrun.tokens = actual->tokens > worst.tokens ? actual->tokens - worst.tokens : 0;
      result.exceeded_worst_case = result.overrun.usd > 0 || result.overrun.tokens > 0;
    }
    return result;
  }

  bool add_funds(std::string_view budget, std::string_view key, Amount amount, int64_t now_ms) {
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      const BudgetSpec* spec = spec_of(budget);
      if (!spec) return false;
      Entry& e = entry(budget, key);
      position(e, *spec, now_ms);
      e.spent_usd = clamp64(Wide{e.spent_usd} - amount.usd);
      e.spent_tokens = clamp64(Wide{e.spent_tokens} - amount.tokens);
      rearm(e, *spec);
      e.exceeded_fired = false;
      wake = mark_dirty(e);
    }
    if (wake) work_.notify_one();
    return true;
  }

  bool reset(std::string_view budget, std::string_view key, int64_t now_ms) {
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      const BudgetSpec* spec = spec_of(budget);
      if (!spec) return false;
      Entry& e = entry(budget, key);
      position(e, *spec, now_ms);
      e.spent_usd = 0;
      e.spent_tokens = 0;
      e.refill_rest_usd = 0;
      e.refill_rest_tokens = 0;
      e.fired_percent = 0;
      e.exceeded_fired = false;
      wake = mark_dirty(e);
    }
    if (wake) work_.notify_one();
    return true;
  }

  std::vector<Balance> balances(std::optional<std::string_view> budget,
                                std::optional<std::string_view> prefix, int64_t now_ms) const {
    std::vector<Balance> out;
    std::lock_guard lock(mutex_);
    for (const auto& [key, stored] : entries_) {
      if (budget && key.first != *budget) continue;
      if (prefix && !key.second.starts_with(*prefix)) continue;
      const BudgetSpec* spec = spec_of(key.first);
      if (!spec) continue;
      Entry e = stored;
      position(e, *spec, now_ms);
      Balance& b = out.emplace_back();
      b.budget = e.budget;
      b.balance_key = e.balance_key;
      b.window = spec->window;
      if (is_calendar(spec->window)) {
        const WindowBounds bounds = calendar_window(spec->window, now_ms);
        b.window_start_ms = bounds.start_ms;
        b.window_end_ms = bounds.end_ms;
      }
      b.limit_usd = spec->usd_picodollars;
      b.limit_tokens = spec->tokens;
      b.spent_usd = e.spent_usd;
      b.spent_tokens = e.spent_tokens;
      b.reserved_usd = clamp64(e.reserved_usd);
      b.reserved_tokens = static_cast<uint64_t>(std::max<Wide>(0, e.reserved_tokens));
      if (spec->usd_picodollars) {
        b.remaining_usd = clamp64(*spec->usd_picodollars - e.spent_usd - e.reserved_usd);
      }
      if (spec->tokens) {
        b.remaining_tokens = clamp64(Wide{*spec->tokens} - e.spent_tokens - e.reserved_tokens);
      }
    }
    return out;
  }

  bool flush() {
    if (!writer_.joinable()) return true;
    std::unique_lock lock(mutex_);
    const uint64_t target = changes_;
    ++flush_waiters_;
    work_.notify_one();
    while (written_ < target) {
      if (!failing_) {
        progress_.wait(lock);
        continue;
      }
      const auto deadline = failing_since_ + kFailingWaitLimit;
      if (Clock::now() >= deadline) break;
      progress_.wait_until(lock, deadline);
    }
    --flush_waiters_;
    return written_ >= target;
  }

 private:
  struct Row {
    std::string budget;
    std::string balance_key;
    BudgetWindow window;
    int64_t window_start_ms;
    Picodollars spent_usd;
    int64_t spent_tokens;
    uint32_t fired_percent;
    bool exceeded_fired;
  };

  const BudgetSpec* spec_of(std::string_view name) const {
    const auto it = specs_.find(name);
    return it == specs_.end() ? nullptr : &it->second;
  }

  Entry& entry(std::string_view budget, std::string_view key) {
    auto it = entries_.find(EntryView{budget, key});
    if (it == entries_.end()) {
      it = entries_.emplace(EntryKey{budget, key}, Entry{}).first;
      it->second.budget = budget;
      it->second.balance_key = key;
    }
    return it->second;
  }

  // Brings the entry to the spec's window at `now_ms`: rolls a calendar window, refills a
  // bucket. Returns whether anything that is persisted changed. Time going backwards (a clock
  // step) never rolls a window back.
  static bool position(Entry& e, const BudgetSpec& spec, int64_t now_ms) {
    if (!e.positioned || e.window != spec.window) {
      // A changed window kind keeps the spend, unless the old window is over anyway.
      if (e.positioned && is_calendar(e.window) &&
          now_ms >= calendar_window(e.window, e.window_start_ms).end_ms) {
        clear_window(e);
      }
      e.positioned = true;
      e.window = spec.window;
      e.window_start_ms =
          is_calendar(spec.window) ? calendar_window(spec.window, now_ms).start_ms : now_ms;
      e.refill_rest_usd = 0;
      e.refill_rest_tokens = 0;
      return true;
    }
    if (is_calendar(spec.window)) {
      const int64_t start = calendar_window(spec.window, now_ms).start_ms;
      if (start <= e.window_start_ms) return false;
      clear_window(e);
      e.window_start_ms = start;
      return true;
    }
    if (now_ms <= e.window_start_ms) return false;
    const int64_t elapsed = now_ms - e.window_start_ms;
    e.window_start_ms = now_ms;
    const Picodollars usd = e.spent_usd;
    const int64_t tokens = e.spent_tokens;
    refill(e.spent_usd, e.refill_rest_usd, spec.refill_picodollars, period_ms(spec), elapsed);
    refill(e.spent_tokens, e.refill_rest_tokens, token_refill_rate(spec), period_ms(spec), elapsed);
    // Only a changed level is worth a write: the stored (level, time) pair and the in-memory
    // one with its unwritten remainder describe the same bucket.
    if (usd == e.spent_usd && tokens == e.spent_tokens) return false;
    rearm(e, spec);
    return true;
  }

  static void clear_window(Entry& e) {
    e.spent_usd = 0;
    e.spent_tokens = 0;
    e.fired_percent = 0;
    e.exceeded_fired = false;
  }

  static Refusal make_refusal(const Entry& e, const BudgetSpec& spec, Amount worst, bool usd_ok,
                              bool tokens_ok, int64_t now_ms) {
    Refusal r;
    r.budget = e.budget;
    r.balance_key = e.balance_key;
    r.usd_exhausted = !usd_ok;
    r.tokens_exhausted = !tokens_ok;
    r.limit_usd = spec.usd_picodollars;
    r.limit_tokens = spec.tokens;
    r.spent_usd = e.spent_usd;
    r.spent_tokens = e.spent_tokens;
    r.reserved_usd = clamp64(e.reserved_usd);
    r.reserved_tokens = static_cast<uint64_t>(std::max<Wide>(0, e.reserved_tokens));
    r.requested = worst;

    // Per refused dimension: how much spend must go away for the request to fit, and whether
    // it can ever fit (a window or a refill brings spent down to zero at best, and a credit
    // from add_funds stays).
    struct Dimension {
      Wide spent, reserved, request, limit, rate;
    };
    std::vector<Dimension> refused;
    if (!usd_ok) {
      refused.push_back(
          {e.spent_usd, e.reserved_usd, worst.usd, *spec.usd_picodollars, spec.refill_picodollars});
    }
    if (!tokens_ok) {
      refused.push_back({e.spent_tokens, e.reserved_tokens, worst.tokens,
                         static_cast<Wide>(*spec.tokens), token_refill_rate(spec)});
    }
    int64_t wait_ms = 0;
    for (const Dimension& d : refused) {
      if (d.request > d.limit - std::min<Wide>(0, d.spent)) r.never_fits = true;
      // Only in-flight requests stand in the way: they settle within a request's time.
      if (d.spent + d.request <= d.limit) {
        wait_ms = std::max<int64_t>(wait_ms, 1000);
        continue;
      }
      if (is_calendar(spec.window)) {
        wait_ms = std::max(wait_ms, calendar_window(spec.window, now_ms).end_ms - now_ms);
        continue;
      }
      if (d.rate <= 0 || period_ms(spec) <= 0) {
        r.never_fits = true;
        continue;
      }
      const Wide needed = std::min(d.spent, d.spent + d.reserved + d.request - d.limit);
      wait_ms = std::max(wait_ms, clamp64((needed * period_ms(spec) + d.rate - 1) / d.rate));
    }
    r.retry_after_s = r.never_fits ? 0 : ceil_seconds(wait_ms);
    return r;
  }

  // Returns whether the writer must be woken (it sleeps while nothing is dirty).
  bool mark_dirty(Entry& e) {
    if (!db_) return false;
    ++changes_;
    if (e.dirty) return false;
    e.dirty = true;
    dirty_.push_back(&e);
    return dirty_.size() == 1;
  }

  std::string describe() const {
    return "budget ledger '" + path_ + "': " + sqlite3_errmsg(db_.get());
  }

  void run_writer() {
    pthread_setname_np(pthread_self(), "airlock-ledger");
    const Stmt upsert = prepare(db_.get(),
                                "INSERT OR REPLACE INTO balances (budget, balance_key, window, "
                                "window_start_ms, spent_usd, spent_tokens, fired_percent, "
                                "exceeded_fired) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    std::vector<Row> rows;
    auto delay = Clock::duration(kFirstRetryDelay);
    std::string last_error;
    for (;;) {
      uint64_t snapshot = 0;
      {
        std::unique_lock lock(mutex_);
        work_.wait(lock, [&] { return stopping_ || !dirty_.empty(); });
        if (dirty_.empty()) break;
        if (!stopping_ && flush_waiters_ == 0) {
          work_.wait_for(lock, kBatchDelay, [&] { return stopping_ || flush_waiters_ > 0; });
        }
        rows.clear();
        for (Entry* e : dirty_) {
          e->dirty = false;
          rows.push_back({e->budget, e->balance_key, e->window, e->window_start_ms, e->spent_usd,
                          e->spent_tokens, e->fired_percent, e->exceeded_fired});
        }
        dirty_.clear();
        snapshot = changes_;
      }
      std::string error;
      const bool ok = upsert && write(upsert.get(), rows, &error);
      if (!upsert) error = sqlite3_errmsg(db_.get());
      std::unique_lock lock(mutex_);
      if (ok) {
        written_ = std::max(written_, snapshot);
        if (std::exchange(failing_, false)) {
          std::fprintf(stderr, "airlock budget: ledger writes resumed\n");
        }
        delay = kFirstRetryDelay;
        lock.unlock();
        progress_.notify_all();
        continue;
      }
      // Put the rows back (their newest values are copied again on the next attempt).
      for (const Row& row : rows) {
        Entry& e = entry(row.budget, row.balance_key);
        if (!e.dirty) {
          e.dirty = true;
          dirty_.push_back(&e);
        }
      }
      const auto now = Clock::now();
      if (!failing_) {
        failing_ = true;
        failing_since_ = now;
        std::fprintf(stderr, "airlock budget: cannot write %s (%s); retrying\n", path_.c_str(),
                     error.c_str());
      }
      last_error = error;
      if (stopping_ && now >= failing_since_ + kFailingWaitLimit) break;
      progress_.notify_all();
      // Shutdown cuts the backoff short once, so its deadline starts counting at once.
      const bool was_stopping = stopping_;
      work_.wait_for(lock, delay, [&] { return !was_stopping && stopping_; });
      delay = std::min<Clock::duration>(delay * 2, kMaxRetryDelay);
    }
    std::lock_guard lock(mutex_);
    if (!dirty_.empty()) {
      std::fprintf(stderr,
                   "airlock budget: shutting down with %s unwritable (%s); %zu balance(s) not "
                   "saved\n",
                   path_.c_str(), last_error.c_str(), dirty_.size());
    }
  }

  bool write(sqlite3_stmt* upsert, const std::vector<Row>& rows, std::string* error) {
    sqlite3* db = db_.get();
    if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
      *error = sqlite3_errmsg(db);
      return false;
    }
    for (const Row& row : rows) {
      int rc = sqlite3_bind_text64(upsert, 1, row.budget.data(), row.budget.size(), SQLITE_STATIC,
                                   SQLITE_UTF8);
      if (rc == SQLITE_OK) {
        rc = sqlite3_bind_text64(upsert, 2, row.balance_key.data(), row.balance_key.size(),
                                 SQLITE_STATIC, SQLITE_UTF8);
      }
      if (rc == SQLITE_OK) rc = sqlite3_bind_int(upsert, 3, static_cast<int>(row.window));
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(upsert, 4, row.window_start_ms);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(upsert, 5, row.spent_usd);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(upsert, 6, row.spent_tokens);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(upsert, 7, row.fired_percent);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int(upsert, 8, row.exceeded_fired ? 1 : 0);
      if (rc == SQLITE_OK) rc = sqlite3_step(upsert) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
      sqlite3_reset(upsert);
      sqlite3_clear_bindings(upsert);
      if (rc != SQLITE_OK) {
        *error = sqlite3_errmsg(db);
        exec(db, "ROLLBACK");
        return false;
      }
    }
    if (exec(db, "COMMIT") != SQLITE_OK) {
      *error = sqlite3_errmsg(db);
      if (!sqlite3_get_autocommit(db)) exec(db, "ROLLBACK");
      return false;
    }
    return true;
  }

  const std::string path_;
  const Db db_;  // used by load() before the writer starts, then by the writer only

  mutable std::mutex mutex_;
  std::map<std::string, BudgetSpec, std::less<>> specs_;
  // Never erased, so Reservations can point at entries across policy swaps.
  std::map<EntryKey, Entry, EntryLess> entries_;
  std::shared_ptr<const Handler> handler_;
  std::vector<Entry*> dirty_;
  uint64_t changes_ = 0;  // persisted changes so far
  uint64_t written_ = 0;  // changes_ as of the last successful write
  int flush_waiters_ = 0;
  bool failing_ = false;
  Clock::time_point failing_since_;
  bool stopping_ = false;
  std::condition_variable work_;      // to the writer: something dirty, a flush, or stopping
  std::condition_variable progress_;  // to flush(): written, or failing
  std::thread writer_;                // last, so it starts after every member it uses exists
};

}  // namespace detail

Reservation::Reservation(detail::Core* core, std::vector<detail::Entry*> entries, Amount worst_case)
    : core_(core), entries_(std::move(entries)), worst_case_(worst_case) {}

Reservation::Reservation(Reservation&& other) noexcept
    : core_(std::exchange(other.core_, nullptr)),
      entries_(std::move(other.entries_)),
      worst_case_(other.worst_case_) {}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    release();
    core_ = std::exchange(other.core_, nullptr);
    entries_ = std::move(other.entries_);
    worst_case_ = other.worst_case_;
  }
  return *this;
}

Reservation::~Reservation() {
  release();
}

Reservation::Settlement Reservation::settle(Amount actual, int64_t now_ms) {
  if (!core_) return {};
  detail::Core* core = std::exchange(core_, nullptr);
  return core->settle(entries_, worst_case_, actual, now_ms);
}

void Reservation::release() {
  if (!core_) return;
  detail::Core* core = std::exchange(core_, nullptr);
  core->settle(entries_, worst_case_, std::nullopt, 0);
}

Ledger::Ledger(std::unique_ptr<detail::Core> core) : core_(std::move(core)) {}

Ledger::~Ledger() = default;

std::unique_ptr<Ledger> Ledger::open(const std::string& sqlite_path, std::string* error) {
  std::string local_error;
  std::string& err = error ? *error : local_error;
  if (sqlite_path.empty()) {
    return std::make_unique<Ledger>(std::make_unique<detail::Core>("", nullptr));
  }
  // Balances name users and their spend: owner-only. SQLite gives -wal and -shm the same mode.
  const int fd = ::open(sqlite_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    err = "cannot open budget ledger '" + sqlite_path + "': " + std::strerror(errno);
    return nullptr;
  }
  ::close(fd);
  Db db = sqlite::open(kWhat, sqlite_path, SQLITE_OPEN_READWRITE, &err);
  if (!db || !sqlite::configure_writer(kWhat, sqlite_path, db.get(), &err)) return nullptr;
  if (exec(db.get(), kSchema) != SQLITE_OK ||
      exec(db.get(), ("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str()) !=
          SQLITE_OK) {
    err = sqlite::describe(kWhat, sqlite_path, db.get());
    return nullptr;
  }
  auto core = std::make_unique<detail::Core>(sqlite_path, std::move(db));
  if (!core->load(&err)) return nullptr;
  core->start_writer();
  return std::make_unique<Ledger>(std::move(core));
}

void Ledger::set_budgets(std::vector<policy::BudgetSpec> budgets) {
  core_->set_budgets(std::move(budgets));
}

void Ledger::set_event_handler(std::function<void(const ThresholdEvent&)> handler) {
  core_->set_handler(std::move(handler));
}

ReserveResult Ledger::reserve(std::span<const Charge> charges, Amount worst_case, int64_t now_ms) {
  return core_->reserve(charges, worst_case, now_ms);
}

bool Ledger::add_funds(std::string_view budget, std::string_view balance_key, Amount amount,
                       int64_t now_ms) {
  return core_->add_funds(budget, balance_key, amount, now_ms);
}

bool Ledger::reset(std::string_view budget, std::string_view balance_key, int64_t now_ms) {
  return core_->reset(budget, balance_key, now_ms);
}

std::vector<Balance> Ledger::balances(std::optional<std::string_view> budget,
                                      std::optional<std::string_view> key_prefix,
                                      int64_t now_ms) const {
  return core_->balances(budget, key_prefix, now_ms);
}

bool Ledger::flush() {
  return core_->flush();
}

}  // namespace airlock::control::budget
