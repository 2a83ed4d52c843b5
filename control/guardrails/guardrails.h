// Guardrails: pattern scans of prompts (request bodies) before they are forwarded and of the
// model's tool calls as they stream back. A policy's guardrails are compiled once into three
// Hyperscan databases shared by every request:
//  - block mode, HS_FLAG_SINGLEMATCH: the prompt pass every request pays for; it only says
//    whether, and which, patterns match;
//  - block mode with start of match (HS_FLAG_SOM_LEFTMOST), run over the prompt only when the
//    first pass found something, for the spans that redaction and validators need. Start-of-match
//    tracking makes patterns with leading repeats 10-100x slower, so a clean prompt must not pay
//    for it;
//  - stream mode, HS_FLAG_SINGLEMATCH, no start of match (which would also grow stream state),
//    for tool-call arguments that arrive in fragments.
// A prompt is the raw JSON request body, where a string may spell a secret with escapes
// ("AKIA\u0049...", "line\nsk-..."): clients that escape all non-ASCII text send such bodies
// routinely, and an attacker can on purpose. Patterns describe what the user wrote, not its JSON
// spelling, so they are matched against the body's string contents with the escapes decoded
// (json_unescape.h; quotes and structure are kept, separate strings never joined), while match
// offsets are always those of the raw body. A body without a backslash is scanned as it is.
// All guardrails share one database per mode rather than one each: Hyperscan's cost is per byte
// scanned far more than per pattern, so a request to which three guardrails apply costs one pass,
// one scratch and one stream per tool call instead of three. Each expression id maps to the
// (guardrail, pattern) pairs that use it (a builtin set named by two guardrails is compiled once);
// matches of guardrails that do not apply to the request are dropped, which only happens on a
// match and costs nothing on the common, clean path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policy/document.h"

struct hs_database;
struct hs_scratch;
struct hs_stream;

namespace airlock::control::guardrails {

struct PromptMatch {
  std::size_t guardrail_index = 0;  // into the specs given to compile()
  std::string guardrail;            // the guardrail's name
  std::string pattern;              // "provider_keys/openai" or the custom pattern's name
  policy::PromptAction action = policy::PromptAction::kFlag;
  // In the raw body, before redaction: a match is reported at the bytes that spell it, escape
  // sequences included whole.
  std::size_t offset = 0;
  std::size_t length = 0;

  friend bool operator==(const PromptMatch&, const PromptMatch&) = default;
};

struct PromptVerdict {
  std::vector<PromptMatch> matches;  // by offset; overlapping matches of one pattern are merged
  bool blocked = false;              // do not forward the request
  bool redacted = false;             // the body was rewritten
  // A redacting guardrail matched but replacing the span would not leave valid JSON (the span
  // held a quote or backslash outside a whole escape, or the result did not parse), so the
  // request is blocked instead.
  bool redaction_unsafe = false;
};

struct ToolCallMatch {
  std::string call_key;  // as given to feed()
  std::size_t guardrail_index = 0;
  std::string guardrail;
  std::string pattern;
  policy::ResponseAction action = policy::ResponseAction::kFlag;
  // Offset just past the match in the call's argument text. Streams carry no start of match.
  std::uint64_t end_offset = 0;

  friend bool operator==(const ToolCallMatch&, const ToolCallMatch&) = default;
};

class Guardrails {
  struct Key {};

 public:
  // One compiled expression and the (guardrail, pattern) pairs that use it.
  struct Owner {
    std::size_t guardrail;
    std::string pattern;
  };
  struct Expression {
    std::vector<Owner> owners;
    bool (*validate)(std::string_view match) = nullptr;
  };

  // Compiles every pattern of `specs`. On failure returns nullptr and sets *error (if non-null)
  // to e.g. `guardrail "secrets" pattern "aws": Hyperscan: <message>`.
  static std::shared_ptr<const Guardrails> compile(std::span<const policy::GuardrailSpec> specs,
                                                   std::string* error);

  explicit Guardrails(Key) {}
  ~Guardrails();
  Guardrails(const Guardrails&) = delete;
  Guardrails& operator=(const Guardrails&) = delete;

  // Scans `body` for the guardrails at `guardrail_indexes` (those whose "from" selects the caller)
  // and applies their prompt actions; `body` changes only when the verdict says redacted. Safe to
  // call from any number of threads at once.
  PromptVerdict scan_prompt(std::span<const std::size_t> guardrail_indexes,
                            std::string& body) const;

  std::size_t size() const { return specs_.size(); }
  const policy::GuardrailSpec& spec(std::size_t index) const { return specs_[index]; }

 private:
  friend class ToolCallScanner;
  struct DatabaseDeleter {
    void operator()(hs_database* db) const;
  };
  struct ScratchDeleter {
    void operator()(hs_scratch* scratch) const;
  };
  using DatabasePtr = std::unique_ptr<hs_database, DatabaseDeleter>;
  using ScratchPtr = std::unique_ptr<hs_scratch, ScratchDeleter>;

  // A scratch taken from the pool for one scan and returned when the lease ends. Scratch is
  // per concurrent scan; pooling it in the Guardrails (rather than thread_local) ties its life to
  // the databases it was sized for, so a policy reload frees it, and after warm-up no scan
  // allocates one.
  class ScratchLease {
   public:
    explicit ScratchLease(const Guardrails& owner);
    ~ScratchLease();
    ScratchLease(const ScratchLease&) = delete;
    ScratchLease& operator=(const ScratchLease&) = delete;
    hs_scratch* get() const { return scratch_.get(); }

   private:
    const Guardrails& owner_;
    ScratchPtr scratch_;
  };

  // Matches of expression `id` ending at `to` (block mode: starting at `from`).
  struct Hit {
    unsigned id;
    std::uint64_t from;
    std::uint64_t to;
  };

  static bool applies(std::span<const std::size_t> indexes, std::size_t guardrail) {
    for (std::size_t i : indexes)
      if (i == guardrail) return true;
    return false;
  }
  // Whether a block-mode match of `id` ending exactly at the end of `text` passes the
  // expression's validator; stream matches carry no start, so this recovers it.
  bool validate_tail(unsigned id, std::string_view text, hs_scratch* scratch) const;

  std::vector<policy::GuardrailSpec> specs_;
  std::vector<Expression> expressions_;  // indexed by Hyperscan id
  bool has_validators_ = false;
  DatabasePtr detect_db_;  // block mode, no start of match
  DatabasePtr locate_db_;  // block mode, leftmost start of match
  DatabasePtr stream_db_;
  ScratchPtr prototype_;  // never scanned with; cloned for each new pool entry
  mutable std::mutex pool_mutex_;
  mutable std::vector<ScratchPtr> pool_;
};

// Scans the tool calls of one response as their arguments stream in. Not thread-safe: one per
// response. Holds the Guardrails so a policy reload mid-response does not free its databases.
class ToolCallScanner {
 public:
  // `guardrail_indexes`: the guardrails that apply to the caller; those with "response": "off"
  // are ignored.
  ToolCallScanner(std::shared_ptr<const Guardrails> guardrails,
                  std::span<const std::size_t> guardrail_indexes);
  ~ToolCallScanner();
  ToolCallScanner(const ToolCallScanner&) = delete;
  ToolCallScanner& operator=(const ToolCallScanner&) = delete;

  // Scans the next bytes of the decoded argument text of tool call `call_key` (its id, or index
  // when the provider sends no id). Each pattern is reported at most once per call, however the
  // text is split. Returns the matches this call added; the span is valid until the next
  // feed() or close().
  std::span<const ToolCallMatch> feed(std::string_view call_key,
                                      std::string_view new_argument_bytes);

  // Ends every call's stream, reporting matches anchored at the end of the text ("... rm -rf /").
  // Later feed() calls are ignored.
  std::span<const ToolCallMatch> close();

  const std::vector<ToolCallMatch>& matches() const { return matches_; }
  // A guardrail with "response": "cut" matched: stop relaying the response.
  bool cut() const { return cut_; }
  bool active() const { return !indexes_.empty(); }

 private:
  struct StreamDeleter {
    void operator()(hs_stream* stream) const;
  };
  struct Call {
    std::string key;
    std::unique_ptr<hs_stream, StreamDeleter> stream;
    std::uint64_t offset = 0;  // bytes fed so far
    std::string tail;          // last bytes fed, to validate matches that end in the next feed
  };

  // Turns hits_ into matches; `window` holds the call's text from `window_offset` on, as far as
  // validators need it.
  void collect(const Call& call, std::string_view window, std::uint64_t window_offset,
               hs_scratch* scratch);

  std::shared_ptr<const Guardrails> guardrails_;
  std::vector<std::size_t> indexes_;
  std::vector<Call> calls_;
  std::vector<Guardrails::Hit> hits_;  // reused between feeds
  std::string window_;                 // tail + new bytes when validation needs them
  std::vector<ToolCallMatch> matches_;
  bool cut_ = false;
  bool closed_ = false;
};

}  // namespace airlock::control::guardrails
