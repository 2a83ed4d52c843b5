#include "control/app/options.h"

#include <charconv>
#include <string_view>

namespace airlock::control {
namespace {

namespace ip = boost::asio::ip;

template <class T>
bool parse_number(std::string_view s, T* out, T min, T max) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < min || v > max) return false;
  *out = v;
  return true;
}

// "127.0.0.1:9190" or "[::1]:9190".
std::optional<ip::tcp::endpoint> parse_listen(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  uint16_t port = 0;
  if (!parse_number<uint16_t>(text.substr(colon + 1), &port, 0, 65535)) return std::nullopt;
  boost::system::error_code ec;
  const ip::address address = ip::make_address(std::string(host), ec);
  if (ec) return std::nullopt;
  return ip::tcp::endpoint(address, port);
}

bool valid_instance(std::string_view name) {
  return !name.empty() && name.size() < 40 && name.find('/') == std::string_view::npos;
}

}  // namespace

std::string control_usage() {
  return "usage: airlock-control --policy FILE.json [--instance NAME]... [--no-dataplane]\n"
         "         [--db PATH] [--tun NAME] [--gateway-port N] [--gateway-listen ADDR:PORT]...\n"
         "         [--admin-listen 127.0.0.1:PORT] [--hub-endpoint HOST:PORT]\n"
         "         [--hub-public-key FILE] [--prices LITELLM.json] [--upstream-ca PEM]\n"
         "         [--local-peer PUBLIC_KEY] [--threads N] [--event-retention-days N]\n"
         "         [--drain-seconds N]\n";
}

std::optional<ControlOptions> parse_control_options(std::span<char* const> args,
                                                    std::string* error) {
  ControlOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string_view flag = args[i];
    if (flag == "--help" || flag == "-h") {
      *error = control_usage();
      return std::nullopt;
    }
    if (flag == "--no-dataplane") {
      o.no_dataplane = true;
      continue;
    }
    if (i + 1 >= args.size()) {
      *error = std::string(flag) + ": missing value (or unknown flag)\n" + control_usage();
      return std::nullopt;
    }
    const std::string_view v = args[++i];
    bool ok = true;
    if (flag == "--policy") {
      o.policy_file = v;
    } else if (flag == "--instance") {
      ok = valid_instance(v);
      o.instances.emplace_back(v);
    } else if (flag == "--db") {
      o.db_path = v;
    } else if (flag == "--tun") {
      o.tun_name = v;
      ok = !v.empty() && v.size() < 16;
    } else if (flag == "--gateway-port") {
      ok = parse_number<uint16_t>(v, &o.gateway_port, 1, 65535);
    } else if (flag == "--gateway-listen") {
      const auto endpoint = parse_listen(v);
      ok = endpoint.has_value();
      if (ok) o.extra_listen.push_back(*endpoint);
    } else if (flag == "--admin-listen") {
      const auto endpoint = parse_listen(v);
      ok = endpoint.has_value() && endpoint->address().is_loopback();
      if (ok) o.admin_listen = *endpoint;
    } else if (flag == "--hub-endpoint") {
      o.hub_endpoint = v;
    } else if (flag == "--hub-public-key") {
      o.hub_public_key_file = v;
    } else if (flag == "--prices") {
      o.prices_file = v;
    } else if (flag == "--upstream-ca") {
      o.upstream_ca = v;
    } else if (flag == "--local-peer") {
      o.local_peer = policy::decode_key_base64(v);
      ok = o.local_peer.has_value();
    } else if (flag == "--threads") {
      ok = parse_number<unsigned>(v, &o.threads, 1, 256);
    } else if (flag == "--drain-seconds") {
      ok = parse_number<unsigned>(v, &o.drain_seconds, 0, 3600);
    } else if (flag == "--event-retention-days") {
      ok = parse_number<unsigned>(v, &o.event_retention_days, 0, 36'500);
    } else {
      *error = "unknown flag " + std::string(flag) + "\n" + control_usage();
      return std::nullopt;
    }
    if (!ok) {
      *error = std::string(flag) + ": invalid value";
      if (flag == "--admin-listen") *error += " (the admin listener must be a loopback address)";
      return std::nullopt;
    }
  }
  if (o.policy_file.empty()) {
    *error = "--policy is required\n" + control_usage();
    return std::nullopt;
  }
  if (o.no_dataplane && !o.instances.empty()) {
    *error = "--no-dataplane and --instance exclude each other";
    return std::nullopt;
  }
  if (!o.no_dataplane && o.instances.empty()) o.instances.emplace_back("airlock");
  return o;
}

}  // namespace airlock::control
