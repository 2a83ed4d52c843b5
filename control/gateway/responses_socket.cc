#include "control/gateway/responses_socket.h"

#include <nlohmann/json.hpp>

#include "control/metering/json_parse.h"

namespace airlock::control::gateway {

using nlohmann::json;

SocketEvent read_socket_event(std::string_view message) {
  SocketEvent out;
  const json parsed = parse_json(message);
  if (!parsed.is_object()) return out;
  out.valid = true;
  if (const auto it = parsed.find("type"); it != parsed.end() && it->is_string()) {
    out.type = it->get<std::string>();
  }
  if (out.type != "error") return out;
  if (const auto it = parsed.find("status"); it != parsed.end() && it->is_number_integer()) {
    out.status = it->get<int>();
  }
  // OpenAI's socket nests the error; its SSE stream has the fields at the top.
  const auto nested = parsed.find("error");
  const json& error = nested != parsed.end() && nested->is_object() ? *nested : parsed;
  if (const auto it = error.find("message"); it != error.end() && it->is_string()) {
    out.error_message = it->get<std::string>();
  }
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
