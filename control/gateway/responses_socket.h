// The Responses API's WebSocket mode as the gateway sees it, apart from any socket: which
// messages start a turn, which server events belong to which turn and end it, and the error
// event that answers a turn the gateway refuses.
//
// A client sends `{"type":"response.create", ...}` messages whose members are those of a POST
// /v1/responses body; the provider answers each with the events its SSE stream would carry, one
// JSON message per event. An optional `stream_id` names a lane: turns of one lane are answered in
// order, and their events echo the lane's id, so a turn's events are those of its lane until its
// terminal event.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace airlock::control::gateway {

struct SocketEvent {
  bool valid = false;     // a JSON object
  std::string type;       // its "type" string, if any
  std::string stream_id;  // its lane; empty for the default lane
  // An error event's HTTP status and message, when it has them.
  int status = 0;
  std::string error_message;
};

// Reads the envelope of a client message or a server event.
SocketEvent read_socket_event(std::string_view message);

bool starts_turn(const SocketEvent& client_event);
// The events after which a lane's turn gets nothing more: the three ends of a response, and an
// error event (a turn the provider refused before it began).
bool ends_turn(const SocketEvent& server_event);

// The error event of a refused turn, from an OpenAI error body `{"error":{...}}` (any other body
// becomes the error's message) and the HTTP status the refusal would have had.
std::string socket_error_event(int status, std::string_view error_body);

// Turns waiting for or receiving their events, per lane, oldest first.
template <class Turn>
class TurnLanes {
 public:
  void push(const std::string& lane, Turn turn) { lanes_[lane].push_back(std::move(turn)); }

  // The turn the lane's events go to now; null when the lane has none.
  Turn* current(const std::string& lane) {
    const auto it = lanes_.find(lane);
    return it == lanes_.end() || it->second.empty() ? nullptr : &it->second.front();
  }

  // Removes and returns the lane's current turn.
  std::optional<Turn> pop(const std::string& lane) {
    const auto it = lanes_.find(lane);
    if (it == lanes_.end() || it->second.empty()) return std::nullopt;
    Turn turn = std::move(it->second.front());
    it->second.pop_front();
    if (it->second.empty()) lanes_.erase(it);
    return turn;
  }

  bool empty() const { return lanes_.empty(); }
  void clear() { lanes_.clear(); }

  template <class Visit>
  void for_each(Visit&& visit) {
    for (auto& [lane, turns] : lanes_) {
      for (Turn& turn : turns) visit(turn);
    }
  }

 private:
  std::map<std::string, std::deque<Turn>> lanes_;
};

}  // namespace airlock::control::gateway
