// WireGuard transport AEAD rates: BatchCrypto (IPsec-MB, as the worker uses it: in place, no
// AAD, bursts of 32) for every instruction-set path the CPU has, and libsodium's scalar
// ChaCha20-Poly1305 IETF as the reference line. In-cache buffers, one thread. bench_crypto is
// the plain-executable form of the same measurement whose median-burst figure the end-to-end
// benchmark uses; this one reports items/s and bytes/s in Google Benchmark's format.
#include <benchmark/benchmark.h>
#include <sodium.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "bench/aead_burst.h"
#include "dataplane/crypto_batch.h"

namespace {

using airlock::bench::AeadBurst;
using airlock::bench::kBurst;
using airlock::bench::wireguard_nonce;
using airlock::dp::BatchCrypto;

constexpr uint32_t kSizes[] = {64, 128, 512, 1420};

void set_rates(benchmark::State& state, uint32_t len) {
  const int64_t packets = state.iterations() * static_cast<int64_t>(kBurst);
  state.SetItemsProcessed(packets);
  state.SetBytesProcessed(packets * len);
}

void batch_encrypt(benchmark::State& state, BatchCrypto::Arch arch, uint32_t len) {
  std::optional<BatchCrypto> crypto = BatchCrypto::create(arch);
  if (!crypto) {
    state.SkipWithError("IPsec-MB manager unavailable");
    return;
  }
  AeadBurst burst(len);
  std::array<BatchCrypto::Op, kBurst> ops;
  for (auto _ : state) {
    for (size_t i = 0; i < kBurst; ++i) {
      ops[i] = {burst.data(i), len, burst.key(), burst.counter(i), burst.encrypt_tag(i)};
    }
    crypto->encrypt(ops);
    benchmark::ClobberMemory();
  }
  set_rates(state, len);
}

void batch_decrypt(benchmark::State& state, BatchCrypto::Arch arch, uint32_t len) {
  std::optional<BatchCrypto> crypto = BatchCrypto::create(arch);
  if (!crypto) {
    state.SkipWithError("IPsec-MB manager unavailable");
    return;
  }
  AeadBurst burst(len);
  std::array<BatchCrypto::Op, kBurst> ops;
  std::array<bool, kBurst> ok{};
  uint64_t round = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < kBurst; ++i) {
      ops[i] = {burst.data(i), len, burst.key(), burst.counter(i), burst.decrypt_tag(i, round)};
    }
    crypto->decrypt(ops, ok);
    for (bool verified : ok) {
      if (!verified) {
        state.SkipWithError("tag verification failed");
        return;
      }
    }
    ++round;
  }
  set_rates(state, len);
}

void sodium_encrypt(benchmark::State& state, uint32_t len) {
  AeadBurst burst(len);
  for (auto _ : state) {
    for (size_t i = 0; i < kBurst; ++i) {
      const auto nonce = wireguard_nonce(burst.counter(i));
      crypto_aead_chacha20poly1305_ietf_encrypt_detached(burst.data(i), burst.encrypt_tag(i),
                                                         nullptr, burst.data(i), len, nullptr, 0,
                                                         nullptr, nonce.data(), burst.key());
    }
    benchmark::ClobberMemory();
  }
  set_rates(state, len);
}

void sodium_decrypt(benchmark::State& state, uint32_t len) {
  AeadBurst burst(len);
  uint64_t round = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < kBurst; ++i) {
      const auto nonce = wireguard_nonce(burst.counter(i));
      if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(
              burst.data(i), nullptr, burst.data(i), len, burst.decrypt_tag(i, round), nullptr, 0,
              nonce.data(), burst.key()) != 0) {
        state.SkipWithError("tag verification failed");
        return;
      }
    }
    ++round;
  }
  set_rates(state, len);
}

// Benchmarks are registered at run time so that only the IPsec-MB paths this CPU supports
// appear, each under its own name.
void register_benchmarks() {
  constexpr BatchCrypto::Arch kArches[] = {BatchCrypto::Arch::kAvx512, BatchCrypto::Arch::kAvx2,
                                           BatchCrypto::Arch::kAvx, BatchCrypto::Arch::kSse};
  for (BatchCrypto::Arch arch : kArches) {
    std::optional<BatchCrypto> probe = BatchCrypto::create(arch);
    if (!probe) continue;
    const std::string suffix = "/ipsec_mb_" + std::string(probe->arch_name()) + "/";
    for (uint32_t len : kSizes) {
      benchmark::RegisterBenchmark(("BM_BatchDecrypt" + suffix + std::to_string(len)).c_str(),
                                   batch_decrypt, arch, len);
      benchmark::RegisterBenchmark(("BM_BatchEncrypt" + suffix + std::to_string(len)).c_str(),
                                   batch_encrypt, arch, len);
    }
  }
  for (uint32_t len : kSizes) {
    benchmark::RegisterBenchmark(("BM_SodiumDecrypt/" + std::to_string(len)).c_str(),
                                 sodium_decrypt, len);
    benchmark::RegisterBenchmark(("BM_SodiumEncrypt/" + std::to_string(len)).c_str(),
                                 sodium_encrypt, len);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) {
    std::fprintf(stderr, "sodium_init failed\n");
    return 1;
  }
  register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
