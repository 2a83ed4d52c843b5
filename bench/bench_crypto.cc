// Crypto-only rates of WireGuard transport AEAD: BatchCrypto (IPsec-MB) against libsodium's
// scalar ChaCha20-Poly1305. In-place, in-cache buffers, bursts of 32 ops, one thread.
// Rates come from the median time of a 32-op burst (see ops_per_second).
//
// Usage: bench_crypto [--seconds X] [--all-arches]
#include <sodium.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bench/aead_burst.h"
#include "dataplane/crypto_batch.h"

namespace {

using airlock::bench::AeadBurst;
using airlock::bench::kBurst;
using airlock::bench::wireguard_nonce;
using airlock::dp::BatchCrypto;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kSizes[] = {64, 512, 1420};

struct Options {
  double seconds = 1.0;
  bool all_arches = false;
};

std::optional<Options> parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--seconds" && i + 1 < argc) {
      options.seconds = std::strtod(argv[++i], nullptr);
      if (options.seconds <= 0) return std::nullopt;
    } else if (arg == "--all-arches") {
      options.all_arches = true;
    } else {
      return std::nullopt;
    }
  }
  return options;
}

// Runs `burst(round)` back to back for `seconds`, timing each burst, and converts the median
// burst time into ops per second. The median rather than the total: the cores are shared with
// other processes, and a preempted burst should not count as slow crypto. nullopt if a burst
// reported a failure (a rate of broken crypto is worthless).
std::optional<double> ops_per_second(double seconds, const std::function<bool(uint64_t)>& burst) {
  std::vector<int64_t> burst_ns;
  burst_ns.reserve(1 << 20);
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  for (uint64_t round = 0; burst_ns.size() < burst_ns.capacity(); ++round) {
    const auto start = Clock::now();
    if (start >= deadline) break;
    if (!burst(round)) return std::nullopt;
    burst_ns.push_back(std::chrono::nanoseconds(Clock::now() - start).count());
  }
  if (burst_ns.empty()) return std::nullopt;
  const auto median = burst_ns.begin() + static_cast<ptrdiff_t>(burst_ns.size() / 2);
  std::nth_element(burst_ns.begin(), median, burst_ns.end());
  return static_cast<double>(kBurst) * 1e9 / static_cast<double>(std::max<int64_t>(*median, 1));
}

std::function<bool(uint64_t)> batch_encrypt(BatchCrypto& crypto, AeadBurst& w) {
  return [&crypto, &w, ops = std::vector<BatchCrypto::Op>(kBurst)](uint64_t) mutable {
    for (size_t i = 0; i < kBurst; ++i) {
      ops[i] = {w.data(i), w.len(), w.key(), w.counter(i), w.encrypt_tag(i)};
    }
    crypto.encrypt(ops);
    return true;
  };
}

std::function<bool(uint64_t)> batch_decrypt(BatchCrypto& crypto, AeadBurst& w) {
  return [&crypto, &w, ops = std::vector<BatchCrypto::Op>(kBurst),
          ok = std::array<bool, kBurst>{}](uint64_t round) mutable {
    for (size_t i = 0; i < kBurst; ++i) {
      ops[i] = {w.data(i), w.len(), w.key(), w.counter(i), w.decrypt_tag(i, round)};
    }
    crypto.decrypt(ops, ok);
    for (bool verified : ok) {
      if (!verified) return false;
    }
    return true;
  };
}

std::function<bool(uint64_t)> sodium_encrypt(AeadBurst& w) {
  return [&w](uint64_t) {
    for (size_t i = 0; i < kBurst; ++i) {
      const auto nonce = wireguard_nonce(w.counter(i));
      crypto_aead_chacha20poly1305_ietf_encrypt_detached(w.data(i), w.encrypt_tag(i), nullptr,
                                                         w.data(i), w.len(), nullptr, 0, nullptr,
                                                         nonce.data(), w.key());
    }
    return true;
  };
}

std::function<bool(uint64_t)> sodium_decrypt(AeadBurst& w) {
  return [&w](uint64_t round) {
    bool all_ok = true;
    for (size_t i = 0; i < kBurst; ++i) {
      const auto nonce = wireguard_nonce(w.counter(i));
      all_ok &= crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                    w.data(i), nullptr, w.data(i), w.len(), w.decrypt_tag(i, round), nullptr, 0,
                    nonce.data(), w.key()) == 0;
    }
    return all_ok;
  };
}

bool report(std::string_view impl, std::string_view op, uint32_t len, std::optional<double> rate) {
  if (!rate) {
    std::printf("%-18s %-8s %6u  FAILED: tag verification failed during the run\n",
                std::string(impl).c_str(), std::string(op).c_str(), len);
    return false;
  }
  std::printf("%-18s %-8s %6u %8.2f %8.2f %8.1f\n", std::string(impl).c_str(),
              std::string(op).c_str(), len, *rate / 1e6, *rate * len * 8 / 1e9, 1e9 / *rate);
  return true;
}

bool bench_batch(BatchCrypto& crypto, double seconds) {
  const std::string impl = "ipsec-mb " + std::string(crypto.arch_name());
  bool all_ok = true;
  for (uint32_t len : kSizes) {
    AeadBurst enc(len);
    all_ok &= report(impl, "encrypt", len, ops_per_second(seconds, batch_encrypt(crypto, enc)));
    AeadBurst dec(len);
    all_ok &= report(impl, "decrypt", len, ops_per_second(seconds, batch_decrypt(crypto, dec)));
  }
  return all_ok;
}

bool bench_sodium(double seconds) {
  bool all_ok = true;
  for (uint32_t len : kSizes) {
    AeadBurst enc(len);
    all_ok &= report("libsodium", "encrypt", len, ops_per_second(seconds, sodium_encrypt(enc)));
    AeadBurst dec(len);
    all_ok &= report("libsodium", "decrypt", len, ops_per_second(seconds, sodium_decrypt(dec)));
  }
  return all_ok;
}

std::vector<BatchCrypto> managers(bool all_arches) {
  std::vector<BatchCrypto> out;
  if (!all_arches) {
    if (auto best = BatchCrypto::create()) out.push_back(std::move(*best));
    return out;
  }
  for (auto arch : {BatchCrypto::Arch::kAvx512, BatchCrypto::Arch::kAvx2, BatchCrypto::Arch::kAvx,
                    BatchCrypto::Arch::kSse}) {
    if (auto crypto = BatchCrypto::create(arch)) out.push_back(std::move(*crypto));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Options> options = parse_options(argc, argv);
  if (!options) {
    std::fprintf(stderr, "usage: %s [--seconds X] [--all-arches]\n", argv[0]);
    return 2;
  }
  if (sodium_init() < 0) return 1;
  std::vector<BatchCrypto> cryptos = managers(options->all_arches);
  if (cryptos.empty()) {
    std::fprintf(stderr, "no usable IPsec-MB manager\n");
    return 1;
  }
  std::printf(
      "ChaCha20-Poly1305, in place, no AAD, burst %zu, %.2f s per point, rate from median burst "
      "time\n",
      kBurst, options->seconds);
  std::printf("%-18s %-8s %6s %8s %8s %8s\n", "impl", "op", "bytes", "Mpps", "Gbit/s", "ns/op");
  bool all_ok = true;
  for (BatchCrypto& crypto : cryptos) all_ok &= bench_batch(crypto, options->seconds);
  all_ok &= bench_sodium(options->seconds);
  return all_ok ? 0 : 1;
}
