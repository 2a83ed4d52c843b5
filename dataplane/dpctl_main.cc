// airlock-dpctl: reads the data plane's counters from shared memory and talks to its control
// socket. Exit codes: 0 ok, 1 the data plane answered with an error, 2 usage or connection.
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/control_socket.h"
#include "dataplane/stats.h"
#include "policy/policy.h"

namespace {

using namespace airlock::dp;

int usage() {
  std::fprintf(stderr,
               "usage: airlock-dpctl [--instance NAME] [--socket PATH] COMMAND\n"
               "  stats [--json]    counters: ports, workers, drops by reason, peers, rules\n"
               "  push FILE.alp     install a compiled policy; prints the running version\n"
               "  version           the running policy version\n");
  return 2;
}

int request(const std::string& socket, const std::string& command, std::span<const uint8_t> body) {
  std::string error;
  auto answer = control_request(socket, command, body, &error);
  if (!answer) {
    std::fprintf(stderr, "airlock-dpctl: %s\n", error.c_str());
    return 2;
  }
  bool ok = answer->starts_with("OK");
  std::fprintf(ok ? stdout : stderr, "%s\n", answer->c_str());
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string instance = "airlock";
  std::string socket;
  std::vector<std::string_view> rest;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if ((a == "--instance" || a == "--socket") && i + 1 < argc) {
      (a == "--instance" ? instance : socket) = argv[++i];
    } else {
      rest.push_back(a);
    }
  }
  if (socket.empty()) socket = "/run/airlock/" + instance + ".sock";
  if (rest.empty()) return usage();

  if (rest[0] == "stats") {
    std::string error;
    auto reader = StatsReader::open(instance + "-stats", &error);
    if (!reader) {
      std::fprintf(stderr, "airlock-dpctl: %s (is airlock-dataplane --instance %s running?)\n",
                   error.c_str(), instance.c_str());
      return 2;
    }
    bool json = rest.size() > 1 && rest[1] == "--json";
    auto snap = reader->snapshot();
    std::string out = json ? to_json(snap) : to_table(snap);
    std::fwrite(out.data(), 1, out.size(), stdout);
    if (json) std::fputc('\n', stdout);
    return 0;
  }
  if (rest[0] == "push" && rest.size() == 2) {
    std::string error;
    auto bytes = airlock::policy::read_file(std::string(rest[1]), &error);
    if (!bytes) {
      std::fprintf(stderr, "airlock-dpctl: %s\n", error.c_str());
      return 2;
    }
    return request(socket, "PUSH " + std::to_string(bytes->size()), *bytes);
  }
  if (rest[0] == "version") return request(socket, "VERSION", {});
  return usage();
}
