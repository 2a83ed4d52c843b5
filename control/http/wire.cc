#include "control/http/wire.h"

#include <boost/beast/http/status.hpp>

namespace airlock::control::http {
namespace {

namespace bhttp = boost::beast::http;

void append(std::string& out, boost::beast::string_view text) {
  out.append(text.data(), text.size());
}

void append_version(std::string& out, unsigned version) {
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10 % 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
}

void append_fields(const bhttp::fields& fields, std::string& out) {
  for (const auto& field : fields) {
    append(out, field.name_string());
    out += ": ";
    append(out, field.value());
    out += "\r\n";
  }
  out += "\r\n";
}

}  // namespace

void append_wire_header(const bhttp::request_header<>& header, std::string& out) {
  append(out, header.method_string());
  out += ' ';
  append(out, header.target());
  out += ' ';
  append_version(out, header.version());
  out += "\r\n";
  append_fields(header, out);
}

void append_wire_header(const bhttp::response_header<>& header, std::string& out) {
  append_version(out, header.version());
  out += ' ';
  const unsigned status = header.result_int();
  out += static_cast<char>('0' + status / 100 % 10);
  out += static_cast<char>('0' + status / 10 % 10);
  out += static_cast<char>('0' + status % 10);
  out += ' ';
  append(out, header.reason());
  out += "\r\n";
  append_fields(header, out);
}

}  // namespace airlock::control::http
