// airlock-control assembled: policy manager, request log, gateway (on the TUN that terminates the
// data planes' punted flows), admin API, and the threads that drive them.
#pragma once

#include <memory>
#include <string>

#include "control/app/options.h"

namespace airlock::control {

class ControlPlane {
 public:
  static std::unique_ptr<ControlPlane> start(const ControlOptions& options, std::string* error);
  virtual ~ControlPlane() = default;
  // Serves until SIGINT or SIGTERM, then stops accepting, lets requests finish their record
  // and flushes the request log.
  virtual void run() = 0;
};

}  // namespace airlock::control
