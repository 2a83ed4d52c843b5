#include "control/events/signature.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <charconv>
#include <optional>
#include <vector>

namespace airlock::control::events {
namespace {

constexpr size_t kMacSize = 32;
using Mac = std::array<unsigned char, kMacSize>;

Mac hmac_sha256(std::string_view secret, std::string_view message) {
  Mac mac{};
  unsigned int size = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac.data(), &size);
  return mac;
}

std::string signed_text(std::string_view body, int64_t unix_seconds) {
  std::string text = std::to_string(unix_seconds);
  text += '.';
  text += body;
  return text;
}

std::optional<Mac> from_hex(std::string_view hex) {
  if (hex.size() != 2 * kMacSize) return std::nullopt;
  Mac mac{};
  for (size_t i = 0; i < kMacSize; ++i) {
    unsigned value = 0;
    const char* begin = hex.data() + 2 * i;
    auto [end, ec] = std::from_chars(begin, begin + 2, value, 16);
    if (ec != std::errc() || end != begin + 2) return std::nullopt;
    mac[i] = static_cast<unsigned char>(value);
  }
  return mac;
}

}  // namespace

std::string sign_webhook(std::string_view secret, std::string_view body, int64_t unix_seconds) {
  const Mac mac = hmac_sha256(secret, signed_text(body, unix_seconds));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string header = "t=" + std::to_string(unix_seconds) + ",v1=";
  for (const unsigned char b : mac) {
    header += kHex[b >> 4];
    header += kHex[b & 0xf];
  }
  return header;
}

bool verify_signature(std::string_view secret, std::string_view header, std::string_view body,
                      std::chrono::system_clock::time_point now, std::chrono::seconds tolerance) {
  std::optional<int64_t> timestamp;
  std::vector<Mac> candidates;
  while (!header.empty()) {
    const size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    if (item.starts_with("t=")) {
      int64_t value = 0;
      const std::string_view digits = item.substr(2);
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (ec != std::errc() || end != digits.data() + digits.size() || timestamp) return false;
      timestamp = value;
    } else if (item.starts_with("v1=")) {
      if (auto mac = from_hex(item.substr(3))) candidates.push_back(*mac);
    }
  }
  if (!timestamp || *timestamp < 0 || candidates.empty()) return false;
  const int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const int64_t skew = now_s > *timestamp ? now_s - *timestamp : *timestamp - now_s;
  if (skew > tolerance.count()) return false;
  const Mac expected = hmac_sha256(secret, signed_text(body, *timestamp));
  bool match = false;
  for (const Mac& candidate : candidates) {
    match |= CRYPTO_memcmp(candidate.data(), expected.data(), kMacSize) == 0;
  }
  return match;
}

}  // namespace airlock::control::events
