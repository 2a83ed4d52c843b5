#include "control/admin/admin_api.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

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

  void start(std::string stats_instance = "") {
    AdminOptions options;
    options.listen = {asio::ip::make_address("127.0.0.1"), 0};
    options.hub = {test_key(7), "198.51.100.1:51820", {}};
    options.stats_instance = std::move(stats_instance);
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
    EXPECT_EQ(res[bhttp::field::content_type], "application/json");
    return {res.result_int(), json::parse(res.body())};
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
