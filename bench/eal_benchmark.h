// The main of the Google Benchmark binaries whose code keeps its tables in DPDK's EAL memory
// (rte_acl, rte_lpm).
#pragma once

#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::bench {

// Starts EAL as the unit tests do (--no-huge, no shared config) with `memory_mb` of memory and
// a per-process file prefix, so it can run beside other DPDK processes; arguments after "--"
// go to EAL (e.g. --log-level=lib.acl:debug). Calls `on_start` once EAL runs, then runs the
// benchmarks, then `release`, which frees what lives in EAL memory, before the EAL is cleaned up.
inline int run_on_eal(
    int argc, char** argv, std::string_view name, const char* memory_mb,
    const std::function<void()>& release, const std::function<void()>& on_start = [] {}) {
  const std::string prefix =
      "--file-prefix=bench-" + std::string(name) + "-" + std::to_string(getpid());
  std::vector<const char*> eal = {
      argv[0],       "--no-huge",      "-m", memory_mb, "--no-pci",
      "--no-shconf", "--no-telemetry", "-l", "0",       "--log-level=*:warning",
      prefix.c_str()};
  int bench_argc = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      eal.insert(eal.end(), argv + i + 1, argv + argc);
      bench_argc = i;
      break;
    }
  }
  if (rte_eal_init(static_cast<int>(eal.size()), const_cast<char**>(eal.data())) < 0) {
    std::fprintf(stderr, "EAL init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  on_start();
  benchmark::Initialize(&bench_argc, argv);
  if (benchmark::ReportUnrecognizedArguments(bench_argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  release();
  rte_eal_cleanup();
  return 0;
}

}  // namespace airlock::bench
