// The stream tap between a provider's response body and the client: bytes in, bytes out, piece
// by piece as they arrive, while a copy is parsed for usage, tool calls and errors.
//
// Every byte reaches the client unchanged, with one exception: when the gateway injected
// `stream_options.include_usage` into an OpenAI Chat request the client did not ask usage for,
// the extra usage chunk the provider then sends is metered and removed, byte for byte, so the
// client sees the stream it would have seen without the gateway. To know whether an event is
// that chunk, the relay holds back the bytes of one event at a time (from its first field line
// to its blank line); comments (keep-alives) outside an event are never held. With hold_body a
// non-streamed body is held until it ends instead of passing piece by piece.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/metering/sse.h"
#include "control/metering/usage.h"

namespace airlock::control::gateway {

struct RelayOptions {
  Api api = Api::kOpenAiChat;         // how to meter
  bool sse = false;                   // text/event-stream; otherwise one JSON body
  bool strip_injected_usage = false;  // OpenAI Chat stream whose usage the gateway asked for
  // Hold each event until it is complete, so the event check below can stop a stream before any
  // byte of the event that fails it reaches the client.
  bool hold_events = false;
  // A non-streamed body is metered on a copy of at most this many bytes (the relay itself never
  // holds it, unless hold_body); a larger body is relayed but not metered.
  std::size_t max_body_copy = SseParser::kDefaultMaxEventBytes;
  // Hold a non-streamed body whole and hand it over at finish(), so a check of its tool calls can
  // keep every byte of it from the client. Past max_body_copy it cannot be checked: what is held
  // is released and the rest passes as it comes.
  bool hold_body = false;
};

class Relay {
 public:
  explicit Relay(RelayOptions options);

  // One piece of the upstream body; appends what the client gets now to `to_client`.
  void feed(std::string_view upstream, std::string& to_client);
  // The upstream body ended (or was cut): appends anything still held. A held body is metered
  // here, before the client gets it.
  void finish(std::string& to_client);
  // Meters a non-streamed body that went to the client as it came. Called once the client has
  // its answer, which the usage parse would otherwise hold up; a held body is already metered.
  void meter_body();

  // Runs after each SSE event is metered; returning false cuts the stream: that event and
  // everything after it are dropped (with hold_events, none of its bytes have been sent).
  using EventCheck = std::function<bool(const UsageMeter&)>;
  void set_event_check(EventCheck check) { check_ = std::move(check); }
  bool cut() const { return cut_; }

  Usage usage() const { return meter_.usage(); }
  std::vector<ToolCall> tool_calls() const { return meter_.tool_calls(); }
  template <class Visit>
  void visit_tool_calls(Visit&& visit) const {
    meter_.visit_tool_calls(std::forward<Visit>(visit));
  }
  // The provider's error: mid-stream error event, failed response, or an error body.
  const std::optional<std::string>& error() const { return meter_.error(); }
  // Why usage could not be read (an SSE line over the parser's cap, a body over the copy cap).
  const std::optional<std::string>& metering_error() const { return metering_error_; }

 private:
  enum class Line { kStart, kComment, kField };
  enum class Sink { kClient, kHeld, kHeldComment, kDropped };

  void feed_body(std::string_view upstream, std::string& to_client);
  void feed_stripping(std::string_view upstream, std::string& to_client);
  void feed_parser(std::string_view piece);
  void release_held(std::string& to_client);
  void route(Sink sink, std::string_view bytes, std::string& to_client);

  RelayOptions options_;
  UsageMeter meter_;
  SseParser parser_;
  std::optional<std::string> metering_error_;
  EventCheck check_;
  bool cut_ = false;
  std::string body_copy_;
  bool body_copy_overflow_ = false;
  bool body_metered_ = false;

  // Stripping state: the event being held, where its comment lines are (released even when the
  // event is dropped), the kind of line in progress, and where the CR that ended the previous
  // piece went, because an LF right after it belongs to the same line end.
  std::string held_;
  std::string held_comments_;
  bool holding_ = false;
  Line line_ = Line::kStart;
  std::optional<Sink> cr_sink_;
  // Whether the event the last blank line dispatched is the injected usage chunk; unset when
  // that line dispatched none.
  std::optional<bool> dispatched_usage_chunk_;
};

}  // namespace airlock::control::gateway
