// Batched ChaCha20-Poly1305 for WireGuard transport data (nonce = 0^4 || LE64(counter), no AAD)
// through Intel IPsec-MB. One instance per worker thread: the IPsec-MB manager is not thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "dataplane/messages.h"

struct IMB_MGR;

namespace airlock::dp {

class BatchCrypto {
 public:
  // Instruction-set path of the IPsec-MB manager. kBest picks the fastest one the CPU supports
  // (AVX-512 > AVX2 > AVX > SSE); the others exist so tests and benchmarks can pin a path.
  enum class Arch { kBest, kSse, kAvx, kAvx2, kAvx512 };

  struct Op {
    uint8_t* data;  // plaintext or ciphertext, processed in place
    uint32_t len;   // bytes of data, not counting the tag
    // kKeyLen bytes. IPsec-MB's AVX2 path also loads the 16 bytes after the key (valgrind on
    // test_crypto_batch), so a key must sit inside a larger object, as in Keypair, never at the
    // end of a buffer.
    const uint8_t* key;
    uint64_t counter;  // nonce = 4 zero bytes || LE64(counter)
    uint8_t* tag;      // kTagLen bytes: written by encrypt, read by decrypt
  };

  // "best", "avx512", "avx2", "avx" or "sse" (as --crypto takes them); nullopt for anything else.
  static std::optional<Arch> arch_named(std::string_view name);

  // nullopt if the manager cannot be allocated or the CPU lacks the requested path.
  static std::optional<BatchCrypto> create(Arch arch = Arch::kBest);

  BatchCrypto(BatchCrypto&&) noexcept = default;
  BatchCrypto& operator=(BatchCrypto&&) noexcept = default;
  BatchCrypto(const BatchCrypto&) = delete;
  BatchCrypto& operator=(const BatchCrypto&) = delete;
  ~BatchCrypto() = default;

  std::string_view arch_name() const;

  // What is known to be wrong with this path; empty when nothing is. IPsec-MB 1.3's AVX-512 path
  // on a CPU without AVX-512 IFMA computes a wrong Poly1305 tag for about one message in five
  // million of 256 bytes or more: decrypt() settles those with libsodium, but encrypt() sends
  // them out with that tag, and the receiving peer drops them as forged.
  std::string_view caveat() const;

  // Encrypts every op in place and writes its tag. An op the library fails to process gets its
  // data and tag zeroed, so plaintext is never sent and the peer drops the packet.
  void encrypt(std::span<const Op> ops);

  // Decrypts in place; ok[i] = tag verified. A failed op has its data zeroed so no
  // unauthenticated plaintext is left behind. Requires ops.size() == ok.size().
  void decrypt(std::span<const Op> ops, std::span<bool> ok);

 private:
  // Equal to IMB_MAX_BURST_SIZE: a chunk always fits the manager's 256-job queue.
  static constexpr size_t kMaxChunk = 128;
  static constexpr size_t kIvLen = 12;

  struct MgrDeleter {
    void operator()(IMB_MGR* mgr) const;
  };

  BatchCrypto(std::unique_ptr<IMB_MGR, MgrDeleter> mgr, Arch arch);

  void encrypt_chunk(std::span<const Op> ops);
  void decrypt_chunk(std::span<const Op> ops, std::span<bool> ok);

  std::unique_ptr<IMB_MGR, MgrDeleter> mgr_;
  Arch arch_;
  // The library reads the IVs and writes decrypt tags asynchronously until a job completes, so
  // they live here rather than on the caller's stack.
  std::array<std::array<uint8_t, kIvLen>, kMaxChunk> ivs_{};
  std::array<std::array<uint8_t, kTagLen>, kMaxChunk> computed_tags_{};
  std::array<bool, kMaxChunk> completed_{};
};

}  // namespace airlock::dp
