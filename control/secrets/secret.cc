#include "control/secrets/secret.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace airlock::control {
namespace {

// Far above any API key; a bigger file is a wrong path, not a key.
constexpr size_t kMaxFileBytes = size_t{64} * 1024;

bool is_env_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::optional<Secret> load_env(std::string_view ref, std::string_view name, std::string* error) {
  // A malformed name could be a pasted key ("env:sk-..."), so it is not quoted back.
  if (!is_env_name(name)) {
    *error = "env: reference does not name a valid environment variable";
    return std::nullopt;
  }
  const char* value = std::getenv(std::string(name).c_str());
  if (value == nullptr) {
    *error = std::string(ref) + " is not set";
    return std::nullopt;
  }
  if (*value == '\0') {
    *error = std::string(ref) + " is empty";
    return std::nullopt;
  }
  return Secret(value);
}

// Closes the descriptor on every return path.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::optional<Secret> load_file(std::string_view ref, std::string_view path, std::string* error) {
  if (!path.starts_with('/')) {
    *error = std::string(ref) + ": the path must be absolute";
    return std::nullopt;
  }
  const std::string path_z(path);
  // O_NONBLOCK: opening a FIFO must not hang startup; it is refused below as not a regular file.
  const Fd file{::open(path_z.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)};
  if (file.fd < 0) {
    *error = std::string(ref) + " cannot be opened: " + std::strerror(errno);
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) {
    *error = std::string(ref) + " cannot be examined: " + std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    *error = std::string(ref) + " is not a regular file";
    return std::nullopt;
  }
  // Write access for others matters as much as read access: whoever can replace the key can
  // route the gateway's traffic to an account they read.
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    *error = std::string(ref) + " is accessible to group or others (mode " + mode +
             "); run chmod 600 " + path_z;
    return std::nullopt;
  }
  // Sized once so the key is never copied by a reallocation, and wiped before it is freed.
  std::vector<char> buffer(kMaxFileBytes + 1);
  size_t size = 0;
  while (size < buffer.size()) {
    const ssize_t n = ::read(file.fd, buffer.data() + size, buffer.size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      sodium_memzero(buffer.data(), buffer.size());
      *error = std::string(ref) + " cannot be read: " + std::strerror(errno);
      return std::nullopt;
    }
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  if (size > kMaxFileBytes) {
    sodium_memzero(buffer.data(), buffer.size());
    *error = std::string(ref) + " is larger than " + std::to_string(kMaxFileBytes) +
             " bytes; it does not hold just a key";
    return std::nullopt;
  }
  while (size > 0 && (buffer[size - 1] == '\n' || buffer[size - 1] == '\r')) --size;
  if (size == 0) {
    *error = std::string(ref) + " is empty";
    return std::nullopt;
  }
  Secret secret(std::string_view(buffer.data(), size));
  sodium_memzero(buffer.data(), buffer.size());
  return secret;
}

}  // namespace

Secret::Secret(std::string_view bytes) : size_(bytes.size()) {
  if (size_ == 0) return;
  bytes_ = std::make_unique_for_overwrite<char[]>(size_);
  std::memcpy(bytes_.get(), bytes.data(), size_);
}

Secret::~Secret() {
  wipe();
}

Secret::Secret(Secret&& other) noexcept
    : bytes_(std::move(other.bytes_)), size_(std::exchange(other.size_, 0)) {}

Secret& Secret::operator=(Secret&& other) noexcept {
  if (this != &other) {
    wipe();
    bytes_ = std::move(other.bytes_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void Secret::wipe() noexcept {
  if (bytes_) sodium_memzero(bytes_.get(), size_);
  bytes_.reset();
  size_ = 0;
}

std::optional<Secret> load_secret(std::string_view ref, std::string* error) {
  if (ref.starts_with("env:")) return load_env(ref, ref.substr(4), error);
  if (ref.starts_with("file:")) return load_file(ref, ref.substr(5), error);
  // Not quoted back: a reference of the wrong shape is most likely the key itself.
  *error = "a key reference must be env:NAME or file:/absolute/path";
  return std::nullopt;
}

std::string redact(std::string_view text, std::span<const Secret* const> secrets) {
  std::string out;
  out.reserve(text.size());
  // Each step jumps to the earliest match of any secret (the longest one there), so text without
  // a secret costs one search per secret rather than a comparison per character and secret.
  for (;;) {
    size_t at = std::string_view::npos;
    size_t length = 0;
    for (const Secret* secret : secrets) {
      if (secret == nullptr || secret->empty()) continue;
      const size_t found = text.find(secret->reveal());
      if (found == std::string_view::npos) continue;
      if (found < at || (found == at && secret->size() > length)) {
        at = found;
        length = secret->size();
      }
    }
    if (at == std::string_view::npos) break;
    out.append(text.substr(0, at));
    out += "[redacted]";
    text.remove_prefix(at + length);
  }
  out.append(text);
  return out;
}

}  // namespace airlock::control
