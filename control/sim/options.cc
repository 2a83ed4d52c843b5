#include <charconv>
#include <limits>

#include "control/sim/sim.h"

namespace airlock::control::sim {
namespace {

template <class T>
bool parse_number(std::string_view text, T max, T& out) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > max) return false;
  out = value;
  return true;
}

// ADDR:PORT, with IPv6 addresses in brackets ([::1]:18080).
bool parse_listen(std::string_view text, Options& options) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view address = text.substr(0, colon);
  if (address.front() == '[') {
    if (address.size() < 3 || address.back() != ']') return false;
    address = address.substr(1, address.size() - 2);
  }
  uint16_t port = 0;
  if (!parse_number<uint16_t>(text.substr(colon + 1), std::numeric_limits<uint16_t>::max(), port)) {
    return false;
  }
  options.address = std::string(address);
  options.port = port;
  return true;
}

}  // namespace

const char* const kUsage =
    "usage: airlock-sim-upstream [--listen ADDR:PORT] [--tls-cert FILE --tls-key FILE]\n"
    "           [--threads N] [--slow-ms MS] [--record-limit N] [--quiet]\n"
    "A SIMULATED LLM provider (OpenAI, Anthropic and Gemini wire formats) for tests, demos\n"
    "and benchmarks; it never calls a real model. Default listen 127.0.0.1:18080 (port 0:\n"
    "any free port). The first stdout line is \"listening on ADDR:PORT\".\n";

std::optional<Options> parse_options(std::span<const char* const> args, std::string& error,
                                     bool& help) {
  Options options;
  help = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view name = args[i];
    std::string_view value;
    bool has_value = false;
    if (const std::size_t eq = name.find('='); name.starts_with("--") && eq != name.npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const auto take_value = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= args.size()) {
        error = std::string(name) + " needs a value";
        return false;
      }
      value = args[++i];
      return true;
    };
    const auto bad = [&](std::string_view what) {
      error = "bad " + std::string(name) + " '" + std::string(value) + "': " + std::string(what);
      return std::nullopt;
    };
    if (name == "--help" || name == "-h") {
      help = true;
      return std::nullopt;
    } else if (name == "--quiet") {
      options.quiet = true;
    } else if (name == "--listen") {
      if (!take_value()) return std::nullopt;
      if (!parse_listen(value, options)) return bad("expected ADDR:PORT");
    } else if (name == "--tls-cert") {
      if (!take_value()) return std::nullopt;
      options.tls_cert_file = std::string(value);
    } else if (name == "--tls-key") {
      if (!take_value()) return std::nullopt;
      options.tls_key_file = std::string(value);
    } else if (name == "--threads") {
      if (!take_value()) return std::nullopt;
      if (!parse_number<unsigned>(value, 256, options.threads) || options.threads == 0) {
        return bad("expected 1 to 256");
      }
    } else if (name == "--slow-ms") {
      if (!take_value()) return std::nullopt;
      uint64_t ms = 0;
      if (!parse_number<uint64_t>(value, 86'400'000, ms)) return bad("expected 0 to 86400000");
      options.slow = std::chrono::milliseconds(ms);
    } else if (name == "--record-limit") {
      if (!take_value()) return std::nullopt;
      if (!parse_number<std::size_t>(value, 1'000'000, options.record_limit)) {
        return bad("expected 0 to 1000000");
      }
    } else {
      error = "unknown option " + std::string(name);
      return std::nullopt;
    }
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    error = "--tls-cert and --tls-key go together";
    return std::nullopt;
  }
  return options;
}

}  // namespace airlock::control::sim
