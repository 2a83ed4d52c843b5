// Named POSIX shared memory for the data plane's interfaces to other processes (counters,
// packet channel). Peers map it without DPDK's EAL, so it holds offsets, never pointers.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace airlock::dp {

// One mapping of a named shared-memory object (e.g. "airlock-<instance>-stats"). The creator
// unlinks the name when it is destroyed, unless the name meanwhile belongs to a newer object or
// the destructor runs in a forked child; openers only unmap. Move-only.
class SharedMemory {
 public:
  // Replaces any stale object of the same name (a crashed previous instance) with a new,
  // zero-filled one of `size` bytes, mode 0600 because the contents reveal peers.
  static std::optional<SharedMemory> create(std::string_view name, size_t size, std::string* error);
  // Maps an existing object in full; read-only unless `writable`.
  static std::optional<SharedMemory> open(std::string_view name, bool writable, std::string* error);

  SharedMemory(SharedMemory&& other) noexcept;
  SharedMemory& operator=(SharedMemory&& other) noexcept;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory();

  // Writing through this span faults unless the mapping is writable.
  std::span<std::byte> bytes() const { return {static_cast<std::byte*>(addr_), size_}; }

 private:
  // Identifies the object the creator made, so it never unlinks someone else's.
  struct Identity {
    pid_t creator_pid = 0;
    dev_t dev = 0;
    ino_t ino = 0;
  };

  SharedMemory(std::string path, void* addr, size_t size, std::optional<Identity> owner)
      : path_(std::move(path)), addr_(addr), size_(size), owner_(owner) {}
  void release();
  void unlink_if_still_ours() const;

  std::string path_;  // the name in shm_open form, with the leading '/'
  void* addr_ = nullptr;
  size_t size_ = 0;
  std::optional<Identity> owner_;
};

}  // namespace airlock::dp
