// Known-answer tests for the WireGuard primitives. Oracles: RFC 7693 App. A (BLAKE2s "abc"),
// RFC 8439 App. A.5 (ChaCha20-Poly1305 with a zero nonce prefix, i.e. WireGuard's layout),
// RFC 7748 §6.1 (X25519), draft-irtf-cfrg-xchacha-03 App. A.3.1 (XChaCha20-Poly1305),
// wireguard-go device/kdf_test.go (HMAC-BLAKE2s KDF) and wireguard.md §1.2 / §2.2.
#include "dataplane/crypto_prims.h"
#include "tests/hex.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace airlock::dp::crypto {
namespace {

using test::from_hex;
using test::key_from_hex;

std::vector<uint8_t> bytes_of(std::string_view text) {
  return {text.begin(), text.end()};
}

template <typename Container>
std::vector<uint8_t> vec(const Container& c) {
  return {c.begin(), c.end()};
}

TEST(Blake2s, Rfc7693AppendixAbc) {
  Key out;
  hash(out, {bytes_of("abc")});
  EXPECT_EQ(vec(out), from_hex("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"));
}

TEST(Blake2s, PartsAreConcatenated) {
  Key split;
  Key whole;
  hash(split, {bytes_of("a"), {}, bytes_of("bc")});
  hash(whole, {bytes_of("abc")});
  EXPECT_EQ(split, whole);
}

TEST(Blake2s, WireGuardInitialChainingKeyAndHash) {
  Key c0;
  hash(c0, {bytes_of("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")});
  EXPECT_EQ(vec(c0), from_hex("60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36"));
  Key h0;
  hash(h0, {c0, bytes_of("WireGuard v1 zx2c4 Jason@zx2c4.com")});
  EXPECT_EQ(vec(h0), from_hex("2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3"));
}

// wireguard.md §2.2: the initiation's mac1 (32-byte key) and mac2 (16-byte cookie key).
TEST(Blake2sMac, WireGuardVectorBothKeySizes) {
  const auto initiation = from_hex(
      "0100000044332211c67c4dc63cf6e5a8c9f9b03805497361dd4da613d03359d1474c07fa514734787db86cd6d6"
      "8628037466dc80bfa7d1e7f6ec7f5f485401b09a280c6dd08ef55a7e25e46903fa0c8bd9427e9e5b6f084155d1"
      "33108189d440ef8225511a06da66be4ac9c1b66c05139392b7799d653391d9e4a875694a169e5cf49df9000000"
      "00000000000000000000000000");
  ASSERT_EQ(initiation.size(), 148u);
  Key mac1_key;
  hash(mac1_key, {bytes_of("mac1----"), key_from_hex("7c486854dc4004f033c8ca26a5dc8cf158189d68e12"
                                                     "06b7104dd3d8531035c49")});
  EXPECT_EQ(vec(mac1_key),
            from_hex("91755f573aff3be689425c03e2336dc11e2994e48b1fa0d9cd2da1181c4c9291"));
  std::array<uint8_t, 16> mac1;
  mac(mac1, mac1_key, std::span(initiation).first(116));
  EXPECT_EQ(vec(mac1), std::vector<uint8_t>(initiation.begin() + 116, initiation.begin() + 132));

  const auto cookie = from_hex("78b976059c9bf9c7d729640fd6200621");
  std::array<uint8_t, 16> mac2;
  mac(mac2, cookie, std::span(initiation).first(132));
  EXPECT_EQ(vec(mac2), from_hex("ff5e8a762cd73b60ec09a89f307b8673"));
}

// The cookie of §2.2 is MAC(R = 0^32, 192.0.2.1 || port 51820 big-endian).
TEST(Blake2sMac, WireGuardCookieVector) {
  const Key secret{};
  const std::vector<uint8_t> source = {192, 0, 2, 1, 0xca, 0x6c};
  std::array<uint8_t, 16> cookie;
  mac(cookie, secret, source);
  EXPECT_EQ(vec(cookie), from_hex("78b976059c9bf9c7d729640fd6200621"));
}

struct KdfVector {
  const char* key;
  const char* input;
  const char* t1;
  const char* t2;
  const char* t3;
};

// wireguard-go device/kdf_test.go (its t0..t2 are our t1..t3); the last has an empty key.
constexpr KdfVector kKdfVectors[] = {
    {"746573742d6b6579", "746573742d696e707574",
     "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
     "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
     "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24"},
    {"776972656775617264", "776972656775617264",
     "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
     "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
     "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160"},
    {"", "", "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
     "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
     "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e"},
};

TEST(Kdf, WireGuardGoVectors) {
  for (const KdfVector& v : kKdfVectors) {
    SCOPED_TRACE(v.key);
    const auto key = from_hex(v.key);
    const auto input = from_hex(v.input);
    Key t1;
    Key t2;
    Key t3;
    kdf3(t1, t2, t3, key, input);
    EXPECT_EQ(vec(t1), from_hex(v.t1));
    EXPECT_EQ(vec(t2), from_hex(v.t2));
    EXPECT_EQ(vec(t3), from_hex(v.t3));
    Key u1;
    Key u2;
    kdf2(u1, u2, key, input);
    EXPECT_EQ(vec(u1), from_hex(v.t1));
    EXPECT_EQ(vec(u2), from_hex(v.t2));
    Key w1;
    kdf1(w1, key, input);
    EXPECT_EQ(vec(w1), from_hex(v.t1));
  }
}

// The handshake updates the chaining key in place: an output may alias the key.
TEST(Kdf, OutputMayAliasKey) {
  const Key key = key_from_hex(kKdfVectors[0].t1);
  const auto input = from_hex(kKdfVectors[0].input);
  Key expected1;
  Key expected2;
  kdf2(expected1, expected2, key, input);
  Key chaining = key;
  Key t2;
  kdf2(chaining, t2, chaining, input);
  EXPECT_EQ(chaining, expected1);
  EXPECT_EQ(t2, expected2);
}

TEST(X25519, Rfc7748Section6_1) {
  const Key alice_priv =
      key_from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const Key alice_pub =
      key_from_hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  const Key bob_priv =
      key_from_hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  const Key bob_pub =
      key_from_hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  const Key shared =
      key_from_hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  EXPECT_EQ(public_from_private(alice_priv), alice_pub);
  EXPECT_EQ(public_from_private(bob_priv), bob_pub);
  Key out;
  ASSERT_TRUE(dh(out, alice_priv, bob_pub));
  EXPECT_EQ(out, shared);
  ASSERT_TRUE(dh(out, bob_priv, alice_pub));
  EXPECT_EQ(out, shared);
}

TEST(X25519, WireGuardVectorPublicKeys) {
  const std::pair<const char*, const char*> pairs[] = {
      {"10eeae0d3e0537f311a98be08f7fc86b26634b3a6555657eaf345ed340a1777d",
       "3293d144ca91467dd70184453ad2799003762fa6075bcb2eea6ad52242e7a12d"},
      {"603a3496ad2ec7ba2f6be70254de54fbe9fe7a31c878c1a772ec1c9de282ee49",
       "7c486854dc4004f033c8ca26a5dc8cf158189d68e1206b7104dd3d8531035c49"},
      {"c8a0e85162cec8feb232e3f3ac85818a0af8b014848e429471630d2217d4c260",
       "c67c4dc63cf6e5a8c9f9b03805497361dd4da613d03359d1474c07fa51473478"},
      {"e0311aaec4e5cdff66fad8f153c667e36873727bd7f5df4fbb228f4e640c0f5d",
       "2826e24190cbbb8fe6bd4113f36dc8e0a4b92d63c935671fdb6d657df90d4955"},
  };
  for (const auto& [priv, pub] : pairs) {
    EXPECT_EQ(public_from_private(key_from_hex(priv)), key_from_hex(pub)) << priv;
  }
}

TEST(X25519, LowOrderPointsGiveZeroAndAreRejected) {
  const Key priv = key_from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  Key zero_point{};
  Key order_four_point{};  // u = 1
  order_four_point[0] = 1;
  for (const Key& pub : {zero_point, order_four_point}) {
    Key out;
    out.fill(0xaa);
    EXPECT_FALSE(dh(out, priv, pub));
    EXPECT_EQ(out, Key{}) << "a failed DH must not leave partial output behind";
  }
}

TEST(X25519, GeneratedPrivateKeysAreClampedAndFresh) {
  const Key a = generate_private();
  const Key b = generate_private();
  EXPECT_NE(a, b);
  for (const Key& k : {a, b}) {
    EXPECT_EQ(k[0] & 7, 0);
    EXPECT_EQ(k[31] & 0x80, 0);
    EXPECT_EQ(k[31] & 0x40, 0x40);
  }
  // public_from_private must agree with a DH against the base point u = 9.
  Key base{};
  base[0] = 9;
  Key via_dh;
  ASSERT_TRUE(dh(via_dh, a, base));
  EXPECT_EQ(public_from_private(a), via_dh);
}

// RFC 8439 App. A.5: nonce 00000000 0102030405060708 is WireGuard's layout with counter
// 0x0807060504030201 (little-endian).
struct Rfc8439A5 {
  Key key = key_from_hex("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0");
  uint64_t counter = 0x0807060504030201ULL;
  std::vector<uint8_t> ad = from_hex("f33388860000000000004e91");
  std::vector<uint8_t> plaintext = bytes_of(
      "Internet-Drafts are draft documents valid for a maximum of six months and may be "
      "updated, replaced, or obsoleted by other documents at any time. It is inappropriate to "
      "use Internet-Drafts as reference material or to cite them other than as "
      "/\xe2\x80\x9cwork in progress./\xe2\x80\x9d");
  std::vector<uint8_t> sealed = from_hex(
      "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb24c6cfc18755d43eea09ee94e"
      "382d26b0bdb7b73c321b0100d4f03b7f355894cf332f830e710b97ce98c8a84abd0b948114ad176e008d33bd"
      "60f982b1ff37c8559797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4b9166c76"
      "7b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523eaf4534d7f83fa1155b0047718cbc546a"
      "0d072b04b3564eea1b422273f548271a0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a67276"
      "27097a1049e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29a6ad5cb4022b0270"
      "9b"
      "eead9d67890cbb22392336fea1851f38");
};

TEST(Aead, Rfc8439AppendixA5Encrypt) {
  const Rfc8439A5 v;
  ASSERT_EQ(v.plaintext.size(), 265u);
  std::vector<uint8_t> out(v.plaintext.size() + 16);
  aead_encrypt(out, v.key, v.counter, v.plaintext, v.ad);
  EXPECT_EQ(out, v.sealed);
}

TEST(Aead, Rfc8439AppendixA5Decrypt) {
  const Rfc8439A5 v;
  std::vector<uint8_t> out(v.sealed.size() - 16);
  ASSERT_TRUE(aead_decrypt(out, v.key, v.counter, v.sealed, v.ad));
  EXPECT_EQ(out, v.plaintext);
}

TEST(Aead, RejectsTamperingWrongCounterWrongAdAndBadSizes) {
  const Rfc8439A5 v;
  std::vector<uint8_t> out(v.sealed.size() - 16);
  for (size_t pos : {size_t{0}, v.sealed.size() - 1}) {
    auto tampered = v.sealed;
    tampered[pos] ^= 1;
    EXPECT_FALSE(aead_decrypt(out, v.key, v.counter, tampered, v.ad)) << pos;
  }
  EXPECT_FALSE(aead_decrypt(out, v.key, v.counter + 1, v.sealed, v.ad));
  auto wrong_ad = v.ad;
  wrong_ad[0] ^= 1;
  EXPECT_FALSE(aead_decrypt(out, v.key, v.counter, v.sealed, wrong_ad));
  std::vector<uint8_t> too_small(out.size() - 1);
  EXPECT_FALSE(aead_decrypt(too_small, v.key, v.counter, v.sealed, v.ad));
  std::vector<uint8_t> short_ciphertext(15);
  EXPECT_FALSE(aead_decrypt({}, v.key, 0, short_ciphertext, {}));
}

// draft-irtf-cfrg-xchacha-03 App. A.3.1.
TEST(XAead, DraftXChachaA31) {
  const Key key = key_from_hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
  const auto nonce_bytes = from_hex("404142434445464748494a4b4c4d4e4f5051525354555657");
  const std::span<const uint8_t, 24> nonce(nonce_bytes.data(), 24);
  const auto ad = from_hex("50515253c0c1c2c3c4c5c6c7");
  const auto plaintext = bytes_of(
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
      "future, sunscreen would be it.");
  const auto sealed = from_hex(
      "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f"
      "4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f"
      "76b2383565d3fff921f9664c97637da9768812f615c68b13b52e"
      "c0875924c1c7987947deafd8780acf49");
  std::vector<uint8_t> out(plaintext.size() + 16);
  xaead_encrypt(out, key, nonce, plaintext, ad);
  EXPECT_EQ(out, sealed);

  std::vector<uint8_t> opened(plaintext.size());
  ASSERT_TRUE(xaead_decrypt(opened, key, nonce, sealed, ad));
  EXPECT_EQ(opened, plaintext);
  auto tampered = sealed;
  tampered[5] ^= 0x80;
  EXPECT_FALSE(xaead_decrypt(opened, key, nonce, tampered, ad));
  EXPECT_FALSE(xaead_decrypt(opened, key, nonce, sealed, {}));
}

TEST(Tai64n, WholeSecondOfVector) {
  const Tai64n t = tai64n(1'700'000'000ULL * 1'000'000'000ULL);
  EXPECT_EQ(vec(t), from_hex("400000006553f10a00000000"));
}

TEST(Tai64n, NanosecondsRoundDownToMultipleOf2To24) {
  const uint64_t base = 1'700'000'000ULL * 1'000'000'000ULL;
  // 2^24 - 1 ns rounds to 0; 2^24 ns stays; 999999999 ns -> 0x3b000000 (= 59 * 2^24).
  EXPECT_EQ(vec(tai64n(base + (1u << 24) - 1)), from_hex("400000006553f10a00000000"));
  EXPECT_EQ(vec(tai64n(base + (1u << 24))), from_hex("400000006553f10a01000000"));
  EXPECT_EQ(vec(tai64n(base + 999'999'999)), from_hex("400000006553f10a3b000000"));
  EXPECT_EQ(vec(tai64n(0)), from_hex("400000000000000a00000000"));
}

TEST(EqualCt, ComparesContentAndLength) {
  const std::vector<uint8_t> a = {1, 2, 3};
  const std::vector<uint8_t> b = {1, 2, 3};
  const std::vector<uint8_t> c = {1, 2, 4};
  EXPECT_TRUE(equal_ct(a, b));
  EXPECT_FALSE(equal_ct(a, c));
  EXPECT_FALSE(equal_ct(a, std::span(b).first(2)));
}

}  // namespace
}  // namespace airlock::dp::crypto
