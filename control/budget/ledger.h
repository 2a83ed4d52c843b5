// Budget balances: what each caller has spent per budget and window, reserved up front for every
// request at its worst-case cost and settled at its actual cost, so that concurrent requests can
// never together overspend a budget (as long as each stays within its worst case). Balances are
// kept in memory behind one mutex and written to SQLite by a background thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "control/store/store.h"
#include "policy/document.h"

namespace airlock::control::budget {

// A cost in both dimensions a budget can limit.
struct Amount {
  Picodollars usd = 0;
  uint64_t tokens = 0;  // input + output + cache read + cache write
  friend bool operator==(const Amount&, const Amount&) = default;
};

// One balance a request is charged to: Document::BudgetCharge by name.
struct Charge {
  std::string budget;
  std::string balance_key;  // e.g. "team-daily|user:alice"
};

// Why a reservation was refused: the first balance (in charge order) that had no room.
struct Refusal {
  std::string budget;
  std::string balance_key;
  bool usd_exhausted = false;     // the dollar limit refused
  bool tokens_exhausted = false;  // the token limit refused
  // Seconds until retrying can succeed: until the window rolls, or until the bucket has refilled
  // enough; 1 when the balance's own spend leaves room and only in-flight requests fill it.
  int64_t retry_after_s = 0;
  // The request alone is larger than the limit: no wait helps (a smaller output cap might).
  bool never_fits = false;
  std::optional<Picodollars> limit_usd;
  std::optional<uint64_t> limit_tokens;
  Picodollars spent_usd = 0;
  int64_t spent_tokens = 0;
  Picodollars reserved_usd = 0;
  uint64_t reserved_tokens = 0;
  Amount requested;
};

struct ThresholdEvent {
  enum class Kind {
    kThreshold,  // settled spend reached `percent` of a limit
    kExceeded,   // a reservation was refused (once per balance per window)
  };
  Kind kind = Kind::kThreshold;
  std::string budget;
  std::string balance_key;
  uint32_t percent = 0;  // kThreshold: the threshold crossed; kExceeded: 100
  Picodollars spent_usd = 0;
  int64_t spent_tokens = 0;
  std::optional<Picodollars> limit_usd;
  std::optional<uint64_t> limit_tokens;
  int64_t window_start_ms = 0;  // 0 for a bucket
};

struct Balance {
  std::string budget;
  std::string balance_key;
  policy::BudgetWindow window = policy::BudgetWindow::kDay;
  int64_t window_start_ms = 0;  // 0 for a bucket
  int64_t window_end_ms = 0;    // 0 for a bucket
  std::optional<Picodollars> limit_usd;
  std::optional<uint64_t> limit_tokens;
  // Negative after add_funds credited more than was spent.
  Picodollars spent_usd = 0;
  int64_t spent_tokens = 0;
  Picodollars reserved_usd = 0;
  uint64_t reserved_tokens = 0;
  // limit − spent − reserved, for the limited dimensions.
  std::optional<Picodollars> remaining_usd;
  std::optional<int64_t> remaining_tokens;
};

namespace detail {
struct Entry;
class Core;
}  // namespace detail

// A reservation held on one or more balances. Destroying it without settle() releases it, so a
// request that fails before any token is billed costs nothing. It must not outlive its Ledger.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation();

  struct Settlement {
    // actual − worst case, per dimension, when the request cost more than it reserved (it is
    // charged anyway: the provider billed it).
    Amount overrun;
    bool exceeded_worst_case = false;
  };
  // Moves the worst case out of `reserved` and charges `actual` to every balance. Once only;
  // later calls do nothing.
  Settlement settle(Amount actual, int64_t now_ms);
  // Gives the reservation back without charging anything.
  void release();

  bool active() const { return core_ != nullptr; }
  const Amount& worst_case() const { return worst_case_; }

 private:
  friend class detail::Core;
  Reservation(detail::Core* core, std::vector<detail::Entry*> entries, Amount worst_case);

  detail::Core* core_ = nullptr;
  std::vector<detail::Entry*> entries_;
  Amount worst_case_;
};

using ReserveResult = std::variant<Reservation, Refusal>;

class Ledger {
 public:
  // An empty path keeps balances in memory only. Otherwise the SQLite file is created owner-only
  // in WAL mode and its balances loaded; they stay dormant until set_budgets names their budget.
  // nullptr with *error on failure.
  static std::unique_ptr<Ledger> open(const std::string& sqlite_path, std::string* error);

  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;
  // Flushes every balance to disk.
  ~Ledger();

  // The budgets of a new policy. A budget keeping its name keeps its balances (a changed window
  // kind keeps the spend and starts the new kind's window now); a removed one stops charging and
  // its balances are kept, dormant, in case it comes back.
  void set_budgets(std::vector<policy::BudgetSpec> budgets);

  // Called outside the ledger's lock, from the thread that settled or was refused; must be
  // thread-safe and quick (queue a webhook, do not send it).
  void set_event_handler(std::function<void(const ThresholdEvent&)> handler);

  // All or nothing: reserves `worst_case` on every charged balance only if each of them has
  // spent + reserved + worst_case <= limit in every limited dimension. Charges naming a budget
  // the policy does not have are ignored.
  ReserveResult reserve(std::span<const Charge> charges, Amount worst_case, int64_t now_ms);

  // Credit for the current window (bucket: on top of its level): lowers spent, possibly below
  // zero. False when the budget is not in the policy.
  bool add_funds(std::string_view budget, std::string_view balance_key, Amount amount,
                 int64_t now_ms);
  // Spent back to zero and thresholds re-armed (a bucket is full again); in-flight reservations
  // stay. False when the budget is not in the policy.
  bool reset(std::string_view budget, std::string_view balance_key, int64_t now_ms);

  // Balances of the policy's budgets as of `now_ms` (a rolled window shows zero spent), sorted by
  // budget then key.
  std::vector<Balance> balances(std::optional<std::string_view> budget,
                                std::optional<std::string_view> key_prefix, int64_t now_ms) const;

  // Blocks until every change made before the call is on disk. False when the database kept
  // failing (the changes stay queued and are retried).
  bool flush();

  // For open(); the core cannot be built elsewhere.
  explicit Ledger(std::unique_ptr<detail::Core> core);

 private:
  std::unique_ptr<detail::Core> core_;
};

// Start and end (exclusive) of the calendar window containing `now_ms`, in UTC.
struct WindowBounds {
  int64_t start_ms = 0;
  int64_t end_ms = 0;
};
WindowBounds calendar_window(policy::BudgetWindow window, int64_t now_ms);

}  // namespace airlock::control::budget
