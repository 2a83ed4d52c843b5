// The requests the simulator received, kept for tests (GET /_sim/requests): the point is to
// see exactly what a gateway sent upstream, credential headers included, so the simulator must
// only ever listen where tests and the demo reach it (loopback by default).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace airlock::control::sim {

struct RecordedRequest {
  uint64_t serial = 0;
  // A WebSocket message is recorded as method "WS" with the target and headers of the upgrade
  // that opened its socket (recorded itself as a GET), so the credentials checks that read
  // every entry's headers hold for sockets too, and its body is the message.
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
  std::string body;
};

class Recorder {
 public:
  explicit Recorder(std::size_t limit) : limit_(limit) {}

  bool enabled() const { return limit_ > 0; }
  // Keeps the newest `limit` requests.
  void add(RecordedRequest request);
  void clear();
  // A JSON array, oldest first, of {"id","method","target","headers","body"} where headers maps
  // each lower-cased name to its value (repeated fields joined with ", ") and a body that is
  // not UTF-8 also comes as "body_base64".
  std::string to_json() const;

 private:
  const std::size_t limit_;
  mutable std::mutex mutex_;
  std::deque<RecordedRequest> requests_;
};

}  // namespace airlock::control::sim
