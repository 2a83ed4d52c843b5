// A message header as it goes on the wire: the request or status line, the fields, the blank line.
//
// Beast's serializer produces the same bytes, but through a chain of buffer-sequence views
// (buffers_cat, suffix, prefix, variants) that cost about 10 000 instructions a message: a fifth
// of what the gateway spent on a small request apart from the kernel. One pass over the fields
// into a string is a few hundred.
#pragma once

#include <string>

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>

namespace airlock::control::http {

// Appends to `out`. The fields are written as stored, so a header Beast accepted (names and
// values without CR or LF) comes out as Beast would write it.
void append_wire_header(const boost::beast::http::request_header<>& header, std::string& out);
void append_wire_header(const boost::beast::http::response_header<>& header, std::string& out);

}  // namespace airlock::control::http
