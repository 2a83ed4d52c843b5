// BatchCrypto against libsodium's ChaCha20-Poly1305 (an independent implementation) and the
// WireGuard transport vectors of wireguard.md §2.2.
#include "dataplane/crypto_batch.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace airlock::dp {
namespace {

using Bytes = std::vector<uint8_t>;
using Key = std::array<uint8_t, kKeyLen>;
using Arch = BatchCrypto::Arch;

constexpr uint32_t kMixedLengths[] = {0, 1, 15, 16, 17, 63, 64, 65, 511, 1420, 1500, 9000};

// A transport-data payload laid out as on the wire: data immediately followed by the tag.
struct Packet {
  Bytes buf;
  Key key;
  uint64_t counter;

  uint32_t len() const { return static_cast<uint32_t>(buf.size() - kTagLen); }
  uint8_t* data() { return buf.data(); }
  uint8_t* tag() { return buf.data() + len(); }
  Bytes payload() const { return Bytes(buf.begin(), buf.end() - kTagLen); }
  BatchCrypto::Op op() { return {data(), len(), key.data(), counter, tag()}; }
};

std::array<uint8_t, 12> wireguard_nonce(uint64_t counter) {
  std::array<uint8_t, 12> nonce{};
  for (size_t i = 0; i < 8; ++i) nonce[4 + i] = static_cast<uint8_t>(counter >> (8 * i));
  return nonce;
}

// Ciphertext || tag as libsodium produces it.
Bytes sodium_seal(const Bytes& plaintext, const Key& key, uint64_t counter) {
  Bytes out(plaintext.size() + kTagLen);
  const auto nonce = wireguard_nonce(counter);
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(out.data(), out.data() + plaintext.size(),
                                                     nullptr, plaintext.data(), plaintext.size(),
                                                     nullptr, 0, nullptr, nonce.data(), key.data());
  return out;
}

Bytes from_hex(const std::string& hex) {
  Bytes out(hex.size() / 2);
  size_t len = 0;
  EXPECT_EQ(sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &len, nullptr),
            0);
  out.resize(len);
  return out;
}

Key key_from_hex(const std::string& hex) {
  const Bytes bytes = from_hex(hex);
  Key key{};
  std::copy_n(bytes.begin(), std::min(bytes.size(), key.size()), key.begin());
  return key;
}

class Random {
 public:
  explicit Random(uint64_t seed) : engine_(seed) {}
  Bytes bytes(size_t n) {
    Bytes out(n);
    std::generate(out.begin(), out.end(), [&] { return static_cast<uint8_t>(engine_()); });
    return out;
  }
  Key key() {
    Key key;
    std::generate(key.begin(), key.end(), [&] { return static_cast<uint8_t>(engine_()); });
    return key;
  }
  uint64_t counter() { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

// Plaintext packets (tag area zeroed) with random contents, keys and counters.
std::vector<Packet> random_plaintexts(std::span<const uint32_t> lengths, Random& rng) {
  std::vector<Packet> packets;
  for (uint32_t len : lengths) {
    Bytes buf = rng.bytes(len);
    buf.resize(len + kTagLen, 0);
    packets.push_back({std::move(buf), rng.key(), rng.counter()});
  }
  return packets;
}

// The same packets sealed by libsodium, ready to be decrypted.
std::vector<Packet> sealed_by_sodium(const std::vector<Packet>& plaintexts) {
  std::vector<Packet> sealed;
  for (const Packet& p : plaintexts) {
    sealed.push_back({sodium_seal(p.payload(), p.key, p.counter), p.key, p.counter});
  }
  return sealed;
}

std::vector<BatchCrypto::Op> ops_of(std::vector<Packet>& packets) {
  std::vector<BatchCrypto::Op> ops;
  for (Packet& p : packets) ops.push_back(p.op());
  return ops;
}

std::vector<uint32_t> repeat_lengths(size_t count) {
  std::vector<uint32_t> lengths;
  for (size_t i = 0; i < count; ++i) lengths.push_back(kMixedLengths[i % std::size(kMixedLengths)]);
  return lengths;
}

std::string arch_label(const testing::TestParamInfo<Arch>& info) {
  switch (info.param) {
    case Arch::kBest:
      return "Best";
    case Arch::kSse:
      return "Sse";
    case Arch::kAvx:
      return "Avx";
    case Arch::kAvx2:
      return "Avx2";
    case Arch::kAvx512:
      return "Avx512";
  }
  return "Unknown";
}

class BatchCryptoTest : public testing::TestWithParam<Arch> {
 protected:
  void SetUp() override {
    ASSERT_GE(sodium_init(), 0);
    crypto_ = BatchCrypto::create(GetParam());
    if (!crypto_) GTEST_SKIP() << "CPU lacks this IPsec-MB path";
  }

  // Decrypts everything and returns the ok flags as a plain vector (std::vector<bool> has no span).
  std::vector<int> decrypt_all(std::vector<Packet>& packets) {
    const auto ops = ops_of(packets);
    auto ok = std::make_unique<bool[]>(ops.size());
    std::fill_n(ok.get(), ops.size(), true);
    crypto_->decrypt(ops, std::span<bool>(ok.get(), ops.size()));
    return std::vector<int>(ok.get(), ok.get() + ops.size());
  }

  std::optional<BatchCrypto> crypto_;
  Random rng_{0x5eed'a1b0'c0de'2024};
};

TEST_P(BatchCryptoTest, EncryptMatchesLibsodiumForMixedLengths) {
  std::vector<Packet> packets = random_plaintexts(kMixedLengths, rng_);
  const std::vector<Packet> expected = sealed_by_sodium(packets);

  crypto_->encrypt(ops_of(packets));

  for (size_t i = 0; i < packets.size(); ++i) {
    EXPECT_EQ(packets[i].buf, expected[i].buf) << "length " << packets[i].len();
  }
}

TEST_P(BatchCryptoTest, DecryptsLibsodiumCiphertexts) {
  const std::vector<Packet> plaintexts = random_plaintexts(kMixedLengths, rng_);
  std::vector<Packet> packets = sealed_by_sodium(plaintexts);

  const std::vector<int> ok = decrypt_all(packets);

  for (size_t i = 0; i < packets.size(); ++i) {
    EXPECT_TRUE(ok[i]) << "length " << packets[i].len();
    EXPECT_EQ(packets[i].payload(), plaintexts[i].payload()) << "length " << packets[i].len();
  }
}

TEST_P(BatchCryptoTest, TamperedOpsFailAloneAndAreZeroed) {
  const std::vector<Packet> plaintexts = random_plaintexts(repeat_lengths(16), rng_);
  std::vector<Packet> packets = sealed_by_sodium(plaintexts);
  const size_t kFlippedCiphertext = 2, kFlippedTag = 5, kWrongCounter = 7, kWrongKey = 9,
               kFlippedKeepaliveTag = 12;
  ASSERT_EQ(packets[kFlippedKeepaliveTag].len(), 0u);
  packets[kFlippedCiphertext].data()[packets[kFlippedCiphertext].len() / 2] ^= 0x10;
  packets[kFlippedTag].tag()[kTagLen - 1] ^= 0x01;
  packets[kWrongCounter].counter += 1;
  packets[kWrongKey].key[0] ^= 0x80;
  packets[kFlippedKeepaliveTag].tag()[0] ^= 0x01;
  const std::vector<size_t> tampered = {kFlippedCiphertext, kFlippedTag, kWrongCounter, kWrongKey,
                                        kFlippedKeepaliveTag};

  const std::vector<int> ok = decrypt_all(packets);

  for (size_t i = 0; i < packets.size(); ++i) {
    if (std::find(tampered.begin(), tampered.end(), i) != tampered.end()) {
      EXPECT_FALSE(ok[i]) << "op " << i;
      EXPECT_EQ(packets[i].payload(), Bytes(packets[i].len(), 0)) << "op " << i;
    } else {
      EXPECT_TRUE(ok[i]) << "op " << i;
      EXPECT_EQ(packets[i].payload(), plaintexts[i].payload()) << "op " << i;
    }
  }
}

TEST_P(BatchCryptoTest, WireGuardTransportVectors) {
  // wireguard.md §2.2: the messages minus their 16-byte header {type, receiver, counter}.
  const Key t1 = key_from_hex("18d06222ad7529a6edf847c4bd79fdc5f62e05c69f5d198bf3faf7603f7dd624");
  const Key t2 = key_from_hex("095bf4bc6b19fd768a9984687b2b64acf3c0d975cdaab8b49565108a5903574b");
  const Bytes keepalive = from_hex("1feb177a7643efba90acd9cdfede8cdd");
  const Bytes data = from_hex("94382534b501ac9ba4e116383ef2ff426e80dabbff3e73bc6e15524401c29ffb");
  Bytes counting(16);
  for (size_t i = 0; i < counting.size(); ++i) counting[i] = static_cast<uint8_t>(i);
  std::vector<Packet> packets = {{keepalive, t1, 0}, {data, t2, 1}};

  EXPECT_EQ(decrypt_all(packets), (std::vector<int>{1, 1}));
  EXPECT_EQ(packets[1].payload(), counting);

  crypto_->encrypt(ops_of(packets));
  EXPECT_EQ(packets[0].buf, keepalive);
  EXPECT_EQ(packets[1].buf, data);
}

// Messages whose Poly1305 tag IPsec-MB 1.3's AVX-512 path (CPUs without IFMA) gets wrong, found
// by sealing random 256-byte messages with libsodium: 64 random bytes, then zeros. Every path
// must still accept them, and hand back the plaintext.
TEST_P(BatchCryptoTest, DecryptsMessagesWhoseTagTheAvx512PathGetsWrong) {
  struct Case {
    uint64_t counter;
    const char* key;
    const char* head;  // the first 64 bytes; the other 192 are zero
  };
  const Case cases[] = {
      {3166070, "0c132436f9db8ba73411276beccf30f0f6fcd00edd7a0a58433809f7c04b32d9",
       "2e30776fd277e1827ec22ea17fd6e6ccda203ee5a1c290a833fb13c836567f26"
       "f0e7810cba4a4ac8046f488cdf0fc027badff5e5a4aa3db8678544917324f9f8"},
      {3913807, "0c132436f9db8ba73411276beccf30f0f6fcd00edd7a0a58433809f7c04b32d9",
       "daae16f82124931dcece7594b493cfca211b1a68994af6f4d1587086760a7328"
       "21c4e1ac780ad100bcc0d8954cc4279bd8d1ecad916ae5b842f0d0a6ecaeab1a"},
      {4000552, "5f4387c50bf6074d1c4e8b18d1221d94ac28841560956da2b5c24ba3882964b7",
       "0af9fb34d82d324941029f1429396f751499272608bb412054fff0a31a16a1d1"
       "8e5f55257fb122db7bcb588e6ad1fecd0b28c3aaffb74ad8875c185035ec07ba"},
      {8310285, "366460b97e939de7acc7f5f9daec6616ef6fc1fff21987a90092cf7eec38d4e7",
       "bf805dae68102bebde9754b4c0a7b4296bdaea6b945e898e94a0615b8b6045df"
       "cc69c4196415f6498ef865d2d9edd0b72e923cb348d90d9302acd827f25ef4e2"},
      {15571702, "5d203ec9c9e6c09b7483f97d225c40afdfc83654913fe294a0b6476442daff8e",
       "51e4bb480a1169ccd318dcf5898fafa14a134bfae27ff23d823e61c206bfa0e4"
       "cc367621c2eee35ece7a71db01aab8c7bf6ce4bb410d5b9fb9816d7de6add704"},
  };
  std::vector<Packet> plaintexts;
  for (const Case& c : cases) {
    Bytes message = from_hex(c.head);
    message.resize(256 + kTagLen, 0);
    plaintexts.push_back({std::move(message), key_from_hex(c.key), c.counter});
  }
  std::vector<Packet> packets = sealed_by_sodium(plaintexts);

  const std::vector<int> ok = decrypt_all(packets);

  for (size_t i = 0; i < packets.size(); ++i) {
    EXPECT_TRUE(ok[i]) << "counter " << packets[i].counter;
    EXPECT_EQ(packets[i].payload(), plaintexts[i].payload()) << "counter " << packets[i].counter;
  }
}

TEST_P(BatchCryptoTest, BatchLargerThanManagerQueue) {
  const std::vector<uint32_t> lengths = repeat_lengths(601);
  const size_t kTampered = 305;
  ASSERT_GT(lengths[kTampered], 0u);
  std::vector<Packet> packets = random_plaintexts(lengths, rng_);
  const std::vector<Packet> plaintexts = packets;
  const std::vector<Packet> expected = sealed_by_sodium(packets);

  crypto_->encrypt(ops_of(packets));
  for (size_t i = 0; i < packets.size(); ++i) ASSERT_EQ(packets[i].buf, expected[i].buf) << i;

  packets[kTampered].tag()[3] ^= 0x04;
  const std::vector<int> ok = decrypt_all(packets);
  for (size_t i = 0; i < packets.size(); ++i) {
    EXPECT_EQ(ok[i], i != kTampered) << "op " << i;
    if (i != kTampered) {
      EXPECT_EQ(packets[i].payload(), plaintexts[i].payload()) << "op " << i;
    }
  }
  EXPECT_EQ(packets[kTampered].payload(), Bytes(packets[kTampered].len(), 0));
}

TEST_P(BatchCryptoTest, MovedInstanceKeepsWorking) {
  BatchCrypto moved = std::move(*crypto_);
  std::vector<Packet> packets = random_plaintexts(kMixedLengths, rng_);
  const std::vector<Packet> expected = sealed_by_sodium(packets);

  moved.encrypt(ops_of(packets));

  for (size_t i = 0; i < packets.size(); ++i) EXPECT_EQ(packets[i].buf, expected[i].buf);
}

TEST_P(BatchCryptoTest, ReportsTheRequestedArch) {
  const std::string_view name = crypto_->arch_name();
  switch (GetParam()) {
    case Arch::kBest:
      EXPECT_FALSE(name.empty());
      break;
    case Arch::kSse:
      EXPECT_EQ(name, "sse");
      break;
    case Arch::kAvx:
      EXPECT_EQ(name, "avx");
      break;
    case Arch::kAvx2:
      EXPECT_EQ(name, "avx2");
      break;
    case Arch::kAvx512:
      EXPECT_EQ(name, "avx512");
      break;
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, BatchCryptoTest,
                         testing::Values(Arch::kBest, Arch::kSse, Arch::kAvx, Arch::kAvx2,
                                         Arch::kAvx512),
                         arch_label);

TEST(BatchCryptoBest, PrefersTheWidestSupportedPath) {
  const auto best = BatchCrypto::create();
  ASSERT_TRUE(best.has_value());
  for (Arch arch : {Arch::kAvx512, Arch::kAvx2, Arch::kAvx, Arch::kSse}) {
    const auto pinned = BatchCrypto::create(arch);
    if (!pinned) continue;
    EXPECT_EQ(best->arch_name(), pinned->arch_name());
    return;
  }
  FAIL() << "no IPsec-MB path available";
}

}  // namespace
}  // namespace airlock::dp
