// Webhook signatures: "airlock-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
// "<t>.<body>")>". The timestamp is signed with the body so a captured request cannot be replayed
// later; receivers check it against their clock with some tolerance.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace airlock::control::events {

// The header value for `body` signed at `unix_seconds`.
std::string sign_webhook(std::string_view secret, std::string_view body, int64_t unix_seconds);

// True when `header` carries a v1 signature of `body` under `secret` (any of several v1 entries,
// so a receiver can accept during a secret rotation) and its timestamp is within `tolerance` of
// `now` either way. Compares in constant time.
bool verify_signature(std::string_view secret, std::string_view header, std::string_view body,
                      std::chrono::system_clock::time_point now,
                      std::chrono::seconds tolerance = std::chrono::minutes(5));

}  // namespace airlock::control::events
