#include "dataplane/crypto_prims.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace airlock::dp::crypto {
namespace {

// Missing algorithms or misuse of a fixed-size API are deployment or programming errors that no
// caller could recover from; failing loudly beats continuing with undefined output.
void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "airlock crypto_prims: %s\n", what);
  std::abort();
}

void ensure_sodium() {
  static const bool ready = sodium_init() >= 0;
  require(ready, "sodium_init failed");
}

// Fetched once per process (thread-safe static init); EVP_MD / EVP_MAC objects are immutable
// and may be shared by all threads. They live until exit on purpose: freeing them from a static
// destructor could race OpenSSL's own atexit cleanup.
const EVP_MD* blake2s256_md() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "BLAKE2S-256", nullptr);
  require(md != nullptr, "OpenSSL lacks BLAKE2S-256");
  return md;
}

EVP_MAC* fetched_mac(const char* name) {
  EVP_MAC* algo = EVP_MAC_fetch(nullptr, name, nullptr);
  require(algo != nullptr, "OpenSSL lacks a required MAC");
  return algo;
}

EVP_MAC* blake2s_mac_algo() {
  static EVP_MAC* algo = fetched_mac("BLAKE2SMAC");
  return algo;
}

EVP_MAC* hmac_algo() {
  static EVP_MAC* algo = fetched_mac("HMAC");
  return algo;
}

using MdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
using MacCtx = std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)>;

// OpenSSL treats a null key pointer as "keep the previous key"; an empty key must still be a key.
const unsigned char* key_ptr(std::span<const uint8_t> key) {
  static const unsigned char kEmpty = 0;
  return key.empty() ? &kEmpty : key.data();
}

void run_mac(EVP_MAC* algo, const OSSL_PARAM* params, std::span<uint8_t> out,
             std::span<const uint8_t> key, std::span<const uint8_t> data) {
  MacCtx ctx(EVP_MAC_CTX_new(algo), &EVP_MAC_CTX_free);
  require(ctx != nullptr, "EVP_MAC_CTX_new failed");
  size_t written = 0;
  bool ok = EVP_MAC_init(ctx.get(), key_ptr(key), key.size(), params) == 1 &&
            EVP_MAC_update(ctx.get(), data.data(), data.size()) == 1 &&
            EVP_MAC_final(ctx.get(), out.data(), &written, out.size()) == 1;
  require(ok && written == out.size(), "MAC computation failed");
}

std::array<uint8_t, 12> wireguard_nonce(uint64_t counter) {
  std::array<uint8_t, 12> nonce{};
  for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<uint8_t>(counter >> (8 * i));
  return nonce;
}

void kdf(std::initializer_list<std::span<uint8_t, kHashLen>> outputs, std::span<const uint8_t> key,
         std::span<const uint8_t> input) {
  Key prk;
  hmac(prk, key, input);
  // Block i is HMAC(prk, previous block || i); the first block has no predecessor.
  std::array<uint8_t, kHashLen + 1> block_input{};
  size_t previous_len = 0;
  uint8_t index = 1;
  for (std::span<uint8_t, kHashLen> out : outputs) {
    block_input[previous_len] = index++;
    hmac(out, prk, std::span<const uint8_t>(block_input.data(), previous_len + 1));
    std::copy(out.begin(), out.end(), block_input.begin());
    previous_len = kHashLen;
  }
  wipe(prk);
  wipe(block_input);
}

}  // namespace

void hash(std::span<uint8_t, kHashLen> out, std::initializer_list<std::span<const uint8_t>> parts) {
  MdCtx ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  require(ctx != nullptr, "EVP_MD_CTX_new failed");
  bool ok = EVP_DigestInit_ex2(ctx.get(), blake2s256_md(), nullptr) == 1;
  for (std::span<const uint8_t> part : parts) {
    ok = ok && EVP_DigestUpdate(ctx.get(), part.data(), part.size()) == 1;
  }
  unsigned int written = 0;
  ok = ok && EVP_DigestFinal_ex(ctx.get(), out.data(), &written) == 1;
  require(ok && written == out.size(), "BLAKE2s computation failed");
}

void mac(std::span<uint8_t, kMacLen> out, std::span<const uint8_t> key,
         std::span<const uint8_t> data) {
  require(key.size() == 16 || key.size() == 32, "MAC key must be 16 or 32 bytes");
  size_t out_len = kMacLen;
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &out_len),
                               OSSL_PARAM_construct_end()};
  run_mac(blake2s_mac_algo(), params, out, key, data);
}

void hmac(std::span<uint8_t, kHashLen> out, std::span<const uint8_t> key,
          std::span<const uint8_t> data) {
  char digest_name[] = "BLAKE2S-256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end()};
  run_mac(hmac_algo(), params, out, key, data);
}

void kdf1(std::span<uint8_t, kHashLen> t1, std::span<const uint8_t> key,
          std::span<const uint8_t> input) {
  kdf({t1}, key, input);
}

void kdf2(std::span<uint8_t, kHashLen> t1, std::span<uint8_t, kHashLen> t2,
          std::span<const uint8_t> key, std::span<const uint8_t> input) {
  kdf({t1, t2}, key, input);
}

void kdf3(std::span<uint8_t, kHashLen> t1, std::span<uint8_t, kHashLen> t2,
          std::span<uint8_t, kHashLen> t3, std::span<const uint8_t> key,
          std::span<const uint8_t> input) {
  kdf({t1, t2, t3}, key, input);
}

bool dh(std::span<uint8_t, 32> out, const Key& priv, const Key& pub) {
  ensure_sodium();
  if (crypto_scalarmult(out.data(), priv.data(), pub.data()) != 0) {
    wipe(out);
    return false;
  }
  return true;
}

Key public_from_private(const Key& priv) {
  ensure_sodium();
  Key pub{};
  // Clamping sets bit 254, so the base-point product is never the identity; the check only
  // satisfies libsodium's warn_unused_result.
  if (crypto_scalarmult_base(pub.data(), priv.data()) != 0) wipe(pub);
  return pub;
}

Key generate_private() {
  Key priv;
  random_bytes(priv);
  priv[0] &= 248;
  priv[31] &= 127;
  priv[31] |= 64;
  return priv;
}

void random_bytes(std::span<uint8_t> out) {
  ensure_sodium();
  randombytes_buf(out.data(), out.size());
}

void aead_encrypt(std::span<uint8_t> out, const Key& key, uint64_t counter,
                  std::span<const uint8_t> plaintext, std::span<const uint8_t> ad) {
  require(out.size() == plaintext.size() + kAeadTagLen, "aead_encrypt: output size");
  ensure_sodium();
  const auto nonce = wireguard_nonce(counter);
  crypto_aead_chacha20poly1305_ietf_encrypt(out.data(), nullptr, plaintext.data(), plaintext.size(),
                                            ad.data(), ad.size(), nullptr, nonce.data(),
                                            key.data());
}

bool aead_decrypt(std::span<uint8_t> out, const Key& key, uint64_t counter,
                  std::span<const uint8_t> ciphertext, std::span<const uint8_t> ad) {
  if (ciphertext.size() < kAeadTagLen || out.size() != ciphertext.size() - kAeadTagLen) {
    return false;
  }
  ensure_sodium();
  const auto nonce = wireguard_nonce(counter);
  return crypto_aead_chacha20poly1305_ietf_decrypt(out.data(), nullptr, nullptr, ciphertext.data(),
                                                   ciphertext.size(), ad.data(), ad.size(),
                                                   nonce.data(), key.data()) == 0;
}

void xaead_encrypt(std::span<uint8_t> out, const Key& key,
                   std::span<const uint8_t, kXNonceLen> nonce, std::span<const uint8_t> plaintext,
                   std::span<const uint8_t> ad) {
  require(out.size() == plaintext.size() + kAeadTagLen, "xaead_encrypt: output size");
  ensure_sodium();
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data(), nullptr, plaintext.data(),
                                             plaintext.size(), ad.data(), ad.size(), nullptr,
                                             nonce.data(), key.data());
}

bool xaead_decrypt(std::span<uint8_t> out, const Key& key,
                   std::span<const uint8_t, kXNonceLen> nonce, std::span<const uint8_t> ciphertext,
                   std::span<const uint8_t> ad) {
  if (ciphertext.size() < kAeadTagLen || out.size() != ciphertext.size() - kAeadTagLen) {
    return false;
  }
  ensure_sodium();
  return crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), nullptr, nullptr, ciphertext.data(),
                                                    ciphertext.size(), ad.data(), ad.size(),
                                                    nonce.data(), key.data()) == 0;
}

Tai64n tai64n(uint64_t unix_ns) {
  constexpr uint64_t kNsPerSecond = 1'000'000'000;
  constexpr uint64_t kTai64Epoch = 0x400000000000000aULL;  // TAI64 label of 1970 + TAI offset
  constexpr uint64_t kWhitenerMask = (1ULL << 24) - 1;
  const uint64_t seconds = kTai64Epoch + unix_ns / kNsPerSecond;
  const uint64_t nanos = (unix_ns % kNsPerSecond) & ~kWhitenerMask;
  Tai64n out{};
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(seconds >> (56 - 8 * i));
  for (int i = 0; i < 4; ++i) out[8 + i] = static_cast<uint8_t>(nanos >> (24 - 8 * i));
  return out;
}

bool equal_ct(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

void wipe(std::span<uint8_t> secret) {
  sodium_memzero(secret.data(), secret.size());
}

}  // namespace airlock::dp::crypto
