// The Responses WebSocket's envelope: which messages start and end turns, and the error event a
// refused turn gets.
#include "control/gateway/responses_socket.h"

#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

namespace airlock::control::gateway {
namespace {

using nlohmann::json;

TEST(ResponsesSocket, ReadsTheType) {
  const SocketEvent create =
      read_socket_event(R"({"type":"response.create","model":"gpt-5.5","stream_id":"a"})");
  EXPECT_TRUE(create.valid);
  EXPECT_TRUE(starts_turn(create));

  const SocketEvent steer = read_socket_event(R"({"type":"response.steer","input":[]})");
  EXPECT_TRUE(steer.valid);
  EXPECT_FALSE(starts_turn(steer));

  EXPECT_FALSE(read_socket_event("not json").valid);
  EXPECT_FALSE(read_socket_event("[1,2]").valid);
  // A type that is not a string is no type.
  EXPECT_EQ(read_socket_event(R"({"type":7})").type, "");
}

TEST(ResponsesSocket, TerminalEventsEndTheTurn) {
  for (const char* type :
       {"response.completed", "response.incomplete", "response.failed", "error"}) {
    EXPECT_TRUE(ends_turn(read_socket_event(json{{"type", type}}.dump()))) << type;
  }
  for (const char* type : {"response.created", "response.in_progress", "response.output_text.delta",
                           "response.output_item.done"}) {
    EXPECT_FALSE(ends_turn(read_socket_event(json{{"type", type}}.dump()))) << type;
  }
}

TEST(ResponsesSocket, ErrorEventsNestedOrFlat) {
  const SocketEvent nested = read_socket_event(
      R"({"type":"error","status":400,"error":{"type":"invalid_request_error","code":"previous_response_not_found","message":"Previous response not found."}})");
  EXPECT_EQ(nested.status, 400);
  EXPECT_EQ(nested.error_message, "Previous response not found.");
  const SocketEvent flat =
      read_socket_event(R"({"type":"error","code":"server_error","message":"overloaded"})");
  EXPECT_EQ(flat.status, 0);
  EXPECT_EQ(flat.error_message, "overloaded");
}

TEST(ResponsesSocket, RefusalBecomesAnErrorEvent) {
  const json event = json::parse(socket_error_event(
      403,
      R"({"error":{"message":"not granted","type":"invalid_request_error","code":"model_not_granted"}})"));
  EXPECT_EQ(event["type"], "error");
  EXPECT_EQ(event["status"], 403);
  EXPECT_EQ(event["error"]["code"], "model_not_granted");
  EXPECT_EQ(event["error"]["message"], "not granted");
  // A body that is no OpenAI error (a proxy's HTML page) is kept as the message.
  const json other = json::parse(socket_error_event(502, "<html>bad gateway</html>"));
  EXPECT_EQ(other["status"], 502);
  EXPECT_EQ(other["error"]["message"], "<html>bad gateway</html>");
}

}  // namespace
}  // namespace airlock::control::gateway
