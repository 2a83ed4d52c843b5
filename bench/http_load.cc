// airlock-http-load: an open-loop HTTP/1.1 load generator for measuring what a proxy adds to
// request latency, plus a mode that holds many streaming responses open to measure a process's
// memory per stream.
//
// Load mode: requests are scheduled at a fixed rate regardless of how fast responses come back,
// and each latency is measured from the request's SCHEDULED send time to the end of its
// response. Measuring from the actual send time instead would hide queueing: when the target
// stalls, a closed-loop client simply sends less, and the requests it would have sent never
// record the wait ("coordinated omission"). Here a request that waits for a free connection is
// charged for that wait.
//
//   airlock-http-load --url http://127.0.0.1:8080/v1/chat/completions --rate 500 --duration 10
//       --connections 32 --body-json '{"model":"m","messages":[]}' [--header 'K: V']...
//   -> {"rate":500,"sent":5000,"ok":5000,"errors":0,"p50_us":..,"p90_us":..,"p99_us":..,...}
//
// Hold mode: opens N connections, sends the request on each and waits until each response has
// delivered its first body bytes; then, if --rss-pid is given, reports how much that process
// tree's resident memory grew per open stream.
//
//   airlock-http-load --url ... --body-json '{"model":"sim-stall","stream":true,...}'
//       --hold-streams 200 --rss-pid 1234
//   -> {"streams":200,"open":200,"rss_before_kb":..,"rss_open_kb":..,"rss_per_stream_kb":..}
//
// One event-loop thread: the rates this is meant for (hundreds to a few thousand per second)
// leave it mostly idle, and the second core of a small machine stays with the target.
#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Request = http::request<http::string_body>;
using ResponseParser = http::response_parser<http::string_body>;

struct Target {
  std::string host;
  std::string port = "80";
  std::string path = "/";
};

struct Options {
  Target target;
  double rate = 0;
  double duration_s = 10;
  size_t connections = 16;
  double timeout_s = 30;
  double drain_s = 5;
  std::optional<std::string> body;
  std::string method;
  std::vector<std::pair<std::string, std::string>> headers;
  size_t hold_streams = 0;
  double settle_s = 1;
  std::optional<int> rss_pid;
};

constexpr std::string_view kUsage =
    "usage: airlock-http-load --url http://HOST[:PORT][/PATH]\n"
    "         [--body FILE | --body-json TEXT] [--method M] [--header 'K: V']...\n"
    "         [--timeout S (30)]\n"
    "       load:  --rate R --duration S (10) [--connections C (16)] [--drain S (5)]\n"
    "       hold:  --hold-streams N [--rss-pid PID] [--settle S (1)]\n";

std::optional<Target> parse_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) return std::nullopt;
  url.remove_prefix(kScheme.size());
  Target target;
  const size_t slash = url.find('/');
  if (slash != std::string_view::npos) {
    target.path = std::string(url.substr(slash));
    url = url.substr(0, slash);
  }
  // "[::1]:8080" keeps its brackets out of the host handed to the resolver.
  std::string_view host = url;
  std::string_view port;
  if (url.starts_with('[')) {
    const size_t close = url.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = url.substr(1, close - 1);
    if (close + 1 < url.size()) {
      if (url[close + 1] != ':') return std::nullopt;
      port = url.substr(close + 2);
    }
  } else if (const size_t colon = url.rfind(':'); colon != std::string_view::npos) {
    host = url.substr(0, colon);
    port = url.substr(colon + 1);
  }
  if (host.empty()) return std::nullopt;
  target.host = std::string(host);
  if (!port.empty()) target.port = std::string(port);
  return target;
}

std::optional<double> parse_positive(const char* text) {
  double value = 0;
  const std::string_view view = text;
  const auto [end, ec] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (ec != std::errc() || end != view.data() + view.size() || !(value > 0)) return std::nullopt;
  return value;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::optional<Options> parse_options(int argc, char** argv, std::string& error) {
  Options options;
  bool have_url = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) {
      error = "missing value after " + std::string(arg);
      return std::nullopt;
    }
    const char* value = argv[++i];
    auto positive = [&]() -> std::optional<double> {
      auto number = parse_positive(value);
      if (!number) error = std::string(arg) + " needs a positive number, got '" + value + "'";
      return number;
    };
    if (arg == "--url") {
      auto target = parse_url(value);
      if (!target) {
        error = "--url must look like http://host[:port][/path], got '" + std::string(value) + "'";
        return std::nullopt;
      }
      options.target = *target;
      have_url = true;
    } else if (arg == "--rate" || arg == "--duration" || arg == "--timeout" || arg == "--drain" ||
               arg == "--settle") {
      const auto number = positive();
      if (!number) return std::nullopt;
      if (arg == "--rate") options.rate = *number;
      if (arg == "--duration") options.duration_s = *number;
      if (arg == "--timeout") options.timeout_s = *number;
      if (arg == "--drain") options.drain_s = *number;
      if (arg == "--settle") options.settle_s = *number;
    } else if (arg == "--connections" || arg == "--hold-streams" || arg == "--rss-pid") {
      const auto number = positive();
      if (!number) return std::nullopt;
      if (arg == "--connections") options.connections = static_cast<size_t>(*number);
      if (arg == "--hold-streams") options.hold_streams = static_cast<size_t>(*number);
      if (arg == "--rss-pid") options.rss_pid = static_cast<int>(*number);
    } else if (arg == "--body") {
      options.body = read_file(value);
      if (!options.body) {
        error = "cannot read --body file '" + std::string(value) + "'";
        return std::nullopt;
      }
    } else if (arg == "--body-json") {
      options.body = value;
      options.headers.emplace_back("Content-Type", "application/json");
    } else if (arg == "--method") {
      options.method = value;
    } else if (arg == "--header") {
      const std::string_view header = value;
      const size_t colon = header.find(':');
      if (colon == std::string_view::npos || colon == 0) {
        error = "--header must be 'Name: value', got '" + std::string(header) + "'";
        return std::nullopt;
      }
      std::string_view header_value = header.substr(colon + 1);
      while (header_value.starts_with(' ')) header_value.remove_prefix(1);
      options.headers.emplace_back(std::string(header.substr(0, colon)), std::string(header_value));
    } else {
      error = "unknown option " + std::string(arg);
      return std::nullopt;
    }
  }
  if (!have_url) {
    error = "--url is required";
    return std::nullopt;
  }
  if (options.rate == 0 && options.hold_streams == 0) {
    error = "give --rate (load mode) or --hold-streams (hold mode)";
    return std::nullopt;
  }
  if (options.method.empty()) options.method = options.body ? "POST" : "GET";
  return options;
}

std::optional<Request> build_request(const Options& options, std::string& error) {
  const http::verb verb = http::string_to_verb(options.method);
  if (verb == http::verb::unknown) {
    error = "unknown --method '" + options.method + "'";
    return std::nullopt;
  }
  Request request{verb, options.target.path, 11};
  const bool default_port = options.target.port == "80";
  const bool ipv6 = options.target.host.find(':') != std::string::npos;
  const std::string host = ipv6 ? "[" + options.target.host + "]" : options.target.host;
  request.set(http::field::host, default_port ? host : host + ":" + options.target.port);
  request.set(http::field::user_agent, "airlock-http-load");
  // A later --header replaces an earlier one (or the --body-json Content-Type) of the same name.
  for (const auto& [name, value] : options.headers) request.set(name, value);
  if (options.body) request.body() = *options.body;
  request.keep_alive(true);
  request.prepare_payload();
  return request;
}

// Resident memory of `pid` and all its descendants: nginx and similar servers do their work in
// child processes, so the parent alone would show no growth.
std::optional<uint64_t> tree_rss_kb(int pid) {
  std::vector<std::pair<int, int>> parent_of;  // (pid, ppid)
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    int child = 0;
    if (std::from_chars(name.data(), name.data() + name.size(), child).ec != std::errc()) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // Field 4 (ppid) follows the command name, which is parenthesised and may hold spaces.
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(line.substr(close + 1));
    std::string state;
    int ppid = 0;
    if (fields >> state >> ppid) parent_of.emplace_back(child, ppid);
  }
  std::vector<int> tree{pid};
  for (size_t i = 0; i < tree.size(); ++i) {
    for (const auto& [child, ppid] : parent_of) {
      if (ppid == tree[i]) tree.push_back(child);
    }
  }
  uint64_t total = 0;
  bool found = false;
  for (const int member : tree) {
    std::ifstream status("/proc/" + std::to_string(member) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (!line.starts_with("VmRSS:")) continue;
      total += std::strtoull(line.c_str() + 6, nullptr, 10);
      found = true;
    }
  }
  if (!found) return std::nullopt;
  return total;
}

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// Boost 1.74 mis-compares a `boost::none` body limit and rejects every sized body, so "no
// limit" has to be spelled as the largest value.
constexpr uint64_t kNoBodyLimit = std::numeric_limits<uint64_t>::max();

struct Connection {
  explicit Connection(asio::io_context& io) : stream(io) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::optional<ResponseParser> parser;
  Clock::time_point scheduled;
  bool connected = false;
  bool busy = false;
};

// Latencies in microseconds; nearest-rank percentiles over the exact sorted sample.
uint64_t percentile(const std::vector<uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

class LoadRun {
 public:
  LoadRun(asio::io_context& io, const Options& options, tcp::resolver::results_type endpoints,
          Request request)
      : options_(options),
        endpoints_(std::move(endpoints)),
        request_(std::move(request)),
        tick_timer_(io),
        drain_timer_(io),
        total_(static_cast<uint64_t>(options.rate * options.duration_s)) {
    for (size_t i = 0; i < options.connections; ++i) {
      connections_.push_back(std::make_unique<Connection>(io));
    }
  }

  // Connecting up front keeps connection setup out of the measured interval; a connection
  // that later has to reconnect charges that to the request waiting on it.
  bool connect_all(std::string& error) {
    for (auto& connection : connections_) {
      beast::error_code ec;
      connection->stream.socket().connect(endpoints_.begin()->endpoint(), ec);
      if (ec) {
        error = ec.message();
        return false;
      }
      connection->stream.socket().set_option(tcp::no_delay(true));
      connection->connected = true;
      idle_.push_back(connection.get());
    }
    return true;
  }

  void start() {
    start_ = Clock::now();
    tick();
  }

  void print_json() {
    std::sort(latencies_us_.begin(), latencies_us_.end());
    const double elapsed = std::chrono::duration<double>(end_ - start_).count();
    std::cout << "{\"rate\":" << options_.rate << ",\"duration_s\":" << options_.duration_s
              << ",\"connections\":" << options_.connections << ",\"sent\":" << total_
              << ",\"ok\":" << ok_ << ",\"errors\":" << http_errors_ + io_errors_ + unfinished_
              << ",\"http_errors\":" << http_errors_ << ",\"io_errors\":" << io_errors_
              << ",\"unfinished\":" << unfinished_ << ",\"elapsed_s\":" << elapsed
              << ",\"p50_us\":" << percentile(latencies_us_, 0.50)
              << ",\"p90_us\":" << percentile(latencies_us_, 0.90)
              << ",\"p99_us\":" << percentile(latencies_us_, 0.99)
              << ",\"max_us\":" << (latencies_us_.empty() ? 0 : latencies_us_.back()) << "}\n";
    if (!first_error_.empty())
      std::cerr << "airlock-http-load: first error: " << first_error_ << "\n";
  }

  bool all_ok() const { return ok_ == total_; }

 private:
  Clock::time_point scheduled_time(uint64_t index) const {
    return start_ + seconds(static_cast<double>(index) / options_.rate);
  }

  void tick() {
    const auto now = Clock::now();
    // After a late wake-up every overdue request goes out now, each keeping its own schedule.
    while (next_ < total_ && scheduled_time(next_) <= now)
      backlog_.push_back(scheduled_time(next_++));
    dispatch();
    if (next_ < total_) {
      tick_timer_.expires_at(scheduled_time(next_));
      tick_timer_.async_wait([this](beast::error_code ec) {
        if (!ec && !stopped_) tick();
      });
      return;
    }
    drain_timer_.expires_at(scheduled_time(total_) + seconds(options_.drain_s));
    drain_timer_.async_wait([this](beast::error_code ec) {
      if (!ec) stop();
    });
    finish_if_done();
  }

  void dispatch() {
    while (!backlog_.empty() && !idle_.empty()) {
      Connection* connection = idle_.back();
      idle_.pop_back();
      connection->scheduled = backlog_.front();
      backlog_.pop_front();
      connection->busy = true;
      send(connection);
    }
  }

  void send(Connection* c) {
    c->stream.expires_after(seconds(options_.timeout_s));
    if (!c->connected) {
      c->stream.async_connect(endpoints_, [this, c](beast::error_code ec, const tcp::endpoint&) {
        if (stopped_) return;
        if (ec) return complete(c, false, "connect: " + ec.message());
        c->stream.socket().set_option(tcp::no_delay(true));
        c->connected = true;
        send(c);
      });
      return;
    }
    http::async_write(c->stream, request_, [this, c](beast::error_code ec, size_t) {
      if (stopped_) return;
      if (ec) return complete(c, false, "write: " + ec.message());
      c->parser.emplace();
      c->parser->body_limit(kNoBodyLimit);
      http::async_read(c->stream, c->buffer, *c->parser, [this, c](beast::error_code ec, size_t) {
        if (stopped_) return;
        if (ec) return complete(c, false, "read: " + ec.message());
        const auto status = c->parser->get().result_int();
        const bool keep_alive = c->parser->keep_alive();
        if (!keep_alive) close(c);
        if (status < 200 || status >= 300) {
          return complete(c, true, "HTTP " + std::to_string(status));
        }
        const auto latency = Clock::now() - c->scheduled;
        latencies_us_.push_back(static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(latency).count()));
        ++ok_;
        complete(c, true, {});
      });
    });
  }

  void close(Connection* c) {
    beast::error_code ignored;
    c->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    c->stream.close();
    c->buffer.clear();
    c->connected = false;
  }

  // `answered`: a response arrived (2xx or not); otherwise the transport failed and the
  // connection is dropped so the next request on it reconnects.
  void complete(Connection* c, bool answered, std::string error) {
    if (!error.empty()) {
      ++(answered ? http_errors_ : io_errors_);
      if (first_error_.empty()) first_error_ = std::move(error);
    }
    if (!answered) close(c);
    c->busy = false;
    ++completed_;
    idle_.push_back(c);
    dispatch();
    finish_if_done();
  }

  void finish_if_done() {
    if (next_ == total_ && completed_ == total_) stop();
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    end_ = Clock::now();
    unfinished_ = total_ - completed_;
    if (unfinished_ > 0 && first_error_.empty()) {
      first_error_ = std::to_string(unfinished_) + " requests unanswered at the drain deadline";
    }
    tick_timer_.cancel();
    drain_timer_.cancel();
    for (auto& connection : connections_) {
      if (connection->connected || connection->busy) close(connection.get());
    }
  }

  const Options& options_;
  tcp::resolver::results_type endpoints_;
  const Request request_;
  asio::steady_timer tick_timer_;
  asio::steady_timer drain_timer_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> idle_;
  std::deque<Clock::time_point> backlog_;
  const uint64_t total_;
  uint64_t next_ = 0;
  uint64_t completed_ = 0;
  uint64_t ok_ = 0;
  uint64_t http_errors_ = 0;
  uint64_t io_errors_ = 0;
  uint64_t unfinished_ = 0;
  bool stopped_ = false;
  Clock::time_point start_;
  Clock::time_point end_;
  std::vector<uint64_t> latencies_us_;
  std::string first_error_;
};

// Opens `hold_streams` concurrent requests and waits for each one's first body bytes, so that
// every stream is known to be established end to end before memory is measured.
class HoldRun {
 public:
  HoldRun(asio::io_context& io, const Options& options, tcp::resolver::results_type endpoints,
          Request request)
      : options_(options),
        endpoints_(std::move(endpoints)),
        request_(std::move(request)),
        timer_(io) {
    for (size_t i = 0; i < options.hold_streams; ++i) {
      connections_.push_back(std::make_unique<Connection>(io));
    }
  }

  void start() {
    if (options_.rss_pid) rss_before_kb_ = tree_rss_kb(*options_.rss_pid);
    for (auto& connection : connections_) open(connection.get());
    timer_.expires_after(seconds(options_.timeout_s));
    timer_.async_wait([this](beast::error_code ec) {
      if (!ec) measure_and_close();
    });
  }

  void print_json() const {
    std::cout << "{\"streams\":" << options_.hold_streams << ",\"open\":" << open_
              << ",\"failed\":" << failed_;
    if (rss_before_kb_ && rss_open_kb_) {
      const double per_stream =
          open_ == 0 ? 0.0
                     : (static_cast<double>(*rss_open_kb_) - static_cast<double>(*rss_before_kb_)) /
                           static_cast<double>(open_);
      std::cout << ",\"rss_pid\":" << *options_.rss_pid << ",\"rss_before_kb\":" << *rss_before_kb_
                << ",\"rss_open_kb\":" << *rss_open_kb_ << ",\"rss_per_stream_kb\":" << per_stream;
    }
    std::cout << "}\n";
    if (!first_error_.empty())
      std::cerr << "airlock-http-load: first error: " << first_error_ << "\n";
  }

  bool all_open() const {
    return open_ == options_.hold_streams && (!options_.rss_pid || rss_open_kb_.has_value());
  }

 private:
  void open(Connection* c) {
    c->stream.async_connect(endpoints_, [this, c](beast::error_code ec, const tcp::endpoint&) {
      if (ec) return fail(c, "connect: " + ec.message());
      http::async_write(c->stream, request_, [this, c](beast::error_code ec, size_t) {
        if (ec) return fail(c, "write: " + ec.message());
        c->parser.emplace();
        c->parser->body_limit(kNoBodyLimit);
        http::async_read_header(c->stream, c->buffer, *c->parser,
                                [this, c](beast::error_code ec, size_t) {
                                  if (ec) return fail(c, "read header: " + ec.message());
                                  const auto status = c->parser->get().result_int();
                                  if (status < 200 || status >= 300) {
                                    return fail(c, "HTTP " + std::to_string(status));
                                  }
                                  read_first_bytes(c);
                                });
      });
    });
  }

  void read_first_bytes(Connection* c) {
    if (!c->parser->get().body().empty()) return opened();
    if (c->parser->is_done()) return fail(c, "response ended before any body bytes");
    http::async_read_some(c->stream, c->buffer, *c->parser,
                          [this, c](beast::error_code ec, size_t) {
                            if (ec) return fail(c, "read body: " + ec.message());
                            read_first_bytes(c);
                          });
  }

  void opened() {
    ++open_;
    settle_if_all_answered();
  }

  void fail(Connection* c, std::string error) {
    if (done_) return;
    ++failed_;
    if (first_error_.empty()) first_error_ = std::move(error);
    c->stream.close();
    settle_if_all_answered();
  }

  // Gives the target a moment to finish allocating for the last streams before sampling.
  void settle_if_all_answered() {
    if (open_ + failed_ < options_.hold_streams) return;
    timer_.expires_after(seconds(options_.settle_s));
    timer_.async_wait([this](beast::error_code ec) {
      if (!ec) measure_and_close();
    });
  }

  void measure_and_close() {
    if (done_) return;
    done_ = true;
    if (open_ + failed_ < options_.hold_streams && first_error_.empty()) {
      first_error_ = "only " + std::to_string(open_) + " streams delivered bytes before --timeout";
    }
    if (options_.rss_pid) {
      rss_open_kb_ = tree_rss_kb(*options_.rss_pid);
      if (!rss_before_kb_ || !rss_open_kb_) {
        first_error_ = "cannot read VmRSS of pid " + std::to_string(*options_.rss_pid);
        rss_open_kb_.reset();
      }
    }
    timer_.cancel();
    for (auto& connection : connections_) connection->stream.close();
  }

  const Options& options_;
  tcp::resolver::results_type endpoints_;
  const Request request_;
  asio::steady_timer timer_;
  std::vector<std::unique_ptr<Connection>> connections_;
  size_t open_ = 0;
  size_t failed_ = 0;
  bool done_ = false;
  std::optional<uint64_t> rss_before_kb_;
  std::optional<uint64_t> rss_open_kb_;
  std::string first_error_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string error;
  const auto options = parse_options(argc, argv, error);
  if (!options) {
    std::cerr << "airlock-http-load: " << error << "\n" << kUsage;
    return 2;
  }
  auto request = build_request(*options, error);
  if (!request) {
    std::cerr << "airlock-http-load: " << error << "\n";
    return 2;
  }

  asio::io_context io;
  beast::error_code ec;
  auto endpoints = tcp::resolver(io).resolve(options->target.host, options->target.port, ec);
  if (ec) {
    std::cerr << "airlock-http-load: cannot resolve " << options->target.host << ": "
              << ec.message() << "\n";
    return 1;
  }

  if (options->hold_streams > 0) {
    HoldRun run(io, *options, endpoints, std::move(*request));
    run.start();
    io.run();
    run.print_json();
    return run.all_open() ? 0 : 1;
  }

  LoadRun run(io, *options, endpoints, std::move(*request));
  if (!run.connect_all(error)) {
    std::cerr << "airlock-http-load: cannot connect to " << options->target.host << ":"
              << options->target.port << ": " << error << "\n";
    return 1;
  }
  run.start();
  io.run();
  run.print_json();
  return run.all_ok() ? 0 : 1;
}
