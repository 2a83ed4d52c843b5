// The text of a JSON document with the escapes in its strings decoded, for pattern scans that
// must see what a string says rather than how it is spelled ("AKIA\u0049..." is "AKIAI..."),
// and the way back from decoded offsets to the document's own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace airlock::control::guardrails {

class UnescapedJson {
 public:
  // Decodes \" \\ \/ \b \f \n \r \t and \uXXXX (surrogate pairs joined, written as UTF-8). A
  // backslash that starts no valid escape, and a lone surrogate, are kept as they are. Nothing
  // else changes: quotes, structure and text between escapes are copied, so strings stay apart.
  // `json` must outlive this view's use and hold at most UINT32_MAX bytes. Reuses the buffers of
  // the previous call.
  void decode(std::string_view json);

  std::string_view text() const { return text_; }
  // Whether any escape was decoded, i.e. text() differs from the document.
  bool changed() const { return changed_; }

  // The document's bytes [first, second) that decode to text()'s [from, to): an escape any part
  // of whose output lies in the range is covered whole.
  std::pair<std::size_t, std::size_t> raw_span(std::size_t from, std::size_t to);

  // Whether the document's bytes [from, to) can be replaced inside one string: neither end falls
  // within an escape, and no quote or backslash lies outside the escapes.
  bool cuttable(std::size_t from, std::size_t to);

  // Frees the buffers if they outgrew `bytes`, so that one large body does not pin its size.
  void shrink(std::size_t bytes);

 private:
  // One decoded escape: the document's [raw_begin, raw_end) became text()'s [begin, end).
  struct Escape {
    std::uint32_t raw_begin, raw_end, begin, end;
  };
  // Lists the escapes, on the first call after decode(). Only matches need offsets mapped, so
  // the common scan of a clean body does not pay for the list.
  void index();
  // The escape whose output holds text offset `at`, or nullptr; `*raw` is `at`'s offset in the
  // document when it is a copied byte.
  const Escape* unit(std::size_t at, std::size_t* raw) const;

  std::string_view json_;
  std::string text_;
  bool changed_ = false;
  bool indexed_ = false;
  std::vector<Escape> escapes_;  // in document order
};

}  // namespace airlock::control::guardrails
