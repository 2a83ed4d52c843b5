#include "control/ctl/admin_client.h"

#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "policy/policy.h"

namespace airlock::control::ctl {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

std::optional<AdminClient> AdminClient::create(std::string_view url, std::string* error) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    *error = "admin URL must start with http:// (got \"" + std::string(url) + "\")";
    return std::nullopt;
  }
  std::string_view rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  while (path.ends_with('/')) path.remove_suffix(1);
  AdminClient client;
  client.url_ = std::string(url);
  client.base_path_ = std::string(path);
  size_t colon = authority.rfind(':');
  bool bracketed = authority.starts_with('[');
  if (colon != std::string_view::npos && (!bracketed || colon > authority.find(']'))) {
    client.host_ = std::string(authority.substr(0, colon));
    client.port_ = std::string(authority.substr(colon + 1));
    if (!policy::parse_decimal(client.port_, 65535)) {
      *error = "admin URL: bad port \"" + client.port_ + "\"";
      return std::nullopt;
    }
  } else {
    client.host_ = std::string(authority);
    client.port_ = "80";
  }
  if (bracketed) {
    if (!client.host_.ends_with(']')) {
      *error = "admin URL: bad host \"" + client.host_ + "\"";
      return std::nullopt;
    }
    client.host_ = client.host_.substr(1, client.host_.size() - 2);
  }
  if (client.host_.empty()) {
    *error = "admin URL has no host";
    return std::nullopt;
  }
  return client;
}

std::optional<AdminResponse> AdminClient::get(std::string_view target, std::string* error) const {
  return request(false, target, {}, error);
}

std::optional<AdminResponse> AdminClient::post(std::string_view target, std::string body,
                                               std::string* error) const {
  return request(true, target, std::move(body), error);
}

std::optional<AdminResponse> AdminClient::request(bool post, std::string_view target,
                                                  std::string body, std::string* error) const {
  asio::io_context io;
  std::optional<AdminResponse> result;
  std::string failure;
  bhttp::request<bhttp::string_body> req{post ? bhttp::verb::post : bhttp::verb::get,
                                         base_path_ + std::string(target), 11};
  bool v6 = host_.find(':') != std::string::npos;
  req.set(bhttp::field::host, (v6 ? "[" + host_ + "]" : host_) + ":" + port_);
  req.set(bhttp::field::user_agent, "airlockctl");
  if (post) req.set(bhttp::field::content_type, "text/plain; charset=utf-8");
  req.body() = std::move(body);
  req.keep_alive(false);
  req.prepare_payload();

  auto run = [&]() -> asio::awaitable<void> {
    try {
      asio::ip::tcp::resolver resolver(io);
      beast::tcp_stream stream(io);
      stream.expires_after(timeout_);
      auto endpoints = co_await resolver.async_resolve(host_, port_, asio::use_awaitable);
      co_await stream.async_connect(endpoints, asio::use_awaitable);
      co_await bhttp::async_write(stream, req, asio::use_awaitable);
      beast::flat_buffer buffer;
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(64u << 20);
      co_await bhttp::async_read(stream, buffer, parser, asio::use_awaitable);
      result = AdminResponse{parser.get().result_int(), std::move(parser.get().body())};
    } catch (const boost::system::system_error& e) {
      failure = e.code() == beast::error::timeout ? "timed out" : e.code().message();
    }
  };
  asio::co_spawn(io, run(), asio::detached);
  io.run();
  if (!result) *error = "admin API at " + url_ + ": " + failure;
  return result;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace airlock::control::ctl
