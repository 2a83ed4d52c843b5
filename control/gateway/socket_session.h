// The Responses API's WebSocket mode through the gateway (Codex opens one before it tries HTTP).
// The client's socket is relayed to one socket to the provider, opened at the first admitted
// turn. Each response.create is checked, metered and recorded as a POST /v1/responses would be,
// by an Exchange of its own; other client messages pass through; the provider's events are
// relayed as they come and given to their lane's turn (responses_socket.h).
#pragma once

#include <optional>
#include <string>
#include <utility>  // boost/asio/awaitable.hpp (1.74) uses std::exchange without it

#include <boost/asio/awaitable.hpp>

#include "control/gateway/gateway.h"
#include "control/http/server.h"
#include "policy/document.h"

namespace airlock::control::gateway {

// Why a Responses WebSocket cannot carry this peer's turns (nullopt: it can). The relay checks
// and meters each response.create as an HTTP request would be, and records the tool calls a
// guardrail flags; what it cannot do is hold a provider's events back for a guardrail that cuts,
// so a peer under one is sent to HTTP.
std::optional<std::string> socket_refusal(const policy::Document& document,
                                          const policy::Identity& identity);

// Accepts the upgrade on the lent connection and relays until either side ends.
boost::asio::awaitable<void> run_socket_session(Gateway::Core& core, http::Request& upgrade,
                                                const http::ClientInfo& client,
                                                http::TakenConnection connection);

}  // namespace airlock::control::gateway
