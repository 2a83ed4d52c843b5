// The control socket's requests, served from the control lcore's loop. A pushed policy is
// verified and given its peer slots on the control lcore, compiled on a DPDK control thread
// (rte_ctrl_thread_create places it on the CPUs no lcore uses, or with the main lcore when every
// CPU is an lcore), and installed back on the control lcore. Compiling 10k peers / 100k rules
// takes seconds; meanwhile handshakes, cookie replies, keepalives and rekeys go on.
#pragma once

#include <pthread.h>

#include <atomic>
#include <memory>
#include <string>

#include "dataplane/control_socket.h"
#include "dataplane/hub.h"

namespace airlock::dp {

class PolicyPushes {
 public:
  PolicyPushes(Hub& hub, ControlSocket& control) : hub_(hub), control_(control) {}
  // Waits for a compile in flight and installs it, so the client gets its answer.
  ~PolicyPushes();
  PolicyPushes(const PolicyPushes&) = delete;
  PolicyPushes& operator=(const PolicyPushes&) = delete;

  // One step of the control lcore: installs a finished compile, or takes the next request.
  void poll();

 private:
  static void* compile_main(void* self);
  void start_push(const ControlRequest& request);
  void finish_push();

  Hub& hub_;
  ControlSocket& control_;
  std::unique_ptr<PolicyBuild> build_;
  pthread_t thread_{};
  bool compiling_ = false;
  std::atomic<bool> compiled_{false};
};

}  // namespace airlock::dp
