#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "policy/builder.h"
#include "policy/json.h"
#include "policy/policy.h"

namespace airlock::policy {
namespace {

Key filled_key(uint8_t value) {
  Key key;
  key.fill(value);
  return key;
}

// OpenSSL is the independent oracle for the base64 text of a key.
std::string openssl_base64(std::span<const uint8_t> bytes) {
  std::string text(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(text.data()), bytes.data(),
                                static_cast<int>(bytes.size()));
  text.resize(static_cast<size_t>(n));
  return text;
}

Key key_of(const Key32* key) {
  Key bytes{};
  std::copy(key->b()->begin(), key->b()->end(), bytes.begin());
  return bytes;
}

std::vector<uint8_t> addr_of(const Prefix* prefix) {
  return {prefix->addr()->begin(), prefix->addr()->end()};
}

std::vector<std::string> strings_of(
    const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v) {
  std::vector<std::string> out;
  if (v) {
    for (const auto* s : *v) out.push_back(s->str());
  }
  return out;
}

// Everything a test policy is made of, so that cases can mutate one field and rebuild.
struct Specs {
  uint64_t version = 42;
  uint32_t schema_version = kSchemaVersion;
  std::vector<PrefixSpec> gateway = {"100.80.0.1/32", "fd00:80::1/128"};
  std::vector<PeerSpec> peers;
  std::vector<RuleSpec> rules;

  PolicyBuilder builder() const {
    PolicyBuilder builder;
    builder.version(version).schema_version(schema_version);
    for (const auto& prefix : gateway) builder.gateway(prefix);
    for (const auto& peer : peers) builder.add_peer(peer);
    for (const auto& rule : rules) builder.add_rule(rule);
    return builder;
  }
};

Specs valid_specs() {
  Specs specs;
  PeerSpec alice;
  alice.public_key = openssl_base64(filled_key(0xa1));
  alice.preshared_key = openssl_base64(filled_key(0x5e));
  alice.allowed_ips = {"100.80.0.2/32", "fd00:80::2/128"};
  alice.user = "alice";
  alice.device = "laptop";
  alice.tags = {"ci", "prod"};
  alice.groups = {"eng"};
  alice.endpoint = "198.51.100.3:51820";
  alice.persistent_keepalive = 25;
  PeerSpec bob;
  bob.public_key = filled_key(0xb0);
  bob.allowed_ips = {"100.80.0.3/32", "10.20.0.0/16"};
  bob.user = "bob";
  bob.endpoint = "[2001:db8::7]:4500";
  PeerSpec carol;
  carol.public_key = filled_key(0xc0);
  carol.allowed_ips = {"100.80.0.4/32"};
  carol.user = "carol";
  specs.peers = {alice, bob, carol};
  RuleSpec a_to_b{"a-to-b",       {"user:alice", "group:eng"}, {"100.80.0.3/32"}, 6, 5201, 5201,
                  Action::Forward};
  RuleSpec punt{"punt", {"*"}, {"100.80.0.1/32"}, 17, 53, 53, Action::PuntToGateway};
  RuleSpec deny{"deny",      {"peer:" + openssl_base64(filled_key(0xb0))}, {}, 0, 0, 65535,
                Action::Drop};
  specs.rules = {a_to_b, punt, deny};
  return specs;
}

std::vector<uint8_t> build_valid() {
  std::string error;
  auto bytes = valid_specs().builder().finish(&error);
  EXPECT_TRUE(bytes) << error;
  return bytes.value_or(std::vector<uint8_t>{});
}

bool host_bits_clear(std::span<const uint8_t> addr, unsigned len) {
  for (unsigned bit = len; bit < addr.size() * 8; ++bit) {
    if (addr[bit / 8] & (0x80 >> (bit % 8))) return false;
  }
  return true;
}

// An independent restatement of the semantic rules, applied to buffers load_policy accepted.
void expect_semantically_valid(const Policy& policy) {
  EXPECT_EQ(policy.schema_version(), kSchemaVersion);
  const auto check_prefix = [](const Prefix* prefix, bool single_address) {
    ASSERT_NE(prefix, nullptr);
    ASSERT_TRUE(prefix->family() == Family::V4 || prefix->family() == Family::V6);
    const size_t size = prefix->family() == Family::V4 ? 4 : 16;
    ASSERT_NE(prefix->addr(), nullptr);
    ASSERT_EQ(prefix->addr()->size(), size);
    EXPECT_LE(prefix->len(), size * 8);
    if (single_address) {
      EXPECT_EQ(prefix->len(), size * 8);
    }
    EXPECT_TRUE(host_bits_clear(addr_of(prefix), prefix->len()));
  };
  if (policy.gateway()) {
    for (const auto* prefix : *policy.gateway()) check_prefix(prefix, false);
  }
  std::set<Key> keys;
  std::set<std::vector<uint8_t>> routes;
  if (policy.peers()) {
    for (const auto* peer : *policy.peers()) {
      ASSERT_NE(peer->public_key(), nullptr);
      const Key key = key_of(peer->public_key());
      EXPECT_NE(key, Key{});
      EXPECT_TRUE(keys.insert(key).second);
      ASSERT_NE(peer->identity(), nullptr);
      ASSERT_NE(peer->identity()->user(), nullptr);
      EXPECT_GT(peer->identity()->user()->size(), 0u);
      if (peer->allowed_ips()) {
        for (const auto* prefix : *peer->allowed_ips()) {
          check_prefix(prefix, false);
          auto route = addr_of(prefix);
          route.push_back(prefix->len());
          EXPECT_TRUE(routes.insert(route).second);
        }
      }
      if (peer->endpoint()) {
        check_prefix(peer->endpoint()->addr(), true);
        EXPECT_NE(peer->endpoint()->port(), 0);
      }
    }
  }
  if (policy.rules()) {
    for (const auto* rule : *policy.rules()) {
      EXPECT_LE(static_cast<unsigned>(rule->action()), 2u);
      EXPECT_LE(rule->port_low(), rule->port_high());
      ASSERT_NE(rule->sources(), nullptr);
      EXPECT_GT(rule->sources()->size(), 0u);
      for (const auto* source : *rule->sources()) EXPECT_GT(source->size(), 0u);
      if (rule->destinations()) {
        for (const auto* prefix : *rule->destinations()) check_prefix(prefix, false);
      }
    }
  }
}

std::string rejection(std::span<const uint8_t> bytes) {
  std::string error;
  EXPECT_FALSE(load_policy(bytes, &error));
  EXPECT_FALSE(error.empty());
  return error;
}

TEST(PolicyRoundTrip, BuilderOutputReadsBackEveryField) {
  const auto bytes = build_valid();
  std::string error;
  const auto loaded = load_policy(bytes, &error);
  ASSERT_TRUE(loaded) << error;
  const Policy& policy = *loaded->root();
  EXPECT_EQ(policy.schema_version(), kSchemaVersion);
  EXPECT_EQ(loaded->version(), 42u);
  ASSERT_EQ(policy.gateway()->size(), 2u);
  EXPECT_EQ(policy.gateway()->Get(0)->family(), Family::V4);
  EXPECT_EQ(addr_of(policy.gateway()->Get(0)), (std::vector<uint8_t>{100, 80, 0, 1}));
  EXPECT_EQ(policy.gateway()->Get(0)->len(), 32);
  EXPECT_EQ(policy.gateway()->Get(1)->family(), Family::V6);
  EXPECT_EQ(addr_of(policy.gateway()->Get(1)),
            (std::vector<uint8_t>{0xfd, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(policy.gateway()->Get(1)->len(), 128);

  ASSERT_EQ(policy.peers()->size(), 3u);
  const Peer& alice = *policy.peers()->Get(0);
  EXPECT_EQ(key_of(alice.public_key()), filled_key(0xa1));
  ASSERT_NE(alice.preshared_key(), nullptr);
  EXPECT_EQ(key_of(alice.preshared_key()), filled_key(0x5e));
  ASSERT_EQ(alice.allowed_ips()->size(), 2u);
  EXPECT_EQ(addr_of(alice.allowed_ips()->Get(0)), (std::vector<uint8_t>{100, 80, 0, 2}));
  EXPECT_EQ(alice.allowed_ips()->Get(1)->family(), Family::V6);
  EXPECT_EQ(alice.allowed_ips()->Get(1)->len(), 128);
  EXPECT_EQ(alice.identity()->user()->str(), "alice");
  EXPECT_EQ(alice.identity()->device()->str(), "laptop");
  EXPECT_EQ(strings_of(alice.identity()->tags()), (std::vector<std::string>{"ci", "prod"}));
  EXPECT_EQ(strings_of(alice.identity()->groups()), (std::vector<std::string>{"eng"}));
  EXPECT_EQ(alice.endpoint()->addr()->family(), Family::V4);
  EXPECT_EQ(addr_of(alice.endpoint()->addr()), (std::vector<uint8_t>{198, 51, 100, 3}));
  EXPECT_EQ(alice.endpoint()->addr()->len(), 32);
  EXPECT_EQ(alice.endpoint()->port(), 51820);
  EXPECT_EQ(alice.persistent_keepalive(), 25);

  const Peer& bob = *policy.peers()->Get(1);
  EXPECT_EQ(key_of(bob.public_key()), filled_key(0xb0));
  EXPECT_EQ(bob.preshared_key(), nullptr);
  EXPECT_EQ(addr_of(bob.allowed_ips()->Get(1)), (std::vector<uint8_t>{10, 20, 0, 0}));
  EXPECT_EQ(bob.allowed_ips()->Get(1)->len(), 16);
  EXPECT_EQ(bob.identity()->device(), nullptr);
  EXPECT_EQ(bob.identity()->tags(), nullptr);
  EXPECT_EQ(bob.endpoint()->addr()->family(), Family::V6);
  EXPECT_EQ(bob.endpoint()->port(), 4500);
  EXPECT_EQ(bob.persistent_keepalive(), 0);
  const auto bob_endpoint = to_ip_endpoint(*bob.endpoint());
  ASSERT_TRUE(bob_endpoint);
  EXPECT_EQ(format_endpoint(*bob_endpoint), "[2001:db8::7]:4500");
  EXPECT_EQ(policy.peers()->Get(2)->endpoint(), nullptr);

  ASSERT_EQ(policy.rules()->size(), 3u);
  const Rule& a_to_b = *policy.rules()->Get(0);
  EXPECT_EQ(a_to_b.name()->str(), "a-to-b");
  EXPECT_EQ(strings_of(a_to_b.sources()), (std::vector<std::string>{"user:alice", "group:eng"}));
  EXPECT_EQ(addr_of(a_to_b.destinations()->Get(0)), (std::vector<uint8_t>{100, 80, 0, 3}));
  EXPECT_EQ(a_to_b.protocol(), 6);
  EXPECT_EQ(a_to_b.port_low(), 5201);
  EXPECT_EQ(a_to_b.port_high(), 5201);
  EXPECT_EQ(a_to_b.action(), Action::Forward);
  EXPECT_EQ(policy.rules()->Get(1)->action(), Action::PuntToGateway);
  const Rule& deny = *policy.rules()->Get(2);
  EXPECT_EQ(deny.action(), Action::Drop);
  EXPECT_EQ(deny.destinations(), nullptr);
  EXPECT_EQ(deny.port_low(), 0);
  EXPECT_EQ(deny.port_high(), 65535);
}

TEST(PolicyLoad, KeepsAnAlignedCopyThatSurvivesMoves) {
  const auto bytes = build_valid();
  // Load from an odd address: the verifier's alignment check must not see the caller's layout.
  std::vector<uint8_t> shifted(bytes.size() + 1);
  std::copy(bytes.begin(), bytes.end(), shifted.begin() + 1);
  std::string error;
  auto loaded = load_policy(std::span(shifted).subspan(1), &error);
  ASSERT_TRUE(loaded) << error;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(loaded->bytes().data()) % 8, 0u);
  EXPECT_TRUE(
      std::equal(bytes.begin(), bytes.end(), loaded->bytes().begin(), loaded->bytes().end()));
  LoadedPolicy moved = std::move(*loaded);
  EXPECT_EQ(moved.version(), 42u);
  EXPECT_EQ(moved.root()->peers()->size(), 3u);
}

TEST(PolicyLoad, RejectsEveryTruncation) {
  const auto bytes = build_valid();
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::string error;
    EXPECT_FALSE(load_policy(std::span(bytes).first(len), &error)) << "length " << len;
  }
}

TEST(PolicyLoad, CorruptedBuffersAreRejectedOrStillValid) {
  const auto bytes = build_valid();
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<size_t> position(0, bytes.size() - 1);
  std::uniform_int_distribution<int> flip(1, 255);
  int accepted = 0;
  for (int i = 0; i < 4000; ++i) {
    auto corrupted = bytes;
    corrupted[position(rng)] ^= static_cast<uint8_t>(flip(rng));
    std::string error;
    const auto loaded = load_policy(corrupted, &error);
    if (!loaded) continue;
    ++accepted;
    expect_semantically_valid(*loaded->root());
  }
  // Flips in key bytes, ports and names are legitimately accepted; the test must exercise both.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, 4000);
}

TEST(PolicyLoad, RejectsWrongIdentifier) {
  auto bytes = build_valid();
  bytes[4] = 'X';  // the identifier follows the 4-byte root offset
  EXPECT_NE(rejection(bytes).find("identifier"), std::string::npos);
}

TEST(PolicyLoad, RejectsOversizedInputBeforeParsing) {
  // Untouched anonymous pages cost nothing, unlike a zero-filled 64 MiB vector.
  const size_t size = kMaxPolicyBytes + 1;
  void* huge = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(huge, MAP_FAILED);
  const auto valid = build_valid();
  std::copy(valid.begin(), valid.end(), static_cast<uint8_t*>(huge));
  EXPECT_NE(rejection({static_cast<const uint8_t*>(huge), size}).find("limit"), std::string::npos);
  munmap(huge, size);
}

TEST(PolicyLoad, RejectsOtherSchemaVersions) {
  for (uint32_t version : {0u, kSchemaVersion + 1}) {
    Specs specs = valid_specs();
    specs.schema_version = version;
    std::string error;
    EXPECT_FALSE(specs.builder().finish(&error));
    const auto bytes = specs.builder().finish_unchecked(&error);
    ASSERT_TRUE(bytes) << error;
    EXPECT_NE(rejection(*bytes).find("schema_version"), std::string::npos);
  }
}

struct SemanticCase {
  const char* name;
  std::function<void(Specs&)> mutate;
  const char* expected;  // substring of the error, starting with the field path
};

RawPrefix raw_v4(std::vector<uint8_t> addr, uint8_t len) {
  return {Family::V4, addr, len};
}

const SemanticCase kSemanticCases[] = {
    {"missing public key", [](Specs& s) { s.peers[1].public_key = std::string(); },
     "peers[1].public_key: missing"},
    {"all-zero public key", [](Specs& s) { s.peers[1].public_key = Key{}; },
     "peers[1].public_key: all-zero"},
    {"duplicate public key", [](Specs& s) { s.peers[2].public_key = filled_key(0xa1); },
     "peers[2].public_key: same key as peers[0]"},
    {"unknown family",
     [](Specs& s) {
       s.peers[0].allowed_ips[1] = RawPrefix{static_cast<Family>(7), {1, 2, 3, 4}, 32};
     },
     "peers[0].allowed_ips[1]: unknown address family 7"},
    {"IPv4 with 16 bytes",
     [](Specs& s) { s.peers[0].allowed_ips[0] = raw_v4(std::vector<uint8_t>(16), 32); },
     "peers[0].allowed_ips[0]: IPv4 address has 16 bytes"},
    {"IPv6 with 4 bytes",
     [](Specs& s) {
       s.peers[0].allowed_ips[0] = RawPrefix{Family::V6, {1, 2, 3, 4}, 32};
     },
     "peers[0].allowed_ips[0]: IPv6 address has 4 bytes"},
    {"IPv4 length 33",
     [](Specs& s) {
       s.peers[2].allowed_ips[0] = raw_v4({100, 80, 0, 4}, 33);
     },
     "peers[2].allowed_ips[0]: prefix length 33 exceeds 32 for IPv4"},
    {"IPv6 length 129",
     [](Specs& s) {
       s.gateway[1] = RawPrefix{Family::V6, std::vector<uint8_t>(16), 129};
     },
     "gateway[1]: prefix length 129 exceeds 128 for IPv6"},
    {"host bits set",
     [](Specs& s) {
       s.peers[1].allowed_ips[1] = raw_v4({10, 20, 0, 1}, 16);
     },
     "peers[1].allowed_ips[1]: 10.20.0.1/16 has host bits set"},
    {"prefix assigned twice", [](Specs& s) { s.peers[2].allowed_ips.push_back("10.20.0.0/16"); },
     "peers[2].allowed_ips[1]: 10.20.0.0/16 is already assigned to peers[1]"},
    {"missing user", [](Specs& s) { s.peers[1].user.clear(); }, "peers[1].identity.user: missing"},
    {"user with whitespace", [](Specs& s) { s.peers[1].user = "bob smith"; },
     "peers[1].identity.user: \"bob smith\" is not a valid name"},
    {"tag with control character", [](Specs& s) { s.peers[0].tags[1] = "pr\x01od"; },
     "peers[0].identity.tags[1]"},
    {"endpoint is a prefix",
     [](Specs& s) {
       s.peers[0].endpoint = RawEndpoint{raw_v4({198, 51, 100, 0}, 24), 51820};
     },
     "peers[0].endpoint.addr: 198.51.100.0/24 is not a single address"},
    {"endpoint port 0",
     [](Specs& s) {
       s.peers[1].endpoint = RawEndpoint{raw_v4({198, 51, 100, 9}, 32), 0};
     },
     "peers[1].endpoint.port: must not be 0"},
    {"unknown action", [](Specs& s) { s.rules[1].action = static_cast<Action>(3); },
     "rules[1].action: unknown value 3"},
    {"inverted port range",
     [](Specs& s) {
       s.rules[0].port_low = 2000;
       s.rules[0].port_high = 1000;
     },
     "rules[0].port_low 2000 exceeds port_high 1000"},
    {"no sources", [](Specs& s) { s.rules[2].sources.clear(); }, "rules[2].sources: empty"},
    {"empty selector name", [](Specs& s) { s.rules[0].sources[1] = "group:"; },
     "rules[0].sources[1]: \"group:\""},
    {"unknown selector kind", [](Specs& s) { s.rules[0].sources[0] = "usr:alice"; },
     "rules[0].sources[0]: \"usr:alice\": unknown selector kind"},
    {"selector with space", [](Specs& s) { s.rules[0].sources[0] = "user:al ice"; },
     "rules[0].sources[0]"},
    {"empty selector", [](Specs& s) { s.rules[0].sources[0] = ""; }, "rules[0].sources[0]"},
    {"peer selector not a key",
     [](Specs& s) { s.rules[2].sources[0] = "peer:" + openssl_base64(std::vector<uint8_t>(31)); },
     "rules[2].sources[0]"},
    {"bad destination",
     [](Specs& s) {
       s.rules[1].destinations[0] = raw_v4({100, 80, 0, 1}, 40);
     },
     "rules[1].destinations[0]: prefix length 40"},
};

TEST(PolicySemantics, EachViolationIsRejectedWithItsPath) {
  for (const SemanticCase& c : kSemanticCases) {
    SCOPED_TRACE(c.name);
    Specs specs = valid_specs();
    c.mutate(specs);
    std::string error;
    const auto bytes = specs.builder().finish_unchecked(&error);
    ASSERT_TRUE(bytes) << error;
    const std::string load_error = rejection(*bytes);
    EXPECT_NE(load_error.find(c.expected), std::string::npos) << load_error;
    EXPECT_FALSE(specs.builder().finish(&error));
    EXPECT_EQ(error, load_error);
  }
}

TEST(PolicyBuilder, ReportsUnparsableTextWithPath) {
  Specs specs = valid_specs();
  specs.peers[1].allowed_ips[0] = "100.80.0.300/32";
  std::string error;
  EXPECT_FALSE(specs.builder().finish_unchecked(&error));
  EXPECT_EQ(error.rfind("peers[1].allowed_ips[0]: ", 0), 0u) << error;

  specs = valid_specs();
  specs.peers[0].preshared_key = "c2hvcnQ=";
  EXPECT_FALSE(specs.builder().finish(&error));
  EXPECT_EQ(error, "peers[0].preshared_key: not a base64-encoded 32-byte key");

  specs = valid_specs();
  specs.peers[2].endpoint = "198.51.100.3";
  EXPECT_FALSE(specs.builder().finish(&error));
  EXPECT_EQ(error.rfind("peers[2].endpoint: ", 0), 0u) << error;
}

TEST(Selectors, AcceptsEveryDocumentedForm) {
  for (const std::string& selector :
       {std::string("*"), std::string("alice"), std::string("user:alice"), std::string("group:eng"),
        std::string("tag:ci"), std::string("device:laptop"),
        "peer:" + openssl_base64(filled_key(7))}) {
    std::string error;
    EXPECT_TRUE(is_valid_selector(selector, &error)) << selector << ": " << error;
  }
  for (const char* selector :
       {"", "user:", "tag:a b", "host:x", "peer:abc", "al\tice", "a b", "device:\x7f"}) {
    EXPECT_FALSE(is_valid_selector(selector)) << selector;
  }
}

TEST(Prefixes, ParsesIpv4) {
  const auto prefix = parse_prefix("10.1.2.0/24");
  ASSERT_TRUE(prefix);
  EXPECT_EQ(prefix->family, Family::V4);
  EXPECT_EQ(prefix->len, 24);
  EXPECT_EQ(std::vector<uint8_t>(prefix->addr.begin(), prefix->addr.begin() + 4),
            (std::vector<uint8_t>{10, 1, 2, 0}));
  EXPECT_EQ(format_prefix(*prefix), "10.1.2.0/24");
  const auto host = parse_prefix("192.0.2.7");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->len, 32);
  EXPECT_EQ(format_prefix(*host), "192.0.2.7/32");
  EXPECT_EQ(parse_prefix("0.0.0.0/0")->len, 0);
}

TEST(Prefixes, ParsesIpv6) {
  const auto prefix = parse_prefix("FD00:0::/64");
  ASSERT_TRUE(prefix);
  EXPECT_EQ(prefix->family, Family::V6);
  EXPECT_EQ(prefix->len, 64);
  EXPECT_EQ(prefix->addr[0], 0xfd);
  EXPECT_TRUE(
      std::all_of(prefix->addr.begin() + 1, prefix->addr.end(), [](uint8_t b) { return b == 0; }));
  EXPECT_EQ(format_prefix(*prefix), "fd00::/64");
  const auto host = parse_prefix("2001:db8::1");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->len, 128);
  EXPECT_EQ(host->addr[15], 1);
  EXPECT_EQ(parse_prefix("::/0")->len, 0);
}

TEST(Prefixes, RejectsMalformedInput) {
  for (const char* text :
       {"", "/24", "10.0.0.0/", "10.0.0.0/33", "10.0.0/24", "10.0.0.256/32", "10.0.0.0/24 ",
        " 10.0.0.0/24", "10.0.0.0/+24", "10.0.0.0/-1", "10.0.0.0/2a", "10.0.0.0/24/8",
        "example.com", "fd00::/129", "fd00::g/64", "fd00::1%eth0"}) {
    std::string error;
    EXPECT_FALSE(parse_prefix(text, &error)) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
  EXPECT_FALSE(parse_prefix(std::string_view("10.0.0.0\0/8", 11)));
  EXPECT_FALSE(parse_endpoint(std::string_view("10.0.0.1\0:1", 11)));
}

TEST(Prefixes, RejectsHostBitsAndSaysSo) {
  std::string error;
  EXPECT_FALSE(parse_prefix("10.0.0.1/24", &error));
  EXPECT_NE(error.find("host bits"), std::string::npos) << error;
  EXPECT_NE(error.find("10.0.0.0/24"), std::string::npos) << error;
  EXPECT_FALSE(parse_prefix("fd00::1/64", &error));
  EXPECT_NE(error.find("host bits"), std::string::npos) << error;
  EXPECT_TRUE(parse_prefix("10.0.0.128/25"));
  EXPECT_FALSE(parse_prefix("10.0.0.64/25"));
}

TEST(Endpoints, ParsesAndFormatsBothFamilies) {
  const auto v4 = parse_endpoint("198.51.100.3:51820");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->family, Family::V4);
  EXPECT_EQ(std::vector<uint8_t>(v4->addr.begin(), v4->addr.begin() + 4),
            (std::vector<uint8_t>{198, 51, 100, 3}));
  EXPECT_EQ(v4->port, 51820);
  EXPECT_EQ(format_endpoint(*v4), "198.51.100.3:51820");
  const auto v6 = parse_endpoint("[fd00::1]:1");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->family, Family::V6);
  EXPECT_EQ(v6->addr[0], 0xfd);
  EXPECT_EQ(v6->addr[15], 1);
  EXPECT_EQ(v6->port, 1);
  EXPECT_EQ(format_endpoint(*v6), "[fd00::1]:1");
}

TEST(Endpoints, RejectsMalformedInput) {
  for (const char* text :
       {"", "198.51.100.3", "198.51.100.3:", "198.51.100.3:0", "198.51.100.3:65536",
        "198.51.100.3:-1", "fd00::1:51820", "[198.51.100.3]:51820", "[fd00::1]51820",
        "[fd00::1]:", "[fd00::1", "vpn.example.com:51820", "198.51.100.3:51820 "}) {
    std::string error;
    EXPECT_FALSE(parse_endpoint(text, &error)) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
}

TEST(Keys, Base64MatchesOpensslAndRoundTrips) {
  std::mt19937 rng(7);
  for (int i = 0; i < 64; ++i) {
    Key key;
    std::generate(key.begin(), key.end(), [&] { return static_cast<uint8_t>(rng()); });
    const std::string text = encode_key_base64(key);
    EXPECT_EQ(text, openssl_base64(key));
    EXPECT_EQ(text.size(), 44u);
    EXPECT_EQ(decode_key_base64(text), key);
  }
}

TEST(Keys, RejectsWrongLengthsAndVariants) {
  const std::string zero = openssl_base64(Key{});
  EXPECT_EQ(decode_key_base64(zero), Key{});
  EXPECT_FALSE(decode_key_base64(""));
  EXPECT_FALSE(decode_key_base64(openssl_base64(std::vector<uint8_t>(31, 1))));
  EXPECT_FALSE(decode_key_base64(openssl_base64(std::vector<uint8_t>(33, 1))));
  EXPECT_FALSE(decode_key_base64(openssl_base64(std::vector<uint8_t>(64, 1))));
  EXPECT_FALSE(decode_key_base64(zero.substr(0, 43)));  // padding required
  EXPECT_FALSE(decode_key_base64(zero + "\n"));
  EXPECT_FALSE(decode_key_base64(" " + zero));
  // 32 bytes leave 2 spare bits in the last character; a non-zero value there is non-canonical.
  std::string non_canonical = zero;
  non_canonical[42] = 'B';
  EXPECT_FALSE(decode_key_base64(non_canonical));
  // URL-safe alphabet is a different variant.
  const std::string standard = openssl_base64(filled_key(0xfb));
  std::string url_safe = standard;
  std::replace(url_safe.begin(), url_safe.end(), '+', '-');
  std::replace(url_safe.begin(), url_safe.end(), '/', '_');
  ASSERT_NE(url_safe, standard);
  EXPECT_FALSE(decode_key_base64(url_safe));
}

TEST(ReadFile, ReadsWholeFileAndReportsMissingOnes) {
  char path[] = "/tmp/airlock-test-policy-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const auto bytes = build_valid();
  ASSERT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  close(fd);
  std::string error;
  EXPECT_EQ(read_file(path, &error), bytes) << error;
  unlink(path);
  EXPECT_FALSE(read_file(path, &error));
  EXPECT_NE(error.find(path), std::string::npos);
}

// --- JSON ---

std::string json_policy(const std::string& peers_extra = "", const std::string& rules = "") {
  const std::string alice = openssl_base64(filled_key(0xa1));
  const std::string bob = openssl_base64(filled_key(0xb0));
  const std::string psk = openssl_base64(filled_key(0x5e));
  return R"({
  // the hub
  "version": 9, "gateway": ["100.80.0.1/32"],
  "peers": [
    {"public_key": ")" +
         alice + R"(", "preshared_key": ")" + psk + R"(",
     "allowed_ips": ["100.80.0.2/32"], "user": "alice", "device": "laptop",
     "tags": ["ci"], "groups": ["eng"], "endpoint": "198.51.100.3:51820",
     "persistent_keepalive": 25},
    /* bob has no endpoint */
    {"public_key": ")" +
         bob + R"(", "allowed_ips": ["100.80.0.3/32"], "user": "bob")" + peers_extra + R"(}
  ],
  "rules": [)" +
         (rules.empty() ? R"(
    {"name": "a-to-b", "from": ["user:alice"], "to": ["100.80.0.3/32"], "proto": "tcp",
     "ports": "5201", "action": "forward"},
    {"from": ["*"], "to": ["*"], "proto": "udp", "ports": "1000-2000", "action": "punt"},
    {"from": ["group:eng"], "to": ["100.80.0.0/24"], "proto": 47, "action": "drop"})"
                        : rules) +
         "]}";
}

std::string json_error(const std::string& text) {
  std::string error;
  EXPECT_FALSE(compile_policy_json(text, &error)) << text;
  return error;
}

TEST(PolicyJson, CompilesCommentedJson) {
  std::string error;
  const auto bytes = compile_policy_json(json_policy(), &error);
  ASSERT_TRUE(bytes) << error;
  const auto loaded = load_policy(*bytes, &error);
  ASSERT_TRUE(loaded) << error;
  const Policy& policy = *loaded->root();
  EXPECT_EQ(policy.version(), 9u);
  EXPECT_EQ(addr_of(policy.gateway()->Get(0)), (std::vector<uint8_t>{100, 80, 0, 1}));
  const Peer& alice = *policy.peers()->Get(0);
  EXPECT_EQ(key_of(alice.public_key()), filled_key(0xa1));
  EXPECT_EQ(key_of(alice.preshared_key()), filled_key(0x5e));
  EXPECT_EQ(alice.identity()->user()->str(), "alice");
  EXPECT_EQ(alice.identity()->device()->str(), "laptop");
  EXPECT_EQ(strings_of(alice.identity()->tags()), (std::vector<std::string>{"ci"}));
  EXPECT_EQ(strings_of(alice.identity()->groups()), (std::vector<std::string>{"eng"}));
  EXPECT_EQ(alice.endpoint()->port(), 51820);
  EXPECT_EQ(alice.persistent_keepalive(), 25);
  EXPECT_EQ(policy.peers()->Get(1)->endpoint(), nullptr);
  const Rule& a_to_b = *policy.rules()->Get(0);
  EXPECT_EQ(a_to_b.name()->str(), "a-to-b");
  EXPECT_EQ(a_to_b.protocol(), 6);
  EXPECT_EQ(a_to_b.port_low(), 5201);
  EXPECT_EQ(a_to_b.port_high(), 5201);
  EXPECT_EQ(a_to_b.action(), Action::Forward);
  const Rule& punt = *policy.rules()->Get(1);
  EXPECT_EQ(punt.destinations(), nullptr);  // "*": any destination
  EXPECT_EQ(punt.protocol(), 17);
  EXPECT_EQ(punt.port_low(), 1000);
  EXPECT_EQ(punt.port_high(), 2000);
  EXPECT_EQ(punt.action(), Action::PuntToGateway);
  const Rule& drop = *policy.rules()->Get(2);
  EXPECT_EQ(drop.protocol(), 47);
  EXPECT_EQ(drop.port_low(), 0);
  EXPECT_EQ(drop.port_high(), 65535);
  EXPECT_EQ(drop.action(), Action::Drop);
}

TEST(PolicyJson, RejectsUnknownKeysAtEveryLevel) {
  std::string with_top = json_policy();
  with_top.insert(with_top.find("\"version\""), "\"verison\": 3, ");
  EXPECT_EQ(json_error(with_top), "unknown key \"verison\"");
  EXPECT_EQ(json_error(json_policy(R"(, "group": ["admin"])")), "peers[1]: unknown key \"group\"");
  EXPECT_EQ(json_error(
                json_policy("", R"({"from": ["*"], "to": ["*"], "action": "drop", "port": "22"})")),
            "rules[0]: unknown key \"port\"");
}

TEST(PolicyJson, RejectsDuplicateKeys) {
  EXPECT_EQ(json_error(json_policy(
                "", R"({"from": ["*"], "to": ["*"], "action": "drop", "action": "forward"})")),
            "rules[0].action: duplicate key");
  EXPECT_EQ(json_error(json_policy(R"(, "user": "mallory")")), "peers[1].user: duplicate key");
}

TEST(PolicyJson, ErrorsNameTheJsonPath) {
  const auto rule = [](const std::string& body) { return json_policy("", "{" + body + "}"); };
  const struct {
    std::string text;
    std::string expected_prefix;
  } cases[] = {
      {json_policy(R"(, "endpoint": "198.51.100.3")"), "peers[1].endpoint: "},
      {json_policy(R"(, "persistent_keepalive": 70000)"), "peers[1].persistent_keepalive: "},
      {json_policy(R"(, "tags": ["ok", "not ok"])"), "peers[1].tags[1]: "},
      {json_policy(R"(, "device": 3)"), "peers[1].device: expected a string"},
      {rule(R"("from": ["user:alice", "usr:bob"], "to": ["*"], "action": "drop")"),
       "rules[0].from[1]: "},
      {rule(R"("from": [], "to": ["*"], "action": "drop")"), "rules[0].from: empty"},
      {rule(R"("from": ["*"], "to": ["10.0.0.1/24"], "action": "drop")"), "rules[0].to[0]: "},
      {rule(R"("from": ["*"], "to": ["*", "10.0.0.0/24"], "action": "drop")"), "rules[0].to: "},
      {rule(R"("from": ["*"], "action": "drop")"), "rules[0].to: required"},
      {rule(R"("from": ["*"], "to": ["*"])"), "rules[0].action: required"},
      {rule(R"("from": ["*"], "to": ["*"], "action": "allow")"), "rules[0].action: "},
      {rule(R"("from": ["*"], "to": ["*"], "proto": "gre", "action": "drop")"), "rules[0].proto: "},
      {rule(R"("from": ["*"], "to": ["*"], "proto": 256, "action": "drop")"), "rules[0].proto: "},
      {rule(R"("from": ["*"], "to": ["*"], "ports": "22", "action": "drop")"),
       "rules[0].ports: only valid with proto tcp, udp"},
      {rule(
           R"("from": ["*"], "to": ["*"], "proto": "tcp", "ports": "2000-1000", "action": "drop")"),
       "rules[0].ports: "},
      {rule(R"("from": ["*"], "to": ["*"], "proto": "tcp", "ports": "1-65536", "action": "drop")"),
       "rules[0].ports: "},
      {R"({"peers": []})", "version: required"},
      {R"({"version": -1})", "version: "},
      {R"({"version": 1, "gateway": ["100.80.0.1/33"]})", "gateway[0]: "},
      {R"({"version": 1, "peers": {}})", "peers: expected an array"},
      {R"([1, 2])", "expected an object"},
      {R"({"version": 1,})", "invalid JSON: "},
  };
  for (const auto& c : cases) {
    const std::string error = json_error(c.text);
    EXPECT_EQ(error.rfind(c.expected_prefix, 0), 0u) << error << "\n" << c.text;
  }
}

TEST(PolicyJson, CrossPeerChecksUseThePeerPath) {
  std::string text = json_policy();
  text.replace(text.find("100.80.0.3/32"), 13, "100.80.0.2/32");  // bob's allowed IP
  EXPECT_EQ(json_error(text),
            "peers[1].allowed_ips[0]: 100.80.0.2/32 is already assigned to peers[0]");
}

TEST(PolicyJson, KeyErrorsNeverEchoTheKey) {
  std::string text = json_policy();
  const std::string psk = openssl_base64(filled_key(0x5e));
  const std::string truncated_psk = psk.substr(0, 40);
  text.replace(text.find(psk), psk.size(), truncated_psk);
  const std::string error = json_error(text);
  EXPECT_EQ(error, "peers[0].preshared_key: not a base64-encoded 32-byte key");
  EXPECT_EQ(error.find(truncated_psk), std::string::npos);
}

}  // namespace
}  // namespace airlock::policy
