// airlock-control: the keyless AI gateway behind the WireGuard data plane.
#include <cstdio>
#include <span>
#include <string>

#include "control/app/control_plane.h"
#include "control/app/options.h"

int main(int argc, char** argv) {
  std::string error;
  const auto options = airlock::control::parse_control_options(
      std::span<char* const>(argv + 1, static_cast<size_t>(argc - 1)), &error);
  if (!options) {
    std::fprintf(stderr, "airlock-control: %s\n", error.c_str());
    return 2;
  }
  auto plane = airlock::control::ControlPlane::start(*options, &error);
  if (!plane) {
    std::fprintf(stderr, "airlock-control: %s\n", error.c_str());
    return 1;
  }
  plane->run();
  return 0;
}
