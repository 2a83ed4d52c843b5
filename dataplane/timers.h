// The per-peer protocol timers of whitepaper §6, expressed over timestamps instead of armed
// timers: the control lcore re-evaluates every active peer each tick, so nothing on the fast
// path schedules or cancels anything — workers only store activity timestamps.
#pragma once

#include <cstdint>

#include "dataplane/messages.h"

namespace airlock::dp {

struct TimerInputs {
  uint64_t now_ns = 0;
  // The keypair used for sending, if any.
  bool has_current = false;
  bool current_we_initiated = false;
  uint64_t current_birth_ns = 0;
  uint64_t last_rx_data_ns = 0;
  uint64_t last_tx_data_ns = 0;
  uint64_t last_rx_auth_ns = 0;
  uint64_t last_tx_auth_ns = 0;
  bool want_handshake = false;  // a worker dropped data for lack of a keypair
  bool endpoint_known = false;
  uint16_t persistent_keepalive_s = 0;
  uint64_t keys_derived_ns = 0;  // 0 = no key material held
};

// Control-lcore-only memory of the timers between ticks.
struct TimerState {
  uint64_t handshake_started_ns = 0;  // 0 = no handshake in progress
  uint64_t last_initiation_sent_ns = 0;
  uint64_t unanswered_tx_since_ns = 0;  // we sent data and heard nothing authenticated since
  uint64_t unacked_rx_since_ns = 0;     // we received data and sent nothing since
  bool sent_lastminute_handshake = false;
  // After giving up, only data sent later than this may start a new handshake.
  uint64_t gave_up_tx_ns = 0;
};

enum TimerAction : uint32_t {
  kTimerNone = 0,
  kTimerSendKeepalive = 1u << 0,
  kTimerInitiateHandshake = 1u << 1,  // first attempt or retransmission
  kTimerGiveUpHandshake = 1u << 2,
  kTimerZeroKeys = 1u << 3,
};

// Returns the actions due now and advances `state`. The caller performs them and, after
// sending an initiation, calls note_initiation_sent().
uint32_t evaluate_timers(const TimerInputs& in, TimerState& state, const ProtocolTimers& t);

void note_initiation_sent(TimerState& state, uint64_t now_ns);
// Handshake completed (we consumed a response, or our response was confirmed).
void note_handshake_complete(TimerState& state);

}  // namespace airlock::dp
