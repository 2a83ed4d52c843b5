#include "control/sim/recorder.h"

#include <algorithm>
#include <cctype>

#include "control/sim/responder.h"

namespace airlock::control::sim {

void Recorder::add(RecordedRequest request) {
  if (limit_ == 0) return;
  const std::lock_guard lock(mutex_);
  if (requests_.size() == limit_) requests_.pop_front();
  requests_.push_back(std::move(request));
}

void Recorder::clear() {
  const std::lock_guard lock(mutex_);
  requests_.clear();
}

std::string Recorder::to_json() const {
  Json out = Json::array();
  const std::lock_guard lock(mutex_);
  for (const RecordedRequest& r : requests_) {
    Json headers = Json::object();
    for (const auto& [name, value] : r.headers) {
      std::string key = name;
      std::transform(key.begin(), key.end(), key.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      Json& slot = headers[key];
      slot = slot.is_string() ? slot.get<std::string>() + ", " + value : value;
    }
    Json entry = {{"id", r.serial},
                  {"method", r.method},
                  {"target", r.target},
                  {"headers", std::move(headers)},
                  {"body", r.body}};
    if (!is_utf8(r.body)) entry["body_base64"] = base64(r.body);
    out.push_back(std::move(entry));
  }
  return out.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace airlock::control::sim
