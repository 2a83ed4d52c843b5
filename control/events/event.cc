#include "control/events/event.h"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <utility>

namespace airlock::control::events {

bool is_event_type(std::string_view type) {
  return std::find(kEventTypes.begin(), kEventTypes.end(), type) != kEventTypes.end();
}

Event make_event(std::string_view type, std::string data_json) {
  std::array<unsigned char, 16> bytes{};
  // RAND_bytes fails only when the system's entropy source does; an id that could repeat would
  // make receivers drop real events as duplicates, so that is fatal.
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) std::abort();
  static constexpr char kHex[] = "0123456789abcdef";
  Event event;
  event.id = "evt_";
  for (const unsigned char b : bytes) {
    event.id += kHex[b >> 4];
    event.id += kHex[b & 0xf];
  }
  event.type = type;
  event.time_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  event.data_json = std::move(data_json);
  return event;
}

std::string envelope_json(const Event& event) {
  const nlohmann::json head = {{"id", event.id}, {"type", event.type}, {"time", event.time_ms}};
  // Replacing invalid UTF-8 rather than throwing: an odd byte in a field must not lose the event.
  std::string text = head.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.pop_back();  // the closing brace; "data" goes last
  text += ",\"data\":";
  if (event.data_json.empty()) {
    text += "{}";
  } else if (nlohmann::json::accept(event.data_json)) {
    // Spliced rather than parsed and re-serialised: a request.completed payload can be large.
    text += event.data_json;
  } else {
    text += nlohmann::json(event.data_json)
                .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  text += '}';
  return text;
}

}  // namespace airlock::control::events
