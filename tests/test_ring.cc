#include "dataplane/ring.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace airlock::dp {
namespace {

using Clock = std::chrono::steady_clock;

std::string unique_name(const char* what) {
  static int counter = 0;
  return "airlock-test-" + std::to_string(getpid()) + "-" + what + "-" + std::to_string(counter++);
}

// Deterministic contents so either side can regenerate what a packet must hold.
uint32_t packet_len(uint64_t seq, uint32_t slot_size) {
  return 8 + static_cast<uint32_t>((seq * 2654435761ULL >> 7) % (slot_size - 8 + 1));
}

void fill_packet(uint64_t seq, std::span<uint8_t> out) {
  std::memcpy(out.data(), &seq, sizeof(seq));
  for (size_t i = sizeof(seq); i < out.size(); ++i) out[i] = static_cast<uint8_t>(seq * 31 + i * 7);
}

std::vector<uint8_t> make_packet(uint64_t seq, size_t len) {
  std::vector<uint8_t> p(len);
  fill_packet(seq, p);
  return p;
}

uint64_t seq_of(std::span<const uint8_t> packet) {
  uint64_t seq = 0;
  std::memcpy(&seq, packet.data(), sizeof(seq));
  return seq;
}

// The control-plane role: echo every kToGateway packet back on kFromGateway to the same peer.
int run_echo_child(const std::string& name, uint64_t packets) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  alarm(60);
  std::string error;
  std::optional<PacketChannel> ch = PacketChannel::attach(name, &error);
  if (!ch) return 2;
  uint64_t echoed = 0;
  while (echoed < packets) {
    const uint32_t n =
        ch->receive(Direction::kToGateway, 64, [&](uint32_t peer, std::span<const uint8_t> pkt) {
          while (!ch->send(Direction::kFromGateway, peer, pkt)) std::this_thread::yield();
        });
    echoed += n;
    if (n == 0) std::this_thread::yield();
  }
  return ch->rejected_descriptors(Direction::kToGateway) == 0 ? 0 : 3;
}

TEST(PacketChannel, MillionPacketRoundTripThroughAnotherProcess) {
  constexpr uint32_t kSlots = 1024;
  constexpr uint32_t kSlotSize = 512;
  constexpr uint64_t kPackets = 1'000'000;
  constexpr uint32_t kPeers = 1000;
  const std::string name = unique_name("roundtrip");
  std::string error;
  std::optional<PacketChannel> ch = PacketChannel::create(name, kSlots, kSlotSize, &error);
  ASSERT_TRUE(ch) << error;

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(run_echo_child(name, kPackets));

  std::array<std::array<uint8_t, kSlotSize>, PacketChannel::kBurst> staging;
  std::array<PacketChannel::OutPacket, PacketChannel::kBurst> out;
  std::array<uint8_t, kSlotSize> expected;
  uint64_t next_send = 0;
  uint64_t next_recv = 0;
  uint64_t bad_len = 0, bad_peer = 0, bad_bytes = 0, first_bad = UINT64_MAX;
  auto verify = [&](uint32_t peer, std::span<const uint8_t> pkt) {
    const uint64_t seq = next_recv++;
    const uint32_t len = packet_len(seq, kSlotSize);
    bool ok = true;
    if (pkt.size() != len) {
      ++bad_len;
      ok = false;
    } else {
      fill_packet(seq, std::span(expected.data(), len));
      if (std::memcmp(pkt.data(), expected.data(), len) != 0) {
        ++bad_bytes;
        ok = false;
      }
    }
    if (peer != seq % kPeers) {
      ++bad_peer;
      ok = false;
    }
    if (!ok && first_bad == UINT64_MAX) first_bad = seq;
  };

  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(60);
  while (next_recv < kPackets && Clock::now() < deadline) {
    const size_t burst = std::min<uint64_t>(PacketChannel::kBurst, kPackets - next_send);
    for (size_t i = 0; i < burst; ++i) {
      const uint64_t seq = next_send + i;
      const std::span<uint8_t> bytes(staging[i].data(), packet_len(seq, kSlotSize));
      fill_packet(seq, bytes);
      out[i] = {static_cast<uint32_t>(seq % kPeers), bytes};
    }
    const uint32_t sent = ch->send_burst(Direction::kToGateway, std::span(out.data(), burst));
    next_send += sent;
    const uint32_t got = ch->receive(Direction::kFromGateway, 64, verify);
    if (sent == 0 && got == 0) std::this_thread::yield();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  int status = 0;
  if (next_recv < kPackets) kill(child, SIGKILL);
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_EQ(next_send, kPackets);
  EXPECT_EQ(next_recv, kPackets) << "timed out";
  EXPECT_EQ(bad_len, 0u) << "first bad seq " << first_bad;
  EXPECT_EQ(bad_bytes, 0u) << "first bad seq " << first_bad;
  EXPECT_EQ(bad_peer, 0u) << "first bad seq " << first_bad;
  EXPECT_EQ(ch->rejected_descriptors(Direction::kFromGateway), 0u);
  std::printf("round trip: %.0f packets/s (%" PRIu64 " packets in %.2f s)\n",
              static_cast<double>(next_recv) / seconds, next_recv, seconds);
}

// Drains `direction` and returns the sequence numbers seen, checking peer slot == seq.
std::vector<uint64_t> drain(PacketChannel& ch, Direction direction, uint32_t max) {
  std::vector<uint64_t> seqs;
  ch.receive(direction, max, [&](uint32_t peer, std::span<const uint8_t> pkt) {
    EXPECT_EQ(peer, seq_of(pkt));
    EXPECT_EQ(pkt.size(), 16u);
    seqs.push_back(seq_of(pkt));
  });
  return seqs;
}

TEST(PacketChannel, SendFailsWhenAllSlotsInFlightAndRecoversAfterDrain) {
  const std::string name = unique_name("full");
  std::string error;
  std::optional<PacketChannel> producer = PacketChannel::create(name, 8, 64, &error);
  ASSERT_TRUE(producer) << error;
  std::optional<PacketChannel> consumer = PacketChannel::attach(name, &error);
  ASSERT_TRUE(consumer) << error;

  for (uint32_t seq = 0; seq < 8; ++seq) {
    EXPECT_TRUE(producer->send(Direction::kToGateway, seq, make_packet(seq, 16))) << seq;
  }
  EXPECT_FALSE(producer->send(Direction::kToGateway, 8, make_packet(8, 16)));
  // The other direction has its own slots.
  EXPECT_TRUE(consumer->send(Direction::kFromGateway, 100, make_packet(100, 16)));

  EXPECT_EQ(drain(*consumer, Direction::kToGateway, 3), (std::vector<uint64_t>{0, 1, 2}));
  for (uint32_t seq = 8; seq < 11; ++seq) {
    EXPECT_TRUE(producer->send(Direction::kToGateway, seq, make_packet(seq, 16))) << seq;
  }
  EXPECT_FALSE(producer->send(Direction::kToGateway, 11, make_packet(11, 16)));
  EXPECT_EQ(drain(*consumer, Direction::kToGateway, 100),
            (std::vector<uint64_t>{3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_TRUE(drain(*consumer, Direction::kToGateway, 100).empty());
  EXPECT_EQ(drain(*producer, Direction::kFromGateway, 100), (std::vector<uint64_t>{100}));
}

TEST(PacketChannel, OversizePacketRejectedAndMaximumSizeCarriedIntact) {
  const std::string name = unique_name("size");
  std::string error;
  std::optional<PacketChannel> ch = PacketChannel::create(name, 4, 100, &error);
  ASSERT_TRUE(ch) << error;
  EXPECT_FALSE(ch->send(Direction::kToGateway, 1, make_packet(1, 101)));
  const std::vector<uint8_t> largest = make_packet(2, 100);
  EXPECT_TRUE(ch->send(Direction::kToGateway, 2, largest));

  // A burst stops at the first packet that does not fit, keeping order.
  const std::vector<uint8_t> small = make_packet(3, 20);
  const std::vector<uint8_t> big = make_packet(4, 101);
  const std::array<PacketChannel::OutPacket, 3> burst = {
      PacketChannel::OutPacket{3, small}, {4, big}, {3, small}};
  EXPECT_EQ(ch->send_burst(Direction::kToGateway, burst), 1u);

  std::vector<std::vector<uint8_t>> got;
  EXPECT_EQ(ch->receive(Direction::kToGateway, 10,
                        [&](uint32_t, std::span<const uint8_t> p) {
                          got.emplace_back(p.begin(), p.end());
                        }),
            2u);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], largest);
  EXPECT_EQ(got[1], small);
}

TEST(PacketChannel, AttachToMissingNameFailsWithClearError) {
  const std::string name = unique_name("missing");
  std::string error;
  EXPECT_FALSE(PacketChannel::attach(name, &error));
  EXPECT_NE(error.find(name), std::string::npos) << error;
  EXPECT_NE(error.find("No such file or directory"), std::string::npos) << error;
}

TEST(PacketChannel, AttachRefusesRegionThatIsNotAChannel) {
  const std::string name = unique_name("notachannel");
  std::string error;
  std::optional<SharedMemory> shm = SharedMemory::create(name, 1 << 16, &error);
  ASSERT_TRUE(shm) << error;
  EXPECT_FALSE(PacketChannel::attach(name, &error));
  EXPECT_NE(error.find("bad magic"), std::string::npos) << error;
}

TEST(PacketChannel, CreateRejectsBadGeometry) {
  std::string error;
  EXPECT_FALSE(PacketChannel::create(unique_name("geometry"), 1000, 64, &error));
  EXPECT_NE(error.find("power of two"), std::string::npos) << error;
  EXPECT_FALSE(PacketChannel::create(unique_name("geometry"), 8, 0, &error));
  EXPECT_NE(error.find("slot_size"), std::string::npos) << error;
}

TEST(PacketChannel, NameIsRemovedWhenCreatorGoesAway) {
  const std::string name = unique_name("lifetime");
  std::string error;
  { ASSERT_TRUE(PacketChannel::create(name, 4, 64, &error)) << error; }
  EXPECT_FALSE(PacketChannel::attach(name, &error));
}

}  // namespace
}  // namespace airlock::dp
