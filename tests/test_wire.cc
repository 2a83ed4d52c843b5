#include "control/http/wire.h"

#include <string>

#include <gtest/gtest.h>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http.hpp>

namespace airlock::control::http {
namespace {

namespace bhttp = boost::beast::http;

// What Beast's own serializer writes for the header: the reference the gateway's bytes must match.
template <bool isRequest>
std::string beast_header(const bhttp::header<isRequest>& header) {
  bhttp::message<isRequest, bhttp::empty_body> message{header};
  bhttp::serializer<isRequest, bhttp::empty_body> serializer{message};
  serializer.split(true);
  std::string out;
  boost::beast::error_code ec;
  while (!serializer.is_header_done() && !ec) {
    serializer.next(ec, [&](boost::beast::error_code&, const auto& buffers) {
      out += boost::beast::buffers_to_string(buffers);
      serializer.consume(boost::beast::buffer_bytes(buffers));
    });
  }
  EXPECT_FALSE(ec) << ec.message();
  return out;
}

template <bool isRequest>
std::string ours(const bhttp::header<isRequest>& header) {
  std::string out = "kept:";
  append_wire_header(header, out);
  EXPECT_EQ(out.substr(0, 5), "kept:") << "append_wire_header must append, not replace";
  return out.substr(5);
}

TEST(Wire, ARequestHeaderIsWrittenAsBeastWritesIt) {
  bhttp::request_header<> header;
  header.method(bhttp::verb::post);
  header.target("/v1/chat/completions?x=1");
  header.version(11);
  header.set(bhttp::field::host, "api.openai.com");
  header.set(bhttp::field::content_type, "application/json");
  header.set("X-Custom-Header", "a value, with: colons");
  header.insert("x-repeated", "1");
  header.insert("x-repeated", "2");
  header.set(bhttp::field::content_length, "42");
  const std::string expected = beast_header(header);
  EXPECT_EQ(ours(header), expected);
  EXPECT_EQ(expected.substr(0, 42), "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHo");
}

TEST(Wire, AnUnknownMethodAndHttp10AreWrittenAsGiven) {
  bhttp::request_header<> header;
  header.method_string("PROPFIND");
  header.target("/");
  header.version(10);
  EXPECT_EQ(ours(header), beast_header(header));
  EXPECT_EQ(ours(header), "PROPFIND / HTTP/1.0\r\n\r\n");
}

TEST(Wire, AResponseHeaderKeepsItsReasonOrGetsTheStandardOne) {
  bhttp::response_header<> header;
  header.version(11);
  header.result(bhttp::status::too_many_requests);
  header.set(bhttp::field::content_type, "text/event-stream");
  header.set("x-airlock-request-id", "req_0123");
  header.set(bhttp::field::transfer_encoding, "chunked");
  EXPECT_EQ(ours(header), beast_header(header));
  EXPECT_EQ(ours(header).substr(0, 35), "HTTP/1.1 429 Too Many Requests\r\nCon");

  header.reason("Slow Down");
  header.result(599);
  EXPECT_EQ(ours(header), beast_header(header));
  EXPECT_EQ(ours(header).substr(0, 24), "HTTP/1.1 599 Slow Down\r\n");

  bhttp::response_header<> bare;
  bare.version(10);
  bare.result(bhttp::status::no_content);
  EXPECT_EQ(ours(bare), "HTTP/1.0 204 No Content\r\n\r\n");
  EXPECT_EQ(ours(bare), beast_header(bare));
}

}  // namespace
}  // namespace airlock::control::http
