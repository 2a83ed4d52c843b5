#include "dataplane/config.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace airlock::dp {
namespace {

std::optional<Config> parse_exactly(std::vector<std::string> args, std::string* error) {
  std::vector<char*> argv;
  argv.reserve(args.size());
  for (std::string& a : args) argv.push_back(a.data());
  return parse_config(argv, error);
}

// With the two required flags first.
std::optional<Config> parse(const std::vector<std::string>& args, std::string* error) {
  std::vector<std::string> all = {"--address", "198.51.100.1", "--private-key", "hub.key"};
  all.insert(all.end(), args.begin(), args.end());
  return parse_exactly(std::move(all), error);
}

TEST(Config, CryptoPathIsTheFastestUnlessPinned) {
  std::string error;
  const std::optional<Config> plain = parse({}, &error);
  ASSERT_TRUE(plain) << error;
  EXPECT_EQ(plain->crypto, BatchCrypto::Arch::kBest);

  const std::optional<Config> pinned = parse({"--crypto", "avx2"}, &error);
  ASSERT_TRUE(pinned) << error;
  EXPECT_EQ(pinned->crypto, BatchCrypto::Arch::kAvx2);
}

TEST(Config, EncryptPathFollowsTheCryptoPathUnlessPinnedItself) {
  std::string error;
  const std::optional<Config> both = parse({"--crypto", "sse"}, &error);
  ASSERT_TRUE(both) << error;
  EXPECT_EQ(both->encrypt_path(), BatchCrypto::Arch::kSse);

  const std::optional<Config> split = parse({"--crypto-encrypt", "avx2"}, &error);
  ASSERT_TRUE(split) << error;
  EXPECT_EQ(split->crypto, BatchCrypto::Arch::kBest);
  EXPECT_EQ(split->encrypt_path(), BatchCrypto::Arch::kAvx2);
}

TEST(Config, UnknownCryptoPathIsRejectedByName) {
  std::string error;
  EXPECT_FALSE(parse({"--crypto", "neon"}, &error));
  EXPECT_NE(error.find("--crypto"), std::string::npos) << error;
  EXPECT_NE(error.find("neon"), std::string::npos) << error;
  EXPECT_FALSE(parse({"--crypto-encrypt", "fast"}, &error));
  EXPECT_NE(error.find("--crypto-encrypt"), std::string::npos) << error;
}

TEST(Config, RequiredFlagsAreNamedWhenMissing) {
  std::string error;
  EXPECT_FALSE(parse_exactly({"--address", "198.51.100.1"}, &error));
  EXPECT_NE(error.find("--private-key is required"), std::string::npos) << error;
}

}  // namespace
}  // namespace airlock::dp
