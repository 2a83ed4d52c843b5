// The webhook outbox against real HTTP receivers on loopback: signatures, retries while a
// receiver is down or failing, nothing lost or repeated across a restart, and publish() unaffected
// by a hanging receiver.
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "control/events/outbox.h"
#include "control/http/server.h"
#include "tests/http_test_util.h"

namespace airlock::control::events {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Json = nlohmann::json;

constexpr std::string_view kSecret = "whsec_test_0123456789";

// Polls `done` until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// A loopback port nothing listens on until a test starts a receiver there. It stays bound (not
// listening, so connections are refused) until release(): a port merely closed could be taken
// by another test running in parallel in the meantime.
class ClosedPort {
 public:
  ClosedPort() : socket_(io_) {
    socket_.open(tcp::v4());
    socket_.set_option(tcp::socket::reuse_address(true));
    socket_.bind({asio::ip::make_address("127.0.0.1"), 0});
    port_ = socket_.local_endpoint().port();
  }
  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  void release() { socket_.close(); }

 private:
  asio::io_context io_;
  tcp::socket socket_;
  uint16_t port_ = 0;
};

// A webhook receiver: records every POST and answers 200, 500, or not at all.
class Receiver {
 public:
  enum class Mode { kOk, kFail, kHang };
  struct Hit {
    std::string target;
    std::string event_id;
    std::string event_type;
    std::string content_type;
    std::string signature;
    std::string body;
  };

  explicit Receiver(uint16_t port = 0) {
    std::string error;
    http::Handler handler = [this](http::Request& request, http::BodyStatus,
                                   const http::ClientInfo&,
                                   http::ResponseWriter& writer) -> asio::awaitable<void> {
      Mode mode;
      {
        std::lock_guard lock(mutex_);
        hits_.push_back({std::string(request.target()), std::string(request["airlock-event-id"]),
                         std::string(request["airlock-event-type"]),
                         std::string(request[bhttp::field::content_type]),
                         std::string(request["airlock-signature"]), request.body()});
        mode = mode_;
        ++concurrent_;
        max_concurrent_ = std::max(max_concurrent_, concurrent_);
      }
      if (mode == Mode::kHang) co_await release_.wait();
      http::Response response{
          mode == Mode::kFail ? bhttp::status::internal_server_error : bhttp::status::ok, 11};
      // A careless receiver that echoes what it was configured with.
      response.body() = mode == Mode::kFail ? "boom, secret is " + std::string(kSecret) : "ok";
      {
        std::lock_guard lock(mutex_);
        --concurrent_;
      }
      co_await writer.write(std::move(response));
    };
    server_ = http::Server::listen(threads_.io(), {asio::ip::make_address("127.0.0.1"), port}, {},
                                   std::move(handler), &error);
    EXPECT_TRUE(server_) << error;
  }

  ~Receiver() {
    release_.set();
    if (server_) server_->stop();
    threads_.join();
  }

  void set_mode(Mode mode) {
    std::lock_guard lock(mutex_);
    mode_ = mode;
  }
  void release() { release_.set(); }
  uint16_t port() const { return server_ ? server_->port() : 0; }
  std::string url(std::string_view path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port()) + std::string(path);
  }
  std::vector<Hit> hits() {
    std::lock_guard lock(mutex_);
    return hits_;
  }
  size_t hit_count() {
    std::lock_guard lock(mutex_);
    return hits_.size();
  }
  size_t concurrent() {
    std::lock_guard lock(mutex_);
    return concurrent_;
  }
  size_t max_concurrent() {
    std::lock_guard lock(mutex_);
    return max_concurrent_;
  }

 private:
  http::testing::IoThreads threads_;
  http::testing::Signal release_;
  std::mutex mutex_;
  Mode mode_ = Mode::kOk;
  std::vector<Hit> hits_;
  size_t concurrent_ = 0;
  size_t max_concurrent_ = 0;
  std::unique_ptr<http::Server> server_;
};

std::vector<Subscription> subscribe(const std::string& url, std::vector<std::string> events = {}) {
  std::vector<Subscription> subscriptions;
  subscriptions.push_back({url, Secret(kSecret), std::move(events)});
  return subscriptions;
}

class WebhookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("airlock-webhooks-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "outbox.db").string();
    options_.first_retry = 50ms;
    options_.max_retry = 200ms;
    options_.connect_timeout = 2s;
    options_.response_timeout = 5s;
    options_.stop_grace = 200ms;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Outbox> open() {
    std::string error;
    auto outbox = Outbox::open(path_, &error, options_);
    EXPECT_TRUE(outbox) << error;
    return outbox;
  }

  static std::vector<DeliveryAttempt> log_of(Outbox& outbox, const std::string& event_id) {
    std::string error;
    DeliveryQuery query;
    query.event_id = event_id;
    auto rows = outbox.deliveries(query, &error);
    EXPECT_EQ(error, "");
    std::reverse(rows.begin(), rows.end());  // oldest first
    return rows;
  }

  static OutboxStats stats(Outbox& outbox) {
    std::string error;
    OutboxStats stats = outbox.stats(&error);
    EXPECT_EQ(error, "");
    return stats;
  }

  std::filesystem::path dir_;
  std::string path_;
  OutboxOptions options_;
};

TEST(SignatureTest, MatchesAnIndependentHmacAndRejectsTampering) {
  const auto t = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  const std::string body = R"({"a":1})";
  // printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
  const std::string header = sign_webhook("whsec_test", body, 1'700'000'000);
  EXPECT_EQ(header,
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");

  EXPECT_TRUE(verify_signature("whsec_test", header, body, t));
  EXPECT_TRUE(verify_signature("whsec_test", header, body, t + 299s, 300s));
  EXPECT_TRUE(verify_signature("whsec_test", header, body, t - 299s, 300s));
  EXPECT_FALSE(verify_signature("whsec_test", header, R"({"a":2})", t));
  EXPECT_FALSE(verify_signature("whsec_wrong", header, body, t));
  EXPECT_FALSE(verify_signature("whsec_test", header, body, t + 301s, 300s));  // stale: replay
  EXPECT_FALSE(verify_signature("whsec_test", header, body, t - 301s, 300s));
  // The timestamp is signed too: moving it forward to pass the age check breaks the MAC.
  std::string moved = header;
  moved.replace(2, 10, "1700000500");
  EXPECT_FALSE(verify_signature("whsec_test", moved, body, t + 500s, 300s));
  EXPECT_FALSE(verify_signature("whsec_test", "", body, t));
  EXPECT_FALSE(verify_signature("whsec_test", "v1=" + header.substr(16), body, t));
  // During a secret rotation the sender may sign twice; either signature passes.
  const std::string rotated =
      sign_webhook("whsec_new", body, 1'700'000'000) + "," + header.substr(header.find("v1="));
  EXPECT_TRUE(verify_signature("whsec_test", rotated, body, t));
  EXPECT_TRUE(verify_signature("whsec_new", rotated, body, t));
}

TEST(EventTest, EnvelopeCarriesIdTypeTimeAndData) {
  const Event event = make_event(kBudgetExceeded, R"({"budget":"team","usd":"25"})");
  EXPECT_EQ(event.id.size(), 4u + 32u);
  EXPECT_TRUE(event.id.starts_with("evt_"));
  EXPECT_NE(make_event(kBudgetExceeded, "{}").id, event.id);
  const Json envelope = Json::parse(envelope_json(event));
  EXPECT_EQ(envelope["id"], event.id);
  EXPECT_EQ(envelope["type"], "budget.exceeded");
  EXPECT_EQ(envelope["time"], event.time_ms);
  EXPECT_EQ(envelope["data"]["budget"], "team");

  Event odd = event;
  odd.data_json = "not json {";
  EXPECT_EQ(Json::parse(envelope_json(odd))["data"], "not json {");
  odd.data_json = "";
  EXPECT_TRUE(Json::parse(envelope_json(odd))["data"].empty());
  EXPECT_TRUE(is_event_type("guardrail.match"));
  EXPECT_FALSE(is_event_type("guardrail.matched"));
}

TEST_F(WebhookTest, WantsOnlyTheTypesSomeWebhookTakes) {
  Receiver receiver;
  auto outbox = open();
  ASSERT_TRUE(outbox);
  EXPECT_FALSE(outbox->wants(kRequestCompleted));
  std::vector<Subscription> subscriptions;
  subscriptions.push_back({receiver.url("/guardrails"), Secret(kSecret), {"guardrail.match"}});
  std::string error;
  ASSERT_TRUE(outbox->set_webhooks(std::move(subscriptions), &error)) << error;
  EXPECT_TRUE(outbox->wants(kGuardrailMatch));
  EXPECT_FALSE(outbox->wants(kRequestCompleted));
  ASSERT_TRUE(outbox->set_webhooks(subscribe(receiver.url("/all")), &error)) << error;
  EXPECT_TRUE(outbox->wants(kRequestCompleted));
}

TEST_F(WebhookTest, DeliversSignedEventsToSubscribedWebhooksOnly) {
  Receiver receiver;
  auto outbox = open();
  ASSERT_TRUE(outbox);
  std::vector<Subscription> subscriptions = subscribe(receiver.url("/all"));
  subscriptions.push_back({receiver.url("/guardrails"), Secret(kSecret), {"guardrail.match"}});
  std::string error;
  ASSERT_TRUE(outbox->set_webhooks(std::move(subscriptions), &error)) << error;

  const Event event = make_event(kBudgetExceeded, R"({"budget":"team-daily"})");
  outbox->publish(event);
  ASSERT_TRUE(eventually([&] { return stats(*outbox).delivered == 1; }));

  const auto hits = receiver.hits();
  ASSERT_EQ(hits.size(), 1u);
  const auto& hit = hits[0];
  EXPECT_EQ(hit.target, "/all");
  EXPECT_EQ(hit.content_type, "application/json");
  EXPECT_EQ(hit.event_id, event.id);
  EXPECT_EQ(hit.event_type, "budget.exceeded");
  EXPECT_TRUE(verify_signature(kSecret, hit.signature, hit.body, std::chrono::system_clock::now()))
      << hit.signature;
  const Json body = Json::parse(hit.body);
  EXPECT_EQ(body["id"], event.id);
  EXPECT_EQ(body["data"]["budget"], "team-daily");

  const auto log = log_of(*outbox, event.id);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].url, receiver.url("/all"));
  EXPECT_EQ(log[0].attempt, 1u);
  EXPECT_EQ(log[0].status, 200);
  EXPECT_EQ(log[0].outcome, DeliveryOutcome::kDelivered);
  EXPECT_EQ(log[0].error, "");
  EXPECT_EQ(log[0].event_type, "budget.exceeded");

  // A guardrail event goes to both.
  outbox->publish(make_event(kGuardrailMatch, "{}"));
  ASSERT_TRUE(eventually([&] { return stats(*outbox).delivered == 3; }));
  std::set<std::string> targets;
  for (const auto& h : receiver.hits()) targets.insert(h.target);
  EXPECT_EQ(targets, (std::set<std::string>{"/all", "/guardrails"}));
}

TEST_F(WebhookTest, RetriesAFailingReceiverUntilItAccepts) {
  Receiver receiver;
  receiver.set_mode(Receiver::Mode::kFail);
  auto outbox = open();
  ASSERT_TRUE(outbox);
  std::string error;
  ASSERT_TRUE(outbox->set_webhooks(subscribe(receiver.url()), &error)) << error;
  const Event event = make_event(kAccessDenied, R"({"user":"alice"})");
  outbox->publish(event);

  ASSERT_TRUE(eventually([&] { return log_of(*outbox, event.id).size() >= 3; }));
  receiver.set_mode(Receiver::Mode::kOk);
  ASSERT_TRUE(eventually([&] { return stats(*outbox).delivered == 1; }));

  const auto log = log_of(*outbox, event.id);
  ASSERT_GE(log.size(), 4u);
  for (size_t i = 0; i < log.size(); ++i) EXPECT_EQ(log[i].attempt, i + 1);
  for (size_t i = 0; i + 1 < log.size(); ++i) {
    EXPECT_EQ(log[i].status, 500);
    EXPECT_EQ(log[i].outcome, DeliveryOutcome::kRetry);
    EXPECT_TRUE(log[i].error.starts_with("HTTP 500")) << log[i].error;
    // The receiver echoed the secret; the log must not keep it.
    EXPECT_EQ(log[i].error.find(kSecret), std::string::npos) << log[i].error;
    EXPECT_NE(log[i].error.find("[redacted]"), std::string::npos) << log[i].error;
  }
  EXPECT_EQ(log.back().outcome, DeliveryOutcome::kDelivered);
  EXPECT_EQ(log.back().status, 200);
  // Backoff: the attempts are spread out, not fired back to back.
  EXPECT_GE(log[2].time_ms - log[0].time_ms, 2 * 40);
  EXPECT_EQ(receiver.hit_count(), log.size());
  for (const auto& hit : receiver.hits()) EXPECT_EQ(hit.event_id, event.id);
}

TEST_F(WebhookTest, RetriesWhileNothingListensThenDelivers) {
  ClosedPort port;
  const std::string url = port.url();
  auto outbox = open();
  ASSERT_TRUE(outbox);
  std::string error;
  ASSERT_TRUE(outbox->set_webhooks(subscribe(url), &error)) << error;
  const Event event = make_event(kToolCall, R"({"name":"bash"})");
  outbox->publish(event);

  ASSERT_TRUE(eventually([&] { return log_of(*outbox, event.id).size() >= 2; }));
  for (const auto& attempt : log_of(*outbox, event.id)) {
    EXPECT_EQ(attempt.status, 0);
    EXPECT_EQ(attempt.outcome, DeliveryOutcome::kRetry);
    EXPECT_TRUE(attempt.error.starts_with("connect")) << attempt.error;
  }
  port.release();
  Receiver receiver(port.port());
  ASSERT_TRUE(eventually([&] { return stats(*outbox).delivered == 1; }));
  EXPECT_EQ(receiver.hit_count(), 1u);
  EXPECT_EQ(log_of(*outbox, event.id).back().outcome, DeliveryOutcome::kDelivered);
}

TEST_F(WebhookTest, GivesUpAfterTheMaximumAge) {
  Receiver receiver;
  receiver.set_mode(Receiver::Mode::kFail);
  options_.max_age = 400ms;
  auto outbox = open();
  ASSERT_TRUE(outbox);
  std::string error;
  ASSERT_TRUE(outbox->set_webhooks(subscribe(receiver.url()), &error)) << error;
  const Event event = make_event(kPolicyPushed, "{}");
  outbox->publish(event);
  ASSERT_TRUE(eventually([&] { return stats(*outbox).failed == 1; }));
  EXPECT_EQ(stats(*outbox).pending, 0u);
  const auto log = log_of(*outbox, event.id);
  ASSERT_GE(log.size(), 2u);
  EXPECT_EQ(log.back().outcome, DeliveryOutcome::kFailed);
  const size_t hits = receiver.hit_count();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(receiver.hit_count(), hits);  // no attempts after giving up
}

TEST_F(WebhookTest, RetentionPrunesFinishedEventsButNeverAPendingDelivery) {
  Receiver receiver;
  ClosedPort down_port;
  const std::string down_url = down_port.url();
  options_.retention = 300ms;
  options_.sweep_interval = 100ms;
  auto outbox = open();
  ASSERT_TRUE(outbox);
  std::vector<Subscription> subscriptions = subscribe(receiver.url());
  subscriptions.push_back({down_url, Secret(kSecret), {"tool.call"}});
  std::string error;
  ASSERT_TRUE(outbox->set_webhooks(std::move(subscriptions), &error)) << error;

  const Event finished = make_event(kPolicyPushed, "{}");
  const Event waiting = make_event(kToolCall, "{}");
  outbox->publish(finished);
  outbox->publish(waiting);
  ASSERT_TRUE(eventually([&] { return stats(*outbox).delivered == 2; }));
  ASSERT_FALSE(log_of(*outbox, finished.id).empty());

  // Past retention the finished event and its log are gone; the one still owed to the receiver
  // that is down stays, with its deliveries.
  ASSERT_TRUE(eventually([&] { return log_of(*outbox, finished.id).empty(); }));
  std::this_thread::sleep_for(300ms);
  OutboxStats now = stats(*outbox);
  EXPECT_EQ(now.pending, 1u);
  EXPECT_EQ(now.delivered, 1u);

  // Nothing was lost: once that receiver is up, the event still arrives, then it is pruned too.
  down_port.release();
  Receiver late(down_port.port());
  ASSERT_TRUE(eventually([&] { return late.hit_count() == 1; }));
  EXPECT_EQ(late.hits()[0].event_id, waiting.id);
  ASSERT_TRUE(eventually([&] {
    const OutboxStats s = stats(*outbox);
    return s.pending == 0 && s.delivered == 0 && log_of(*outbox, waiting.id).empty();
  }));
}

TEST_F(WebhookTest, AVersionOneOutboxGainsTheRetentionIndexesAndKeepsItsEvents) {
  const Event event = make_event(kPolicyPushed, "{}");
  {
    auto outbox = open();
    ASSERT_TRUE(outbox);
    std::string error;
    ASSERT_TRUE(outbox->set_webhooks(subscribe("http://127.0.0.1:1/hook"), &error)) << error;
    outbox->publish(event);
    outbox->flush();
  }
  const auto sql = [&](const std::string& text) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    std::string out;
    const auto collect = [](void* to, int, char** values, char**) {
      *static_cast<std::string*>(to) += std::string(values[0] ? values[0] : "") + ";";
      return 0;
    };
    EXPECT_EQ(sqlite3_exec(db, text.c_str(), collect, &out, nullptr), SQLITE_OK) << text;
    sqlite3_close(db);
    return out;
  };
  sql("DROP INDEX outbox_time; DROP INDEX delivery_log_time; UPDATE outbox_schema SET version = 1");
  auto outbox = open();
  ASSERT_TRUE(outbox);
  EXPECT_EQ(sql("SELECT name FROM sqlite_master WHERE name IN ('outbox_time', "
                "'delivery_log_time') ORDER BY name"),
            "delivery_log_time;outbox_time;");
  EXPECT_EQ(sql("SELECT version FROM outbox_schema"), "2;");
  EXPECT_EQ(sql("SELECT id FROM outbox"), event.id + ";");
  EXPECT_EQ(stats(*outbox).pending, 1u);
}

TEST_F(WebhookTest, PendingDeliveriesSurviveARestartAndArriveExactlyOnce) {
  constexpr size_t kEvents = 25;
  ClosedPort port;
  const std::string url = port.url();
  std::set<std::string> published;
  {
    auto outbox = open();
    ASSERT_TRUE(outbox);
    std::string error;
    ASSERT_TRUE(outbox->set_webhooks(subscribe(url), &error)) << error;
    for (size_t i = 0; i < kEvents; ++i) {
      Event event = make_event(kRequestCompleted, R"({"n":)" + std::to_string(i) + "}");
      published.insert(event.id);
      outbox->publish(std::move(event));
    }
    outbox->flush();
    EXPECT_EQ(stats(*outbox).pending, kEvents);
    ASSERT_TRUE(eventually([&] {
      DeliveryQuery query;
      return !outbox->deliveries(query, &error).empty();
    }));  // it did try while the receiver was down
  }

  port.release();
  Receiver receiver(port.port());
  auto outbox = open();
  ASSERT_TRUE(outbox);
  std::string error;
  ASSERT_TRUE(outbox->set_webhooks(subscribe(url), &error)) << error;
  ASSERT_TRUE(eventually([&] { return stats(*outbox).delivered == kEvents; }))
      << stats(*outbox).delivered;
  std::this_thread::sleep_for(200ms);  // time for a duplicate to show up, if one were coming

  std::map<std::string, int> received;
  for (const auto& hit : receiver.hits()) {
    ++received[hit.event_id];
    EXPECT_TRUE(
        verify_signature(kSecret, hit.signature, hit.body, std::chrono::system_clock::now()));
  }
  EXPECT_EQ(received.size(), kEvents);
  for (const auto& [id, count] : received) {
    EXPECT_EQ(count, 1) << id;
    EXPECT_TRUE(published.contains(id)) << id;
  }
  const OutboxStats after = stats(*outbox);
  EXPECT_EQ(after.pending, 0u);
  EXPECT_EQ(after.failed, 0u);
}

TEST_F(WebhookTest, PublishStaysFastWhileTheReceiverHangs) {
  Receiver receiver;
  receiver.set_mode(Receiver::Mode::kHang);
  options_.max_in_flight = 4;
  options_.response_timeout = 30s;
  auto outbox = open();
  ASSERT_TRUE(outbox);
  std::string error;
  ASSERT_TRUE(outbox->set_webhooks(subscribe(receiver.url()), &error)) << error;
  for (int i = 0; i < 10; ++i) outbox->publish(make_event(kRequestCompleted, "{}"));
  // Every delivery slot is now stuck on the receiver.
  ASSERT_TRUE(eventually([&] { return receiver.concurrent() == 4; })) << receiver.concurrent();

  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 2000; ++i) outbox->publish(make_event(kRequestCompleted, R"({"i":1})"));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, 1s);
  outbox->flush();
  EXPECT_EQ(stats(*outbox).pending, 2010u);
  EXPECT_LE(receiver.max_concurrent(), 4u);  // concurrency is bounded

  // Shutdown waits stop_grace for the stuck POSTs, not their 30 s timeout.
  const auto stop_start = std::chrono::steady_clock::now();
  outbox.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_start, 5s);
  receiver.release();
}

TEST_F(WebhookTest, RejectsAnInvalidWebhookUrlAndKeepsThePreviousSet) {
  Receiver receiver;
  auto outbox = open();
  ASSERT_TRUE(outbox);
  std::string error;
  ASSERT_TRUE(outbox->set_webhooks(subscribe(receiver.url()), &error)) << error;
  EXPECT_FALSE(outbox->set_webhooks(subscribe("ftp://example.com/x"), &error));
  EXPECT_NE(error.find("ftp://example.com/x"), std::string::npos) << error;
  outbox->publish(make_event(kPolicyPushed, "{}"));
  ASSERT_TRUE(eventually([&] { return stats(*outbox).delivered == 1; }));
}

TEST(LoadSubscriptionsTest, LoadsSecretsAndNamesTheFailingReference) {
  ::setenv("AIRLOCK_TEST_HOOK_SECRET", "s3cr3t-value", 1);
  std::vector<policy::WebhookSpec> specs = {
      {"http://127.0.0.1:1/a", "env:AIRLOCK_TEST_HOOK_SECRET", {"tool.call"}}};
  std::string error;
  auto loaded = load_subscriptions(specs, &error);
  ASSERT_TRUE(loaded) << error;
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ((*loaded)[0].secret.reveal(), "s3cr3t-value");
  EXPECT_EQ((*loaded)[0].events, std::vector<std::string>{"tool.call"});

  specs.push_back({"http://127.0.0.1:1/b", "env:AIRLOCK_TEST_HOOK_UNSET", {}});
  EXPECT_FALSE(load_subscriptions(specs, &error));
  EXPECT_NE(error.find("AIRLOCK_TEST_HOOK_UNSET"), std::string::npos) << error;
  EXPECT_EQ(error.find("s3cr3t-value"), std::string::npos);
}

}  // namespace
}  // namespace airlock::control::events
