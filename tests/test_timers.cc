// The protocol timers (whitepaper §6) on a fake clock. The simulator performs each action the way
// Hub::run_timers does (sending stamps last_tx_auth, an initiation is noted, giving up clears the
// handshake request), ticking every 10 ms; expected times are the whitepaper's, which the Linux
// kernel and wireguard-go implement.
#include "dataplane/timers.h"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

namespace airlock::dp {
namespace {

constexpr uint64_t kMs = 1'000'000ULL;
constexpr uint64_t kS = 1'000'000'000ULL;
constexpr uint64_t kTick = 10 * kMs;

class TimerSim {
 public:
  using Traffic = std::function<void(uint64_t now, TimerInputs& in)>;

  ProtocolTimers timers{};  // the whitepaper's values
  TimerInputs in{};
  TimerState state{};
  bool initiations_go_out = true;  // false: no route to the peer yet (the hub sends ARP)
  std::vector<uint64_t> initiations, keepalives, give_ups, zeroings;

  TimerSim() { in.endpoint_known = true; }

  void keypair(uint64_t birth_ns, bool we_initiated) {
    in.has_current = true;
    in.current_we_initiated = we_initiated;
    in.current_birth_ns = birth_ns;
    in.keys_derived_ns = birth_ns;
  }

  // Ticks from `from` up to and including `to`; `traffic` runs before each evaluation.
  void run(uint64_t from, uint64_t to, const Traffic& traffic = {}) {
    for (uint64_t now = from; now <= to; now += kTick) {
      if (traffic) traffic(now, in);
      tick(now);
    }
  }

 private:
  void tick(uint64_t now) {
    in.now_ns = now;
    uint32_t actions = evaluate_timers(in, state, timers);
    if (actions & kTimerZeroKeys) {
      zeroings.push_back(now);
      in.has_current = false;
      in.keys_derived_ns = 0;
    }
    if (actions & kTimerGiveUpHandshake) {
      give_ups.push_back(now);
      in.want_handshake = false;
    }
    if (actions & kTimerInitiateHandshake) {
      initiations.push_back(now);
      if (initiations_go_out) {
        note_initiation_sent(state, now);
        in.last_tx_auth_ns = now;
      }
    }
    if (actions & kTimerSendKeepalive) {
      keepalives.push_back(now);
      in.last_tx_auth_ns = now;
    }
  }
};

// Within one tick after `expected`.
::testing::AssertionResult at(uint64_t actual, uint64_t expected) {
  if (actual >= expected && actual < expected + kTick) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "at " << actual / double(kS) << " s, expected " << expected / double(kS) << " s";
}

void both_ways(uint64_t now, TimerInputs& in) {
  in.last_tx_data_ns = in.last_tx_auth_ns = now;
  in.last_rx_data_ns = in.last_rx_auth_ns = now;
}

void receiving(uint64_t now, TimerInputs& in) {
  in.last_rx_data_ns = in.last_rx_auth_ns = now;
}

TEST(Timers, KeepaliveTenSecondsAfterDataReceivedWithNothingSent) {
  TimerSim sim;
  sim.keypair(0, false);
  sim.in.last_tx_auth_ns = 500 * kMs;
  sim.in.last_rx_data_ns = sim.in.last_rx_auth_ns = 1 * kS;
  sim.run(1 * kS, 40 * kS);
  ASSERT_EQ(sim.keepalives.size(), 1u) << "one keepalive answers one burst of received data";
  EXPECT_TRUE(at(sim.keepalives[0], 11 * kS));
  EXPECT_TRUE(sim.initiations.empty());
}

TEST(Timers, NoKeepaliveWhenSomethingWasSentMeanwhile) {
  TimerSim sim;
  sim.keypair(0, false);
  sim.in.last_rx_data_ns = sim.in.last_rx_auth_ns = 1 * kS;
  sim.run(1 * kS, 5 * kS);
  sim.in.last_tx_data_ns = sim.in.last_tx_auth_ns = 5 * kS;
  sim.in.last_rx_auth_ns = 5 * kS + 1;  // and the peer answered
  sim.run(5 * kS + kTick, 40 * kS);
  EXPECT_TRUE(sim.keepalives.empty());
}

TEST(Timers, NoKeepaliveWithoutKeypair) {
  TimerSim sim;
  sim.in.last_rx_data_ns = sim.in.last_rx_auth_ns = 1 * kS;
  sim.run(1 * kS, 30 * kS);
  EXPECT_TRUE(sim.keepalives.empty());
}

TEST(Timers, NewHandshakeFifteenSecondsAfterUnansweredData) {
  TimerSim sim;
  sim.keypair(0, false);
  sim.in.last_tx_data_ns = sim.in.last_tx_auth_ns = 2 * kS;
  sim.run(2 * kS, 30 * kS);
  ASSERT_GE(sim.initiations.size(), 1u);
  EXPECT_TRUE(at(sim.initiations[0], 17 * kS));
}

TEST(Timers, NoNewHandshakeWhenThePeerAnswers) {
  TimerSim sim;
  sim.keypair(0, false);
  sim.in.last_tx_data_ns = sim.in.last_tx_auth_ns = 2 * kS;
  sim.run(2 * kS, 10 * kS);
  sim.in.last_rx_auth_ns = 10 * kS;
  sim.run(10 * kS + kTick, 40 * kS);
  EXPECT_TRUE(sim.initiations.empty());
}

TEST(Timers, RekeyAfterTimeWhenWeInitiatedAndSend) {
  TimerSim sim;
  sim.keypair(0, true);
  sim.run(kTick, 125 * kS - kTick, both_ways);
  ASSERT_EQ(sim.initiations.size(), 1u);
  EXPECT_TRUE(at(sim.initiations[0], 120 * kS));
}

TEST(Timers, NoRekeyAfterTimeOnAResponderKeypair) {
  TimerSim sim;
  sim.keypair(0, false);
  sim.run(kTick, 179 * kS, both_ways);
  EXPECT_TRUE(sim.initiations.empty()) << "the initiator of a session is the one that rekeys";
}

TEST(Timers, LastMinuteRekeyAt165SecondsWhenOnlyReceiving) {
  TimerSim sim;
  sim.keypair(0, true);
  sim.run(kTick, 170 * kS - kTick, receiving);
  ASSERT_GE(sim.initiations.size(), 1u);
  EXPECT_TRUE(at(sim.initiations[0], 165 * kS));
  EXPECT_EQ(sim.initiations.size(), 1u) << "retransmissions wait REKEY_TIMEOUT";
}

TEST(Timers, LastMinuteRekeyIsRequestedOnlyOncePerKeypair) {
  TimerSim sim;
  sim.keypair(0, true);
  sim.initiations_go_out = false;
  sim.run(kTick, 179 * kS, receiving);
  ASSERT_EQ(sim.initiations.size(), 1u);
  EXPECT_TRUE(at(sim.initiations[0], 165 * kS));
}

TEST(Timers, RetransmitsEveryRekeyTimeoutThenGivesUp) {
  TimerSim sim;
  const uint64_t start = 100 * kS;  // the hub's clock is never near zero
  sim.in.want_handshake = true;     // a worker had data and no keypair
  sim.run(start, start + 200 * kS);
  ASSERT_EQ(sim.initiations.size(), 18u) << "one initiation, then one per 5 s for 90 s";
  for (size_t i = 0; i < sim.initiations.size(); ++i) {
    EXPECT_TRUE(at(sim.initiations[i], start + i * 5 * kS)) << "attempt " << i;
  }
  ASSERT_EQ(sim.give_ups.size(), 1u);
  EXPECT_TRUE(at(sim.give_ups[0], start + 90 * kS));
}

// After giving up, the kernel and wireguard-go stay quiet until new data is sent: the
// new-handshake timer is armed only by sending.
TEST(Timers, AfterGivingUpNoNewAttemptsWithoutNewData) {
  TimerSim sim;
  sim.keypair(0, false);
  sim.in.last_tx_data_ns = sim.in.last_tx_auth_ns = 1 * kS;
  sim.run(1 * kS, 110 * kS);
  ASSERT_FALSE(sim.initiations.empty());
  EXPECT_TRUE(at(sim.initiations.front(), 16 * kS));
  ASSERT_EQ(sim.give_ups.size(), 1u);
  EXPECT_TRUE(at(sim.give_ups[0], 106 * kS));
  const size_t attempts = sim.initiations.size();
  sim.run(110 * kS + kTick, 400 * kS);
  EXPECT_EQ(sim.initiations.size(), attempts)
      << "started handshaking again at "
      << (sim.initiations.size() > attempts ? sim.initiations[attempts] : 0) / double(kS)
      << " s although nothing was sent since 1 s";
}

TEST(Timers, PersistentKeepalive) {
  TimerSim sim;
  sim.keypair(0, false);
  sim.in.persistent_keepalive_s = 25;
  sim.in.last_tx_auth_ns = 1 * kS;
  sim.run(1 * kS, 60 * kS);
  ASSERT_EQ(sim.keepalives.size(), 2u);
  EXPECT_TRUE(at(sim.keepalives[0], 26 * kS));
  EXPECT_TRUE(at(sim.keepalives[1], 51 * kS));
  sim.in.last_tx_data_ns = sim.in.last_tx_auth_ns = 60 * kS;  // data postpones it
  sim.in.last_rx_auth_ns = 60 * kS;
  sim.run(60 * kS + kTick, 90 * kS);
  ASSERT_EQ(sim.keepalives.size(), 3u);
  EXPECT_TRUE(at(sim.keepalives[2], 85 * kS));
}

TEST(Timers, NoPersistentKeepaliveWhenOff) {
  TimerSim sim;
  sim.keypair(0, false);
  sim.run(kTick, 100 * kS);
  EXPECT_TRUE(sim.keepalives.empty());
}

TEST(Timers, ZeroesKeysThreeRejectAfterTimesAfterDerivation) {
  TimerSim sim;
  sim.keypair(1 * kS, false);
  sim.run(1 * kS, 600 * kS);
  ASSERT_EQ(sim.zeroings.size(), 1u);
  EXPECT_TRUE(at(sim.zeroings[0], 541 * kS));
}

TEST(Timers, NoInitiationWithoutEndpoint) {
  TimerSim sim;
  sim.in.endpoint_known = false;
  sim.in.want_handshake = true;
  sim.run(kTick, 20 * kS);
  EXPECT_TRUE(sim.initiations.empty());
  sim.in.endpoint_known = true;
  sim.run(20 * kS + kTick, 21 * kS);
  ASSERT_EQ(sim.initiations.size(), 1u);
  EXPECT_TRUE(at(sim.initiations[0], 20 * kS + kTick));
}

TEST(Timers, CompletedHandshakeStopsRetransmissions) {
  TimerSim sim;
  sim.in.want_handshake = true;
  sim.run(100 * kS, 107 * kS);
  ASSERT_EQ(sim.initiations.size(), 2u);
  note_handshake_complete(sim.state);
  sim.in.want_handshake = false;
  sim.keypair(107 * kS, true);
  sim.run(107 * kS + kTick, 160 * kS);
  EXPECT_EQ(sim.initiations.size(), 2u);
}

}  // namespace
}  // namespace airlock::dp
