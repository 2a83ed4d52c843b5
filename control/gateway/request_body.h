// Compressed request bodies. Codex sends `Content-Encoding: zstd` (sometimes gzip); the gateway
// must read the model out of the body, so it decodes it and forwards the decoded bytes with the
// Content-Encoding header removed. The decoded size is capped: a few KB of zstd can expand to
// gigabytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace airlock::control::gateway {

struct DecodedBody {
  enum class Status {
    kOk,
    kUnsupported,  // a coding other than gzip, x-gzip, deflate, zstd, identity
    kCorrupt,      // the bytes are not valid for their coding
    kTooLarge,     // the decoded body would exceed the cap
  };
  Status status = Status::kOk;
  std::string body;   // the decoded body when kOk
  std::string error;  // why, otherwise (no body bytes in it)
};

// `content_encoding` is the header value: codings in the order they were applied, comma
// separated ("gzip", "zstd", "gzip, zstd"); empty or "identity" leaves `body` as is.
DecodedBody decode_request_body(std::string_view content_encoding, std::string body,
                                std::size_t max_decoded_bytes);

}  // namespace airlock::control::gateway
