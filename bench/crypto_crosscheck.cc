// Seals random WireGuard transport messages with IPsec-MB (BatchCrypto::encrypt, which passes on
// whatever tag the library computes) and with libsodium, and counts the messages where they
// differ. It found IPsec-MB 1.3's AVX-512 Poly1305 giving a wrong tag to about one message in
// five million on CPUs without AVX-512 IFMA (bench/README.md); run it on a deployment's CPU to
// see whether its path is affected. Exit status 1 when any path disagreed with libsodium.
//
// Usage: crypto_crosscheck [--seconds S] [--length BYTES] [--path best|avx512|avx2|avx|sse]
//   Without --path every path the CPU has is checked, S seconds each.
#include <sodium.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/aead_burst.h"
#include "dataplane/crypto_batch.h"

namespace {

using airlock::bench::wireguard_nonce;
using airlock::dp::BatchCrypto;
using airlock::dp::kKeyLen;
using airlock::dp::kTagLen;
using Arch = BatchCrypto::Arch;

constexpr size_t kBurst = 32;
constexpr uint64_t kMessagesPerKey = 1 << 20;

struct Options {
  double seconds = 30;
  uint32_t length = 1424;
  std::optional<Arch> path;
};

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--seconds") {
      o.seconds = std::strtod(value, nullptr);
      if (!(o.seconds > 0)) return std::nullopt;
    } else if (flag == "--length") {
      o.length = static_cast<uint32_t>(std::strtoul(value, nullptr, 10));
      if (o.length == 0 || o.length > 9000) return std::nullopt;
    } else if (flag == "--path") {
      o.path = BatchCrypto::arch_named(value);
      if (!o.path) return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  if (argc % 2 == 0) return std::nullopt;
  return o;
}

struct Tally {
  uint64_t messages = 0;
  uint64_t wrong_tags = 0;
  uint64_t wrong_ciphertexts = 0;
};

Tally crosscheck(BatchCrypto& crypto, uint32_t length, double seconds) {
  // The key sits inside a larger object: IPsec-MB's AVX2 path reads past it (crypto_batch.h).
  std::array<uint8_t, 2 * kKeyLen> key{};
  std::vector<std::vector<uint8_t>> plaintexts(kBurst, std::vector<uint8_t>(length));
  std::vector<std::vector<uint8_t>> ours(kBurst, std::vector<uint8_t>(length + kTagLen));
  std::vector<uint8_t> reference(length + kTagLen);
  std::array<BatchCrypto::Op, kBurst> ops;
  Tally tally;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (tally.messages % kMessagesPerKey == 0) {
      randombytes_buf(key.data(), kKeyLen);
      for (std::vector<uint8_t>& p : plaintexts) randombytes_buf(p.data(), p.size());
    }
    for (size_t i = 0; i < kBurst; ++i) {
      // A fresh first block changes every Poly1305 accumulator after it, at a fraction of the
      // cost of drawing the whole message again.
      randombytes_buf(plaintexts[i].data(), std::min<size_t>(length, 16));
      std::memcpy(ours[i].data(), plaintexts[i].data(), length);
      ops[i] = {ours[i].data(), length, key.data(), tally.messages + i, ours[i].data() + length};
    }
    crypto.encrypt(ops);
    for (size_t i = 0; i < kBurst; ++i) {
      const auto nonce = wireguard_nonce(ops[i].counter);
      crypto_aead_chacha20poly1305_ietf_encrypt_detached(
          reference.data(), reference.data() + length, nullptr, plaintexts[i].data(), length,
          nullptr, 0, nullptr, nonce.data(), key.data());
      if (std::memcmp(ours[i].data(), reference.data(), length) != 0) ++tally.wrong_ciphertexts;
      if (std::memcmp(ours[i].data() + length, reference.data() + length, kTagLen) != 0) {
        ++tally.wrong_tags;
      }
    }
    tally.messages += kBurst;
  }
  return tally;
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Options> options = parse_options(argc, argv);
  if (!options) {
    std::fprintf(stderr,
                 "usage: crypto_crosscheck [--seconds S] [--length BYTES] "
                 "[--path best|avx512|avx2|avx|sse]\n");
    return 2;
  }
  if (sodium_init() < 0) {
    std::fprintf(stderr, "crypto_crosscheck: libsodium failed to initialise\n");
    return 1;
  }
  std::vector<Arch> paths;
  if (options->path) {
    paths.push_back(*options->path);
  } else {
    paths = {Arch::kAvx512, Arch::kAvx2, Arch::kAvx, Arch::kSse};
  }
  bool disagreed = false;
  for (Arch arch : paths) {
    std::optional<BatchCrypto> crypto = BatchCrypto::create(arch);
    if (!crypto) continue;
    const Tally t = crosscheck(*crypto, options->length, options->seconds);
    const std::string name(crypto->arch_name());
    std::printf("%-7s %u B: %llu messages, %llu wrong tags, %llu wrong ciphertexts\n", name.c_str(),
                options->length, static_cast<unsigned long long>(t.messages),
                static_cast<unsigned long long>(t.wrong_tags),
                static_cast<unsigned long long>(t.wrong_ciphertexts));
    disagreed = disagreed || t.wrong_tags != 0 || t.wrong_ciphertexts != 0;
  }
  return disagreed ? 1 : 0;
}
