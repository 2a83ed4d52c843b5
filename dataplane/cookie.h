// mac1 / mac2 and cookie replies (whitepaper §5.3, §5.4.4, §5.4.7; wireguard.md §1.5, §1.6).
// Both classes take handshake messages as raw bytes: an initiation (148) or a response (92),
// whose last 32 bytes are mac1 || mac2. Not thread-safe: each instance belongs to the thread
// that handles handshakes (CookieChecker) or to one peer's handshake state (CookieMaker).
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "dataplane/crypto_prims.h"
#include "dataplane/messages.h"

namespace airlock::dp {

inline constexpr uint64_t kCookieSecretMaxAgeNs = 120'000'000'000ULL;
inline constexpr uint64_t kCookieValidityNs = 120'000'000'000ULL;

// Our side as the receiver of handshake messages.
class CookieChecker {
 public:
  explicit CookieChecker(const crypto::Key& our_public,
                         uint64_t secret_max_age_ns = kCookieSecretMaxAgeNs);
  CookieChecker(const CookieChecker&) = delete;
  CookieChecker& operator=(const CookieChecker&) = delete;
  ~CookieChecker();

  // mac1 over the bytes before it, keyed with HASH("mac1----" || our public key). False also for
  // a message that is neither 148 nor 92 bytes long.
  [[nodiscard]] bool mac1_valid(std::span<const uint8_t> msg) const;

  // mac2 over the bytes before it, keyed with the cookie we would give `source` now. `source`
  // is the caller's fixed encoding of the sender's address and port. Rotates the secret when
  // it is older than the maximum age.
  [[nodiscard]] bool mac2_valid(std::span<const uint8_t> msg, std::span<const uint8_t> source,
                                uint64_t now_ns);

  // A cookie reply to `msg` (whose mac1 must be valid) for `source`; `receiver_index` is msg's
  // sender index and `nonce` 24 random bytes. False if msg has neither handshake length.
  bool create_reply(MessageCookieReply& out, std::span<const uint8_t> msg, uint32_t receiver_index,
                    std::span<const uint8_t> source, std::span<const uint8_t, kXNonceLen> nonce,
                    uint64_t now_ns);

  // Tests only: pin the secret R and its birth time.
  void set_secret_for_test(const crypto::Key& secret, uint64_t born_ns);

 private:
  void refresh_secret(uint64_t now_ns);
  void cookie_for(std::span<uint8_t, kCookieLen> out, std::span<const uint8_t> source,
                  uint64_t now_ns);

  crypto::Key mac1_key_{};
  crypto::Key cookie_key_{};
  crypto::Key secret_{};
  uint64_t secret_born_ns_ = 0;
  uint64_t secret_max_age_ns_;
  bool has_secret_ = false;
};

// Our side as the sender of handshake messages to one peer.
class CookieMaker {
 public:
  explicit CookieMaker(const crypto::Key& peer_public,
                       uint64_t cookie_validity_ns = kCookieValidityNs);
  CookieMaker(const CookieMaker&) = delete;
  CookieMaker& operator=(const CookieMaker&) = delete;
  ~CookieMaker();

  // Writes mac1 and, while a cookie younger than the validity period is held, mac2 (else zero)
  // into a message we are about to send. False if msg has neither handshake length.
  bool add_macs(std::span<uint8_t> msg, uint64_t now_ns);

  // Accepts a cookie reply to the last message we sent macs for (at most once per such
  // message); false if it does not decrypt with that message's mac1 as associated data.
  [[nodiscard]] bool consume_reply(const MessageCookieReply& reply, uint64_t now_ns);

 private:
  crypto::Key mac1_key_{};
  crypto::Key cookie_key_{};
  std::array<uint8_t, kMacLen> last_mac1_{};
  std::array<uint8_t, kCookieLen> cookie_{};
  uint64_t cookie_born_ns_ = 0;
  uint64_t cookie_validity_ns_;
  bool has_cookie_ = false;
  bool awaiting_reply_ = false;  // a mac1 was sent since the last accepted cookie
};

}  // namespace airlock::dp
