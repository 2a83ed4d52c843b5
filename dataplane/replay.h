// Receive-side replay protection for transport counters (wireguard.md §1.8): the RFC 6479
// sliding window with the Linux kernel's geometry, 128 x 64-bit words of which one is always
// being recycled, so 8128 counters below the highest accepted one are tolerated.
//
// Written here rather than taken from a library because no library we use ships it; it is
// inline and allocation-free because it runs per packet on the fast path. Not thread-safe:
// one window per keypair, owned by the worker that decrypts for it.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include "dataplane/messages.h"

namespace airlock::dp {

class ReplayWindow {
 public:
  static constexpr uint64_t kWordBits = 64;
  static constexpr uint64_t kWords = 128;
  static constexpr uint64_t kWindowSize = (kWords - 1) * kWordBits;  // 8128

  void reset() {
    top_ = 0;
    bitmap_.fill(0);
  }

  // Call only after the packet authenticated. Returns true (and records `counter`) when it is
  // fresh; false for replays, counters older than the window and counters at or beyond
  // kRejectAfterMessages.
  bool check_and_set(uint64_t counter) {
    if (counter >= kRejectAfterMessages) return false;
    // Working with counter + 1 lets top_ == 0 mean "nothing received yet".
    const uint64_t shifted = counter + 1;
    if (shifted + kWindowSize < top_) return false;
    if (shifted > top_) slide_to(shifted);
    uint64_t& word = bitmap_[(shifted / kWordBits) % kWords];
    const uint64_t bit = 1ULL << (shifted % kWordBits);
    if (word & bit) return false;
    word |= bit;
    return true;
  }

 private:
  // Clears the words between the old top word (exclusive) and the new one (inclusive); at most
  // the whole ring when the jump exceeds it.
  void slide_to(uint64_t new_top) {
    const uint64_t old_word = top_ / kWordBits;
    const uint64_t steps = std::min(new_top / kWordBits - old_word, kWords);
    for (uint64_t i = 1; i <= steps; ++i) bitmap_[(old_word + i) % kWords] = 0;
    top_ = new_top;
  }

  uint64_t top_ = 0;  // highest accepted counter + 1, 0 before the first packet
  std::array<uint64_t, kWords> bitmap_{};
};

}  // namespace airlock::dp
