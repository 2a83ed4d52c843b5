#include "dataplane/shm.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace airlock::dp {
namespace {

void set_error(std::string* error, std::string_view what, const std::string& name, int err) {
  if (error == nullptr) return;
  *error = std::string(what) + " " + name.substr(1) + ": " + std::strerror(err);
}

// shm_open wants "/name" with no other slash; callers pass the bare name.
std::optional<std::string> shm_path(std::string_view name, std::string* error) {
  if (name.empty() || name.size() >= NAME_MAX || name.find('/') != std::string_view::npos) {
    if (error != nullptr) {
      *error = "invalid shared-memory name '" + std::string(name) + "' (1.." +
               std::to_string(NAME_MAX - 1) + " characters, no '/')";
    }
    return std::nullopt;
  }
  return "/" + std::string(name);
}

// The descriptor is only needed until mmap, so it is closed on every path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

std::optional<SharedMemory> SharedMemory::create(std::string_view name, size_t size,
                                                 std::string* error) {
  std::optional<std::string> path = shm_path(name, error);
  if (!path) return std::nullopt;
  if (size == 0) {
    if (error != nullptr) *error = "shared memory " + std::string(name) + ": size 0";
    return std::nullopt;
  }
  if (shm_unlink(path->c_str()) != 0 && errno != ENOENT) {
    set_error(error, "cannot remove stale shared memory", *path, errno);
    return std::nullopt;
  }
  Fd fd(shm_open(path->c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR));
  if (fd.get() < 0) {
    set_error(error, "cannot create shared memory", *path, errno);
    return std::nullopt;
  }
  if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    set_error(error, "cannot size shared memory", *path, errno);
    shm_unlink(path->c_str());
    return std::nullopt;
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) {
    set_error(error, "cannot stat shared memory", *path, errno);
    shm_unlink(path->c_str());
    return std::nullopt;
  }
  void* addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (addr == MAP_FAILED) {
    set_error(error, "cannot map shared memory", *path, errno);
    shm_unlink(path->c_str());
    return std::nullopt;
  }
  return SharedMemory(std::move(*path), addr, size, Identity{getpid(), st.st_dev, st.st_ino});
}

std::optional<SharedMemory> SharedMemory::open(std::string_view name, bool writable,
                                               std::string* error) {
  std::optional<std::string> path = shm_path(name, error);
  if (!path) return std::nullopt;
  Fd fd(shm_open(path->c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0));
  if (fd.get() < 0) {
    set_error(error, "cannot open shared memory", *path, errno);
    return std::nullopt;
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) {
    set_error(error, "cannot stat shared memory", *path, errno);
    return std::nullopt;
  }
  if (st.st_size <= 0) {
    if (error != nullptr) *error = "shared memory " + std::string(name) + " is empty";
    return std::nullopt;
  }
  const auto size = static_cast<size_t>(st.st_size);
  const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  void* addr = mmap(nullptr, size, prot, MAP_SHARED, fd.get(), 0);
  if (addr == MAP_FAILED) {
    set_error(error, "cannot map shared memory", *path, errno);
    return std::nullopt;
  }
  return SharedMemory(std::move(*path), addr, size, std::nullopt);
}

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : path_(std::move(other.path_)),
      addr_(std::exchange(other.addr_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      owner_(std::exchange(other.owner_, std::nullopt)) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
    owner_ = std::exchange(other.owner_, std::nullopt);
  }
  return *this;
}

SharedMemory::~SharedMemory() {
  release();
}

void SharedMemory::release() {
  if (addr_ != nullptr) munmap(addr_, size_);
  if (owner_) unlink_if_still_ours();
  addr_ = nullptr;
  size_ = 0;
  owner_.reset();
}

// A restarted instance may have replaced the name already; a forked child inherits the object
// but must not remove it from under its parent.
void SharedMemory::unlink_if_still_ours() const {
  if (owner_->creator_pid != getpid()) return;
  Fd fd(shm_open(path_.c_str(), O_RDONLY | O_CLOEXEC, 0));
  struct stat st {};
  if (fd.get() < 0 || fstat(fd.get(), &st) != 0) return;
  if (st.st_dev == owner_->dev && st.st_ino == owner_->ino) shm_unlink(path_.c_str());
}

}  // namespace airlock::dp
