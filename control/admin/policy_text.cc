#include "control/admin/policy_text.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace airlock::control::admin {
namespace {

enum class Tok {
  kOpenObject,
  kCloseObject,
  kOpenArray,
  kCloseArray,
  kColon,
  kComma,
  kString,
  kLiteral
};

struct Token {
  Tok kind;
  size_t begin;
  size_t end;
};

// Deeper nesting than any policy needs; bounds the recursion on hostile input.
constexpr int kMaxDepth = 256;

int line_of(std::string_view text, size_t offset) {
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + offset, '\n'));
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool is_delimiter(char c) {
  return is_space(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == ':' || c == ',' ||
         c == '"' || c == '/';
}

std::optional<std::vector<Token>> tokenize(std::string_view text, std::string* error) {
  std::vector<Token> tokens;
  size_t i = 0;
  auto fail = [&](size_t at, const std::string& what) {
    *error = "line " + std::to_string(line_of(text, at)) + ": " + what;
    return std::nullopt;
  };
  while (i < text.size()) {
    char c = text[i];
    if (is_space(c)) {
      ++i;
    } else if (c == '/') {
      if (i + 1 < text.size() && text[i + 1] == '/') {
        size_t nl = text.find('\n', i);
        i = nl == std::string_view::npos ? text.size() : nl + 1;
      } else if (i + 1 < text.size() && text[i + 1] == '*') {
        size_t close = text.find("*/", i + 2);
        if (close == std::string_view::npos) return fail(i, "unterminated comment");
        i = close + 2;
      } else {
        return fail(i, "unexpected '/'");
      }
    } else if (c == '"') {
      size_t j = i + 1;
      while (j < text.size() && text[j] != '"' && text[j] != '\n') j += text[j] == '\\' ? 2 : 1;
      if (j >= text.size() || text[j] != '"') return fail(i, "unterminated string");
      tokens.push_back({Tok::kString, i, j + 1});
      i = j + 1;
    } else if (c == '{' || c == '}' || c == '[' || c == ']' || c == ':' || c == ',') {
      Tok kind = c == '{'   ? Tok::kOpenObject
                 : c == '}' ? Tok::kCloseObject
                 : c == '[' ? Tok::kOpenArray
                 : c == ']' ? Tok::kCloseArray
                 : c == ':' ? Tok::kColon
                            : Tok::kComma;
      tokens.push_back({kind, i, i + 1});
      ++i;
    } else {
      size_t j = i;
      while (j < text.size() && !is_delimiter(text[j])) ++j;
      tokens.push_back({Tok::kLiteral, i, j});
      i = j;
    }
  }
  return tokens;
}

// The string a key token spells, escapes resolved, so "pe\u0065rs" is "peers".
std::string decode_string(std::string_view raw) {
  if (raw.find('\\') == std::string_view::npos) return std::string(raw.substr(1, raw.size() - 2));
  try {
    return nlohmann::json::parse(raw).get<std::string>();
  } catch (const nlohmann::json::exception&) {
    return std::string(raw);
  }
}

class Walker {
 public:
  Walker(std::string_view text, const std::vector<Token>& tokens, std::string* error)
      : text_(text), tokens_(tokens), error_(error) {}

  // Index just past the value starting at token `k`.
  std::optional<size_t> skip_value(size_t k, int depth = 0) {
    if (k >= tokens_.size()) return fail(text_.size(), "unexpected end of text");
    if (depth > kMaxDepth) return fail(tokens_[k].begin, "nesting too deep");
    switch (tokens_[k].kind) {
      case Tok::kString:
      case Tok::kLiteral:
        return k + 1;
      case Tok::kOpenObject:
        return skip_members(k, depth, nullptr);
      case Tok::kOpenArray:
        return skip_elements(k, depth, nullptr);
      default:
        return fail(tokens_[k].begin, "expected a value");
    }
  }

  struct Member {
    size_t key;          // token index of the key
    size_t value_begin;  // token index
    size_t value_end;    // token index past the value
  };

  // The object opening at token `k`; returns the index past its '}'.
  std::optional<size_t> skip_members(size_t k, int depth, std::vector<Member>* members) {
    ++k;
    if (at(k, Tok::kCloseObject)) return k + 1;
    while (true) {
      if (!at(k, Tok::kString)) return fail(pos(k), "expected a member name");
      if (!at(k + 1, Tok::kColon)) return fail(pos(k + 1), "expected ':'");
      auto end = skip_value(k + 2, depth + 1);
      if (!end) return std::nullopt;
      if (members) members->push_back({k, k + 2, *end});
      k = *end;
      if (at(k, Tok::kCloseObject)) return k + 1;
      if (!at(k, Tok::kComma)) return fail(pos(k), "expected ',' or '}'");
      ++k;
    }
  }

  struct Element {
    size_t begin;  // token index
    size_t end;    // token index past the value
  };

  // The array opening at token `k`; returns the index past its ']'.
  std::optional<size_t> skip_elements(size_t k, int depth, std::vector<Element>* elements) {
    ++k;
    if (at(k, Tok::kCloseArray)) return k + 1;
    while (true) {
      auto end = skip_value(k, depth + 1);
      if (!end) return std::nullopt;
      if (elements) elements->push_back({k, *end});
      k = *end;
      if (at(k, Tok::kCloseArray)) return k + 1;
      if (!at(k, Tok::kComma)) return fail(pos(k), "expected ',' or ']'");
      ++k;
    }
  }

  std::optional<std::vector<Member>> root_members() {
    if (!at(0, Tok::kOpenObject)) return fail(pos(0), "the policy must be a JSON object");
    std::vector<Member> members;
    auto end = skip_members(0, 0, &members);
    if (!end) return std::nullopt;
    if (*end != tokens_.size()) return fail(pos(*end), "text after the policy object");
    return members;
  }

  std::optional<Member> root_member(std::string_view key) {
    auto members = root_members();
    if (!members) return std::nullopt;
    std::optional<Member> found;
    for (const Member& m : *members) {
      const Token& t = tokens_[m.key];
      if (decode_string(text_.substr(t.begin, t.end - t.begin)) == key) found = m;
    }
    if (!found) *error_ = "no \"" + std::string(key) + "\" in the policy";
    return found;
  }

  bool at(size_t k, Tok kind) const { return k < tokens_.size() && tokens_[k].kind == kind; }
  size_t pos(size_t k) const { return k < tokens_.size() ? tokens_[k].begin : text_.size(); }

 private:
  std::nullopt_t fail(size_t offset, const std::string& what) {
    *error_ = "line " + std::to_string(line_of(text_, offset)) + ": " + what;
    return std::nullopt;
  }

  std::string_view text_;
  const std::vector<Token>& tokens_;
  std::string* error_;
};

size_t line_start(std::string_view text, size_t offset) {
  size_t nl = text.rfind('\n', offset == 0 ? 0 : offset - 1);
  return nl == std::string_view::npos || offset == 0 ? 0 : nl + 1;
}

// Whether only blanks precede `offset` on its line.
bool first_on_line(std::string_view text, size_t offset) {
  size_t start = line_start(text, offset);
  return std::all_of(text.begin() + start, text.begin() + offset,
                     [](char c) { return c == ' ' || c == '\t'; });
}

std::string leading_blanks(std::string_view text, size_t offset) {
  size_t start = line_start(text, offset);
  size_t end = start;
  while (end < text.size() && (text[end] == ' ' || text[end] == '\t')) ++end;
  return std::string(text.substr(start, end - start));
}

std::string json_string(std::string_view s) {
  return nlohmann::json(std::string(s)).dump();
}

std::string string_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + json_string(items[i]);
  return out + "]";
}

std::string format_peer(const PeerEntry& peer, bool multiline, const std::string& indent,
                        const std::string& unit) {
  std::vector<std::string> fields;
  fields.push_back("\"user\": " + json_string(peer.user));
  if (!peer.device.empty()) fields.push_back("\"device\": " + json_string(peer.device));
  if (!peer.tags.empty()) fields.push_back("\"tags\": " + string_list(peer.tags));
  fields.push_back("\"public_key\": " + json_string(peer.public_key));
  fields.push_back("\"allowed_ips\": " + string_list(peer.allowed_ips));
  std::string out = "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    if (multiline) {
      out += (i ? ",\n" : "\n") + indent + unit + fields[i];
    } else {
      out += (i ? ", " : "") + fields[i];
    }
  }
  return out + (multiline ? "\n" + indent + "}" : "}");
}

}  // namespace

std::optional<TextSpan> find_root_member(std::string_view text, std::string_view key,
                                         std::string* error) {
  auto tokens = tokenize(text, error);
  if (!tokens) return std::nullopt;
  Walker walker(text, *tokens, error);
  auto member = walker.root_member(key);
  if (!member) return std::nullopt;
  return TextSpan{(*tokens)[member->value_begin].begin, (*tokens)[member->value_end - 1].end};
}

std::optional<std::string> insert_peer(std::string_view text, const PeerEntry& peer,
                                       std::string* error) {
  auto tokens_or = tokenize(text, error);
  if (!tokens_or) return std::nullopt;
  const std::vector<Token>& tokens = *tokens_or;
  Walker walker(text, tokens, error);
  auto member = walker.root_member("peers");
  if (!member) return std::nullopt;
  if (!walker.at(member->value_begin, Tok::kOpenArray)) {
    *error = "line " + std::to_string(line_of(text, tokens[member->value_begin].begin)) +
             ": \"peers\" is not an array";
    return std::nullopt;
  }
  std::vector<Walker::Element> elements;
  if (!walker.skip_elements(member->value_begin, 0, &elements)) return std::nullopt;
  size_t open = tokens[member->value_begin].begin;
  size_t close = tokens[member->value_end - 1].begin;

  std::string key_indent = leading_blanks(text, tokens[member->key].begin);
  std::string default_unit = key_indent.find('\t') != std::string::npos ? "\t" : "  ";
  std::string indent = key_indent + default_unit;
  bool multiline = false;
  size_t after_last = open + 1;
  if (!elements.empty()) {
    size_t first_begin = tokens[elements.front().begin].begin;
    size_t first_end = tokens[elements.front().end - 1].end;
    if (first_on_line(text, first_begin)) indent = leading_blanks(text, first_begin);
    multiline = text.substr(first_begin, first_end - first_begin).find('\n') != std::string::npos;
    after_last = tokens[elements.back().end - 1].end;
  }
  std::string unit = indent.size() > key_indent.size() && indent.starts_with(key_indent)
                         ? indent.substr(key_indent.size())
                         : default_unit;
  std::string entry = format_peer(peer, multiline, indent, unit);

  std::string out(text.substr(0, after_last));
  if (!elements.empty()) out += ",";
  if (first_on_line(text, close)) {
    size_t close_line = line_start(text, close);
    out += text.substr(after_last, close_line - after_last);
    out += indent + entry + "\n";
    out += text.substr(close_line);
  } else {
    out += text.substr(after_last, close - after_last);
    out += "\n" + indent + entry + "\n" + key_indent;
    out += text.substr(close);
  }
  return out;
}

std::optional<std::string> set_version(std::string_view text, uint64_t version,
                                       std::string* error) {
  auto span = find_root_member(text, "version", error);
  if (!span) return std::nullopt;
  std::string_view old = text.substr(span->begin, span->end - span->begin);
  if (old.empty() ||
      !std::all_of(old.begin(), old.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    *error = "line " + std::to_string(line_of(text, span->begin)) +
             ": \"version\" is not a plain number";
    return std::nullopt;
  }
  std::string out(text);
  out.replace(span->begin, span->end - span->begin, std::to_string(version));
  return out;
}

std::string redact_preshared_keys(std::string_view text, std::span<const std::string> secrets) {
  static constexpr std::string_view kRedacted = "\"[redacted]\"";
  std::string out;
  std::string ignored;
  auto tokens = tokenize(text, &ignored);
  if (tokens) {
    size_t copied = 0;
    for (size_t k = 0; k + 2 < tokens->size(); ++k) {
      const Token& key = (*tokens)[k];
      const Token& value = (*tokens)[k + 2];
      if (key.kind != Tok::kString || (*tokens)[k + 1].kind != Tok::kColon ||
          value.kind != Tok::kString ||
          decode_string(text.substr(key.begin, key.end - key.begin)) != "preshared_key") {
        continue;
      }
      out += text.substr(copied, value.begin - copied);
      out += kRedacted;
      copied = value.end;
    }
    out += text.substr(copied);
  } else {
    out = text;
  }
  for (const std::string& secret : secrets) {
    if (secret.empty()) continue;
    for (size_t at = out.find(secret); at != std::string::npos;
         at = out.find(secret, at + kRedacted.size() - 2)) {
      out.replace(at, secret.size(), kRedacted.substr(1, kRedacted.size() - 2));
    }
  }
  return out;
}

}  // namespace airlock::control::admin
