// One EAL per test binary: rte_eal_init may only run once per process, so every DPDK-using
// test calls this instead of initialising EAL itself.
#pragma once

namespace airlock::test {

// Initialises EAL with --no-huge and no shared config so test binaries can run in parallel.
// Aborts the test binary with a message if EAL cannot start.
void ensure_eal();

}  // namespace airlock::test
