// The data plane's local control channel: a Unix stream socket (mode 0600) on which the
// control plane pushes compiled policies and asks for the running version.
//
// Protocol, one request per connection:
//   "PUSH <bytes>\n" followed by exactly <bytes> of a compiled policy
//   "VERSION\n"
// Answer, one line: "OK <policy version>\n" or "ERR <message>\n".
//
// A thread does the socket I/O so a slow client never stalls the control lcore; requests are
// taken and answered on the control lcore, which is where policies may be swapped.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace airlock::dp {

struct ControlRequest {
  std::string command;  // "PUSH" or "VERSION"
  std::vector<uint8_t> body;
};

class ControlSocket {
 public:
  static std::unique_ptr<ControlSocket> start(const std::string& path, std::string* error);
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

  // The waiting request, if any. Its client waits until reply() is called, which may be many
  // loops of the control lcore later (a policy compiles on another thread); no other request
  // arrives meanwhile, since requests are served one at a time.
  std::optional<ControlRequest> take();
  void reply(std::string text);

 private:
  ControlSocket(std::string path, int fd);
  void serve();
  void serve_client(int client);

  std::string path_;
  int listen_fd_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<ControlRequest> pending_;
  std::optional<std::string> answer_;
  std::thread thread_;
};

// Client side: sends one request and returns the answer line (without the newline).
std::optional<std::string> control_request(const std::string& path, const std::string& command,
                                           std::span<const uint8_t> body, std::string* error);

}  // namespace airlock::dp
