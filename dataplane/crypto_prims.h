// WireGuard's cryptographic primitives (whitepaper §5.4, wireguard.md §1.1) for the handshake
// slow path. X25519 and the (X)ChaCha20-Poly1305 AEADs come from libsodium; BLAKE2s, which
// libsodium lacks, comes from OpenSSL 3. All functions are thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

namespace airlock::dp::crypto {

using Key = std::array<uint8_t, 32>;
using Tai64n = std::array<uint8_t, 12>;

inline constexpr size_t kHashLen = 32;
inline constexpr size_t kMacLen = 16;
inline constexpr size_t kAeadTagLen = 16;
inline constexpr size_t kXNonceLen = 24;

// HASH: BLAKE2s-256 over the concatenation of `parts`.
void hash(std::span<uint8_t, kHashLen> out, std::initializer_list<std::span<const uint8_t>> parts);

// MAC: keyed BLAKE2s with a 16-byte output; `key` is 16 or 32 bytes (other sizes abort).
void mac(std::span<uint8_t, kMacLen> out, std::span<const uint8_t> key,
         std::span<const uint8_t> data);

// HMAC (RFC 2104) over BLAKE2s-256.
void hmac(std::span<uint8_t, kHashLen> out, std::span<const uint8_t> key,
          std::span<const uint8_t> data);

// HKDF chain of wireguard.md §1.1: t0 = HMAC(key, input), t1 = HMAC(t0, 0x01),
// t(i) = HMAC(t0, t(i-1) || i). kdfN returns t1..tN.
void kdf1(std::span<uint8_t, kHashLen> t1, std::span<const uint8_t> key,
          std::span<const uint8_t> input);
void kdf2(std::span<uint8_t, kHashLen> t1, std::span<uint8_t, kHashLen> t2,
          std::span<const uint8_t> key, std::span<const uint8_t> input);
void kdf3(std::span<uint8_t, kHashLen> t1, std::span<uint8_t, kHashLen> t2,
          std::span<uint8_t, kHashLen> t3, std::span<const uint8_t> key,
          std::span<const uint8_t> input);

// X25519. Returns false (and zeroes `out`) when the result is all zero, i.e. `pub` is a
// low-order point; the handshake must then be aborted.
[[nodiscard]] bool dh(std::span<uint8_t, 32> out, const Key& priv, const Key& pub);
Key public_from_private(const Key& priv);
// A fresh random, clamped private key.
Key generate_private();

// Cryptographically secure random bytes (libsodium's CSPRNG).
void random_bytes(std::span<uint8_t> out);

// ChaCha20-Poly1305 (RFC 8439) with WireGuard's nonce: 4 zero bytes || LE64(counter).
// `out` must hold plaintext.size() + 16 bytes (encrypt; a wrong size is a programming error and
// aborts) or ciphertext.size() - 16 bytes (decrypt). aead_decrypt returns false on a tag
// mismatch or a size error.
void aead_encrypt(std::span<uint8_t> out, const Key& key, uint64_t counter,
                  std::span<const uint8_t> plaintext, std::span<const uint8_t> ad);
[[nodiscard]] bool aead_decrypt(std::span<uint8_t> out, const Key& key, uint64_t counter,
                                std::span<const uint8_t> ciphertext, std::span<const uint8_t> ad);

// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) with a 24-byte nonce; sizes as above.
void xaead_encrypt(std::span<uint8_t> out, const Key& key,
                   std::span<const uint8_t, kXNonceLen> nonce, std::span<const uint8_t> plaintext,
                   std::span<const uint8_t> ad);
[[nodiscard]] bool xaead_decrypt(std::span<uint8_t> out, const Key& key,
                                 std::span<const uint8_t, kXNonceLen> nonce,
                                 std::span<const uint8_t> ciphertext, std::span<const uint8_t> ad);

// TAI64N label of a Unix time in nanoseconds, with the nanoseconds rounded down to a multiple
// of 2^24 so the label does not leak a precise clock to an observer of the handshake.
Tai64n tai64n(uint64_t unix_ns);

// Constant-time equality of two equally long byte strings (false when lengths differ).
[[nodiscard]] bool equal_ct(std::span<const uint8_t> a, std::span<const uint8_t> b);

// Wipes secret material so the compiler cannot elide the store.
void wipe(std::span<uint8_t> secret);

}  // namespace airlock::dp::crypto
