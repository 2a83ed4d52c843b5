// Throughput of the shared-memory ring path between the data plane and the control plane: one
// producer thread (the data plane's side: copy into slots, submit in bursts) and one consumer
// thread on a second mapping of the same region (the control plane's side), as packets/s and
// Gbit/s per packet size. The copy into the slot is included because the real path does it.
//   bench_ring [--seconds S]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/ring.h"

namespace {

using airlock::dp::Direction;
using airlock::dp::PacketChannel;

struct Result {
  double packets_per_second = 0;
  double gbit_per_second = 0;
};

Result run(uint32_t size, double seconds) {
  std::string error;
  const std::string name = "airlock-bench-ring-" + std::to_string(::getpid());
  auto producer = PacketChannel::create(name, 4096, 2048, &error);
  auto consumer = producer ? PacketChannel::attach(name, &error) : std::nullopt;
  if (!producer || !consumer) {
    std::fprintf(stderr, "bench_ring: %s\n", error.c_str());
    std::exit(1);
  }
  std::vector<uint8_t> packet(size, 0x45);
  std::vector<PacketChannel::OutPacket> burst(PacketChannel::kBurst, {7, packet});
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> checksum{0};  // keeps each packet's read from being optimised away
  std::thread reader([&] {
    uint64_t n = 0;
    uint64_t bytes = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      n += consumer->receive(Direction::kToGateway, PacketChannel::kBurst,
                             [&](uint32_t, std::span<const uint8_t> p) { bytes += p[0]; });
    }
    received = n;
    checksum = bytes;
  });
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 64; ++i) producer->send_burst(Direction::kToGateway, burst);
  }
  stop = true;
  reader.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double pps = static_cast<double>(received.load()) / elapsed;
  return {pps, pps * size * 8 / 1e9};
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  if (argc == 3 && std::string(argv[1]) == "--seconds") seconds = std::atof(argv[2]);
  std::printf("%-6s %14s %10s\n", "bytes", "packets/s", "Gbit/s");
  for (uint32_t size : {64u, 512u, 1420u}) {
    const Result r = run(size, seconds);
    std::printf("%-6u %14.0f %10.2f\n", size, r.packets_per_second, r.gbit_per_second);
  }
  return 0;
}
