// TCP termination for the control plane, measured both ways the issue allows: the kernel's
// stack behind a TUN (what control/tun does) and Debian's lwIP (liblwip-dev, as packaged). Only
// the server-side stack differs:
//
//   client: a kernel TCP socket in namespace C, routed through tunC
//   pump (a bench thread in the main namespace, in the role of the data-plane ring) reads tunC
//     kernel:    writes into tunS in namespace S, whose kernel terminates TCP for an epoll
//                server (non-blocking, like the gateway's); reads tunS, writes into tunC. Pump
//                and server on two threads, as RingTun::run and the gateway's io threads;
//     kernel-1t: the same on one thread, as the lwIP run has it;
//     lwip:      feeds each packet to an lwIP netif; a raw-API server answers in lwIP's
//                callbacks on the pump thread; the netif's output writes into tunC.
//
// Tests: rr (one keep-alive connection, 400 B request / 600 B response, closed loop), bulk (the
// server streams N MiB in 16 KiB writes), conn (connect, one request/response, close). Every
// response and the whole bulk stream are checked byte for byte, and the server's counts must
// agree. Neither server parses HTTP: the stacks are what is measured. CPU is getrusage of the
// whole process over a test (client thread, pump, the kernel server thread or lwIP's tcpip
// thread, and the softirq work the pump's TUN writes run); the client thread's share is shown
// beside it. Each test runs --rounds times, interleaved across the stacks; the median round is
// reported. --delay-ms holds client->server packets in the pump: an emulated round trip.
//   bench_tcp_termination [--quick] [--requests N] [--bulk-mib N] [--connections N]
//                         [--rounds N] [--txqueuelen N] [--delay-ms N]
//                         [--only kernel|kernel-1t|lwip]
// Needs root and /dev/net/tun (exit 77 otherwise). The namespaces are anonymous (held by file
// descriptors), so they and their TUNs disappear with the process however it ends.
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "bench/tcp_termination.h"

namespace airlock::bench::tcp_termination {

void die(const std::string& what) {
  std::fflush(stdout);
  std::fprintf(stderr, "bench_tcp_termination: %s\n", what.c_str());
  std::_Exit(1);
}

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

namespace {

std::string http_message(const std::string& head, size_t size) {
  const size_t body = size - head.size() - std::strlen("Content-Length: 000\r\n\r\n");
  char length[32];
  std::snprintf(length, sizeof(length), "Content-Length: %03zu\r\n\r\n", body);
  return head + length + std::string(body, 'x');
}

bool write_sysctl(const char* path, const char* value) {
  Fd f(::open(path, O_WRONLY | O_CLOEXEC));
  return f.get() >= 0 && ::write(f.get(), value, std::strlen(value)) >= 0;
}

// The queue between a TUN's transmit and its reader; tun drops (TX dropped) when it is full.
std::string set_txqueuelen(const std::string& name, uint32_t length) {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  name.copy(ifr.ifr_name, IFNAMSIZ - 1);
  ifr.ifr_qlen = static_cast<int>(length);
  return ::ioctl(s.get(), SIOCSIFTXQLEN, &ifr) == 0 ? "" : errno_text("SIOCSIFTXQLEN");
}

}  // namespace

const Payloads& payloads() {
  static const Payloads p = [] {
    Payloads out;
    out.request = http_message(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n",
        kRequestSize);
    out.response =
        http_message("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", kResponseSize);
    out.chunk.resize(kChunk);
    for (size_t i = 0; i < kChunk; ++i) out.chunk[i] = static_cast<uint8_t>(i * 131 + (i >> 8));
    return out;
  }();
  return p;
}

std::thread thread_in(int ns, std::function<void()> f) {
  return std::thread([ns, f = std::move(f)] {
    if (::setns(ns, CLONE_NEWNET) != 0) die(errno_text("setns"));
    f();
  });
}

NetnsTun netns_with_tun(const std::string& name, const char* address, uint32_t txqueuelen) {
  NetnsTun out;
  std::string error;
  std::thread([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      error = errno_text("unshare(CLONE_NEWNET)");
      return;
    }
    out.ns = Fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    // No IPv6 router solicitations through the pump (if the kernel has IPv6 at all), and
    // ports enough for the conn test.
    write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    if (!write_sysctl("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535")) {
      error = errno_text("ip_local_port_range");
      return;
    }
    std::optional<TunDevice> tun = TunDevice::open(name, &error);
    if (tun && txqueuelen != 0) error = set_txqueuelen(name, txqueuelen);
    if (tun && error.empty() && tun->set_mtu(kMtu, &error) &&
        tun->add_address(*control::IpPrefix::parse(std::string(address) + "/24"), &error) &&
        tun->set_up(&error)) {
      out.tun = std::move(tun);
    }
  }).join();
  if (!out.tun) die(name + ": " + error);
  return out;
}

namespace {

bool matches_stream(const uint8_t* data, size_t n, uint64_t offset) {
  while (n > 0) {
    const size_t at = offset % kChunk;
    const size_t len = std::min(n, kChunk - at);
    if (std::memcmp(data, payloads().chunk.data() + at, len) != 0) return false;
    data += len;
    n -= len;
    offset += len;
  }
  return true;
}

// ---- Client (kernel sockets in namespace C) ----

double cpu_seconds(int who) {
  rusage u{};
  ::getrusage(who, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

struct Measurement {
  uint64_t units = 0;  // requests, bytes or connections
  double seconds = 0;
  double process_cpu = 0;
  double client_cpu = 0;
  std::vector<double> latency_us;
};

Measurement timed(const std::function<uint64_t(Measurement&)>& body) {
  Measurement m;
  const double process0 = cpu_seconds(RUSAGE_SELF);
  const double client0 = cpu_seconds(RUSAGE_THREAD);
  const auto start = Clock::now();
  m.units = body(m);
  m.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  m.process_cpu = cpu_seconds(RUSAGE_SELF) - process0;
  m.client_cpu = cpu_seconds(RUSAGE_THREAD) - client0;
  return m;
}

Fd connect_to(uint16_t port) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  const timeval timeout{10, 0};  // a stalled stack fails the run instead of hanging it
  ::setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, kServerIp, &a.sin_addr);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    die(errno_text("connect"));
  }
  return s;
}

void request_response(int fd) {
  const std::string& request = payloads().request;
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0) die(errno_text("send"));
    sent += static_cast<size_t>(n);
  }
  char response[kResponseSize];
  for (size_t got = 0; got < kResponseSize;) {
    const ssize_t n = ::recv(fd, response + got, kResponseSize - got, 0);
    if (n <= 0) die(n == 0 ? "response: connection closed early" : errno_text("response"));
    got += static_cast<size_t>(n);
  }
  if (std::memcmp(response, payloads().response.data(), kResponseSize) != 0) {
    die("response corrupted");
  }
}

// Requests on the rr connection before the timed ones (slow start, caches); the server counts
// them too.
uint64_t warmup_requests(uint64_t requests) {
  return std::min<uint64_t>(200, requests / 10);
}

Measurement run_rr(uint64_t requests) {
  Fd s = connect_to(kRrPort);
  for (uint64_t i = 0; i < warmup_requests(requests); ++i) request_response(s.get());
  return timed([&](Measurement& m) {
    m.latency_us.reserve(requests);
    for (uint64_t i = 0; i < requests; ++i) {
      const auto start = Clock::now();
      request_response(s.get());
      m.latency_us.push_back(
          std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
    return requests;
  });
}

Measurement run_bulk(uint64_t bytes) {
  return timed([&](Measurement&) {
    Fd s = connect_to(kBulkPort);
    std::vector<uint8_t> buffer(size_t{256} << 10);
    uint64_t got = 0;
    while (true) {
      const ssize_t n = ::recv(s.get(), buffer.data(), buffer.size(), 0);
      if (n < 0) die(errno_text("bulk recv"));
      if (n == 0) break;
      if (!matches_stream(buffer.data(), static_cast<size_t>(n), got)) die("bulk data corrupted");
      got += static_cast<uint64_t>(n);
    }
    if (got != bytes) die("bulk: " + std::to_string(got) + " of " + std::to_string(bytes) + " B");
    return got;
  });
}

Measurement run_conn(uint64_t connections) {
  return timed([&](Measurement&) {
    for (uint64_t i = 0; i < connections; ++i) request_response(connect_to(kRrPort).get());
    return connections;
  });
}

// ---- Harness ----

enum class Test { kRr, kBulk, kConn };
constexpr Test kTests[] = {Test::kRr, Test::kBulk, Test::kConn};
const char* test_name(Test t) {
  return t == Test::kRr ? "rr" : (t == Test::kBulk ? "bulk" : "conn");
}

struct Options {
  uint64_t requests = 20000;
  uint64_t bulk_mib = 256;
  uint64_t connections = 5000;
  uint32_t rounds = 3;
  uint32_t txqueuelen = 0;  // 0: the kernel's default, which control/tun keeps
  uint32_t delay_ms = 0;
  std::string only;
};

constexpr const char* kStacks[] = {"kernel", "kernel-1t", "lwip"};

struct Setup {
  const char* stack;
  NetnsTun client;                 // namespace C and tunC
  std::unique_ptr<Server> server;  // declared after tunC: destroyed before it
};

struct Row {
  const char* stack;
  Test test;
  Measurement m;
};

Row run_test(Setup& s, Test test, const Options& o) {
  const Counts before = s.server->counts();
  Measurement m;
  thread_in(s.client.ns.get(), [&] {
    if (test == Test::kRr) m = run_rr(o.requests);
    if (test == Test::kBulk) m = run_bulk(o.bulk_mib << 20);
    if (test == Test::kConn) m = run_conn(o.connections);
  }).join();
  // The client checked every byte; the server's counts must agree with it.
  const Counts after = s.server->counts();
  const uint64_t responses = after.responses - before.responses;
  const bool ok = test == Test::kRr     ? responses == o.requests + warmup_requests(o.requests)
                  : test == Test::kBulk ? after.bulk_bytes - before.bulk_bytes == m.units
                                        : after.accepted - before.accepted == o.connections &&
                                              responses == o.connections;
  if (!ok) die(std::string(s.stack) + " " + test_name(test) + ": server counts disagree");
  return {s.stack, test, std::move(m)};
}

// `stack` is one of kStacks.
std::unique_ptr<Setup> make_setup(const char* stack, const Options& o) {
  auto s = std::make_unique<Setup>(
      Setup{stack, netns_with_tun("tunC", kClientIp, o.txqueuelen), nullptr});
  const ServerOptions server{o.bulk_mib << 20, o.txqueuelen, std::chrono::milliseconds(o.delay_ms)};
  const std::string_view name = stack;
  s->server = name == "lwip" ? lwip_server(*s->client.tun, server)
                             : kernel_server(*s->client.tun, server, name == "kernel-1t");
  return s;
}

// The round with the median rate, so a round the shared cores preempted does not set the figure.
Row median_round(std::vector<Row> rounds) {
  auto rate = [](const Row& r) { return static_cast<double>(r.m.units) / r.m.seconds; };
  std::sort(rounds.begin(), rounds.end(),
            [&](const Row& a, const Row& b) { return rate(a) < rate(b); });
  return std::move(rounds[rounds.size() / 2]);
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

void print_rows(const std::vector<Row>& rows) {
  std::printf("%-9s %-5s %11s %13s %8s %8s %14s %14s\n", "stack", "test", "count", "rate", "p50 us",
              "p99 us", "cpu/unit", "client cpu");
  for (const Row& r : rows) {
    const Measurement& m = r.m;
    const bool bulk = r.test == Test::kBulk;
    // Per request or connection in µs; per GB (1e9 bytes) in seconds for bulk.
    const double per = bulk ? static_cast<double>(m.units) / 1e9 : m.units / 1e6;
    const char* unit = bulk ? "s/GB" : "us";
    char count[32], rate[32], p50[16] = "-", p99[16] = "-";
    if (!m.latency_us.empty()) {
      std::snprintf(p50, sizeof(p50), "%.1f", percentile(m.latency_us, 0.5));
      std::snprintf(p99, sizeof(p99), "%.1f", percentile(m.latency_us, 0.99));
    }
    std::snprintf(count, sizeof(count), bulk ? "%.0f MiB" : "%.0f",
                  bulk ? m.units / 1048576.0 : static_cast<double>(m.units));
    std::snprintf(rate, sizeof(rate), bulk ? "%.2f Gbit/s" : "%.0f/s",
                  bulk ? m.units * 8 / m.seconds / 1e9 : m.units / m.seconds);
    std::printf("%-9s %-5s %11s %13s %8s %8s %9.2f %-4s %9.2f %-4s\n", r.stack, test_name(r.test),
                count, rate, p50, p99, m.process_cpu / per, unit, m.client_cpu / per, unit);
  }
  std::printf("\n");
  for (const Row& r : rows) {
    const Measurement& m = r.m;
    const char* s = r.stack;
    const char* t = test_name(r.test);
    if (r.test == Test::kBulk) {
      const double gb = static_cast<double>(m.units) / 1e9;
      std::printf("tcp_termination %s %s gbit_per_s %.3f\n", s, t, gb * 8 / m.seconds);
      std::printf("tcp_termination %s %s cpu_s_per_gb %.3f\n", s, t, m.process_cpu / gb);
      std::printf("tcp_termination %s %s client_cpu_s_per_gb %.3f\n", s, t, m.client_cpu / gb);
      continue;
    }
    const double n = static_cast<double>(m.units);
    std::printf("tcp_termination %s %s per_s %.0f\n", s, t, n / m.seconds);
    if (r.test == Test::kRr) {
      std::printf("tcp_termination %s %s p50_us %.1f\n", s, t, percentile(m.latency_us, 0.5));
      std::printf("tcp_termination %s %s p99_us %.1f\n", s, t, percentile(m.latency_us, 0.99));
    }
    std::printf("tcp_termination %s %s cpu_us %.2f\n", s, t, m.process_cpu * 1e6 / n);
    std::printf("tcp_termination %s %s client_cpu_us %.2f\n", s, t, m.client_cpu * 1e6 / n);
  }
}

void print_header(const Options& o) {
  std::printf(
      "TCP termination behind the ring, client = kernel socket in a namespace via tunC, MTU %u, "
      "TUN txqueuelen %s, added round trip %u ms.\n"
      "kernel: pump tunC <-> tunS, kernel TCP + epoll server in a second namespace, pump and "
      "server on two threads (as RingTun and the gateway); kernel-1t: both on one thread.\n"
      "lwip: pump tunC -> lwIP netif (raw API server), output -> tunC. Debian liblwip-dev as "
      "packaged: %s\n"
      "rr: %llu requests (%zu B / %zu B) on one connection; bulk: %llu MiB in 16 KiB writes; "
      "conn: %llu x (connect, request, close). Median of %u interleaved rounds.\n"
      "cpu/unit: the whole process (client, pump, server stack); client cpu: the client thread. "
      "Per request/connection in us, per GB in s.\n\n",
      kMtu, o.txqueuelen == 0 ? "500 (kernel default)" : std::to_string(o.txqueuelen).c_str(),
      o.delay_ms, lwip_build_options().c_str(), static_cast<unsigned long long>(o.requests),
      kRequestSize, kResponseSize, static_cast<unsigned long long>(o.bulk_mib),
      static_cast<unsigned long long>(o.connections), o.rounds);
}

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  std::optional<uint64_t> requests, bulk_mib, connections;
  std::optional<uint32_t> rounds;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--quick") {
      o = {5000, 32, 1000, 1, o.txqueuelen, o.delay_ms, o.only};
    } else if (arg == "--requests" && has_value) {
      requests = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--bulk-mib" && has_value) {
      bulk_mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--connections" && has_value) {
      connections = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--rounds" && has_value) {
      rounds = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else if (arg == "--txqueuelen" && has_value) {
      o.txqueuelen = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else if (arg == "--delay-ms" && has_value) {
      o.delay_ms = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else if (arg == "--only" && has_value) {
      o.only = argv[++i];
      if (std::find(std::begin(kStacks), std::end(kStacks), o.only) == std::end(kStacks)) {
        return std::nullopt;
      }
    } else {
      return std::nullopt;
    }
  }
  o.requests = requests.value_or(o.requests);
  o.bulk_mib = bulk_mib.value_or(o.bulk_mib);
  o.connections = connections.value_or(o.connections);
  o.rounds = rounds.value_or(o.rounds);
  // Each closed connection holds a client port in TIME_WAIT for 60 s.
  if (o.requests == 0 || o.bulk_mib == 0 || o.connections == 0 || o.connections > 50000 ||
      o.rounds == 0) {
    return std::nullopt;
  }
  return o;
}

int run(int argc, char** argv) {
  const std::optional<Options> options = parse_options(argc, argv);
  if (!options) {
    std::fprintf(stderr,
                 "usage: %s [--quick] [--requests N] [--bulk-mib N] [--connections N (<= 50000)] "
                 "[--rounds N] [--txqueuelen N] [--delay-ms N] [--only kernel|kernel-1t|lwip]\n",
                 argv[0]);
    return 2;
  }
  if (::geteuid() != 0 || ::access("/dev/net/tun", R_OK | W_OK) != 0) {
    std::printf(
        "bench_tcp_termination: skipped: %s\n",
        ::geteuid() != 0 ? "needs root (TUN devices, network namespaces)" : "no /dev/net/tun");
    return 77;
  }
  print_header(*options);
  // All setups exist together so the tests interleave (kernel, kernel-1t, lwip, kernel, ...):
  // the shared cores' speed drifts over a run by more than some of the differences measured.
  std::vector<std::unique_ptr<Setup>> setups;
  for (const char* stack : kStacks) {
    if (options->only.empty() || options->only == stack) {
      setups.push_back(make_setup(stack, *options));
    }
  }
  std::vector<std::vector<Row>> rounds(std::size(kTests) * setups.size());
  for (uint32_t round = 0; round < options->rounds; ++round) {
    for (size_t t = 0; t < std::size(kTests); ++t) {
      for (size_t i = 0; i < setups.size(); ++i) {
        Row row = run_test(*setups[i], kTests[t], *options);
        std::fprintf(stderr, "round %u: %-9s %-4s %.0f units/s\n", round + 1, row.stack,
                     test_name(row.test), static_cast<double>(row.m.units) / row.m.seconds);
        rounds[t * setups.size() + i].push_back(std::move(row));
      }
    }
  }
  std::vector<Row> rows;
  rows.reserve(rounds.size());
  for (auto& r : rounds) rows.push_back(median_round(std::move(r)));
  setups.clear();
  print_rows(rows);
  return 0;
}

}  // namespace
}  // namespace airlock::bench::tcp_termination

int main(int argc, char** argv) {
  return airlock::bench::tcp_termination::run(argc, argv);
}
