#include "control/gateway/request_body.h"

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <memory>
#include <vector>

namespace airlock::control::gateway {
namespace {

using Status = DecodedBody::Status;

constexpr std::size_t kFirstBuffer = 64 * 1024;
// More stacked codings than any client uses is a sign of an attack, not of a client.
constexpr std::size_t kMaxCodings = 3;

DecodedBody failure(Status status, std::string error) {
  DecodedBody out;
  out.status = status;
  out.error = std::move(error);
  return out;
}

DecodedBody too_large(std::size_t max) {
  return failure(Status::kTooLarge,
                 "decoded request body exceeds " + std::to_string(max) + " bytes");
}

// Makes room for more output, never beyond max + 1 bytes: reaching max + 1 proves the body is
// too large without decoding the rest of it.
bool grow(std::string& out, std::size_t produced, std::size_t max) {
  if (produced < out.size()) return true;
  if (out.size() > max) return false;
  out.resize(std::min(max + 1, std::max(kFirstBuffer, out.size() * 2)));
  return true;
}

struct InflateEnd {
  void operator()(z_stream* zs) const { inflateEnd(zs); }
};

// gzip and deflate (zlib-wrapped): windowBits 15 + 32 detects either header. Concatenated gzip
// members (RFC 1952 §2.2) are decoded one after another.
DecodedBody inflate_body(std::string_view in, std::size_t max) {
  if (in.size() > UINT_MAX) return too_large(max);
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) return failure(Status::kCorrupt, "zlib init failed");
  const std::unique_ptr<z_stream, InflateEnd> guard(&zs);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  DecodedBody out;
  std::size_t produced = 0;
  for (;;) {
    if (!grow(out.body, produced, max)) return too_large(max);
    const std::size_t room = std::min<std::size_t>(out.body.size() - produced, UINT_MAX);
    zs.next_out = reinterpret_cast<Bytef*>(out.body.data() + produced);
    zs.avail_out = static_cast<uInt>(room);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    produced += room - zs.avail_out;
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      if (inflateReset(&zs) != Z_OK) return failure(Status::kCorrupt, "gzip: bad member");
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return failure(Status::kCorrupt, std::string("gzip: ") + (zs.msg ? zs.msg : "corrupt"));
    }
    if (zs.avail_out != 0 && zs.avail_in == 0) {
      return failure(Status::kCorrupt, "gzip: truncated body");
    }
  }
  out.body.resize(produced);
  return out;
}

struct FreeDctx {
  void operator()(ZSTD_DCtx* ctx) const { ZSTD_freeDCtx(ctx); }
};

// The window log a frame may ask for: a frame that decodes to at most `max` bytes never needs a
// window larger than that, and a bigger one would only make us allocate for an attacker.
int window_log_for(std::size_t max) {
  int log = 10;  // ZSTD_WINDOWLOG_ABSOLUTEMIN, which zstd.h exports only as experimental
  while (log < 27 && (std::size_t{1} << log) < max) ++log;
  return log;
}

DecodedBody zstd_body(std::string_view in, std::size_t max) {
  const std::unique_ptr<ZSTD_DCtx, FreeDctx> ctx(ZSTD_createDCtx());
  if (!ctx) return failure(Status::kCorrupt, "zstd: out of memory");
  ZSTD_DCtx_setParameter(ctx.get(), ZSTD_d_windowLogMax, window_log_for(max));
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  DecodedBody out;
  std::size_t produced = 0;
  for (;;) {
    if (!grow(out.body, produced, max)) return too_large(max);
    ZSTD_outBuffer output{out.body.data(), out.body.size(), produced};
    const std::size_t rc = ZSTD_decompressStream(ctx.get(), &output, &input);
    produced = output.pos;
    if (ZSTD_isError(rc)) {
      // Encoders size the window to the content, so a window past the cap means a body past it.
      if (ZSTD_getErrorCode(rc) == ZSTD_error_frameParameter_windowTooLarge) return too_large(max);
      return failure(Status::kCorrupt, std::string("zstd: ") + ZSTD_getErrorName(rc));
    }
    const bool input_done = input.pos == input.size;
    if (rc == 0 && input_done) break;
    if (input_done && output.pos < output.size) {
      return failure(Status::kCorrupt, "zstd: truncated body");
    }
  }
  out.body.resize(produced);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  const std::size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

}  // namespace

DecodedBody decode_request_body(std::string_view content_encoding, std::string body,
                                std::size_t max_decoded_bytes) {
  std::vector<std::string_view> codings;
  while (!content_encoding.empty()) {
    const std::size_t comma = content_encoding.find(',');
    const std::string_view coding = trim(content_encoding.substr(0, comma));
    content_encoding =
        comma == std::string_view::npos ? std::string_view{} : content_encoding.substr(comma + 1);
    if (!coding.empty() && !iequals(coding, "identity")) codings.push_back(coding);
  }
  if (codings.size() > kMaxCodings) {
    return failure(Status::kUnsupported, "too many content codings");
  }
  DecodedBody out;
  out.body = std::move(body);
  // The last coding listed was applied last, so it comes off first.
  for (auto it = codings.rbegin(); it != codings.rend(); ++it) {
    if (iequals(*it, "gzip") || iequals(*it, "x-gzip") || iequals(*it, "deflate")) {
      out = inflate_body(out.body, max_decoded_bytes);
    } else if (iequals(*it, "zstd")) {
      out = zstd_body(out.body, max_decoded_bytes);
    } else {
      return failure(Status::kUnsupported,
                     "unsupported Content-Encoding \"" + std::string(*it) + "\"");
    }
    if (out.status != Status::kOk) return out;
  }
  if (out.body.size() > max_decoded_bytes) return too_large(max_decoded_bytes);
  return out;
}

}  // namespace airlock::control::gateway
