// The Responses API's WebSocket mode as the gateway sees it, apart from any socket: which
// messages start a turn, which events end it, and the error event that answers a turn the
// gateway refuses.
//
// A client sends `{"type":"response.create", ...}` messages whose members are those of a POST
// /v1/responses body; the provider answers each with the events its SSE stream would carry, one
// JSON message per event, up to a terminal event. (An optional `stream_id` names a lane the
// provider answers in order; the gateway keeps one turn in flight per socket, so it needs no
// lanes of its own.)
#pragma once

#include <string>
#include <string_view>

namespace airlock::control::gateway {

struct SocketEvent {
  bool valid = false;  // a JSON object
  std::string type;    // its "type" string, if any
  // An error event's HTTP status and message, when it has them.
  int status = 0;
  std::string error_message;
};

// Reads the envelope of a client message or a server event.
SocketEvent read_socket_event(std::string_view message);

bool starts_turn(const SocketEvent& client_event);
// The events after which a turn gets nothing more: the three ends of a response, and an error
// event (a turn the provider refused before it began, or one that failed mid-stream).
bool ends_turn(const SocketEvent& server_event);

// The error event of a refused turn, from an OpenAI error body `{"error":{...}}` (any other body
// becomes the error's message) and the HTTP status the refusal would have had.
std::string socket_error_event(int status, std::string_view error_body);

}  // namespace airlock::control::gateway
