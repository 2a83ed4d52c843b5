// Helpers shared by the policy manager, admin API and airlockctl tests: policy texts, a scratch
// directory and a fake data plane that runs the data plane's real control socket code.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "dataplane/control_socket.h"
#include "policy/policy.h"

namespace airlock::testing {

inline std::string test_key(uint8_t fill) {
  policy::Key key;
  key.fill(fill);
  return policy::encode_key_base64(key);
}

// A valid policy: alice (.2, with a preshared key) and bob (.3), gateway .1, one rule and one
// test. `extra_tests` is spliced into the "tests" array.
inline std::string demo_policy(uint64_t version, const std::string& extra_tests = "") {
  return "// Airlock test policy\n"
         "{\n"
         "  \"version\": " +
         std::to_string(version) +
         ",\n"
         "  \"gateway\": [\"100.80.0.1/32\"],\n"
         "  /* the sandboxes */\n"
         "  \"peers\": [\n"
         "    // alice's laptop\n"
         "    {\"user\": \"alice\", \"public_key\": \"" +
         test_key(1) +
         "\",\n"
         "     \"preshared_key\": \"" +
         test_key(9) +
         "\", \"allowed_ips\": [\"100.80.0.2/32\"]},\n"
         "    {\"user\": \"bob\", \"tags\": [\"ci\"], \"public_key\": \"" +
         test_key(2) +
         "\",\n"
         "     \"allowed_ips\": [\"100.80.0.3/32\"]}  // bob's runner\n"
         "  ],\n"
         "  \"rules\": [\n"
         "    {\"name\": \"gateway\", \"from\": [\"*\"], \"to\": [\"100.80.0.1/32\"], \"proto\": "
         "\"tcp\",\n"
         "     \"ports\": \"80\", \"action\": \"punt\"}\n"
         "  ],\n"
         "  \"tests\": [\n"
         "    {\"from\": \"user:alice\", \"to\": \"100.80.0.1\", \"proto\": \"tcp\", \"port\": "
         "80,\n"
         "     \"expect\": \"allow\"}" +
         extra_tests +
         "\n"
         "  ]\n"
         "}\n";
}

// A test entry that the demo policy fails: alice may not reach bob over ssh.
inline const std::string kFailingTest =
    ",\n    {\"from\": \"user:alice\", \"to\": \"100.80.0.3\", \"proto\": \"tcp\", \"port\": 22,\n"
    "     \"expect\": \"allow\"}";

class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/airlock-admin-XXXXXX";
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return std::move(out).str();
}

inline void write_all(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// airlock-dataplane's side of the control socket: pushes are loaded with load_policy and refused
// when older than the running one, as the data plane does.
class FakeDataPlane {
 public:
  explicit FakeDataPlane(const std::string& socket_path) {
    std::string error;
    socket_ = dp::ControlSocket::start(socket_path, &error);
    if (!socket_) std::abort();
    thread_ = std::jthread([this](std::stop_token stop) {
      while (!stop.stop_requested()) {
        if (auto req = socket_->take()) socket_->reply(answer(*req));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  ~FakeDataPlane() {
    thread_.request_stop();
    thread_.join();
  }

  std::atomic<uint64_t> running{0};
  std::atomic<int> pushes{0};
  std::atomic<bool> refuse{false};

 private:
  std::string answer(const dp::ControlRequest& req) {
    if (req.command == "VERSION") return "OK " + std::to_string(running.load());
    ++pushes;
    if (refuse) return "ERR no room for the new tables";
    std::string error;
    auto loaded = policy::load_policy(req.body, &error);
    if (!loaded) return "ERR " + error;
    if (loaded->version() < running) return "ERR policy version is older than the running one";
    running = loaded->version();
    return "OK " + std::to_string(running.load());
  }

  std::unique_ptr<dp::ControlSocket> socket_;
  std::jthread thread_;
};

}  // namespace airlock::testing
