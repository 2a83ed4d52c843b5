// Guardrails and events end to end over loopback: a client, the Gateway on two threads with a
// SQLite request log, an in-test upstream that records what reached it and streams a tool call
// split across events, and for events a webhook receiver behind a real outbox.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "control/events/outbox.h"
#include "control/events/signature.h"
#include "control/gateway/gateway.h"
#include "control/http/server.h"
#include "tests/gateway_test_util.h"
#include "tests/http_test_util.h"

namespace airlock::control::gateway {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;
using testing::random_hex;
using testing::Reply;
using testing::write_all;
using testing::write_chunk;
using namespace std::chrono_literals;

constexpr std::string_view kSecretInPrompt = "CANARY-31415926";
constexpr std::string_view kCommand = "rm -rf /";

bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// ---------------------------------------------------------------- the in-test upstream

constexpr std::string_view kChatBody =
    R"({"id":"chatcmpl-1","object":"chat.completion","model":"gpt-5.5","choices":[{"index":0,)"
    R"("message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],)"
    R"("usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120}})";

// An OpenAI Chat stream in which the model calls `bash` with "rm -rf / --no-preserve-root", the
// command split between two events that the upstream sends 100 ms apart.
constexpr std::string_view kToolHead =
    "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-5.5\","
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
    "[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"bash\","
    "\"arguments\":\"\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-5.5\","
    "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"{\\\"command\\\":\\\"rm "
    "-r\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n";
constexpr std::string_view kToolTail =
    "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-5.5\","
    "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"f / --no-preserve-root\\\"}\"}}]},\"finish_reason\":null}],\"usage\":null}"
    "\n\n"
    "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-5.5\","
    "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n";
constexpr std::string_view kToolUsage =
    "data: {\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-5.5\","
    "\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12,"
    "\"total_tokens\":42}}\n\n";
constexpr std::string_view kDone = "data: [DONE]\n\n";
constexpr std::string_view kToolArguments = R"({"command":"rm -rf / --no-preserve-root"})";

// The same call answered whole, as OpenAI Chat and as Anthropic Messages JSON.
constexpr std::string_view kWholeToolChat =
    R"({"id":"chatcmpl-w","object":"chat.completion","model":"gpt-5.5","choices":[{"index":0,)"
    R"("message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":)"
    R"("function","function":{"name":"bash","arguments":"{\"command\":\"rm -rf / )"
    R"(--no-preserve-root\"}"}}]},"finish_reason":"tool_calls"}],)"
    R"("usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}})";
constexpr std::string_view kWholeToolMessages =
    R"({"id":"msg_w","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":)"
    R"([{"type":"tool_use","id":"toolu_1","name":"bash","input":{"command":"rm -rf / )"
    R"(--no-preserve-root"}}],"stop_reason":"tool_use","stop_sequence":null,)"
    R"("usage":{"input_tokens":30,"output_tokens":12}})";
constexpr std::string_view kMessagesBody =
    R"({"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":)"
    R"([{"type":"text","text":"hello"}],"stop_reason":"end_turn","stop_sequence":null,)"
    R"("usage":{"input_tokens":100,"output_tokens":20}})";
// What the client asks of the upstream in its last message, for the answers not streamed.
constexpr std::string_view kAskTool = "clean up the disk";
constexpr std::string_view kAskHugeTool = "clean up the whole disk";
constexpr std::string_view kAskBrokenTool = "clean up the disk, then hang up";
// Over the gateway's 16 MiB cap on a body it holds or meters.
constexpr std::size_t kHugePadding = 17u << 20;

// A tool call comes in two writes 100 ms apart, split inside its arguments; a broken one stops
// there, short of its Content-Length.
bool answer_whole(tcp::socket& socket, const json& body) {
  const bool claude = body.value("model", "").starts_with("claude");
  std::string ask;
  if (body.contains("messages") && !body["messages"].empty()) {
    ask = body["messages"].back().value("content", "");
  }
  const bool tool = ask == kAskTool || ask == kAskHugeTool || ask == kAskBrokenTool;
  std::string answer(tool ? (claude ? kWholeToolMessages : kWholeToolChat)
                          : (claude ? kMessagesBody : kChatBody));
  if (ask == kAskHugeTool)
    answer.insert(1, R"("padding":")" + std::string(kHugePadding, 'x') + "\",");
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                           std::to_string(answer.size()) + "\r\n\r\n";
  if (!tool) return write_all(socket, head + answer);
  const std::size_t split = answer.find("rm -r") + 5;
  if (!write_all(socket, head + answer.substr(0, split))) return false;
  std::this_thread::sleep_for(100ms);
  return ask != kAskBrokenTool && write_all(socket, answer.substr(split));
}

// Streams the tool call when asked to stream, else answers whole.
bool answer(tcp::socket& socket, const testing::Seen& seen) {
  const json body = json::parse(seen.body, nullptr, false);
  const bool stream = body.is_object() && body.value("stream", false);
  if (!stream) return answer_whole(socket, body);
  const bool usage =
      body.contains("stream_options") && body["stream_options"].value("include_usage", false);
  if (!write_all(socket, testing::kEventStreamHead) || !write_chunk(socket, kToolHead)) {
    return false;
  }
  std::this_thread::sleep_for(100ms);
  return write_chunk(socket, std::string(kToolTail) + (usage ? std::string(kToolUsage) : "") +
                                 std::string(kDone)) &&
         write_all(socket, testing::kLastChunk);
}

// ---------------------------------------------------------------- the webhook receiver

constexpr std::string_view kWebhookSecret = "whsec_gateway_test_0123456789";

class Receiver {
 public:
  struct Hit {
    std::string event_type;  // the airlock-event-type header
    std::string signature;
    std::string body;
  };

  Receiver() {
    std::string error;
    http::Handler handler = [this](http::Request& request, http::BodyStatus,
                                   const http::ClientInfo&,
                                   http::ResponseWriter& writer) -> asio::awaitable<void> {
      {
        std::lock_guard lock(mutex_);
        hits_.push_back({std::string(request["airlock-event-type"]),
                         std::string(request["airlock-signature"]), request.body()});
      }
      http::Response response{bhttp::status::ok, 11};
      response.body() = "ok";
      co_await writer.write(std::move(response));
    };
    server_ = http::Server::listen(threads_.io(), {asio::ip::make_address("127.0.0.1"), 0}, {},
                                   std::move(handler), &error);
    EXPECT_TRUE(server_) << error;
  }
  ~Receiver() {
    if (server_) server_->stop();
    threads_.join();
  }

  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_ ? server_->port() : 0) + "/hook";
  }
  std::vector<Hit> hits() {
    std::lock_guard lock(mutex_);
    return hits_;
  }

 private:
  http::testing::IoThreads threads_;
  std::mutex mutex_;
  std::vector<Hit> hits_;
  std::unique_ptr<http::Server> server_;
};

// ---------------------------------------------------------------- the client

// The client posts JSON, and keeps a transport failure for the test to report.
Reply call(uint16_t port, std::string_view target, std::string body) {
  return testing::try_call(port, bhttp::verb::post, target, std::move(body),
                           {{"Content-Type", "application/json"}});
}

// ---------------------------------------------------------------- the fixture

constexpr const char* kKeyVariable = "AIRLOCK_TEST_GUARD_OPENAI_KEY";
constexpr const char* kAnthropicKeyVariable = "AIRLOCK_TEST_GUARD_ANTHROPIC_KEY";

policy::GuardrailSpec secrets_guardrail(policy::PromptAction prompt) {
  policy::GuardrailSpec spec;
  spec.name = "secrets";
  spec.patterns = {{"canary", "CANARY-[0-9]{8}", false, false, 0}};
  spec.prompt = prompt;
  spec.response = policy::ResponseAction::kOff;
  return spec;
}

policy::GuardrailSpec command_guardrail(policy::ResponseAction response) {
  policy::GuardrailSpec spec;
  spec.name = "no-rm-root";
  spec.patterns = {{"rm-root", std::string(kCommand), true, false, 0}};
  spec.prompt = policy::PromptAction::kOff;
  spec.response = response;
  return spec;
}

class GuardrailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(store_.open("airlock-guard-", &error)) << error;
    setenv(kKeyVariable, ("sk-canary-" + random_hex(16)).c_str(), 1);
    setenv(kAnthropicKeyVariable, ("sk-ant-canary-" + random_hex(16)).c_str(), 1);
    alice_.user = "alice";
    alice_.device = "laptop";
    alice_.public_key.fill(5);
  }

  void TearDown() override {
    gateway_.stop();
    outbox_.reset();
    upstream_.stop();
  }

  // Starts the gateway with these guardrails; with `outbox` it reports events there.
  void start(std::vector<policy::GuardrailSpec> guardrails, events::Outbox* outbox = nullptr) {
    auto document = std::make_shared<policy::Document>();
    const std::string url = upstream_.url();
    document->providers = {{"openai",
                            policy::ProviderKind::kOpenAi,
                            url,
                            {"gpt-*"},
                            std::string("env:") + kKeyVariable},
                           {"anthropic",
                            policy::ProviderKind::kAnthropic,
                            url,
                            {"claude-*"},
                            std::string("env:") + kAnthropicKeyVariable}};
    document->grants = {{{"user:alice"}, {"openai/gpt-5*", "anthropic/claude-*"}, {}}};
    document->guardrails = std::move(guardrails);
    document->request_log.bodies = true;
    std::string error;
    const auto state = make_gateway_state(document, PriceTable::builtin(), &error);
    ASSERT_TRUE(state) << error;
    ASSERT_TRUE(state->guardrails);
    GatewayOptions options;
    options.services.outbox = outbox;
    ASSERT_TRUE(gateway_.start(options, *store_, alice_, state, /*threads=*/2, &error)) << error;
  }

  Reply post(const json& body) {
    return call(gateway_->port(), "/v1/chat/completions", body.dump());
  }
  Reply post_messages(const json& body) {
    return call(gateway_->port(), "/v1/messages", body.dump());
  }

  RequestRecord record_of(const Reply& reply) {
    return testing::await_record(*store_, reply).value_or(RequestRecord{});
  }
  RequestRecord passed_unchanged(const Reply& reply, std::string_view answer);

  static json prompt_with_secret() {
    return {{"model", "gpt-5.5"},
            {"messages",
             {{{"role", "user"},
               {"content", "deploy with token " + std::string(kSecretInPrompt) + " please"}}}}};
  }

  static bool has_hit(const RequestRecord& record, const GuardrailHit& hit) {
    return std::find(record.guardrail_hits.begin(), record.guardrail_hits.end(), hit) !=
           record.guardrail_hits.end();
  }

  testing::ScratchStore store_;
  testing::ScriptedUpstream upstream_{answer};
  std::unique_ptr<events::Outbox> outbox_;
  testing::LoopbackGateway gateway_;
  policy::Identity alice_;
};

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// ---------------------------------------------------------------- prompts

TEST_F(GuardrailTest, BlockedPromptNeverLeavesAndIsNotLogged) {
  start({secrets_guardrail(policy::PromptAction::kBlock)});
  const Reply reply = post(prompt_with_secret());
  EXPECT_EQ(reply.status, 400u) << reply.body;
  const json error = json::parse(reply.body, nullptr, false);
  ASSERT_TRUE(error.is_object()) << reply.body;
  EXPECT_EQ(error["error"]["code"], "guardrail_blocked");
  const std::string message = error["error"]["message"];
  EXPECT_TRUE(contains(message, "secrets")) << message;
  EXPECT_TRUE(contains(message, "canary")) << message;
  EXPECT_FALSE(contains(reply.body, kSecretInPrompt));
  EXPECT_TRUE(upstream_.bodies().empty());

  const RequestRecord record = record_of(reply);
  EXPECT_EQ(record.status, 400);
  ASSERT_TRUE(record.request_body);
  EXPECT_FALSE(contains(*record.request_body, kSecretInPrompt)) << *record.request_body;
  EXPECT_TRUE(contains(*record.request_body, "[REDACTED:canary]")) << *record.request_body;
  EXPECT_FALSE(contains(record.response_body.value_or(""), kSecretInPrompt));
  EXPECT_FALSE(contains(record.error, kSecretInPrompt));
  EXPECT_EQ(record.guardrail_hits,
            (std::vector<GuardrailHit>{{"secrets", "canary", "block", "prompt"}}));
}

TEST_F(GuardrailTest, RedactedPromptIsForwardedAndLoggedWithoutTheSecret) {
  start({secrets_guardrail(policy::PromptAction::kRedact)});
  const Reply reply = post(prompt_with_secret());
  EXPECT_EQ(reply.status, 200u) << reply.body;
  EXPECT_EQ(reply.body, kChatBody);
  const std::vector<std::string> seen = upstream_.bodies();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(contains(seen[0], kSecretInPrompt)) << seen[0];
  const json forwarded = json::parse(seen[0], nullptr, false);
  ASSERT_TRUE(forwarded.is_object()) << seen[0];
  EXPECT_EQ(forwarded["messages"][0]["content"], "deploy with token [REDACTED:canary] please");

  const RequestRecord record = record_of(reply);
  ASSERT_TRUE(record.request_body);
  EXPECT_FALSE(contains(*record.request_body, kSecretInPrompt)) << *record.request_body;
  EXPECT_TRUE(contains(*record.request_body, "[REDACTED:canary]")) << *record.request_body;
  EXPECT_EQ(record.guardrail_hits,
            (std::vector<GuardrailHit>{{"secrets", "canary", "redact", "prompt"}}));
}

TEST_F(GuardrailTest, FlaggedPromptIsForwardedUnchangedAndRecorded) {
  start({secrets_guardrail(policy::PromptAction::kFlag)});
  const std::string body = prompt_with_secret().dump();
  const Reply reply = call(gateway_->port(), "/v1/chat/completions", body);
  EXPECT_EQ(reply.status, 200u) << reply.body;
  const std::vector<std::string> seen = upstream_.bodies();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], body);
  const RequestRecord record = record_of(reply);
  EXPECT_EQ(record.guardrail_hits,
            (std::vector<GuardrailHit>{{"secrets", "canary", "flag", "prompt"}}));
  EXPECT_TRUE(record.error.empty()) << record.error;
}

TEST_F(GuardrailTest, CleanPromptHasNoHits) {
  start({secrets_guardrail(policy::PromptAction::kBlock)});
  const json request = {{"model", "gpt-5.5"},
                        {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  const Reply reply = post(request);
  EXPECT_EQ(reply.status, 200u) << reply.body;
  EXPECT_EQ(upstream_.bodies().at(0), request.dump());
  EXPECT_TRUE(record_of(reply).guardrail_hits.empty());
}

// ---------------------------------------------------------------- streamed tool calls

json tool_request(bool asks_usage) {
  json request = {{"model", "gpt-5.5"},
                  {"stream", true},
                  {"messages", {{{"role", "user"}, {"content", "clean up the disk"}}}}};
  if (asks_usage) request["stream_options"] = {{"include_usage", true}};
  return request;
}

TEST_F(GuardrailTest, ToolCallSplitAcrossEventsIsCutBeforeTheClientSeesIt) {
  start({command_guardrail(policy::ResponseAction::kCut)});
  const Reply reply = post(tool_request(false));
  ASSERT_TRUE(reply.error.empty()) << "the cut stream must still end cleanly: " << reply.error;
  EXPECT_EQ(reply.status, 200u);
  // Everything before the event that completed the command arrived; that event did not.
  EXPECT_TRUE(reply.body.starts_with(kToolHead)) << reply.body;
  EXPECT_FALSE(contains(reply.body, kCommand)) << reply.body;
  EXPECT_FALSE(contains(reply.body, "no-preserve-root")) << reply.body;
  EXPECT_FALSE(contains(reply.body, "[DONE]")) << reply.body;
  // In its place, an error event in OpenAI's format, and nothing after it.
  const std::string rest = reply.body.substr(std::min(reply.body.size(), kToolHead.size()));
  ASSERT_TRUE(rest.starts_with("data: ")) << rest;
  ASSERT_TRUE(rest.ends_with("\n\n")) << rest;
  const json event = json::parse(rest.substr(6), nullptr, false);
  ASSERT_TRUE(event.is_object()) << rest;
  EXPECT_EQ(event["error"]["code"], "guardrail_cut") << rest;
  EXPECT_TRUE(contains(event["error"]["message"].get<std::string>(), "no-rm-root")) << rest;

  const RequestRecord record = record_of(reply);
  EXPECT_EQ(record.status, 200);
  EXPECT_TRUE(contains(record.error, "no-rm-root")) << record.error;
  EXPECT_TRUE(has_hit(record, {"no-rm-root", "rm-root", "cut", "response"}));
  EXPECT_FALSE(contains(record.response_body.value_or(""), "no-preserve-root"))
      << "the log holds what the client got";
}

TEST_F(GuardrailTest, FlaggedToolCallStreamsUnchangedAndIsRecorded) {
  start({command_guardrail(policy::ResponseAction::kFlag)});
  const Reply reply = post(tool_request(true));
  ASSERT_TRUE(reply.error.empty()) << reply.error;
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.body, std::string(kToolHead) + std::string(kToolTail) + std::string(kToolUsage) +
                            std::string(kDone));
  const RequestRecord record = record_of(reply);
  EXPECT_TRUE(record.error.empty()) << record.error;
  EXPECT_EQ(record.guardrail_hits,
            (std::vector<GuardrailHit>{{"no-rm-root", "rm-root", "flag", "response"}}));
  ASSERT_EQ(record.tool_calls.size(), 1u);
  EXPECT_EQ(record.tool_calls[0].name, "bash");
  EXPECT_EQ(record.tool_calls[0].arguments, kToolArguments);
  EXPECT_TRUE(record.usage_complete);
  EXPECT_EQ(record.output_tokens, 12u);
}

// ---------------------------------------------------------------- tool calls answered whole

json whole_request(std::string_view model, std::string_view ask) {
  return {
      {"model", model}, {"max_tokens", 100}, {"messages", {{{"role", "user"}, {"content", ask}}}}};
}

constexpr std::string_view kCutReason =
    R"(response cut by guardrail "no-rm-root": tool call "bash" matches "rm-root")";

// No byte of the provider's answer, the command least of all.
void expect_none_of_the_answer(const Reply& reply) {
  EXPECT_FALSE(contains(reply.body, kCommand)) << reply.body;
  EXPECT_FALSE(contains(reply.body, "no-preserve-root")) << reply.body;
  EXPECT_FALSE(contains(reply.body, "call_1")) << reply.body;
  EXPECT_FALSE(contains(reply.body, "toolu_1")) << reply.body;
}

// A held answer the gateway replaced: `status`, none of the provider's answer, and the
// provider-format error the client got instead ({"error": {}} when it is not one, so the
// caller's checks of its fields fail rather than throw).
json replaced_answer(const Reply& reply, unsigned status) {
  EXPECT_TRUE(reply.error.empty()) << reply.error;
  EXPECT_EQ(reply.status, status) << reply.body;
  expect_none_of_the_answer(reply);
  json error = json::parse(reply.body, nullptr, false);
  const bool ok = error.is_object() && error.contains("error") && error["error"].is_object();
  EXPECT_TRUE(ok) << reply.body;
  return ok ? error : json{{"error", json::object()}};
}

// The cut answer's record: the hit, the reason, and the usage the provider was paid for.
void expect_cut_record(const RequestRecord& record, const Reply& reply) {
  EXPECT_EQ(record.status, 400);
  EXPECT_EQ(record.error, kCutReason);
  EXPECT_EQ(record.guardrail_hits,
            (std::vector<GuardrailHit>{{"no-rm-root", "rm-root", "cut", "response"}}));
  EXPECT_EQ(record.input_tokens, 30u);
  EXPECT_EQ(record.output_tokens, 12u);
  EXPECT_TRUE(record.usage_complete);
  EXPECT_GT(record.cost.value_or(0), 0);
  ASSERT_EQ(record.tool_calls.size(), 1u);
  EXPECT_EQ(record.tool_calls[0].name, "bash");
  EXPECT_EQ(record.tool_calls[0].arguments, kToolArguments);
  EXPECT_EQ(record.response_body.value_or(""), reply.body) << "the log holds what the client got";
}

TEST_F(GuardrailTest, WholeChatToolCallIsCutBeforeTheClientSeesIt) {
  start({command_guardrail(policy::ResponseAction::kCut)});
  const Reply reply = post(whole_request("gpt-5.5", kAskTool));
  EXPECT_EQ(reply.header("content-type"), "application/json");
  const json error = replaced_answer(reply, 400);
  EXPECT_EQ(error["error"]["code"], "guardrail_cut");
  EXPECT_EQ(error["error"]["type"], "invalid_request_error");
  EXPECT_EQ(error["error"]["message"], kCutReason);
  expect_cut_record(record_of(reply), reply);
}

TEST_F(GuardrailTest, WholeMessagesToolCallIsCutBeforeTheClientSeesIt) {
  start({command_guardrail(policy::ResponseAction::kCut)});
  const Reply reply = post_messages(whole_request("claude-sonnet-4-5", kAskTool));
  const json error = replaced_answer(reply, 400);
  EXPECT_EQ(error["type"], "error");
  EXPECT_EQ(error["error"]["type"], "invalid_request_error");
  EXPECT_EQ(error["error"]["message"], kCutReason);
  expect_cut_record(record_of(reply), reply);
}

// A held answer let through: byte for byte, with its length, and recorded as a success.
RequestRecord GuardrailTest::passed_unchanged(const Reply& reply, std::string_view answer) {
  EXPECT_TRUE(reply.error.empty()) << reply.error;
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.body, answer);
  EXPECT_EQ(reply.header("content-length"), std::to_string(answer.size()));
  const RequestRecord record = record_of(reply);
  EXPECT_EQ(record.status, 200);
  EXPECT_TRUE(record.error.empty()) << record.error;
  return record;
}

TEST_F(GuardrailTest, FlaggedWholeToolCallArrivesUnchangedAndIsRecorded) {
  start({command_guardrail(policy::ResponseAction::kFlag)});
  const struct {
    Reply reply;
    std::string_view answer;
  } cases[] = {{post(whole_request("gpt-5.5", kAskTool)), kWholeToolChat},
               {post_messages(whole_request("claude-sonnet-4-5", kAskTool)), kWholeToolMessages}};
  for (const auto& [reply, answer] : cases) {
    const RequestRecord record = passed_unchanged(reply, answer);
    EXPECT_EQ(record.guardrail_hits,
              (std::vector<GuardrailHit>{{"no-rm-root", "rm-root", "flag", "response"}}));
    ASSERT_EQ(record.tool_calls.size(), 1u);
    EXPECT_EQ(record.tool_calls[0].arguments, kToolArguments);
    EXPECT_EQ(record.output_tokens, 12u);
  }
}

TEST_F(GuardrailTest, CleanWholeAnswerPassesTheCutGuardrailUnchanged) {
  start({command_guardrail(policy::ResponseAction::kCut)});
  const struct {
    Reply reply;
    std::string_view answer;
  } cases[] = {{post(whole_request("gpt-5.5", "hi")), kChatBody},
               {post_messages(whole_request("claude-sonnet-4-5", "hi")), kMessagesBody}};
  for (const auto& [reply, answer] : cases) {
    const RequestRecord record = passed_unchanged(reply, answer);
    EXPECT_TRUE(record.guardrail_hits.empty());
    EXPECT_EQ(record.output_tokens, 20u);
  }
}

TEST_F(GuardrailTest, WholeAnswerOverTheHoldCapPassesAndSaysWhy) {
  start({command_guardrail(policy::ResponseAction::kCut)});
  const Reply reply = post(whole_request("gpt-5.5", kAskHugeTool));
  ASSERT_TRUE(reply.error.empty()) << reply.error;
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.body.size(), kWholeToolChat.size() + kHugePadding + 13);
  EXPECT_TRUE(reply.body.ends_with(kWholeToolChat.substr(1)));
  const RequestRecord record = record_of(reply);
  EXPECT_EQ(record.status, 200);
  EXPECT_TRUE(contains(record.error, "over the metering cap")) << record.error;
  EXPECT_TRUE(contains(record.error, "not held back for the guardrails")) << record.error;
  EXPECT_TRUE(record.guardrail_hits.empty()) << "a body that is not metered has no tool calls";
}

TEST_F(GuardrailTest, HeldAnswerCutShortByTheUpstreamIsNotPassedOn) {
  start({command_guardrail(policy::ResponseAction::kCut)});
  const Reply reply = post(whole_request("gpt-5.5", kAskBrokenTool));
  const json error = replaced_answer(reply, 502);
  EXPECT_TRUE(contains(error["error"].value("message", ""), "mid-response")) << reply.body;
  const RequestRecord record = record_of(reply);
  EXPECT_EQ(record.status, 502);
  EXPECT_FALSE(record.error.empty());
  EXPECT_FALSE(record.usage_complete);
}

// ---------------------------------------------------------------- events

TEST_F(GuardrailTest, EventsReachTheWebhookSigned) {
  Receiver receiver;
  events::OutboxOptions options;
  options.first_retry = 50ms;
  options.max_retry = 200ms;
  options.connect_timeout = 2s;
  options.response_timeout = 5s;
  options.stop_grace = 200ms;
  std::string error;
  outbox_ = events::Outbox::open((store_.dir() / "outbox.db").string(), &error, options);
  ASSERT_TRUE(outbox_) << error;
  std::vector<events::Subscription> subscriptions;
  subscriptions.push_back({receiver.url(), Secret(kWebhookSecret), {}});
  ASSERT_TRUE(outbox_->set_webhooks(std::move(subscriptions), &error)) << error;
  start({command_guardrail(policy::ResponseAction::kFlag)}, outbox_.get());

  const Reply denied = post({{"model", "gpt-4o"}, {"messages", json::array()}});
  EXPECT_EQ(denied.status, 403u) << denied.body;
  const Reply tools = post(tool_request(false));
  EXPECT_EQ(tools.status, 200u) << tools.body;
  const std::string denied_id = denied.header("x-airlock-request-id");
  const std::string tools_id = tools.header("x-airlock-request-id");

  // (type, request id) of every event received.
  std::multimap<std::string, std::string> received;
  std::vector<Receiver::Hit> hits;
  const auto got = [&](const std::string& type, const std::string& id) {
    const auto [begin, end] = received.equal_range(type);
    return std::any_of(begin, end, [&](const auto& entry) { return entry.second == id; });
  };
  const bool all = eventually([&] {
    hits = receiver.hits();
    received.clear();
    for (const Receiver::Hit& hit : hits) {
      const json envelope = json::parse(hit.body, nullptr, false);
      if (!envelope.is_object() || !envelope.contains("data")) continue;
      received.emplace(envelope.value("type", ""), envelope["data"].value("request_id", ""));
    }
    return got("access.denied", denied_id) && got("request.completed", denied_id) &&
           got("request.completed", tools_id) && got("tool.call", tools_id) &&
           got("guardrail.match", tools_id);
  });
  EXPECT_TRUE(all) << hits.size() << " events received";
  EXPECT_FALSE(got("access.denied", tools_id));

  for (const Receiver::Hit& hit : hits) {
    EXPECT_TRUE(events::verify_signature(kWebhookSecret, hit.signature, hit.body,
                                         std::chrono::system_clock::now()))
        << hit.signature << " " << hit.body;
    const json envelope = json::parse(hit.body, nullptr, false);
    ASSERT_TRUE(envelope.is_object()) << hit.body;
    EXPECT_EQ(envelope["type"], hit.event_type);
    const json& data = envelope["data"];
    if (envelope["type"] == "access.denied") {
      EXPECT_EQ(data["user"], "alice");
      EXPECT_EQ(data["model"], "gpt-4o");
      EXPECT_TRUE(contains(data["reason"].get<std::string>(), "not granted")) << hit.body;
    } else if (envelope["type"] == "tool.call") {
      EXPECT_EQ(data["name"], "bash");
      EXPECT_EQ(data["arguments"], kToolArguments);
      EXPECT_EQ(data["call_id"], "call_1");
    } else if (envelope["type"] == "guardrail.match") {
      EXPECT_EQ(data["guardrail"], "no-rm-root");
      EXPECT_EQ(data["pattern"], "rm-root");
      EXPECT_EQ(data["action"], "flag");
      EXPECT_EQ(data["where"], "response");
    } else if (envelope["type"] == "request.completed" && data["request_id"] == tools_id) {
      EXPECT_EQ(data["status"], 200);
      EXPECT_EQ(data["tool_calls"], 1);
      EXPECT_EQ(data["output_tokens"], 12);
    }
  }
}

}  // namespace
}  // namespace airlock::control::gateway
