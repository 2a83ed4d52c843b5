#include "control/metering/json_view.h"

namespace airlock::control {

using simdjson::dom::element;
using simdjson::dom::element_type;

JsonView::JsonView(element value) : value_(value), present_(!value.is_null()) {}

JsonView JsonView::member(std::string_view key) const {
  simdjson::dom::object object;
  if (!present_ || value_.get(object) != simdjson::SUCCESS) return {};
  JsonView found;
  for (const simdjson::dom::key_value_pair field : object) {
    if (field.key == key) found = JsonView(field.value);
  }
  return found;
}

bool JsonView::contains(std::string_view key) const {
  simdjson::dom::object object;
  if (!present_ || value_.get(object) != simdjson::SUCCESS) return false;
  return object.at_key(key).error() == simdjson::SUCCESS;
}

std::size_t JsonView::size() const {
  if (!present_) return 0;
  if (simdjson::dom::array array; value_.get(array) == simdjson::SUCCESS) return array.size();
  if (simdjson::dom::object object; value_.get(object) == simdjson::SUCCESS) return object.size();
  return 0;
}

std::string JsonView::text() const {
  std::string_view text;
  if (!present_ || value_.get(text) != simdjson::SUCCESS) return "";
  return std::string(text);
}

std::string JsonView::raw() const {
  if (!present_) return "";
  if (is_string()) return text();
  return simdjson::minify(value_);
}

std::optional<uint64_t> JsonView::count() const {
  if (!present_) return std::nullopt;
  if (uint64_t n = 0; value_.get(n) == simdjson::SUCCESS) return n;
  return std::nullopt;
}

std::optional<int64_t> JsonView::integer() const {
  if (!present_) return std::nullopt;
  if (int64_t n = 0; value_.get(n) == simdjson::SUCCESS) return n;
  return std::nullopt;
}

std::optional<double> JsonView::decimal() const {
  if (!is(element_type::DOUBLE)) return std::nullopt;
  return value_.get_double().value_unsafe();
}

std::optional<bool> JsonView::boolean() const {
  if (bool b = false; present_ && value_.get(b) == simdjson::SUCCESS) return b;
  return std::nullopt;
}

JsonView::Members JsonView::members() const {
  simdjson::dom::object object;
  if (!present_ || value_.get(object) != simdjson::SUCCESS) return {};
  return Members(object);
}

JsonView::Items JsonView::items() const {
  simdjson::dom::array array;
  if (!present_ || value_.get(array) != simdjson::SUCCESS) return {};
  return Items(array);
}

}  // namespace airlock::control
