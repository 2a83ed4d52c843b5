#include "control/admin/admin_api.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

#include <gtest/gtest.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "control/budget/ledger.h"
#include "control/events/outbox.h"
#include "dataplane/stats.h"
#include "tests/admin_test_util.h"
#include "tests/http_test_util.h"

namespace airlock::control::admin {
namespace {

using airlock::testing::demo_policy;
using airlock::testing::FakeDataPlane;
using airlock::testing::TempDir;
using airlock::testing::test_key;
using nlohmann::json;
namespace bhttp = boost::beast::http;

struct Reply {
  unsigned status = 0;
  json body;
};

// 2025-03-01T00:00:00Z
constexpr int64_t kMarch1 = 1'740'787'200'000;

RequestRecord record(int n, std::string user, std::string model, int64_t time_ms,
                     std::optional<Picodollars> cost) {
  RequestRecord r;
  char id[32];
  std::snprintf(id, sizeof(id), "req_%024x", n);
  r.id = id;
  r.time_ms = time_ms;
  r.user = std::move(user);
  r.device = "laptop";
  r.peer_key = test_key(1);
  r.provider = "anthropic";
  r.model = std::move(model);
  r.api = "anthropic.messages";
  r.status = 200;
  r.input_tokens = 100;
  r.output_tokens = 10;
  r.usage_complete = true;
  r.cost = cost;
  r.duration_us = 1500;
  r.request_body = "{\"n\":" + std::to_string(n) + "}";
  return r;
}

class AdminApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    store_ = open_sqlite_store(dir_.file("requests.db"), &error);
    ASSERT_NE(store_, nullptr) << error;
    dp_ = std::make_unique<FakeDataPlane>(dir_.file("dp.sock"));
    PolicyManagerOptions pm;
    pm.policy_path = dir_.file("policy.json");
    pm.data_planes.push_back({"dp-test", dir_.file("dp.sock")});
    policies_ = std::make_unique<PolicyManager>(pm);
  }

  void start(std::string stats_instance = "",
             const std::function<void(AdminOptions&)>& configure = {}) {
    AdminOptions options;
    options.listen = {asio::ip::make_address("127.0.0.1"), 0};
    options.hub = {test_key(7), "198.51.100.1:51820", {}};
    options.stats_instance = std::move(stats_instance);
    if (configure) configure(options);
    std::string error;
    api_ = AdminApi::start(io_.io(), options, *store_, *policies_, &error);
    ASSERT_NE(api_, nullptr) << error;
  }

  void TearDown() override {
    if (api_) api_->stop();
    io_.join();
    api_.reset();
  }

  Reply call(bhttp::verb method, const std::string& target, const std::string& body = "",
             const std::vector<std::pair<bhttp::field, std::string>>& headers = {}) {
    bhttp::response<bhttp::string_body> res = raw_call(method, target, body, headers);
    EXPECT_EQ(res[bhttp::field::content_type], "application/json");
    return {res.result_int(), json::parse(res.body())};
  }
  bhttp::response<bhttp::string_body> raw_call(
      bhttp::verb method, const std::string& target, const std::string& body = "",
      const std::vector<std::pair<bhttp::field, std::string>>& headers = {}) {
    asio::io_context io;
    boost::beast::tcp_stream stream(io);
    stream.connect({asio::ip::make_address("127.0.0.1"), api_->port()});
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1:" + std::to_string(api_->port()));
    for (const auto& [field, value] : headers) req.set(field, value);
    req.body() = body;
    req.prepare_payload();
    bhttp::write(stream, req);
    boost::beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(stream, buffer, res);
    return res;
  }
  Reply get(const std::string& target) { return call(bhttp::verb::get, target); }

  std::vector<std::string> ids(const Reply& reply) {
    std::vector<std::string> out;
    for (const json& r : reply.body["requests"]) out.push_back(r["id"]);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<FakeDataPlane> dp_;
  std::unique_ptr<PolicyManager> policies_;
  std::unique_ptr<events::Outbox> outbox_;  // outlives the API that reads it
  http::testing::IoThreads io_;
  std::unique_ptr<AdminApi> api_;
};

TEST_F(AdminApiTest, RequestsArePagedNewestFirst) {
  for (int i = 1; i <= 5; ++i) {
    store_->append(record(i, i % 2 ? "alice" : "bob", "claude-sonnet-4-5", kMarch1 + i * 1000, 1));
  }
  start();
  Reply page1 = get("/v1/admin/requests?limit=2");
  ASSERT_EQ(page1.status, 200u) << page1.body;
  EXPECT_EQ(ids(page1),
            (std::vector<std::string>{record(5, "", "", 0, {}).id, record(4, "", "", 0, {}).id}));
  ASSERT_TRUE(page1.body["next_before"].is_string());
  Reply page2 =
      get("/v1/admin/requests?limit=2&before=" + page1.body["next_before"].get<std::string>());
  EXPECT_EQ(ids(page2),
            (std::vector<std::string>{record(3, "", "", 0, {}).id, record(2, "", "", 0, {}).id}));
  Reply page3 =
      get("/v1/admin/requests?limit=2&before=" + page2.body["next_before"].get<std::string>());
  EXPECT_EQ(ids(page3), std::vector<std::string>{record(1, "", "", 0, {}).id});
  EXPECT_TRUE(page3.body["next_before"].is_null());

  const json& first = page1.body["requests"][0];
  EXPECT_EQ(first["user"], "alice");
  EXPECT_EQ(first["time"], "2025-03-01T00:00:05.000Z");
  EXPECT_EQ(first["cost_picodollars"], 1);
  EXPECT_EQ(first["cost_dollars"], "0.000000000001");
  EXPECT_FALSE(first.contains("request_body"));  // bodies only on the single-record route
}

TEST_F(AdminApiTest, RequestsFilterByUserModelAndTime) {
  store_->append(record(1, "alice", "claude-sonnet-4-5", kMarch1 - 1, {}));
  store_->append(record(2, "alice", "gpt-5", kMarch1, {}));
  store_->append(record(3, "bob", "gpt-5", kMarch1 + 3'600'000, {}));
  store_->append(record(4, "alice", "gpt-5", kMarch1 + 7'200'000, {}));
  start();
  auto id = [](int n) { return record(n, "", "", 0, {}).id; };
  EXPECT_EQ(ids(get("/v1/admin/requests?user=alice")),
            (std::vector<std::string>{id(4), id(2), id(1)}));
  EXPECT_EQ(ids(get("/v1/admin/requests?model=gpt-5&user=alice")),
            (std::vector<std::string>{id(4), id(2)}));
  // since is inclusive, until exclusive; RFC 3339 with an offset and plain milliseconds.
  EXPECT_EQ(
      ids(get("/v1/admin/requests?since=2025-03-01T00:00:00Z&until=2025-03-01T03:00:00%2B01:00")),
      (std::vector<std::string>{id(3), id(2)}));
  EXPECT_EQ(ids(get("/v1/admin/requests?since=2025-03-01&until=" + std::to_string(kMarch1 + 1))),
            std::vector<std::string>{id(2)});
  EXPECT_TRUE(get("/v1/admin/requests?user=nobody").body["requests"].empty());
}

TEST_F(AdminApiTest, BadQueryParametersAre400) {
  start();
  for (const char* target : {"/v1/admin/requests?limit=0", "/v1/admin/requests?limit=1001",
                             "/v1/admin/requests?limit=ten", "/v1/admin/requests?since=yesterday",
                             "/v1/admin/requests?until=2025-02-30", "/v1/admin/requests?users=a",
                             "/v1/admin/requests?user=a&user=b", "/v1/admin/requests?user=%zz",
                             "/v1/admin/usage?group_by=provider", "/v1/admin/peers?x=1"}) {
    Reply reply = get(target);
    EXPECT_EQ(reply.status, 400u) << target;
    EXPECT_TRUE(reply.body["error"].is_string()) << target;
  }
}

TEST_F(AdminApiTest, OneRequestWithItsBodiesOr404) {
  store_->append(record(1, "alice", "claude-sonnet-4-5", kMarch1, {}));
  start();
  Reply one = get("/v1/admin/requests/" + record(1, "", "", 0, {}).id);
  ASSERT_EQ(one.status, 200u) << one.body;
  EXPECT_EQ(one.body["request_body"], "{\"n\":1}");
  EXPECT_TRUE(one.body["response_body"].is_null());
  EXPECT_TRUE(one.body["cost_picodollars"].is_null());
  // Bodies are logged as received; bytes that are not UTF-8 do not break the answer.
  RequestRecord binary = record(2, "alice", "claude-sonnet-4-5", kMarch1, {});
  binary.response_body = std::string("ok \xff\xfe");
  store_->append(binary);
  Reply replaced = get("/v1/admin/requests/" + binary.id);
  ASSERT_EQ(replaced.status, 200u) << replaced.body;
  EXPECT_EQ(replaced.body["response_body"], "ok \xEF\xBF\xBD\xEF\xBF\xBD");
  Reply missing = get("/v1/admin/requests/req_000000000000000000000999");
  EXPECT_EQ(missing.status, 404u);
  EXPECT_TRUE(missing.body["error"].is_string());
}

TEST_F(AdminApiTest, UsageTotalsWithExactCosts) {
  store_->append(record(1, "alice", "claude-sonnet-4-5", kMarch1, 1'250'000'000'000));
  store_->append(record(2, "alice", "gpt-5", kMarch1 + 86'400'000, 125));
  store_->append(record(3, "bob", "gpt-5", kMarch1, 3'000'000'000'000));
  start();
  Reply by_user = get("/v1/admin/usage?group_by=user");
  ASSERT_EQ(by_user.status, 200u) << by_user.body;
  std::map<std::string, json> rows;
  for (const json& row : by_user.body["usage"]) rows[row["key"]] = row;
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows["alice"]["requests"], 2);
  EXPECT_EQ(rows["alice"]["input_tokens"], 200);
  EXPECT_EQ(rows["alice"]["cost_picodollars"], 1'250'000'000'125);
  EXPECT_EQ(rows["alice"]["cost_dollars"], "1.250000000125");
  EXPECT_EQ(rows["bob"]["cost_dollars"], "3.00");

  Reply by_day = get("/v1/admin/usage?group_by=day&user=alice");
  std::vector<std::string> days;
  for (const json& row : by_day.body["usage"]) days.push_back(row["key"]);
  std::sort(days.begin(), days.end());
  EXPECT_EQ(days, (std::vector<std::string>{"2025-03-01", "2025-03-02"}));
}

TEST_F(AdminApiTest, SessionsAndToolCallsWithTheirResults) {
  RequestRecord turn1 = record(1, "alice", "claude-sonnet-4-6", kMarch1, 1000);
  turn1.session_id = "cc_6f1c2a9e";
  turn1.tool_calls = {{"toolu_1", "Bash", R"({"command":"git status"})"},
                      {"toolu_2", "Read", R"({"file_path":"/a"})"}};
  RequestRecord turn2 = record(2, "alice", "claude-sonnet-4-6", kMarch1 + 5000, 500);
  turn2.session_id = "cc_6f1c2a9e";
  turn2.tool_results = {{"toolu_1", "Bash", "nothing to commit", false},
                        {"toolu_2", "Read", "no such file", true}};
  RequestRecord codex = record(3, "bob", "gpt-5.5", kMarch1 + 1000, {});
  codex.session_id = "cx_0199";
  codex.tool_calls = {{"call_1", "shell", R"({"command":["bash","-lc","ls"]})"}};
  for (const RequestRecord& r : {turn1, turn2, codex}) store_->append(r);
  start();

  Reply all = get("/v1/admin/sessions");
  ASSERT_EQ(all.status, 200u) << all.body;
  ASSERT_EQ(all.body["sessions"].size(), 2u);
  const json& cc = all.body["sessions"][0];
  EXPECT_EQ(cc["id"], "cc_6f1c2a9e");
  EXPECT_EQ(cc["user"], "alice");
  EXPECT_EQ(cc["device"], "laptop");
  EXPECT_EQ(cc["first"], "2025-03-01T00:00:00.000Z");
  EXPECT_EQ(cc["last_ms"], kMarch1 + 5000);
  EXPECT_EQ(cc["requests"], 2);
  EXPECT_EQ(cc["tool_calls"], 2);
  EXPECT_EQ(cc["input_tokens"], 200);
  EXPECT_EQ(cc["cost_dollars"], "0.0000000015");
  EXPECT_EQ(get("/v1/admin/sessions?user=bob&since=2025-03-01").body["sessions"].size(), 1u);
  EXPECT_TRUE(get("/v1/admin/sessions?until=2025-02-28").body["sessions"].empty());

  Reply calls = get("/v1/admin/tools?user=alice");
  ASSERT_EQ(calls.status, 200u) << calls.body;
  ASSERT_EQ(calls.body["tool_calls"].size(), 2u);
  const json& bash = calls.body["tool_calls"][0];
  EXPECT_EQ(bash["name"], "Bash");
  EXPECT_EQ(bash["call_id"], "toolu_1");
  EXPECT_EQ(bash["arguments"], R"({"command":"git status"})");
  EXPECT_EQ(bash["session_id"], "cc_6f1c2a9e");
  EXPECT_EQ(bash["time"], "2025-03-01T00:00:00.000Z");
  EXPECT_EQ(bash["cursor"], turn1.id + ":0");
  EXPECT_EQ(bash["result"]["content"], "nothing to commit");
  EXPECT_EQ(bash["result"]["is_error"], false);
  EXPECT_EQ(bash["result"]["request_id"], turn2.id);
  EXPECT_EQ(calls.body["tool_calls"][1]["result"]["is_error"], true);
  EXPECT_TRUE(calls.body["next_before"].is_null());

  Reply page = get("/v1/admin/tools?limit=1&name=Read");
  ASSERT_EQ(page.body["tool_calls"].size(), 1u);
  ASSERT_EQ(page.body["next_before"], turn1.id + ":1");
  EXPECT_TRUE(
      get("/v1/admin/tools?name=Read&before=" + turn1.id + "%3A1").body["tool_calls"].empty());
  EXPECT_EQ(get("/v1/admin/tools?session=cx_0199").body["tool_calls"][0]["user"], "bob");

  // The request's own record carries its session and the results it sent.
  Reply one = get("/v1/admin/requests/" + turn2.id);
  EXPECT_EQ(one.body["session_id"], "cc_6f1c2a9e");
  ASSERT_EQ(one.body["tool_results"].size(), 2u);
  EXPECT_EQ(one.body["tool_results"][1]["content"], "no such file");

  for (const char* target :
       {"/v1/admin/tools?before=req_1", "/v1/admin/tools?before=req_1:x", "/v1/admin/tools?limit=0",
        "/v1/admin/tools?tool=Bash", "/v1/admin/sessions?session=x",
        "/v1/admin/sessions?limit=1001", "/v1/admin/sessions?since=soon"}) {
    Reply bad = get(target);
    EXPECT_EQ(bad.status, 400u) << target;
    EXPECT_TRUE(bad.body["error"].is_string()) << target;
  }
}

TEST_F(AdminApiTest, PolicyShowRedactsPresharedKeys) {
  ASSERT_TRUE(policies_->apply(demo_policy(3), "/etc/airlock/policy.json").ok());
  start();
  Reply shown = get("/v1/admin/policy");
  ASSERT_EQ(shown.status, 200u) << shown.body;
  EXPECT_EQ(shown.body["version"], 3);
  EXPECT_EQ(shown.body["file"], "/etc/airlock/policy.json");
  std::string text = shown.body["text"];
  EXPECT_EQ(text.find(test_key(9)), std::string::npos);
  EXPECT_NE(text.find("\"preshared_key\": \"[redacted]\""), std::string::npos);
  EXPECT_NE(text.find("// alice's laptop"), std::string::npos);
  EXPECT_NE(text.find(test_key(1)), std::string::npos);  // public keys stay
}

TEST_F(AdminApiTest, PostPolicyAppliesOrExplains) {
  start();
  EXPECT_EQ(get("/v1/admin/policy").status, 404u);

  std::string bad = demo_policy(2);
  bad.replace(bad.find("100.80.0.3/32"), 13, "100.80.0.3/33");
  Reply rejected = call(bhttp::verb::post, "/v1/admin/policy?file=edge.json", bad);
  EXPECT_EQ(rejected.status, 400u);
  EXPECT_EQ(rejected.body["error"].get<std::string>().rfind("edge.json:11:", 0), 0u)
      << rejected.body;

  Reply applied = call(bhttp::verb::post, "/v1/admin/policy", demo_policy(2));
  ASSERT_EQ(applied.status, 200u) << applied.body;
  EXPECT_EQ(applied.body["version"], 2);
  EXPECT_EQ(dp_->running, 2u);
  EXPECT_EQ(get("/v1/admin/policy").body["version"], 2);

  Reply stale = call(bhttp::verb::post, "/v1/admin/policy", demo_policy(2));
  EXPECT_EQ(stale.status, 400u);

  dp_->refuse = true;
  Reply refused = call(bhttp::verb::post, "/v1/admin/policy", demo_policy(3));
  EXPECT_EQ(refused.status, 502u);
  EXPECT_NE(refused.body["error"].get<std::string>().find("dp-test"), std::string::npos);
  EXPECT_EQ(get("/v1/admin/policy").body["version"], 2);
}

TEST_F(AdminApiTest, PeersJoinTheDataPlaneCounters) {
  std::string name = "airlock-test-" + std::to_string(::getpid()) + "-admin";
  std::string error;
  auto region = dp::StatsRegion::create(name + "-stats", 1, 8, 4, &error);
  ASSERT_TRUE(region) << error;
  dp::PeerRecord alice;
  auto key = policy::decode_key_base64(test_key(1));
  std::copy(key->begin(), key->end(), alice.public_key.begin());
  dp::set_fixed_string(alice.user, "alice");
  alice.last_handshake_unix_ns = 1'700'000'000'000'000'000;
  alice.endpoint.family = AF_INET;
  alice.endpoint.port = 40000;
  inet_pton(AF_INET, "192.0.2.7", alice.endpoint.addr.data());
  region->publish_peer(0, alice);
  region->worker(0).count_peer_rx(0, 1234);

  ASSERT_TRUE(policies_->apply(demo_policy(1), "policy.json").ok());
  start(name);
  Reply peers = get("/v1/admin/peers");
  ASSERT_EQ(peers.status, 200u) << peers.body;
  ASSERT_EQ(peers.body["peers"].size(), 2u);
  const json& a = peers.body["peers"][0];
  EXPECT_EQ(a["user"], "alice");
  EXPECT_EQ(a["public_key"], test_key(1));
  EXPECT_EQ(a["allowed_ips"], json::array({"100.80.0.2/32"}));
  EXPECT_EQ(a["endpoint"], "192.0.2.7:40000");
  EXPECT_EQ(a["last_handshake_unix_ns"], 1'700'000'000'000'000'000);
  EXPECT_EQ(a["rx_bytes"], 1234);
  EXPECT_EQ(a["rx_packets"], 1);
  const json& b = peers.body["peers"][1];
  EXPECT_EQ(b["tags"], json::array({"ci"}));
  EXPECT_TRUE(b["endpoint"].is_null());  // never seen by the data plane
  EXPECT_TRUE(b["rx_bytes"].is_null());

  Reply stats = get("/v1/admin/stats");
  ASSERT_EQ(stats.status, 200u) << stats.body;
  EXPECT_TRUE(stats.body["drops"].contains("bad_mac"));
  EXPECT_EQ(stats.body["peers"][0]["public_key"], test_key(1));
  Reply table = get("/v1/admin/stats?format=table");
  EXPECT_NE(table.body["table"].get<std::string>().find("alice"), std::string::npos);
}

TEST_F(AdminApiTest, StatsWithoutADataPlaneIs404AndPeersStillList) {
  ASSERT_TRUE(policies_->apply(demo_policy(1), "policy.json").ok());
  start();
  EXPECT_EQ(get("/v1/admin/stats").status, 404u);
  Reply peers = get("/v1/admin/peers");
  EXPECT_EQ(peers.body["peers"].size(), 2u);
  EXPECT_FALSE(peers.body.contains("stats_error"));
}

TEST_F(AdminApiTest, HubInfoForSandboxConfigs) {
  ASSERT_TRUE(policies_->apply(demo_policy(1), "policy.json").ok());
  start();
  Reply hub = get("/v1/admin/hub");
  ASSERT_EQ(hub.status, 200u);
  EXPECT_EQ(hub.body["public_key"], test_key(7));
  EXPECT_EQ(hub.body["endpoint"], "198.51.100.1:51820");
  EXPECT_EQ(hub.body["gateway"], json::array({"100.80.0.1/32"}));
}

TEST_F(AdminApiTest, UnknownRoutesAndMethods) {
  start();
  EXPECT_EQ(get("/v1/admin/nothing").status, 404u);
  EXPECT_EQ(get("/v1/chat/completions").status, 404u);
  EXPECT_EQ(call(bhttp::verb::delete_, "/v1/admin/policy").status, 405u);
  EXPECT_EQ(call(bhttp::verb::post, "/v1/admin/requests").status, 405u);
}

TEST_F(AdminApiTest, BrowserRequestsAreRefused) {
  ASSERT_TRUE(policies_->apply(demo_policy(1), "policy.json").ok());
  start();
  // A page on any site posting a policy (CSRF) or reading through a rebound DNS name.
  Reply csrf = call(bhttp::verb::post, "/v1/admin/policy", demo_policy(2),
                    {{bhttp::field::origin, "https://evil.example"}});
  EXPECT_EQ(csrf.status, 403u);
  Reply rebound =
      call(bhttp::verb::get, "/v1/admin/policy", "", {{bhttp::field::host, "evil.example:9190"}});
  EXPECT_EQ(rebound.status, 403u);
  EXPECT_EQ(policies_->active()->version, 1u);
  Reply local =
      call(bhttp::verb::get, "/v1/admin/hub", "", {{bhttp::field::host, "localhost:9190"}});
  EXPECT_EQ(local.status, 200u);
}

policy::BudgetSpec budget_spec(std::string name, std::optional<Picodollars> usd,
                               std::optional<uint64_t> tokens, policy::BudgetWindow window) {
  policy::BudgetSpec spec;
  spec.name = std::move(name);
  spec.usd_picodollars = usd;
  spec.tokens = tokens;
  spec.window = window;
  if (window == policy::BudgetWindow::kBucket) {
    spec.refill_tokens = 1;
    spec.refill_every_s = 3600;
  }
  return spec;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr Picodollars kCent = kPicodollarsPerDollar / 100;

class AdminBudgetsTest : public AdminApiTest {
 protected:
  void SetUp() override {
    AdminApiTest::SetUp();
    std::string error;
    ledger_ = budget::Ledger::open("", &error);
    ASSERT_NE(ledger_, nullptr) << error;
    ledger_->set_budgets(
        {budget_spec("team", 10 * kPicodollarsPerDollar, std::nullopt, policy::BudgetWindow::kDay),
         budget_spec("burst", std::nullopt, 5000, policy::BudgetWindow::kBucket)});
    const int64_t now = now_ms();
    // Alice's finished request cost $1.25 and 1000 tokens; one more of hers is still in flight.
    const std::vector<budget::Charge> alice = {{"team", "team|user:alice"},
                                               {"burst", "burst|user:alice"}};
    auto done = ledger_->reserve(alice, {2 * kPicodollarsPerDollar, 3000}, now);
    ASSERT_TRUE(std::holds_alternative<budget::Reservation>(done));
    std::get<budget::Reservation>(done).settle({125 * kCent, 1000}, now);
    auto in_flight = ledger_->reserve(alice, {50 * kCent, 200}, now);
    ASSERT_TRUE(std::holds_alternative<budget::Reservation>(in_flight));
    in_flight_ = std::move(std::get<budget::Reservation>(in_flight));
    start("", [this](AdminOptions& options) { options.ledger = ledger_.get(); });
  }
  Reply post(const std::string& target, const json& body) {
    return call(bhttp::verb::post, target, body.dump());
  }

  std::unique_ptr<budget::Ledger> ledger_;
  budget::Reservation in_flight_;
};

TEST_F(AdminBudgetsTest, BalancesWithExactDollarsAndTokens) {
  Reply all = get("/v1/admin/budgets");
  ASSERT_EQ(all.status, 200u) << all.body;
  ASSERT_EQ(all.body["budgets"].size(), 2u) << all.body;
  const json& burst = all.body["budgets"][0];  // sorted by budget
  EXPECT_EQ(burst["budget"], "burst");
  EXPECT_EQ(burst["key"], "user:alice");
  EXPECT_EQ(burst["window"], "bucket");
  EXPECT_TRUE(burst["window_start"].is_null());
  EXPECT_TRUE(burst["window_end"].is_null());
  EXPECT_TRUE(burst["limit_usd"].is_null());
  EXPECT_TRUE(burst["remaining_usd"].is_null());
  EXPECT_EQ(burst["limit_tokens"], 5000);
  EXPECT_EQ(burst["spent_tokens"], 1000);
  EXPECT_EQ(burst["reserved_tokens"], 200);
  EXPECT_EQ(burst["remaining_tokens"], 3800);

  const json& team = all.body["budgets"][1];
  EXPECT_EQ(team["budget"], "team");
  EXPECT_EQ(team["key"], "user:alice");
  EXPECT_EQ(team["window"], "day");
  const std::string today = format_time(now_ms()).substr(0, 10);
  EXPECT_EQ(team["window_start"], today + "T00:00:00.000Z");
  const auto end = parse_time(team["window_end"].get<std::string>());
  ASSERT_TRUE(end);
  EXPECT_EQ(*end - *parse_time(today), 86'400'000);
  EXPECT_EQ(team["limit_usd"], "10.00");
  EXPECT_EQ(team["spent_usd"], "1.25");
  EXPECT_EQ(team["reserved_usd"], "0.50");
  EXPECT_EQ(team["remaining_usd"], "8.25");
  EXPECT_TRUE(team["limit_tokens"].is_null());
  EXPECT_TRUE(team["remaining_tokens"].is_null());

  Reply team_only = get("/v1/admin/budgets?budget=team&key=user%3Aalice");
  ASSERT_EQ(team_only.body["budgets"].size(), 1u);
  EXPECT_EQ(team_only.body["budgets"][0]["budget"], "team");
  EXPECT_EQ(get("/v1/admin/budgets?key=user:alice").body["budgets"].size(), 2u);
  EXPECT_TRUE(get("/v1/admin/budgets?key=user:al").body["budgets"].empty());
  EXPECT_TRUE(get("/v1/admin/budgets?budget=nothing").body["budgets"].empty());
  EXPECT_EQ(get("/v1/admin/budgets?user=alice").status, 400u);
}

TEST_F(AdminBudgetsTest, AddFundsAndResetAnswerTheNewBalance) {
  Reply added =
      post("/v1/admin/budgets/add", {{"budget", "team"}, {"key", "user:alice"}, {"usd", "5.00"}});
  ASSERT_EQ(added.status, 200u) << added.body;
  EXPECT_EQ(added.body["spent_usd"], "-3.75");
  EXPECT_EQ(added.body["remaining_usd"], "13.25");
  // A number and the smallest step, a picodollar, convert exactly too.
  Reply tiny = post("/v1/admin/budgets/add",
                    {{"budget", "team"}, {"key", "user:alice"}, {"usd", "0.000000000001"}});
  EXPECT_EQ(tiny.body["spent_usd"], "-3.750000000001");
  Reply number =
      post("/v1/admin/budgets/add", {{"budget", "team"}, {"key", "user:alice"}, {"usd", 0.1}});
  EXPECT_EQ(number.body["spent_usd"], "-3.850000000001");

  Reply tokens =
      post("/v1/admin/budgets/add", {{"budget", "burst"}, {"key", "user:alice"}, {"tokens", 400}});
  ASSERT_EQ(tokens.status, 200u) << tokens.body;
  EXPECT_EQ(tokens.body["spent_tokens"], 600);

  // A balance nobody has been charged to yet can be credited ahead of time.
  Reply bob =
      post("/v1/admin/budgets/add", {{"budget", "team"}, {"key", "user:bob"}, {"usd", "1"}});
  ASSERT_EQ(bob.status, 200u) << bob.body;
  EXPECT_EQ(bob.body["key"], "user:bob");
  EXPECT_EQ(bob.body["remaining_usd"], "11.00");

  Reply reset = post("/v1/admin/budgets/reset", {{"budget", "team"}, {"key", "user:alice"}});
  ASSERT_EQ(reset.status, 200u) << reset.body;
  EXPECT_EQ(reset.body["spent_usd"], "0.00");
  EXPECT_EQ(reset.body["reserved_usd"], "0.50");  // in-flight requests keep their reservation
  EXPECT_EQ(reset.body["remaining_usd"], "9.50");
  const auto balances = ledger_->balances("team", "team|user:alice", now_ms());
  ASSERT_EQ(balances.size(), 1u);
  EXPECT_EQ(balances[0].spent_usd, 0);
}

TEST_F(AdminBudgetsTest, BadChangesAre400AndUnknownBudgets404) {
  const auto status = [this](const std::string& action, const std::string& body) {
    return call(bhttp::verb::post, "/v1/admin/budgets/" + action, body).status;
  };
  EXPECT_EQ(status("add", R"({"budget":"nothing","key":"user:alice","usd":"1"})"), 404u);
  EXPECT_EQ(status("reset", R"({"budget":"nothing","key":"user:alice"})"), 404u);
  for (const char* body : {
           R"({"budget":"team","key":"user:alice"})",                // no amount
           R"({"budget":"team","key":"user:alice","usd":"-1"})",     // a charge, not a credit
           R"({"budget":"team","key":"user:alice","usd":"1.2.3"})",  //
           R"({"budget":"team","key":"user:alice","usd":"0.0000000000001"})",  // below a picodollar
           R"({"budget":"team","key":"user:alice","usd":"99999999999"})",      // overflows
           R"({"budget":"team","key":"user:alice","usd":"$5"})",               //
           R"({"budget":"team","key":"user:alice","tokens":-5})",              //
           R"({"budget":"team","key":"user:alice","tokens":1.5})",             //
           R"({"budget":"team","key":"alice","usd":"1"})",                     // not a balance key
           R"({"budget":"team","usd":"1"})",                                   //
           R"({"budget":"team","key":"user:alice","usd":"1","why":"x"})",      //
           R"(["team"])",                                                      //
           "not json",
       }) {
    EXPECT_EQ(status("add", body), 400u) << body;
  }
  EXPECT_EQ(status("reset", R"({"budget":"team","key":"user:alice","usd":"1"})"), 400u);
  EXPECT_EQ(call(bhttp::verb::get, "/v1/admin/budgets/add").status, 405u);
  EXPECT_EQ(call(bhttp::verb::post, "/v1/admin/budgets").status, 405u);
  // Nothing above changed the balance.
  EXPECT_EQ(get("/v1/admin/budgets?budget=team").body["budgets"][0]["spent_usd"], "1.25");
}

// A webhook receiver on its own thread: answers every POST with 204.
class HookReceiver {
 public:
  HookReceiver() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] {
      while (!stopping_) {
        asio::ip::tcp::socket socket(io_);
        boost::system::error_code ec;
        acceptor_.accept(socket, ec);
        if (ec || stopping_) break;
        boost::beast::flat_buffer buffer;
        bhttp::request<bhttp::string_body> req;
        bhttp::read(socket, buffer, req, ec);
        if (ec) continue;
        bhttp::response<bhttp::empty_body> res{bhttp::status::no_content, req.version()};
        res.keep_alive(false);
        bhttp::write(socket, res, ec);
      }
    });
  }
  ~HookReceiver() {
    stopping_ = true;
    asio::io_context io;
    asio::ip::tcp::socket wake(io);
    boost::system::error_code ec;
    wake.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/hook";
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

bool eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

TEST_F(AdminApiTest, WebhookDeliveriesNewestFirstWithStats) {
  HookReceiver receiver;
  // Nothing listens on the second URL: its deliveries are retried.
  uint16_t closed = 0;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
    closed = probe.local_endpoint().port();
  }
  const std::string dead_url = "http://127.0.0.1:" + std::to_string(closed) + "/dead";
  events::OutboxOptions outbox_options;
  outbox_options.first_retry = std::chrono::milliseconds(20);
  outbox_options.max_retry = std::chrono::milliseconds(50);
  outbox_options.stop_grace = std::chrono::milliseconds(100);
  std::string error;
  outbox_ = events::Outbox::open(dir_.file("outbox.db"), &error, outbox_options);
  ASSERT_NE(outbox_, nullptr) << error;
  std::vector<events::Subscription> hooks;
  hooks.push_back({receiver.url(), Secret("whsec-test-secret"), {}});
  hooks.push_back({dead_url, Secret("whsec-test-secret"), {}});
  ASSERT_TRUE(outbox_->set_webhooks(std::move(hooks), &error)) << error;
  const events::Event event = events::make_event(events::kBudgetExceeded, R"({"budget":"team"})");
  outbox_->publish(event);
  ASSERT_TRUE(eventually([&] {
    std::string e;
    events::DeliveryQuery retries;
    retries.outcome = events::DeliveryOutcome::kRetry;
    return outbox_->stats(&e).delivered == 1 && outbox_->deliveries(retries, &e).size() >= 2;
  }));
  start("", [this](AdminOptions& options) { options.outbox = outbox_.get(); });

  Reply all = get("/v1/admin/webhooks");
  ASSERT_EQ(all.status, 200u) << all.body;
  EXPECT_EQ(all.body["stats"]["delivered"], 1);
  EXPECT_EQ(all.body["stats"]["pending"], 1);
  EXPECT_EQ(all.body["stats"]["failed"], 0);
  EXPECT_EQ(all.body["stats"]["dropped"], 0);
  const json& list = all.body["deliveries"];
  ASSERT_GE(list.size(), 3u);
  for (size_t i = 1; i < list.size(); ++i) EXPECT_GT(list[i - 1]["seq"], list[i]["seq"]);
  EXPECT_EQ(all.body.dump().find("whsec-test-secret"), std::string::npos);

  Reply delivered = get("/v1/admin/webhooks?outcome=delivered&event=" + event.id);
  ASSERT_EQ(delivered.body["deliveries"].size(), 1u) << delivered.body;
  const json& ok = delivered.body["deliveries"][0];
  EXPECT_EQ(ok["event_id"], event.id);
  EXPECT_EQ(ok["event_type"], "budget.exceeded");
  EXPECT_EQ(ok["url"], receiver.url());
  EXPECT_EQ(ok["attempt"], 1);
  EXPECT_EQ(ok["status"], 204);
  EXPECT_EQ(ok["outcome"], "delivered");
  EXPECT_EQ(ok["error"], "");
  EXPECT_EQ(ok["time"], format_time(ok["time_ms"].get<int64_t>()));

  Reply retried = get("/v1/admin/webhooks?outcome=retry&limit=1");
  ASSERT_EQ(retried.body["deliveries"].size(), 1u);
  EXPECT_EQ(retried.body["deliveries"][0]["url"], dead_url);
  EXPECT_EQ(retried.body["deliveries"][0]["status"], 0);
  ASSERT_TRUE(retried.body["next_before"].is_number());
  Reply older =
      get("/v1/admin/webhooks?outcome=retry&limit=1&before=" + retried.body["next_before"].dump());
  ASSERT_EQ(older.body["deliveries"].size(), 1u);
  EXPECT_LT(older.body["deliveries"][0]["seq"], retried.body["deliveries"][0]["seq"]);
  EXPECT_TRUE(get("/v1/admin/webhooks?event=evt_none").body["deliveries"].empty());
  EXPECT_EQ(get("/v1/admin/webhooks?outcome=lost").status, 400u);
  EXPECT_EQ(get("/v1/admin/webhooks?before=x").status, 400u);
  EXPECT_EQ(get("/v1/admin/webhooks?limit=0").status, 400u);
}

TEST_F(AdminApiTest, MetricsAreServedAsPrometheusText) {
  int scrapes = 0;
  start("", [&](AdminOptions& options) {
    options.metrics = [&scrapes] {
      ++scrapes;
      return std::string("# TYPE airlock_requests_total counter\nairlock_requests_total 3\n");
    };
  });
  auto res = raw_call(bhttp::verb::get, "/metrics");
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[bhttp::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res.body(), "# TYPE airlock_requests_total counter\nairlock_requests_total 3\n");
  EXPECT_EQ(scrapes, 1);
  EXPECT_EQ(call(bhttp::verb::post, "/metrics").status, 405u);
  EXPECT_EQ(get("/metrics?x=1").status, 400u);
}

TEST_F(AdminApiTest, BudgetsWebhooksAndMetricsNotEnabledAre404) {
  start();
  for (const char* target : {"/v1/admin/budgets", "/v1/admin/webhooks", "/metrics"}) {
    Reply r = get(target);
    EXPECT_EQ(r.status, 404u) << target;
    EXPECT_NE(r.body["error"].get<std::string>().find("not enabled"), std::string::npos) << target;
  }
  Reply add = call(bhttp::verb::post, "/v1/admin/budgets/add",
                   R"({"budget":"team","key":"user:alice","usd":"1"})");
  EXPECT_EQ(add.status, 404u);
  EXPECT_EQ(add.body["error"], "budgets are not enabled");
}

TEST_F(AdminApiTest, RequestRecordsListTheirGuardrailHits) {
  RequestRecord r = record(1, "alice", "claude-sonnet-4-5", kMarch1, 1);
  r.guardrail_hits = {{"secrets", "provider_keys/openai", "redact", "prompt"},
                      {"shell", "rm-root", "cut", "response"}};
  store_->append(r);
  start();
  Reply one = get("/v1/admin/requests/" + r.id);
  ASSERT_EQ(one.status, 200u) << one.body;
  EXPECT_EQ(one.body["guardrails"],
            json::parse(R"([{"guardrail":"secrets","pattern":"provider_keys/openai",
                              "action":"redact","where":"prompt"},
                             {"guardrail":"shell","pattern":"rm-root","action":"cut",
                              "where":"response"}])"));
  EXPECT_EQ(get("/v1/admin/requests").body["requests"][0]["guardrails"].size(), 2u);
}

TEST(AdminApiListen, RefusesNonLoopbackAddresses) {
  asio::io_context io;
  TempDir dir;
  std::string error;
  auto store = open_sqlite_store(dir.file("requests.db"), &error);
  ASSERT_NE(store, nullptr) << error;
  PolicyManager policies({dir.file("policy.json"), {}});
  for (const char* address : {"0.0.0.0", "192.0.2.1", "::"}) {
    AdminOptions options;
    options.listen = {asio::ip::make_address(address), 0};
    error.clear();
    EXPECT_EQ(AdminApi::start(io, options, *store, policies, &error), nullptr) << address;
    EXPECT_NE(error.find("not a loopback address"), std::string::npos) << error;
  }
}

TEST(AdminTime, ParsesMillisecondsAndRfc3339) {
  EXPECT_EQ(parse_time("1740787200000"), kMarch1);
  EXPECT_EQ(parse_time("2025-03-01"), kMarch1);
  EXPECT_EQ(parse_time("2025-03-01T00:00:00Z"), kMarch1);
  EXPECT_EQ(parse_time("2025-03-01t00:00:00.5z"), kMarch1 + 500);
  EXPECT_EQ(parse_time("2025-03-01T02:30:00+02:30"), kMarch1);
  EXPECT_EQ(parse_time("2025-02-28T19:00:00.250-05:00"), kMarch1 + 250);
  for (const char* bad : {"", "2025-13-01", "2025-02-29", "2025-03-01T24:00:00Z",
                          "2025-03-01T00:00:00", "2025-03-01T00:00:00+0200", "-5", "1e3"}) {
    EXPECT_FALSE(parse_time(bad)) << bad;
  }
  EXPECT_EQ(format_time(kMarch1 + 1234), "2025-03-01T00:00:01.234Z");
}

TEST(AdminMoney, ExactDollars) {
  EXPECT_EQ(exact_dollars(0), "0.00");
  EXPECT_EQ(exact_dollars(3'500'000'000'000), "3.50");
  EXPECT_EQ(exact_dollars(125), "0.000000000125");
  EXPECT_EQ(exact_dollars(12'345'678'900'000'000), "12345.6789");
}

}  // namespace
}  // namespace airlock::control::admin
