// The synchronous pre-request hook: before a request is forwarded, an external service sees it
// (who, which model, the body) and answers allow, block or modify. A hook that does not answer
// usably in time is decided by its on_failure policy: allow (fail open) or deny with 503.
#pragma once

#include <string>
#include <utility>  // boost/asio/awaitable.hpp (1.74) uses std::exchange without it
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "control/http/upstream.h"
#include "policy/document.h"

namespace airlock::control::events {

namespace asio = boost::asio;

// What the hook receives, as {"request_id", "user", "device", "tags", "groups", "provider",
// "model", "api", "body"}; body is the client's request JSON, embedded as JSON.
struct HookRequest {
  std::string request_id;
  std::string user;
  std::string device;
  std::vector<std::string> tags;
  std::vector<std::string> groups;
  std::string provider;
  std::string model;
  std::string api;
  std::string body;
};

struct HookVerdict {
  enum class Action { kAllow, kBlock, kModify };
  Action action = Action::kAllow;
  int status = 0;       // kBlock: the HTTP status for the client (4xx/5xx; 403 by default)
  std::string message;  // kBlock: for the client
  std::string body;     // kModify: the request JSON to forward instead
  // Set when the hook failed (timeout, connection error, non-2xx or malformed reply) and the
  // verdict comes from on_failure; names the hook URL and the reason, for logs.
  std::string error;
};

// POSTs the request to the hook and reads {"action": "allow"} | {"action": "block", "status":
// 403, "message": "..."} | {"action": "modify", "body": {...}}. The whole call is bounded by
// hook.timeout_ms (0: only the pool's own timeouts). A call that times out is abandoned, not
// cut: it lingers until `pool`'s timeouts end it, so hooks should get a pool whose timeouts are
// close to theirs. The arguments must outlive the call.
asio::awaitable<HookVerdict> call_pre_request_hook(http::UpstreamPool& pool,
                                                   const policy::PreRequestHookSpec& hook,
                                                   const HookRequest& request);

}  // namespace airlock::control::events
