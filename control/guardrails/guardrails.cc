#include "control/guardrails/guardrails.h"

#include <hs/hs.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>
#include <utility>

#include "control/guardrails/builtin.h"
#include "control/guardrails/json_unescape.h"

namespace airlock::control::guardrails {
namespace {

// Longest text a validated builtin pattern can match (a card number with separators is at most
// 23 bytes); stream matches are re-checked over this many bytes before their end.
constexpr std::size_t kValidationWindow = 32;

// hs_scan takes an unsigned int length; anything longer is scanned in pieces (streams) or refused.
constexpr std::size_t kMaxScanBytes = UINT_MAX;

struct CompileErrorDeleter {
  void operator()(hs_compile_error_t* error) const { hs_free_compile_error(error); }
};

// Literal patterns go through the regex compiler with every non-alphanumeric byte escaped, so one
// database holds both kinds; Hyperscan recognises the result as a pure literal.
std::string escape_literal(std::string_view literal) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(literal.size() * 4);
  for (char c : literal) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte >= '0' && byte <= '9') || (byte >= 'a' && byte <= 'z') ||
        (byte >= 'A' && byte <= 'Z')) {
      out.push_back(c);
    } else {
      out += "\\x";
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xf]);
    }
  }
  return out;
}

struct Source {
  std::string regex;
  bool caseless;
  bool (*validate)(std::string_view);
};

// The decoded text of one prompt that holds escapes. Its buffers are the thread's, kept for the
// next such prompt so that decoding allocates only for a body larger than any before; buffers
// past 1 MiB are let go when the scan ends.
class Decoded {
 public:
  explicit Decoded(std::string_view json) : view_(buffer()) { view_.decode(json); }
  ~Decoded() { view_.shrink(std::size_t{1} << 20); }
  Decoded(const Decoded&) = delete;
  Decoded& operator=(const Decoded&) = delete;
  UnescapedJson& view() { return view_; }

 private:
  static UnescapedJson& buffer() {
    thread_local UnescapedJson buffer;
    return buffer;
  }
  UnescapedJson& view_;
};

template <typename Hit>
int record_hit(unsigned id, unsigned long long from, unsigned long long to, unsigned /*flags*/,
               void* context) {
  static_cast<std::vector<Hit>*>(context)->push_back(Hit{id, from, to});
  return 0;
}

}  // namespace

void Guardrails::DatabaseDeleter::operator()(hs_database* db) const {
  hs_free_database(db);
}
void Guardrails::ScratchDeleter::operator()(hs_scratch* scratch) const {
  hs_free_scratch(scratch);
}
void ToolCallScanner::StreamDeleter::operator()(hs_stream* stream) const {
  hs_close_stream(stream, nullptr, nullptr, nullptr);
}

Guardrails::~Guardrails() = default;

std::shared_ptr<const Guardrails> Guardrails::compile(std::span<const policy::GuardrailSpec> specs,
                                                      std::string* error) {
  auto fail = [error](std::string message) -> std::shared_ptr<const Guardrails> {
    if (error) *error = std::move(message);
    return nullptr;
  };
  auto guardrails = std::make_shared<Guardrails>(Key{});
  guardrails->specs_.assign(specs.begin(), specs.end());

  std::vector<Source> sources;
  auto add = [&](std::size_t guardrail, std::string_view pattern, std::string regex, bool caseless,
                 bool (*validate)(std::string_view)) {
    auto same = [&](const Source& s) {
      return s.regex == regex && s.caseless == caseless && s.validate == validate;
    };
    auto it = std::find_if(sources.begin(), sources.end(), same);
    if (it == sources.end()) {
      sources.push_back(Source{std::move(regex), caseless, validate});
      guardrails->expressions_.push_back(Expression{{}, validate});
      it = sources.end() - 1;
    }
    auto& owners = guardrails->expressions_[it - sources.begin()].owners;
    auto owned = [&](const Owner& o) { return o.guardrail == guardrail && o.pattern == pattern; };
    if (std::none_of(owners.begin(), owners.end(), owned))
      owners.push_back(Owner{guardrail, std::string(pattern)});
  };

  for (std::size_t i = 0; i < specs.size(); ++i) {
    const auto& spec = specs[i];
    for (const auto& set_name : spec.builtin) {
      const auto set = builtin_set(set_name);
      if (set.empty()) {
        std::string known;
        for (auto name : builtin_set_names())
          known += (known.empty() ? "" : ", ") + std::string(name);
        return fail("guardrail \"" + spec.name + "\": unknown builtin set \"" + set_name +
                    "\" (known: " + known + ")");
      }
      for (const auto& p : set)
        add(i, p.name, std::string(p.expression), p.case_insensitive, p.validate);
    }
    for (const auto& p : spec.patterns)
      add(i, p.name, p.literal ? escape_literal(p.expression) : p.expression, p.case_insensitive,
          nullptr);
  }
  if (sources.empty()) return guardrails;
  guardrails->has_validators_ = std::any_of(sources.begin(), sources.end(),
                                            [](const Source& s) { return s.validate != nullptr; });

  std::vector<const char*> expressions;
  std::vector<unsigned> ids, locate_flags, detect_flags;
  for (std::size_t id = 0; id < sources.size(); ++id) {
    const auto& s = sources[id];
    const unsigned caseless = s.caseless ? HS_FLAG_CASELESS : 0u;
    expressions.push_back(s.regex.c_str());
    ids.push_back(static_cast<unsigned>(id));
    locate_flags.push_back(caseless | HS_FLAG_SOM_LEFTMOST);
    // Validated patterns must keep reporting: the first candidate may fail its check. Their
    // shapes end in \b, so each occurrence still reports once.
    detect_flags.push_back(caseless | (s.validate ? 0u : HS_FLAG_SINGLEMATCH));
  }

  auto build = [&](const std::vector<unsigned>& flags, unsigned mode,
                   DatabasePtr& out) -> std::optional<std::string> {
    hs_database_t* db = nullptr;
    hs_compile_error_t* raw_error = nullptr;
    const auto rc =
        hs_compile_multi(expressions.data(), flags.data(), ids.data(),
                         static_cast<unsigned>(expressions.size()), mode, nullptr, &db, &raw_error);
    const std::unique_ptr<hs_compile_error_t, CompileErrorDeleter> compile_error(raw_error);
    if (rc == HS_SUCCESS) {
      out.reset(db);
      return std::nullopt;
    }
    const std::string message = compile_error ? compile_error->message : "compile failed";
    if (compile_error && compile_error->expression >= 0 &&
        static_cast<std::size_t>(compile_error->expression) < sources.size()) {
      const auto& owner = guardrails->expressions_[compile_error->expression].owners.front();
      return "guardrail \"" + specs[owner.guardrail].name + "\" pattern \"" + owner.pattern +
             "\": Hyperscan: " + message;
    }
    return "guardrails: Hyperscan: " + message;
  };
  if (auto e = build(locate_flags, HS_MODE_BLOCK, guardrails->locate_db_)) return fail(*e);
  if (auto e = build(detect_flags, HS_MODE_BLOCK, guardrails->detect_db_)) return fail(*e);
  if (auto e = build(detect_flags, HS_MODE_STREAM, guardrails->stream_db_)) return fail(*e);

  hs_scratch_t* scratch = nullptr;
  if (hs_alloc_scratch(guardrails->locate_db_.get(), &scratch) != HS_SUCCESS ||
      hs_alloc_scratch(guardrails->detect_db_.get(), &scratch) != HS_SUCCESS ||
      hs_alloc_scratch(guardrails->stream_db_.get(), &scratch) != HS_SUCCESS) {
    hs_free_scratch(scratch);
    return fail("guardrails: Hyperscan could not allocate scratch space");
  }
  guardrails->prototype_.reset(scratch);
  return guardrails;
}

Guardrails::ScratchLease::ScratchLease(const Guardrails& owner) : owner_(owner) {
  const std::lock_guard lock(owner_.pool_mutex_);
  if (!owner_.pool_.empty()) {
    scratch_ = std::move(owner_.pool_.back());
    owner_.pool_.pop_back();
    return;
  }
  hs_scratch_t* clone = nullptr;
  if (hs_clone_scratch(owner_.prototype_.get(), &clone) != HS_SUCCESS) throw std::bad_alloc();
  scratch_.reset(clone);
}

Guardrails::ScratchLease::~ScratchLease() {
  const std::lock_guard lock(owner_.pool_mutex_);
  owner_.pool_.push_back(std::move(scratch_));
}

bool Guardrails::validate_tail(unsigned id, std::string_view text, hs_scratch* scratch) const {
  std::vector<Hit> hits;
  if (hs_scan(locate_db_.get(), text.data(), static_cast<unsigned>(text.size()), 0, scratch,
              record_hit<Hit>, &hits) != HS_SUCCESS)
    return false;
  for (const auto& hit : hits) {
    if (hit.id == id && hit.to == text.size() && expressions_[id].validate(text.substr(hit.from)))
      return true;
  }
  return false;
}

PromptVerdict Guardrails::scan_prompt(std::span<const std::size_t> guardrail_indexes,
                                      std::string& body) const {
  PromptVerdict verdict;
  const bool any = std::any_of(guardrail_indexes.begin(), guardrail_indexes.end(), [&](auto i) {
    return i < specs_.size() && specs_[i].prompt != policy::PromptAction::kOff;
  });
  if (!detect_db_ || !any) return verdict;
  if (body.size() > kMaxScanBytes) {
    verdict.blocked = true;  // cannot be scanned, so cannot be let through
    return verdict;
  }

  // Patterns see the body's decoded text (see the header); a body without a backslash is its own
  // decoded text and is scanned in place.
  std::optional<Decoded> decoded;
  if (std::memchr(body.data(), '\\', body.size())) decoded.emplace(body);
  const std::string_view scanned = decoded ? decoded->view().text() : std::string_view(body);

  auto relevant = [&](const Hit& h) {
    const auto& owners = expressions_[h.id].owners;
    return std::any_of(owners.begin(), owners.end(), [&](const Owner& o) {
      return specs_[o.guardrail].prompt != policy::PromptAction::kOff &&
             applies(guardrail_indexes, o.guardrail);
    });
  };
  std::vector<Hit> hits;
  {
    const ScratchLease lease(*this);
    const auto length = static_cast<unsigned>(scanned.size());
    if (hs_scan(detect_db_.get(), scanned.data(), length, 0, lease.get(), record_hit<Hit>, &hits) !=
        HS_SUCCESS) {
      verdict.blocked = true;
      return verdict;
    }
    if (std::none_of(hits.begin(), hits.end(), relevant)) return verdict;
    hits.clear();
    if (hs_scan(locate_db_.get(), scanned.data(), length, 0, lease.get(), record_hit<Hit>, &hits) !=
        HS_SUCCESS) {
      verdict.blocked = true;
      return verdict;
    }
  }
  std::erase_if(hits, [&](const Hit& h) {
    const auto validate = expressions_[h.id].validate;
    return validate && !validate(scanned.substr(h.from, h.to - h.from));
  });
  // From here on offsets are in `body`.
  if (decoded) {
    for (auto& hit : hits) {
      const auto [from, to] = decoded->view().raw_span(hit.from, hit.to);
      hit.from = from;
      hit.to = to;
    }
  }
  if (hits.empty()) return verdict;

  // A long match is reported at every end offset; one span per pattern occurrence is wanted.
  std::sort(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) {
    return std::tie(a.id, a.from, a.to) < std::tie(b.id, b.from, b.to);
  });
  auto emit = [&](const Hit& span) {
    for (const auto& owner : expressions_[span.id].owners) {
      const auto& spec = specs_[owner.guardrail];
      if (spec.prompt == policy::PromptAction::kOff || !applies(guardrail_indexes, owner.guardrail))
        continue;
      verdict.matches.push_back(PromptMatch{owner.guardrail, spec.name, owner.pattern, spec.prompt,
                                            static_cast<std::size_t>(span.from),
                                            static_cast<std::size_t>(span.to - span.from)});
    }
  };
  Hit current = hits.front();
  for (std::size_t i = 1; i < hits.size(); ++i) {
    if (hits[i].id == current.id && hits[i].from < current.to) {
      current.to = std::max(current.to, hits[i].to);
    } else {
      emit(current);
      current = hits[i];
    }
  }
  emit(current);
  std::sort(verdict.matches.begin(), verdict.matches.end(),
            [](const PromptMatch& a, const PromptMatch& b) {
              return std::tuple(a.offset, b.length, a.guardrail_index) <
                     std::tuple(b.offset, a.length, b.guardrail_index);
            });

  verdict.blocked = std::any_of(verdict.matches.begin(), verdict.matches.end(), [](const auto& m) {
    return m.action == policy::PromptAction::kBlock;
  });
  if (verdict.blocked) return verdict;

  // Redacted spans of different patterns that overlap become one, labelled by the leftmost.
  struct Span {
    std::size_t from, to;
    std::string_view pattern;
  };
  std::vector<Span> spans;
  for (const auto& m : verdict.matches) {
    if (m.action != policy::PromptAction::kRedact) continue;
    if (!spans.empty() && m.offset < spans.back().to) {
      spans.back().to = std::max(spans.back().to, m.offset + m.length);
    } else {
      spans.push_back(Span{m.offset, m.offset + m.length, m.pattern});
    }
  }
  if (spans.empty()) return verdict;

  // A quote or backslash in the span that is not part of a whole escape means the match crosses
  // JSON string syntax: cutting it out would corrupt the document (or hide where a string ends),
  // so such a request is refused. Whole escapes inside one string are cut with the rest.
  const std::string_view text(body);
  bool safe = std::all_of(spans.begin(), spans.end(), [&](const Span& s) {
    if (decoded) return decoded->view().cuttable(s.from, s.to);
    return text.substr(s.from, s.to - s.from).find_first_of("\"\\") == std::string_view::npos;
  });
  std::string redacted;
  if (safe) {
    redacted.reserve(body.size());
    std::size_t at = 0;
    for (const auto& s : spans) {
      redacted.append(text.substr(at, s.from - at));
      redacted.append("[REDACTED:").append(s.pattern).append("]");
      at = s.to;
    }
    redacted.append(text.substr(at));
    safe = nlohmann::json::accept(redacted);
  }
  if (!safe) {
    verdict.blocked = true;
    verdict.redaction_unsafe = true;
    return verdict;
  }
  body.swap(redacted);
  verdict.redacted = true;
  return verdict;
}

ToolCallScanner::ToolCallScanner(std::shared_ptr<const Guardrails> guardrails,
                                 std::span<const std::size_t> guardrail_indexes)
    : guardrails_(std::move(guardrails)) {
  if (!guardrails_ || !guardrails_->stream_db_) return;
  for (std::size_t i : guardrail_indexes) {
    if (i < guardrails_->size() && guardrails_->spec(i).response != policy::ResponseAction::kOff)
      indexes_.push_back(i);
  }
}

ToolCallScanner::~ToolCallScanner() = default;

void ToolCallScanner::collect(const Call& call, std::string_view window,
                              std::uint64_t window_offset, hs_scratch* scratch) {
  for (const auto& hit : hits_) {
    const auto& expression = guardrails_->expressions_[hit.id];
    if (expression.validate) {
      const std::size_t end = static_cast<std::size_t>(hit.to - window_offset);
      const std::size_t begin = end > kValidationWindow ? end - kValidationWindow : 0;
      if (!guardrails_->validate_tail(hit.id, window.substr(begin, end - begin), scratch)) continue;
    }
    for (const auto& owner : expression.owners) {
      if (!Guardrails::applies(indexes_, owner.guardrail)) continue;
      const auto& spec = guardrails_->spec(owner.guardrail);
      matches_.push_back(ToolCallMatch{call.key, owner.guardrail, spec.name, owner.pattern,
                                       spec.response, hit.to});
      if (spec.response == policy::ResponseAction::kCut) cut_ = true;
    }
  }
}

std::span<const ToolCallMatch> ToolCallScanner::feed(std::string_view call_key,
                                                     std::string_view new_argument_bytes) {
  const std::size_t first_new = matches_.size();
  if (closed_ || indexes_.empty() || new_argument_bytes.empty()) return {};

  auto it =
      std::find_if(calls_.begin(), calls_.end(), [&](const Call& c) { return c.key == call_key; });
  if (it == calls_.end()) {
    hs_stream_t* stream = nullptr;
    if (hs_open_stream(guardrails_->stream_db_.get(), 0, &stream) != HS_SUCCESS)
      throw std::bad_alloc();
    calls_.push_back(Call{std::string(call_key), {}, 0, {}});
    calls_.back().stream.reset(stream);
    it = calls_.end() - 1;
  }
  Call& call = *it;

  const Guardrails::ScratchLease lease(*guardrails_);
  hits_.clear();
  for (std::size_t at = 0; at < new_argument_bytes.size(); at += kMaxScanBytes) {
    const auto piece = new_argument_bytes.substr(at, kMaxScanBytes);
    if (hs_scan_stream(call.stream.get(), piece.data(), static_cast<unsigned>(piece.size()), 0,
                       lease.get(), record_hit<Guardrails::Hit>, &hits_) != HS_SUCCESS)
      throw std::bad_alloc();
  }
  const bool needs_window = std::any_of(hits_.begin(), hits_.end(), [&](const auto& h) {
    return guardrails_->expressions_[h.id].validate;
  });
  std::string_view window;
  std::uint64_t window_offset = call.offset;
  if (needs_window) {
    window_.assign(call.tail).append(new_argument_bytes);
    window = window_;
    window_offset -= call.tail.size();
  }
  collect(call, window, window_offset, lease.get());

  call.offset += new_argument_bytes.size();
  if (guardrails_->has_validators_) {
    if (new_argument_bytes.size() >= kValidationWindow) {
      call.tail.assign(new_argument_bytes.substr(new_argument_bytes.size() - kValidationWindow));
    } else {
      call.tail.append(new_argument_bytes);
      if (call.tail.size() > kValidationWindow)
        call.tail.erase(0, call.tail.size() - kValidationWindow);
    }
  }
  return std::span(matches_).subspan(first_new);
}

std::span<const ToolCallMatch> ToolCallScanner::close() {
  const std::size_t first_new = matches_.size();
  if (closed_) return {};
  closed_ = true;
  if (calls_.empty()) return {};
  const Guardrails::ScratchLease lease(*guardrails_);
  for (auto& call : calls_) {
    hits_.clear();
    if (hs_close_stream(call.stream.release(), lease.get(), record_hit<Guardrails::Hit>, &hits_) !=
        HS_SUCCESS)
      continue;
    collect(call, call.tail, call.offset - call.tail.size(), lease.get());
  }
  return std::span(matches_).subspan(first_new);
}

}  // namespace airlock::control::guardrails
