// Edits of the policy text as people wrote it (JSON with // and /* */ comments) that keep every
// comment, blank line and indentation outside the edited value. The policy document itself is
// parsed by policy::parse_document; these functions only find where values sit in the text, with
// a scanner that knows strings and comments, so a "peers" inside a comment or a string is never
// taken for the real one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::control::admin {

// Byte range [begin, end) of one JSON value in the text.
struct TextSpan {
  size_t begin = 0;
  size_t end = 0;
};

// The value of member `key` of the root object. nullopt with *error when the text cannot be
// scanned (unterminated string or comment, unbalanced brackets, root not an object) or has no
// such member.
std::optional<TextSpan> find_root_member(std::string_view text, std::string_view key,
                                         std::string* error);

struct PeerEntry {
  std::string user;
  std::string device;  // empty: left out
  std::vector<std::string> tags;
  std::string public_key;  // standard base64
  std::vector<std::string> allowed_ips;
};

// Inserts `peer` as the last element of the root object's "peers" array, right before its
// closing ']', indented like the existing elements (one line or several, as the first element
// is written). Comments inside and after the array stay where they are.
std::optional<std::string> insert_peer(std::string_view text, const PeerEntry& peer,
                                       std::string* error);

// Replaces the root object's numeric "version" value with `version`.
std::optional<std::string> set_version(std::string_view text, uint64_t version, std::string* error);

// The text with the value of every "preshared_key" member (at any depth, whatever escapes spell
// the key) and every other occurrence of one of `secrets` (e.g. a key pasted into a comment)
// replaced by "[redacted]". Text that cannot be scanned has only the occurrences replaced.
std::string redact_preshared_keys(std::string_view text, std::span<const std::string> secrets);

}  // namespace airlock::control::admin
