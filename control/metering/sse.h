// Incremental Server-Sent Events parser (WHATWG "event stream interpretation") for relaying and
// metering provider streams. It holds only the current incomplete line and the event being
// assembled, so memory stays bounded by the longest event rather than the stream.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace airlock::control {

struct SseEvent {
  std::string event;  // the `event:` field; empty when the stream did not name the event
  std::string data;   // `data:` lines joined with '\n' (no trailing newline); "[DONE]" kept as is
  std::string id;     // the `id:` field, if any

  friend bool operator==(const SseEvent&, const SseEvent&) = default;
};

// The position of the first CR or LF in `text`, or npos. string_view::find_first_of tests the
// set one character at a time, which made the line scan the relay's largest own cost.
std::size_t find_line_end(std::string_view text);

class SseParser {
 public:
  using Callback = std::function<void(const SseEvent&)>;

  // Providers send single events of several MB (Responses `response.completed`); 16 MiB leaves
  // headroom while still stopping a stream that never ends a line from growing forever.
  static constexpr std::size_t kDefaultMaxEventBytes = 16u << 20;

  explicit SseParser(std::size_t max_event_bytes = kDefaultMaxEventBytes)
      : max_event_bytes_(max_event_bytes) {}

  // Parses `chunk` (any split of the stream), calling `on_event` for every complete event.
  // Returns false once the stream is broken (a line or event over the limit); after that every
  // call returns false without parsing, and error() says why.
  bool feed(std::string_view chunk, const Callback& on_event);

  const std::optional<std::string>& error() const { return error_; }

  // Bytes held for the incomplete line and event: what a disconnect at this point would lose.
  std::size_t buffered_bytes() const { return line_.size() + pending_.data.size(); }

 private:
  bool process_line(std::string_view line, const Callback& on_event);
  void dispatch(const Callback& on_event);
  bool fail(std::string message);

  std::size_t max_event_bytes_;
  std::string line_;       // bytes of a line whose terminator has not arrived yet
  bool skip_lf_ = false;   // last chunk ended with CR: a leading LF in the next one belongs to it
  bool has_data_ = false;  // a `data:` field was seen, so a blank line dispatches (even if empty)
  SseEvent pending_;
  std::optional<std::string> error_;
};

}  // namespace airlock::control
