// Budgets and rate limits end to end over loopback: real concurrent HTTP clients, the Gateway on
// an io_context run by two threads, a SQLite request log, and an in-test upstream that answers
// like the providers do, with usage that grows with the output cap the request set, so every
// request has a known cost.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "control/budget/estimate.h"
#include "control/gateway/gateway.h"
#include "control/metering/json_view.h"
#include "tests/gateway_test_util.h"

namespace airlock::control::gateway {
namespace {

namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using nlohmann::json;
using testing::Headers;
using testing::random_hex;
using testing::Reply;
using testing::ScriptedUpstream;
using testing::Seen;
using testing::write_whole;

constexpr Picodollars kDollar = kPicodollarsPerDollar;

// ---------------------------------------------------------------- the in-test upstream

// Answers OpenAI Chat and Anthropic Messages like the providers, after `delay` (so concurrent
// requests really are in flight together). The usage it reports is what a model that wrote a
// random 50-100% of the request's output cap would bill, and never more than the cap.
class FakeUpstream {
 public:
  static constexpr uint64_t kPromptTokens = 40;

  explicit FakeUpstream(std::chrono::milliseconds delay = std::chrono::milliseconds(0))
      : delay_(delay) {}

  uint16_t port() const { return upstream_.port(); }

  // Request bodies as they reached the upstream.
  std::vector<std::string> seen() const { return upstream_.bodies(); }

 private:
  uint64_t output_tokens(uint64_t cap) {
    std::lock_guard lock(mutex_);
    return std::uniform_int_distribution<uint64_t>(cap / 2, cap)(random_);
  }

  bool answer(tcp::socket& socket, const Seen& seen) {
    std::this_thread::sleep_for(delay_);
    const std::string path = seen.target.substr(0, seen.target.find('?'));
    const json body = json::parse(seen.body, nullptr, false);
    if (!body.is_object()) return write_whole(socket, 400, R"({"error":{"message":"bad json"}})");
    const std::string model = body.value("model", "");
    if (path == "/v1/chat/completions") {
      const uint64_t cap = std::max(body.value("max_completion_tokens", uint64_t{0}),
                                    body.value("max_tokens", uint64_t{0}));
      const uint64_t out = output_tokens(cap == 0 ? 16 : cap);
      const json reply = {{"id", "chatcmpl-" + random_hex(6)},
                          {"object", "chat.completion"},
                          {"created", 1767225600},
                          {"model", model},
                          {"choices",
                           {{{"index", 0},
                             {"message", {{"role", "assistant"}, {"content", "ok"}}},
                             {"finish_reason", "length"}}}},
                          {"usage",
                           {{"prompt_tokens", kPromptTokens},
                            {"completion_tokens", out},
                            {"total_tokens", kPromptTokens + out}}}};
      return write_whole(socket, 200, reply.dump());
    }
    if (path == "/v1/messages") {
      // The whole cap: Anthropic requires max_tokens and a long answer uses all of it.
      const uint64_t out = body.value("max_tokens", uint64_t{0});
      const json reply = {{"id", "msg_" + random_hex(6)},
                          {"type", "message"},
                          {"role", "assistant"},
                          {"model", model},
                          {"content", {{{"type", "text"}, {"text", "ok"}}}},
                          {"stop_reason", "max_tokens"},
                          {"usage", {{"input_tokens", kPromptTokens}, {"output_tokens", out}}}};
      return write_whole(socket, 200, reply.dump());
    }
    return write_whole(socket, 404, R"({"error":{"message":"no route"}})");
  }

  const std::chrono::milliseconds delay_;
  std::mutex mutex_;
  std::mt19937_64 random_{std::random_device{}()};
  // Last, so that its threads stop calling answer() before the rest goes.
  ScriptedUpstream upstream_{
      [this](tcp::socket& socket, const Seen& seen) { return answer(socket, seen); }};
};

// ---------------------------------------------------------------- the client

// Every client here sends JSON, and keeps a transport failure for the test to report.
Reply call(uint16_t port, bhttp::verb method, std::string_view target, std::string body,
           const Headers& headers = {}) {
  Headers all = {{"Content-Type", "application/json"}};
  all.insert(all.end(), headers.begin(), headers.end());
  return testing::try_call(port, method, target, std::move(body), all);
}

// ---------------------------------------------------------------- the gateway under test

constexpr const char* kKeyVariable = "AIRLOCK_TEST_SPEND_OPENAI_KEY";

// providers: openai (gpt-*, "gpt-metered" priced by the policy at $1 in / $10 out per million
// tokens), anthropic (claude-*, built-in prices) and local (an unpriced OpenAI-compatible
// server). alice may use all three; the grant attaches `budgets`.
std::shared_ptr<policy::Document> document_for(uint16_t upstream_port,
                                               std::vector<policy::BudgetSpec> budgets) {
  const std::string base = "http://127.0.0.1:" + std::to_string(upstream_port);
  auto document = std::make_shared<policy::Document>();
  document->providers = {
      {"openai",
       policy::ProviderKind::kOpenAi,
       base,
       {"gpt-*"},
       std::string("env:") + kKeyVariable},
      {"anthropic", policy::ProviderKind::kAnthropic, base, {"claude-*"}, std::nullopt},
      {"local", policy::ProviderKind::kOpenAiCompatible, base, {"local-*"}, std::nullopt},
  };
  document->prices = {
      {"openai", "gpt-metered", "1", "10", std::nullopt, std::nullopt, std::nullopt}};
  policy::GrantSpec grant{{"user:alice"}, {"openai/gpt-*", "anthropic/claude-*", "local/*"}, {}};
  for (const policy::BudgetSpec& budget : budgets) grant.budgets.push_back({budget.name, {}});
  document->grants = {grant};
  document->budgets = std::move(budgets);
  document->request_log.bodies = true;
  return document;
}

policy::BudgetSpec budget(std::string name, policy::BudgetScope scope, Picodollars usd) {
  policy::BudgetSpec spec;
  spec.name = std::move(name);
  spec.scope = scope;
  spec.usd_picodollars = usd;
  spec.window = policy::BudgetWindow::kDay;
  return spec;
}

// A Gateway with its own SQLite request log, on an io_context run by two threads. With
// `own_ledger` false the test's ledger keeps the balances, so the test can read them.
class Rig {
 public:
  Rig(std::shared_ptr<policy::Document> document, bool own_ledger = false) {
    std::string error;
    EXPECT_TRUE(store_.open("airlock-spend-", &error)) << error;
    GatewayOptions options;
    if (!own_ledger) {
      ledger_ = budget::Ledger::open("", &error);
      EXPECT_TRUE(ledger_) << error;
      ledger_->set_budgets(document->budgets);
      options.services.ledger = ledger_.get();
    }
    state_ = make_gateway_state(std::move(document), PriceTable::builtin(), &error);
    EXPECT_TRUE(state_) << error;
    alice_.user = "alice";
    alice_.device = "laptop";
    alice_.public_key.fill(9);
    if (!store_ || !state_) return;
    EXPECT_TRUE(gateway_.start(options, *store_, alice_, state_, /*threads=*/2, &error)) << error;
  }

  bool ok() const { return gateway_ && gateway_->port() != 0; }
  uint16_t port() const { return gateway_->port(); }
  budget::Ledger& ledger() { return *ledger_; }
  const GatewayState& state() const { return *state_; }

  Reply post(std::string_view target, const json& body, const Headers& headers = {}) {
    return call(port(), bhttp::verb::post, target, body.dump(), headers);
  }

  // The request's record, once the gateway has logged it (after the client saw the response).
  std::optional<RequestRecord> record_of(const Reply& reply) {
    return testing::await_record(*store_, reply, std::chrono::seconds(30));
  }

 private:
  testing::ScratchStore store_;
  std::unique_ptr<budget::Ledger> ledger_;
  std::shared_ptr<const GatewayState> state_;
  policy::Identity alice_;
  testing::LoopbackGateway gateway_;
};

class SpendTest : public ::testing::Test {
 protected:
  void SetUp() override { setenv(kKeyVariable, ("sk-canary-" + random_hex(16)).c_str(), 1); }
};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool positive_integer(const std::string& text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos &&
         std::stoll(text) > 0;
}

// ---------------------------------------------------------------- the tests

// The issue's test: 200 requests at once against a $1 budget, each of whose worst case is about
// 3 cents. Whatever the interleaving, the budget is never overspent, the request log accounts
// for every cent the ledger charged, and every refusal is a well-formed 429.
TEST_F(SpendTest, ConcurrentRequestsNeverOverspendTheBudget) {
  constexpr int kRounds = 4;
  constexpr int kClients = 200;
  constexpr uint64_t kCap = 3000;
  FakeUpstream upstream(std::chrono::milliseconds(30));
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::string name = "pool-" + std::to_string(round);
    Rig rig(document_for(upstream.port(), {budget(name, policy::BudgetScope::kShared, kDollar)}));
    ASSERT_TRUE(rig.ok());

    std::vector<std::string> bodies;
    Picodollars max_worst = 0;
    const Price price = *rig.state().prices.find(policy::ProviderKind::kOpenAi, "gpt-metered");
    for (int i = 0; i < kClients; ++i) {
      bodies.push_back(
          json{{"model", "gpt-metered"},
               {"max_tokens", kCap},
               {"messages", {{{"role", "user"}, {"content", "hi " + std::to_string(i)}}}}}
              .dump());
      max_worst = std::max(
          max_worst,
          budget::worst_case(
              price,
              budget::input_token_bound(bodies.back(), JsonDocument(bodies.back()).root(), 0), kCap)
              .usd);
    }
    ASSERT_GT(max_worst, kDollar / 50);  // a few cents: only some requests fit
    ASSERT_LT(max_worst, kDollar / 20);

    std::vector<Reply> replies(kClients);
    std::latch start(kClients);
    std::vector<std::thread> clients;
    for (int i = 0; i < kClients; ++i) {
      clients.emplace_back([&, i] {
        start.arrive_and_wait();
        replies[i] = call(rig.port(), bhttp::verb::post, "/v1/chat/completions", bodies[i]);
      });
    }
    for (std::thread& client : clients) client.join();

    int ok = 0;
    int refused = 0;
    Picodollars logged = 0;
    for (const Reply& reply : replies) {
      ASSERT_TRUE(reply.error.empty()) << reply.error;
      if (reply.status == 200) {
        ++ok;
      } else if (reply.status == 429) {
        ++refused;
        EXPECT_TRUE(positive_integer(reply.header("retry-after")))
            << "Retry-After: \"" << reply.header("retry-after") << "\"";
        const json error = json::parse(reply.body, nullptr, false);
        ASSERT_TRUE(error.is_object()) << reply.body;
        EXPECT_EQ(error["error"]["type"], "insufficient_quota") << reply.body;
        EXPECT_EQ(error["error"]["code"], "budget_exceeded") << reply.body;
        EXPECT_NE(error["error"]["message"].get<std::string>().find(name), std::string::npos)
            << reply.body;
      }
      const std::optional<RequestRecord> record = rig.record_of(reply);
      ASSERT_TRUE(record);
      EXPECT_EQ(record->status, static_cast<int>(reply.status));
      ASSERT_TRUE(record->cost.has_value()) << record->id;
      if (reply.status == 429) {
        EXPECT_EQ(*record->cost, 0);
      } else {
        EXPECT_GT(*record->cost, 0);
      }
      logged += *record->cost;
    }
    EXPECT_EQ(ok + refused, kClients);
    EXPECT_GT(refused, 0);
    // A refusal means spent + reserved + worst case > $1, and each admitted request holds at most
    // its worst case: fewer admitted requests than that means the ledger refused too early.
    EXPECT_GT(static_cast<Picodollars>(ok) * max_worst, kDollar - max_worst) << ok << " admitted";

    const std::vector<budget::Balance> balances =
        rig.ledger().balances(name, std::nullopt, now_ms());
    ASSERT_EQ(balances.size(), 1u);
    EXPECT_EQ(balances[0].balance_key, name + "|shared");
    EXPECT_LE(balances[0].spent_usd, kDollar);
    EXPECT_GT(balances[0].spent_usd, 0);
    EXPECT_EQ(balances[0].reserved_usd, 0);  // nothing left held once every request ended
    EXPECT_EQ(logged, balances[0].spent_usd);
  }
}

TEST_F(SpendTest, AnthropicClientGetsItsOwn429) {
  FakeUpstream upstream;
  // Two cents: one 1000-token Sonnet answer (1.5 cents of output) fits, a second does not.
  Rig rig(document_for(upstream.port(),
                       {budget("sonnet", policy::BudgetScope::kUser, 2 * kDollar / 100)}));
  ASSERT_TRUE(rig.ok());
  const json request = {{"model", "claude-sonnet-4-5"},
                        {"max_tokens", 1000},
                        {"messages", {{{"role", "user"}, {"content", "hello"}}}}};
  const Headers headers = {{"anthropic-version", "2023-06-01"}};
  const Reply first = rig.post("/v1/messages", request, headers);
  ASSERT_EQ(first.status, 200u) << first.body;
  const Reply second = rig.post("/v1/messages", request, headers);
  EXPECT_EQ(second.status, 429u) << second.body;
  EXPECT_TRUE(positive_integer(second.header("retry-after")));
  const json error = json::parse(second.body, nullptr, false);
  ASSERT_TRUE(error.is_object()) << second.body;
  EXPECT_EQ(error["type"], "error");
  EXPECT_EQ(error["error"]["type"], "rate_limit_error");
  EXPECT_NE(error["error"]["message"].get<std::string>().find("sonnet"), std::string::npos);
  EXPECT_EQ(upstream.seen().size(), 1u);

  const std::optional<RequestRecord> record = rig.record_of(first);
  ASSERT_TRUE(record && record->cost);
  const std::vector<budget::Balance> balances =
      rig.ledger().balances("sonnet", std::nullopt, now_ms());
  ASSERT_EQ(balances.size(), 1u);
  EXPECT_EQ(balances[0].balance_key, "sonnet|user:alice");
  EXPECT_EQ(balances[0].spent_usd, *record->cost);
}

TEST_F(SpendTest, DefaultOutputCapIsInsertedWhenTheClientSetsNone) {
  FakeUpstream upstream;
  auto document =
      document_for(upstream.port(), {budget("pool", policy::BudgetScope::kShared, kDollar)});
  document->default_max_output_tokens = 777;
  Rig rig(document);
  ASSERT_TRUE(rig.ok());
  const json request = {{"model", "gpt-metered"},
                        {"temperature", 0.5},
                        {"messages", {{{"role", "user"}, {"content", "no cap here"}}}}};
  const Reply reply = rig.post("/v1/chat/completions", request);
  ASSERT_EQ(reply.status, 200u) << reply.body;
  const std::vector<std::string> seen = upstream.seen();
  ASSERT_EQ(seen.size(), 1u);
  json forwarded = json::parse(seen[0], nullptr, false);
  ASSERT_TRUE(forwarded.is_object()) << seen[0];
  EXPECT_EQ(forwarded["max_completion_tokens"], 777) << seen[0];
  forwarded.erase("max_completion_tokens");
  EXPECT_EQ(forwarded, request);  // nothing else changed

  // The answer was bounded by the inserted cap, so what the ledger charged is what it cost.
  const json answer = json::parse(reply.body);
  EXPECT_LE(answer["usage"]["completion_tokens"].get<uint64_t>(), 777u);
  const std::optional<RequestRecord> record = rig.record_of(reply);
  ASSERT_TRUE(record && record->cost);
  EXPECT_EQ(rig.ledger().balances("pool", std::nullopt, now_ms()).at(0).spent_usd, *record->cost);

  // A client's own cap is left alone.
  const Reply capped =
      rig.post("/v1/chat/completions",
               {{"model", "gpt-metered"}, {"max_tokens", 5}, {"messages", json::array()}});
  ASSERT_EQ(capped.status, 200u);
  const json second = json::parse(upstream.seen().at(1));
  EXPECT_EQ(second["max_tokens"], 5);
  EXPECT_FALSE(second.contains("max_completion_tokens")) << upstream.seen().at(1);
}

// An image the provider fetches costs tokens the body does not show: the worst case allows
// reference_input_tokens for it, so a budget too small for that refuses before the provider
// is paid.
TEST_F(SpendTest, AnImageByUrlIsReservedAtThePolicysAllowance) {
  const json request = {
      {"model", "claude-sonnet-4-5"},
      {"max_tokens", 100},
      {"messages",
       {{{"role", "user"},
         {"content",
          {{{"type", "image"},
            {"source", {{"type", "url"}, {"url", "https://example.com/diagram.png"}}}},
           {{"type", "text"}, {"text", "what does this show?"}}}}}}}};
  const Headers headers = {{"anthropic-version", "2023-06-01"}};
  // Two cents: 100 output tokens and the body fit easily, 32768 more input tokens (12 cents at
  // the cache-write price) do not.
  for (const uint64_t allowance : {uint64_t{32'768}, uint64_t{1'000}}) {
    FakeUpstream upstream;
    auto document = document_for(upstream.port(),
                                 {budget("sonnet", policy::BudgetScope::kUser, 2 * kDollar / 100)});
    document->reference_input_tokens = allowance;
    Rig rig(document);
    ASSERT_TRUE(rig.ok());
    const Reply reply = rig.post("/v1/messages", request, headers);
    if (allowance == 1'000) {
      EXPECT_EQ(reply.status, 200u) << reply.body;
      continue;
    }
    EXPECT_EQ(reply.status, 429u) << reply.body;
    EXPECT_NE(reply.body.find("cannot cover this request"), std::string::npos) << reply.body;
    EXPECT_TRUE(upstream.seen().empty());
  }
}

TEST_F(SpendTest, BudgetedModelWithoutAPriceIsRefused) {
  FakeUpstream upstream;
  Rig rig(document_for(upstream.port(), {budget("pool", policy::BudgetScope::kShared, kDollar)}));
  ASSERT_TRUE(rig.ok());
  const Reply reply =
      rig.post("/v1/chat/completions",
               {{"model", "local-llama"}, {"max_tokens", 10}, {"messages", json::array()}});
  EXPECT_EQ(reply.status, 403u) << reply.body;
  const json error = json::parse(reply.body, nullptr, false);
  ASSERT_TRUE(error.is_object()) << reply.body;
  EXPECT_EQ(error["error"]["code"], "model_not_priced");
  EXPECT_NE(error["error"]["message"].get<std::string>().find("local/local-llama"),
            std::string::npos)
      << reply.body;
  EXPECT_TRUE(upstream.seen().empty());
  const std::optional<RequestRecord> record = rig.record_of(reply);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->status, 403);
  EXPECT_EQ(record->cost, 0);
}

TEST_F(SpendTest, RequestsPerMinuteLimitRefusesTheNextOne) {
  FakeUpstream upstream;
  auto document = document_for(upstream.port(), {});
  policy::RateLimitSpec limit;
  limit.from = {"user:alice"};
  limit.requests_per_minute = 3;
  document->rate_limits = {limit};
  Rig rig(document);
  ASSERT_TRUE(rig.ok());
  const json request = {{"model", "gpt-metered"}, {"messages", json::array()}};
  for (int i = 0; i < 3; ++i) {
    const Reply reply = rig.post("/v1/chat/completions", request);
    EXPECT_EQ(reply.status, 200u) << i << ": " << reply.body;
  }
  const Reply refused = rig.post("/v1/chat/completions", request);
  EXPECT_EQ(refused.status, 429u) << refused.body;
  EXPECT_TRUE(positive_integer(refused.header("retry-after")))
      << "Retry-After: \"" << refused.header("retry-after") << "\"";
  EXPECT_LE(std::stoll(refused.header("retry-after").empty() ? "0" : refused.header("retry-after")),
            60);
  const json error = json::parse(refused.body, nullptr, false);
  ASSERT_TRUE(error.is_object()) << refused.body;
  EXPECT_EQ(error["error"]["type"], "rate_limit_error");
  EXPECT_EQ(error["error"]["code"], "rate_limit_exceeded");
  EXPECT_EQ(upstream.seen().size(), 3u);
  const std::optional<RequestRecord> record = rig.record_of(refused);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->status, 429);
  EXPECT_NE(record->error.find("requests per minute"), std::string::npos) << record->error;
}

TEST_F(SpendTest, CallerSeesItsOwnBalances) {
  FakeUpstream upstream;
  // The gateway's own in-memory ledger: what a deployment without a ledger file gets.
  Rig rig(document_for(upstream.port(), {budget("pool", policy::BudgetScope::kShared, kDollar),
                                         budget("mine", policy::BudgetScope::kUser, 5 * kDollar)}),
          /*own_ledger=*/true);
  ASSERT_TRUE(rig.ok());
  const Reply spent =
      rig.post("/v1/chat/completions",
               {{"model", "gpt-metered"}, {"max_tokens", 100}, {"messages", json::array()}});
  ASSERT_EQ(spent.status, 200u) << spent.body;
  const std::optional<RequestRecord> record = rig.record_of(spent);
  ASSERT_TRUE(record && record->cost);
  const double cost_usd = static_cast<double>(*record->cost) / 1e12;

  const Reply reply = call(rig.port(), bhttp::verb::get, "/airlock/budgets", "");
  ASSERT_EQ(reply.status, 200u) << reply.body;
  const json answer = json::parse(reply.body, nullptr, false);
  ASSERT_TRUE(answer.is_object()) << reply.body;
  EXPECT_EQ(answer["user"], "alice");
  std::map<std::string, json> by_budget;
  for (const json& item : answer["budgets"]) by_budget[item["budget"]] = item;
  ASSERT_EQ(by_budget.size(), 2u) << reply.body;
  EXPECT_EQ(by_budget["pool"]["key"], "shared");
  EXPECT_DOUBLE_EQ(by_budget["pool"]["limit_usd"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(by_budget["pool"]["spent_usd"].get<double>(), cost_usd);
  EXPECT_DOUBLE_EQ(by_budget["pool"]["reserved_usd"].get<double>(), 0.0);
  EXPECT_NEAR(by_budget["pool"]["remaining_usd"].get<double>(), 1.0 - cost_usd, 1e-9);
  EXPECT_EQ(by_budget["mine"]["key"], "user:alice");
  EXPECT_DOUBLE_EQ(by_budget["mine"]["limit_usd"].get<double>(), 5.0);
  EXPECT_DOUBLE_EQ(by_budget["mine"]["spent_usd"].get<double>(), cost_usd);
  EXPECT_GT(by_budget["mine"]["window_end_ms"].get<int64_t>(), now_ms());
  EXPECT_EQ(upstream.seen().size(), 1u);  // the balance query reached no provider
}

}  // namespace
}  // namespace airlock::control::gateway
