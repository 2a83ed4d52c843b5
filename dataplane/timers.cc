#include "dataplane/timers.h"

namespace airlock::dp {
namespace {

// The kernel's receive-side rekey (timers "last minute"): an initiator that keeps receiving
// on an old keypair starts a handshake shortly before the keypair would be rejected.
uint64_t lastminute_age(const ProtocolTimers& t) {
  uint64_t margin = t.keepalive_timeout_ns + t.rekey_timeout_ns;
  return t.reject_after_ns > margin ? t.reject_after_ns - margin : t.reject_after_ns;
}

void track_unanswered(const TimerInputs& in, TimerState& s) {
  if (in.last_tx_data_ns > in.last_rx_auth_ns && in.last_tx_data_ns > s.gave_up_tx_ns) {
    if (s.unanswered_tx_since_ns == 0) s.unanswered_tx_since_ns = in.now_ns;
  } else {
    s.unanswered_tx_since_ns = 0;
  }
  if (in.last_rx_data_ns > in.last_tx_auth_ns) {
    if (s.unacked_rx_since_ns == 0) s.unacked_rx_since_ns = in.now_ns;
  } else {
    s.unacked_rx_since_ns = 0;
  }
}

bool handshake_due(const TimerInputs& in, const TimerState& s, const ProtocolTimers& t) {
  if (in.want_handshake) return true;
  if (in.has_current && in.current_we_initiated) {
    uint64_t age = in.now_ns - in.current_birth_ns;
    bool sending = in.last_tx_data_ns > in.current_birth_ns;
    if (sending && age >= t.rekey_after_ns) return true;
    bool receiving = in.last_rx_data_ns > in.current_birth_ns;
    if (receiving && !s.sent_lastminute_handshake && age >= lastminute_age(t)) return true;
  }
  return s.unanswered_tx_since_ns != 0 &&
         in.now_ns - s.unanswered_tx_since_ns >= t.keepalive_timeout_ns + t.rekey_timeout_ns;
}

}  // namespace

uint32_t evaluate_timers(const TimerInputs& in, TimerState& s, const ProtocolTimers& t) {
  uint32_t actions = kTimerNone;
  track_unanswered(in, s);

  if (in.keys_derived_ns != 0 && in.now_ns - in.keys_derived_ns >= 3 * t.reject_after_ns) {
    actions |= kTimerZeroKeys;
  }

  if (s.handshake_started_ns != 0) {
    if (in.now_ns - s.last_initiation_sent_ns >= t.rekey_timeout_ns) {
      if (in.now_ns - s.handshake_started_ns >= t.rekey_attempt_ns) {
        actions |= kTimerGiveUpHandshake;
        s.handshake_started_ns = 0;
        s.unanswered_tx_since_ns = 0;
        s.gave_up_tx_ns = in.last_tx_data_ns;
      } else if (in.endpoint_known) {
        actions |= kTimerInitiateHandshake;
      }
    }
  } else if (in.endpoint_known && handshake_due(in, s, t) &&
             in.now_ns - s.last_initiation_sent_ns >= t.rekey_timeout_ns) {
    actions |= kTimerInitiateHandshake;
    if (in.has_current && in.current_we_initiated) s.sent_lastminute_handshake = true;
  }

  bool keepalive_due =
      s.unacked_rx_since_ns != 0 && in.now_ns - s.unacked_rx_since_ns >= t.keepalive_timeout_ns;
  bool persistent_due =
      in.persistent_keepalive_s != 0 && in.has_current &&
      in.now_ns - in.last_tx_auth_ns >= in.persistent_keepalive_s * 1'000'000'000ULL;
  if (in.has_current && (keepalive_due || persistent_due)) {
    actions |= kTimerSendKeepalive;
    s.unacked_rx_since_ns = 0;
  }
  return actions;
}

void note_initiation_sent(TimerState& s, uint64_t now_ns) {
  if (s.handshake_started_ns == 0) s.handshake_started_ns = now_ns;
  s.last_initiation_sent_ns = now_ns;
}

void note_handshake_complete(TimerState& s) {
  s.handshake_started_ns = 0;
  s.sent_lastminute_handshake = false;
  s.unanswered_tx_since_ns = 0;
}

}  // namespace airlock::dp
