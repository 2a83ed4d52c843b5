#include "control/admin/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

namespace airlock::control::admin {
namespace {

std::string errno_text(const std::string& path) {
  return path + ": " + std::strerror(errno);
}

}  // namespace

std::optional<PendingFile> PendingFile::write(const std::string& path, std::string_view text,
                                              std::string* error) {
  mode_t mode = 0600;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) mode = st.st_mode & 07777;
  std::string temp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    *error = errno_text(temp);
    return std::nullopt;
  }
  PendingFile pending(path, temp);
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = errno_text(temp);
      ::close(fd);
      return std::nullopt;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fchmod(fd, mode) != 0 || ::fsync(fd) != 0) {
    *error = errno_text(temp);
    ::close(fd);
    return std::nullopt;
  }
  ::close(fd);
  return pending;
}

PendingFile::PendingFile(PendingFile&& other) noexcept
    : path_(std::move(other.path_)), temp_(std::exchange(other.temp_, {})) {}

PendingFile::~PendingFile() {
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

bool PendingFile::commit(std::string* error) {
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    *error = errno_text(path_);
    return false;
  }
  temp_.clear();
  // Makes the rename itself durable. Best effort: the new text is already in place, and failing
  // now would report a change that readers already see as not made.
  std::string dir = std::filesystem::path(path_).parent_path().string();
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  return true;
}

bool write_file_atomically(const std::string& path, std::string_view text, std::string* error) {
  auto pending = PendingFile::write(path, text, error);
  return pending && pending->commit(error);
}

}  // namespace airlock::control::admin
