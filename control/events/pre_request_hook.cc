#include "control/events/pre_request_hook.h"

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "control/metering/json_parse.h"

namespace airlock::control::events {
namespace {

namespace bhttp = boost::beast::http;
using Json = nlohmann::json;
using Error = http::UpstreamResult::Error;

// A modified body replaces the client's request, which the gateway accepts up to 32 MiB.
constexpr size_t kMaxReplyBytes = 32u << 20;
constexpr int kDefaultBlockStatus = 403;
constexpr int kFailClosedStatus = 503;

std::string dump(const Json& json) {
  // Replacing invalid UTF-8 rather than throwing: an odd byte in a tag must not fail the call.
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string hook_payload(const HookRequest& request) {
  const Json head = {
      {"request_id", request.request_id}, {"user", request.user},
      {"device", request.device},         {"tags", request.tags},
      {"groups", request.groups},         {"provider", request.provider},
      {"model", request.model},           {"api", request.api},
  };
  std::string text = dump(head);
  text.pop_back();  // the closing brace; "body" goes last
  text += ",\"body\":";
  // Spliced rather than parsed and re-serialised: bodies run to megabytes. One that is not JSON
  // (the gateway normally refuses those first) is sent as a string.
  text += Json::accept(request.body) ? request.body : dump(Json(request.body));
  text += '}';
  return text;
}

// Shared by the deadline and the send it races; both run on one strand.
struct HookCall {
  explicit HookCall(const asio::any_io_executor& executor) : timer(executor) {}
  asio::steady_timer timer;
  bool done = false;
  bool abandoned = false;
  bool too_large = false;
  unsigned status = 0;
  std::string reply;
  http::UpstreamResult result;
};

// nullopt: the deadline passed first.
asio::awaitable<std::optional<std::shared_ptr<HookCall>>> send_with_deadline(
    http::UpstreamPool& pool, http::Url url, std::string payload, std::string request_id,
    uint32_t timeout_ms) {
  const auto executor = co_await asio::this_coro::executor;
  auto call = std::make_shared<HookCall>(executor);
  if (timeout_ms == 0) {
    call->timer.expires_at(asio::steady_timer::time_point::max());
  } else {
    call->timer.expires_after(std::chrono::milliseconds(timeout_ms));
  }

  http::Request request{bhttp::verb::post, "", 11};
  request.set(bhttp::field::content_type, "application/json");
  request.set(bhttp::field::user_agent, "airlock-hooks");
  if (!request_id.empty()) request.set("airlock-request-id", request_id);
  request.body() = std::move(payload);
  http::OnHeaders on_headers = [call](const http::ResponseHeader& header,
                                      bool) -> asio::awaitable<bool> {
    call->status = header.result_int();
    co_return !call->abandoned;
  };
  http::OnBody on_body = [call](std::string_view data, bool) -> asio::awaitable<bool> {
    if (call->abandoned) co_return false;
    if (call->reply.size() + data.size() > kMaxReplyBytes) {
      call->too_large = true;
      co_return false;
    }
    call->reply.append(data);
    co_return true;
  };
  // The send runs detached so the deadline can leave it behind; it owns what it uses (the pool's
  // state, its copies of the request and callbacks) and so may outlive this call.
  asio::awaitable<http::UpstreamResult> send =
      pool.send(url, std::move(request), std::move(on_headers), std::move(on_body));
  auto finished = [call](const std::exception_ptr&, http::UpstreamResult result) {
    call->result = std::move(result);
    call->done = true;
    call->timer.cancel();
  };
  asio::co_spawn(executor, std::move(send), std::move(finished));
  boost::system::error_code ec;
  co_await call->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (!call->done) {
    call->abandoned = true;
    co_return std::nullopt;
  }
  co_return call;
}

HookVerdict failed(const policy::PreRequestHookSpec& hook, const std::string& reason) {
  HookVerdict verdict;
  verdict.error = "pre-request hook " + hook.url + " failed: " + reason;
  if (hook.fail_open) {
    verdict.action = HookVerdict::Action::kAllow;
  } else {
    verdict.action = HookVerdict::Action::kBlock;
    verdict.status = kFailClosedStatus;
    verdict.message = verdict.error;
  }
  return verdict;
}

HookVerdict interpret(const policy::PreRequestHookSpec& hook, const HookCall& call) {
  if (call.too_large) {
    return failed(hook, "reply larger than " + std::to_string(kMaxReplyBytes) + " bytes");
  }
  if (call.result.error != Error::kNone) {
    return failed(hook, std::string(http::upstream_error_name(call.result.error)) + ": " +
                            call.result.message);
  }
  if (call.status / 100 != 2) return failed(hook, "answered HTTP " + std::to_string(call.status));
  // parse_json's depth limit matters here: a "modify" body is serialised again, once per level.
  const Json reply = parse_json(call.reply);
  if (!reply.is_object()) {
    // The depth scan runs only to name why a reply was refused, not on every reply.
    if (nests_too_deep(call.reply)) {
      return failed(hook, "reply nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    return failed(hook, "reply is not a JSON object");
  }
  const auto action = reply.find("action");
  if (action == reply.end() || !action->is_string()) {
    return failed(hook, "reply has no \"action\" string");
  }
  HookVerdict verdict;
  const std::string& name = action->get_ref<const std::string&>();
  if (name == "allow") return verdict;
  if (name == "block") {
    verdict.action = HookVerdict::Action::kBlock;
    verdict.status = kDefaultBlockStatus;
    const auto status = reply.find("status");
    if (status != reply.end() && status->is_number_integer()) {
      const int64_t value = status->get<int64_t>();
      // Only error statuses: a "block" answered with 200 would read as success to the client.
      if (value >= 400 && value <= 599) verdict.status = static_cast<int>(value);
    }
    const auto message = reply.find("message");
    verdict.message = message != reply.end() && message->is_string()
                          ? message->get<std::string>()
                          : "request blocked by a pre-request hook";
    return verdict;
  }
  if (name == "modify") {
    const auto body = reply.find("body");
    if (body == reply.end() || !body->is_object()) {
      return failed(hook, "\"modify\" reply without a JSON object \"body\"");
    }
    verdict.action = HookVerdict::Action::kModify;
    verdict.body = dump(*body);
    return verdict;
  }
  return failed(hook, "unknown action in reply");
}

}  // namespace

asio::awaitable<HookVerdict> call_pre_request_hook(http::UpstreamPool& pool,
                                                   const policy::PreRequestHookSpec& hook,
                                                   const HookRequest& request) {
  std::string url_error;
  std::optional<http::Url> url = http::Url::parse(hook.url, &url_error);
  if (!url) co_return failed(hook, "invalid URL: " + url_error);
  // A strand of its own: the deadline, the send's callbacks and its completion must not race
  // whatever executor the caller runs on (UpstreamPool::send needs one on a threaded io).
  auto strand = asio::make_strand(co_await asio::this_coro::executor);
  asio::awaitable<std::optional<std::shared_ptr<HookCall>>> race = send_with_deadline(
      pool, std::move(*url), hook_payload(request), request.request_id, hook.timeout_ms);
  const std::optional<std::shared_ptr<HookCall>> call =
      co_await asio::co_spawn(strand, std::move(race), asio::use_awaitable);
  if (!call) co_return failed(hook, "no answer within " + std::to_string(hook.timeout_ms) + " ms");
  co_return interpret(hook, **call);
}

}  // namespace airlock::control::events
