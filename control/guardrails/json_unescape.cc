#include "control/guardrails/json_unescape.h"

#include <algorithm>
#include <cstring>

namespace airlock::control::guardrails {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The UTF-16 code unit spelled by the "\uXXXX" at the start of `s`, or -1.
long code_unit(std::string_view s) {
  if (s.size() < 6 || s[0] != '\\' || s[1] != 'u') return -1;
  long unit = 0;
  for (std::size_t i = 2; i < 6; ++i) {
    const int digit = hex_digit(s[i]);
    if (digit < 0) return -1;
    unit = unit * 16 + digit;
  }
  return unit;
}

std::size_t put_utf8(unsigned long code_point, char* out) {
  if (code_point < 0x80) {
    out[0] = static_cast<char>(code_point);
    return 1;
  }
  if (code_point < 0x800) {
    out[0] = static_cast<char>(0xc0 | (code_point >> 6));
    out[1] = static_cast<char>(0x80 | (code_point & 0x3f));
    return 2;
  }
  if (code_point < 0x10000) {
    out[0] = static_cast<char>(0xe0 | (code_point >> 12));
    out[1] = static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
    out[2] = static_cast<char>(0x80 | (code_point & 0x3f));
    return 3;
  }
  out[0] = static_cast<char>(0xf0 | (code_point >> 18));
  out[1] = static_cast<char>(0x80 | ((code_point >> 12) & 0x3f));
  out[2] = static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
  out[3] = static_cast<char>(0x80 | (code_point & 0x3f));
  return 4;
}

// Decodes the escape at the start of `s` (which begins with a backslash) into `out`; returns the
// escape's length in `s` and sets *size to the bytes written, or returns 0 for no valid escape.
std::size_t decode_escape(std::string_view s, char* out, std::size_t* size) {
  *size = 1;
  switch (s.size() > 1 ? s[1] : '\0') {
    case '"':
    case '\\':
    case '/':
      out[0] = s[1];
      return 2;
    case 'b':
      out[0] = '\b';
      return 2;
    case 'f':
      out[0] = '\f';
      return 2;
    case 'n':
      out[0] = '\n';
      return 2;
    case 'r':
      out[0] = '\r';
      return 2;
    case 't':
      out[0] = '\t';
      return 2;
    case 'u':
      break;
    default:
      return 0;
  }
  const long unit = code_unit(s);
  if (unit < 0 || (unit >= 0xdc00 && unit <= 0xdfff)) return 0;
  if (unit < 0xd800 || unit > 0xdbff) {
    *size = put_utf8(static_cast<unsigned long>(unit), out);
    return 6;
  }
  const long low = code_unit(s.substr(6));
  if (low < 0xdc00 || low > 0xdfff) return 0;
  *size = put_utf8(0x10000 + ((static_cast<unsigned long>(unit) - 0xd800) << 10) +
                       (static_cast<unsigned long>(low) - 0xdc00),
                   out);
  return 12;
}

}  // namespace

// In a valid document a backslash occurs only inside a string and always starts an escape, so
// escapes are found with memchr alone rather than by tracking where strings begin and end.
void UnescapedJson::decode(std::string_view json) {
  json_ = json;
  changed_ = false;
  indexed_ = false;
  text_.resize(json.size());  // an escape never decodes to more bytes than it spells
  char* const first = text_.data();
  char* out = first;
  std::size_t at = 0;
  while (at < json.size()) {
    const void* found = std::memchr(json.data() + at, '\\', json.size() - at);
    const std::size_t slash =
        found ? static_cast<std::size_t>(static_cast<const char*>(found) - json.data())
              : json.size();
    std::memcpy(out, json.data() + at, slash - at);
    out += slash - at;
    if (slash == json.size()) break;
    std::size_t size = 0;
    const std::size_t length = decode_escape(json.substr(slash), out, &size);
    if (length == 0) {
      *out++ = '\\';
      at = slash + 1;
      continue;
    }
    changed_ = true;
    out += size;
    at = slash + length;
  }
  text_.resize(static_cast<std::size_t>(out - first));
}

void UnescapedJson::index() {
  if (indexed_) return;
  indexed_ = true;
  escapes_.clear();
  std::size_t shrunk = 0;  // how much shorter the text is than the document so far
  char scratch[4];
  for (std::size_t at = 0; at < json_.size();) {
    const void* found = std::memchr(json_.data() + at, '\\', json_.size() - at);
    if (!found) break;
    const auto slash = static_cast<std::size_t>(static_cast<const char*>(found) - json_.data());
    std::size_t size = 0;
    const std::size_t length = decode_escape(json_.substr(slash), scratch, &size);
    if (length == 0) {
      at = slash + 1;
      continue;
    }
    const std::size_t begin = slash - shrunk;
    escapes_.push_back(
        Escape{static_cast<std::uint32_t>(slash), static_cast<std::uint32_t>(slash + length),
               static_cast<std::uint32_t>(begin), static_cast<std::uint32_t>(begin + size)});
    shrunk += length - size;
    at = slash + length;
  }
}

void UnescapedJson::shrink(std::size_t bytes) {
  if (text_.capacity() > bytes) {
    std::string().swap(text_);
    json_ = {};
    changed_ = false;
    indexed_ = false;
  }
  if (escapes_.capacity() * sizeof(Escape) > bytes) {
    std::vector<Escape>().swap(escapes_);
    indexed_ = false;
  }
}

const UnescapedJson::Escape* UnescapedJson::unit(std::size_t at, std::size_t* raw) const {
  auto it = std::upper_bound(escapes_.begin(), escapes_.end(), at,
                             [](std::size_t offset, const Escape& e) { return offset < e.begin; });
  if (it == escapes_.begin()) {
    *raw = at;
    return nullptr;
  }
  --it;
  if (at < it->end) return &*it;
  *raw = it->raw_end + (at - it->end);
  return nullptr;
}

std::pair<std::size_t, std::size_t> UnescapedJson::raw_span(std::size_t from, std::size_t to) {
  index();
  std::size_t first = 0;
  if (const Escape* e = unit(from, &first)) first = e->raw_begin;
  if (to <= from) return {first, first};
  std::size_t last = 0;
  if (const Escape* e = unit(to - 1, &last)) {
    last = e->raw_end;
  } else {
    ++last;
  }
  return {first, last};
}

bool UnescapedJson::cuttable(std::size_t from, std::size_t to) {
  index();
  auto it =
      std::upper_bound(escapes_.begin(), escapes_.end(), from,
                       [](std::size_t offset, const Escape& e) { return offset < e.raw_end; });
  for (std::size_t at = from; at < to;) {
    if (it != escapes_.end() && it->raw_begin <= at) {
      if (at != it->raw_begin || it->raw_end > to) return false;
      at = it->raw_end;
      ++it;
    } else if (json_[at] == '"' || json_[at] == '\\') {
      return false;
    } else {
      ++at;
    }
  }
  return true;
}

}  // namespace airlock::control::guardrails
