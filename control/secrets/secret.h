// Provider keys in memory: loaded from "env:NAME" or "file:/abs/path" references, wiped when
// dropped, and hard to print by accident. A Secret has no stream operator and no conversion to
// string; reveal() is for the one place that writes the upstream's auth header.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace airlock::control {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string_view bytes);
  ~Secret();

  // Move-only: a copy would be one more buffer to wipe. The source is left empty.
  Secret(Secret&& other) noexcept;
  Secret& operator=(Secret&& other) noexcept;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;

  std::string_view reveal() const { return {bytes_.get(), size_}; }
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }

 private:
  void wipe() noexcept;

  // A fixed buffer, never reallocated, so no stale copy of the key is left on the heap.
  std::unique_ptr<char[]> bytes_;
  size_t size_ = 0;
};

// Loads the key a policy's `key_ref` points to:
// - "env:NAME": the environment variable, which must be set and non-empty;
// - "file:/abs/path": the file's content without trailing newlines; the file must not be
//   accessible to group or others (chmod 600).
// On failure returns nullopt with *error naming the reference; an error never contains the key.
std::optional<Secret> load_secret(std::string_view ref, std::string* error);

// `text` with every occurrence of any of `secrets` replaced by "[redacted]": a last line of
// defence for error texts that quote upstream responses or requests. Null and empty secrets are
// ignored; where secrets overlap the longest match wins.
std::string redact(std::string_view text, std::span<const Secret* const> secrets);

}  // namespace airlock::control
