// WireGuard wire format and protocol constants (whitepaper §5.4, §6). Everything on the wire is
// little-endian; the structs are packed so they can be overlaid on received bytes after the
// exact-length check.
#pragma once

#include <cstddef>
#include <cstdint>

namespace airlock::dp {

inline constexpr size_t kKeyLen = 32;
inline constexpr size_t kTagLen = 16;
inline constexpr size_t kMacLen = 16;
inline constexpr size_t kCookieLen = 16;
inline constexpr size_t kTimestampLen = 12;
inline constexpr size_t kXNonceLen = 24;

enum class MessageType : uint8_t {
  kInitiation = 1,
  kResponse = 2,
  kCookieReply = 3,
  kTransportData = 4,
};

#pragma pack(push, 1)
struct MessageHeader {
  uint8_t type;
  uint8_t reserved[3];  // must be zero
};

struct MessageMacs {
  uint8_t mac1[kMacLen];
  uint8_t mac2[kMacLen];
};

struct MessageInitiation {
  MessageHeader header;
  uint32_t sender_index;
  uint8_t unencrypted_ephemeral[kKeyLen];
  uint8_t encrypted_static[kKeyLen + kTagLen];
  uint8_t encrypted_timestamp[kTimestampLen + kTagLen];
  MessageMacs macs;
};

struct MessageResponse {
  MessageHeader header;
  uint32_t sender_index;
  uint32_t receiver_index;
  uint8_t unencrypted_ephemeral[kKeyLen];
  uint8_t encrypted_nothing[kTagLen];
  MessageMacs macs;
};

struct MessageCookieReply {
  MessageHeader header;
  uint32_t receiver_index;
  uint8_t nonce[kXNonceLen];
  uint8_t encrypted_cookie[kCookieLen + kTagLen];
};

struct MessageDataHeader {
  MessageHeader header;
  uint32_t receiver_index;
  uint64_t counter;
};
#pragma pack(pop)

static_assert(sizeof(MessageInitiation) == 148);
static_assert(sizeof(MessageResponse) == 92);
static_assert(sizeof(MessageCookieReply) == 64);
static_assert(sizeof(MessageDataHeader) == 16);

inline constexpr size_t kDataMinLen = sizeof(MessageDataHeader) + kTagLen;  // a keepalive

// Message-count limits (whitepaper §6.1).
inline constexpr uint64_t kRekeyAfterMessages = 1ULL << 60;
inline constexpr uint64_t kRejectAfterMessages = ~0ULL - (1ULL << 13);  // 2^64 - 2^13 - 1

// Time limits; the data plane reads them from `ProtocolTimers` so tests can shorten them.
struct ProtocolTimers {
  uint64_t rekey_after_ns = 120'000'000'000ULL;
  uint64_t reject_after_ns = 180'000'000'000ULL;
  uint64_t rekey_attempt_ns = 90'000'000'000ULL;
  uint64_t rekey_timeout_ns = 5'000'000'000ULL;
  uint64_t keepalive_timeout_ns = 10'000'000'000ULL;
  uint64_t cookie_refresh_ns = 120'000'000'000ULL;
};

}  // namespace airlock::dp
