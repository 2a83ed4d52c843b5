// Identity ACL (rte_acl): classify_v4 rate in bursts of 32, as the worker calls it, and the
// compile time of the table, for 100, 10k and 100k rules. The policy is 1000 peers in 64
// groups and 3 environment tags; each rule is a group or tag selector × one IPv4 destination
// (/28, or /24 for one rule in ten) × TCP, UDP or any protocol × one port, a port range or
// any port. Tag rules cut across the groups, so a rule compiles to several class ranges: with
// this shape rte_acl gets about 3.9 entries per rule (`-- --log-level=lib.acl:debug` prints the
// count and the memory of each build). Keys are filled by fill_key_v4 (see make_keys).
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <sodium.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "bench/eal_benchmark.h"
#include "dataplane/acl.h"
#include "dataplane/simd.h"

namespace {

using airlock::dp::AclAction;
using airlock::dp::AclIdentity;
using airlock::dp::AclKeyV4;
using airlock::dp::AclRule;
using airlock::dp::AclTable;
using airlock::dp::Prefix;

constexpr uint32_t kBurst = 32;
constexpr size_t kKeys = 1 << 14;
constexpr uint32_t kPeers = 1000;
constexpr uint32_t kGroups = 64;
constexpr uint32_t kEnvironments = 3;
constexpr uint16_t kPorts[] = {443, 80, 22, 5432, 6379, 53, 8443};

std::string key_b64(uint32_t slot) {
  std::array<uint8_t, 32> key{};
  std::memcpy(key.data(), &slot, sizeof(slot));
  char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(b64, sizeof(b64), key.data(), key.size(), sodium_base64_VARIANT_ORIGINAL);
  return b64;
}

std::vector<AclIdentity> make_peers() {
  std::vector<AclIdentity> peers;
  for (uint32_t slot = 0; slot < kPeers; ++slot) {
    peers.push_back({slot,
                     "user" + std::to_string(slot),
                     "device" + std::to_string(slot),
                     key_b64(slot),
                     {"env" + std::to_string(slot / kGroups % kEnvironments)},
                     {"team" + std::to_string(slot % kGroups)}});
  }
  return peers;
}

// Rule i's destination: the i-th /28 of 10.0.0.0/8, widened to its /24 for one rule in ten.
Prefix destination_of(uint32_t rule) {
  const uint8_t len = rule % 10 == 0 ? 24 : 28;
  const uint32_t mask = ~0u << (32 - len);
  Prefix prefix{4, {}, len};
  const uint32_t be = htonl((0x0a000000u + (rule << 4)) & mask);
  std::memcpy(prefix.addr.data(), &be, 4);
  return prefix;
}

std::vector<AclRule> make_rules(uint32_t count) {
  std::vector<AclRule> rules;
  rules.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    AclRule rule;
    rule.name = "rule" + std::to_string(i);
    rule.sources = {i % 8 == 7 ? "tag:env" + std::to_string(i % kEnvironments)
                               : "group:team" + std::to_string(i * 13 % kGroups)};
    rule.destinations = {destination_of(i)};
    constexpr uint8_t kProtocols[] = {IPPROTO_TCP, IPPROTO_UDP, 0};
    rule.protocol = kProtocols[i % 3];
    if (i % 5 == 1) {
      rule.port_low = 8000;
      rule.port_high = 8999;
    } else if (i % 5 != 0) {
      rule.port_low = rule.port_high = kPorts[i % std::size(kPorts)];
    }
    rule.action = i % 16 == 15  ? AclAction::kDrop
                  : i % 32 == 1 ? AclAction::kPuntToGateway
                                : AclAction::kForward;
    rules.push_back(std::move(rule));
  }
  return rules;
}

void put16(uint8_t* at, uint16_t value) {
  at[0] = static_cast<uint8_t>(value >> 8);
  at[1] = static_cast<uint8_t>(value);
}

// A 20-byte IPv4 header and the first 4 bytes of a TCP or UDP header.
std::array<uint8_t, 24> ipv4_packet(uint32_t dst, uint8_t proto, uint16_t dport) {
  std::array<uint8_t, 24> packet{};
  packet[0] = 0x45;
  put16(&packet[2], static_cast<uint16_t>(packet.size()));
  packet[8] = 64;
  packet[9] = proto;
  const uint32_t src_be = htonl(0x64400001u);
  const uint32_t dst_be = htonl(dst);
  std::memcpy(&packet[12], &src_be, 4);
  std::memcpy(&packet[16], &dst_be, 4);
  put16(&packet[20], 40000);
  put16(&packet[22], dport);
  return packet;
}

// Peer slots by the selectors make_rules uses ("group:teamN", "tag:envN").
std::map<std::string, std::vector<uint32_t>> members_by_selector(
    const std::vector<AclIdentity>& peers) {
  std::map<std::string, std::vector<uint32_t>> members;
  for (const AclIdentity& peer : peers) {
    for (const std::string& group : peer.groups)
      members["group:" + group].push_back(peer.peer_slot);
    for (const std::string& tag : peer.tags) members["tag:" + tag].push_back(peer.peer_slot);
  }
  return members;
}

// Mostly permitted traffic: 90% of packets go to a random rule's destination, protocol and
// port, sent by a peer its selector names in 9 cases out of 10 and by any peer otherwise; the
// other 10% go to 192.168.0.0/16, which no rule covers.
std::vector<AclKeyV4> make_keys(const AclTable& table, const std::vector<AclIdentity>& peers,
                                const std::vector<AclRule>& rules) {
  const auto members = members_by_selector(peers);
  std::mt19937_64 rng(7);
  auto below = [&rng](uint64_t n) {
    return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng);
  };
  std::vector<AclKeyV4> keys(kKeys);
  for (AclKeyV4& key : keys) {
    auto peer = static_cast<uint32_t>(below(peers.size()));
    std::array<uint8_t, 24> packet;
    if (below(10) == 0) {
      packet = ipv4_packet(0xc0a80000u + static_cast<uint32_t>(below(1u << 16)), IPPROTO_TCP, 443);
    } else {
      const AclRule& rule = rules[below(rules.size())];
      if (below(10) != 0) {
        const std::vector<uint32_t>& senders = members.at(rule.sources[0]);
        peer = senders[below(senders.size())];
      }
      uint32_t dst_be;
      std::memcpy(&dst_be, rule.destinations[0].addr.data(), 4);
      const uint32_t host_bits = (1u << (32 - rule.destinations[0].len)) - 1;
      const uint32_t dst = ntohl(dst_be) + static_cast<uint32_t>(below(host_bits + 1));
      const auto port = static_cast<uint16_t>(
          rule.port_low + below(static_cast<uint64_t>(rule.port_high - rule.port_low) + 1));
      packet = ipv4_packet(dst, rule.protocol == 0 ? uint8_t{IPPROTO_UDP} : rule.protocol, port);
    }
    if (!airlock::dp::fill_key_v4(key, table.class_of(peer), packet.data(), packet.size())) {
      throw std::runtime_error("fill_key_v4 rejected a generated packet");
    }
  }
  return keys;
}

std::unique_ptr<AclTable> compile(const std::vector<AclIdentity>& peers,
                                  const std::vector<AclRule>& rules) {
  std::string error;
  std::optional<AclTable> table = AclTable::compile(peers, rules, &error);
  if (!table) throw std::runtime_error(error);
  return std::make_unique<AclTable>(std::move(*table));
}

struct Workload {
  std::vector<AclRule> rules;
  std::unique_ptr<AclTable> table;  // compiled on first use by the classify benchmark
  std::vector<AclKeyV4> keys;
};

// Rules and tables are built once per size and kept for the whole run: the library calls a
// benchmark function several times while it settles on an iteration count. Cleared before EAL
// cleanup.
const std::vector<AclIdentity> g_peers = make_peers();
std::map<uint32_t, Workload> g_workloads;

Workload& workload(uint32_t rule_count) {
  Workload& w = g_workloads[rule_count];
  if (w.rules.empty()) w.rules = make_rules(rule_count);
  return w;
}

void BM_ClassifyV4(benchmark::State& state) {
  Workload& w = workload(static_cast<uint32_t>(state.range(0)));
  if (!w.table) {
    w.table = compile(g_peers, w.rules);
    w.keys = make_keys(*w.table, g_peers, w.rules);
  }
  std::vector<const AclKeyV4*> key_ptrs(kKeys);
  for (size_t i = 0; i < kKeys; ++i) key_ptrs[i] = &w.keys[i];
  std::array<uint32_t, kBurst> results;
  size_t at = 0;
  int64_t matched = 0;
  for (auto _ : state) {
    w.table->classify_v4(&key_ptrs[at], results.data(), kBurst);
    for (uint32_t result : results) matched += result != 0;
    at = (at + kBurst) % kKeys;
  }
  const int64_t items = state.iterations() * kBurst;
  state.SetItemsProcessed(items);
  state.counters["matched_share"] = static_cast<double>(matched) / static_cast<double>(items);
  state.counters["classes"] = w.table->class_count();
}
BENCHMARK(BM_ClassifyV4)->Arg(100)->Arg(10000)->Arg(100000);

// Whole AclTable::compile (identity classes, rule expansion, rte_acl build) as a policy swap
// pays it on the control thread.
void BM_Compile(benchmark::State& state) {
  const Workload& w = workload(static_cast<uint32_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(compile(g_peers, w.rules));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Compile)->Arg(100)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  // rte_acl keeps its compiled tries in EAL memory. The SIMD width is set as airlock-dataplane
  // sets it: it decides which classify code rte_acl picks.
  return airlock::bench::run_on_eal(
      argc, argv, "acl", "2048", [] { g_workloads.clear(); },
      [] {
        benchmark::AddCustomContext("dpdk_simd_bits",
                                    std::to_string(airlock::dp::use_avx512_where_available()));
      });
}
