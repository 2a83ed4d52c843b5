#include "control/metering/sse.h"

#include <cstring>
#include <utility>

namespace airlock::control {

std::size_t find_line_end(std::string_view text) {
  if (text.empty()) return std::string_view::npos;
  // Providers end lines with LF; a CR, where one comes, can only matter before the first LF.
  const auto* lf = static_cast<const char*>(std::memchr(text.data(), '\n', text.size()));
  const std::size_t before = lf ? static_cast<std::size_t>(lf - text.data()) : text.size();
  const auto* cr = static_cast<const char*>(std::memchr(text.data(), '\r', before));
  if (cr) return static_cast<std::size_t>(cr - text.data());
  return lf ? before : std::string_view::npos;
}

bool SseParser::feed(std::string_view chunk, const Callback& on_event) {
  if (error_) return false;
  if (skip_lf_ && !chunk.empty()) {
    if (chunk.front() == '\n') chunk.remove_prefix(1);
    skip_lf_ = false;
  }
  while (!chunk.empty()) {
    const std::size_t end = find_line_end(chunk);
    if (end == std::string_view::npos) {
      if (line_.size() + chunk.size() > max_event_bytes_) return fail("SSE line over limit");
      line_.append(chunk);
      return true;
    }
    const bool cr = chunk[end] == '\r';
    bool ok;
    if (line_.empty()) {
      // Common case: the whole line is inside this chunk, so parse it without copying.
      ok = process_line(chunk.substr(0, end), on_event);
    } else {
      if (line_.size() + end > max_event_bytes_) return fail("SSE line over limit");
      line_.append(chunk.substr(0, end));
      ok = process_line(line_, on_event);
      line_.clear();
    }
    if (!ok) return false;
    chunk.remove_prefix(end + 1);
    if (cr) {
      if (chunk.empty()) {
        skip_lf_ = true;
      } else if (chunk.front() == '\n') {
        chunk.remove_prefix(1);
      }
    }
  }
  return true;
}

bool SseParser::process_line(std::string_view line, const Callback& on_event) {
  if (line.empty()) {
    dispatch(on_event);
    return true;
  }
  if (line.front() == ':') return true;  // comment / keep-alive
  const std::size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (pending_.data.size() + value.size() + 1 > max_event_bytes_) {
      return fail("SSE event over limit");
    }
    if (has_data_) pending_.data.push_back('\n');
    pending_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    pending_.event.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) pending_.id.assign(value);
  }
  // `retry` and unknown fields do not affect what the gateway meters.
  return true;
}

void SseParser::dispatch(const Callback& on_event) {
  // Per WHATWG, a blank line with no data resets the event name and dispatches nothing, but the
  // last event id persists across events.
  if (has_data_) on_event(pending_);
  pending_.event.clear();
  pending_.data.clear();
  has_data_ = false;
}

bool SseParser::fail(std::string message) {
  error_ = std::move(message);
  line_.clear();
  line_.shrink_to_fit();
  pending_ = SseEvent{};
  return false;
}

}  // namespace airlock::control
