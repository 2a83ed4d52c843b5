#include "control/gateway/relay.h"

#include <utility>

namespace airlock::control::gateway {

Relay::Relay(RelayOptions options)
    : options_(options), meter_(options.api), parser_(SseParser::kDefaultMaxEventBytes) {
  options_.strip_injected_usage = options.sse && options.strip_injected_usage;
  options_.hold_events = options.sse && (options.hold_events || options_.strip_injected_usage);
}

void Relay::feed(std::string_view upstream, std::string& to_client) {
  if (cut_) return;
  if (!options_.sse) {
    feed_body(upstream, to_client);
    return;
  }
  if (options_.hold_events) {
    feed_stripping(upstream, to_client);
    return;
  }
  feed_parser(upstream);
  if (!cut_) to_client.append(upstream);
}

void Relay::finish(std::string& to_client) {
  if (options_.sse) {
    // An event without its blank line is never dispatched by an SSE client either, so it is
    // not the usage chunk: the client gets its bytes as they came.
    if (!cut_) release_held(to_client);
    return;
  }
  if (!options_.hold_body) return;
  meter_body();
  if (body_copy_overflow_) return;
  // A held body can be MiBs: handed over, not copied, when nothing precedes it.
  if (to_client.empty()) {
    to_client.swap(body_copy_);
  } else {
    to_client.append(body_copy_);
  }
  body_copy_.clear();
}

void Relay::meter_body() {
  if (options_.sse || body_metered_) return;
  body_metered_ = true;
  if (!body_copy_overflow_) meter_.feed_body(body_copy_);
}

void Relay::feed_body(std::string_view upstream, std::string& to_client) {
  if (!body_copy_overflow_ && body_copy_.size() + upstream.size() > options_.max_body_copy) {
    body_copy_overflow_ = true;
    metering_error_ = "response body over the metering cap of " +
                      std::to_string(options_.max_body_copy) + " bytes";
    if (options_.hold_body) {
      *metering_error_ += ", so it was not held back for the guardrails to check";
      to_client.append(body_copy_);
    }
    body_copy_.clear();
    body_copy_.shrink_to_fit();
  }
  if (body_copy_overflow_ || !options_.hold_body) to_client.append(upstream);
  if (!body_copy_overflow_) body_copy_.append(upstream);
}

void Relay::feed_parser(std::string_view piece) {
  if (metering_error_) return;
  const bool ok = parser_.feed(piece, [this](const SseEvent& event) {
    if (cut_) return;
    meter_.feed_event(event);
    if (check_ && !check_(meter_)) cut_ = true;
    if (options_.strip_injected_usage) dispatched_usage_chunk_ = meter_.last_event_only_usage();
  });
  if (!ok) metering_error_ = parser_.error().value_or("SSE stream broken");
}

void Relay::route(Sink sink, std::string_view bytes, std::string& to_client) {
  switch (sink) {
    case Sink::kClient:
      to_client.append(bytes);
      break;
    case Sink::kHeld:
      held_.append(bytes);
      break;
    case Sink::kHeldComment:
      held_.append(bytes);
      held_comments_.append(bytes);
      break;
    case Sink::kDropped:
      break;
  }
}

void Relay::release_held(std::string& to_client) {
  to_client.append(held_);
  held_.clear();
  held_comments_.clear();
  holding_ = false;
}

void Relay::feed_stripping(std::string_view upstream, std::string& to_client) {
  while (!upstream.empty()) {
    if (cut_) {
      held_.clear();
      held_comments_.clear();
      holding_ = false;
      return;
    }
    // Once the parser gave up, nothing can be recognised any more: pass everything.
    if (metering_error_) {
      release_held(to_client);
      to_client.append(upstream);
      return;
    }
    if (cr_sink_) {
      const Sink sink = *cr_sink_;
      cr_sink_.reset();
      if (upstream.front() == '\n') {
        feed_parser(upstream.substr(0, 1));
        route(sink, upstream.substr(0, 1), to_client);
        upstream.remove_prefix(1);
        continue;
      }
    }
    const std::size_t end = find_line_end(upstream);
    const bool ends_line = end != std::string_view::npos;
    const std::string_view piece = upstream.substr(0, ends_line ? end + 1 : upstream.size());
    upstream.remove_prefix(piece.size());

    if (line_ == Line::kStart && (piece.front() == '\r' || piece.front() == '\n')) {
      // A blank line: it ends the held event, if any.
      dispatched_usage_chunk_.reset();
      feed_parser(piece);
      if (cut_) continue;
      Sink sink = Sink::kClient;
      if (holding_) {
        if (dispatched_usage_chunk_.value_or(false)) {
          to_client.append(held_comments_);
          held_.clear();
          held_comments_.clear();
          holding_ = false;
          sink = Sink::kDropped;
        } else {
          release_held(to_client);
        }
      }
      route(sink, piece, to_client);
      if (piece.back() == '\r') cr_sink_ = sink;
      continue;
    }

    if (line_ == Line::kStart) line_ = piece.front() == ':' ? Line::kComment : Line::kField;
    feed_parser(piece);
    if (line_ == Line::kField) holding_ = true;
    Sink sink = !holding_                 ? Sink::kClient
                : line_ == Line::kComment ? Sink::kHeldComment
                                          : Sink::kHeld;
    route(sink, piece, to_client);
    if (held_.size() > SseParser::kDefaultMaxEventBytes) {
      // The parser caps lines and data but not a stream of other fields without a blank line;
      // past the cap this is no usage chunk, so it goes through and stripping stops.
      metering_error_ = "SSE event over limit";
      release_held(to_client);
      sink = Sink::kClient;
    }
    if (ends_line) {
      line_ = Line::kStart;
      if (piece.back() == '\r') cr_sink_ = sink;
    }
  }
}

}  // namespace airlock::control::gateway
