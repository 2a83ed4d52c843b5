// Hex helpers for known-answer vectors in tests.
#pragma once

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace airlock::test {

inline std::vector<uint8_t> from_hex(std::string_view hex) {
  std::vector<uint8_t> out(hex.size() / 2);
  size_t len = 0;
  if (sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &len, nullptr) != 0) {
    std::abort();  // a malformed vector is a bug in the test itself
  }
  out.resize(len);
  return out;
}

inline std::array<uint8_t, 32> key_from_hex(std::string_view hex) {
  const auto bytes = from_hex(hex);
  std::array<uint8_t, 32> key{};
  std::copy_n(bytes.begin(), std::min(bytes.size(), key.size()), key.begin());
  return key;
}

}  // namespace airlock::test
