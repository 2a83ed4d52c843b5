#include "control/gateway/request_body.h"

#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <string>

namespace airlock::control::gateway {
namespace {

using Status = DecodedBody::Status;

std::string gzip(std::string_view in, int window_bits = 15 + 16) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, window_bits, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string zstd(std::string_view in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

const std::string kBody =
    R"({"model":"gpt-5.5","input":")" + std::string(100000, 'x') + R"(","stream":true})";

TEST(GatewayRequestBody, IdentityPassesThrough) {
  for (const char* coding : {"", "identity", " Identity "}) {
    const DecodedBody out = decode_request_body(coding, kBody, 1 << 20);
    EXPECT_EQ(out.status, Status::kOk);
    EXPECT_EQ(out.body, kBody);
  }
}

TEST(GatewayRequestBody, DecodesGzipDeflateAndZstd) {
  EXPECT_EQ(decode_request_body("gzip", gzip(kBody), 1 << 20).body, kBody);
  EXPECT_EQ(decode_request_body("x-gzip", gzip(kBody), 1 << 20).body, kBody);
  EXPECT_EQ(decode_request_body("deflate", gzip(kBody, 15), 1 << 20).body, kBody);
  EXPECT_EQ(decode_request_body("zstd", zstd(kBody), 1 << 20).body, kBody);
  EXPECT_EQ(decode_request_body("ZSTD", zstd(kBody), 1 << 20).body, kBody);
}

TEST(GatewayRequestBody, StackedCodingsComeOffInReverse) {
  const DecodedBody out = decode_request_body("gzip, zstd", zstd(gzip(kBody)), 1 << 20);
  EXPECT_EQ(out.status, Status::kOk);
  EXPECT_EQ(out.body, kBody);
}

TEST(GatewayRequestBody, ConcatenatedGzipMembers) {
  const DecodedBody out = decode_request_body("gzip", gzip("hello ") + gzip("world"), 1024);
  EXPECT_EQ(out.status, Status::kOk);
  EXPECT_EQ(out.body, "hello world");
}

TEST(GatewayRequestBody, BombsStopAtTheCap) {
  const std::string zeros(32u << 20, '\0');
  const std::string gz = gzip(zeros);
  const std::string zs = zstd(zeros);
  ASSERT_LT(gz.size(), 100u * 1024);
  ASSERT_LT(zs.size(), 100u * 1024);
  for (const auto& [coding, bytes] : {std::pair{"gzip", gz}, std::pair{"zstd", zs}}) {
    const DecodedBody out = decode_request_body(coding, bytes, 1u << 20);
    EXPECT_EQ(out.status, Status::kTooLarge) << coding;
    EXPECT_TRUE(out.body.empty());
  }
  // Exactly at the cap is fine.
  EXPECT_EQ(decode_request_body("zstd", zstd(std::string(4096, 'a')), 4096).status, Status::kOk);
  EXPECT_EQ(decode_request_body("zstd", zstd(std::string(4097, 'a')), 4096).status,
            Status::kTooLarge);
  EXPECT_EQ(decode_request_body("gzip", gzip(std::string(4096, 'a')), 4096).status, Status::kOk);
  EXPECT_EQ(decode_request_body("gzip", gzip(std::string(4097, 'a')), 4096).status,
            Status::kTooLarge);
}

TEST(GatewayRequestBody, CorruptAndTruncatedBodies) {
  const std::string gz = gzip(kBody);
  const std::string zs = zstd(kBody);
  EXPECT_EQ(decode_request_body("gzip", gz.substr(0, gz.size() / 2), 1 << 20).status,
            Status::kCorrupt);
  EXPECT_EQ(decode_request_body("zstd", zs.substr(0, zs.size() / 2), 1 << 20).status,
            Status::kCorrupt);
  EXPECT_EQ(decode_request_body("gzip", kBody, 1 << 20).status, Status::kCorrupt);
  EXPECT_EQ(decode_request_body("zstd", kBody, 1 << 20).status, Status::kCorrupt);
  EXPECT_EQ(decode_request_body("gzip", "", 1 << 20).status, Status::kCorrupt);
  EXPECT_EQ(decode_request_body("zstd", "", 1 << 20).status, Status::kCorrupt);
  EXPECT_EQ(decode_request_body("gzip", gz + "junk", 1 << 20).status, Status::kCorrupt);
}

TEST(GatewayRequestBody, UnknownCodingsRefused) {
  EXPECT_EQ(decode_request_body("br", "x", 1024).status, Status::kUnsupported);
  EXPECT_EQ(decode_request_body("gzip, compress", gzip("x"), 1024).status, Status::kUnsupported);
  EXPECT_EQ(decode_request_body("gzip,gzip,gzip,gzip", "x", 1024).status, Status::kUnsupported);
}

TEST(GatewayRequestBody, PlainBodyOverCapRefused) {
  EXPECT_EQ(decode_request_body("", std::string(2000, 'a'), 1000).status, Status::kTooLarge);
}

}  // namespace
}  // namespace airlock::control::gateway
