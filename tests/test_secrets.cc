#include "control/secrets/secret.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <type_traits>

namespace airlock::control {
namespace {

// A key must not be printable by accident or duplicated in memory.
static_assert(!std::is_copy_constructible_v<Secret>);
static_assert(!std::is_copy_assignable_v<Secret>);
static_assert(!std::is_convertible_v<Secret, std::string>);
template <typename T>
concept Streamable = requires(std::ostream& out, const T& value) {
  out << value;
};
static_assert(!Streamable<Secret>);

constexpr std::string_view kKey = "sk-test-0123456789abcdef";

class SecretFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "airlock-secrets-XXXXXX");
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, std::string_view content, mode_t mode) {
    const std::string path = dir_ / name;
    std::ofstream(path, std::ios::binary) << content;
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }

  std::filesystem::path dir_;
};

TEST(LoadSecret, FromEnvironment) {
  ASSERT_EQ(::setenv("AIRLOCK_TEST_KEY", std::string(kKey).c_str(), 1), 0);
  std::string error;
  const std::optional<Secret> secret = load_secret("env:AIRLOCK_TEST_KEY", &error);
  ASSERT_TRUE(secret) << error;
  EXPECT_EQ(secret->reveal(), kKey);
  ::unsetenv("AIRLOCK_TEST_KEY");
}

TEST(LoadSecret, MissingOrEmptyEnvironmentVariable) {
  ::unsetenv("AIRLOCK_TEST_UNSET_KEY");
  std::string error;
  EXPECT_FALSE(load_secret("env:AIRLOCK_TEST_UNSET_KEY", &error));
  EXPECT_EQ(error, "env:AIRLOCK_TEST_UNSET_KEY is not set");

  ASSERT_EQ(::setenv("AIRLOCK_TEST_EMPTY_KEY", "", 1), 0);
  EXPECT_FALSE(load_secret("env:AIRLOCK_TEST_EMPTY_KEY", &error));
  EXPECT_EQ(error, "env:AIRLOCK_TEST_EMPTY_KEY is empty");
  ::unsetenv("AIRLOCK_TEST_EMPTY_KEY");
}

TEST(LoadSecret, KeyPastedInsteadOfAReferenceIsNotEchoed) {
  std::string error;
  EXPECT_FALSE(load_secret(kKey, &error));
  EXPECT_FALSE(error.empty());
  EXPECT_EQ(error.find(kKey), std::string::npos) << error;
  EXPECT_FALSE(load_secret("env:" + std::string(kKey), &error));
  EXPECT_EQ(error.find(kKey), std::string::npos) << error;
}

TEST_F(SecretFiles, FromFileWithoutTrailingNewline) {
  const std::string path = write("key", std::string(kKey) + "\n", 0600);
  std::string error;
  std::optional<Secret> secret = load_secret("file:" + path, &error);
  ASSERT_TRUE(secret) << error;
  EXPECT_EQ(secret->reveal(), kKey);

  const std::string crlf = write("key-crlf", std::string(kKey) + "\r\n", 0400);
  secret = load_secret("file:" + crlf, &error);
  ASSERT_TRUE(secret) << error;
  EXPECT_EQ(secret->reveal(), kKey);
}

TEST_F(SecretFiles, GroupOrWorldAccessibleFileIsRefused) {
  for (const mode_t mode : {0644, 0640, 0604, 0620}) {
    const std::string path = write("key", kKey, mode);
    std::string error;
    EXPECT_FALSE(load_secret("file:" + path, &error)) << std::oct << mode;
    EXPECT_NE(error.find("file:" + path), std::string::npos) << error;
    EXPECT_NE(error.find("chmod 600"), std::string::npos) << error;
    EXPECT_EQ(error.find(kKey), std::string::npos) << error;
  }
}

TEST_F(SecretFiles, UnusableFilesAreErrorsNamingTheReference) {
  std::string error;
  const std::string missing = (dir_ / "missing").string();
  EXPECT_FALSE(load_secret("file:" + missing, &error));
  EXPECT_EQ(error.rfind("file:" + missing + " cannot be opened", 0), 0u) << error;

  EXPECT_FALSE(load_secret("file:relative/key", &error));
  EXPECT_NE(error.find("absolute"), std::string::npos) << error;

  write("empty", "\n", 0600);
  EXPECT_FALSE(load_secret("file:" + (dir_ / "empty").string(), &error));
  EXPECT_NE(error.find("is empty"), std::string::npos) << error;

  EXPECT_FALSE(load_secret("file:" + dir_.string(), &error));
  EXPECT_NE(error.find("not a regular file"), std::string::npos) << error;
}

TEST(Secret, MoveLeavesTheSourceEmpty) {
  Secret a(kKey);
  Secret b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the behaviour under test
  EXPECT_EQ(a.reveal(), "");
  EXPECT_EQ(b.reveal(), kKey);

  Secret c("other");
  c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.reveal(), kKey);
}

TEST(Redact, ReplacesEveryOccurrenceOfEverySecret) {
  const Secret openai("sk-openai-1");
  const Secret anthropic("sk-ant-2");
  const Secret empty;
  const std::array<const Secret*, 4> secrets = {&openai, nullptr, &empty, &anthropic};
  EXPECT_EQ(redact("upstream said: bad key sk-openai-1 (sk-ant-2, sk-openai-1)", secrets),
            "upstream said: bad key [redacted] ([redacted], [redacted])");
  EXPECT_EQ(redact("nothing to hide", secrets), "nothing to hide");
  EXPECT_EQ(redact("", secrets), "");
  EXPECT_EQ(redact("sk-ant-2sk-openai-1", secrets), "[redacted][redacted]");
}

TEST(Redact, LongestOverlappingSecretWins) {
  const Secret short_key("abc");
  const Secret long_key("abcdef");
  const std::array<const Secret*, 2> secrets = {&short_key, &long_key};
  // Redacting only "abc" would leave the tail of the longer key, "def", in the text.
  EXPECT_EQ(redact("x abcdef y abc", secrets), "x [redacted] y [redacted]");
  // Matches are taken from the left: a secret that starts inside an earlier match is not one.
  const Secret left("xab");
  const std::array<const Secret*, 2> crossing = {&long_key, &left};
  EXPECT_EQ(redact("xabcdef", crossing), "[redacted]cdef");
}

}  // namespace
}  // namespace airlock::control
