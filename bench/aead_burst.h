// A burst of in-place WireGuard transport AEAD buffers for the crypto benchmarks.
#pragma once

#include <sodium.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "dataplane/crypto_batch.h"

namespace airlock::bench {

inline constexpr size_t kBurst = 32;
inline constexpr uint64_t kFirstCounter = 1000;

inline std::array<uint8_t, 12> wireguard_nonce(uint64_t counter) {
  std::array<uint8_t, 12> nonce{};
  for (size_t i = 0; i < 8; ++i) nonce[4 + i] = static_cast<uint8_t>(counter >> (8 * i));
  return nonce;
}

// kBurst packets of one size. In-place decryption turns a buffer holding C into P and the next
// round turns P back into C (ChaCha20 is an XOR stream), so each packet keeps the tag over C
// and the tag over P: using them alternately makes every decrypt round authenticate, as real
// traffic does, without copying ciphertext back in between rounds.
class AeadBurst {
 public:
  explicit AeadBurst(uint32_t len) : len_(len), storage_(kBurst * len) {
    randombytes_buf(key_.data(), key_.size());
    randombytes_buf(storage_.data(), storage_.size());
    for (size_t i = 0; i < kBurst; ++i) {
      seal(i, tags_over_c_[i].data());  // buffer: P -> C
      seal(i, tags_over_p_[i].data());  // buffer: C -> P
    }
  }

  uint32_t len() const { return len_; }
  uint8_t* data(size_t i) { return storage_.data() + i * len_; }
  uint64_t counter(size_t i) const { return kFirstCounter + i; }
  const uint8_t* key() const { return key_.data(); }
  // The tag that authenticates what the buffer holds in decrypt round `round`.
  uint8_t* decrypt_tag(size_t i, uint64_t round) {
    return round % 2 == 0 ? tags_over_p_[i].data() : tags_over_c_[i].data();
  }
  uint8_t* encrypt_tag(size_t i) { return tags_over_c_[i].data(); }

 private:
  void seal(size_t i, uint8_t* tag) {
    const auto nonce = wireguard_nonce(counter(i));
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        data(i), tag, nullptr, data(i), len_, nullptr, 0, nullptr, nonce.data(), key_.data());
  }

  uint32_t len_;
  std::vector<uint8_t> storage_;
  std::array<uint8_t, dp::kKeyLen> key_{};
  std::array<std::array<uint8_t, dp::kTagLen>, kBurst> tags_over_c_{};
  std::array<std::array<uint8_t, dp::kTagLen>, kBurst> tags_over_p_{};
};

}  // namespace airlock::bench
