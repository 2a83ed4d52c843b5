// The --static-sessions file: parse errors name the line and never echo a key; a good file
// installs sessions under exactly the file's receiver indices.
#include "dataplane/static_sessions.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <rte_byteorder.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "dataplane/hub.h"
#include "policy/builder.h"
#include "policy/policy.h"
#include "tests/eal_env.h"

namespace airlock::dp {
namespace {

crypto::Key filled(uint8_t b) {
  crypto::Key k;
  k.fill(b);
  return k;
}

std::string b64(uint8_t b) {
  return policy::encode_key_base64(filled(b));
}

// Peer keys are 0x11, 0x22; receive keys 0xa1, 0xa2; send keys 0xb1, 0xb2.
std::string line(int peer, const std::string& local_index = "") {
  const auto n = static_cast<uint8_t>(peer);
  const std::string index = local_index.empty() ? "0x1234000" + std::to_string(peer) : local_index;
  return b64(static_cast<uint8_t>(0x11 * peer)) + " " + index + " " + std::to_string(100 + peer) +
         " " + b64(static_cast<uint8_t>(0xa0 + n)) + "\t" + b64(static_cast<uint8_t>(0xb0 + n)) +
         " 198.18.0.2:4000" + std::to_string(peer) + " 02:00:00:00:00:0" + std::to_string(peer) +
         "\n";
}

// A '#' after the fields is not a comment but an eighth field.
std::string trailing_comment() {
  std::string first = line(1);
  first.pop_back();
  return "# static sessions\n\n" + first + "   # trailing\n" + line(2);
}

std::string parse_error(const std::string& text) {
  std::string error;
  EXPECT_FALSE(parse_static_sessions(text, &error)) << text;
  // A key never shows up in an error, whatever went wrong.
  for (uint8_t b : {0x11, 0x22, 0xa1, 0xa2, 0xb1, 0xb2}) {
    EXPECT_EQ(error.find(b64(b)), std::string::npos) << error;
  }
  return error;
}

TEST(StaticSessionsParse, GoodFile) {
  std::string error;
  const std::string text = "# static sessions\r\n\r\n  # indented comment\n" + line(1) + line(2);
  auto sessions = parse_static_sessions(text, &error);
  ASSERT_TRUE(sessions) << error;
  ASSERT_EQ(sessions->size(), 2u);
  const StaticSession& s = (*sessions)[1];
  EXPECT_EQ(s.line, 5);
  EXPECT_EQ(s.peer_public, filled(0x22));
  EXPECT_EQ(s.local_index, 0x12340002u);
  EXPECT_EQ(s.remote_index, 102u);
  EXPECT_EQ(s.receive, filled(0xa2));
  EXPECT_EQ(s.send, filled(0xb2));
  in_addr a{};
  inet_pton(AF_INET, "198.18.0.2", &a);
  EXPECT_EQ(s.endpoint.ipv4_be, a.s_addr);
  EXPECT_EQ(s.endpoint.port_be, rte_cpu_to_be_16(40002));
  EXPECT_EQ(s.endpoint.mac.addr_bytes[5], 2);
}

TEST(StaticSessionsParse, ErrorsNameTheLine) {
  EXPECT_EQ(parse_error(""), "no sessions (only blank or comment lines)");
  EXPECT_EQ(parse_error("# only a comment\n\n"), "no sessions (only blank or comment lines)");
  EXPECT_EQ(parse_error(trailing_comment()).rfind("line 3: expected 7 fields", 0), 0u);
  EXPECT_EQ(parse_error(line(1) + "x y\n").rfind("line 2: expected 7 fields", 0), 0u);
  EXPECT_EQ(parse_error("#\n" + line(1).substr(1)),
            "line 2: peer public key is not a base64 32-byte key");
  EXPECT_EQ(parse_error(line(1, "0")), "line 1: local index must be a non-zero 32-bit number");
  EXPECT_EQ(parse_error(line(1, "0x1ffffffff")),
            "line 1: local index must be a non-zero 32-bit number");
  EXPECT_EQ(parse_error(line(1, "12ab")), "line 1: local index must be a non-zero 32-bit number");
  EXPECT_EQ(parse_error(line(1, "0x00050000")),
            "line 1: local index must not have its low 16 bits all zero (that entry stays unused)");
  EXPECT_EQ(parse_error(line(1, "0x00010007") + line(2, "0x00020007")),
            "line 2: local index shares its low 16 bits (index-table entry) with line 1");
  EXPECT_EQ(parse_error(line(1) + line(1, "0x9")), "line 2: second session for this peer");
}

TEST(StaticSessionsParse, FieldErrors) {
  auto with_field = [](size_t n, const std::string& value) {
    std::string l = line(1);
    l.pop_back();
    std::vector<std::string> f;
    size_t start = 0;
    for (size_t i = 0; i <= l.size(); ++i) {
      if (i == l.size() || l[i] == ' ' || l[i] == '\t') {
        f.push_back(l.substr(start, i - start));
        start = i + 1;
      }
    }
    f[n] = value;
    std::string out;
    for (const std::string& s : f) out += s + " ";
    return out + "\n";
  };
  EXPECT_EQ(parse_error(with_field(2, "0")),
            "line 1: remote index must be a non-zero 32-bit number");
  EXPECT_EQ(parse_error(with_field(3, "c2hvcnQ=")),
            "line 1: receive key is not a base64 32-byte key");
  EXPECT_EQ(parse_error(with_field(4, b64(0xb1) + "x")),
            "line 1: send key is not a base64 32-byte key");
  for (const char* endpoint : {"198.18.0.2", "198.18.0.2:0", "198.18.0.2:65536", "0.0.0.0:1",
                               "host:51820", "198.18.0.2:5x"}) {
    EXPECT_EQ(parse_error(with_field(5, endpoint)),
              "line 1: endpoint must be IPV4:PORT with a non-zero address and port")
        << endpoint;
  }
  for (const char* mac : {"02:00:00:00:00", "0200:0000:0001", "02:00:00:00:00:0g"}) {
    EXPECT_EQ(parse_error(with_field(6, mac)), "line 1: endpoint MAC must be xx:xx:xx:xx:xx:xx")
        << mac;
  }
}

TEST(StaticSessionsRead, MissingFile) {
  std::string error;
  EXPECT_FALSE(read_static_sessions("/nonexistent/static-sessions", &error));
  EXPECT_EQ(error, "cannot open");
}

class StaticSessionsInstall : public ::testing::Test {
 protected:
  void SetUp() override {
    test::ensure_eal();
    Config cfg;
    cfg.address_be = rte_cpu_to_be_32(RTE_IPV4(198, 18, 0, 1));
    cfg.instance = "static-sessions-" + std::to_string(getpid());
    cfg.max_peers = 8;
    cfg.max_rules = 8;
    cfg.mbufs = 1023;
    std::string error;
    hub_ = Hub::create(cfg, filled(0x77), 1, &error);
    ASSERT_TRUE(hub_) << error;
    policy::PolicyBuilder p;
    p.version(1);
    for (int peer : {1, 2}) {
      policy::PeerSpec spec;
      spec.public_key = filled(static_cast<uint8_t>(0x11 * peer));
      spec.allowed_ips = {"10.200.0." + std::to_string(peer) + "/32"};
      spec.user = "bench-" + std::to_string(peer);
      p.add_peer(spec);
    }
    auto bytes = p.finish(&error);
    ASSERT_TRUE(bytes) << error;
    ASSERT_TRUE(hub_->apply_policy(*bytes, &error)) << error;
  }

  std::unique_ptr<Hub> hub_;
};

TEST_F(StaticSessionsInstall, InstallsUnderTheFileIndices) {
  std::string error;
  auto sessions = parse_static_sessions(line(1) + line(2), &error);
  ASSERT_TRUE(sessions) << error;
  ASSERT_TRUE(install_static_sessions(*hub_, *sessions, &error)) << error;
  for (int peer : {1, 2}) {
    const Keypair* kp = hub_->index().lookup(0x12340000u + static_cast<uint32_t>(peer));
    ASSERT_NE(kp, nullptr) << peer;
    EXPECT_EQ(kp->peer_slot, *hub_->slot_of(filled(static_cast<uint8_t>(0x11 * peer))));
    EXPECT_EQ(kp->receive_key, filled(static_cast<uint8_t>(0xa0 + peer)));
    EXPECT_EQ(kp->send_key, filled(static_cast<uint8_t>(0xb0 + peer)));
    EXPECT_EQ(kp->remote_index, 100u + static_cast<uint32_t>(peer));
    EXPECT_TRUE(hub_->peers().at(kp->peer_slot).endpoint.load().known());
  }
  // The same entry again (another full index) is refused, and so is a peer outside the policy.
  auto again = parse_static_sessions("\n" + line(1, "0x77770001"), &error);
  ASSERT_TRUE(again) << error;
  EXPECT_FALSE(install_static_sessions(*hub_, *again, &error));
  EXPECT_EQ(error.rfind("line 2: cannot install the session", 0), 0u) << error;
  auto stranger = parse_static_sessions(line(3), &error);
  ASSERT_TRUE(stranger) << error;
  EXPECT_FALSE(install_static_sessions(*hub_, *stranger, &error));
  EXPECT_EQ(error, "line 1: peer " + b64(0x33) + " is not in the running policy");
}

TEST_F(StaticSessionsInstall, ReadsAFile) {
  char path[] = "/tmp/airlock-static-sessions-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = line(1);
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  std::string error;
  auto sessions = read_static_sessions(path, &error);
  unlink(path);
  ASSERT_TRUE(sessions) << error;
  EXPECT_TRUE(install_static_sessions(*hub_, *sessions, &error)) << error;
}

}  // namespace
}  // namespace airlock::dp
