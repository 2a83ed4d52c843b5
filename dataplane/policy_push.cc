#include "dataplane/policy_push.h"

#include <rte_lcore.h>

#include <cstdio>
#include <cstring>

namespace airlock::dp {
namespace {

void log_line(const std::string& line) {
  std::fprintf(stderr, "airlock-dataplane: %s\n", line.c_str());
}

}  // namespace

PolicyPushes::~PolicyPushes() {
  if (compiling_) {
    pthread_join(thread_, nullptr);
    finish_push();
  }
}

void PolicyPushes::poll() {
  if (compiling_) {
    if (compiled_.load(std::memory_order_acquire)) {
      pthread_join(thread_, nullptr);
      compiling_ = false;
      finish_push();
    }
    return;
  }
  std::optional<ControlRequest> request = control_.take();
  if (!request) return;
  if (request->command == "PUSH") {
    start_push(*request);
  } else {
    control_.reply("OK " + std::to_string(hub_.policy_version()));
  }
}

void* PolicyPushes::compile_main(void* self) {
  auto* pushes = static_cast<PolicyPushes*>(self);
  pushes->build_->compile();
  pushes->compiled_.store(true, std::memory_order_release);
  return nullptr;
}

void PolicyPushes::start_push(const ControlRequest& request) {
  std::string error;
  build_ = hub_.begin_policy(request.body, &error);
  if (!build_) {
    log_line("policy rejected, keeping version " + std::to_string(hub_.policy_version()) + ": " +
             error);
    control_.reply("ERR " + error);
    return;
  }
  compiled_.store(false, std::memory_order_relaxed);
  const int rc = rte_ctrl_thread_create(&thread_, "airlock-policy", nullptr, compile_main, this);
  if (rc == 0) {
    compiling_ = true;
    return;
  }
  log_line(std::string("no policy compile thread (") + std::strerror(rc) +
           "); compiling on the control lcore");
  build_->compile();
  finish_push();
}

void PolicyPushes::finish_push() {
  std::string error;
  if (!hub_.finish_policy(std::move(build_), &error)) {
    log_line("policy rejected, keeping version " + std::to_string(hub_.policy_version()) + ": " +
             error);
    control_.reply("ERR " + error);
    return;
  }
  log_line("policy version " + std::to_string(hub_.policy_version()) + " installed");
  control_.reply("OK " + std::to_string(hub_.policy_version()));
}

}  // namespace airlock::dp
