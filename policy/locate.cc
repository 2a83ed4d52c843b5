#include "policy/locate.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

namespace airlock::policy {
namespace {

// Policies nest four levels deep; anything far deeper is not a policy, and bounding the depth
// bounds the length of the recorded paths.
constexpr size_t kMaxDepth = 64;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, uint32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xc0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3f));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xe0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code_point & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code_point & 0x3f));
  }
}

// Iterative (an explicit stack), so hostile nesting cannot exhaust the call stack.
class Scanner {
 public:
  Scanner(std::string_view text, std::unordered_map<std::string, int>& lines)
      : text_(text), lines_(lines) {}

  void run() {
    if (!skip_space() || !begin_value(line_)) return;
    while (!stack_.empty()) {
      if (!skip_space()) return;
      Frame& frame = stack_.back();
      if (peek() == (frame.is_array ? ']' : '}')) {
        advance();
        stack_.pop_back();
        continue;
      }
      if (frame.has_elements) {
        if (peek() != ',') return;
        advance();
        if (!skip_space()) return;
      }
      frame.has_elements = true;
      path_.resize(frame.path_length);
      const int line = line_;
      if (frame.is_array) {
        path_ += "[" + std::to_string(frame.index++) + "]";
      } else {
        std::string key;
        if (!string(&key) || !skip_space() || peek() != ':') return;
        advance();
        if (!skip_space()) return;
        path_ = path_.empty() ? key : path_ + "." + key;
      }
      if (!begin_value(line)) return;
    }
  }

 private:
  struct Frame {
    bool is_array = false;
    bool has_elements = false;
    size_t index = 0;
    size_t path_length = 0;
  };

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  void advance() {
    if (text_[pos_] == '\n') ++line_;
    ++pos_;
  }

  bool at(std::string_view token) const { return text_.substr(pos_, token.size()) == token; }

  // False only for an unterminated block comment.
  bool skip_space() {
    for (;;) {
      if (pos_ < text_.size() && is_space(text_[pos_])) {
        advance();
      } else if (at("//")) {
        while (pos_ < text_.size() && text_[pos_] != '\n') advance();
      } else if (at("/*")) {
        const size_t end = text_.find("*/", pos_ + 2);
        if (end == std::string_view::npos) return false;
        while (pos_ < end + 2) advance();
      } else {
        return true;
      }
    }
  }

  // Records the value at path_ as starting on `line`, then enters it (containers) or skips it.
  bool begin_value(int line) {
    lines_.insert_or_assign(path_, line);
    const char c = peek();
    if (c == '{' || c == '[') {
      if (stack_.size() >= kMaxDepth) return false;
      advance();
      stack_.push_back({c == '[', false, 0, path_.size()});
      return true;
    }
    if (c == '"') return string(nullptr);
    return scalar();
  }

  // At the opening quote; decodes into *decoded when given.
  bool string(std::string* decoded) {
    if (peek() != '"') return false;
    advance();
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '"') {
        advance();
        return true;
      }
      if (c == '\n') return false;
      advance();
      if (c != '\\') {
        if (decoded) *decoded += c;
        continue;
      }
      if (!escape(decoded)) return false;
    }
    return false;
  }

  // After the backslash.
  bool escape(std::string* decoded) {
    static constexpr std::string_view kEscapes = "\"\\/bfnrt";
    static constexpr std::string_view kMeanings = "\"\\/\b\f\n\r\t";
    const char c = peek();
    if (const size_t i = kEscapes.find(c); c != '\0' && i != std::string_view::npos) {
      advance();
      if (decoded) *decoded += kMeanings[i];
      return true;
    }
    if (c != 'u') return false;
    advance();
    auto unit = hex4();
    if (!unit) return false;
    uint32_t code_point = *unit;
    if (code_point >= 0xd800 && code_point < 0xdc00 && at("\\u")) {
      advance();
      advance();
      const auto low = hex4();
      if (!low) return false;
      code_point = 0x10000 + ((code_point - 0xd800) << 10) + (*low - 0xdc00);
    }
    if (decoded) append_utf8(*decoded, code_point);
    return true;
  }

  std::optional<uint32_t> hex4() {
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      const int digit = hex_digit(peek());
      if (digit < 0) return std::nullopt;
      advance();
      value = value << 4 | static_cast<uint32_t>(digit);
    }
    return value;
  }

  // Numbers and literals run up to the next delimiter.
  bool scalar() {
    const size_t start = pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (is_space(c) || c == ',' || c == ']' || c == '}' || c == '/') break;
      advance();
    }
    return pos_ > start;
  }

  std::string_view text_;
  std::unordered_map<std::string, int>& lines_;
  size_t pos_ = 0;
  int line_ = 1;
  std::string path_;
  std::vector<Frame> stack_;
};

}  // namespace

SourceLines::SourceLines(std::string_view text) {
  Scanner(text, lines_).run();
}

int SourceLines::line_of(std::string_view path) const {
  for (;;) {
    if (const auto it = lines_.find(std::string(path)); it != lines_.end()) return it->second;
    if (path.empty()) return 1;
    const size_t cut = path.find_last_of(".[");
    path = path.substr(0, cut == std::string_view::npos ? 0 : cut);
  }
}

int line_at_offset(std::string_view text, size_t offset) {
  const std::string_view before = text.substr(0, std::min(offset, text.size()));
  return 1 + static_cast<int>(std::count(before.begin(), before.end(), '\n'));
}

}  // namespace airlock::policy
