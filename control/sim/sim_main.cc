// airlock-sim-upstream: a SIMULATED LLM provider on loopback (see control/sim/sim.h).
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <exception>

#include "control/sim/sim.h"

int main(int argc, char** argv) {
  namespace sim = airlock::control::sim;
  std::string error;
  bool help = false;
  const std::optional<sim::Options> options =
      sim::parse_options({argv + 1, static_cast<std::size_t>(argc - 1)}, error, help);
  if (help) {
    std::fputs(sim::kUsage, stdout);
    return 0;
  }
  if (!options) {
    std::fprintf(stderr, "airlock-sim-upstream: %s\n%s", error.c_str(), sim::kUsage);
    return 2;
  }
  // Blocked before any thread starts, so only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  try {
    sim::Server server(*options);
    const bool v6 = server.address().find(':') != std::string::npos;
    std::printf(v6 ? "listening on [%s]:%u\n" : "listening on %s:%u\n", server.address().c_str(),
                server.port());
    std::fflush(stdout);
    std::fprintf(stderr,
                 "airlock-sim-upstream: SIMULATED LLM provider (no real model is called) on "
                 "%s://%s:%u, %u thread(s)\n",
                 options->tls_cert_file.empty() ? "http" : "https", server.address().c_str(),
                 server.port(), options->threads);
    server.start();
    int signal = 0;
    sigwait(&stop_signals, &signal);
    server.stop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "airlock-sim-upstream: %s\n", e.what());
    return 1;
  }
  return 0;
}
