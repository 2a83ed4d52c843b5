// Lenient read-only access to a JSON document parsed by simdjson, for request bodies and provider
// answers: an SSE stream brings one small document per event, and building an nlohmann tree of
// each cost the relay more than everything else it does per event (about 23k instructions an
// event, against about 3k for simdjson's parse); a 2 KiB agent request took 14.7 us to parse into
// a tree and read, 2.0 us read in place. It never throws on traffic it only observes: an absent
// member, a null or a value of another type reads as absent or empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <simdjson.h>

namespace airlock::control {

// One value of a JsonDocument, or nothing. Valid while its document lives.
class JsonView {
 public:
  JsonView() = default;
  explicit JsonView(simdjson::dom::element value);

  // False when absent or null.
  explicit operator bool() const { return present_; }
  bool is_object() const { return is(simdjson::dom::element_type::OBJECT); }
  bool is_array() const { return is(simdjson::dom::element_type::ARRAY); }
  bool is_string() const { return is(simdjson::dom::element_type::STRING); }

  // The member `key` of an object; absent when this is not an object or the member is absent or
  // null. A repeated key gives its last value, as nlohmann's parser keeps it.
  JsonView member(std::string_view key) const;
  JsonView member(std::string_view key, std::string_view inner) const {
    return member(key).member(inner);
  }
  // Whether an object has the member `key`, null included.
  bool contains(std::string_view key) const;
  // Elements of an array or members of an object; 0 for anything else.
  std::size_t size() const;

  // A string's value; empty for anything else.
  std::string text() const;
  // A string's value, or any other value serialised compactly in its document's member order.
  std::string raw() const;
  // An integer that is not negative.
  std::optional<uint64_t> count() const;
  // An integer that fits int64_t.
  std::optional<int64_t> integer() const;
  // A number written with a fraction or an exponent (or past 64 bits); integers are not.
  std::optional<double> decimal() const;
  std::optional<bool> boolean() const;

  // The elements of an array, in order; nothing for anything else.
  class Items;
  Items items() const;
  // The members of an object, in document order; nothing for anything else.
  class Members;
  Members members() const;

 private:
  bool is(simdjson::dom::element_type type) const { return present_ && value_.type() == type; }

  simdjson::dom::element value_;
  bool present_ = false;
};

class JsonView::Items {
 public:
  class Iterator {
   public:
    Iterator() = default;
    explicit Iterator(simdjson::dom::array::iterator at) : at_(at) {}
    JsonView operator*() const { return JsonView(**at_); }
    Iterator& operator++() {
      ++*at_;
      return *this;
    }
    bool operator!=(const Iterator& other) const { return at_ && *at_ != *other.at_; }

   private:
    // Empty for no array: a default simdjson array has no tape to iterate.
    std::optional<simdjson::dom::array::iterator> at_;
  };

  Items() = default;
  explicit Items(simdjson::dom::array array) : array_(array) {}
  Iterator begin() const { return array_ ? Iterator(array_->begin()) : Iterator(); }
  Iterator end() const { return array_ ? Iterator(array_->end()) : Iterator(); }

 private:
  std::optional<simdjson::dom::array> array_;
};

class JsonView::Members {
 public:
  class Iterator {
   public:
    Iterator() = default;
    explicit Iterator(simdjson::dom::object::iterator at) : at_(at) {}
    std::pair<std::string_view, JsonView> operator*() const {
      return {at_->key(), JsonView(at_->value())};
    }
    Iterator& operator++() {
      ++*at_;
      return *this;
    }
    bool operator!=(const Iterator& other) const { return at_ && *at_ != *other.at_; }

   private:
    std::optional<simdjson::dom::object::iterator> at_;
  };

  Members() = default;
  explicit Members(simdjson::dom::object object) : object_(object) {}
  Iterator begin() const { return object_ ? Iterator(object_->begin()) : Iterator(); }
  Iterator end() const { return object_ ? Iterator(object_->end()) : Iterator(); }

 private:
  std::optional<simdjson::dom::object> object_;
};

// A parsed document. The parse goes into the thread's reused parser (shared with parse_json)
// unless that parser is busy with another live document or the text is large.
class JsonDocument {
 public:
  explicit JsonDocument(std::string_view text);
  ~JsonDocument();
  JsonDocument(const JsonDocument&) = delete;
  JsonDocument& operator=(const JsonDocument&) = delete;

  // The document's root; absent when the text is not JSON or nests deeper than kMaxJsonDepth.
  JsonView root() const { return root_; }
  // Whether the text was JSON (the root alone cannot tell a `null` document from no document).
  bool valid() const { return valid_; }

 private:
  struct Own;
  std::unique_ptr<Own> own_;
  bool holds_thread_parser_ = false;
  bool valid_ = false;
  JsonView root_;
};

}  // namespace airlock::control
