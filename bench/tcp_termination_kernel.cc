// Stack (a) of bench_tcp_termination: the kernel behind a TUN, as control/tun has it. The pump
// copies packets between tunC and tunS; tunS lives in namespace S, whose kernel terminates TCP
// for a non-blocking epoll server, like the gateway's. The pump and the server run on two
// threads (as RingTun::run and the gateway's io threads do) or, with one_thread, on one (as in
// the lwIP run).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <unordered_map>

#include "bench/tcp_termination.h"

namespace airlock::bench::tcp_termination {
namespace {

class KernelServer : public Server {
 public:
  KernelServer(TunDevice& tunc, const ServerOptions& options, bool one_thread)
      : Server(options),
        tunc_(tunc),
        server_ns_(netns_with_tun("tunS", kServerIp, options.txqueuelen)) {
    // Sockets stay in the namespace they were created in, whichever thread then uses them.
    thread_in(server_ns_.ns.get(), [this] {
      listen_rr_ = listen_on(kRrPort);
      listen_bulk_ = listen_on(kBulkPort);
    }).join();
    const std::vector<int> pump = {tunc_.fd(), server_ns_.tun->fd()};
    const std::vector<int> server = {listen_rr_.get(), listen_bulk_.get()};
    if (one_thread) {
      threads_.emplace_back(&KernelServer::loop, this,
                            std::vector<int>{pump[0], pump[1], server[0], server[1]});
    } else {
      threads_.emplace_back(&KernelServer::loop, this, pump);
      threads_.emplace_back(&KernelServer::loop, this, server);
    }
  }
  ~KernelServer() override {
    signal_stop();
    for (std::thread& t : threads_) t.join();
  }

 private:
  struct Conn {
    Fd fd;
    bool bulk = false;
    bool want_out = false;
    size_t request_bytes = 0;
    std::string out;
    uint64_t bulk_left = 0;
    uint64_t bulk_sent = 0;
  };
  using Conns = std::unordered_map<int, std::unique_ptr<Conn>>;

  static Fd listen_on(uint16_t port) {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    const int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::listen(s.get(), 1024) != 0) {
      die(errno_text("kernel server listen"));
    }
    return s;
  }

  static void write_packet(TunDevice& to, std::span<const uint8_t> packet) {
    if (to.write_packet(packet) < 0) die("pump: TUN write failed");
  }

  // The pump: moves up to a burst of packets from one TUN to the other, or into the delay line.
  static void forward(TunDevice& from, TunDevice& to, std::span<uint8_t> buffer, DelayLine* delay) {
    for (int i = 0; i < kBurst; ++i) {
      const long n = from.read_packet(buffer);
      if (n == 0) return;
      if (n < 0) die("pump: TUN read failed");
      const auto packet = buffer.first(static_cast<size_t>(n));
      if (delay != nullptr) {
        delay->push(packet);
      } else {
        write_packet(to, packet);
      }
    }
  }

  // EPOLLOUT only while something waits to be written: level-triggered, it would spin.
  static void watch(int ep, int op, Conn& c, bool want_out) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (want_out) ev.events |= EPOLLOUT;
    ev.data.fd = c.fd.get();
    if (::epoll_ctl(ep, op, c.fd.get(), &ev) != 0) die(errno_text("epoll_ctl"));
    c.want_out = want_out;
  }

  // Reads what the client sent and queues one response per complete request. False: closed.
  bool read_requests(Conn& c) {
    char buffer[16384];
    while (true) {
      const ssize_t n = ::recv(c.fd.get(), buffer, sizeof(buffer), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN)) return false;
      if (n < 0) return true;
      c.request_bytes += static_cast<size_t>(n);
      for (; c.request_bytes >= kRequestSize; c.request_bytes -= kRequestSize) {
        c.out += payloads().response;
        ++responses_;
      }
    }
  }

  // Writes queued responses, or the next 16 KiB pieces of the bulk stream, until the socket is
  // full. False: done (bulk) or failed; the connection is to be closed.
  bool write_out(Conn& c) {
    while (!c.out.empty()) {
      const ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN;
      c.out.erase(0, static_cast<size_t>(n));
    }
    while (c.bulk_left > 0) {
      const size_t at = c.bulk_sent % kChunk;
      const size_t len = std::min<uint64_t>(kChunk - at, c.bulk_left);
      const ssize_t n = ::send(c.fd.get(), payloads().chunk.data() + at, len, MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN;
      c.bulk_sent += static_cast<uint64_t>(n);
      c.bulk_left -= static_cast<uint64_t>(n);
      bulk_bytes_ += static_cast<uint64_t>(n);
    }
    return !c.bulk;
  }

  void accept_all(int ep, int listener, Conns& conns) {
    while (true) {
      Fd fd(::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (fd.get() < 0) return;
      ++accepted_;
      const int one = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto c = std::make_unique<Conn>();
      c->fd = std::move(fd);
      c->bulk = listener == listen_bulk_.get();
      c->bulk_left = c->bulk ? options_.bulk_bytes : 0;
      if (!write_out(*c)) continue;  // a bulk stream that fit the socket buffer at once
      watch(ep, EPOLL_CTL_ADD, *c, c->bulk);
      const int key = c->fd.get();
      conns.emplace(key, std::move(c));
    }
  }

  void serve(int ep, Conn& c, uint32_t events, Conns& conns) {
    const bool open = ((events & EPOLLIN) == 0 || read_requests(c)) && write_out(c);
    if (!open) {
      conns.erase(c.fd.get());  // closing the socket also removes it from the epoll set
    } else if (c.want_out != (!c.out.empty() || c.bulk)) {
      watch(ep, EPOLL_CTL_MOD, c, !c.want_out);
    }
  }

  // Serves every fd in `fds` (TUNs, listeners) and the connections accepted here until stop.
  void loop(const std::vector<int>& fds) {
    Fd ep(::epoll_create1(EPOLL_CLOEXEC));
    for (int fd : fds) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) != 0) die(errno_text("epoll_ctl"));
    }
    epoll_event stop_ev{};
    stop_ev.events = EPOLLIN;
    stop_ev.data.fd = stop_.get();
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, stop_.get(), &stop_ev) != 0) {
      die(errno_text("epoll_ctl"));
    }
    TunDevice& tuns = *server_ns_.tun;
    DelayLine delay(options_.delay);
    std::vector<uint8_t> buffer(65536);
    Conns conns;
    epoll_event events[kBurst];
    while (true) {
      const int n = ::epoll_wait(ep.get(), events, kBurst, delay.timeout_ms());
      if (n < 0 && errno != EINTR) die(errno_text("epoll_wait"));
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == stop_.get()) return;
        if (fd == tunc_.fd()) {
          forward(tunc_, tuns, buffer, delay.enabled() ? &delay : nullptr);
        } else if (fd == tuns.fd()) {
          forward(tuns, tunc_, buffer, nullptr);
        } else if (fd == listen_rr_.get() || fd == listen_bulk_.get()) {
          accept_all(ep.get(), fd, conns);
        } else {
          serve(ep.get(), *conns.at(fd), events[i].events, conns);
        }
      }
      delay.release([&](std::span<const uint8_t> packet) { write_packet(tuns, packet); });
    }
  }

  TunDevice& tunc_;
  NetnsTun server_ns_;
  Fd listen_rr_;
  Fd listen_bulk_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<Server> kernel_server(TunDevice& tunc, const ServerOptions& options,
                                      bool one_thread) {
  return std::make_unique<KernelServer>(tunc, options, one_thread);
}

}  // namespace airlock::bench::tcp_termination
