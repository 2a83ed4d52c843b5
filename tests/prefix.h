// Prefix literals for the LPM and ACL tests.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdint>

#include "dataplane/allowedips.h"

namespace airlock::test {

inline dp::Prefix v4(const char* text, uint8_t len) {
  dp::Prefix prefix{4, {}, len};
  EXPECT_EQ(inet_pton(AF_INET, text, prefix.addr.data()), 1) << text;
  return prefix;
}

inline dp::Prefix v6(const char* text, uint8_t len) {
  dp::Prefix prefix{6, {}, len};
  EXPECT_EQ(inet_pton(AF_INET6, text, prefix.addr.data()), 1) << text;
  return prefix;
}

}  // namespace airlock::test
