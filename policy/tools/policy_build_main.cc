// airlock-policy-build IN.json OUT.alp   check policy JSON (and run its tests), compile it into a
//                                        checked policy buffer
// airlock-policy-build --check FILE.alp  check a compiled policy buffer
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "policy/document.h"
#include "policy/policy.h"

namespace airlock::policy {
namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// Compiled policies carry preshared keys.
class WipedBytes {
 public:
  explicit WipedBytes(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  WipedBytes(const WipedBytes&) = delete;
  WipedBytes& operator=(const WipedBytes&) = delete;
  ~WipedBytes() { detail::wipe(bytes_.data(), bytes_.size()); }
  std::span<const uint8_t> span() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

int error_exit(const std::string& message) {
  std::fprintf(stderr, "airlock-policy-build: %s\n", message.c_str());
  return kExitError;
}

std::string summary(const LoadedPolicy& policy) {
  const Policy& root = *policy.root();
  return "version " + std::to_string(root.version()) + " peers " +
         std::to_string(root.peers() ? root.peers()->size() : 0) + " rules " +
         std::to_string(root.rules() ? root.rules()->size() : 0);
}

bool write_all(int fd, std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return true;
}

// Temp file in the target's directory + fsync + rename, so readers see the old or the new policy,
// never a partial one. mkstemp creates the file 0600, which suits a file holding preshared keys.
bool write_atomically(const std::string& path, std::span<const uint8_t> bytes, std::string* error) {
  std::string temp_path = path + ".XXXXXX";
  const int fd = mkstemp(temp_path.data());
  if (fd < 0) {
    *error = temp_path + ": " + std::strerror(errno);
    return false;
  }
  const bool written = write_all(fd, bytes) && fsync(fd) == 0;
  const int saved_errno = errno;
  const bool closed = close(fd) == 0;
  if (!written || !closed || rename(temp_path.c_str(), path.c_str()) != 0) {
    *error = path + ": " + std::strerror(written && closed ? errno : saved_errno);
    unlink(temp_path.c_str());
    return false;
  }
  return true;
}

int check(const std::string& path) {
  std::string error;
  auto bytes = read_file(path, &error);
  if (!bytes) return error_exit(error);
  const WipedBytes wiped(std::move(*bytes));
  const auto policy = load_policy(wiped.span(), &error);
  if (!policy) return error_exit(path + ": " + error);
  std::printf("ok %s\n", summary(*policy).c_str());
  return 0;
}

int build(const std::string& in_path, const std::string& out_path) {
  std::string error;
  auto text = read_file(in_path, &error);
  if (!text) return error_exit(error);
  const WipedBytes wiped_text(std::move(*text));
  const auto json = wiped_text.span();
  const auto document = parse_document(
      std::string_view(reinterpret_cast<const char*>(json.data()), json.size()), in_path, &error);
  if (!document) return error_exit(error);
  auto compiled = compile(*document, &error);
  if (!compiled) return error_exit(in_path + ": " + error);
  const WipedBytes wiped_policy(std::move(*compiled));
  const auto policy = load_policy(wiped_policy.span(), &error);
  if (!policy) return error_exit(in_path + ": " + error);
  if (!write_atomically(out_path, wiped_policy.span(), &error)) return error_exit(error);
  std::printf("wrote %s: %s\n", out_path.c_str(), summary(*policy).c_str());
  return 0;
}

}  // namespace
}  // namespace airlock::policy

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "--check") return airlock::policy::check(args[1]);
  if (args.size() == 2 && !args[0].starts_with("-")) {
    return airlock::policy::build(args[0], args[1]);
  }
  std::fprintf(stderr,
               "usage: airlock-policy-build IN.json OUT.alp\n"
               "       airlock-policy-build --check FILE.alp\n");
  return airlock::policy::kExitUsage;
}
