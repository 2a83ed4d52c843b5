// airlock-dataplane: EAL setup, then the control lcore's loop; workers run on the other lcores.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <sodium.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/config.h"
#include "dataplane/control_socket.h"
#include "dataplane/crypto_batch.h"
#include "dataplane/heap.h"
#include "dataplane/hub.h"
#include "dataplane/policy_push.h"
#include "dataplane/port.h"
#include "dataplane/simd.h"
#include "dataplane/static_sessions.h"
#include "dataplane/worker.h"
#include "policy/policy.h"

namespace {

using namespace airlock::dp;

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true);
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "airlock-dataplane: %s\n", msg.c_str());
  rte_eal_cleanup();
  return 1;
}

std::optional<crypto::Key> read_private_key(const std::string& path, std::string* error) {
  std::ifstream in(path);
  std::string text;
  if (!in || !(in >> text)) {
    *error = "cannot read private key file " + path;
    return std::nullopt;
  }
  auto key = airlock::policy::decode_key_base64(text);
  sodium_memzero(text.data(), text.size());
  if (!key) *error = "private key file " + path + " does not hold a base64 32-byte key";
  return key;
}

int worker_main(void* arg) {
  auto* w = static_cast<Worker*>(arg);
  std::string error;
  if (!w->init(&error)) {
    std::fprintf(stderr, "airlock-dataplane: %s\n", error.c_str());
    g_stop.store(true);
    return 1;
  }
  w->run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before EAL starts its threads. A refusal only makes policy swaps slower.
  if (std::string why; !retain_heap_between_policy_builds(&why)) {
    std::fprintf(stderr, "airlock-dataplane: %s; policy builds will fault their memory in anew\n",
                 why.c_str());
  }
  int consumed = rte_eal_init(argc, argv);
  if (consumed < 0) {
    std::fprintf(stderr, "airlock-dataplane: EAL init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  std::fprintf(stderr, "airlock-dataplane: DPDK vector code up to %u bits\n",
               use_avx512_where_available());
  std::string error;
  auto cfg = parse_config(std::span(argv + consumed + 1, argc - consumed - 1), &error);
  if (!cfg) return fail(error);
  const std::optional<BatchCrypto> decryptor = BatchCrypto::create(cfg->crypto);
  if (!decryptor) return fail("--crypto: this CPU lacks the requested IPsec-MB path");
  const std::optional<BatchCrypto> encryptor = BatchCrypto::create(cfg->encrypt_path());
  if (!encryptor) return fail("--crypto-encrypt: this CPU lacks the requested IPsec-MB path");
  // Only the encrypt side's caveat matters: decrypt settles a wrong library tag with libsodium.
  const std::string caveat(encryptor->caveat());
  std::fprintf(
      stderr, "airlock-dataplane: batch crypto IPsec-MB %s to decrypt, %s to encrypt%s%s\n",
      std::string(decryptor->arch_name()).c_str(), std::string(encryptor->arch_name()).c_str(),
      caveat.empty() ? "" : ": ", caveat.c_str());
  auto key = read_private_key(cfg->private_key_file, &error);
  if (!key) return fail(error);

  uint32_t nb_workers = rte_lcore_count() - 1;
  if (nb_workers == 0) {
    return fail(
        "needs at least two lcores (e.g. -l 0,1): the main lcore runs handshakes and "
        "timers, every other lcore is a worker");
  }
  if (!rte_eth_dev_is_valid_port(cfg->port_id)) {
    return fail("no DPDK port " + std::to_string(cfg->port_id) +
                " (give one with --vdev or a PCI device)");
  }
  auto hub = Hub::create(*cfg, *key, nb_workers, &error);
  sodium_memzero(key->data(), key->size());
  if (!hub) return fail(error);

  auto port = Port::open(
      PortConfig{cfg->port_id, static_cast<uint16_t>(nb_workers), 1024, 1024, hub->pool()}, &error);
  // The port and the hub hold EAL memory: release them before fail() cleans EAL up.
  auto fail_started = [&](const std::string& msg) {
    port.reset();
    hub.reset();
    return fail(msg);
  };
  if (!port) return fail_started(error);
  hub->attach_port(port->id(), port->info().mac);
  hub->set_data_checksum(port->info().tx_udp_cksum_offload ? UdpChecksum::kOffload
                                                           : UdpChecksum::kNone);
  SteeringResult steering =
      install_wireguard_steering(port->id(), cfg->address_be, cfg->listen_port, nb_workers);
  hub->set_steering(steering.mode == SteeringMode::kHardware ? FlowSteering::kHardware
                                                             : FlowSteering::kSoftware);
  std::fprintf(stderr, "airlock-dataplane: flow steering %s%s%s\n",
               steering.mode == SteeringMode::kHardware ? "in hardware" : "in software",
               steering.reason.empty() ? "" : ": ", steering.reason.c_str());

  if (!cfg->policy_file.empty()) {
    auto bytes = airlock::policy::read_file(cfg->policy_file, &error);
    if (!bytes || !hub->apply_policy(*bytes, &error)) {
      return fail_started("policy " + cfg->policy_file + ": " + error);
    }
  }
  if (!cfg->static_sessions_file.empty()) {
    const std::string what = "static sessions " + cfg->static_sessions_file + ": ";
    auto sessions = read_static_sessions(cfg->static_sessions_file, &error);
    if (!sessions || !install_static_sessions(*hub, *sessions, &error)) {
      return fail_started(what + error);
    }
    std::fprintf(stderr,
                 "airlock-dataplane: WARNING: %zu STATIC SESSION(S) IN USE, FOR BENCHMARKS ONLY: "
                 "their keys come from %s, not from a handshake, so whoever can read that file "
                 "can read and forge their traffic.\n",
                 sessions->size(), cfg->static_sessions_file.c_str());
    // Static sessions are never rekeyed by a peer: once too old they stop working.
    std::fprintf(stderr,
                 "airlock-dataplane: static sessions stop carrying traffic after "
                 "--reject-after-time (%.0f s from now)\n",
                 static_cast<double>(cfg->timers.reject_after_ns) / 1e9);
  }
  auto control = ControlSocket::start(cfg->control_socket, &error);
  if (!control) return fail_started(error);

  std::vector<std::unique_ptr<Worker>> workers;
  uint16_t queue = 0;
  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    workers.push_back(std::make_unique<Worker>(*hub, queue, queue));
    rte_eal_remote_launch(worker_main, workers.back().get(), lcore);
    ++queue;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::fprintf(stderr,
               "airlock-dataplane: up on port %u (%s), %u worker(s), policy version %llu, "
               "control socket %s\n",
               port->id(), port->info().driver.c_str(), nb_workers,
               static_cast<unsigned long long>(hub->policy_version()), cfg->control_socket.c_str());

  {
    PolicyPushes pushes(*hub, *control);
    while (!g_stop.load()) {
      hub->control_tick();
      pushes.poll();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  hub->stopping().store(true);
  rte_eal_mp_wait_lcore();
  control.reset();
  workers.clear();
  port.reset();
  hub.reset();
  rte_eal_cleanup();
  std::fprintf(stderr, "airlock-dataplane: stopped\n");
  return 0;
}
