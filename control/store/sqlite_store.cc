// SQLite implementation of the request log. One writer thread owns the writing connection and
// commits queued records in batches; reads use a second connection, which WAL mode lets run
// alongside the writer.
#include "control/store/store.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <thread>
#include <utility>
#include <variant>

#include "control/sqlite/sqlite.h"

namespace airlock::control {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using sqlite::bind_blob;
using sqlite::bind_params;
using sqlite::bind_text;
using sqlite::column_blob;
using sqlite::column_text;
using sqlite::Db;
using sqlite::exec;
using sqlite::Param;
using sqlite::pragma;
using sqlite::prepare;
using sqlite::Stmt;

// How errors name this database.
constexpr std::string_view kWhat = "request log";

constexpr int kSchemaVersion = 2;
// Version 1. Tags and groups are JSON arrays so SQL can filter them with json_each(). Bodies are
// BLOBs because a body cut at its size cap may end inside a UTF-8 sequence.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE requests (
  id TEXT PRIMARY KEY NOT NULL,
  time_ms INTEGER NOT NULL,
  user TEXT NOT NULL,
  device TEXT NOT NULL,
  tags TEXT NOT NULL,
  user_groups TEXT NOT NULL,
  peer_key TEXT NOT NULL,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  api TEXT NOT NULL,
  status INTEGER NOT NULL,
  streamed INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  cache_read_tokens INTEGER NOT NULL,
  cache_write_tokens INTEGER NOT NULL,
  reasoning_tokens INTEGER NOT NULL,
  usage_complete INTEGER NOT NULL,
  client_disconnected INTEGER NOT NULL,
  cost_picodollars INTEGER,
  ttfb_us INTEGER NOT NULL,
  duration_us INTEGER NOT NULL,
  error TEXT NOT NULL,
  request_body BLOB,
  response_body BLOB
);
CREATE INDEX requests_time ON requests (time_ms, id);
CREATE INDEX requests_user ON requests (user, time_ms, id);
CREATE INDEX requests_model ON requests (model, time_ms, id);
CREATE TABLE tool_calls (
  request_id TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  call_id TEXT NOT NULL,
  name TEXT NOT NULL,
  arguments TEXT NOT NULL,
  PRIMARY KEY (request_id, seq)
) WITHOUT ROWID;
)sql";

// Version 2: sessions, and tool calls and results denormalised with the request's identity and
// time so "what did this agent do" reads one table in time order. Columns added to existing
// tables are added only when missing (add_missing_columns).
constexpr const char* kSchemaV2 = R"sql(
UPDATE tool_calls SET (time_ms, user, device, session_id, model) =
  (SELECT time_ms, user, device, session_id, model FROM requests WHERE id = request_id);
CREATE TABLE IF NOT EXISTS tool_results (
  request_id TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  user TEXT NOT NULL,
  session_id TEXT NOT NULL,
  call_id TEXT NOT NULL,
  name TEXT NOT NULL,
  content TEXT NOT NULL,
  is_error INTEGER NOT NULL,
  PRIMARY KEY (request_id, seq)
);
CREATE INDEX IF NOT EXISTS requests_session ON requests (session_id, user, time_ms);
CREATE INDEX IF NOT EXISTS tool_calls_time ON tool_calls (time_ms, request_id, seq);
CREATE INDEX IF NOT EXISTS tool_calls_user ON tool_calls (user, time_ms);
CREATE INDEX IF NOT EXISTS tool_calls_session ON tool_calls (session_id, time_ms);
CREATE INDEX IF NOT EXISTS tool_results_call ON tool_results (user, call_id, time_ms);
CREATE INDEX IF NOT EXISTS tool_results_name ON tool_results (user, session_id, name, time_ms);
)sql";

struct AddedColumn {
  const char* table;
  const char* name;
  const char* definition;
};
constexpr AddedColumn kV2Columns[] = {
    {"requests", "session_id", "TEXT NOT NULL DEFAULT ''"},
    {"tool_calls", "time_ms", "INTEGER NOT NULL DEFAULT 0"},
    {"tool_calls", "user", "TEXT NOT NULL DEFAULT ''"},
    {"tool_calls", "device", "TEXT NOT NULL DEFAULT ''"},
    {"tool_calls", "session_id", "TEXT NOT NULL DEFAULT ''"},
    {"tool_calls", "model", "TEXT NOT NULL DEFAULT ''"},
    {"requests", "guardrails", "TEXT NOT NULL DEFAULT '[]'"},
};

// Column order shared by the INSERT and the row decoder.
constexpr const char* kScalarColumns =
    "id, time_ms, user, device, tags, user_groups, peer_key, provider, model, api, status, "
    "streamed, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
    "reasoning_tokens, usage_complete, client_disconnected, cost_picodollars, ttfb_us, "
    "duration_us, error, session_id, guardrails";
constexpr int kRequestBodyColumn = 25;
constexpr int kResponseBodyColumn = 26;

constexpr size_t kBatchRecords = 256;
// Group commit: once a record is queued the writer waits this long for more before committing,
// unless a full batch, a flush or shutdown comes first. One commit per request cost ~7 WAL page
// writes and two thread wake-ups per request, which on a busy host took CPU from the requests
// themselves; a record sits in memory this much longer before it is durable.
constexpr auto kCommitLinger = 20ms;
// The queue is bounded by count and by bytes, so bodies cannot exhaust memory while the disk is
// slow or failing.
constexpr size_t kMaxQueuedRecords = 100'000;
constexpr size_t kMaxQueuedBytes = size_t{256} << 20;
constexpr auto kFirstRetryDelay = 50ms;
constexpr auto kMaxRetryDelay = 2s;
// How long flush() and shutdown keep waiting on a database that cannot be written: long enough
// for a transient lock or a freed disk, short enough that shutdown cannot hang on a dead disk.
constexpr auto kFailingWaitLimit = 10s;
constexpr uint32_t kMaxPageSize = 1000;

std::string hits_to_json(const std::vector<GuardrailHit>& hits) {
  nlohmann::json out = nlohmann::json::array();
  for (const GuardrailHit& hit : hits) {
    out.push_back({{"guardrail", hit.guardrail},
                   {"pattern", hit.pattern},
                   {"action", hit.action},
                   {"where", hit.where}});
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<GuardrailHit> hits_from_json(const std::string& text) {
  std::vector<GuardrailHit> hits;
  const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
  if (!parsed.is_array()) return hits;
  for (const nlohmann::json& item : parsed) {
    if (!item.is_object()) continue;
    hits.push_back({item.value("guardrail", ""), item.value("pattern", ""),
                    item.value("action", ""), item.value("where", "")});
  }
  return hits;
}

std::string to_json_array(const std::vector<std::string>& items) {
  // Replacing invalid UTF-8 instead of throwing: a malformed tag must not lose the record.
  return nlohmann::json(items).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<std::string> from_json_array(const std::string& text) {
  std::vector<std::string> items;
  const auto json = nlohmann::json::parse(text, nullptr, false);
  if (!json.is_array()) return items;
  for (const auto& item : json) {
    if (item.is_string()) items.push_back(item.get<std::string>());
  }
  return items;
}

// Tokens are uint64 in memory and INTEGER (int64) in SQLite; the cast round-trips every value.
int64_t as_int64(uint64_t value) {
  return static_cast<int64_t>(value);
}
uint64_t column_uint64(sqlite3_stmt* stmt, int column) {
  return static_cast<uint64_t>(sqlite3_column_int64(stmt, column));
}

RequestRecord decode_row(sqlite3_stmt* stmt) {
  RequestRecord r;
  r.id = column_text(stmt, 0);
  r.time_ms = sqlite3_column_int64(stmt, 1);
  r.user = column_text(stmt, 2);
  r.device = column_text(stmt, 3);
  r.tags = from_json_array(column_text(stmt, 4));
  r.groups = from_json_array(column_text(stmt, 5));
  r.peer_key = column_text(stmt, 6);
  r.provider = column_text(stmt, 7);
  r.model = column_text(stmt, 8);
  r.api = column_text(stmt, 9);
  r.status = sqlite3_column_int(stmt, 10);
  r.streamed = sqlite3_column_int(stmt, 11) != 0;
  r.input_tokens = column_uint64(stmt, 12);
  r.output_tokens = column_uint64(stmt, 13);
  r.cache_read_tokens = column_uint64(stmt, 14);
  r.cache_write_tokens = column_uint64(stmt, 15);
  r.reasoning_tokens = column_uint64(stmt, 16);
  r.usage_complete = sqlite3_column_int(stmt, 17) != 0;
  r.client_disconnected = sqlite3_column_int(stmt, 18) != 0;
  if (sqlite3_column_type(stmt, 19) != SQLITE_NULL) r.cost = sqlite3_column_int64(stmt, 19);
  r.ttfb_us = sqlite3_column_int64(stmt, 20);
  r.duration_us = sqlite3_column_int64(stmt, 21);
  r.error = column_text(stmt, 22);
  r.session_id = column_text(stmt, 23);
  r.guardrail_hits = hits_from_json(column_text(stmt, 24));
  return r;
}

size_t approximate_bytes(const RequestRecord& r) {
  size_t bytes = sizeof(RequestRecord) + r.id.size() + r.user.size() + r.device.size() +
                 r.peer_key.size() + r.provider.size() + r.model.size() + r.api.size() +
                 r.error.size() + r.session_id.size();
  for (const auto& s : r.tags) bytes += s.size();
  for (const auto& s : r.groups) bytes += s.size();
  for (const auto& call : r.tool_calls) {
    bytes += sizeof(ToolCall) + call.id.size() + call.name.size() + call.arguments.size();
  }
  for (const auto& result : r.tool_results) {
    bytes +=
        sizeof(ToolResult) + result.call_id.size() + result.name.size() + result.content.size();
  }
  if (r.request_body) bytes += r.request_body->size();
  if (r.response_body) bytes += r.response_body->size();
  return bytes;
}

// Query parameters bound in order of their `?` in the SQL text.
// The WHERE clauses the request and usage queries share, appended to `sql` with their values.
void add_filters(const std::optional<std::string>& user, const std::optional<std::string>& model,
                 const std::optional<int64_t>& since_ms, const std::optional<int64_t>& until_ms,
                 std::string& sql, std::vector<Param>& params) {
  if (user) {
    sql += " AND user = ?";
    params.emplace_back(*user);
  }
  if (model) {
    sql += " AND model = ?";
    params.emplace_back(*model);
  }
  if (since_ms) {
    sql += " AND time_ms >= ?";
    params.emplace_back(*since_ms);
  }
  if (until_ms) {
    sql += " AND time_ms < ?";
    params.emplace_back(*until_ms);
  }
}

// The writing connection and its statements, prepared once at open.
struct Writer {
  Db db;
  Stmt insert_request;
  Stmt insert_tool_call;
  Stmt insert_tool_result;
  // Prepared once: exec() would compile these for every record.
  Stmt savepoint;
  Stmt release;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, Writer writer, Db reader)
      : path_(std::move(path)),
        writer_(std::move(writer)),
        reader_(std::move(reader)),
        thread_([this] { run_writer(); }) {}

  ~SqliteStore() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_.notify_all();
    // The writer drains the whole queue before it exits, so destruction flushes.
    thread_.join();
  }

  void append(RequestRecord record) override {
    const size_t bytes = approximate_bytes(record);
    std::unique_lock lock(mutex_);
    // Blocking when full rather than dropping: the log promises one record per request, and a
    // full queue means the disk is behind, so waiting a little is the only way to lose nothing.
    // A record larger than the byte bound is still admitted once the queue is empty.
    progress_.wait(lock, [&] {
      return queue_.size() < kMaxQueuedRecords &&
             (queue_.empty() || queued_bytes_ + bytes <= kMaxQueuedBytes);
    });
    queue_.push_back(std::move(record));
    queued_bytes_ += bytes;
    ++appended_;
    // The writer needs waking only to start a linger or to end one early with a full batch.
    const bool wake = queue_.size() == 1 || queue_.size() == kBatchRecords;
    lock.unlock();
    if (wake) work_.notify_one();
  }

  void flush() override { wait_written(/*stop_when_failing=*/false); }

  std::vector<RequestRecord> requests(const RequestQuery& query, std::string* error) override {
    if (error) error->clear();
    wait_written(/*stop_when_failing=*/true);
    std::lock_guard lock(reader_mutex_);
    sqlite3* db = reader_.get();

    std::string sql = std::string("SELECT ") + kScalarColumns + " FROM requests WHERE 1";
    std::vector<Param> params;
    add_filters(query.user, query.model, query.since_ms, query.until_ms, sql, params);
    if (query.before_id) {
      const std::optional<int64_t> before_time = time_of(*query.before_id, error);
      if (!before_time) return {};
      sql += " AND (time_ms, id) < (?, ?)";
      params.emplace_back(*before_time);
      params.emplace_back(*query.before_id);
    }
    sql += " ORDER BY time_ms DESC, id DESC LIMIT ?";
    params.emplace_back(int64_t{std::clamp<uint32_t>(query.limit, 1, kMaxPageSize)});

    std::vector<RequestRecord> records;
    const Stmt stmt = prepare(db, sql);
    if (!stmt || !bind_params(stmt.get(), params)) {
      fail(error);
      return {};
    }
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) records.push_back(decode_row(stmt.get()));
    if (rc != SQLITE_DONE) {
      fail(error);
      return {};
    }
    return records;
  }

  std::optional<RequestRecord> request(std::string_view id, std::string* error) override {
    if (error) error->clear();
    wait_written(/*stop_when_failing=*/true);
    std::lock_guard lock(reader_mutex_);
    sqlite3* db = reader_.get();
    // One read transaction so the record and its tool calls come from the same snapshot.
    if (exec(db, "BEGIN") != SQLITE_OK) {
      fail(error);
      return std::nullopt;
    }
    std::optional<RequestRecord> record = read_request(id, error);
    exec(db, "COMMIT");
    return record;
  }

  std::vector<UsageTotal> usage(const UsageQuery& query, std::string* error) override {
    if (error) error->clear();
    wait_written(/*stop_when_failing=*/true);
    std::lock_guard lock(reader_mutex_);
    sqlite3* db = reader_.get();

    const char* key = "user";
    if (query.group_by == UsageGroup::kModel) key = "model";
    if (query.group_by == UsageGroup::kDay) {
      key = "strftime('%Y-%m-%d', time_ms / 1000, 'unixepoch')";
    }
    // SUM skips NULLs, so unknown costs add nothing; COALESCE covers groups with no known cost.
    std::string sql = std::string("SELECT ") + key +
                      ", COUNT(*), SUM(input_tokens), SUM(output_tokens), "
                      "SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens), "
                      "COALESCE(SUM(cost_picodollars), 0) FROM requests WHERE 1";
    std::vector<Param> params;
    add_filters(query.user, std::nullopt, query.since_ms, query.until_ms, sql, params);
    sql += " GROUP BY 1 ORDER BY 1";

    std::vector<UsageTotal> totals;
    const Stmt stmt = prepare(db, sql);
    if (!stmt || !bind_params(stmt.get(), params)) {
      fail(error);
      return {};
    }
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      UsageTotal& t = totals.emplace_back();
      t.key = column_text(stmt.get(), 0);
      t.requests = column_uint64(stmt.get(), 1);
      t.input_tokens = column_uint64(stmt.get(), 2);
      t.output_tokens = column_uint64(stmt.get(), 3);
      t.cache_read_tokens = column_uint64(stmt.get(), 4);
      t.cache_write_tokens = column_uint64(stmt.get(), 5);
      t.reasoning_tokens = column_uint64(stmt.get(), 6);
      t.cost = sqlite3_column_int64(stmt.get(), 7);
    }
    if (rc != SQLITE_DONE) {
      fail(error);
      return {};
    }
    return totals;
  }

  std::vector<SessionSummary> sessions(const SessionQuery& query, std::string* error) override {
    if (error) error->clear();
    wait_written(/*stop_when_failing=*/true);
    std::lock_guard lock(reader_mutex_);

    // The window picks the sessions; their totals cover every request they made.
    std::string active = "SELECT session_id, user FROM requests WHERE session_id != ''";
    std::vector<Param> params;
    add_filters(query.user, std::nullopt, query.since_ms, query.until_ms, active, params);
    std::string sql =
        "SELECT session_id, user, MAX(device), MIN(time_ms), MAX(time_ms), COUNT(*), "
        "SUM((SELECT COUNT(*) FROM tool_calls t WHERE t.request_id = requests.id)), "
        "SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), "
        "COALESCE(SUM(cost_picodollars), 0) FROM requests WHERE (session_id, user) IN (" +
        active + ") GROUP BY session_id, user ORDER BY MAX(time_ms) DESC, session_id DESC LIMIT ?";
    params.emplace_back(int64_t{std::clamp<uint32_t>(query.limit, 1, kMaxPageSize)});

    std::vector<SessionSummary> sessions;
    const Stmt stmt = prepare(reader_.get(), sql);
    if (!stmt || !bind_params(stmt.get(), params)) {
      fail(error);
      return {};
    }
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      sqlite3_stmt* row = stmt.get();
      SessionSummary& s = sessions.emplace_back();
      s.id = column_text(row, 0);
      s.user = column_text(row, 1);
      s.device = column_text(row, 2);
      s.first_ms = sqlite3_column_int64(row, 3);
      s.last_ms = sqlite3_column_int64(row, 4);
      s.requests = column_uint64(row, 5);
      s.tool_calls = column_uint64(row, 6);
      s.input_tokens = column_uint64(row, 7);
      s.output_tokens = column_uint64(row, 8);
      s.cache_read_tokens = column_uint64(row, 9);
      s.cache_write_tokens = column_uint64(row, 10);
      s.cost = sqlite3_column_int64(row, 11);
    }
    if (rc != SQLITE_DONE) {
      fail(error);
      return {};
    }
    return sessions;
  }

  std::vector<ToolCallRow> tool_calls(const ToolCallQuery& query, std::string* error) override {
    if (error) error->clear();
    wait_written(/*stop_when_failing=*/true);
    std::lock_guard lock(reader_mutex_);

    // The result of a call comes in a later request of the same user: by call id, or for calls
    // without one (Gemini) the first later result of that name in the session.
    std::string sql =
        "SELECT c.request_id, c.seq, c.time_ms, c.user, c.device, c.session_id, c.model, "
        "c.call_id, c.name, c.arguments, r.request_id, r.time_ms, r.call_id, r.name, r.content, "
        "r.is_error FROM tool_calls c LEFT JOIN tool_results r ON r.rowid = COALESCE("
        "(SELECT x.rowid FROM tool_results x WHERE c.call_id != '' AND x.user = c.user AND "
        "x.call_id = c.call_id AND x.time_ms >= c.time_ms AND x.request_id != c.request_id "
        "ORDER BY x.time_ms, x.request_id, x.seq LIMIT 1), "
        "(SELECT x.rowid FROM tool_results x WHERE c.call_id = '' AND x.user = c.user AND "
        "x.session_id = c.session_id AND x.name = c.name AND x.call_id = '' AND "
        "x.time_ms >= c.time_ms AND x.request_id != c.request_id "
        "ORDER BY x.time_ms, x.request_id, x.seq LIMIT 1)) WHERE 1";
    std::vector<Param> params;
    const std::pair<const char*, const std::optional<std::string>*> texts[] = {
        {" AND c.user = ?", &query.user},
        {" AND c.session_id = ?", &query.session},
        {" AND c.name = ?", &query.name},
    };
    for (const auto& [clause, value] : texts) {
      if (!*value) continue;
      sql += clause;
      params.emplace_back(**value);
    }
    if (query.since_ms) {
      sql += " AND c.time_ms >= ?";
      params.emplace_back(*query.since_ms);
    }
    if (query.before) {
      const std::optional<int64_t> before_time = time_of(query.before->request_id, error);
      if (!before_time) return {};
      sql += " AND (c.time_ms, c.request_id, c.seq) < (?, ?, ?)";
      params.emplace_back(*before_time);
      params.emplace_back(query.before->request_id);
      params.emplace_back(int64_t{query.before->seq});
    }
    sql += " ORDER BY c.time_ms DESC, c.request_id DESC, c.seq DESC LIMIT ?";
    params.emplace_back(int64_t{std::clamp<uint32_t>(query.limit, 1, kMaxPageSize)});

    std::vector<ToolCallRow> newest_first;
    const Stmt stmt = prepare(reader_.get(), sql);
    if (!stmt || !bind_params(stmt.get(), params)) {
      fail(error);
      return {};
    }
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      sqlite3_stmt* row = stmt.get();
      ToolCallRow& t = newest_first.emplace_back();
      t.position = {column_text(row, 0), static_cast<uint32_t>(sqlite3_column_int64(row, 1))};
      t.time_ms = sqlite3_column_int64(row, 2);
      t.user = column_text(row, 3);
      t.device = column_text(row, 4);
      t.session_id = column_text(row, 5);
      t.model = column_text(row, 6);
      t.call = {column_text(row, 7), column_text(row, 8), column_text(row, 9)};
      if (sqlite3_column_type(row, 10) != SQLITE_NULL) {
        t.result_request_id = column_text(row, 10);
        t.result_time_ms = sqlite3_column_int64(row, 11);
        t.result = ToolResult{column_text(row, 12), column_text(row, 13), column_text(row, 14),
                              sqlite3_column_int(row, 15) != 0};
      }
    }
    if (rc != SQLITE_DONE) {
      fail(error);
      return {};
    }
    return grouped_by_session(std::move(newest_first));
  }

 private:
  // Rows newest first -> sessions in order of their first call, each in time order.
  static std::vector<ToolCallRow> grouped_by_session(std::vector<ToolCallRow> newest_first) {
    std::reverse(newest_first.begin(), newest_first.end());
    std::map<std::pair<std::string, std::string>, size_t> first_seen;
    for (const ToolCallRow& row : newest_first) {
      first_seen.emplace(std::pair(row.user, row.session_id), first_seen.size());
    }
    std::stable_sort(
        newest_first.begin(), newest_first.end(), [&](const ToolCallRow& a, const ToolCallRow& b) {
          return first_seen.at({a.user, a.session_id}) < first_seen.at({b.user, b.session_id});
        });
    return newest_first;
  }

  // Reader helpers; the caller holds reader_mutex_.
  void fail(std::string* error) const {
    if (error) *error = std::string("request log query failed: ") + sqlite3_errmsg(reader_.get());
  }

  std::optional<int64_t> time_of(const std::string& id, std::string* error) {
    const Stmt stmt = prepare(reader_.get(), "SELECT time_ms FROM requests WHERE id = ?");
    if (!stmt || bind_text(stmt.get(), 1, id) != SQLITE_OK) {
      fail(error);
      return std::nullopt;
    }
    const int rc = sqlite3_step(stmt.get());
    if (rc == SQLITE_ROW) return sqlite3_column_int64(stmt.get(), 0);
    if (rc != SQLITE_DONE) {
      fail(error);
      return std::nullopt;
    }
    if (error) *error = "unknown before_id";
    return std::nullopt;
  }

  std::optional<RequestRecord> read_request(std::string_view id, std::string* error) {
    sqlite3* db = reader_.get();
    const Stmt row = prepare(db, std::string("SELECT ") + kScalarColumns +
                                     ", request_body, response_body FROM requests WHERE id = ?");
    if (!row || bind_text(row.get(), 1, id) != SQLITE_OK) {
      fail(error);
      return std::nullopt;
    }
    int rc = sqlite3_step(row.get());
    if (rc == SQLITE_DONE) return std::nullopt;
    if (rc != SQLITE_ROW) {
      fail(error);
      return std::nullopt;
    }
    RequestRecord record = decode_row(row.get());
    record.request_body = column_blob(row.get(), kRequestBodyColumn);
    record.response_body = column_blob(row.get(), kResponseBodyColumn);

    const Stmt calls = prepare(
        db, "SELECT call_id, name, arguments FROM tool_calls WHERE request_id = ? ORDER BY seq");
    if (!calls || bind_text(calls.get(), 1, id) != SQLITE_OK) {
      fail(error);
      return std::nullopt;
    }
    while ((rc = sqlite3_step(calls.get())) == SQLITE_ROW) {
      record.tool_calls.push_back(
          {column_text(calls.get(), 0), column_text(calls.get(), 1), column_text(calls.get(), 2)});
    }
    if (rc != SQLITE_DONE) {
      fail(error);
      return std::nullopt;
    }

    const Stmt results = prepare(db,
                                 "SELECT call_id, name, content, is_error FROM tool_results WHERE "
                                 "request_id = ? ORDER BY seq");
    if (!results || bind_text(results.get(), 1, id) != SQLITE_OK) {
      fail(error);
      return std::nullopt;
    }
    while ((rc = sqlite3_step(results.get())) == SQLITE_ROW) {
      record.tool_results.push_back({column_text(results.get(), 0), column_text(results.get(), 1),
                                     column_text(results.get(), 2),
                                     sqlite3_column_int(results.get(), 3) != 0});
    }
    if (rc != SQLITE_DONE) {
      fail(error);
      return std::nullopt;
    }
    return record;
  }

  // Waits until every record appended before the call is written. While the database cannot be
  // written, readers return at once (they see what is committed) and flush() gives up after
  // kFailingWaitLimit; the records stay queued and the writer keeps retrying.
  void wait_written(bool stop_when_failing) {
    std::unique_lock lock(mutex_);
    const uint64_t target = appended_;
    if (written_ < target && flush_wanted_ < target) {
      flush_wanted_ = target;
      work_.notify_one();  // no linger: someone is waiting for these records
    }
    while (written_ < target) {
      if (!failing_) {
        progress_.wait(lock);
        continue;
      }
      const auto deadline = failing_since_ + kFailingWaitLimit;
      if (stop_when_failing || Clock::now() >= deadline) return;
      progress_.wait_until(lock, deadline);
    }
  }

  void run_writer() {
    pthread_setname_np(pthread_self(), "airlock-store");
    std::vector<RequestRecord> batch;
    batch.reserve(kBatchRecords);
    size_t lost = 0;
    std::string last_error;
    for (;;) {
      batch.clear();
      {
        std::unique_lock lock(mutex_);
        work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) break;
        work_.wait_for(lock, kCommitLinger, [&] {
          return stopping_ || queue_.size() >= kBatchRecords || flush_wanted_ > written_;
        });
        while (!queue_.empty() && batch.size() < kBatchRecords) {
          queued_bytes_ -= approximate_bytes(queue_.front());
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      progress_.notify_all();  // appenders waiting for room
      // Once shutdown has given up on a dead database, the rest is counted rather than retried
      // for another kFailingWaitLimit each.
      if (lost > 0 || !write_with_retry(batch, &last_error)) lost += batch.size();
      {
        std::lock_guard lock(mutex_);
        written_ += batch.size();
      }
      progress_.notify_all();
    }
    if (lost > 0) {
      std::fprintf(stderr,
                   "airlock store: shutting down with the request log %s unwritable (%s); %zu "
                   "record(s) not written\n",
                   path_.c_str(), last_error.c_str(), lost);
    }
  }

  // Returns true once the batch is committed. Retries with backoff while the database fails,
  // reporting the first failure of a streak once; returns false only when shutting down and the
  // database has kept failing for kFailingWaitLimit.
  bool write_with_retry(std::span<const RequestRecord> batch, std::string* last_error) {
    auto delay = Clock::duration(kFirstRetryDelay);
    for (;;) {
      std::string error;
      size_t refused = 0;
      if (write_batch(batch, &refused, &error)) {
        if (refused > 0) {
          // A duplicate id can never be written; retrying would block every later record.
          std::fprintf(stderr,
                       "airlock store: dropped %zu record(s) the request log refused (%s)\n",
                       refused, error.c_str());
        }
        bool recovered = false;
        {
          std::lock_guard lock(mutex_);
          recovered = std::exchange(failing_, false);
        }
        if (recovered) std::fprintf(stderr, "airlock store: request log writes resumed\n");
        return true;
      }
      *last_error = error;
      bool first_failure = false;
      {
        std::unique_lock lock(mutex_);
        const auto now = Clock::now();
        if (!failing_) {
          failing_ = true;
          failing_since_ = now;
          first_failure = true;
        }
        if (stopping_) {
          stop_deadline_ = stop_deadline_.value_or(now + kFailingWaitLimit);
          if (now >= *stop_deadline_) return false;
        }
      }
      progress_.notify_all();  // readers stop waiting on a failing writer
      if (first_failure) {
        std::fprintf(stderr, "airlock store: cannot write the request log %s (%s); retrying\n",
                     path_.c_str(), error.c_str());
      }
      {
        std::unique_lock lock(mutex_);
        // Shutdown starts its deadline at once rather than after a full backoff.
        work_.wait_for(lock, delay, [&] { return stopping_ && !stop_deadline_; });
      }
      delay = std::min<Clock::duration>(delay * 2, kMaxRetryDelay);
    }
  }

  // One transaction for the batch, one savepoint per record so a record the database refuses
  // (a duplicate id, a value over SQLite's size limit) is left out without failing the rest.
  bool write_batch(std::span<const RequestRecord> batch, size_t* refused, std::string* error) {
    sqlite3* db = writer_.db.get();
    if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
      *error = sqlite3_errmsg(db);
      return false;
    }
    for (const RequestRecord& record : batch) {
      int rc = step_once(writer_.savepoint.get());
      if (rc == SQLITE_OK) rc = insert(record);
      if (rc == SQLITE_OK) {
        rc = step_once(writer_.release.get());
        if (rc == SQLITE_OK) continue;
      }
      *error = sqlite3_errmsg(db);
      const int primary = rc & 0xff;
      if (primary == SQLITE_CONSTRAINT || primary == SQLITE_TOOBIG) {
        if (exec(db, "ROLLBACK TO record; RELEASE record") == SQLITE_OK) {
          ++*refused;
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

  // Inserts the record and its tool calls; returns SQLITE_OK or the first failing code.
  int insert(const RequestRecord& r) {
    sqlite3_stmt* stmt = writer_.insert_request.get();
    const std::string tags = to_json_array(r.tags);
    const std::string groups = to_json_array(r.groups);
    const std::string hits = hits_to_json(r.guardrail_hits);
    const int binds[] = {
        bind_text(stmt, 1, r.id),
        sqlite3_bind_int64(stmt, 2, r.time_ms),
        bind_text(stmt, 3, r.user),
        bind_text(stmt, 4, r.device),
        bind_text(stmt, 5, tags),
        bind_text(stmt, 6, groups),
        bind_text(stmt, 7, r.peer_key),
        bind_text(stmt, 8, r.provider),
        bind_text(stmt, 9, r.model),
        bind_text(stmt, 10, r.api),
        sqlite3_bind_int(stmt, 11, r.status),
        sqlite3_bind_int(stmt, 12, r.streamed ? 1 : 0),
        sqlite3_bind_int64(stmt, 13, as_int64(r.input_tokens)),
        sqlite3_bind_int64(stmt, 14, as_int64(r.output_tokens)),
        sqlite3_bind_int64(stmt, 15, as_int64(r.cache_read_tokens)),
        sqlite3_bind_int64(stmt, 16, as_int64(r.cache_write_tokens)),
        sqlite3_bind_int64(stmt, 17, as_int64(r.reasoning_tokens)),
        sqlite3_bind_int(stmt, 18, r.usage_complete ? 1 : 0),
        sqlite3_bind_int(stmt, 19, r.client_disconnected ? 1 : 0),
        r.cost ? sqlite3_bind_int64(stmt, 20, *r.cost) : sqlite3_bind_null(stmt, 20),
        sqlite3_bind_int64(stmt, 21, r.ttfb_us),
        sqlite3_bind_int64(stmt, 22, r.duration_us),
        bind_text(stmt, 23, r.error),
        bind_text(stmt, 24, r.session_id),
        bind_text(stmt, 25, hits),
        bind_blob(stmt, 26, r.request_body),
        bind_blob(stmt, 27, r.response_body),
    };
    int rc = first_error(binds);
    rc = rc == SQLITE_OK ? step_once(stmt) : unbind(stmt, rc);
    if (rc != SQLITE_OK) return rc;

    sqlite3_stmt* call = writer_.insert_tool_call.get();
    int64_t seq = 0;
    for (const ToolCall& c : r.tool_calls) {
      const int call_binds[] = {
          bind_text(call, 1, r.id),
          sqlite3_bind_int64(call, 2, seq++),
          sqlite3_bind_int64(call, 3, r.time_ms),
          bind_text(call, 4, r.user),
          bind_text(call, 5, r.device),
          bind_text(call, 6, r.session_id),
          bind_text(call, 7, r.model),
          bind_text(call, 8, c.id),
          bind_text(call, 9, c.name),
          bind_text(call, 10, c.arguments),
      };
      rc = first_error(call_binds);
      rc = rc == SQLITE_OK ? step_once(call) : unbind(call, rc);
      if (rc != SQLITE_OK) return rc;
    }

    sqlite3_stmt* result = writer_.insert_tool_result.get();
    seq = 0;
    for (const ToolResult& t : r.tool_results) {
      const int result_binds[] = {
          bind_text(result, 1, r.id),
          sqlite3_bind_int64(result, 2, seq++),
          sqlite3_bind_int64(result, 3, r.time_ms),
          bind_text(result, 4, r.user),
          bind_text(result, 5, r.session_id),
          bind_text(result, 6, t.call_id),
          bind_text(result, 7, t.name),
          bind_text(result, 8, t.content),
          sqlite3_bind_int(result, 9, t.is_error ? 1 : 0),
      };
      rc = first_error(result_binds);
      rc = rc == SQLITE_OK ? step_once(result) : unbind(result, rc);
      if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
  }

  static int first_error(std::span<const int> codes) {
    for (const int rc : codes) {
      if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
  }

  // Runs a statement once and drops its bindings, which point into the record about to be freed.
  static int step_once(sqlite3_stmt* stmt) {
    const int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return unbind(stmt, rc == SQLITE_DONE ? SQLITE_OK : rc);
  }

  static int unbind(sqlite3_stmt* stmt, int rc) {
    sqlite3_clear_bindings(stmt);
    return rc;
  }

  const std::string path_;
  Writer writer_;  // used only by the writer thread
  std::mutex reader_mutex_;
  Db reader_;

  std::mutex mutex_;
  std::condition_variable work_;      // to the writer: records queued, or stopping
  std::condition_variable progress_;  // to appenders and flushers: records written, or failing
  std::deque<RequestRecord> queue_;
  size_t queued_bytes_ = 0;
  uint64_t appended_ = 0;
  uint64_t written_ = 0;  // committed, refused or (at shutdown only) abandoned, in append order
  uint64_t flush_wanted_ = 0;  // a reader or flush() waits until written_ reaches this
  bool failing_ = false;
  Clock::time_point failing_since_;
  bool stopping_ = false;
  std::optional<Clock::time_point> stop_deadline_;
  std::thread thread_;  // last, so it starts after every member it uses exists
};

std::string describe(const std::string& path, sqlite3* db) {
  return sqlite::describe(kWhat, path, db);
}

bool has_column(sqlite3* db, const char* table, const char* column) {
  const Stmt stmt = prepare(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2");
  return stmt && bind_text(stmt.get(), 1, table) == SQLITE_OK &&
         bind_text(stmt.get(), 2, column) == SQLITE_OK && sqlite3_step(stmt.get()) == SQLITE_ROW;
}

bool add_missing_columns(sqlite3* db, std::span<const AddedColumn> columns) {
  for (const AddedColumn& c : columns) {
    if (has_column(db, c.table, c.name)) continue;
    const std::string sql =
        std::string("ALTER TABLE ") + c.table + " ADD COLUMN " + c.name + " " + c.definition;
    if (exec(db, sql.c_str()) != SQLITE_OK) return false;
  }
  return true;
}

// Creates the schema in a new database, or upgrades or checks an existing one; BEGIN IMMEDIATE
// makes two processes opening the same new file create it once.
bool migrate(const std::string& path, sqlite3* db, std::string* error) {
  if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
    *error = describe(path, db);
    return false;
  }
  const std::optional<std::string> version_text = pragma(db, "PRAGMA user_version");
  const int version = version_text ? std::atoi(version_text->c_str()) : -1;
  bool ok = version_text.has_value();
  if (ok && version == 0) ok = exec(db, kSchemaV1) == SQLITE_OK;
  if (ok && version < 2) {
    ok = add_missing_columns(db, kV2Columns) && exec(db, kSchemaV2) == SQLITE_OK &&
         exec(db, ("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str()) == SQLITE_OK;
  }
  if (!ok) {
    *error = describe(path, db);
  } else if (version > kSchemaVersion) {
    *error = "cannot open request log '" + path + "': schema version " + std::to_string(version) +
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

std::unique_ptr<Store> open_sqlite_store(const std::string& path, std::string* error) {
  std::string local_error;
  std::string& err = error ? *error : local_error;
  // The log holds prompts and identities: create it owner-only. SQLite gives its -wal and -shm
  // files the database file's permissions.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    err = "cannot open request log '" + path + "': " + std::strerror(errno);
    return nullptr;
  }
  ::close(fd);

  Writer writer;
  writer.db = sqlite::open(kWhat, path, SQLITE_OPEN_READWRITE, &err);
  if (!writer.db || !sqlite::configure_writer(kWhat, path, writer.db.get(), &err) ||
      !migrate(path, writer.db.get(), &err)) {
    return nullptr;
  }
  writer.insert_request =
      prepare(writer.db.get(), std::string("INSERT INTO requests (") + kScalarColumns +
                                   ", request_body, response_body) VALUES (?1, ?2, ?3, ?4, ?5, "
                                   "?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
                                   "?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)");
  writer.insert_tool_call =
      prepare(writer.db.get(),
              "INSERT INTO tool_calls (request_id, seq, time_ms, user, device, session_id, model, "
              "call_id, name, arguments) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  writer.insert_tool_result =
      prepare(writer.db.get(),
              "INSERT INTO tool_results (request_id, seq, time_ms, user, session_id, call_id, "
              "name, content, is_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  writer.savepoint = prepare(writer.db.get(), "SAVEPOINT record");
  writer.release = prepare(writer.db.get(), "RELEASE record");
  if (!writer.insert_request || !writer.insert_tool_call || !writer.insert_tool_result ||
      !writer.savepoint || !writer.release) {
    err = describe(path, writer.db.get());
    return nullptr;
  }

  // Read-only, so no query path can ever write to the log.
  Db reader = sqlite::open(kWhat, path, SQLITE_OPEN_READONLY, &err);
  if (!reader) return nullptr;
  return std::make_unique<SqliteStore>(path, std::move(writer), std::move(reader));
}

}  // namespace airlock::control
