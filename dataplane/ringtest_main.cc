// airlock-ringtest: stands in for the control plane on a running data plane's packet channel,
// to prove both directions end to end with real WireGuard peers.
//
//   airlock-ringtest --channel NAME [--echo-icmp] [--dump] [--count N] [--timeout-s S]
//
// --echo-icmp answers IPv4 ICMP echo requests arriving on kToGateway with the echo reply, sent
// back on kFromGateway to the same peer slot. --dump prints one line per packet. Stops after N
// packets, after S seconds, or on SIGINT/SIGTERM, then prints "received N replied M". Exit
// status: 0 done, 1 usage or attach error, 3 timed out before --count packets arrived.
#include <arpa/inet.h>
#include <getopt.h>
#include <rte_icmp.h>
#include <rte_ip.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include "dataplane/ring.h"

namespace airlock::dp {
namespace {

volatile std::sig_atomic_t g_stop = 0;

void on_signal(int) {
  g_stop = 1;
}

struct Options {
  std::string channel;
  bool echo_icmp = false;
  bool dump = false;
  std::optional<uint64_t> count;
  std::optional<uint64_t> timeout_s;
};

void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --channel NAME [--echo-icmp] [--dump] [--count N] [--timeout-s S]\n",
               argv0);
}

std::optional<uint64_t> parse_number(std::string_view text) {
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<Options> parse_options(int argc, char** argv) {
  enum { kChannel = 1, kEcho, kDump, kCount, kTimeout };
  static const option long_options[] = {{"channel", required_argument, nullptr, kChannel},
                                        {"echo-icmp", no_argument, nullptr, kEcho},
                                        {"dump", no_argument, nullptr, kDump},
                                        {"count", required_argument, nullptr, kCount},
                                        {"timeout-s", required_argument, nullptr, kTimeout},
                                        {nullptr, 0, nullptr, 0}};
  Options o;
  int c = 0;
  while ((c = getopt_long(argc, argv, "", long_options, nullptr)) != -1) {
    switch (c) {
      case kChannel:
        o.channel = optarg;
        break;
      case kEcho:
        o.echo_icmp = true;
        break;
      case kDump:
        o.dump = true;
        break;
      case kCount:
        if (!(o.count = parse_number(optarg))) return std::nullopt;
        break;
      case kTimeout:
        if (!(o.timeout_s = parse_number(optarg))) return std::nullopt;
        break;
      default:
        return std::nullopt;
    }
  }
  if (o.channel.empty() || optind != argc) return std::nullopt;
  return o;
}

// Writes the echo reply for an IPv4 ICMP echo request into `out` and returns its length, or
// 0 when `packet` is anything else (including fragments, which we do not reassemble).
size_t make_echo_reply(std::span<const uint8_t> packet, std::span<uint8_t> out) {
  if (packet.size() < sizeof(rte_ipv4_hdr) || (packet[0] >> 4) != 4) return 0;
  const size_t ihl =
      static_cast<size_t>(packet[0] & RTE_IPV4_HDR_IHL_MASK) * RTE_IPV4_IHL_MULTIPLIER;
  const size_t total = static_cast<size_t>(packet[2]) << 8 | packet[3];
  if (ihl < sizeof(rte_ipv4_hdr) || total < ihl + sizeof(rte_icmp_hdr) || total > packet.size() ||
      total > out.size()) {
    return 0;
  }
  std::memcpy(out.data(), packet.data(), total);
  // Copied into our own buffer, so the headers are suitably aligned for these views.
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(out.data());
  auto* icmp = reinterpret_cast<rte_icmp_hdr*>(out.data() + ihl);
  const bool fragment = (rte_be_to_cpu_16(ip->fragment_offset) &
                         (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0;
  if (fragment || ip->next_proto_id != IPPROTO_ICMP ||
      icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || icmp->icmp_code != 0) {
    return 0;
  }
  const rte_be32_t requester = ip->src_addr;  // packed fields: no std::swap
  ip->src_addr = ip->dst_addr;
  ip->dst_addr = requester;
  ip->time_to_live = 64;
  ip->hdr_checksum = 0;
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
  icmp->icmp_cksum = 0;
  icmp->icmp_cksum = static_cast<uint16_t>(~rte_raw_cksum(icmp, total - ihl));
  return total;
}

void dump_packet(uint32_t peer_slot, std::span<const uint8_t> p) {
  char src[INET6_ADDRSTRLEN] = "?";
  char dst[INET6_ADDRSTRLEN] = "?";
  unsigned proto = 0;
  if (p.size() >= 20 && (p[0] >> 4) == 4) {
    inet_ntop(AF_INET, p.data() + 12, src, sizeof(src));
    inet_ntop(AF_INET, p.data() + 16, dst, sizeof(dst));
    proto = p[9];
  } else if (p.size() >= 40 && (p[0] >> 4) == 6) {
    inet_ntop(AF_INET6, p.data() + 8, src, sizeof(src));
    inet_ntop(AF_INET6, p.data() + 24, dst, sizeof(dst));
    proto = p[6];
  }
  std::printf("peer %u src %s dst %s proto %u len %zu\n", peer_slot, src, dst, proto, p.size());
}

// The data plane drains kFromGateway every poll loop, so a full ring clears quickly.
bool send_with_retry(PacketChannel& channel, uint32_t peer_slot, std::span<const uint8_t> packet) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    if (channel.send(Direction::kFromGateway, peer_slot, packet)) return true;
    std::this_thread::yield();
  }
  return false;
}

int run(const Options& o) {
  std::string error;
  std::optional<PacketChannel> channel = PacketChannel::attach(o.channel, &error);
  if (!channel) {
    std::fprintf(stderr, "airlock-ringtest: %s\n", error.c_str());
    return 1;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  std::array<uint8_t, kMaxChannelSlotSize> reply;
  uint64_t received = 0;
  uint64_t replied = 0;
  const auto start = std::chrono::steady_clock::now();
  auto timed_out = [&] {
    return o.timeout_s &&
           std::chrono::steady_clock::now() - start >= std::chrono::seconds(*o.timeout_s);
  };
  auto enough = [&] { return o.count && received >= *o.count; };
  while (!g_stop && !enough() && !timed_out()) {
    const uint64_t room = o.count ? *o.count - received : PacketChannel::kBurst;
    const auto max = static_cast<uint32_t>(std::min<uint64_t>(room, PacketChannel::kBurst));
    const uint32_t n = channel->receive(
        Direction::kToGateway, max, [&](uint32_t peer_slot, std::span<const uint8_t> packet) {
          if (o.dump) dump_packet(peer_slot, packet);
          if (!o.echo_icmp) return;
          const size_t len = make_echo_reply(packet, reply);
          if (len != 0 && send_with_retry(*channel, peer_slot, std::span(reply.data(), len))) {
            ++replied;
          }
        });
    received += n;
    if (n == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    if (o.dump && n != 0) std::fflush(stdout);
  }
  std::printf("received %llu replied %llu\n", static_cast<unsigned long long>(received),
              static_cast<unsigned long long>(replied));
  return o.count && !enough() && !g_stop ? 3 : 0;
}

}  // namespace
}  // namespace airlock::dp

int main(int argc, char** argv) {
  std::optional<airlock::dp::Options> options = airlock::dp::parse_options(argc, argv);
  if (!options) {
    airlock::dp::usage(argv[0]);
    return 1;
  }
  return airlock::dp::run(*options);
}
