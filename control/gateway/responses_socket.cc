#include "control/gateway/responses_socket.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include <simdjson.h>
#include <nlohmann/json.hpp>

#include "control/metering/json_parse.h"

namespace airlock::control::gateway {

using nlohmann::json;

// Every event of a turn passes here on its way to the client; only its envelope is needed, so
// simdjson's DOM is read directly instead of building the nlohmann tree the usage meter builds.
SocketEvent read_socket_event(std::string_view message) {
  thread_local simdjson::dom::parser parser;
  // simdjson reads up to SIMDJSON_PADDING bytes past the text; a string's buffer does not
  // promise them.
  thread_local std::vector<char> padded;
  padded.resize(message.size() + simdjson::SIMDJSON_PADDING);
  std::memcpy(padded.data(), message.data(), message.size());
  SocketEvent out;
  simdjson::dom::object object;
  if (parser.parse(padded.data(), message.size(), false).get(object) != simdjson::SUCCESS) {
    return out;
  }
  out.valid = true;
  std::string_view type;
  if (object["type"].get(type) == simdjson::SUCCESS) out.type = type;
  if (out.type != "error") return out;
  int64_t status = 0;
  if (object["status"].get(status) == simdjson::SUCCESS) out.status = static_cast<int>(status);
  // OpenAI's socket nests the error; its SSE stream has the fields at the top.
  simdjson::dom::object error = object;
  simdjson::dom::object nested;
  if (object["error"].get(nested) == simdjson::SUCCESS) error = nested;
  std::string_view text;
  if (error["message"].get(text) == simdjson::SUCCESS) out.error_message = text;
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
