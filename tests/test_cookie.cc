// mac1 / mac2 / cookie replies against wireguard.md §2.2 (the initiation and response there
// carry mac1; the cookie reply and mac2 were accepted by wireguard-go), plus the validity rules
// of §1.5.
#include "dataplane/cookie.h"
#include "tests/hex.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::dp {
namespace {

using crypto::Key;

using test::from_hex;
using test::key_from_hex;

std::vector<uint8_t> bytes_of(const MessageCookieReply& msg) {
  const auto* p = reinterpret_cast<const uint8_t*>(&msg);
  return {p, p + sizeof(msg)};
}

MessageCookieReply reply_from_bytes(const std::vector<uint8_t>& bytes) {
  MessageCookieReply reply;
  EXPECT_EQ(bytes.size(), sizeof(reply));
  std::memcpy(&reply, bytes.data(), sizeof(reply));
  return reply;
}

const Key kInitiatorStaticPub =
    key_from_hex("3293d144ca91467dd70184453ad2799003762fa6075bcb2eea6ad52242e7a12d");
const Key kResponderStaticPub =
    key_from_hex("7c486854dc4004f033c8ca26a5dc8cf158189d68e1206b7104dd3d8531035c49");
constexpr uint32_t kInitiatorIndex = 0x11223344;

const std::vector<uint8_t> kInitiation = from_hex(
    "0100000044332211c67c4dc63cf6e5a8c9f9b03805497361dd4da613d03359d1474c07fa514734787db86cd6d6"
    "8628037466dc80bfa7d1e7f6ec7f5f485401b09a280c6dd08ef55a7e25e46903fa0c8bd9427e9e5b6f084155d1"
    "33108189d440ef8225511a06da66be4ac9c1b66c05139392b7799d653391d9e4a875694a169e5cf49df9000000"
    "00000000000000000000000000");
// The with-psk response; its mac1 is keyed to the initiator's static key.
const std::vector<uint8_t> kResponse = from_hex(
    "02000000fecaad0b443322112826e24190cbbb8fe6bd4113f36dc8e0a4b92d63c935671fdb6d657df90d4955"
    "37d1c76b5f9ec03d0e251b66edfed65d9057caadee14f4d73b804e2a513364e100000000000000000000000000"
    "000000");
const std::vector<uint8_t> kCookieReply = from_hex(
    "0300000044332211000102030405060708090a0b0c0d0e0f10111213141516179baa66e0b3b41966948abb0863"
    "071a68f1f7e7689778a885104e7e0bd501b89f");
const std::vector<uint8_t> kMac2 = from_hex("ff5e8a762cd73b60ec09a89f307b8673");
// 192.0.2.1:51820 as 4-byte address || big-endian port.
const std::vector<uint8_t> kSource = {192, 0, 2, 1, 0xca, 0x6c};
constexpr uint64_t kSecond = 1'000'000'000;

std::array<uint8_t, kXNonceLen> vector_nonce() {
  std::array<uint8_t, kXNonceLen> nonce;
  for (size_t i = 0; i < nonce.size(); ++i) nonce[i] = static_cast<uint8_t>(i);
  return nonce;
}

std::vector<uint8_t> mac1_of(const std::vector<uint8_t>& msg) {
  return {msg.end() - 32, msg.end() - 16};
}
std::vector<uint8_t> mac2_of(const std::vector<uint8_t>& msg) {
  return {msg.end() - 16, msg.end()};
}

std::vector<uint8_t> with_zero_macs(std::vector<uint8_t> msg) {
  std::fill(msg.end() - 32, msg.end(), 0);
  return msg;
}

TEST(CookieChecker, Mac1OfVectorMessages) {
  const CookieChecker hub(kResponderStaticPub);
  EXPECT_TRUE(hub.mac1_valid(kInitiation));
  const CookieChecker peer(kInitiatorStaticPub);
  EXPECT_TRUE(peer.mac1_valid(kResponse));
  EXPECT_FALSE(peer.mac1_valid(kInitiation)) << "mac1 is bound to the receiver's key";
}

TEST(CookieChecker, Mac1CoversEveryPrecedingByteAndItself) {
  const CookieChecker hub(kResponderStaticPub);
  for (size_t pos = 0; pos < 132; ++pos) {
    auto tampered = kInitiation;
    tampered[pos] ^= 0x20;
    EXPECT_FALSE(hub.mac1_valid(tampered)) << pos;
  }
  auto mac2_changed = kInitiation;
  mac2_changed[140] ^= 1;
  EXPECT_TRUE(hub.mac1_valid(mac2_changed)) << "mac2 is outside mac1";
}

TEST(CookieChecker, RejectsOtherLengths) {
  CookieChecker hub(kResponderStaticPub);
  for (size_t len : {147u, 149u, 91u, 93u, 64u, 32u, 0u}) {
    std::vector<uint8_t> msg(kInitiation.begin(), kInitiation.begin() + std::min<size_t>(len, 148));
    msg.resize(len);
    EXPECT_FALSE(hub.mac1_valid(msg)) << len;
    MessageCookieReply reply;
    EXPECT_FALSE(hub.create_reply(reply, msg, 1, kSource, vector_nonce(), 0)) << len;
  }
}

TEST(CookieChecker, CookieReplyVector) {
  CookieChecker hub(kResponderStaticPub);
  hub.set_secret_for_test(Key{}, 0);
  MessageCookieReply reply;
  ASSERT_TRUE(hub.create_reply(reply, kInitiation, kInitiatorIndex, kSource, vector_nonce(), 0));
  EXPECT_EQ(bytes_of(reply), kCookieReply);
}

TEST(CookieChecker, Mac2OfVector) {
  CookieChecker hub(kResponderStaticPub);
  hub.set_secret_for_test(Key{}, 0);
  auto msg = kInitiation;
  std::copy(kMac2.begin(), kMac2.end(), msg.end() - 16);
  EXPECT_TRUE(hub.mac2_valid(msg, kSource, 1 * kSecond));
  EXPECT_FALSE(hub.mac2_valid(kInitiation, kSource, 1 * kSecond)) << "zero mac2";
  const std::vector<uint8_t> other_port = {192, 0, 2, 1, 0xca, 0x6d};
  EXPECT_FALSE(hub.mac2_valid(msg, other_port, 1 * kSecond));
  auto tampered = msg;
  tampered[50] ^= 1;
  EXPECT_FALSE(hub.mac2_valid(tampered, kSource, 1 * kSecond));
}

TEST(CookieChecker, SecretRotatesAfterMaxAge) {
  CookieChecker hub(kResponderStaticPub);
  hub.set_secret_for_test(Key{}, 0);
  auto msg = kInitiation;
  std::copy(kMac2.begin(), kMac2.end(), msg.end() - 16);
  EXPECT_TRUE(hub.mac2_valid(msg, kSource, 120 * kSecond - 1));
  EXPECT_FALSE(hub.mac2_valid(msg, kSource, 120 * kSecond)) << "secret R replaced at 120 s";
}

TEST(CookieMaker, Mac1OfVectorInitiation) {
  CookieMaker to_hub(kResponderStaticPub);
  auto msg = with_zero_macs(kInitiation);
  ASSERT_TRUE(to_hub.add_macs(msg, 0));
  EXPECT_EQ(msg, kInitiation);

  CookieMaker to_peer(kInitiatorStaticPub);
  auto response = with_zero_macs(kResponse);
  ASSERT_TRUE(to_peer.add_macs(response, 0));
  EXPECT_EQ(response, kResponse);

  std::vector<uint8_t> odd(100);
  EXPECT_FALSE(to_hub.add_macs(odd, 0));
}

TEST(CookieMaker, ConsumesVectorReplyAndProducesVectorMac2) {
  CookieMaker to_hub(kResponderStaticPub);
  auto msg = with_zero_macs(kInitiation);
  ASSERT_TRUE(to_hub.add_macs(msg, 0));
  ASSERT_TRUE(to_hub.consume_reply(reply_from_bytes(kCookieReply), 10 * kSecond));

  ASSERT_TRUE(to_hub.add_macs(msg, 15 * kSecond));
  EXPECT_EQ(mac1_of(msg), mac1_of(kInitiation));
  EXPECT_EQ(mac2_of(msg), kMac2);
}

TEST(CookieMaker, RejectsReplyBoundToAnotherMac1) {
  CookieMaker to_hub(kResponderStaticPub);
  EXPECT_FALSE(to_hub.consume_reply(reply_from_bytes(kCookieReply), 0))
      << "nothing was sent, so no reply is expected";

  auto msg = with_zero_macs(kInitiation);
  ASSERT_TRUE(to_hub.add_macs(msg, 0));
  auto newer = with_zero_macs(kInitiation);
  newer[4] ^= 1;  // a different message, hence a different mac1 (the AD)
  ASSERT_TRUE(to_hub.add_macs(newer, 1));
  EXPECT_FALSE(to_hub.consume_reply(reply_from_bytes(kCookieReply), 2));
}

TEST(CookieMaker, RejectsTamperedReplyAndSecondReply) {
  CookieMaker to_hub(kResponderStaticPub);
  auto msg = with_zero_macs(kInitiation);
  ASSERT_TRUE(to_hub.add_macs(msg, 0));
  for (size_t pos : {size_t{8}, size_t{31}, size_t{32}, size_t{63}}) {
    auto tampered = kCookieReply;
    tampered[pos] ^= 1;
    EXPECT_FALSE(to_hub.consume_reply(reply_from_bytes(tampered), 1)) << pos;
  }
  EXPECT_TRUE(to_hub.consume_reply(reply_from_bytes(kCookieReply), 1));
  EXPECT_FALSE(to_hub.consume_reply(reply_from_bytes(kCookieReply), 2))
      << "one cookie per mac1 sent";
}

TEST(CookieMaker, ExpiredCookieIsNotUsed) {
  CookieMaker to_hub(kResponderStaticPub);
  auto msg = with_zero_macs(kInitiation);
  ASSERT_TRUE(to_hub.add_macs(msg, 0));
  const uint64_t received = 7 * kSecond;
  ASSERT_TRUE(to_hub.consume_reply(reply_from_bytes(kCookieReply), received));

  ASSERT_TRUE(to_hub.add_macs(msg, received + kCookieValidityNs - 1));
  EXPECT_EQ(mac2_of(msg), kMac2);
  ASSERT_TRUE(to_hub.add_macs(msg, received + kCookieValidityNs));
  EXPECT_EQ(mac2_of(msg), std::vector<uint8_t>(16, 0));
}

TEST(CookieRoundTrip, CheckerToMakerWithRandomSecret) {
  const Key hub_public = crypto::public_from_private(crypto::generate_private());
  CookieChecker hub(hub_public);
  CookieMaker peer(hub_public);
  const std::vector<uint8_t> source = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,    0,
                                       0,    0,    0,    0,    0, 0, 1, 0x12, 0x34};
  std::vector<uint8_t> response(sizeof(MessageResponse));
  response[0] = static_cast<uint8_t>(MessageType::kResponse);
  const uint64_t t0 = 1000 * kSecond;

  ASSERT_TRUE(peer.add_macs(response, t0));
  EXPECT_TRUE(hub.mac1_valid(response));
  EXPECT_FALSE(hub.mac2_valid(response, source, t0)) << "no cookie yet";

  MessageCookieReply reply;
  std::array<uint8_t, kXNonceLen> nonce;
  crypto::random_bytes(nonce);
  ASSERT_TRUE(hub.create_reply(reply, response, 42, source, nonce, t0));
  EXPECT_EQ(reply.header.type, static_cast<uint8_t>(MessageType::kCookieReply));
  EXPECT_EQ(reply.receiver_index, 42u);
  ASSERT_TRUE(peer.consume_reply(reply, t0 + 1));

  ASSERT_TRUE(peer.add_macs(response, t0 + 5 * kSecond));
  EXPECT_TRUE(hub.mac1_valid(response));
  EXPECT_TRUE(hub.mac2_valid(response, source, t0 + 5 * kSecond));
  auto elsewhere = source;
  elsewhere.back() ^= 1;
  EXPECT_FALSE(hub.mac2_valid(response, elsewhere, t0 + 5 * kSecond));
}

}  // namespace
}  // namespace airlock::dp
