// Replacing a file so that readers, and a restart after a crash, see either the old text or the
// new one whole: write a temporary file beside it, fsync, rename over the original.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace airlock::control::admin {

// A new text written and synced next to `path`, not yet in place. Discarded (the temporary file
// removed) unless committed. The file keeps the mode of the file it replaces, 0600 when new
// (policies hold preshared keys).
class PendingFile {
 public:
  static std::optional<PendingFile> write(const std::string& path, std::string_view text,
                                          std::string* error);
  PendingFile(PendingFile&& other) noexcept;
  PendingFile& operator=(PendingFile&&) = delete;
  PendingFile(const PendingFile&) = delete;
  ~PendingFile();

  // Renames the text into place.
  bool commit(std::string* error);

 private:
  PendingFile(std::string path, std::string temp)
      : path_(std::move(path)), temp_(std::move(temp)) {}
  std::string path_;
  std::string temp_;  // empty once committed or moved from
};

bool write_file_atomically(const std::string& path, std::string_view text, std::string* error);

}  // namespace airlock::control::admin
