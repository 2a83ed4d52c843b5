// Shared parts of bench_tcp_termination (its .cc describes the set-up): constants, the payloads
// both servers send, namespaces with a TUN, the emulated round trip, and the server-side stacks
// behind one interface (tcp_termination_kernel.cc, tcp_termination_lwip.cc).
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "control/tun/tun_device.h"

namespace airlock::bench::tcp_termination {

using airlock::control::TunDevice;
using Clock = std::chrono::steady_clock;

inline constexpr char kClientIp[] = "10.77.0.2";
inline constexpr char kServerIp[] = "10.77.0.1";
inline constexpr uint16_t kRrPort = 8080;    // one response per 400 B received (rr, conn)
inline constexpr uint16_t kBulkPort = 8081;  // streams the bulk size, then closes
inline constexpr size_t kRequestSize = 400;
inline constexpr size_t kResponseSize = 600;
inline constexpr size_t kChunk = 16 * 1024;
inline constexpr uint32_t kMtu =
    1420;  // WireGuard's inner MTU: the largest packet the ring carries
inline constexpr int kBurst = 64;

[[noreturn]] void die(const std::string& what);
std::string errno_text(const std::string& what);

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

// What both servers send and the client checks byte for byte.
struct Payloads {
  std::string request;
  std::string response;
  std::vector<uint8_t> chunk;  // the bulk stream repeats it
};
const Payloads& payloads();

struct NetnsTun {
  Fd ns;  // keeps the namespace alive
  std::optional<TunDevice> tun;
};
// A fresh anonymous namespace whose only interface is a TUN holding `address`/24, set up with
// the control plane's own TunDevice code. txqueuelen 0 keeps the kernel's default (500).
NetnsTun netns_with_tun(const std::string& name, const char* address, uint32_t txqueuelen);
// Network namespaces are per thread: f runs on a new thread that has joined `ns`.
std::thread thread_in(int ns, std::function<void()> f);

// Holds client->server packets in the pump for a fixed time before delivering them: a round
// trip for both stacks alike (this kernel has no netem). Owned by the pump thread.
class DelayLine {
 public:
  explicit DelayLine(std::chrono::milliseconds delay) : delay_(delay) {}
  bool enabled() const { return delay_.count() > 0; }
  void push(std::span<const uint8_t> packet) {
    held_.push_back({Clock::now() + delay_, {packet.begin(), packet.end()}});
  }
  // A poll timeout: ms until the oldest packet is due, -1 if none is held.
  int timeout_ms() const {
    if (held_.empty()) return -1;
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(held_.front().due - Clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  }
  template <class Deliver>
  void release(Deliver&& deliver) {
    for (const auto now = Clock::now(); !held_.empty() && held_.front().due <= now;) {
      deliver(std::span<const uint8_t>(held_.front().bytes));
      held_.pop_front();
    }
  }

 private:
  struct Held {
    Clock::time_point due;
    std::vector<uint8_t> bytes;
  };
  std::chrono::milliseconds delay_;
  std::deque<Held> held_;
};

struct ServerOptions {
  uint64_t bulk_bytes = 0;
  uint32_t txqueuelen = 0;
  std::chrono::milliseconds delay{0};
};

struct Counts {
  uint64_t accepted, responses, bulk_bytes;
};

// A server-side stack fed by a pump from tunC. It runs from construction to destruction.
class Server {
 public:
  explicit Server(const ServerOptions& options)
      : options_(options), stop_(::eventfd(0, EFD_CLOEXEC)) {}
  virtual ~Server() = default;
  Counts counts() const { return {accepted_, responses_, bulk_bytes_}; }

 protected:
  void signal_stop() {
    const uint64_t one = 1;
    if (::write(stop_.get(), &one, sizeof(one)) != sizeof(one)) die(errno_text("eventfd"));
  }

  const ServerOptions options_;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> responses_{0};
  std::atomic<uint64_t> bulk_bytes_{0};
  Fd stop_;  // an eventfd the server's threads poll
};

// (a) The pump copies packets between tunC and tunS in a second namespace, whose kernel
// terminates TCP for an epoll server. one_thread: pump and server on one thread.
std::unique_ptr<Server> kernel_server(TunDevice& tunc, const ServerOptions& options,
                                      bool one_thread);
// (b) The pump feeds tunC's packets to an lwIP netif; a raw-API server answers.
std::unique_ptr<Server> lwip_server(TunDevice& tunc, const ServerOptions& options);
// lwIP's version and the build options that matter here, as the packaged headers set them.
std::string lwip_build_options();

}  // namespace airlock::bench::tcp_termination
