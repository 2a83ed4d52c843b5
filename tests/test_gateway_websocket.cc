// The Responses API's WebSocket mode through the gateway, end to end over loopback: a Beast
// WebSocket client without a key, the Gateway with a real SQLite store, and the simulated
// provider's WebSocket mode. What Codex needs: its turns answered on the socket it opened, the
// provider reached with the central key only, and one record per turn.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "control/gateway/gateway.h"
#include "control/sim/sim.h"
#include "tests/gateway_test_util.h"
#include "tests/tls_test_util.h"

namespace airlock::control::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;

// A client as Codex is one: it sends its own (sandbox) credentials, which must go nowhere.
class Client {
 public:
  explicit Client(uint16_t port) : ws_(io_) {
    tcp::resolver resolver(io_);
    beast::get_lowest_layer(ws_).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    ws_.set_option(websocket::stream_base::decorator([](websocket::request_type& request) {
      request.set(bhttp::field::authorization, "Bearer sandbox-token");
      request.set("x-api-key", "sandbox-key");
      request.set("OpenAI-Beta", "responses_websockets=2026-02-06");
    }));
    ws_.handshake("127.0.0.1", "/v1/responses");
  }

  void send(const std::string& message) { ws_.write(asio::buffer(message)); }

  json read() {
    beast::flat_buffer buffer;
    ws_.read(buffer);
    return json::parse(beast::buffers_to_string(buffer.data()));
  }

  // Every event of one turn, up to and including its terminal event.
  std::vector<json> turn() {
    std::vector<json> events;
    for (;;) {
      events.push_back(read());
      const std::string type = events.back().value("type", "");
      if (type == "response.completed" || type == "response.incomplete" ||
          type == "response.failed" || type == "error") {
        return events;
      }
    }
  }

  void close() { ws_.close(websocket::close_code::normal); }
  // Gone without a close frame, as a killed agent is.
  void drop() { beast::get_lowest_layer(ws_).close(); }
  websocket::stream<tcp::socket>& ws() { return ws_; }

 private:
  asio::io_context io_;
  websocket::stream<tcp::socket> ws_;
};

// A provider that answers each turn with a burst of events written to its socket at once, as a
// provider's own writes coalesce on the network: the frames are put together by hand so that the
// whole burst is one write. `bursts` splits a turn's events into bursts; before each burst after
// the first the provider waits until `go_on()` is called.
class BurstProvider {
 public:
  explicit BurstProvider(std::vector<std::vector<std::string>> bursts)
      : bursts_(std::move(bursts)),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        thread_([this] { serve(); }) {}

  ~BurstProvider() {
    go_on();
    thread_.join();
  }

  uint16_t port() const { return acceptor_.local_endpoint().port(); }

  void go_on() {
    std::lock_guard lock(mutex_);
    ++released_;
    released_changed_.notify_all();
  }

  // Bytes the client receives for these events: unmasked server frames, as the gateway writes
  // them.
  static std::string frames(const std::vector<std::string>& events) {
    std::string out;
    for (const std::string& event : events) {
      out.push_back(static_cast<char>(0x81));  // FIN, text
      if (event.size() < 126) {
        out.push_back(static_cast<char>(event.size()));
      } else {
        out.push_back(126);
        out.push_back(static_cast<char>(event.size() >> 8));
        out.push_back(static_cast<char>(event.size() & 0xff));
      }
      out += event;
    }
    return out;
  }

 private:
  void serve() {
    boost::system::error_code ec;
    tcp::socket socket(io_);
    acceptor_.accept(socket, ec);
    if (ec) return;
    websocket::stream<tcp::socket> ws(std::move(socket));
    ws.accept(ec);
    beast::flat_buffer create;
    if (!ec) ws.read(create, ec);
    for (std::size_t i = 0; !ec && i < bursts_.size(); ++i) {
      if (i > 0) {
        std::unique_lock lock(mutex_);
        released_changed_.wait(lock, [&] { return released_ >= i; });
      }
      asio::write(ws.next_layer(), asio::buffer(frames(bursts_[i])), ec);
    }
    beast::flat_buffer rest;
    while (!ec) ws.read(rest, ec);  // until the gateway closes
  }

  std::vector<std::vector<std::string>> bursts_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::mutex mutex_;
  std::condition_variable released_changed_;
  std::size_t released_ = 0;
  std::thread thread_;
};

// A turn's first and last events as the burst provider sends them; the usage is what the record
// must hold.
constexpr const char* kCreatedEvent =
    R"({"type":"response.created","response":{"id":"resp_1","status":"in_progress"}})";
constexpr const char* kCompletedEvent =
    R"({"type":"response.completed","response":{"id":"resp_1","status":"completed",)"
    R"("usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}})";

// Waits until the socket has bytes to read and returns how many it holds then, without taking any.
std::size_t bytes_on_arrival(tcp::socket& socket) {
  pollfd readable{socket.native_handle(), POLLIN, 0};
  if (::poll(&readable, 1, 10000) != 1) return 0;
  int available = 0;
  ::ioctl(socket.native_handle(), FIONREAD, &available);
  return static_cast<std::size_t>(available);
}

json create(const std::string& model, const std::string& input) {
  return {{"type", "response.create"}, {"model", model}, {"input", input}, {"store", false}};
}

class GatewayWebSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(store_.open("airlock-gw-ws-", &error)) << error;
    key_ = "sk-canary-openai-" + testing::random_hex(16);
    setenv("AIRLOCK_TEST_WS_OPENAI_KEY", key_.c_str(), 1);
    alice_.user = "alice";
    alice_.device = "laptop";
    alice_.public_key.fill(7);
  }

  // The simulator over plain TCP, or over TLS with the certificate `cert` of `certificates_`,
  // and the gateway in front of it.
  void start(const std::string& cert = "",
             const std::function<void(policy::Document&)>& customize = {}) {
    sim::Options sim_options;
    sim_options.port = 0;
    sim_options.quiet = true;
    if (!cert.empty()) {
      sim_options.tls_cert_file = certificates_.path(cert + ".pem");
      sim_options.tls_key_file = certificates_.path(cert + ".key");
    }
    sim_ = std::make_unique<sim::Server>(sim_options);
    sim_->start();

    const std::string origin = cert.empty() ? "http://127.0.0.1:" : "https://localhost:";
    auto document = std::make_shared<policy::Document>();
    document->providers = {{"openai",
                            policy::ProviderKind::kOpenAi,
                            origin + std::to_string(sim_->port()),
                            {"gpt-*", "sim-*"},
                            "env:AIRLOCK_TEST_WS_OPENAI_KEY"}};
    document->grants = {{{"user:alice"}, {"openai/gpt-5*", "openai/sim-*"}, {}}};
    document->request_log.bodies = true;
    if (customize) customize(*document);
    std::string error;
    auto state = make_gateway_state(document, PriceTable::builtin(), &error);
    ASSERT_TRUE(state) << error;
    document_ = document;

    GatewayOptions options;
    options.server.max_body_bytes = max_body_bytes_;
    options.upstream.connect_timeout = std::chrono::milliseconds(2000);
    if (!cert.empty()) options.upstream.ca_file = certificates_.path("ca.pem");
    ASSERT_TRUE(gateway_.start(options, *store_, alice_, state, /*threads=*/1, &error)) << error;
  }

  // The gateway in front of a BurstProvider instead of the simulator.
  void start_behind(const BurstProvider& provider) {
    start("", [&](policy::Document& document) {
      document.providers[0].base_url = "http://127.0.0.1:" + std::to_string(provider.port());
    });
  }

  void TearDown() override {
    gateway_.stop();
    if (sim_) sim_->stop();
  }

  uint16_t port() { return gateway_->port(); }

  std::vector<RequestRecord> records(size_t count) {
    return testing::await_records(*store_, count);
  }

  json sim_requests() {
    const testing::Reply reply =
        testing::call(sim_->port(), bhttp::verb::get, "/_sim/requests", "", {});
    return json::parse(reply.body);
  }

  std::size_t max_body_bytes_ = std::size_t{1} << 20;
  std::shared_ptr<policy::Document> document_;  // the policy start() loaded
  control::testing::Certificates certificates_;
  testing::ScratchStore store_;
  std::unique_ptr<sim::Server> sim_;
  testing::LoopbackGateway gateway_;
  policy::Identity alice_;
  std::string key_;
};

TEST_F(GatewayWebSocketTest, TurnsAreRelayedWithTheCentralKeyAndRecordedOneByOne) {
  start();
  Client client(port());
  client.send(create("gpt-5.5", "Say hello.").dump());
  const std::vector<json> first = client.turn();
  ASSERT_GE(first.size(), 3u);
  EXPECT_EQ(first.front()["type"], "response.created");
  ASSERT_EQ(first.back()["type"], "response.completed") << first.back().dump();
  const json usage = first.back()["response"]["usage"];

  // A second turn on the same socket, on a lane of its own: every event says which.
  json second_request = create("gpt-5.5", "And goodbye.");
  second_request["stream_id"] = "lane-b";
  client.send(second_request.dump());
  const std::vector<json> second = client.turn();
  ASSERT_EQ(second.back()["type"], "response.completed") << second.back().dump();
  for (const json& event : second) EXPECT_EQ(event.value("stream_id", ""), "lane-b");
  client.close();

  const std::vector<RequestRecord> turns = records(2);
  ASSERT_EQ(turns.size(), 2u);
  for (const RequestRecord& record : turns) {
    EXPECT_EQ(record.user, "alice");
    EXPECT_EQ(record.provider, "openai");
    EXPECT_EQ(record.model, "gpt-5.5");
    EXPECT_EQ(record.api, "openai.responses");
    EXPECT_EQ(record.status, 200);
    EXPECT_TRUE(record.streamed);
    EXPECT_TRUE(record.usage_complete);
    EXPECT_FALSE(record.client_disconnected);
    EXPECT_TRUE(record.error.empty()) << record.error;
    EXPECT_GT(record.cost.value_or(0), 0);
    EXPECT_GE(record.ttfb_us, 0);
  }
  // The first turn's record holds the usage its completed event reported (the list leaves the
  // bodies out; the one record has them).
  EXPECT_TRUE(std::any_of(turns.begin(), turns.end(), [&](const RequestRecord& listed) {
    std::string error;
    const RequestRecord record = store_->request(listed.id, &error).value_or(RequestRecord{});
    return record.input_tokens == usage["input_tokens"].get<uint64_t>() &&
           record.output_tokens == usage["output_tokens"].get<uint64_t>() &&
           record.request_body.value_or("").find("Say hello.") != std::string::npos;
  }));
  EXPECT_NE(turns[0].id, turns[1].id);

  // The provider saw one upgrade for both turns, with the central key and none of the sandbox's
  // credentials.
  int upgrades = 0;
  for (const json& seen : sim_requests()) {
    const std::string text = seen.dump();
    EXPECT_EQ(text.find("sandbox-token"), std::string::npos) << text;
    EXPECT_EQ(text.find("sandbox-key"), std::string::npos) << text;
    if (seen.value("method", "") == "GET") {
      ++upgrades;
      EXPECT_NE(text.find("Bearer " + key_), std::string::npos) << text;
      EXPECT_NE(text.find("responses_websockets"), std::string::npos) << text;
    }
  }
  EXPECT_EQ(upgrades, 1);
  // And the key reached no record, whose bodies hold the turn and its events.
  for (const RequestRecord& listed : turns) {
    std::string error;
    const std::optional<RequestRecord> record = store_->request(listed.id, &error);
    ASSERT_TRUE(record) << error;
    EXPECT_NE(record->request_body.value_or("").find("response.create"), std::string::npos);
    EXPECT_NE(record->response_body.value_or("").find("response.completed"), std::string::npos);
    EXPECT_EQ(record->request_body.value_or("").find(key_), std::string::npos);
    EXPECT_EQ(record->response_body.value_or("").find(key_), std::string::npos);
  }
}

// The provider's burst reaches the agent as one burst, not one wake-up per event; and events
// are not held back for more once the provider has sent all it had.
TEST_F(GatewayWebSocketTest, AProvidersBurstOfEventsArrivesTogether) {
  std::vector<std::string> first = {
      kCreatedEvent,
      R"({"type":"response.in_progress","response":{"id":"resp_1","status":"in_progress"}})"};
  for (int i = 0; i < 10; ++i) {
    // Past Beast's 1536-byte read size together, so the burst takes the gateway several reads.
    first.push_back(R"({"type":"response.output_text.delta","item_id":"msg_1","delta":")" +
                    std::string(200, 'a' + i) + R"("})");
  }
  const std::vector<std::string> second = {
      R"({"type":"response.output_text.done","item_id":"msg_1","text":"done"})", kCompletedEvent};
  BurstProvider provider({first, second});
  start_behind(provider);
  Client client(port());
  client.send(create("gpt-5.5", "Say hello.").dump());

  tcp::socket& socket = beast::get_lowest_layer(client.ws());
  EXPECT_EQ(bytes_on_arrival(socket), BurstProvider::frames(first).size());
  for (std::size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(client.read(), json::parse(first[i]));
  }
  provider.go_on();
  EXPECT_EQ(bytes_on_arrival(socket), BurstProvider::frames(second).size());
  const std::vector<json> rest = client.turn();
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest.back()["type"], "response.completed");
  client.close();

  const std::vector<RequestRecord> turns = records(1);
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_EQ(turns[0].status, 200);
  EXPECT_TRUE(turns[0].usage_complete);
  EXPECT_EQ(turns[0].input_tokens, 5u);
  EXPECT_EQ(turns[0].output_tokens, 7u);
}

// What the client sees when the socket ends: Beast's error and the close code it got.
std::pair<boost::system::error_code, uint16_t> read_end(Client& client) {
  // A socket left open fails the test rather than hanging it. The close frame may already sit in
  // Beast's buffer behind the last event, so the wait is on Beast's read, not on the socket.
  beast::flat_buffer buffer;
  boost::system::error_code ec = asio::error::timed_out;
  client.ws().async_read(buffer, [&](boost::system::error_code read, std::size_t) { ec = read; });
  auto& io = static_cast<asio::io_context&>(client.ws().get_executor().context());
  io.restart();
  io.run_for(std::chrono::seconds(10));
  return {ec, client.ws().reason().code};
}

TEST_F(GatewayWebSocketTest, AnIdleSocketIsClosedAsGoingAwayWhenTheGatewayStops) {
  start();
  Client client(port());
  client.send(create("gpt-5.5", "Say hello.").dump());
  ASSERT_EQ(client.turn().back()["type"], "response.completed");
  gateway_->stop();
  const auto [ec, code] = read_end(client);
  EXPECT_EQ(ec, websocket::error::closed) << ec.message();
  EXPECT_EQ(code, websocket::close_code::going_away);
  const std::vector<RequestRecord> turns = records(1);
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_TRUE(turns[0].usage_complete);
  EXPECT_TRUE(turns[0].error.empty()) << turns[0].error;
}

TEST_F(GatewayWebSocketTest, AStopLetsTheTurnInFlightEndBeforeTheSocketCloses) {
  const std::vector<std::string> first = {kCreatedEvent};
  const std::vector<std::string> second = {kCompletedEvent};
  BurstProvider provider({first, second});
  start_behind(provider);
  Client client(port());
  client.send(create("gpt-5.5", "Say hello.").dump());
  EXPECT_EQ(client.read()["type"], "response.created");
  gateway_->stop();
  provider.go_on();
  EXPECT_EQ(client.read()["type"], "response.completed");
  const auto [ec, code] = read_end(client);
  EXPECT_EQ(ec, websocket::error::closed) << ec.message();
  EXPECT_EQ(code, websocket::close_code::going_away);
  const std::vector<RequestRecord> turns = records(1);
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_EQ(turns[0].status, 200);
  EXPECT_TRUE(turns[0].usage_complete);
  EXPECT_EQ(turns[0].output_tokens, 7u);
  EXPECT_FALSE(turns[0].client_disconnected);
}

TEST_F(GatewayWebSocketTest, RefusedTurnsGetErrorEventsAndTheSocketGoesOn) {
  start();
  Client client(port());
  client.send(create("gpt-4o", "not granted").dump());
  const json denied = client.read();
  EXPECT_EQ(denied["type"], "error");
  EXPECT_EQ(denied["status"], 403);
  EXPECT_NE(denied["error"]["message"].get<std::string>().find("not granted"), std::string::npos);

  client.send("{not json");
  const json bad = client.read();
  EXPECT_EQ(bad["type"], "error");
  EXPECT_EQ(bad["status"], 400);

  client.send(json{{"type", "response.steer"}, {"input", "before any turn"}}.dump());
  EXPECT_EQ(client.read()["status"], 400);

  client.send(create("gpt-5.5", "Now a granted one.").dump());
  EXPECT_EQ(client.turn().back()["type"], "response.completed");
  client.close();

  // One record per response.create, refused or not; none for the steer that went nowhere.
  const std::vector<RequestRecord> turns = records(3);
  ASSERT_EQ(turns.size(), 3u);
  std::multiset<int> statuses;
  for (const RequestRecord& record : turns) {
    statuses.insert(record.status);
    if (record.status == 403) {
      EXPECT_EQ(record.model, "gpt-4o");
      EXPECT_EQ(record.cost.value_or(-1), 0);
      EXPECT_FALSE(record.error.empty());
    }
  }
  EXPECT_EQ(statuses, (std::multiset<int>{200, 400, 403}));
  // The refused turns never reached the provider: it saw the upgrade and one turn.
  size_t turns_seen = 0;
  for (const json& seen : sim_requests()) {
    if (seen.value("method", "") != "GET") ++turns_seen;
  }
  EXPECT_LE(turns_seen, 1u);
}

TEST_F(GatewayWebSocketTest, ClientGoneMidTurnIsRecordedAsSuch) {
  start();
  {
    Client client(port());
    client.send(create("sim-stall", "Wait for it.").dump());
    EXPECT_EQ(client.read()["type"], "response.created");
    client.drop();
  }
  const std::vector<RequestRecord> turns = records(1);
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_TRUE(turns[0].client_disconnected);
  EXPECT_FALSE(turns[0].usage_complete);
  EXPECT_EQ(turns[0].model, "sim-stall");
}

TEST_F(GatewayWebSocketTest, ProviderGoneEndsTheTurnAndTheSocket) {
  start();
  Client client(port());
  client.send(create("sim-stall", "Wait for it.").dump());
  EXPECT_EQ(client.read()["type"], "response.created");
  // Destroyed, the simulator closes its connections (stop() alone leaves them open).
  sim_->stop();
  sim_.reset();
  // The client's socket is closed by the gateway, which could no longer relay.
  beast::flat_buffer buffer;
  beast::error_code ec;
  client.ws().read(buffer, ec);
  EXPECT_EQ(ec, websocket::error::closed) << ec.message();
  // It broke without a close frame from the provider: the gateway's failure to relay.
  EXPECT_EQ(client.ws().reason().code, websocket::close_code::internal_error);

  const std::vector<RequestRecord> turns = records(1);
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_FALSE(turns[0].client_disconnected);
  EXPECT_FALSE(turns[0].usage_complete);
  EXPECT_NE(turns[0].error.find("WebSocket"), std::string::npos) << turns[0].error;
}

TEST_F(GatewayWebSocketTest, TlsProviderIsVerified) {
  if (!certificates_.ok()) GTEST_SKIP() << "openssl CLI not available";
  start("localhost");
  Client client(port());
  client.send(create("gpt-5.5", "Over TLS.").dump());
  const std::vector<json> events = client.turn();
  EXPECT_EQ(events.back()["type"], "response.completed") << events.back().dump();
  client.close();
  const std::vector<RequestRecord> turns = records(1);
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_EQ(turns[0].status, 200);
  EXPECT_TRUE(turns[0].usage_complete);
}

TEST_F(GatewayWebSocketTest, TlsProviderWithAnotherNamesCertificateIsRefused) {
  if (!certificates_.ok()) GTEST_SKIP() << "openssl CLI not available";
  start("other");
  Client client(port());
  client.send(create("gpt-5.5", "Over TLS to an impostor.").dump());
  const json refused = client.read();
  EXPECT_EQ(refused["type"], "error");
  EXPECT_EQ(refused["status"], 502);
  const std::string message = refused["error"]["message"];
  EXPECT_NE(message.find("certificate"), std::string::npos) << message;
  client.close();
  const std::vector<RequestRecord> turns = records(1);
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_EQ(turns[0].status, 502);
  EXPECT_EQ(turns[0].cost.value_or(-1), 0);
}

// Guardrails apply to each response.create: a blocked prompt never leaves, and a flagged tool
// call is recorded. Messages that could carry prompt text past them are not relayed.
TEST_F(GatewayWebSocketTest, GuardrailsCheckEveryTurn) {
  start("", [](policy::Document& document) {
    policy::GuardrailSpec rm;
    rm.name = "rm-root";
    rm.patterns = {{"rm", "rm -rf /", true, false, 0}};
    rm.prompt = policy::PromptAction::kBlock;
    rm.response = policy::ResponseAction::kOff;
    policy::GuardrailSpec ls;
    ls.name = "listing";
    ls.patterns = {{"ls", "ls -la", true, false, 0}};
    ls.prompt = policy::PromptAction::kOff;
    ls.response = policy::ResponseAction::kFlag;
    document.guardrails = {rm, ls};
  });
  Client client(port());
  client.send(create("gpt-5.5", "please run rm -rf / now").dump());
  const json blocked = client.read();
  EXPECT_EQ(blocked["type"], "error");
  EXPECT_NE(blocked["error"]["message"].get<std::string>().find("rm-root"), std::string::npos);

  json with_tools = create("gpt-5.5", "list the files");
  with_tools["tools"] =
      json::array({{{"type", "function"},
                    {"name", "shell"},
                    {"parameters",
                     {{"type", "object"}, {"properties", {{"command", {{"type", "string"}}}}}}}}});
  client.send(with_tools.dump());
  const std::vector<json> events = client.turn();
  EXPECT_EQ(events.back()["type"], "response.completed") << events.back().dump();

  client.send(json{{"type", "response.steer"}, {"input", "rm -rf / after all"}}.dump());
  const json steer = client.read();
  EXPECT_EQ(steer["status"], 400);
  EXPECT_NE(steer["error"]["message"].get<std::string>().find("response.create messages only"),
            std::string::npos);
  client.close();

  const std::vector<RequestRecord> turns = records(2);
  ASSERT_EQ(turns.size(), 2u);
  bool saw_block = false, saw_flag = false;
  for (const RequestRecord& record : turns) {
    for (const GuardrailHit& hit : record.guardrail_hits) {
      if (hit.guardrail == "rm-root" && hit.action == "block") saw_block = true;
      if (hit.guardrail == "listing" && hit.action == "flag" && hit.where == "response") {
        saw_flag = true;
        // The list leaves tool calls out; the one record has them.
        std::string error;
        const std::optional<RequestRecord> whole = store_->request(record.id, &error);
        ASSERT_TRUE(whole) << error;
        ASSERT_EQ(whole->tool_calls.size(), 1u);
        EXPECT_NE(whole->tool_calls[0].arguments.find("ls -la"), std::string::npos);
      }
    }
  }
  EXPECT_TRUE(saw_block);
  EXPECT_TRUE(saw_flag);
  // The blocked prompt and the steer never reached the provider.
  for (const json& seen : sim_requests()) {
    EXPECT_EQ(seen.dump().find("rm -rf"), std::string::npos) << seen.dump();
  }
}

// The control plane stopping mid-turn: the turn is recorded, and its record says why it is cut.
TEST_F(GatewayWebSocketTest, ATurnCutByShutdownIsRecordedAsSuch) {
  start();
  Client client(port());
  client.send(create("sim-stall", "Hold on.").dump());
  EXPECT_EQ(client.read()["type"], "response.created");
  gateway_.stop_and_drop_requests();
  const std::vector<RequestRecord> got = records(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].model, "sim-stall");
  EXPECT_EQ(got[0].status, 200);
  EXPECT_FALSE(got[0].usage_complete);
  EXPECT_EQ(got[0].error, "the gateway stopped before the request ended");
}

// Cuts any tool call that runs curl.
policy::GuardrailSpec cutting_guardrail() {
  policy::GuardrailSpec cut;
  cut.name = "no-curl";
  cut.patterns = {{"curl", "curl ", true, false, 0}};
  cut.response = policy::ResponseAction::kCut;
  return cut;
}

// A guardrail that cuts needs the HTTP API, where events can be held back: the upgrade gets the
// 426 on which Codex falls back to HTTP at once.
TEST_F(GatewayWebSocketTest, CuttingGuardrailSendsThePeerToHttp) {
  start("", [](policy::Document& document) { document.guardrails = {cutting_guardrail()}; });
  const testing::Reply reply = testing::call(port(), bhttp::verb::get, "/v1/responses", "",
                                             {{"Connection", "Upgrade"},
                                              {"Upgrade", "websocket"},
                                              {"Sec-WebSocket-Version", "13"},
                                              {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}});
  EXPECT_EQ(reply.status, 426u);
  EXPECT_NE(reply.body.find("no-curl"), std::string::npos) << reply.body;
}

TEST_F(GatewayWebSocketTest, RateLimitsCountTurns) {
  start("", [](policy::Document& document) {
    policy::RateLimitSpec limit;
    limit.from = {"user:alice"};
    limit.requests_per_minute = 1;
    document.rate_limits = {limit};
  });
  Client client(port());
  client.send(create("gpt-5.5", "first").dump());
  EXPECT_EQ(client.turn().back()["type"], "response.completed");
  client.send(create("gpt-5.5", "second").dump());
  const json limited = client.read();
  EXPECT_EQ(limited["type"], "error");
  EXPECT_EQ(limited["status"], 429);
  client.close();
  std::multiset<int> statuses;
  for (const RequestRecord& record : records(2)) statuses.insert(record.status);
  EXPECT_EQ(statuses, (std::multiset<int>{200, 429}));
}

// One turn at a time: the provider's events name no request, so a second turn in flight could
// end with the first one's error, or take its usage.
TEST_F(GatewayWebSocketTest, ASecondTurnWhileOneStreamsIsRefused) {
  start();
  Client client(port());
  client.send(create("sim-stall", "Wait for it.").dump());
  EXPECT_EQ(client.read()["type"], "response.created");
  client.send(create("gpt-5.5", "Me too.").dump());
  const json refused = client.read();
  EXPECT_EQ(refused["type"], "error");
  EXPECT_EQ(refused["status"], 409);
  EXPECT_EQ(refused["error"]["code"], "response_in_progress");
  client.drop();
  std::multiset<int> statuses;
  for (const RequestRecord& record : records(2)) statuses.insert(record.status);
  EXPECT_EQ(statuses, (std::multiset<int>{200, 409}));
}

TEST_F(GatewayWebSocketTest, AMessageOverTheBodyLimitIsRecordedAs413) {
  max_body_bytes_ = 4096;
  start();
  Client client(port());
  client.send(create("gpt-5.5", std::string(8192, 'x')).dump());
  beast::flat_buffer buffer;
  beast::error_code ec;
  client.ws().read(buffer, ec);
  // The socket ends: with Beast's 1009 when the client reads the close frame before the gateway
  // drops the connection, with a transport error when it answers it too late.
  EXPECT_TRUE(ec);
  if (ec == websocket::error::closed) {
    EXPECT_EQ(client.ws().reason().code, websocket::close_code::too_big);
  }
  const std::vector<RequestRecord> turns = records(1);
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_EQ(turns[0].status, 413);
  EXPECT_EQ(turns[0].user, "alice");
  // Nothing reached the provider: no turn opened its socket.
  EXPECT_TRUE(sim_requests().empty());
}

// A policy pushed while the socket is open applies to its next turn: a guardrail that cuts sends
// the peer back to HTTP, where the next upgrade gets the 426.
TEST_F(GatewayWebSocketTest, APolicyThatNowCutsEndsTheSocket) {
  start();
  Client client(port());
  client.send(create("gpt-5.5", "Before the push.").dump());
  EXPECT_EQ(client.turn().back()["type"], "response.completed");

  auto document = std::make_shared<policy::Document>(*document_);
  document->guardrails = {cutting_guardrail()};
  std::string error;
  auto state = make_gateway_state(document, PriceTable::builtin(), &error);
  ASSERT_TRUE(state) << error;
  gateway_->set_state(state);

  client.send(create("gpt-5.5", "After the push.").dump());
  const json refused = client.read();
  EXPECT_EQ(refused["status"], 426);
  EXPECT_NE(refused["error"]["message"].get<std::string>().find("no-curl"), std::string::npos);
  beast::flat_buffer buffer;
  beast::error_code ec;
  client.ws().read(buffer, ec);
  EXPECT_EQ(ec, websocket::error::closed) << ec.message();
  EXPECT_EQ(client.ws().reason().code, websocket::close_code::policy_error);
  std::multiset<int> statuses;
  for (const RequestRecord& record : records(2)) statuses.insert(record.status);
  EXPECT_EQ(statuses, (std::multiset<int>{200, 426}));
}

}  // namespace
}  // namespace airlock::control::gateway
