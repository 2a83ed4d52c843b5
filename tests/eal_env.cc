#include "tests/eal_env.h"

#include <rte_eal.h>
#include <rte_errno.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "dataplane/simd.h"

namespace airlock::test {

void ensure_eal() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* argv[] = {"airlock-test", "--no-huge",      "-m", "768", "--no-pci",
                          "--no-shconf",  "--no-telemetry", "-l", "0",   "--log-level=*:warning"};
    int argc = static_cast<int>(sizeof(argv) / sizeof(argv[0]));
    if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) {
      std::fprintf(stderr, "EAL init failed: %s\n", rte_strerror(rte_errno));
      std::abort();
    }
    // As airlock-dataplane does, so that the tests run the vector code it runs.
    dp::use_avx512_where_available();
  });
}

}  // namespace airlock::test
