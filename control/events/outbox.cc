// The outbox in three parts. publish() appends to an in-memory queue. A writer thread owns the
// writing SQLite connection and commits queued events (fanned out to one `deliveries` row per
// subscribed webhook) and attempt results in batches. A dispatcher thread runs its own
// io_context: a scheduler reads due deliveries from the database, so a backlog costs disk, not
// memory, and POSTs them through an UpstreamPool with bounded concurrency.
#include "control/events/outbox.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <thread>
#include <utility>
#include <variant>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "control/http/upstream.h"
#include "control/sqlite/sqlite.h"

namespace airlock::control::events {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

using sqlite::bind_params;
using sqlite::bind_text;
using sqlite::column_text;
using sqlite::Db;
using sqlite::exec;
using sqlite::Param;
using sqlite::pragma;
using sqlite::prepare;
using sqlite::Stmt;

// How errors name this database.
constexpr std::string_view kWhat = "outbox";

constexpr int kSchemaVersion = 2;
// The version lives in a table of its own, not PRAGMA user_version, so the outbox may share a
// database file with the request log.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE outbox (
  id TEXT PRIMARY KEY NOT NULL,
  type TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  payload TEXT NOT NULL
);
CREATE TABLE deliveries (
  event_id TEXT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
  url TEXT NOT NULL,
  state INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  next_attempt_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (event_id, url)
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_ms);
CREATE TABLE delivery_log (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  url TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  status INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  error TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  latency_ms INTEGER NOT NULL
);
CREATE INDEX delivery_log_event ON delivery_log (event_id, seq);
)sql";
// Version 2: what retention prunes by.
constexpr const char* kSchemaV2 = R"sql(
CREATE INDEX IF NOT EXISTS outbox_time ON outbox (time_ms);
CREATE INDEX IF NOT EXISTS delivery_log_time ON delivery_log (time_ms);
)sql";

// deliveries.state
constexpr int kPending = 0;
constexpr int kDelivered = 1;
constexpr int kFailed = 2;

constexpr size_t kBatchCommands = 256;
constexpr auto kFirstWriteRetry = 50ms;
constexpr auto kMaxWriteRetry = 2s;
// How long shutdown keeps retrying a database that cannot be written.
constexpr auto kFailingWaitLimit = 10s;
constexpr uint32_t kMaxPageSize = 1000;
// A receiver's reply is read (so the connection can be reused) but only this much is kept, for
// the error text, and a reply longer than kMaxReplyBytes is cut off.
constexpr size_t kErrorSnippet = 200;
constexpr size_t kMaxReplyBytes = size_t{64} * 1024;
// One sweep deletes at most this many rows per table, so pruning a long backlog never holds the
// write lock for long; the next sweeps take the rest.
constexpr int64_t kPruneBatchRows = 10'000;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// " AND <column> [NOT] IN (?, ?, ...)" for `urls`; "" for an empty NOT IN, which matches all.
std::string url_filter(const char* column, bool negate, const std::vector<std::string>& urls,
                       std::vector<Param>& params) {
  if (urls.empty()) return negate ? "" : " AND 0";
  std::string sql = std::string(" AND ") + column + (negate ? " NOT IN (" : " IN (");
  for (size_t i = 0; i < urls.size(); ++i) {
    sql += i == 0 ? "?" : ", ?";
    params.emplace_back(urls[i]);
  }
  return sql + ")";
}

std::optional<DeliveryOutcome> parse_outcome(std::string_view text) {
  for (auto outcome :
       {DeliveryOutcome::kDelivered, DeliveryOutcome::kRetry, DeliveryOutcome::kFailed}) {
    if (delivery_outcome_name(outcome) == text) return outcome;
  }
  return std::nullopt;
}

// A receiver's reply as it may appear in the log: printable ASCII only, so the admin API can
// serve it as JSON whatever bytes the receiver sent.
std::string printable(std::string_view text) {
  std::string out(text.substr(0, kErrorSnippet));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = ' ';
  }
  return out;
}

struct Webhook {
  std::string url;
  http::Url target;
  Secret secret;
  std::vector<std::string> events;

  bool wants(std::string_view type) const {
    return events.empty() || std::find(events.begin(), events.end(), type) != events.end();
  }
};

struct Webhooks {
  std::vector<Webhook> items;

  const Webhook* find(std::string_view url) const {
    for (const Webhook& hook : items) {
      if (hook.url == url) return &hook;
    }
    return nullptr;
  }
  std::vector<std::string> urls() const {
    std::vector<std::string> out;
    for (const Webhook& hook : items) out.push_back(hook.url);
    return out;
  }
  std::vector<const Secret*> secrets() const {
    std::vector<const Secret*> out;
    for (const Webhook& hook : items) out.push_back(&hook.secret);
    return out;
  }
};

struct PublishCommand {
  Event event;
};

struct ResultCommand {
  std::string event_id;
  std::string event_type;
  std::string url;
  uint32_t attempt = 0;
  int status = 0;
  DeliveryOutcome outcome = DeliveryOutcome::kRetry;
  std::string error;
  int64_t time_ms = 0;
  int64_t latency_ms = 0;
  int64_t next_attempt_ms = 0;
};

// Fails the pending deliveries older than cutoff_ms to URLs no webhook lists any more, and
// deletes what is past retention (prune_before_ms; none when 0).
struct ExpireCommand {
  std::vector<std::string> configured_urls;
  int64_t cutoff_ms = 0;
  int64_t prune_before_ms = 0;
};

using Command = std::variant<PublishCommand, ResultCommand, ExpireCommand>;

using DeliveryKey = std::pair<std::string, std::string>;  // event id, url

// A delivery the scheduler found due.
struct Due {
  std::string event_id;
  std::string url;
  uint32_t attempts = 0;
  int64_t created_ms = 0;
  std::string type;
  std::string payload;
};

struct Writer {
  Db db;
  Stmt insert_event;
  Stmt insert_delivery;
  Stmt insert_log;
  Stmt update_delivery;
};

class OutboxImpl final : public Outbox {
 public:
  OutboxImpl(std::string path, OutboxOptions options, Writer writer, Db reader, Db scheduler_db,
             std::string* error)
      : path_(std::move(path)),
        options_(std::move(options)),
        writer_(std::move(writer)),
        reader_(std::move(reader)),
        scheduler_db_(std::move(scheduler_db)),
        rng_(std::random_device{}()) {
    http::UpstreamOptions upstream;
    upstream.connect_timeout = options_.connect_timeout;
    upstream.first_byte_timeout = options_.response_timeout;
    upstream.idle_timeout = options_.response_timeout;
    upstream.ca_file = options_.ca_file;
    upstream.max_idle_per_origin = std::max<size_t>(options_.max_in_flight, 1);
    pool_ = http::UpstreamPool::create(std::move(upstream), error);
    if (!pool_) return;
    writer_thread_ = std::thread([this] { run_writer(); });
    asio::co_spawn(io_, schedule(), asio::detached);
    io_thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "airlock-hooks");
      io_.run();
    });
  }

  bool started() const { return pool_ != nullptr; }

  ~OutboxImpl() override {
    if (io_thread_.joinable()) stop_dispatcher();
    if (writer_thread_.joinable()) {
      {
        std::lock_guard lock(mutex_);
        stopping_ = true;
      }
      work_.notify_all();
      writer_thread_.join();
    }
    // The pool's idle connections belong to io_; they go first.
    pool_.reset();
  }

  void publish(Event event) override {
    {
      std::lock_guard lock(mutex_);
      if (queued_events_ >= options_.max_queued_events) {
        // Counted, and reported once per streak: blocking here would stall the request path.
        if (dropped_++ == 0 || !dropping_) {
          std::fprintf(stderr, "airlock events: outbox queue full; dropping events\n");
        }
        dropping_ = true;
        return;
      }
      dropping_ = false;
      queue_.emplace_back(PublishCommand{std::move(event)});
      ++queued_events_;
      ++enqueued_;
    }
    work_.notify_one();
  }

  bool wants(std::string_view type) const override {
    std::lock_guard lock(webhooks_mutex_);
    return std::any_of(webhooks_->items.begin(), webhooks_->items.end(),
                       [&](const Webhook& hook) { return hook.wants(type); });
  }

  bool set_webhooks(std::vector<Subscription> subscriptions, std::string* error) override {
    auto webhooks = std::make_shared<Webhooks>();
    for (Subscription& subscription : subscriptions) {
      std::string url_error;
      std::optional<http::Url> target = http::Url::parse(subscription.url, &url_error);
      if (!target) {
        if (error) *error = "webhook URL '" + subscription.url + "': " + url_error;
        return false;
      }
      if (webhooks->find(subscription.url)) continue;
      webhooks->items.push_back({std::move(subscription.url), std::move(*target),
                                 std::move(subscription.secret), std::move(subscription.events)});
    }
    {
      std::lock_guard lock(webhooks_mutex_);
      webhooks_ = std::move(webhooks);
    }
    asio::post(io_, [this] { wake(); });
    return true;
  }

  void flush() override {
    std::unique_lock lock(mutex_);
    const uint64_t target = enqueued_;
    while (written_ < target) {
      if (!failing_) {
        progress_.wait(lock);
        continue;
      }
      const auto deadline = failing_since_ + kFailingWaitLimit;
      if (SteadyClock::now() >= deadline) return;
      progress_.wait_until(lock, deadline);
    }
  }

  std::vector<DeliveryAttempt> deliveries(const DeliveryQuery& query, std::string* error) override {
    if (error) error->clear();
    std::lock_guard lock(reader_mutex_);
    std::string sql =
        "SELECT seq, event_id, event_type, url, attempt, status, outcome, error, time_ms, "
        "latency_ms FROM delivery_log WHERE 1";
    std::vector<Param> params;
    if (query.event_id) {
      sql += " AND event_id = ?";
      params.emplace_back(*query.event_id);
    }
    if (query.url) {
      sql += " AND url = ?";
      params.emplace_back(*query.url);
    }
    if (query.outcome) {
      sql += " AND outcome = ?";
      params.emplace_back(std::string(delivery_outcome_name(*query.outcome)));
    }
    if (query.since_ms) {
      sql += " AND time_ms >= ?";
      params.emplace_back(*query.since_ms);
    }
    if (query.before_seq) {
      sql += " AND seq < ?";
      params.emplace_back(*query.before_seq);
    }
    sql += " ORDER BY seq DESC LIMIT ?";
    params.emplace_back(int64_t{std::clamp<uint32_t>(query.limit, 1, kMaxPageSize)});

    const Stmt stmt = prepare(reader_.get(), sql);
    if (!stmt || !bind_params(stmt.get(), params)) {
      read_failed(error);
      return {};
    }
    std::vector<DeliveryAttempt> rows;
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      sqlite3_stmt* s = stmt.get();
      DeliveryAttempt& row = rows.emplace_back();
      row.seq = sqlite3_column_int64(s, 0);
      row.event_id = column_text(s, 1);
      row.event_type = column_text(s, 2);
      row.url = column_text(s, 3);
      row.attempt = static_cast<uint32_t>(sqlite3_column_int64(s, 4));
      row.status = sqlite3_column_int(s, 5);
      row.outcome = parse_outcome(column_text(s, 6)).value_or(DeliveryOutcome::kRetry);
      row.error = column_text(s, 7);
      row.time_ms = sqlite3_column_int64(s, 8);
      row.latency_ms = sqlite3_column_int64(s, 9);
    }
    if (rc != SQLITE_DONE) {
      read_failed(error);
      return {};
    }
    return rows;
  }

  OutboxStats stats(std::string* error) override {
    if (error) error->clear();
    OutboxStats stats;
    {
      std::lock_guard lock(mutex_);
      stats.dropped = dropped_;
    }
    std::lock_guard lock(reader_mutex_);
    const Stmt stmt = prepare(reader_.get(), "SELECT state, COUNT(*) FROM deliveries GROUP BY 1");
    if (!stmt) {
      read_failed(error);
      return stats;
    }
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      const auto count = static_cast<uint64_t>(sqlite3_column_int64(stmt.get(), 1));
      switch (sqlite3_column_int(stmt.get(), 0)) {
        case kPending:
          stats.pending = count;
          break;
        case kDelivered:
          stats.delivered = count;
          break;
        case kFailed:
          stats.failed = count;
          break;
      }
    }
    if (rc != SQLITE_DONE) read_failed(error);
    return stats;
  }

 private:
  void read_failed(std::string* error) const {
    if (error) *error = std::string("outbox query failed: ") + sqlite3_errmsg(reader_.get());
  }

  std::shared_ptr<const Webhooks> webhooks() const {
    std::lock_guard lock(webhooks_mutex_);
    return webhooks_;
  }

  void enqueue(Command command) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(command));
      ++enqueued_;
    }
    work_.notify_one();
  }

  // ---- Dispatcher: everything below runs on the io thread unless noted. ----

  // Called from the destructor's thread: no new POSTs start; those in flight get stop_grace to
  // finish (their results are then persisted by the writer, which stops later).
  void stop_dispatcher() {
    asio::post(io_, [this] {
      dispatch_stopping_ = true;
      timer_.cancel();
      {
        std::lock_guard lock(sending_mutex_);
        stop_seen_ = true;
      }
      sending_done_.notify_all();
    });
    {
      // Once the scheduler has seen the stop, sending_ can only fall.
      std::unique_lock lock(sending_mutex_);
      sending_done_.wait_for(lock, options_.stop_grace,
                             [this] { return stop_seen_ && sending_ == 0; });
    }
    io_.stop();
    io_thread_.join();
  }

  void wake() {
    wake_pending_ = true;
    timer_.cancel();
  }

  asio::awaitable<void> schedule() {
    auto next_sweep = SteadyClock::now() + options_.sweep_interval;
    while (!dispatch_stopping_) {
      wake_pending_ = false;
      const std::shared_ptr<const Webhooks> hooks = webhooks();
      const std::vector<std::string> urls = hooks->urls();
      // One instant for both queries below: a delivery falling due between them would be neither
      // launched nor waited for, and would sit until the next sweep.
      const int64_t now = now_ms();
      if (SteadyClock::now() >= next_sweep) {
        next_sweep = SteadyClock::now() + options_.sweep_interval;
        const int64_t prune_before =
            options_.retention.count() > 0 ? now - options_.retention.count() : 0;
        enqueue(ExpireCommand{urls, now - options_.max_age.count(), prune_before});
      }
      launch_due(urls, now);
      auto wake_at = next_sweep;
      if (const std::optional<int64_t> next = next_due_ms(urls, now)) {
        const auto in = std::chrono::milliseconds(std::max<int64_t>(*next - now_ms(), 0));
        wake_at = std::min(wake_at, SteadyClock::now() + in);
      }
      if (wake_pending_) continue;
      timer_.expires_at(wake_at);
      boost::system::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  void launch_due(const std::vector<std::string>& urls, int64_t now) {
    size_t sending;
    {
      std::lock_guard lock(sending_mutex_);
      sending = sending_;
    }
    if (urls.empty() || sending >= options_.max_in_flight) return;
    const size_t free = options_.max_in_flight - sending;
    // Deliveries whose result is not yet committed still look due; fetch enough to skip them.
    std::vector<Due> due =
        due_deliveries(urls, static_cast<int64_t>(free + in_flight_.size()), now);
    size_t launched = 0;
    for (Due& delivery : due) {
      if (launched == free) break;
      if (!in_flight_.insert({delivery.event_id, delivery.url}).second) continue;
      ++launched;
      {
        std::lock_guard lock(sending_mutex_);
        ++sending_;
      }
      asio::co_spawn(io_, attempt(std::move(delivery)), asio::detached);
    }
  }

  std::vector<Due> due_deliveries(const std::vector<std::string>& urls, int64_t limit,
                                  int64_t now) {
    std::vector<Param> params;
    params.emplace_back(now);
    std::string sql =
        "SELECT d.event_id, d.url, d.attempts, d.created_ms, o.type, o.payload FROM deliveries d "
        "JOIN outbox o ON o.id = d.event_id WHERE d.state = 0 AND d.next_attempt_ms <= ?";
    sql += url_filter("d.url", false, urls, params);
    sql += " ORDER BY d.next_attempt_ms LIMIT ?";
    params.emplace_back(limit);
    std::vector<Due> due;
    const Stmt stmt = prepare(scheduler_db_.get(), sql);
    if (!stmt || !bind_params(stmt.get(), params)) return due;
    while (sqlite3_step(stmt.get()) == SQLITE_ROW) {
      sqlite3_stmt* s = stmt.get();
      due.push_back({column_text(s, 0), column_text(s, 1),
                     static_cast<uint32_t>(sqlite3_column_int64(s, 2)), sqlite3_column_int64(s, 3),
                     column_text(s, 4), column_text(s, 5)});
    }
    return due;
  }

  std::optional<int64_t> next_due_ms(const std::vector<std::string>& urls, int64_t now) {
    if (urls.empty()) return std::nullopt;
    std::vector<Param> params;
    params.emplace_back(now);
    std::string sql =
        "SELECT MIN(next_attempt_ms) FROM deliveries WHERE state = 0 AND next_attempt_ms > ?";
    sql += url_filter("url", false, urls, params);
    const Stmt stmt = prepare(scheduler_db_.get(), sql);
    if (!stmt || !bind_params(stmt.get(), params) || sqlite3_step(stmt.get()) != SQLITE_ROW ||
        sqlite3_column_type(stmt.get(), 0) == SQLITE_NULL) {
      return std::nullopt;
    }
    return sqlite3_column_int64(stmt.get(), 0);
  }

  std::chrono::milliseconds backoff(uint32_t failures) {
    auto delay = options_.first_retry;
    for (uint32_t i = 1; i < failures && delay < options_.max_retry; ++i) delay *= 2;
    delay = std::min(delay, options_.max_retry);
    // Jitter spreads the retries of many events that failed together (a receiver outage).
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    return std::chrono::milliseconds(
        static_cast<int64_t>(static_cast<double>(delay.count()) * jitter(rng_)));
  }

  asio::awaitable<void> attempt(Due due) {
    const std::shared_ptr<const Webhooks> hooks = webhooks();
    const Webhook* hook = hooks->find(due.url);
    if (hook == nullptr) {
      // Removed by a policy swap since the query: nothing was sent, nothing to record.
      in_flight_.erase({due.event_id, due.url});
      attempt_finished();
      co_return;
    }
    const int64_t unix_seconds = now_ms() / 1000;
    http::Request request{bhttp::verb::post, "", 11};
    request.set(bhttp::field::content_type, "application/json");
    request.set(bhttp::field::user_agent, "airlock-webhooks");
    request.set("airlock-event-id", due.event_id);
    request.set("airlock-event-type", due.type);
    request.set("airlock-signature",
                sign_webhook(hook->secret.reveal(), due.payload, unix_seconds));
    request.body() = due.payload;

    auto status = std::make_shared<unsigned>(0);
    auto reply = std::make_shared<std::string>();
    http::OnHeaders on_headers = [status](const http::ResponseHeader& header,
                                          bool) -> asio::awaitable<bool> {
      *status = header.result_int();
      co_return true;
    };
    http::OnBody on_body = [reply](std::string_view data, bool) -> asio::awaitable<bool> {
      if (reply->size() + data.size() > kMaxReplyBytes) co_return false;
      reply->append(data);
      co_return true;
    };
    const auto started = SteadyClock::now();
    const http::UpstreamResult result = co_await pool_->send(
        hook->target, std::move(request), std::move(on_headers), std::move(on_body));
    const int64_t latency_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started).count();

    // A 2xx whose reply was cut for length still counts: the receiver has accepted the event.
    const bool answered =
        result.error == http::UpstreamResult::Error::kNone ||
        (result.error == http::UpstreamResult::Error::kCancelled && result.headers_received);
    const bool delivered = answered && *status / 100 == 2;
    ResultCommand outcome;
    outcome.event_id = due.event_id;
    outcome.event_type = due.type;
    outcome.url = due.url;
    outcome.attempt = due.attempts + 1;
    outcome.status = result.headers_received ? static_cast<int>(*status) : 0;
    outcome.time_ms = now_ms();
    outcome.latency_ms = latency_ms;
    if (delivered) {
      outcome.outcome = DeliveryOutcome::kDelivered;
    } else {
      std::string error;
      if (answered) {
        error = "HTTP " + std::to_string(*status);
        if (!reply->empty()) error += ": " + printable(*reply);
      } else {
        error = std::string(http::upstream_error_name(result.error)) + ": " + result.message;
      }
      const std::vector<const Secret*> secrets = hooks->secrets();
      outcome.error = redact(error, secrets);
      outcome.next_attempt_ms = outcome.time_ms + backoff(outcome.attempt).count();
      const bool expired = outcome.next_attempt_ms > due.created_ms + options_.max_age.count();
      outcome.outcome = expired ? DeliveryOutcome::kFailed : DeliveryOutcome::kRetry;
    }
    // The key leaves in_flight_ once the writer has committed the result (see settle()).
    enqueue(std::move(outcome));
    attempt_finished();
  }

  void attempt_finished() {
    {
      std::lock_guard lock(sending_mutex_);
      --sending_;
    }
    sending_done_.notify_all();
    wake();
  }

  // Posted by the writer once results are committed, so the scheduler's next query sees them.
  void settle(const std::vector<DeliveryKey>& keys) {
    for (const DeliveryKey& key : keys) in_flight_.erase(key);
    wake();
  }

  // ---- Writer thread. ----

  void run_writer() {
    pthread_setname_np(pthread_self(), "airlock-outbox");
    std::vector<Command> batch;
    batch.reserve(kBatchCommands);
    size_t lost = 0;
    std::string last_error;
    for (;;) {
      batch.clear();
      size_t events = 0;
      {
        std::unique_lock lock(mutex_);
        work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) break;
        while (!queue_.empty() && batch.size() < kBatchCommands) {
          if (std::holds_alternative<PublishCommand>(queue_.front())) ++events;
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        queued_events_ -= events;
      }
      if (lost > 0 || !write_with_retry(batch, &last_error)) lost += batch.size();
      {
        std::lock_guard lock(mutex_);
        written_ += batch.size();
      }
      progress_.notify_all();
      after_commit(batch);
    }
    if (lost > 0) {
      std::fprintf(stderr,
                   "airlock events: shutting down with the outbox %s unwritable (%s); %zu "
                   "event(s) or result(s) not written\n",
                   path_.c_str(), last_error.c_str(), lost);
    }
  }

  void after_commit(std::vector<Command>& batch) {
    std::vector<DeliveryKey> settled;
    for (Command& command : batch) {
      if (auto* result = std::get_if<ResultCommand>(&command)) {
        settled.emplace_back(std::move(result->event_id), std::move(result->url));
      }
    }
    asio::post(io_, [this, settled = std::move(settled)] { settle(settled); });
  }

  // Retries with backoff while the database fails; gives up only when shutting down and the
  // database has kept failing for kFailingWaitLimit.
  bool write_with_retry(std::span<const Command> batch, std::string* last_error) {
    auto delay = SteadyClock::duration(kFirstWriteRetry);
    std::optional<SteadyClock::time_point> stop_deadline;
    for (;;) {
      std::string error;
      if (write_batch(batch, &error)) {
        bool recovered;
        {
          std::lock_guard lock(mutex_);
          recovered = std::exchange(failing_, false);
        }
        if (recovered) std::fprintf(stderr, "airlock events: outbox writes resumed\n");
        return true;
      }
      *last_error = error;
      bool first_failure = false;
      {
        std::unique_lock lock(mutex_);
        const auto now = SteadyClock::now();
        if (!failing_) {
          failing_ = true;
          failing_since_ = now;
          first_failure = true;
        }
        if (stopping_) {
          stop_deadline = stop_deadline.value_or(now + kFailingWaitLimit);
          if (now >= *stop_deadline) return false;
        }
      }
      progress_.notify_all();
      if (first_failure) {
        std::fprintf(stderr, "airlock events: cannot write the outbox %s (%s); retrying\n",
                     path_.c_str(), error.c_str());
      }
      std::this_thread::sleep_for(delay);
      delay = std::min<SteadyClock::duration>(delay * 2, kMaxWriteRetry);
    }
  }

  // One transaction per batch, a savepoint per command so one the database refuses (a duplicate
  // event id) is left out without failing the rest.
  bool write_batch(std::span<const Command> batch, std::string* error) {
    sqlite3* db = writer_.db.get();
    if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
      *error = sqlite3_errmsg(db);
      return false;
    }
    // One snapshot for the batch: the webhooks subscribed when the events are persisted.
    const std::shared_ptr<const Webhooks> hooks = webhooks();
    const int64_t now = now_ms();
    for (const Command& command : batch) {
      int rc = exec(db, "SAVEPOINT command");
      if (rc == SQLITE_OK) {
        rc = std::visit(
            [&](const auto& c) {
              using T = std::decay_t<decltype(c)>;
              if constexpr (std::is_same_v<T, PublishCommand>) {
                return insert_event(c, *hooks, now);
              } else if constexpr (std::is_same_v<T, ResultCommand>) {
                return record_result(c);
              } else {
                return expire(c, now);
              }
            },
            command);
      }
      if (rc == SQLITE_OK) {
        rc = exec(db, "RELEASE command");
        if (rc == SQLITE_OK) continue;
      }
      *error = sqlite3_errmsg(db);
      const int primary = rc & 0xff;
      if (primary == SQLITE_CONSTRAINT || primary == SQLITE_TOOBIG) {
        if (exec(db, "ROLLBACK TO command; RELEASE command") == SQLITE_OK) {
          std::fprintf(stderr, "airlock events: the outbox refused a record (%s)\n",
                       error->c_str());
          continue;
        }
        *error = sqlite3_errmsg(db);
      }
      exec(db, "ROLLBACK");
      return false;
    }
    if (exec(db, "COMMIT") != SQLITE_OK) {
      *error = sqlite3_errmsg(db);
      if (!sqlite3_get_autocommit(db)) exec(db, "ROLLBACK");
      return false;
    }
    return true;
  }

  int insert_event(const PublishCommand& command, const Webhooks& hooks, int64_t now) {
    const Event& event = command.event;
    const std::string payload = envelope_json(event);
    sqlite3_stmt* stmt = writer_.insert_event.get();
    int rc = bind_text(stmt, 1, event.id);
    if (rc == SQLITE_OK) rc = bind_text(stmt, 2, event.type);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(stmt, 3, event.time_ms);
    if (rc == SQLITE_OK) rc = bind_text(stmt, 4, payload);
    rc = step_once(stmt, rc);
    for (const Webhook& hook : hooks.items) {
      if (rc != SQLITE_OK) break;
      if (!hook.wants(event.type)) continue;
      sqlite3_stmt* delivery = writer_.insert_delivery.get();
      rc = bind_text(delivery, 1, event.id);
      if (rc == SQLITE_OK) rc = bind_text(delivery, 2, hook.url);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(delivery, 3, now);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(delivery, 4, event.time_ms);
      rc = step_once(delivery, rc);
    }
    return rc;
  }

  int record_result(const ResultCommand& r) {
    sqlite3_stmt* log = writer_.insert_log.get();
    int rc = bind_text(log, 1, r.event_id);
    if (rc == SQLITE_OK) rc = bind_text(log, 2, r.event_type);
    if (rc == SQLITE_OK) rc = bind_text(log, 3, r.url);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(log, 4, r.attempt);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int(log, 5, r.status);
    if (rc == SQLITE_OK) rc = bind_text(log, 6, delivery_outcome_name(r.outcome));
    if (rc == SQLITE_OK) rc = bind_text(log, 7, r.error);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(log, 8, r.time_ms);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(log, 9, r.latency_ms);
    rc = step_once(log, rc);
    if (rc != SQLITE_OK) return rc;

    int state = kPending;
    if (r.outcome == DeliveryOutcome::kDelivered) state = kDelivered;
    if (r.outcome == DeliveryOutcome::kFailed) state = kFailed;
    sqlite3_stmt* update = writer_.update_delivery.get();
    rc = sqlite3_bind_int(update, 1, state);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(update, 2, r.attempt);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(update, 3, r.next_attempt_ms);
    if (rc == SQLITE_OK) rc = bind_text(update, 4, r.event_id);
    if (rc == SQLITE_OK) rc = bind_text(update, 5, r.url);
    return step_once(update, rc);
  }

  int expire(const ExpireCommand& command, int64_t now) {
    sqlite3* db = writer_.db.get();
    std::vector<Param> log_params{now, command.cutoff_ms};
    const std::string log_sql =
        "INSERT INTO delivery_log (event_id, event_type, url, attempt, status, outcome, error, "
        "time_ms, latency_ms) SELECT d.event_id, o.type, d.url, d.attempts, 0, 'failed', "
        "'gave up after the maximum age: no webhook lists this URL any more', ?, 0 FROM "
        "deliveries d JOIN outbox o ON o.id = d.event_id WHERE d.state = 0 AND d.created_ms < ?" +
        url_filter("d.url", true, command.configured_urls, log_params);
    std::vector<Param> update_params{int64_t{kFailed}, command.cutoff_ms};
    const std::string update_sql =
        "UPDATE deliveries SET state = ? WHERE state = 0 AND created_ms < ?" +
        url_filter("url", true, command.configured_urls, update_params);
    for (const auto& [sql, params] :
         {std::pair{&log_sql, &log_params}, std::pair{&update_sql, &update_params}}) {
      const Stmt stmt = prepare(db, *sql);
      if (!stmt) return sqlite3_errcode(db);
      if (!bind_params(stmt.get(), *params)) return sqlite3_errcode(db);
      const int rc = sqlite3_step(stmt.get());
      if (rc != SQLITE_DONE) return rc;
    }
    return command.prune_before_ms > 0 ? prune(command.prune_before_ms) : SQLITE_OK;
  }

  // Deleting an event deletes its deliveries (ON DELETE CASCADE); one with a delivery still
  // pending stays.
  int prune(int64_t before_ms) {
    sqlite3* db = writer_.db.get();
    static constexpr const char* kSql[] = {
        "DELETE FROM outbox WHERE rowid IN (SELECT rowid FROM outbox o WHERE o.time_ms < ?1 AND "
        "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = o.id AND d.state = 0) LIMIT "
        "?2)",
        "DELETE FROM delivery_log WHERE seq IN (SELECT seq FROM delivery_log WHERE time_ms < ?1 "
        "LIMIT ?2)"};
    for (const char* sql : kSql) {
      const Stmt stmt = prepare(db, sql);
      if (!stmt) return sqlite3_errcode(db);
      std::vector<Param> params{before_ms, kPruneBatchRows};
      if (!bind_params(stmt.get(), params)) return sqlite3_errcode(db);
      const int rc = sqlite3_step(stmt.get());
      if (rc != SQLITE_DONE) return rc;
    }
    return SQLITE_OK;
  }

  // Runs a prepared INSERT/UPDATE unless binding failed, and drops its bindings, which point into
  // memory about to be freed.
  static int step_once(sqlite3_stmt* stmt, int bind_rc) {
    int rc = bind_rc;
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(stmt);
      rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
      sqlite3_reset(stmt);
    }
    sqlite3_clear_bindings(stmt);
    return rc;
  }

  const std::string path_;
  const OutboxOptions options_;
  Writer writer_;  // used only by the writer thread

  mutable std::mutex reader_mutex_;
  Db reader_;

  mutable std::mutex webhooks_mutex_;
  std::shared_ptr<const Webhooks> webhooks_ = std::make_shared<Webhooks>();

  // Writer queue.
  std::mutex mutex_;
  std::condition_variable work_;      // to the writer: commands queued, or stopping
  std::condition_variable progress_;  // to flush(): commands written, or failing
  std::deque<Command> queue_;
  size_t queued_events_ = 0;
  uint64_t enqueued_ = 0;
  uint64_t written_ = 0;
  uint64_t dropped_ = 0;
  bool dropping_ = false;
  bool failing_ = false;
  SteadyClock::time_point failing_since_;
  bool stopping_ = false;

  // Dispatcher; the members without a mutex are used on the io thread only.
  Db scheduler_db_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_guard_ =
      asio::make_work_guard(io_);
  asio::steady_timer timer_{io_};
  bool wake_pending_ = false;
  bool dispatch_stopping_ = false;
  std::set<DeliveryKey> in_flight_;  // attempts running or whose result is not yet committed
  std::mutex sending_mutex_;
  std::condition_variable sending_done_;
  size_t sending_ = 0;  // attempts running
  bool stop_seen_ = false;
  std::mt19937_64 rng_;
  std::unique_ptr<http::UpstreamPool> pool_;

  // Last, so they start after every member they use exists.
  std::thread writer_thread_;
  std::thread io_thread_;
};

std::string describe(const std::string& path, sqlite3* db) {
  return sqlite::describe(kWhat, path, db);
}

// Creates the schema in a new database or checks an existing one; BEGIN IMMEDIATE makes two
// processes opening the same new file create it once.
bool migrate(const std::string& path, sqlite3* db, std::string* error) {
  if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
    *error = describe(path, db);
    return false;
  }
  bool ok =
      exec(db, "CREATE TABLE IF NOT EXISTS outbox_schema (version INTEGER NOT NULL)") == SQLITE_OK;
  std::optional<std::string> version_text;
  if (ok) version_text = pragma(db, "SELECT COALESCE(MAX(version), 0) FROM outbox_schema");
  ok = ok && version_text.has_value();
  const int version = version_text ? std::atoi(version_text->c_str()) : 0;
  if (ok && version == 0) ok = exec(db, kSchemaV1) == SQLITE_OK;
  if (ok && version < 2) ok = exec(db, kSchemaV2) == SQLITE_OK;
  if (ok && version < kSchemaVersion) {
    ok = exec(db, ("DELETE FROM outbox_schema; INSERT INTO outbox_schema (version) VALUES (" +
                   std::to_string(kSchemaVersion) + ")")
                      .c_str()) == SQLITE_OK;
  }
  if (!ok) {
    *error = describe(path, db);
  } else if (version > kSchemaVersion) {
    *error = "cannot open outbox '" + path + "': schema version " + std::to_string(version) +
             " is newer than this build supports (" + std::to_string(kSchemaVersion) + ")";
    ok = false;
  }
  if (ok && exec(db, "COMMIT") != SQLITE_OK) {
    *error = describe(path, db);
    ok = false;
  }
  if (!ok) exec(db, "ROLLBACK");
  return ok;
}

}  // namespace

std::string_view delivery_outcome_name(DeliveryOutcome outcome) {
  switch (outcome) {
    case DeliveryOutcome::kDelivered:
      return "delivered";
    case DeliveryOutcome::kRetry:
      return "retry";
    case DeliveryOutcome::kFailed:
      return "failed";
  }
  return "unknown";
}

std::optional<std::vector<Subscription>> load_subscriptions(
    const std::vector<policy::WebhookSpec>& webhooks, std::string* error) {
  std::vector<Subscription> subscriptions;
  for (const policy::WebhookSpec& spec : webhooks) {
    std::string secret_error;
    std::optional<Secret> secret = load_secret(spec.secret_ref, &secret_error);
    if (!secret) {
      if (error) *error = "webhook " + spec.url + ": " + secret_error;
      return std::nullopt;
    }
    subscriptions.push_back({spec.url, std::move(*secret), spec.events});
  }
  return subscriptions;
}

std::unique_ptr<Outbox> Outbox::open(const std::string& sqlite_path, std::string* error,
                                     OutboxOptions options) {
  std::string local_error;
  std::string& err = error ? *error : local_error;
  // Event payloads carry identities and request details: owner-only, like the request log.
  const int fd = ::open(sqlite_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    err = "cannot open outbox '" + sqlite_path + "': " + std::strerror(errno);
    return nullptr;
  }
  ::close(fd);

  Writer writer;
  writer.db = sqlite::open(kWhat, sqlite_path, SQLITE_OPEN_READWRITE, &err);
  if (!writer.db || !sqlite::configure_writer(kWhat, sqlite_path, writer.db.get(), &err) ||
      !migrate(sqlite_path, writer.db.get(), &err)) {
    return nullptr;
  }
  sqlite3* db = writer.db.get();
  writer.insert_event =
      prepare(db, "INSERT INTO outbox (id, type, time_ms, payload) VALUES (?1, ?2, ?3, ?4)");
  writer.insert_delivery =
      prepare(db,
              "INSERT OR IGNORE INTO deliveries (event_id, url, state, attempts, next_attempt_ms, "
              "created_ms) VALUES (?1, ?2, 0, 0, ?3, ?4)");
  writer.insert_log = prepare(
      db,
      "INSERT INTO delivery_log (event_id, event_type, url, attempt, status, outcome, error, "
      "time_ms, latency_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  writer.update_delivery = prepare(
      db,
      "UPDATE deliveries SET state = ?1, attempts = ?2, next_attempt_ms = ?3 WHERE event_id = ?4 "
      "AND url = ?5 AND state = 0");
  if (!writer.insert_event || !writer.insert_delivery || !writer.insert_log ||
      !writer.update_delivery) {
    err = describe(sqlite_path, db);
    return nullptr;
  }
  // Read-only, so neither the admin API's queries nor the scheduler can write.
  Db reader = sqlite::open(kWhat, sqlite_path, SQLITE_OPEN_READONLY, &err);
  if (!reader) return nullptr;
  Db scheduler = sqlite::open(kWhat, sqlite_path, SQLITE_OPEN_READONLY, &err);
  if (!scheduler) return nullptr;
  auto outbox = std::make_unique<OutboxImpl>(sqlite_path, std::move(options), std::move(writer),
                                             std::move(reader), std::move(scheduler), &err);
  if (!outbox->started()) return nullptr;
  return outbox;
}

}  // namespace airlock::control::events
