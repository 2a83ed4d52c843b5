// Process-wide DPDK vector settings for a data plane process; call once after rte_eal_init.
#pragma once

namespace airlock::dp {

// Lets DPDK's vector code use 512-bit registers on a CPU with AVX-512. EAL stops at 256 bits by
// default, which keeps rte_acl's classify on its AVX2 path; its AVX-512 path classified a burst
// of 32 keys about 6% faster against 100 rules and 15-25% faster against 10k and 100k
// (bench_acl, and bench_acl -- --force-max-simd-bitwidth=256 for the AVX2 path). The worker already
// runs IPsec-MB's AVX-512 code, so no new clock penalty comes with it. An explicit
// --force-max-simd-bitwidth wins. Returns the maximum SIMD width DPDK now uses, in bits.
unsigned use_avx512_where_available();

}  // namespace airlock::dp
