// The pre-request hook against a real hook service on loopback: allow, block, modify, and the
// on_failure policy when the hook is slow, down or answers nonsense.
#include "control/events/pre_request_hook.h"

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>

#include "tests/http_test_util.h"

namespace airlock::control::events {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Json = nlohmann::json;
using Action = HookVerdict::Action;

HookRequest sample_request() {
  HookRequest request;
  request.request_id = "req_123";
  request.user = "alice";
  request.device = "laptop";
  request.tags = {"tag:dev"};
  request.groups = {"eng"};
  request.provider = "anthropic";
  request.model = "claude-sonnet-4";
  request.api = "anthropic.messages";
  request.body = R"({"model":"claude-sonnet-4","messages":[{"role":"user","content":"hi"}]})";
  return request;
}

asio::awaitable<HookVerdict> run_hook(http::UpstreamPool& pool, policy::PreRequestHookSpec hook,
                                      HookRequest request) {
  co_return co_await call_pre_request_hook(pool, hook, request);
}

class PreRequestHookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    http::UpstreamOptions options;
    options.connect_timeout = 2s;
    options.first_byte_timeout = 3s;
    options.idle_timeout = 3s;
    std::string error;
    pool_ = http::UpstreamPool::create(options, &error);
    ASSERT_TRUE(pool_) << error;
  }

  void TearDown() override {
    release_.set();
    if (server_) server_->stop();
    threads_.join();
  }

  // The hook answers `status` with `reply`, or waits for release_ first when `hang`.
  void start_hook(unsigned status, std::string reply, bool hang = false) {
    set_reply(status, std::move(reply));
    http::Handler handler = [this, hang](http::Request& request, http::BodyStatus,
                                         const http::ClientInfo&,
                                         http::ResponseWriter& writer) -> asio::awaitable<void> {
      http::Response response;
      {
        std::lock_guard lock(mutex_);
        received_ = request.body();
        content_type_ = std::string(request[bhttp::field::content_type]);
        response.result(status_);
        response.body() = reply_;
      }
      if (hang) co_await release_.wait();
      response.set(bhttp::field::content_type, "application/json");
      co_await writer.write(std::move(response));
    };
    std::string error;
    server_ = http::Server::listen(threads_.io(), {asio::ip::make_address("127.0.0.1"), 0}, {},
                                   std::move(handler), &error);
    ASSERT_TRUE(server_) << error;
    hook_.url = "http://127.0.0.1:" + std::to_string(server_->port()) + "/check";
  }

  void set_reply(unsigned status, std::string reply) {
    std::lock_guard lock(mutex_);
    status_ = status;
    reply_ = std::move(reply);
  }

  HookVerdict call(HookRequest request = sample_request()) {
    return asio::co_spawn(asio::make_strand(threads_.io()), run_hook(*pool_, hook_, request),
                          asio::use_future)
        .get();
  }

  std::string received() {
    std::lock_guard lock(mutex_);
    return received_;
  }

  http::testing::IoThreads threads_;
  http::testing::Signal release_;
  std::unique_ptr<http::UpstreamPool> pool_;
  std::unique_ptr<http::Server> server_;
  policy::PreRequestHookSpec hook_;
  std::mutex mutex_;
  std::string received_;
  std::string content_type_;
  unsigned status_ = 200;
  std::string reply_;
};

TEST_F(PreRequestHookTest, AllowSeesWhoIsAskingAndTheRequestBody) {
  start_hook(200, R"({"action":"allow"})");
  const HookVerdict verdict = call();
  EXPECT_EQ(verdict.action, Action::kAllow);
  EXPECT_EQ(verdict.error, "");

  const Json sent = Json::parse(received());
  EXPECT_EQ(sent["request_id"], "req_123");
  EXPECT_EQ(sent["user"], "alice");
  EXPECT_EQ(sent["device"], "laptop");
  EXPECT_EQ(sent["tags"], Json::array({"tag:dev"}));
  EXPECT_EQ(sent["groups"], Json::array({"eng"}));
  EXPECT_EQ(sent["provider"], "anthropic");
  EXPECT_EQ(sent["model"], "claude-sonnet-4");
  EXPECT_EQ(sent["api"], "anthropic.messages");
  EXPECT_EQ(sent["body"]["messages"][0]["content"], "hi");  // the body as JSON, not a string
  std::lock_guard lock(mutex_);
  EXPECT_EQ(content_type_, "application/json");
}

TEST_F(PreRequestHookTest, BlockCarriesTheHooksStatusAndMessage) {
  start_hook(200, R"({"action":"block","status":451,"message":"no SSNs, please"})");
  const HookVerdict verdict = call();
  EXPECT_EQ(verdict.action, Action::kBlock);
  EXPECT_EQ(verdict.status, 451);
  EXPECT_EQ(verdict.message, "no SSNs, please");
  EXPECT_EQ(verdict.error, "");
}

TEST_F(PreRequestHookTest, BlockDefaultsTo403AndRefusesANonErrorStatus) {
  start_hook(200, R"({"action":"block","status":200})");
  const HookVerdict verdict = call();
  EXPECT_EQ(verdict.action, Action::kBlock);
  EXPECT_EQ(verdict.status, 403);
  EXPECT_FALSE(verdict.message.empty());
}

TEST_F(PreRequestHookTest, ModifyReplacesTheBody) {
  start_hook(200,
             R"({"action":"modify","body":{"model":"claude-sonnet-4","messages":[{"role":"user",)"
             R"("content":"[redacted SSN]"}]}})");
  const HookVerdict verdict = call();
  ASSERT_EQ(verdict.action, Action::kModify) << verdict.error;
  const Json body = Json::parse(verdict.body);
  EXPECT_EQ(body["messages"][0]["content"], "[redacted SSN]");
  EXPECT_EQ(body["model"], "claude-sonnet-4");
}

TEST_F(PreRequestHookTest, TimeoutFailsOpenWhenConfigured) {
  start_hook(200, R"({"action":"block"})", /*hang=*/true);
  hook_.timeout_ms = 200;
  hook_.fail_open = true;
  const auto start = std::chrono::steady_clock::now();
  const HookVerdict verdict = call();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(verdict.action, Action::kAllow);
  EXPECT_NE(verdict.error.find(hook_.url), std::string::npos) << verdict.error;
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 2s);  // the hook's own timeout, not the pool's 3 s
}

TEST_F(PreRequestHookTest, TimeoutFailsClosedWith503NamingTheHook) {
  start_hook(200, R"({"action":"allow"})", /*hang=*/true);
  hook_.timeout_ms = 200;
  hook_.fail_open = false;
  const auto start = std::chrono::steady_clock::now();
  const HookVerdict verdict = call();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(verdict.action, Action::kBlock);
  EXPECT_EQ(verdict.status, 503);
  EXPECT_NE(verdict.message.find(hook_.url), std::string::npos) << verdict.message;
  EXPECT_NE(verdict.message.find("200 ms"), std::string::npos) << verdict.message;
}

TEST_F(PreRequestHookTest, UnreachableHookFollowsOnFailure) {
  uint16_t port;
  {
    asio::io_context io;
    tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = acceptor.local_endpoint().port();
  }
  hook_.url = "http://127.0.0.1:" + std::to_string(port) + "/check";
  hook_.fail_open = false;
  HookVerdict verdict = call();
  EXPECT_EQ(verdict.action, Action::kBlock);
  EXPECT_EQ(verdict.status, 503);
  EXPECT_NE(verdict.message.find("connect"), std::string::npos) << verdict.message;

  hook_.fail_open = true;
  verdict = call();
  EXPECT_EQ(verdict.action, Action::kAllow);
  EXPECT_FALSE(verdict.error.empty());
}

TEST_F(PreRequestHookTest, ErrorStatusIsAFailure) {
  start_hook(500, R"({"action":"allow"})");
  const HookVerdict verdict = call();
  EXPECT_EQ(verdict.action, Action::kBlock);
  EXPECT_EQ(verdict.status, 503);
  EXPECT_NE(verdict.message.find("HTTP 500"), std::string::npos) << verdict.message;
}

TEST_F(PreRequestHookTest, MalformedRepliesAreFailures) {
  start_hook(200, "");
  for (const char* reply : {"not json", R"({"action":"maybe"})", R"({"verdict":"allow"})",
                            R"({"action":"modify","body":"a string"})", "[]"}) {
    SCOPED_TRACE(reply);
    set_reply(200, reply);
    hook_.fail_open = false;
    HookVerdict verdict = call();
    EXPECT_EQ(verdict.action, Action::kBlock);
    EXPECT_EQ(verdict.status, 503);
    hook_.fail_open = true;
    verdict = call();
    EXPECT_EQ(verdict.action, Action::kAllow);
    EXPECT_FALSE(verdict.error.empty());
  }
}

TEST_F(PreRequestHookTest, AReplyNestedTooDeepIsAFailureNotACrash) {
  // A "modify" body is serialised again, once per level: 200k levels overflowed the stack.
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  start_hook(200, R"({"action":"modify","body":{"messages":)" + deep + "}}");
  hook_.fail_open = false;
  const HookVerdict verdict = call();
  EXPECT_EQ(verdict.action, Action::kBlock);
  EXPECT_EQ(verdict.status, 503);
  EXPECT_NE(verdict.error.find("deeper than 1024"), std::string::npos) << verdict.error;
}

TEST_F(PreRequestHookTest, ANonJsonBodyIsSentAsAString) {
  start_hook(200, R"({"action":"allow"})");
  HookRequest request = sample_request();
  request.body = "plain text";
  EXPECT_EQ(call(request).action, Action::kAllow);
  EXPECT_EQ(Json::parse(received())["body"], "plain text");
}

}  // namespace
}  // namespace airlock::control::events
