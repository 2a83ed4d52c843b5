#include "dataplane/stats.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <regex>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace airlock::dp {
namespace {

std::string unique_name(const char* what) {
  static int counter = 0;
  return "airlock-test-" + std::to_string(getpid()) + "-" + what + "-" + std::to_string(counter++);
}

// OpenSSL is the independent oracle for the key encoding.
std::string openssl_base64(std::span<const uint8_t> bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

PeerRecord make_peer(uint8_t key_seed, std::string_view user, std::string_view device, int family,
                     const char* addr, uint16_t port) {
  PeerRecord r;
  for (size_t i = 0; i < r.public_key.size(); ++i)
    r.public_key[i] = static_cast<uint8_t>(key_seed + i * 13);
  set_fixed_string(r.user, user);
  set_fixed_string(r.device, device);
  r.last_handshake_unix_ns = 1'700'000'000'123'456'789ULL;
  r.endpoint.family = static_cast<uint16_t>(family);
  r.endpoint.port = port;
  inet_pton(family, addr, r.endpoint.addr.data());
  return r;
}

// Two workers, one peer, two named rules, one port: the values every test below checks.
struct Fixture {
  std::string name = unique_name("stats");
  std::optional<StatsRegion> region;

  void populate() {
    std::string error;
    region = StatsRegion::create(name, 2, 8, 4, &error);
    ASSERT_TRUE(region) << error;
    const std::array<std::string_view, 2> rules = {"allow-openai", "deny-rest"};
    region->set_rule_names(7, rules);
    region->publish_peer(2, make_peer(1, "alice", "laptop", AF_INET, "192.0.2.7", 51820));
    region->publish_peer(5, make_peer(9, "bob", "ci-runner", AF_INET6, "2001:db8::1", 4500));
    region->publish_port(0, {.ipackets = 100,
                             .opackets = 90,
                             .ibytes = 10000,
                             .obytes = 9000,
                             .imissed = 1,
                             .ierrors = 2,
                             .oerrors = 3,
                             .rx_nombuf = 4,
                             .flow_steering = FlowSteering::kHardware});
    WorkerStats& w0 = region->worker(0);
    WorkerStats& w1 = region->worker(1);
    w0.count_rx(10, 1000);
    w0.count_tx(4, 400);
    w0.count_loop();
    w0.count_drop(DropReason::kBadMac, 3);
    w0.count_drop(DropReason::kReplay);
    w0.count_punted(2);
    w0.count_peer_rx(2, 100);
    w0.count_peer_tx(2, 60);
    w0.count_rule_hit(1, 5);
    w1.count_rx(5, 500);
    w1.count_loop();
    w1.count_drop(DropReason::kBadMac, 2);
    w1.count_returned(1);
    w1.count_forwarded(6);
    w1.count_peer_rx(2, 50);
    w1.count_rule_hit(1, 2);
    w1.count_rule_hit(3, 9);  // an unnamed rule: counted but not shown
    w0.count_handshake(HandshakeEvent::kInitiationRx, 3);
    w0.count_handshake(HandshakeEvent::kResponseTx, 2);
    w0.count_handshake(HandshakeEvent::kCompleted, 2);
    w1.count_handshake(HandshakeEvent::kInitiationTx);
    w1.count_handshake(HandshakeEvent::kResponseRx);
    w1.count_handshake(HandshakeEvent::kCompleted);
    w1.count_handshake(HandshakeEvent::kCookieTx, 4);
    w1.count_handshake(HandshakeEvent::kCookieRx, 5);
  }
};

// Returns an empty string when the snapshot holds what Fixture::populate wrote.
std::string check_populated(const StatsSnapshot& s) {
  auto expect = [](bool ok, const char* what) {
    return ok ? std::string() : std::string(what) + "; ";
  };
  std::string bad;
  bad += expect(s.policy_version == 7, "policy_version");
  bad += expect(
      s.pid == static_cast<uint32_t>(getppid()) || s.pid == static_cast<uint32_t>(getpid()), "pid");
  bad += expect(s.workers.size() == 2, "workers");
  bad += expect(s.total.rx_packets == 15 && s.total.rx_bytes == 1500, "total rx");
  bad += expect(s.total.tx_packets == 4 && s.total.tx_bytes == 400, "total tx");
  bad += expect(s.total.loops == 2, "loops");
  bad += expect(s.total.punted_packets == 2 && s.total.returned_packets == 1 &&
                    s.total.forwarded_packets == 6,
                "punted/returned/forwarded");
  bad += expect(s.total.drops[static_cast<size_t>(DropReason::kBadMac)] == 5, "bad_mac");
  bad += expect(s.total.drops[static_cast<size_t>(DropReason::kReplay)] == 1, "replay");
  bad += expect(s.workers.size() == 2 && s.workers[1].rx_packets == 5, "worker 1 rx");
  const auto handshakes = [&](HandshakeEvent e) { return s.total.handshakes[size_t(e)]; };
  bad += expect(handshakes(HandshakeEvent::kInitiationRx) == 3 &&
                    handshakes(HandshakeEvent::kInitiationTx) == 1,
                "initiations");
  bad += expect(
      handshakes(HandshakeEvent::kResponseRx) == 1 && handshakes(HandshakeEvent::kResponseTx) == 2,
      "responses");
  bad += expect(
      handshakes(HandshakeEvent::kCookieRx) == 5 && handshakes(HandshakeEvent::kCookieTx) == 4,
      "cookie replies");
  bad += expect(handshakes(HandshakeEvent::kCompleted) == 3, "completed");
  bad += expect(
      s.workers.size() == 2 && s.workers[1].handshakes[size_t(HandshakeEvent::kCompleted)] == 1,
      "worker 1 completed");
  bad += expect(s.peers.size() == 2, "peers");
  if (s.peers.size() == 2) {
    bad += expect(s.peers[0].slot == 2 && s.peers[0].traffic.rx_packets == 2 &&
                      s.peers[0].traffic.rx_bytes == 150 && s.peers[0].traffic.tx_packets == 1 &&
                      s.peers[0].traffic.tx_bytes == 60,
                  "peer 2 traffic");
    bad += expect(fixed_string(s.peers[0].record.user) == "alice", "peer 2 user");
    bad += expect(s.peers[1].slot == 5 && s.peers[1].traffic.rx_packets == 0, "peer 5");
  }
  bad += expect(s.rules.size() == 2, "rules");
  if (s.rules.size() == 2) {
    bad += expect(s.rules[0].name == "allow-openai" && s.rules[0].hits == 0, "rule 0");
    bad += expect(s.rules[1].name == "deny-rest" && s.rules[1].hits == 7, "rule 1");
  }
  bad += expect(s.ports.size() == 1 && s.ports[0].counters.ipackets == 100 &&
                    s.ports[0].counters.rx_nombuf == 4,
                "port 0");
  return bad;
}

TEST(Stats, ReaderSeesSumsOfWorkerBlocks) {
  Fixture f;
  f.populate();
  std::string error;
  std::optional<StatsReader> reader = StatsReader::open(f.name, &error);
  ASSERT_TRUE(reader) << error;
  EXPECT_EQ(check_populated(reader->snapshot()), "");
}

TEST(Stats, ReaderInAnotherProcessSeesSums) {
  Fixture f;
  f.populate();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::optional<StatsReader> reader = StatsReader::open(f.name, nullptr);
    if (!reader) _exit(2);
    const std::string bad = check_populated(reader->snapshot());
    if (!bad.empty()) std::fprintf(stderr, "child: %s\n", bad.c_str());
    _exit(bad.empty() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}

TEST(Stats, ReusedPeerSlotAndNewPolicyStartFromZero) {
  Fixture f;
  f.populate();
  f.region->clear_peer(2);
  f.region->publish_peer(2, make_peer(3, "carol", "phone", AF_INET, "198.51.100.1", 1));
  const std::array<std::string_view, 2> rules = {"new-a", "new-b"};
  f.region->set_rule_names(8, rules);
  f.region->worker(1).count_peer_rx(2, 40);
  f.region->worker(0).count_rule_hit(0);

  std::optional<StatsReader> reader = StatsReader::open(f.name, nullptr);
  ASSERT_TRUE(reader);
  const StatsSnapshot s = reader->snapshot();
  ASSERT_EQ(s.peers.size(), 2u);
  EXPECT_EQ(fixed_string(s.peers[0].record.user), "carol");
  EXPECT_EQ(s.peers[0].traffic.rx_packets, 1u);
  EXPECT_EQ(s.peers[0].traffic.rx_bytes, 40u);
  EXPECT_EQ(s.policy_version, 8u);
  ASSERT_EQ(s.rules.size(), 2u);
  EXPECT_EQ(s.rules[0].name, "new-a");
  EXPECT_EQ(s.rules[0].hits, 1u);
  EXPECT_EQ(s.rules[1].hits, 0u);
  // Only the per-peer and per-rule views restart; worker totals never go backwards.
  EXPECT_EQ(s.total.rx_packets, 15u);
}

TEST(Stats, JsonHasDocumentedFieldsAndValues) {
  Fixture f;
  f.populate();
  std::optional<StatsReader> reader = StatsReader::open(f.name, nullptr);
  ASSERT_TRUE(reader);
  const nlohmann::json doc = nlohmann::json::parse(to_json(reader->snapshot()));

  EXPECT_EQ(doc["policy_version"], 7);
  EXPECT_EQ(doc["pid"], getpid());
  ASSERT_EQ(doc["workers"].size(), 2u);
  EXPECT_EQ(doc["workers"][0]["rx_packets"], 10);
  EXPECT_EQ(doc["workers"][1]["drops"]["bad_mac"], 2);
  EXPECT_EQ(doc["total"]["rx_bytes"], 1500);

  const std::vector<std::string> reasons = {
      "not_wireguard",        "malformed",       "bad_mac",         "bad_tag",  "replay",
      "no_session",           "keypair_expired", "src_not_allowed", "acl_deny", "no_route",
      "handshake_queue_full", "rate_limited",    "ring_full",       "tx_full"};
  ASSERT_EQ(doc["drops"].size(), reasons.size());
  for (const std::string& r : reasons) EXPECT_TRUE(doc["drops"].contains(r)) << r;
  EXPECT_EQ(doc["drops"]["bad_mac"], 5);
  EXPECT_EQ(doc["drops"]["replay"], 1);
  EXPECT_EQ(doc["drops"]["tx_full"], 0);

  const std::vector<std::string> events = {"initiation_rx", "initiation_tx", "response_rx",
                                           "response_tx",   "cookie_rx",     "cookie_tx",
                                           "completed"};
  ASSERT_EQ(doc["handshakes"].size(), events.size());
  for (const std::string& e : events) EXPECT_TRUE(doc["handshakes"].contains(e)) << e;
  EXPECT_EQ(doc["handshakes"]["initiation_rx"], 3);
  EXPECT_EQ(doc["handshakes"]["cookie_rx"], 5);
  EXPECT_EQ(doc["handshakes"]["completed"], 3);
  EXPECT_EQ(doc["total"]["handshakes"]["response_tx"], 2);
  EXPECT_EQ(doc["workers"][1]["handshakes"]["cookie_tx"], 4);

  ASSERT_EQ(doc["ports"].size(), 1u);
  EXPECT_EQ(doc["ports"][0]["index"], 0);
  EXPECT_EQ(doc["ports"][0]["obytes"], 9000);
  EXPECT_EQ(doc["ports"][0]["imissed"], 1);
  EXPECT_EQ(doc["ports"][0]["flow_steering"], "hardware");

  ASSERT_EQ(doc["peers"].size(), 2u);
  const nlohmann::json& alice = doc["peers"][0];
  const PeerRecord expected = make_peer(1, "alice", "laptop", AF_INET, "192.0.2.7", 51820);
  EXPECT_EQ(alice["slot"], 2);
  EXPECT_EQ(alice["public_key"], openssl_base64(expected.public_key));
  EXPECT_EQ(alice["user"], "alice");
  EXPECT_EQ(alice["device"], "laptop");
  EXPECT_EQ(alice["endpoint"], "192.0.2.7:51820");
  EXPECT_EQ(alice["last_handshake_unix_ns"], 1'700'000'000'123'456'789ULL);
  EXPECT_EQ(alice["rx_packets"], 2);
  EXPECT_EQ(alice["rx_bytes"], 150);
  EXPECT_EQ(alice["tx_packets"], 1);
  EXPECT_EQ(alice["tx_bytes"], 60);
  EXPECT_EQ(doc["peers"][1]["endpoint"], "[2001:db8::1]:4500");

  ASSERT_EQ(doc["rules"].size(), 2u);
  EXPECT_EQ(doc["rules"][1]["name"], "deny-rest");
  EXPECT_EQ(doc["rules"][1]["hits"], 7);
}

TEST(Stats, TableNamesPeersAndRules) {
  Fixture f;
  f.populate();
  std::optional<StatsReader> reader = StatsReader::open(f.name, nullptr);
  ASSERT_TRUE(reader);
  const std::string table = to_table(reader->snapshot());
  EXPECT_NE(table.find("alice"), std::string::npos) << table;
  EXPECT_NE(table.find("192.0.2.7:51820"), std::string::npos) << table;
  EXPECT_NE(table.find("deny-rest"), std::string::npos) << table;
  EXPECT_NE(table.find("bad_mac"), std::string::npos) << table;
  EXPECT_NE(table.find("handshakes"), std::string::npos) << table;
  EXPECT_TRUE(std::regex_search(table, std::regex("\n +initiation_rx +3\n"))) << table;
  EXPECT_TRUE(std::regex_search(table, std::regex("\n +completed +3\n"))) << table;
}

TEST(Stats, RefusesRegionWithBadMagic) {
  const std::string name = unique_name("badmagic");
  std::string error;
  std::optional<SharedMemory> shm = SharedMemory::create(name, 1 << 16, &error);
  ASSERT_TRUE(shm) << error;
  std::memset(shm->bytes().data(), 0x5a, sizeof(StatsHeader));
  EXPECT_FALSE(StatsReader::open(name, &error));
  EXPECT_NE(error.find("bad magic"), std::string::npos) << error;
}

TEST(Stats, RefusesOtherLayoutVersionAndInconsistentSize) {
  const std::string name = unique_name("version");
  std::string error;
  std::optional<StatsRegion> region = StatsRegion::create(name, 1, 4, 4, &error);
  ASSERT_TRUE(region) << error;
  std::optional<SharedMemory> raw = SharedMemory::open(name, true, &error);
  ASSERT_TRUE(raw) << error;
  auto& header = *reinterpret_cast<StatsHeader*>(raw->bytes().data());

  header.layout_version = kStatsLayoutVersion + 1;
  EXPECT_FALSE(StatsReader::open(name, &error));
  EXPECT_NE(error.find("layout version"), std::string::npos) << error;

  // A region from before the handshake counters: its worker blocks are laid out differently.
  header.layout_version = 1;
  EXPECT_FALSE(StatsReader::open(name, &error));
  EXPECT_NE(
      error.find("layout version 1, this reader needs " + std::to_string(kStatsLayoutVersion)),
      std::string::npos)
      << error;

  header.layout_version = kStatsLayoutVersion;
  header.max_peers = 1000;
  EXPECT_FALSE(StatsReader::open(name, &error));
  EXPECT_NE(error.find("does not match"), std::string::npos) << error;

  header.max_peers = 4;
  EXPECT_TRUE(StatsReader::open(name, &error)) << error;
}

TEST(Stats, OpenMissingRegionFailsWithName) {
  const std::string name = unique_name("missing");
  std::string error;
  EXPECT_FALSE(StatsReader::open(name, &error));
  EXPECT_NE(error.find(name), std::string::npos) << error;
}

// The control lcore rewrites a peer record while a reader snapshots it: the reader must see
// either the old or the new record, never a mix of the two.
TEST(Stats, OnePeerSlotIsReadAlone) {
  Fixture f;
  f.populate();
  std::optional<StatsReader> reader = StatsReader::open(f.name, nullptr);
  ASSERT_TRUE(reader);
  const std::optional<PeerRecord> alice = reader->peer(2);
  ASSERT_TRUE(alice);
  EXPECT_EQ(fixed_string(alice->user), "alice");
  EXPECT_EQ(alice->public_key, make_peer(1, "", "", AF_INET, "192.0.2.7", 1).public_key);
  EXPECT_EQ(fixed_string(reader->peer(5)->user), "bob");
  EXPECT_FALSE(reader->peer(3));  // never published
  EXPECT_FALSE(reader->peer(8));  // past the region's 8 slots
  f.region->clear_peer(2);
  EXPECT_FALSE(reader->peer(2));
}

TEST(Stats, PeerRecordIsNeverTorn) {
  const std::string name = unique_name("seqlock");
  std::string error;
  std::optional<StatsRegion> region = StatsRegion::create(name, 1, 1, 0, &error);
  ASSERT_TRUE(region) << error;
  const std::string a(63, 'a');
  const std::string b(63, 'b');
  const PeerRecord ra = make_peer(0x11, a, a, AF_INET, "10.0.0.1", 1111);
  const PeerRecord rb = make_peer(0x22, b, b, AF_INET6, "fd00::2", 2222);
  region->publish_peer(0, ra);

  std::atomic<bool> stop = false;
  std::thread writer([&] {
    for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      region->publish_peer(0, (i & 1) ? rb : ra);
    }
  });
  std::optional<StatsReader> reader = StatsReader::open(name, &error);
  ASSERT_TRUE(reader) << error;
  int torn = 0;
  int skipped = 0;  // writer kept the record busy for all the reader's attempts
  int seen_a = 0;
  int seen_b = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < end) {
    // Alternately through the whole snapshot and through the one-slot read.
    std::optional<PeerRecord> read;
    if ((seen_a + seen_b + skipped) % 2 == 0) {
      const StatsSnapshot s = reader->snapshot();
      if (!s.peers.empty()) read = s.peers[0].record;
    } else {
      read = reader->peer(0);
    }
    if (!read) {
      ++skipped;
      continue;
    }
    const PeerRecord& r = *read;
    const bool is_a = r.user == ra.user && r.device == ra.device && r.public_key == ra.public_key &&
                      r.endpoint.port == 1111;
    const bool is_b = r.user == rb.user && r.device == rb.device && r.public_key == rb.public_key &&
                      r.endpoint.port == 2222;
    seen_a += is_a;
    seen_b += is_b;
    torn += !is_a && !is_b;
  }
  stop = true;
  writer.join();
  EXPECT_EQ(torn, 0);
  EXPECT_GT(seen_a, 0);
  EXPECT_GT(seen_b, 0);
  EXPECT_LT(skipped, seen_a + seen_b);
}

TEST(Stats, FixedStringsAreTruncatedAtCharacterBoundaries) {
  std::array<char, kStatsNameLen> field;
  // 62 ASCII bytes then a 3-byte character: only the ASCII part fits in 63 bytes.
  const std::string name = std::string(62, 'x') + "\xe2\x82\xac";
  set_fixed_string(field, name);
  EXPECT_EQ(fixed_string(field), std::string(62, 'x'));
  set_fixed_string(field, "short");
  EXPECT_EQ(fixed_string(field), "short");
}

}  // namespace
}  // namespace airlock::dp
