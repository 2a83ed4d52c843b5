// The request log: exactly one record per request that reached the gateway, written off the
// request path. The interface is the contract between the gateway (writer), the admin API and
// airlockctl (readers); SQLite implements it today, PostgreSQL can implement it later.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/metering/usage.h"

namespace airlock::control {

// Money is integer picodollars (1e-12 USD): per-token prices such as $0.025 per million tokens
// are exact, and int64 still holds $9.2 million.
using Picodollars = int64_t;
inline constexpr Picodollars kPicodollarsPerDollar = 1'000'000'000'000;

struct GuardrailHit {
  std::string guardrail;
  std::string pattern;
  std::string action;  // prompt: flag|redact|block; response: flag|cut
  std::string where;   // "prompt" or "response"

  friend bool operator==(const GuardrailHit&, const GuardrailHit&) = default;
};

struct RequestRecord {
  std::string id;       // "req_" + 24 lowercase hex digits, unique
  int64_t time_ms = 0;  // arrival, Unix epoch milliseconds
  // Identity, from the WireGuard peer that carried the connection.
  std::string user;
  std::string device;
  std::vector<std::string> tags;
  std::vector<std::string> groups;
  std::string peer_key;  // the peer's public key, standard base64
  // Routing; provider/model are empty when the request was refused before they were known.
  std::string provider;  // provider name from the policy
  std::string model;
  std::string api;  // "openai.chat", "openai.responses", "openai.embeddings",
                    // "anthropic.messages", "anthropic.count_tokens", "gemini.generate",
                    // "gemini.stream", "models"
  int status = 0;   // HTTP status sent to the client (200 also for a stream cut later)
  bool streamed = false;
  // Tokens, normalised as in control/metering/usage.h.
  uint64_t input_tokens = 0;
  uint64_t output_tokens = 0;
  uint64_t cache_read_tokens = 0;
  uint64_t cache_write_tokens = 0;
  uint64_t reasoning_tokens = 0;
  bool usage_complete = false;       // false: partial (cut stream, client gone, failure)
  bool client_disconnected = false;  // the client went away before the response ended
  std::optional<Picodollars> cost;   // nullopt: no price known for the model
  int64_t ttfb_us = -1;              // first response byte to the client; -1 if none
  int64_t duration_us = 0;
  std::string error;  // empty on success; never contains a secret
  std::vector<ToolCall> tool_calls;
  // The agent session the request belongs to (see control/metering/session.h) and the tool
  // results the client sent back in it.
  std::string session_id;
  std::vector<ToolResult> tool_results;
  // Every guardrail match, e.g. {"secrets", "provider_keys/openai", "redact", "prompt"}.
  std::vector<GuardrailHit> guardrail_hits;
  // Stored only when the policy asks for bodies, cut at its size cap.
  std::optional<std::string> request_body;
  std::optional<std::string> response_body;
};

struct RequestQuery {
  std::optional<std::string> user;
  std::optional<std::string> model;
  std::optional<int64_t> since_ms;  // inclusive
  std::optional<int64_t> until_ms;  // exclusive
  // Newest first. Pagination by keyset: pass the last id of a page as `before_id`.
  std::optional<std::string> before_id;
  uint32_t limit = 50;  // at most 1000
};

enum class UsageGroup { kUser, kModel, kDay };

struct UsageQuery {
  UsageGroup group_by = UsageGroup::kUser;
  std::optional<std::string> user;
  std::optional<int64_t> since_ms;
  std::optional<int64_t> until_ms;
};

struct UsageTotal {
  std::string key;  // user, model, or UTC day "YYYY-MM-DD"
  uint64_t requests = 0;
  uint64_t input_tokens = 0;
  uint64_t output_tokens = 0;
  uint64_t cache_read_tokens = 0;
  uint64_t cache_write_tokens = 0;
  uint64_t reasoning_tokens = 0;
  Picodollars cost = 0;  // sum of known costs
};

// Sessions with at least one request in [since_ms, until_ms); each summary covers the whole
// session. Most recently active first.
struct SessionQuery {
  std::optional<std::string> user;
  std::optional<int64_t> since_ms;  // inclusive
  std::optional<int64_t> until_ms;  // exclusive
  uint32_t limit = 50;              // at most 1000
};

struct SessionSummary {
  std::string id;
  std::string user;
  std::string device;  // the (alphabetically last) device when a session used several
  int64_t first_ms = 0;
  int64_t last_ms = 0;
  uint64_t requests = 0;
  uint64_t tool_calls = 0;
  uint64_t input_tokens = 0;
  uint64_t output_tokens = 0;
  uint64_t cache_read_tokens = 0;
  uint64_t cache_write_tokens = 0;
  Picodollars cost = 0;  // sum of known costs
};

// A tool call's place in the log, for paging: the request that returned it and its index there.
struct ToolCallCursor {
  std::string request_id;
  uint32_t seq = 0;
};

// The newest `limit` matching tool calls (older than `before` when given).
struct ToolCallQuery {
  std::optional<std::string> user;
  std::optional<std::string> session;
  std::optional<std::string> name;
  std::optional<int64_t> since_ms;  // inclusive
  std::optional<ToolCallCursor> before;
  uint32_t limit = 100;  // at most 1000
};

struct ToolCallRow {
  ToolCallCursor position;
  int64_t time_ms = 0;  // of the request whose response made the call
  std::string user;
  std::string device;
  std::string session_id;
  std::string model;
  ToolCall call;
  // The result, once a later request of the same user carried it: matched by call id, or for
  // calls without one (Gemini) by the first later result of the same name in the same session.
  std::optional<ToolResult> result;
  std::string result_request_id;
  int64_t result_time_ms = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  // Never blocks on I/O and never fails the request: the record is queued and written in a
  // batch by the store's writer thread.
  virtual void append(RequestRecord record) = 0;
  // Blocks until every record appended before the call is durable. Called on shutdown.
  virtual void flush() = 0;
  // Readers see flushed records; each call flushes first so a caller reads its own writes.
  // On failure these set *error and return nothing; an unknown `before_id` is such an error.
  // A page carries every field but tool_calls, tool_results and the bodies; request(id) returns
  // all of them.
  virtual std::vector<RequestRecord> requests(const RequestQuery& query, std::string* error) = 0;
  virtual std::optional<RequestRecord> request(std::string_view id, std::string* error) = 0;
  virtual std::vector<UsageTotal> usage(const UsageQuery& query, std::string* error) = 0;
  virtual std::vector<SessionSummary> sessions(const SessionQuery& query, std::string* error) = 0;
  // Grouped by session (user and session id), sessions in the order of their first call in the
  // page, each session's calls in time order.
  virtual std::vector<ToolCallRow> tool_calls(const ToolCallQuery& query, std::string* error) = 0;
};

// Opens (creating if needed) the SQLite database at `path` in WAL mode and starts its writer.
std::unique_ptr<Store> open_sqlite_store(const std::string& path, std::string* error);

}  // namespace airlock::control
