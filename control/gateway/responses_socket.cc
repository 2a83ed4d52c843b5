#include "control/gateway/responses_socket.h"

#include <cstdint>
#include <optional>

#include <nlohmann/json.hpp>

#include "control/metering/json_parse.h"
#include "control/metering/json_view.h"

namespace airlock::control::gateway {

using nlohmann::json;

// Every event of a turn passes here on its way to the client; only its envelope is read.
SocketEvent read_socket_event(std::string_view message) {
  const JsonDocument document(message);
  const JsonView root = document.root();
  SocketEvent out;
  if (!root.is_object()) return out;
  out.valid = true;
  out.type = root.member("type").text();
  if (out.type != "error") return out;
  if (const std::optional<int64_t> status = root.member("status").integer()) {
    out.status = static_cast<int>(*status);
  }
  // OpenAI's socket nests the error; its SSE stream has the fields at the top.
  const JsonView nested = root.member("error");
  out.error_message = (nested.is_object() ? nested : root).member("message").text();
  return out;
}

bool starts_turn(const SocketEvent& client_event) {
  return client_event.type == "response.create";
}

bool ends_turn(const SocketEvent& server_event) {
  const std::string& type = server_event.type;
  return type == "response.completed" || type == "response.incomplete" ||
         type == "response.failed" || type == "error";
}

std::string socket_error_event(int status, std::string_view error_body) {
  json body = parse_json(error_body);
  json error;
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    error = std::move(body["error"]);
  } else {
    error = {{"type", "api_error"}, {"message", std::string(error_body)}};
  }
  return json{{"type", "error"}, {"status", status}, {"error", std::move(error)}}.dump();
}

}  // namespace airlock::control::gateway
