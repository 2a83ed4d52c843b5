// Upstream base URLs come from configuration, but they decide where provider keys are sent, so
// anything that could make the effective host differ from what a reader sees is refused:
// user info ("https://api.example.com@evil.test"), queries and fragments ("#" turned a host
// suffix into a fragment in Portkey), dot segments, whitespace and control characters.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>
#include <string_view>

#include <boost/asio/ip/address_v6.hpp>

#include "control/http/upstream.h"

namespace airlock::control::http {
namespace {

bool fail(std::string* error, std::string_view message) {
  if (error) *error = message;
  return false;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool is_host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

// RFC 3986 pchar plus '/', without '?' and '#' (refused separately).
bool is_path_char(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::string_view("-._~!$&'()*+,;=:@/%").find(c) != std::string_view::npos;
}

bool parse_host_port(std::string_view authority, Url& url, std::string* error) {
  std::string_view port_text;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return fail(error, "unterminated IPv6 address");
    std::string literal(authority.substr(1, close - 1));
    boost::system::error_code ec;
    boost::asio::ip::make_address_v6(literal, ec);
    if (ec) return fail(error, "invalid IPv6 address");
    url.host = literal;
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return fail(error, "unexpected text after IPv6 address");
      port_text = rest.substr(1);
      if (port_text.empty()) return fail(error, "empty port");
    }
  } else {
    size_t colon = authority.find(':');
    std::string_view host = authority.substr(0, colon);
    if (host.empty()) return fail(error, "missing host");
    if (!std::all_of(host.begin(), host.end(), is_host_char)) {
      return fail(error, "invalid character in host");
    }
    if (host.front() == '.' || host.front() == '-' || host.find("..") != std::string_view::npos) {
      return fail(error, "invalid host name");
    }
    url.host.clear();
    for (char c : host) url.host += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return fail(error, "empty port");
    }
  }
  if (!port_text.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 ||
        value > 65535) {
      return fail(error, "invalid port");
    }
    url.port = static_cast<uint16_t>(value);
  }
  return true;
}

bool parse_path(std::string_view path, Url& url, std::string* error) {
  if (!std::all_of(path.begin(), path.end(), is_path_char)) {
    return fail(error, "invalid character in path");
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  size_t pos = 0;
  while (pos < path.size()) {
    size_t next = path.find('/', pos + 1);
    std::string_view segment = path.substr(pos + 1, next - pos - 1);
    if (segment == "." || segment == "..") return fail(error, "dot segments in path");
    if (segment.empty()) return fail(error, "empty segment in path");
    pos = next;
  }
  url.base_path = std::string(path);
  return true;
}

}  // namespace

std::optional<Url> Url::parse(std::string_view text, std::string* error) {
  Url url;
  size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    fail(error, "not an absolute URL (expected http:// or https://)");
    return std::nullopt;
  }
  std::string_view scheme = text.substr(0, scheme_end);
  if (iequals(scheme, "https")) {
    url.tls = true;
    url.port = 443;
  } else if (iequals(scheme, "http")) {
    url.port = 80;
  } else {
    fail(error, "unsupported scheme (only http and https)");
    return std::nullopt;
  }
  std::string_view rest = text.substr(scheme_end + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    fail(error, "query or fragment not allowed in a base URL");
    return std::nullopt;
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (authority.find('@') != std::string_view::npos) {
    fail(error, "user info not allowed in a base URL");
    return std::nullopt;
  }
  if (!parse_host_port(authority, url, error)) return std::nullopt;
  if (slash != std::string_view::npos && !parse_path(rest.substr(slash), url, error)) {
    return std::nullopt;
  }
  return url;
}

std::string Url::origin() const {
  bool v6 = host.find(':') != std::string::npos;
  return std::string(tls ? "https://" : "http://") + (v6 ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

}  // namespace airlock::control::http
