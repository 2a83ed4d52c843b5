#include "dataplane/cookie.h"

#include <algorithm>
#include <optional>
#include <string_view>

namespace airlock::dp {
namespace {

using crypto::Key;

constexpr std::string_view kLabelMac1 = "mac1----";
constexpr std::string_view kLabelCookie = "cookie--";

Key labelled_key(std::string_view label, const Key& public_key) {
  Key out;
  crypto::hash(out, {{reinterpret_cast<const uint8_t*>(label.data()), label.size()}, public_key});
  return out;
}

// Both handshake messages end in mac1 || mac2; nothing else carries macs.
std::optional<size_t> mac1_offset(size_t msg_len) {
  if (msg_len != sizeof(MessageInitiation) && msg_len != sizeof(MessageResponse)) {
    return std::nullopt;
  }
  return msg_len - sizeof(MessageMacs);
}

constexpr size_t mac2_offset(size_t mac1_off) {
  return mac1_off + kMacLen;
}

bool before_deadline(uint64_t born_ns, uint64_t lifetime_ns, uint64_t now_ns) {
  return now_ns >= born_ns && now_ns - born_ns < lifetime_ns;
}

}  // namespace

CookieChecker::CookieChecker(const Key& our_public, uint64_t secret_max_age_ns)
    : mac1_key_(labelled_key(kLabelMac1, our_public)),
      cookie_key_(labelled_key(kLabelCookie, our_public)),
      secret_max_age_ns_(secret_max_age_ns) {}

CookieChecker::~CookieChecker() {
  crypto::wipe(secret_);
}

bool CookieChecker::mac1_valid(std::span<const uint8_t> msg) const {
  const auto off = mac1_offset(msg.size());
  if (!off) return false;
  std::array<uint8_t, kMacLen> expected;
  crypto::mac(expected, mac1_key_, msg.first(*off));
  return crypto::equal_ct(expected, msg.subspan(*off, kMacLen));
}

bool CookieChecker::mac2_valid(std::span<const uint8_t> msg, std::span<const uint8_t> source,
                               uint64_t now_ns) {
  const auto off = mac1_offset(msg.size());
  if (!off) return false;
  std::array<uint8_t, kCookieLen> cookie;
  cookie_for(cookie, source, now_ns);
  std::array<uint8_t, kMacLen> expected;
  crypto::mac(expected, cookie, msg.first(mac2_offset(*off)));
  crypto::wipe(cookie);
  return crypto::equal_ct(expected, msg.subspan(mac2_offset(*off), kMacLen));
}

bool CookieChecker::create_reply(MessageCookieReply& out, std::span<const uint8_t> msg,
                                 uint32_t receiver_index, std::span<const uint8_t> source,
                                 std::span<const uint8_t, kXNonceLen> nonce, uint64_t now_ns) {
  const auto off = mac1_offset(msg.size());
  if (!off) return false;
  std::array<uint8_t, kCookieLen> cookie;
  cookie_for(cookie, source, now_ns);
  out.header = MessageHeader{static_cast<uint8_t>(MessageType::kCookieReply), {0, 0, 0}};
  out.receiver_index = receiver_index;
  std::copy(nonce.begin(), nonce.end(), out.nonce);
  crypto::xaead_encrypt(out.encrypted_cookie, cookie_key_, nonce, cookie,
                        msg.subspan(*off, kMacLen));
  crypto::wipe(cookie);
  return true;
}

void CookieChecker::set_secret_for_test(const Key& secret, uint64_t born_ns) {
  secret_ = secret;
  secret_born_ns_ = born_ns;
  has_secret_ = true;
}

void CookieChecker::refresh_secret(uint64_t now_ns) {
  if (has_secret_ && before_deadline(secret_born_ns_, secret_max_age_ns_, now_ns)) return;
  crypto::random_bytes(secret_);
  secret_born_ns_ = now_ns;
  has_secret_ = true;
}

void CookieChecker::cookie_for(std::span<uint8_t, kCookieLen> out, std::span<const uint8_t> source,
                               uint64_t now_ns) {
  refresh_secret(now_ns);
  crypto::mac(out, secret_, source);
}

CookieMaker::CookieMaker(const Key& peer_public, uint64_t cookie_validity_ns)
    : mac1_key_(labelled_key(kLabelMac1, peer_public)),
      cookie_key_(labelled_key(kLabelCookie, peer_public)),
      cookie_validity_ns_(cookie_validity_ns) {}

CookieMaker::~CookieMaker() {
  crypto::wipe(cookie_);
}

bool CookieMaker::add_macs(std::span<uint8_t> msg, uint64_t now_ns) {
  const auto off = mac1_offset(msg.size());
  if (!off) return false;
  crypto::mac(last_mac1_, mac1_key_, msg.first(*off));
  std::copy(last_mac1_.begin(), last_mac1_.end(), msg.begin() + *off);
  awaiting_reply_ = true;

  const auto mac2 = msg.subspan(mac2_offset(*off)).first<kMacLen>();
  if (has_cookie_ && before_deadline(cookie_born_ns_, cookie_validity_ns_, now_ns)) {
    crypto::mac(mac2, cookie_, msg.first(mac2_offset(*off)));
  } else {
    std::fill(mac2.begin(), mac2.end(), 0);
  }
  return true;
}

bool CookieMaker::consume_reply(const MessageCookieReply& reply, uint64_t now_ns) {
  if (!awaiting_reply_) return false;
  std::array<uint8_t, kCookieLen> cookie;
  const std::span<const uint8_t, kXNonceLen> nonce(reply.nonce);
  if (!crypto::xaead_decrypt(cookie, cookie_key_, nonce, reply.encrypted_cookie, last_mac1_)) {
    return false;
  }
  cookie_ = cookie;
  crypto::wipe(cookie);
  cookie_born_ns_ = now_ns;
  has_cookie_ = true;
  awaiting_reply_ = false;
  return true;
}

}  // namespace airlock::dp
