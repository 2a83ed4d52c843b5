// Lenient JSON accessors shared by the metering parsers: providers add fields and compatible
// upstreams send nulls or odd types, and metering must never throw on traffic it only observes.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace airlock::control::json_access {

// The member `key` of an object, or nullptr when `j` is not an object or the member is absent
// or null.
inline const nlohmann::json* member(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

inline const nlohmann::json* member(const nlohmann::json& j, const char* key, const char* inner) {
  const nlohmann::json* outer = member(j, key);
  return outer ? member(*outer, inner) : nullptr;
}

// A string's value; empty for anything else.
inline std::string text_of(const nlohmann::json* v) {
  return v && v->is_string() ? v->get<std::string>() : "";
}

// A string's value, or any other value serialised compactly (invalid UTF-8 replaced).
inline std::string raw_of(const nlohmann::json* v) {
  if (v == nullptr) return "";
  if (v->is_string()) return v->get<std::string>();
  return v->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace airlock::control::json_access
