#include "dataplane/control_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace airlock::dp {
namespace {

constexpr size_t kMaxBody = 64u << 20;
constexpr int kIoTimeoutMs = 10'000;

bool fill_address(const std::string& path, sockaddr_un* addr, std::string* error) {
  if (path.size() >= sizeof(addr->sun_path)) {
    *error = "control socket path too long: " + path;
    return false;
  }
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

bool wait_fd(int fd, short events) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, kIoTimeoutMs) == 1;
}

bool read_exact(int fd, uint8_t* buf, size_t n) {
  while (n > 0) {
    if (!wait_fd(fd, POLLIN)) return false;
    ssize_t k = ::read(fd, buf, n);
    if (k <= 0) return false;
    buf += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool write_all(int fd, const uint8_t* buf, size_t n) {
  while (n > 0) {
    if (!wait_fd(fd, POLLOUT)) return false;
    ssize_t k = ::send(fd, buf, n, MSG_NOSIGNAL);
    if (k <= 0) return false;
    buf += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

std::optional<std::string> read_line(int fd, size_t max) {
  std::string line;
  char c;
  while (line.size() < max) {
    if (!read_exact(fd, reinterpret_cast<uint8_t*>(&c), 1)) return std::nullopt;
    if (c == '\n') return line;
    line.push_back(c);
  }
  return std::nullopt;
}

void answer(int fd, const std::string& text) {
  std::string line = text + "\n";
  write_all(fd, reinterpret_cast<const uint8_t*>(line.data()), line.size());
}

}  // namespace

std::unique_ptr<ControlSocket> ControlSocket::start(const std::string& path, std::string* error) {
  sockaddr_un addr;
  if (!fill_address(path, &addr, error)) return nullptr;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = "control socket: " + std::string(std::strerror(errno));
    return nullptr;
  }
  mode_t old = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old);
  if (rc != 0 || ::listen(fd, 8) != 0) {
    *error = "control socket " + path + ": " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  std::unique_ptr<ControlSocket> s(new ControlSocket(path, fd));
  s->thread_ = std::thread([p = s.get()] { p->serve(); });
  return s;
}

ControlSocket::ControlSocket(std::string path, int fd) : path_(std::move(path)), listen_fd_(fd) {}

ControlSocket::~ControlSocket() {
  stop_.store(true);
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::unlink(path_.c_str());
}

void ControlSocket::serve() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) != 1) continue;
    int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    serve_client(client);
    ::close(client);
  }
}

void ControlSocket::serve_client(int client) {
  auto line = read_line(client, 128);
  if (!line) return;
  ControlRequest req;
  std::string_view l = *line;
  if (l.starts_with("PUSH ")) {
    size_t n = 0;
    auto [p, ec] = std::from_chars(l.data() + 5, l.data() + l.size(), n);
    if (ec != std::errc() || p != l.data() + l.size() || n == 0 || n > kMaxBody) {
      answer(client, "ERR bad PUSH length");
      return;
    }
    req.command = "PUSH";
    req.body.resize(n);
    if (!read_exact(client, req.body.data(), n)) {
      answer(client, "ERR truncated policy body");
      return;
    }
  } else if (l == "VERSION") {
    req.command = "VERSION";
  } else {
    answer(client, "ERR unknown command");
    return;
  }
  std::unique_lock lock(mu_);
  pending_ = std::move(req);
  answer_.reset();
  cv_.wait(lock, [&] { return answer_.has_value() || stop_.load(); });
  if (!answer_) return;
  std::string text = std::move(*answer_);
  answer_.reset();
  lock.unlock();
  answer(client, text);
}

std::optional<ControlRequest> ControlSocket::take() {
  std::lock_guard lock(mu_);
  std::optional<ControlRequest> req = std::move(pending_);
  pending_.reset();
  return req;
}

void ControlSocket::reply(std::string text) {
  {
    std::lock_guard lock(mu_);
    answer_ = std::move(text);
  }
  cv_.notify_all();
}

std::optional<std::string> control_request(const std::string& path, const std::string& command,
                                           std::span<const uint8_t> body, std::string* error) {
  sockaddr_un addr;
  if (!fill_address(path, &addr, error)) return std::nullopt;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    *error = "cannot connect to " + path + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return std::nullopt;
  }
  std::string head = command + "\n";
  bool ok = write_all(fd, reinterpret_cast<const uint8_t*>(head.data()), head.size()) &&
            write_all(fd, body.data(), body.size());
  std::optional<std::string> line = ok ? read_line(fd, 4096) : std::nullopt;
  ::close(fd);
  if (!line) *error = "no answer from " + path;
  return line;
}

}  // namespace airlock::dp
