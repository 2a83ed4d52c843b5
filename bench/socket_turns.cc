// airlock-socket-turns: the latency of Responses WebSocket turns, one after another on one
// socket, as Codex sends them: from the response.create leaving to its terminal event arriving.
// Run against the simulated provider directly and through the gateway to see what the relay
// adds per turn.
//
// Usage: airlock-socket-turns --url ws://HOST:PORT/v1/responses [--turns N] [--warmup N]
//          [--model M]
// Prints one JSON object: turns, p50_us, p90_us, p99_us, errors.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string host, port, target;
  int turns = 2000;
  int warmup = 200;
  std::string model = "gpt-5.5";
};

bool parse_url(std::string_view url, Args& args) {
  constexpr std::string_view kScheme = "ws://";
  if (!url.starts_with(kScheme)) return false;
  url.remove_prefix(kScheme.size());
  const std::size_t slash = url.find('/');
  const std::string_view authority = url.substr(0, slash);
  args.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  const std::size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos) return false;
  args.host = std::string(authority.substr(0, colon));
  args.port = std::string(authority.substr(colon + 1));
  return true;
}

bool terminal(std::string_view event) {
  for (std::string_view type :
       {"\"response.completed\"", "\"response.incomplete\"", "\"response.failed\"", "\"error\""}) {
    const std::size_t at = event.find(type);
    // The type is the first member the simulator and OpenAI write.
    if (at != std::string_view::npos && at < 16) return true;
  }
  return false;
}

int usage() {
  std::fputs(
      "usage: airlock-socket-turns --url ws://HOST:PORT/v1/responses [--turns N] "
      "[--warmup N] [--model M]\n",
      stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  bool have_url = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--url") {
      have_url = parse_url(value, args);
      if (!have_url) return usage();
    } else if (flag == "--turns") {
      args.turns = std::atoi(value);
    } else if (flag == "--warmup") {
      args.warmup = std::atoi(value);
    } else if (flag == "--model") {
      args.model = value;
    } else {
      return usage();
    }
  }
  if (!have_url || args.turns <= 0 || args.warmup < 0 || argc % 2 == 0) return usage();

  asio::io_context io;
  websocket::stream<tcp::socket> ws(io);
  beast::error_code ec;
  tcp::resolver resolver(io);
  asio::connect(ws.next_layer(), resolver.resolve(args.host, args.port), ec);
  if (!ec) ws.next_layer().set_option(tcp::no_delay(true), ec);
  if (!ec) ws.handshake(args.host + ":" + args.port, args.target, ec);
  if (ec) {
    std::fprintf(stderr, "airlock-socket-turns: %s\n", ec.message().c_str());
    return 1;
  }
  const std::string turn = R"({"type":"response.create","model":")" + args.model +
                           R"(","input":"Say hello in five words.","store":false})";
  std::vector<double> latencies;
  latencies.reserve(static_cast<std::size_t>(args.turns));
  int errors = 0;
  beast::flat_buffer buffer;
  for (int i = 0; i < args.warmup + args.turns; ++i) {
    const Clock::time_point start = Clock::now();
    ws.write(asio::buffer(turn), ec);
    bool failed = false;
    while (!ec) {
      buffer.clear();
      ws.read(buffer, ec);
      if (ec) break;
      const std::string_view event(static_cast<const char*>(buffer.data().data()), buffer.size());
      if (terminal(event)) {
        failed = event.find("\"response.completed\"") == std::string_view::npos;
        break;
      }
    }
    if (ec) {
      std::fprintf(stderr, "airlock-socket-turns: %s\n", ec.message().c_str());
      return 1;
    }
    if (i < args.warmup) continue;
    errors += failed ? 1 : 0;
    latencies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  ws.close(websocket::close_code::normal, ec);
  std::sort(latencies.begin(), latencies.end());
  const auto at = [&](double q) {
    return latencies[std::min(latencies.size() - 1,
                              static_cast<std::size_t>(q * static_cast<double>(latencies.size())))];
  };
  std::printf(
      "{\"turns\": %zu, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
      "\"errors\": %d}\n",
      latencies.size(), at(0.50), at(0.90), at(0.99), errors);
  return 0;
}
