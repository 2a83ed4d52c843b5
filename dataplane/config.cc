#include "dataplane/config.h"

#include <arpa/inet.h>

#include <charconv>
#include <string_view>

namespace airlock::dp {
namespace {

template <class T>
bool parse_number(std::string_view s, T* out, T min, T max) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < min || v > max) return false;
  *out = v;
  return true;
}

bool parse_seconds(std::string_view s, uint64_t* ns) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !(v > 0) || v > 86400.0 * 365) return false;
  *ns = static_cast<uint64_t>(v * 1e9);
  return true;
}

}  // namespace

std::string config_usage() {
  return "usage: airlock-dataplane [EAL options] -- --address IPV4 --private-key FILE\n"
         "         [--listen-port N] [--policy FILE.alp] [--instance NAME]\n"
         "         [--control-socket PATH] [--port-id N] [--max-peers N] [--max-rules N]\n"
         "         [--ring-slots N] [--mbufs N] [--mtu N] [--under-load-depth N]\n"
         "         [--under-load-rate N]\n"
         "         [--rekey-after-time S] [--reject-after-time S] [--rekey-timeout S]\n"
         "         [--keepalive-timeout S] [--rekey-attempt-time S]\n"
         "         [--crypto PATH] [--crypto-encrypt PATH]   PATH: best|avx512|avx2|avx|sse\n"
         "         [--static-sessions FILE]   (benchmarks only; needs --policy)\n";
}

std::optional<Config> parse_config(std::span<char*> args, std::string* error) {
  Config c;
  bool have_address = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view flag = args[i];
    if (flag == "--help" || flag == "-h") {
      *error = config_usage();
      return std::nullopt;
    }
    if (i + 1 >= args.size()) {
      *error = std::string(flag) + ": missing value (or unknown flag)\n" + config_usage();
      return std::nullopt;
    }
    std::string_view v = args[++i];
    bool ok = true;
    if (flag == "--address") {
      in_addr a{};
      ok = inet_pton(AF_INET, std::string(v).c_str(), &a) == 1 && a.s_addr != 0;
      c.address_be = a.s_addr;
      have_address = ok;
    } else if (flag == "--listen-port") {
      ok = parse_number<uint16_t>(v, &c.listen_port, 1, 65535);
    } else if (flag == "--private-key") {
      c.private_key_file = v;
    } else if (flag == "--policy") {
      c.policy_file = v;
    } else if (flag == "--static-sessions") {
      c.static_sessions_file = v;
      ok = !v.empty();
    } else if (flag == "--instance") {
      c.instance = v;
      ok = !v.empty() && v.find('/') == std::string_view::npos && v.size() < 40;
    } else if (flag == "--control-socket") {
      c.control_socket = v;
    } else if (flag == "--port-id") {
      ok = parse_number<uint16_t>(v, &c.port_id, 0, 1023);
    } else if (flag == "--max-peers") {
      ok = parse_number<uint32_t>(v, &c.max_peers, 1, 1u << 20);
    } else if (flag == "--max-rules") {
      ok = parse_number<uint32_t>(v, &c.max_rules, 1, 1u << 20);
    } else if (flag == "--ring-slots") {
      ok = parse_number<uint32_t>(v, &c.ring_slots, 64, 1u << 20) &&
           (c.ring_slots & (c.ring_slots - 1)) == 0;
    } else if (flag == "--mbufs") {
      ok = parse_number<uint32_t>(v, &c.mbufs, 1023, 1u << 24);
    } else if (flag == "--mtu") {
      ok = parse_number<uint16_t>(v, &c.inner_mtu, 576, 9000);
    } else if (flag == "--under-load-depth") {
      ok = parse_number<uint32_t>(v, &c.under_load_queue_depth, 1, 1u << 16);
    } else if (flag == "--under-load-rate") {
      ok = parse_number<uint32_t>(v, &c.under_load_rate, 1, 10'000'000);
    } else if (flag == "--rekey-after-time") {
      ok = parse_seconds(v, &c.timers.rekey_after_ns);
    } else if (flag == "--reject-after-time") {
      ok = parse_seconds(v, &c.timers.reject_after_ns);
    } else if (flag == "--rekey-timeout") {
      ok = parse_seconds(v, &c.timers.rekey_timeout_ns);
    } else if (flag == "--keepalive-timeout") {
      ok = parse_seconds(v, &c.timers.keepalive_timeout_ns);
    } else if (flag == "--rekey-attempt-time") {
      ok = parse_seconds(v, &c.timers.rekey_attempt_ns);
    } else if (flag == "--crypto" || flag == "--crypto-encrypt") {
      const std::optional<BatchCrypto::Arch> arch = BatchCrypto::arch_named(v);
      ok = arch.has_value();
      if (ok && flag == "--crypto") c.crypto = *arch;
      if (ok && flag == "--crypto-encrypt") c.crypto_encrypt = *arch;
    } else {
      *error = "unknown flag " + std::string(flag) + "\n" + config_usage();
      return std::nullopt;
    }
    if (!ok) {
      *error = "invalid value for " + std::string(flag) + ": '" + std::string(v) + "'";
      return std::nullopt;
    }
  }
  if (!have_address) {
    *error = "--address is required\n" + config_usage();
    return std::nullopt;
  }
  if (c.private_key_file.empty()) {
    *error = "--private-key is required\n" + config_usage();
    return std::nullopt;
  }
  if (!c.static_sessions_file.empty() && c.policy_file.empty()) {
    *error = "--static-sessions needs --policy: the sessions are for that policy's peers";
    return std::nullopt;
  }
  if (c.timers.rekey_after_ns >= c.timers.reject_after_ns) {
    *error = "--rekey-after-time must be shorter than --reject-after-time";
    return std::nullopt;
  }
  if (c.control_socket.empty()) c.control_socket = "/run/airlock/" + c.instance + ".sock";
  return c;
}

}  // namespace airlock::dp
