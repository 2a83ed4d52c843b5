#include "dataplane/simd.h"

#include <rte_cpuflags.h>

// DPDK 22.11's rte_vect.h declares these without C linkage for C++.
extern "C" {
#include <rte_vect.h>
}

namespace airlock::dp {

unsigned use_avx512_where_available() {
  if (rte_cpu_get_flag_enabled(RTE_CPUFLAG_AVX512F) == 1) {
    // Fails only when the command line forced a width, which then stays.
    rte_vect_set_max_simd_bitwidth(RTE_VECT_SIMD_512);
  }
  return rte_vect_get_max_simd_bitwidth();
}

}  // namespace airlock::dp
