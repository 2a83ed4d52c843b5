#include "control/store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace airlock::control {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "airlock-store-XXXXXX").string();
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

// Builders, because designated initializers that skip members trip GCC 12's
// -Wmissing-field-initializers.
struct Query {
  RequestQuery q;
  Query& user(std::string v) {
    q.user = std::move(v);
    return *this;
  }
  Query& model(std::string v) {
    q.model = std::move(v);
    return *this;
  }
  Query& since(int64_t v) {
    q.since_ms = v;
    return *this;
  }
  Query& until(int64_t v) {
    q.until_ms = v;
    return *this;
  }
  Query& before(std::string v) {
    q.before_id = std::move(v);
    return *this;
  }
  Query& limit(uint32_t v) {
    q.limit = v;
    return *this;
  }
  operator RequestQuery() const { return q; }
};

struct UsageBy {
  UsageQuery q;
  explicit UsageBy(UsageGroup group) { q.group_by = group; }
  UsageBy& user(std::string v) {
    q.user = std::move(v);
    return *this;
  }
  UsageBy& since(int64_t v) {
    q.since_ms = v;
    return *this;
  }
  UsageBy& until(int64_t v) {
    q.until_ms = v;
    return *this;
  }
  operator UsageQuery() const { return q; }
};

std::unique_ptr<Store> open_ok(const std::string& path) {
  std::string error;
  auto store = open_sqlite_store(path, &error);
  EXPECT_NE(store, nullptr) << error;
  EXPECT_EQ(error, "");
  return store;
}

std::string id_for(int n) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "req_%024x", n);
  return buffer;
}

RequestRecord minimal(int n, int64_t time_ms, std::string user = "alice",
                      std::string model = "gpt-5.5") {
  RequestRecord r;
  r.id = id_for(n);
  r.time_ms = time_ms;
  r.user = std::move(user);
  r.model = std::move(model);
  r.provider = "openai";
  r.api = "openai.chat";
  r.status = 200;
  return r;
}

RequestRecord full_record() {
  RequestRecord r;
  r.id = "req_0123456789abcdef01234567";
  r.time_ms = 1'767'225'600'123;
  r.user = "alice@example.com";
  r.device = "laptop";
  r.tags = {"tag:dev", "tag:eu"};
  r.groups = {"group:eng", "group:ml", "group:ünïcode"};
  r.peer_key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
  r.provider = "anthropic-main";
  r.model = "claude-opus-4-7";
  r.api = "anthropic.messages";
  r.status = 502;
  r.streamed = true;
  r.input_tokens = 1234;
  r.output_tokens = 567;
  r.cache_read_tokens = 89;
  r.cache_write_tokens = 10;
  r.reasoning_tokens = 321;
  r.usage_complete = false;
  r.client_disconnected = true;
  r.cost = 12'345'678'901;
  r.ttfb_us = 250'000;
  r.duration_us = 9'876'543;
  r.error = "upstream: overloaded_error: Overloaded";
  r.session_id = "cc_6f1c2a9e-0b7d-4c1e-9a53-2f8e1d4b7c60";
  r.guardrail_hits = {{"secrets", "provider_keys/openai", "redact", "prompt"},
                      {"shell", "dangerous_commands/rm_rf", "cut", "response"}};
  r.tool_results = {{"toolu_0", "Bash", "On branch main", false},
                    {"toolu_9", "", R"([{"type":"text","text":"no such file"}])", true}};
  r.tool_calls = {{"toolu_1", "shell", R"({"command":["ls"]})"},
                  {"toolu_2", "apply_patch", "*** Begin Patch\n(cut"},
                  {"toolu_3", "empty", ""}};
  // A NUL and bytes that are not UTF-8: a body cut at its cap can end mid-character.
  r.request_body = std::string("{\"model\":\"claude\"}\0binary\xff\xfe", 27);
  r.response_body = "event: message_start\ndata: {}\n\n";
  return r;
}

void expect_scalars_equal(const RequestRecord& got, const RequestRecord& want) {
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.time_ms, want.time_ms);
  EXPECT_EQ(got.user, want.user);
  EXPECT_EQ(got.device, want.device);
  EXPECT_EQ(got.tags, want.tags);
  EXPECT_EQ(got.groups, want.groups);
  EXPECT_EQ(got.peer_key, want.peer_key);
  EXPECT_EQ(got.provider, want.provider);
  EXPECT_EQ(got.model, want.model);
  EXPECT_EQ(got.api, want.api);
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.streamed, want.streamed);
  EXPECT_EQ(got.input_tokens, want.input_tokens);
  EXPECT_EQ(got.output_tokens, want.output_tokens);
  EXPECT_EQ(got.cache_read_tokens, want.cache_read_tokens);
  EXPECT_EQ(got.cache_write_tokens, want.cache_write_tokens);
  EXPECT_EQ(got.reasoning_tokens, want.reasoning_tokens);
  EXPECT_EQ(got.usage_complete, want.usage_complete);
  EXPECT_EQ(got.client_disconnected, want.client_disconnected);
  EXPECT_EQ(got.cost, want.cost);
  EXPECT_EQ(got.ttfb_us, want.ttfb_us);
  EXPECT_EQ(got.duration_us, want.duration_us);
  EXPECT_EQ(got.error, want.error);
  EXPECT_EQ(got.session_id, want.session_id);
  EXPECT_EQ(got.guardrail_hits, want.guardrail_hits);
}

void expect_equal(const RequestRecord& got, const RequestRecord& want) {
  expect_scalars_equal(got, want);
  EXPECT_EQ(got.tool_calls, want.tool_calls);
  EXPECT_EQ(got.tool_results, want.tool_results);
  EXPECT_EQ(got.request_body, want.request_body);
  EXPECT_EQ(got.response_body, want.response_body);
}

std::vector<RequestRecord> list(Store& store, RequestQuery query) {
  std::string error;
  auto page = store.requests(query, &error);
  EXPECT_EQ(error, "");
  return page;
}

std::vector<std::string> ids_of(const std::vector<RequestRecord>& records) {
  std::vector<std::string> ids;
  for (const auto& r : records) ids.push_back(r.id);
  return ids;
}

// Every record matching `query`, walked page by page with before_id. The page cap turns a
// cursor that never advances into a failure instead of a hang.
std::vector<std::string> all_pages(Store& store, RequestQuery query) {
  std::vector<std::string> ids;
  for (int pages = 0; pages < 10'000; ++pages) {
    const auto page = list(store, query);
    if (page.empty()) return ids;
    for (const auto& r : page) ids.push_back(r.id);
    query.before_id = page.back().id;
  }
  ADD_FAILURE() << "pagination did not end";
  return ids;
}

uint64_t count_rows(Store& store) {
  std::string error;
  uint64_t total = 0;
  for (const auto& t : store.usage(UsageBy(UsageGroup::kUser), &error)) total += t.requests;
  EXPECT_EQ(error, "");
  return total;
}

// Runs a single-row query on a separate raw connection.
std::string raw_query(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  std::string value;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return value;
}

TEST(Store, RoundTripsEveryField) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  const RequestRecord want = full_record();
  store->append(want);

  std::string error;
  const auto got = store->request(want.id, &error);
  ASSERT_TRUE(got.has_value()) << error;
  expect_equal(*got, want);

  // A page carries the scalar fields only.
  const auto page = list(*store, {});
  ASSERT_EQ(page.size(), 1u);
  expect_scalars_equal(page[0], want);
  EXPECT_TRUE(page[0].tool_calls.empty());
  EXPECT_TRUE(page[0].tool_results.empty());
  EXPECT_FALSE(page[0].request_body.has_value());
}

RequestRecord in_session(int n, int64_t time_ms, std::string user, std::string session) {
  RequestRecord r = minimal(n, time_ms, std::move(user));
  r.device = "laptop";
  r.session_id = std::move(session);
  r.input_tokens = 100;
  r.output_tokens = 10;
  r.cost = 1000;
  return r;
}

struct Sessions {
  SessionQuery q;
  Sessions& user(std::string v) {
    q.user = std::move(v);
    return *this;
  }
  Sessions& since(int64_t v) {
    q.since_ms = v;
    return *this;
  }
  Sessions& until(int64_t v) {
    q.until_ms = v;
    return *this;
  }
  Sessions& limit(uint32_t v) {
    q.limit = v;
    return *this;
  }
  operator SessionQuery() const { return q; }
};

struct Tools {
  ToolCallQuery q;
  Tools& user(std::string v) {
    q.user = std::move(v);
    return *this;
  }
  Tools& session(std::string v) {
    q.session = std::move(v);
    return *this;
  }
  Tools& name(std::string v) {
    q.name = std::move(v);
    return *this;
  }
  Tools& since(int64_t v) {
    q.since_ms = v;
    return *this;
  }
  Tools& before(ToolCallCursor v) {
    q.before = std::move(v);
    return *this;
  }
  Tools& limit(uint32_t v) {
    q.limit = v;
    return *this;
  }
  operator ToolCallQuery() const { return q; }
};

std::vector<SessionSummary> sessions(Store& store, SessionQuery query) {
  std::string error;
  auto found = store.sessions(query, &error);
  EXPECT_EQ(error, "");
  return found;
}

std::vector<ToolCallRow> tools(Store& store, ToolCallQuery query) {
  std::string error;
  auto rows = store.tool_calls(query, &error);
  EXPECT_EQ(error, "");
  return rows;
}

std::vector<std::string> call_ids(const std::vector<ToolCallRow>& rows) {
  std::vector<std::string> ids;
  for (const auto& row : rows) ids.push_back(row.call.id);
  return ids;
}

// An agent's turns: the model asks for tools in one response, the client sends the results in
// the next request.
void append_agent_turns(Store& store) {
  RequestRecord t1 = in_session(1, 1000, "alice", "cc_s1");
  t1.tool_calls = {{"toolu_1", "Bash", R"({"command":"git status"})"},
                   {"toolu_2", "Read", R"({"file_path":"/a"})"}};
  RequestRecord t2 = in_session(2, 2000, "alice", "cc_s1");
  t2.tool_results = {{"toolu_1", "Bash", "clean", false}, {"toolu_2", "Read", "missing", true}};
  t2.tool_calls = {{"toolu_3", "Bash", R"({"command":"make"})"}};
  // Another user's session in between, reusing a call id: never matched to alice's call.
  RequestRecord other = in_session(3, 2500, "bob", "cx_b1");
  other.tool_calls = {{"call_9", "shell", R"({"command":["bash","-lc","ls"]})"}};
  other.tool_results = {{"toolu_3", "", "bob's output", false}};
  // Gemini calls without ids: matched by name within the session.
  RequestRecord g1 = in_session(4, 3000, "alice", "fp_0011223344556677");
  g1.tool_calls = {{"", "run_shell_command", R"({"command":"ls"})"}};
  RequestRecord g2 = in_session(5, 3100, "alice", "fp_0011223344556677");
  g2.tool_results = {{"", "run_shell_command", R"({"output":"a"})", false}};
  RequestRecord unsessioned = minimal(6, 3200, "alice");
  for (RequestRecord* r : {&t1, &t2, &other, &g1, &g2, &unsessioned}) store.append(*r);
}

TEST(Store, SessionsSummariseEachSessionLatestFirst) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  append_agent_turns(*store);

  const auto all = sessions(*store, {});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, "fp_0011223344556677");
  EXPECT_EQ(all[1].id, "cx_b1");
  const SessionSummary& cc = all[2];
  EXPECT_EQ(cc.id, "cc_s1");
  EXPECT_EQ(cc.user, "alice");
  EXPECT_EQ(cc.device, "laptop");
  EXPECT_EQ(cc.first_ms, 1000);
  EXPECT_EQ(cc.last_ms, 2000);
  EXPECT_EQ(cc.requests, 2u);
  EXPECT_EQ(cc.tool_calls, 3u);
  EXPECT_EQ(cc.input_tokens, 200u);
  EXPECT_EQ(cc.output_tokens, 20u);
  EXPECT_EQ(cc.cost, 2000);

  // A window picks sessions active in it; their totals still cover the whole session.
  const auto late = sessions(*store, Sessions().user("alice").since(1500).until(2600));
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].id, "cc_s1");
  EXPECT_EQ(late[0].requests, 2u);
  EXPECT_EQ(late[0].first_ms, 1000);

  EXPECT_EQ(sessions(*store, Sessions().user("bob")).size(), 1u);
  EXPECT_EQ(sessions(*store, Sessions().limit(1)).size(), 1u);
}

TEST(Store, ToolCallsCarryTheResultFromTheNextRequest) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  append_agent_turns(*store);

  const auto rows = tools(*store, Tools().user("alice"));
  // alice's Claude Code session first (its first call is the oldest), in time order.
  EXPECT_EQ(call_ids(rows), (std::vector<std::string>{"toolu_1", "toolu_2", "toolu_3", ""}));
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].position.request_id, id_for(1));
  EXPECT_EQ(rows[0].position.seq, 0u);
  EXPECT_EQ(rows[1].position.seq, 1u);
  EXPECT_EQ(rows[0].time_ms, 1000);
  EXPECT_EQ(rows[0].session_id, "cc_s1");
  EXPECT_EQ(rows[0].device, "laptop");
  EXPECT_EQ(rows[0].model, "gpt-5.5");
  EXPECT_EQ(rows[0].call.arguments, R"({"command":"git status"})");
  ASSERT_TRUE(rows[0].result.has_value());
  EXPECT_EQ(rows[0].result->content, "clean");
  EXPECT_FALSE(rows[0].result->is_error);
  EXPECT_EQ(rows[0].result_request_id, id_for(2));
  EXPECT_EQ(rows[0].result_time_ms, 2000);
  ASSERT_TRUE(rows[1].result.has_value());
  EXPECT_EQ(rows[1].result->content, "missing");
  EXPECT_TRUE(rows[1].result->is_error);
  // bob's result for a call id alice also used is not hers; hers has not arrived yet.
  EXPECT_FALSE(rows[2].result.has_value());
  ASSERT_TRUE(rows[3].result.has_value());
  EXPECT_EQ(rows[3].result->content, R"({"output":"a"})");

  EXPECT_EQ(call_ids(tools(*store, Tools().name("Bash"))),
            (std::vector<std::string>{"toolu_1", "toolu_3"}));
  EXPECT_EQ(call_ids(tools(*store, Tools().session("cx_b1"))),
            (std::vector<std::string>{"call_9"}));
  EXPECT_EQ(call_ids(tools(*store, Tools().since(2000).user("alice"))),
            (std::vector<std::string>{"toolu_3", ""}));

  // Paging backwards from the oldest call of a page reaches every call once.
  const auto newest = tools(*store, Tools().user("alice").limit(2));
  EXPECT_EQ(call_ids(newest), (std::vector<std::string>{"toolu_3", ""}));
  const auto older = tools(*store, Tools().user("alice").limit(2).before({id_for(2), 0}));
  EXPECT_EQ(call_ids(older), (std::vector<std::string>{"toolu_1", "toolu_2"}));
  EXPECT_TRUE(tools(*store, Tools().user("alice").before({id_for(1), 0})).empty());

  std::string error;
  EXPECT_TRUE(store->tool_calls(Tools().before({"req_nope", 0}), &error).empty());
  EXPECT_EQ(error, "unknown before_id");
}

TEST(Store, UpgradesAVersion1DatabaseInPlace) {
  TempDir dir;
  const std::string path = dir.file("log.db");
  {
    // The version 1 schema and a row as the previous release wrote them.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const char* v1 = R"sql(
      CREATE TABLE requests (id TEXT PRIMARY KEY NOT NULL, time_ms INTEGER NOT NULL,
        user TEXT NOT NULL, device TEXT NOT NULL, tags TEXT NOT NULL, user_groups TEXT NOT NULL,
        peer_key TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, api TEXT NOT NULL,
        status INTEGER NOT NULL, streamed INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
        usage_complete INTEGER NOT NULL, client_disconnected INTEGER NOT NULL,
        cost_picodollars INTEGER, ttfb_us INTEGER NOT NULL, duration_us INTEGER NOT NULL,
        error TEXT NOT NULL, request_body BLOB, response_body BLOB);
      CREATE INDEX requests_time ON requests (time_ms, id);
      CREATE TABLE tool_calls (request_id TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL, call_id TEXT NOT NULL, name TEXT NOT NULL, arguments TEXT NOT NULL,
        PRIMARY KEY (request_id, seq)) WITHOUT ROWID;
      INSERT INTO requests VALUES ('req_old', 500, 'carol', 'box', '[]', '[]', 'k', 'openai',
        'gpt-5', 'openai.responses', 200, 1, 1, 2, 0, 0, 0, 1, 0, NULL, 5, 9, '', NULL, NULL);
      INSERT INTO tool_calls VALUES ('req_old', 0, 'call_old', 'shell', '{}');
      PRAGMA user_version = 1;)sql";
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto store = open_ok(path);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(raw_query(path, "PRAGMA user_version"), "2");
  std::string error;
  const auto old = store->request("req_old", &error);
  ASSERT_TRUE(old.has_value()) << error;
  EXPECT_EQ(old->user, "carol");
  EXPECT_EQ(old->session_id, "");
  ASSERT_EQ(old->tool_calls.size(), 1u);

  // Old calls are listed with their request's identity and time.
  const auto rows = tools(*store, {});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].user, "carol");
  EXPECT_EQ(rows[0].device, "box");
  EXPECT_EQ(rows[0].time_ms, 500);
  EXPECT_EQ(rows[0].model, "gpt-5");

  RequestRecord next = in_session(1, 600, "carol", "cx_new");
  next.tool_results = {{"call_old", "shell", "done", false}};
  store->append(next);
  const auto after = tools(*store, {});
  ASSERT_EQ(after.size(), 1u);
  ASSERT_TRUE(after[0].result.has_value());
  EXPECT_EQ(after[0].result->content, "done");
  EXPECT_EQ(sessions(*store, {}).size(), 1u);
  store.reset();
  // Reopening an upgraded file changes nothing.
  EXPECT_NE(open_ok(path), nullptr);
}

TEST(Store, UnknownCostAndMissingBodiesStayDistinctFromZeroAndEmpty) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  RequestRecord unknown = minimal(1, 1000);
  unknown.cost = std::nullopt;
  RequestRecord zero = minimal(2, 2000);
  zero.cost = 0;
  zero.request_body = "";
  zero.response_body = "";
  store->append(unknown);
  store->append(zero);

  std::string error;
  const auto got_unknown = store->request(unknown.id, &error);
  const auto got_zero = store->request(zero.id, &error);
  ASSERT_TRUE(got_unknown && got_zero) << error;
  EXPECT_EQ(got_unknown->cost, std::nullopt);
  EXPECT_EQ(got_unknown->request_body, std::nullopt);
  EXPECT_EQ(got_unknown->response_body, std::nullopt);
  EXPECT_EQ(got_zero->cost, std::optional<Picodollars>(0));
  EXPECT_EQ(got_zero->request_body, std::optional<std::string>(""));
  EXPECT_EQ(got_zero->response_body, std::optional<std::string>(""));
}

TEST(Store, UnknownIdIsNotAnError) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  std::string error = "stale";
  EXPECT_EQ(store->request("req_000000000000000000000000", &error), std::nullopt);
  EXPECT_EQ(error, "");
}

TEST(Store, PaginationVisitsEveryRecordOnceNewestFirst) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  std::vector<RequestRecord> records;
  // Groups of three share a millisecond, so ties must be broken by id across page boundaries.
  for (int n = 0; n < 120; ++n) records.push_back(minimal(n, 1'000'000 + (n / 3) * 10));
  // Append out of order: the order of the log is by time, not by arrival in the queue.
  std::reverse(records.begin(), records.begin() + 60);
  for (const auto& r : records) store->append(r);

  std::sort(records.begin(), records.end(), [](const RequestRecord& a, const RequestRecord& b) {
    return std::tie(a.time_ms, a.id) > std::tie(b.time_ms, b.id);
  });
  EXPECT_EQ(all_pages(*store, Query().limit(7)), ids_of(records));
  EXPECT_EQ(all_pages(*store, Query().limit(1000)), ids_of(records));

  const auto first = list(*store, Query().limit(10));
  const auto second = list(*store, Query().before(first.back().id).limit(10));
  ASSERT_EQ(second.size(), 10u);
  EXPECT_EQ(second.front().id, records[10].id);
}

TEST(Store, UnknownBeforeIdIsAnError) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  store->append(minimal(1, 1000));
  std::string error;
  EXPECT_TRUE(store->requests(Query().before("req_ffffffffffffffffffffffff"), &error).empty());
  EXPECT_NE(error.find("before_id"), std::string::npos);
}

TEST(Store, FiltersByUserModelAndTime) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  store->append(minimal(1, 1000, "alice", "gpt-5.5"));
  store->append(minimal(2, 2000, "bob", "gpt-5.5"));
  store->append(minimal(3, 3000, "alice", "claude-opus-4-7"));
  store->append(minimal(4, 4000, "bob", "claude-opus-4-7"));
  store->append(minimal(5, 5000, "alice", "gpt-5.5"));

  using Ids = std::vector<std::string>;
  EXPECT_EQ(ids_of(list(*store, Query().user("alice"))), (Ids{id_for(5), id_for(3), id_for(1)}));
  EXPECT_EQ(ids_of(list(*store, Query().model("claude-opus-4-7"))), (Ids{id_for(4), id_for(3)}));
  EXPECT_EQ(ids_of(list(*store, Query().user("alice").model("gpt-5.5"))),
            (Ids{id_for(5), id_for(1)}));
  // since is inclusive, until exclusive.
  EXPECT_EQ(ids_of(list(*store, Query().since(2000).until(4000))), (Ids{id_for(3), id_for(2)}));
  EXPECT_EQ(ids_of(list(*store, Query().user("bob").since(2001))), (Ids{id_for(4)}));
  EXPECT_TRUE(list(*store, Query().user("carol")).empty());
  // Pagination composes with filters.
  EXPECT_EQ(all_pages(*store, Query().user("alice").limit(1)),
            (Ids{id_for(5), id_for(3), id_for(1)}));
}

TEST(Store, LimitIsClampedBetweenOneAndAThousand) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  for (int n = 0; n < 1005; ++n) store->append(minimal(n, n));
  EXPECT_EQ(list(*store, Query().limit(0)).size(), 1u);
  EXPECT_EQ(list(*store, Query().limit(5000)).size(), 1000u);
  EXPECT_EQ(list(*store, Query().limit(3)).size(), 3u);
}

TEST(Store, UsageGroupsByUserModelAndUtcDay) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  constexpr int64_t kDay = 86'400'000;
  constexpr int64_t kJan1 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
  auto make = [](int n, int64_t time_ms, std::string user, std::string model, uint64_t in,
                 uint64_t out, std::optional<Picodollars> cost) {
    RequestRecord r = minimal(n, time_ms, std::move(user), std::move(model));
    r.input_tokens = in;
    r.output_tokens = out;
    r.cache_read_tokens = in / 10;
    r.cache_write_tokens = in / 100;
    r.reasoning_tokens = out / 2;
    r.cost = cost;
    return r;
  };
  store->append(make(1, kJan1 + 5, "alice", "gpt", 100, 10, 1000));
  store->append(make(2, kJan1 + kDay - 1, "alice", "claude", 200, 20, std::nullopt));
  store->append(make(3, kJan1 + kDay, "bob", "gpt", 300, 30, 3000));
  store->append(make(4, kJan1 + 2 * kDay + 7, "alice", "gpt", 400, 40, 0));

  std::string error;
  const auto by_user = store->usage(UsageBy(UsageGroup::kUser), &error);
  ASSERT_EQ(by_user.size(), 2u) << error;
  EXPECT_EQ(by_user[0].key, "alice");
  EXPECT_EQ(by_user[0].requests, 3u);
  EXPECT_EQ(by_user[0].input_tokens, 700u);
  EXPECT_EQ(by_user[0].output_tokens, 70u);
  EXPECT_EQ(by_user[0].cache_read_tokens, 10u + 20u + 40u);
  EXPECT_EQ(by_user[0].cache_write_tokens, 1u + 2u + 4u);
  EXPECT_EQ(by_user[0].reasoning_tokens, 5u + 10u + 20u);
  EXPECT_EQ(by_user[0].cost, 1000);  // the unknown cost adds nothing
  EXPECT_EQ(by_user[1].key, "bob");
  EXPECT_EQ(by_user[1].requests, 1u);
  EXPECT_EQ(by_user[1].cost, 3000);

  const auto by_model = store->usage(UsageBy(UsageGroup::kModel), &error);
  ASSERT_EQ(by_model.size(), 2u) << error;
  EXPECT_EQ(by_model[0].key, "claude");
  EXPECT_EQ(by_model[0].requests, 1u);
  EXPECT_EQ(by_model[0].cost, 0);  // no known cost at all
  EXPECT_EQ(by_model[1].key, "gpt");
  EXPECT_EQ(by_model[1].requests, 3u);
  EXPECT_EQ(by_model[1].input_tokens, 800u);
  EXPECT_EQ(by_model[1].cost, 4000);

  const auto by_day = store->usage(UsageBy(UsageGroup::kDay), &error);
  ASSERT_EQ(by_day.size(), 3u) << error;
  EXPECT_EQ(by_day[0].key, "2026-01-01");
  EXPECT_EQ(by_day[0].requests, 2u);
  EXPECT_EQ(by_day[0].input_tokens, 300u);
  EXPECT_EQ(by_day[1].key, "2026-01-02");
  EXPECT_EQ(by_day[1].requests, 1u);
  EXPECT_EQ(by_day[2].key, "2026-01-03");
  EXPECT_EQ(by_day[2].cost, 0);

  const auto alice_days =
      store->usage(UsageBy(UsageGroup::kDay).user("alice").since(kJan1 + 6), &error);
  ASSERT_EQ(alice_days.size(), 2u) << error;
  EXPECT_EQ(alice_days[0].key, "2026-01-01");
  EXPECT_EQ(alice_days[0].input_tokens, 200u);
  EXPECT_EQ(alice_days[1].key, "2026-01-03");

  const auto first_day = store->usage(UsageBy(UsageGroup::kModel).until(kJan1 + kDay), &error);
  ASSERT_EQ(first_day.size(), 2u) << error;
  EXPECT_EQ(first_day[1].key, "gpt");
  EXPECT_EQ(first_day[1].requests, 1u);
}

TEST(Store, ConcurrentAppendsAreAllWritten) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, t] {
      for (int i = 0; i < kPerThread; ++i) {
        RequestRecord r = minimal(t * kPerThread + i, 1'000'000 + i, "user" + std::to_string(t));
        r.tool_calls = {{"call_" + std::to_string(i), "f", "{}"}};
        store->append(std::move(r));
      }
    });
  }
  // A reader running alongside the writers must neither fail nor block them.
  std::thread reader([&store] {
    for (int i = 0; i < 20; ++i) list(*store, Query().limit(100));
  });
  for (auto& thread : threads) thread.join();
  reader.join();
  store->flush();

  const auto ids = all_pages(*store, Query().limit(1000));
  EXPECT_EQ(ids.size(), 4000u);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 4000u);
  std::string error;
  const auto per_user = store->usage(UsageBy(UsageGroup::kUser), &error);
  ASSERT_EQ(per_user.size(), 8u) << error;
  for (const auto& t : per_user) EXPECT_EQ(t.requests, 500u) << t.key;
  EXPECT_EQ(store->request(id_for(3999), &error)->tool_calls.size(), 1u);
}

TEST(Store, DestroyingWithoutFlushWritesEverythingAndReopenKeepsIt) {
  TempDir dir;
  const std::string path = dir.file("log.db");
  {
    auto store = open_ok(path);
    for (int n = 0; n < 1000; ++n) store->append(minimal(n, n));
  }
  {
    auto store = open_ok(path);
    EXPECT_EQ(count_rows(*store), 1000u);
    store->append(minimal(1000, 1000));
  }
  auto store = open_ok(path);
  EXPECT_EQ(count_rows(*store), 1001u);
  std::string error;
  EXPECT_TRUE(store->request(id_for(0), &error).has_value()) << error;
  EXPECT_TRUE(store->request(id_for(1000), &error).has_value()) << error;
}

TEST(Store, UsesWalAndVersionedSchemaAndOwnerOnlyFile) {
  TempDir dir;
  const std::string path = dir.file("log.db");
  auto store = open_ok(path);
  store->append(minimal(1, 1));
  store->flush();
  EXPECT_EQ(raw_query(path, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw_query(path, "PRAGMA user_version"), "2");
  EXPECT_EQ(raw_query(path, "SELECT count(*) FROM requests"), "1");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(Store, DuplicateIdIsRefusedWithoutLosingTheOthers) {
  TempDir dir;
  auto store = open_ok(dir.file("log.db"));
  RequestRecord original = minimal(1, 1000);
  original.tool_calls = {{"call_a", "first", "{}"}};
  RequestRecord duplicate = minimal(1, 2000, "mallory");
  duplicate.tool_calls = {{"call_b", "second", "{}"}};
  testing::internal::CaptureStderr();
  store->append(original);
  store->append(duplicate);
  store->append(minimal(2, 3000));
  store->flush();
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("dropped 1 record"), std::string::npos) << log;
  EXPECT_EQ(log.find("mallory"), std::string::npos) << log;

  EXPECT_EQ(count_rows(*store), 2u);
  std::string error;
  const auto kept = store->request(id_for(1), &error);
  ASSERT_TRUE(kept.has_value()) << error;
  EXPECT_EQ(kept->user, "alice");
  EXPECT_EQ(kept->tool_calls, original.tool_calls);
}

TEST(Store, WriteFailureIsReportedOnceAndRetriedUntilWritten) {
  TempDir dir;
  const std::string path = dir.file("log.db");
  auto store = open_ok(path);

  // Another connection holds the write lock, so the writer's batches fail with SQLITE_BUSY.
  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  testing::internal::CaptureStderr();
  for (int n = 0; n < 10; ++n) {
    RequestRecord r = minimal(n, n);
    r.request_body = "secret prompt";
    store->append(std::move(r));
  }
  // Readers do not wait for a failing writer: they return what is committed.
  EXPECT_TRUE(list(*store, {}).empty());

  ASSERT_EQ(sqlite3_exec(blocker, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  store->flush();
  const std::string log = testing::internal::GetCapturedStderr();

  EXPECT_EQ(count_rows(*store), 10u);
  EXPECT_NE(log.find(path), std::string::npos) << log;
  EXPECT_NE(log.find("retrying"), std::string::npos) << log;
  EXPECT_NE(log.find("resumed"), std::string::npos) << log;
  EXPECT_EQ(log.find("secret"), std::string::npos) << log;
  const auto first = log.find("retrying");
  EXPECT_EQ(log.find("retrying", first + 1), std::string::npos) << "reported more than once";
}

TEST(Store, BadPathFailsWithThePathInTheError) {
  TempDir dir;
  const std::string missing = dir.file("no-such-dir/log.db");
  std::string error;
  EXPECT_EQ(open_sqlite_store(missing, &error), nullptr);
  EXPECT_NE(error.find(missing), std::string::npos) << error;

  // A directory is not a database either.
  error.clear();
  EXPECT_EQ(open_sqlite_store(dir.file(""), &error), nullptr);
  EXPECT_FALSE(error.empty());
}

TEST(Store, NonDatabaseFileFailsWithoutEchoingItsContents) {
  TempDir dir;
  const std::string path = dir.file("notes.txt");
  std::ofstream(path) << "this is a secret text file, not a database, long enough to be a header";
  std::string error;
  EXPECT_EQ(open_sqlite_store(path, &error), nullptr);
  EXPECT_NE(error.find(path), std::string::npos) << error;
  EXPECT_EQ(error.find("secret"), std::string::npos) << error;
}

TEST(Store, NewerSchemaIsRefused) {
  TempDir dir;
  const std::string path = dir.file("log.db");
  open_ok(path).reset();
  raw_query(path, "PRAGMA user_version = 99");
  std::string error;
  EXPECT_EQ(open_sqlite_store(path, &error), nullptr);
  EXPECT_NE(error.find("schema version 99"), std::string::npos) << error;
}

}  // namespace
}  // namespace airlock::control
