#include "dataplane/heap.h"

#include <malloc.h>

#include <cstddef>

namespace airlock::dp {
namespace {

constexpr int kMmapThreshold = 32 << 20;
constexpr int kTrimThreshold = 1 << 30;

}  // namespace

bool retain_heap_between_policy_builds(std::string* error) {
  struct Setting {
    int param;
    int value;
    const char* name;
  };
  static constexpr Setting kSettings[] = {
      {M_MMAP_THRESHOLD, kMmapThreshold, "M_MMAP_THRESHOLD"},
      {M_TRIM_THRESHOLD, kTrimThreshold, "M_TRIM_THRESHOLD"},
      {M_ARENA_MAX, 1, "M_ARENA_MAX"},
  };
  for (const Setting& setting : kSettings) {
    if (mallopt(setting.param, setting.value) != 1) {
      *error = std::string("mallopt(") + setting.name + ", " + std::to_string(setting.value) +
               ") refused";
      return false;
    }
  }
  return true;
}

}  // namespace airlock::dp
