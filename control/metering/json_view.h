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
#include <type_traits>
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

  template <class Container>
  class Range;
  // The elements of an array, in order; nothing for anything else.
  using Items = Range<simdjson::dom::array>;
  Items items() const;
  // The members of an object, in document order; nothing for anything else.
  using Members = Range<simdjson::dom::object>;
  Members members() const;

 private:
  bool is(simdjson::dom::element_type type) const { return present_ && value_.type() == type; }

  simdjson::dom::element value_;
  bool present_ = false;
};

// Elements or members of a value, or nothing when it is not an array or object.
template <class Container>
class JsonView::Range {
 public:
  class Iterator {
   public:
    Iterator() = default;
    explicit Iterator(typename Container::iterator at) : at_(at) {}
    auto operator*() const {
      if constexpr (std::is_same_v<Container, simdjson::dom::array>) {
        return JsonView(**at_);
      } else {
        return std::pair<std::string_view, JsonView>((*at_).key(), JsonView((*at_).value()));
      }
    }
    Iterator& operator++() {
      ++*at_;
      return *this;
    }
    bool operator!=(const Iterator& other) const { return at_ && *at_ != *other.at_; }

   private:
    // Empty for no container: a default simdjson array or object has no tape to iterate.
    std::optional<typename Container::iterator> at_;
  };

  Range() = default;
  explicit Range(Container container) : container_(container) {}
  Iterator begin() const { return container_ ? Iterator(container_->begin()) : Iterator(); }
  Iterator end() const { return container_ ? Iterator(container_->end()) : Iterator(); }

 private:
  std::optional<Container> container_;
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
