// Source lines of JSON values, for error messages that point into the file people edit.
// nlohmann::json keeps no positions, so this scans the original text (JSON with // and /* */
// comments) on its own, naming values with the same paths the parser's errors use:
// "peers[1].allowed_ips[0]", "groups.eng", "" for the root.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

namespace airlock::policy {

class SourceLines {
 public:
  // Scans `text` once. Malformed text is scanned up to the first problem; what comes before it
  // is still located.
  explicit SourceLines(std::string_view text);

  // The 1-based line of the value at `path` (of its key, for an object member; of the last one
  // when a key is repeated). A path that does not exist, such as a missing required member,
  // gets the line of its nearest enclosing value; 1 when nothing encloses it.
  int line_of(std::string_view path) const;

 private:
  std::unordered_map<std::string, int> lines_;
};

// The 1-based line holding byte `offset` of `text` (offsets past the end count as the end).
int line_at_offset(std::string_view text, size_t offset);

}  // namespace airlock::policy
