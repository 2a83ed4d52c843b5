#include "control/admin/admin_api.h"

#include <charconv>
#include <chrono>
#include <limits>
#include <map>
#include <tuple>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "control/admin/policy_text.h"
#include "dataplane/stats.h"
#include "policy/policy.h"

namespace airlock::control::admin {

using nlohmann::json;
namespace bhttp = boost::beast::http;

struct AdminApi::Reply {
  bhttp::status status = bhttp::status::ok;
  std::string body;   // JSON unless content_type says otherwise
  std::string allow;  // Allow header of a 405
  std::string content_type = "application/json";
};

namespace {

using Reply = AdminApi::Reply;

// Logged bodies, tool arguments and error texts may hold any bytes; invalid UTF-8 is replaced
// rather than failing the whole answer.
std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

Reply ok(const json& body) {
  return {bhttp::status::ok, dump(body), {}, "application/json"};
}

Reply error_reply(bhttp::status status, std::string_view message) {
  return {status, dump(json{{"error", message}}), {}, "application/json"};
}

Reply bad_request(std::string_view message) {
  return error_reply(bhttp::status::bad_request, message);
}

// ---- Times ----

int64_t days_from_civil(std::chrono::year_month_day ymd) {
  return std::chrono::sys_days(ymd).time_since_epoch().count();
}

bool digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

// ---- Query strings ----

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      unsigned v = 0;
      if (i + 2 >= s.size()) return std::nullopt;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec != std::errc() || p != s.data() + i + 3) return std::nullopt;
      out.push_back(static_cast<char>(v));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Parameters by name; nullopt with *error on a malformed, repeated or unknown parameter.
std::optional<std::map<std::string, std::string>> parse_query(
    std::string_view query, std::initializer_list<std::string_view> allowed, std::string* error) {
  std::map<std::string, std::string> params;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    auto name = percent_decode(part.substr(0, eq));
    auto value = percent_decode(eq == std::string_view::npos ? "" : part.substr(eq + 1));
    if (!name || !value) {
      *error = "malformed query string";
      return std::nullopt;
    }
    if (std::find(allowed.begin(), allowed.end(), *name) == allowed.end()) {
      *error = "unknown query parameter \"" + *name + "\"";
      return std::nullopt;
    }
    if (!params.emplace(*name, *value).second) {
      *error = "query parameter \"" + *name + "\" given twice";
      return std::nullopt;
    }
  }
  return params;
}

bool take_time(const std::map<std::string, std::string>& params, const std::string& name,
               std::optional<int64_t>* out, std::string* error) {
  auto it = params.find(name);
  if (it == params.end()) return true;
  *out = parse_time(it->second);
  if (!*out) *error = name + ": expected Unix milliseconds or an RFC 3339 time";
  return out->has_value();
}

bool take_text(const std::map<std::string, std::string>& params, const std::string& name,
               std::optional<std::string>* out, std::string* error) {
  auto it = params.find(name);
  if (it == params.end()) return true;
  if (it->second.empty()) {
    *error = name + ": must not be empty";
    return false;
  }
  *out = it->second;
  return true;
}

// ---- JSON of records ----

json cost_json(const std::optional<Picodollars>& cost) {
  return cost ? json(*cost) : json(nullptr);
}

json record_json(const RequestRecord& r, bool with_bodies) {
  json tool_calls = json::array();
  for (const ToolCall& call : r.tool_calls) {
    tool_calls.push_back({{"id", call.id}, {"name", call.name}, {"arguments", call.arguments}});
  }
  json tool_results = json::array();
  for (const ToolResult& result : r.tool_results) {
    tool_results.push_back({{"call_id", result.call_id},
                            {"name", result.name},
                            {"content", result.content},
                            {"is_error", result.is_error}});
  }
  json guardrails = json::array();
  for (const GuardrailHit& hit : r.guardrail_hits) {
    guardrails.push_back({{"guardrail", hit.guardrail},
                          {"pattern", hit.pattern},
                          {"action", hit.action},
                          {"where", hit.where}});
  }
  json j = {
      {"id", r.id},
      {"time_ms", r.time_ms},
      {"time", format_time(r.time_ms)},
      {"user", r.user},
      {"device", r.device},
      {"tags", r.tags},
      {"groups", r.groups},
      {"peer_key", r.peer_key},
      {"provider", r.provider},
      {"model", r.model},
      {"api", r.api},
      {"status", r.status},
      {"streamed", r.streamed},
      {"input_tokens", r.input_tokens},
      {"output_tokens", r.output_tokens},
      {"cache_read_tokens", r.cache_read_tokens},
      {"cache_write_tokens", r.cache_write_tokens},
      {"reasoning_tokens", r.reasoning_tokens},
      {"usage_complete", r.usage_complete},
      {"client_disconnected", r.client_disconnected},
      {"cost_picodollars", cost_json(r.cost)},
      {"cost_dollars", r.cost ? json(exact_dollars(*r.cost)) : json(nullptr)},
      {"ttfb_us", r.ttfb_us},
      {"duration_us", r.duration_us},
      {"error", r.error},
      {"tool_calls", std::move(tool_calls)},
      {"session_id", r.session_id},
      {"tool_results", std::move(tool_results)},
      {"guardrails", std::move(guardrails)},
  };
  if (with_bodies) {
    j["request_body"] = r.request_body ? json(*r.request_body) : json(nullptr);
    j["response_body"] = r.response_body ? json(*r.response_body) : json(nullptr);
  }
  return j;
}

bool take_limit(const std::map<std::string, std::string>& params, uint32_t* out,
                std::string* error) {
  auto it = params.find("limit");
  if (it == params.end()) return true;
  auto limit = policy::parse_decimal(it->second, 1000);
  if (!limit || *limit == 0) {
    *error = "limit: expected a number from 1 to 1000";
    return false;
  }
  *out = static_cast<uint32_t>(*limit);
  return true;
}

// "REQUEST_ID:SEQ", the position of a tool call in the log.
std::optional<ToolCallCursor> parse_cursor(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  uint32_t seq = 0;
  const std::string_view digits = text.substr(colon + 1);
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), seq);
  if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size()) {
    return std::nullopt;
  }
  return ToolCallCursor{std::string(text.substr(0, colon)), seq};
}

std::string cursor_text(const ToolCallCursor& cursor) {
  return cursor.request_id + ":" + std::to_string(cursor.seq);
}

json session_json(const SessionSummary& s) {
  return {{"id", s.id},
          {"user", s.user},
          {"device", s.device},
          {"first_ms", s.first_ms},
          {"first", format_time(s.first_ms)},
          {"last_ms", s.last_ms},
          {"last", format_time(s.last_ms)},
          {"requests", s.requests},
          {"tool_calls", s.tool_calls},
          {"input_tokens", s.input_tokens},
          {"output_tokens", s.output_tokens},
          {"cache_read_tokens", s.cache_read_tokens},
          {"cache_write_tokens", s.cache_write_tokens},
          {"cost_picodollars", s.cost},
          {"cost_dollars", exact_dollars(s.cost)}};
}

json tool_call_json(const ToolCallRow& t) {
  json result = nullptr;
  if (t.result) {
    result = {{"request_id", t.result_request_id},
              {"time_ms", t.result_time_ms},
              {"time", format_time(t.result_time_ms)},
              {"content", t.result->content},
              {"is_error", t.result->is_error}};
  }
  return {{"cursor", cursor_text(t.position)},
          {"request_id", t.position.request_id},
          {"seq", t.position.seq},
          {"time_ms", t.time_ms},
          {"time", format_time(t.time_ms)},
          {"user", t.user},
          {"device", t.device},
          {"session_id", t.session_id},
          {"model", t.model},
          {"call_id", t.call.id},
          {"name", t.call.name},
          {"arguments", t.call.arguments},
          {"result", std::move(result)}};
}

// ---- Budgets and webhooks ----

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view window_name(policy::BudgetWindow window) {
  switch (window) {
    case policy::BudgetWindow::kMinute:
      return "minute";
    case policy::BudgetWindow::kHour:
      return "hour";
    case policy::BudgetWindow::kDay:
      return "day";
    case policy::BudgetWindow::kWeek:
      return "week";
    case policy::BudgetWindow::kMonth:
      return "month";
    case policy::BudgetWindow::kBucket:
      break;
  }
  return "bucket";
}

json dollars_json(const std::optional<Picodollars>& amount) {
  return amount ? json(exact_dollars(*amount)) : json(nullptr);
}

json balance_json(const budget::Balance& b) {
  const bool bucket = b.window == policy::BudgetWindow::kBucket;
  const size_t bar = b.balance_key.find('|');
  return {{"budget", b.budget},
          {"key", bar == std::string::npos ? b.balance_key : b.balance_key.substr(bar + 1)},
          {"window", window_name(b.window)},
          {"window_start", bucket ? json(nullptr) : json(format_time(b.window_start_ms))},
          {"window_end", bucket ? json(nullptr) : json(format_time(b.window_end_ms))},
          {"limit_usd", dollars_json(b.limit_usd)},
          {"spent_usd", exact_dollars(b.spent_usd)},
          {"reserved_usd", exact_dollars(b.reserved_usd)},
          {"remaining_usd", dollars_json(b.remaining_usd)},
          {"limit_tokens", b.limit_tokens ? json(*b.limit_tokens) : json(nullptr)},
          {"spent_tokens", b.spent_tokens},
          {"reserved_tokens", b.reserved_tokens},
          {"remaining_tokens", b.remaining_tokens ? json(*b.remaining_tokens) : json(nullptr)}};
}

// The balance kinds Document::budgets_for charges: "user:NAME", "peer:B64KEY", "tag:NAME",
// "group:NAME" or "shared". Anything else would credit a balance no request is ever charged to.
bool is_balance_key(std::string_view key) {
  if (key == "shared") return true;
  for (std::string_view kind : {"user:", "peer:", "tag:", "group:"}) {
    if (key.starts_with(kind)) return policy::is_valid_name(key.substr(kind.size()));
  }
  return false;
}

// Dollars as exact picodollars from "5", "5.25" or 0.000001 (a JSON string or number): the
// decimal text itself is converted, never a double, so no amount is rounded.
std::optional<Picodollars> parse_dollars(const json& value) {
  constexpr size_t kMaxDecimals = 12;
  std::string text;
  if (value.is_string()) {
    text = value.get<std::string>();
  } else if (value.is_number()) {
    text = value.dump();
  } else {
    return std::nullopt;
  }
  const size_t point = text.find('.');
  const std::string_view whole = std::string_view(text).substr(0, point);
  const std::string_view fraction =
      point == std::string::npos ? std::string_view() : std::string_view(text).substr(point + 1);
  const auto digits_only = [](std::string_view part) {
    return std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (whole.empty() || !digits_only(whole) || !digits_only(fraction) ||
      (point != std::string::npos && fraction.empty()) || fraction.size() > kMaxDecimals) {
    return std::nullopt;
  }
  std::string picos(whole);
  picos += fraction;
  picos.append(kMaxDecimals - fraction.size(), '0');
  Picodollars amount = 0;
  for (char digit : picos) {
    if (__builtin_mul_overflow(amount, 10, &amount) ||
        __builtin_add_overflow(amount, digit - '0', &amount)) {
      return std::nullopt;
    }
  }
  return amount;
}

bool take_string(const json& body, const char* name, std::string* out, std::string* error) {
  auto it = body.find(name);
  if (it == body.end() || !it->is_string() || it->get<std::string>().empty()) {
    *error = std::string(name) + ": expected a non-empty string";
    return false;
  }
  *out = it->get<std::string>();
  return true;
}

json delivery_json(const events::DeliveryAttempt& d) {
  return {{"seq", d.seq},
          {"event_id", d.event_id},
          {"event_type", d.event_type},
          {"url", d.url},
          {"attempt", d.attempt},
          {"status", d.status},
          {"outcome", events::delivery_outcome_name(d.outcome)},
          {"error", d.error},
          {"time_ms", d.time_ms},
          {"time", format_time(d.time_ms)},
          {"latency_ms", d.latency_ms}};
}

std::string prefix_text(const policy::PrefixSpec& spec) {
  if (auto prefix = policy::prefix_of(spec)) return policy::format_prefix(*prefix);
  const auto* text = std::get_if<std::string>(&spec);
  return text ? *text : "invalid";
}

std::string key_text(const policy::KeySpec& spec) {
  if (const auto* text = std::get_if<std::string>(&spec)) return *text;
  return policy::encode_key_base64(std::get<policy::Key>(spec));
}

// Standard base64 public key → the data plane's record for it.
std::map<std::string, json> peer_counters(const std::string& instance, std::string* error) {
  std::map<std::string, json> by_key;
  auto reader = dp::StatsReader::open(instance + "-stats", error);
  if (!reader) return by_key;
  json stats = json::parse(dp::to_json(reader->snapshot()), nullptr, false);
  if (stats.is_discarded()) {
    *error = "unreadable data plane counters";
    return by_key;
  }
  for (json& peer : stats["peers"]) by_key[peer["public_key"].get<std::string>()] = peer;
  return by_key;
}

std::string_view sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

bool host_is_loopback(std::string_view host) {
  if (host.starts_with('[')) {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    host = host.substr(1, close - 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host == "localhost") return true;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(std::string(host), ec);
  return !ec && address.is_loopback();
}

// Runs `work` on `pool` and resumes the calling coroutine on its own executor with the result.
template <typename Work>
asio::awaitable<Reply> on_pool(asio::thread_pool& pool, Work work) {
  auto initiation = [&pool, work = std::move(work)](auto handler) mutable {
    auto guard = asio::make_work_guard(asio::get_associated_executor(handler));
    asio::post(pool, [work = std::move(work), handler = std::move(handler),
                      guard = std::move(guard)]() mutable {
      Reply reply = work();
      auto executor = asio::get_associated_executor(handler);
      asio::post(executor, [handler = std::move(handler), reply = std::move(reply)]() mutable {
        std::move(handler)(std::move(reply));
      });
    });
  };
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(Reply)>(
      std::move(initiation), asio::use_awaitable);
}

}  // namespace

std::optional<int64_t> parse_time(std::string_view s) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t ms = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), ms);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return ms;
  }
  int year, month, day;
  if (!digits(s, 0, 4, &year) || s.size() < 10 || s[4] != '-' || !digits(s, 5, 2, &month) ||
      s[7] != '-' || !digits(s, 8, 2, &day)) {
    return std::nullopt;
  }
  std::chrono::year_month_day ymd{std::chrono::year(year),
                                  std::chrono::month(static_cast<unsigned>(month)),
                                  std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return std::nullopt;
  int64_t ms = days_from_civil(ymd) * 86'400'000;
  if (s.size() == 10) return ms;

  int hour, minute, second;
  if (s.size() < 20 || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s, 11, 2, &hour) ||
      s[13] != ':' || !digits(s, 14, 2, &minute) || s[16] != ':' || !digits(s, 17, 2, &second) ||
      hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  ms += ((hour * 60 + minute) * 60 + second) * int64_t{1000};
  size_t i = 19;
  if (s[i] == '.') {
    size_t start = ++i;
    int frac_ms = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (i - start < 3) frac_ms = frac_ms * 10 + (s[i] - '0');
      ++i;
    }
    if (i == start) return std::nullopt;
    for (size_t n = i - start; n < 3; ++n) frac_ms *= 10;
    ms += frac_ms;
  }
  std::string_view zone = s.substr(i);
  if (zone == "Z" || zone == "z") return ms;
  int off_h, off_m;
  if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-') || !digits(zone, 1, 2, &off_h) ||
      zone[3] != ':' || !digits(zone, 4, 2, &off_m) || off_h > 23 || off_m > 59) {
    return std::nullopt;
  }
  int64_t offset_ms = (off_h * 60 + off_m) * int64_t{60'000};
  return zone[0] == '+' ? ms - offset_ms : ms + offset_ms;
}

std::string format_time(int64_t unix_ms) {
  using namespace std::chrono;
  sys_time<milliseconds> t{milliseconds(unix_ms)};
  auto day = floor<days>(t);
  year_month_day ymd{day};
  auto in_day = t - day;
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()),
                static_cast<int>(duration_cast<hours>(in_day).count()),
                static_cast<int>(duration_cast<minutes>(in_day).count() % 60),
                static_cast<int>(duration_cast<seconds>(in_day).count() % 60),
                static_cast<int>(in_day.count() % 1000));
  return buf;
}

std::string exact_dollars(Picodollars amount) {
  std::string sign = amount < 0 ? "-" : "";
  uint64_t magnitude =
      amount < 0 ? 0 - static_cast<uint64_t>(amount) : static_cast<uint64_t>(amount);
  uint64_t whole = magnitude / kPicodollarsPerDollar;
  std::string frac = std::to_string(magnitude % kPicodollarsPerDollar);
  frac.insert(0, 12 - frac.size(), '0');
  while (frac.size() > 2 && frac.back() == '0') frac.pop_back();
  return sign + std::to_string(whole) + "." + frac;
}

// ---- AdminApi ----

AdminApi::AdminApi(AdminOptions options, Store& store, PolicyManager& policies)
    : options_(std::move(options)), store_(store), policies_(policies) {}

AdminApi::~AdminApi() {
  stop();
  blocking_.join();
}

std::unique_ptr<AdminApi> AdminApi::start(asio::io_context& io, AdminOptions options, Store& store,
                                          PolicyManager& policies, std::string* error) {
  if (!options.listen.address().is_loopback()) {
    *error = "admin API: refusing to listen on " + options.listen.address().to_string() +
             ", which is not a loopback address (the admin API has no authentication)";
    return nullptr;
  }
  std::unique_ptr<AdminApi> api(new AdminApi(std::move(options), store, policies));
  AdminApi* self = api.get();
  api->server_ = http::Server::listen(
      io, api->options_.listen, api->options_.server,
      [self](http::Request& request, http::BodyStatus body_status, const http::ClientInfo&,
             http::ResponseWriter& writer) { return self->handle(request, body_status, writer); },
      error);
  if (!api->server_) return nullptr;
  return api;
}

uint16_t AdminApi::port() const {
  return server_->port();
}

void AdminApi::stop() {
  if (server_) server_->stop();
}

asio::awaitable<void> AdminApi::handle(http::Request& request, http::BodyStatus body_status,
                                       http::ResponseWriter& writer) {
  Reply reply;
  if (body_status == http::BodyStatus::kTooLarge) {
    reply = error_reply(bhttp::status::payload_too_large, "request body too large");
  } else if (request.find(bhttp::field::origin) != request.end()) {
    reply = error_reply(bhttp::status::forbidden, "requests from web pages are refused");
  } else if (auto host = request.find(bhttp::field::host);
             host != request.end() && !host_is_loopback(sv(host->value()))) {
    reply = error_reply(bhttp::status::forbidden, "Host must be a loopback address");
  } else {
    // Named, not written inside the co_await: GCC 12 destroys a capturing lambda temporary in a
    // co_await expression twice.
    auto work = [this, &request] {
      try {
        return route(request);
      } catch (const std::exception& e) {
        return error_reply(bhttp::status::internal_server_error, e.what());
      }
    };
    reply = co_await on_pool(blocking_, std::move(work));
  }
  http::Response response{reply.status, request.version()};
  response.set(bhttp::field::content_type, reply.content_type);
  response.set(bhttp::field::cache_control, "no-store");
  if (!reply.allow.empty()) response.set(bhttp::field::allow, reply.allow);
  response.keep_alive(request.keep_alive() && body_status == http::BodyStatus::kComplete);
  // JSON gets a final newline for terminals; other bodies (metrics) end as their producer wrote
  // them.
  const bool json_body = reply.content_type == "application/json";
  response.body() = std::move(reply.body);
  if (json_body) response.body() += "\n";
  response.prepare_payload();
  co_await writer.write(std::move(response));
}

AdminApi::Reply AdminApi::route(const http::Request& request) {
  std::string_view target = sv(request.target());
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  bool get = request.method() == bhttp::verb::get;
  auto method_not_allowed = [](std::string allow) {
    Reply r = error_reply(bhttp::status::method_not_allowed, "method not allowed");
    r.allow = std::move(allow);
    return r;
  };

  constexpr std::string_view kRequestsPrefix = "/v1/admin/requests/";
  if (path == "/v1/admin/requests") return get ? get_requests(query) : method_not_allowed("GET");
  if (path.starts_with(kRequestsPrefix) && path.size() > kRequestsPrefix.size()) {
    if (!get) return method_not_allowed("GET");
    if (!query.empty()) return bad_request("no query parameters here");
    auto id = percent_decode(path.substr(kRequestsPrefix.size()));
    if (!id) return bad_request("malformed request id");
    return get_request(*id);
  }
  if (path == "/v1/admin/usage") return get ? get_usage(query) : method_not_allowed("GET");
  if (path == "/v1/admin/sessions") return get ? get_sessions(query) : method_not_allowed("GET");
  if (path == "/v1/admin/tools") return get ? get_tools(query) : method_not_allowed("GET");
  if (path == "/v1/admin/policy") {
    if (get) return query.empty() ? get_policy() : bad_request("no query parameters here");
    if (request.method() == bhttp::verb::post) return post_policy(query, request.body());
    return method_not_allowed("GET, POST");
  }
  if (path == "/v1/admin/stats") return get ? get_stats(query) : method_not_allowed("GET");
  if (path == "/v1/admin/peers" || path == "/v1/admin/hub") {
    if (!get) return method_not_allowed("GET");
    if (!query.empty()) return bad_request("no query parameters here");
    return path == "/v1/admin/peers" ? get_peers() : get_hub();
  }
  if (path == "/v1/admin/budgets") return get ? get_budgets(query) : method_not_allowed("GET");
  if (path == "/v1/admin/budgets/add" || path == "/v1/admin/budgets/reset") {
    if (request.method() != bhttp::verb::post) return method_not_allowed("POST");
    if (!query.empty()) return bad_request("no query parameters here");
    return post_budget(path.substr(path.rfind('/') + 1), request.body());
  }
  if (path == "/v1/admin/webhooks") return get ? get_webhooks(query) : method_not_allowed("GET");
  if (path == "/metrics") {
    if (!get) return method_not_allowed("GET");
    if (!query.empty()) return bad_request("no query parameters here");
    return get_metrics();
  }
  return error_reply(bhttp::status::not_found, "no such admin endpoint");
}

AdminApi::Reply AdminApi::get_requests(std::string_view query_text) {
  std::string error;
  auto params =
      parse_query(query_text, {"user", "model", "since", "until", "before", "limit"}, &error);
  if (!params) return bad_request(error);
  RequestQuery query;
  if (!take_text(*params, "user", &query.user, &error) ||
      !take_text(*params, "model", &query.model, &error) ||
      !take_time(*params, "since", &query.since_ms, &error) ||
      !take_time(*params, "until", &query.until_ms, &error) ||
      !take_text(*params, "before", &query.before_id, &error)) {
    return bad_request(error);
  }
  if (!take_limit(*params, &query.limit, &error)) return bad_request(error);
  auto records = store_.requests(query, &error);
  if (!error.empty()) return error_reply(bhttp::status::internal_server_error, error);
  json list = json::array();
  for (const RequestRecord& r : records) list.push_back(record_json(r, false));
  json next = records.size() == query.limit ? json(records.back().id) : json(nullptr);
  return ok({{"requests", std::move(list)}, {"next_before", std::move(next)}});
}

AdminApi::Reply AdminApi::get_request(std::string_view id) {
  std::string error;
  auto record = store_.request(id, &error);
  if (!error.empty()) return error_reply(bhttp::status::internal_server_error, error);
  if (!record) return error_reply(bhttp::status::not_found, "no request " + std::string(id));
  return ok(record_json(*record, true));
}

AdminApi::Reply AdminApi::get_usage(std::string_view query_text) {
  std::string error;
  auto params = parse_query(query_text, {"group_by", "user", "since", "until"}, &error);
  if (!params) return bad_request(error);
  UsageQuery query;
  std::string group_by = "user";
  if (auto it = params->find("group_by"); it != params->end()) group_by = it->second;
  if (group_by == "user") {
    query.group_by = UsageGroup::kUser;
  } else if (group_by == "model") {
    query.group_by = UsageGroup::kModel;
  } else if (group_by == "day") {
    query.group_by = UsageGroup::kDay;
  } else {
    return bad_request("group_by: expected user, model or day");
  }
  if (!take_text(*params, "user", &query.user, &error) ||
      !take_time(*params, "since", &query.since_ms, &error) ||
      !take_time(*params, "until", &query.until_ms, &error)) {
    return bad_request(error);
  }
  auto totals = store_.usage(query, &error);
  if (!error.empty()) return error_reply(bhttp::status::internal_server_error, error);
  json list = json::array();
  for (const UsageTotal& t : totals) {
    list.push_back({{"key", t.key},
                    {"requests", t.requests},
                    {"input_tokens", t.input_tokens},
                    {"output_tokens", t.output_tokens},
                    {"cache_read_tokens", t.cache_read_tokens},
                    {"cache_write_tokens", t.cache_write_tokens},
                    {"reasoning_tokens", t.reasoning_tokens},
                    {"cost_picodollars", t.cost},
                    {"cost_dollars", exact_dollars(t.cost)}});
  }
  return ok({{"group_by", group_by}, {"usage", std::move(list)}});
}

AdminApi::Reply AdminApi::get_sessions(std::string_view query_text) {
  std::string error;
  auto params = parse_query(query_text, {"user", "since", "until", "limit"}, &error);
  if (!params) return bad_request(error);
  SessionQuery query;
  if (!take_text(*params, "user", &query.user, &error) ||
      !take_time(*params, "since", &query.since_ms, &error) ||
      !take_time(*params, "until", &query.until_ms, &error) ||
      !take_limit(*params, &query.limit, &error)) {
    return bad_request(error);
  }
  auto sessions = store_.sessions(query, &error);
  if (!error.empty()) return error_reply(bhttp::status::internal_server_error, error);
  json list = json::array();
  for (const SessionSummary& s : sessions) list.push_back(session_json(s));
  return ok({{"sessions", std::move(list)}});
}

AdminApi::Reply AdminApi::get_tools(std::string_view query_text) {
  std::string error;
  auto params =
      parse_query(query_text, {"user", "session", "name", "since", "before", "limit"}, &error);
  if (!params) return bad_request(error);
  ToolCallQuery query;
  std::optional<std::string> before;
  if (!take_text(*params, "user", &query.user, &error) ||
      !take_text(*params, "session", &query.session, &error) ||
      !take_text(*params, "name", &query.name, &error) ||
      !take_time(*params, "since", &query.since_ms, &error) ||
      !take_text(*params, "before", &before, &error) ||
      !take_limit(*params, &query.limit, &error)) {
    return bad_request(error);
  }
  if (before) {
    query.before = parse_cursor(*before);
    if (!query.before) return bad_request("before: expected REQUEST_ID:SEQ");
  }
  auto rows = store_.tool_calls(query, &error);
  if (!error.empty()) return error_reply(bhttp::status::internal_server_error, error);
  json list = json::array();
  const ToolCallRow* oldest = nullptr;
  for (const ToolCallRow& t : rows) {
    list.push_back(tool_call_json(t));
    const auto order = [](const ToolCallRow& r) {
      return std::tie(r.time_ms, r.position.request_id, r.position.seq);
    };
    if (!oldest || order(t) < order(*oldest)) oldest = &t;
  }
  json next =
      rows.size() == query.limit && oldest ? json(cursor_text(oldest->position)) : json(nullptr);
  return ok({{"tool_calls", std::move(list)}, {"next_before", std::move(next)}});
}

AdminApi::Reply AdminApi::get_peers() {
  auto active = policies_.active();
  json result;
  std::map<std::string, json> counters;
  if (!options_.stats_instance.empty()) {
    std::string error;
    counters = peer_counters(options_.stats_instance, &error);
    if (!error.empty()) result["stats_error"] = error;
  }
  json peers = json::array();
  if (active) {
    const policy::Document& doc = *active->document;
    std::vector<policy::Identity> identities = doc.identities();
    for (size_t i = 0; i < identities.size() && i < doc.peers.size(); ++i) {
      const policy::Identity& id = identities[i];
      std::string key = policy::encode_key_base64(id.public_key);
      json allowed = json::array();
      for (const auto& prefix : doc.peers[i].allowed_ips) allowed.push_back(prefix_text(prefix));
      json peer = {{"user", id.user},       {"device", id.device},
                   {"tags", id.tags},       {"groups", id.groups},
                   {"public_key", key},     {"allowed_ips", std::move(allowed)},
                   {"endpoint", nullptr},   {"last_handshake_unix_ns", nullptr},
                   {"rx_packets", nullptr}, {"rx_bytes", nullptr},
                   {"tx_packets", nullptr}, {"tx_bytes", nullptr}};
      if (auto it = counters.find(key); it != counters.end()) {
        for (const char* field : {"endpoint", "last_handshake_unix_ns", "rx_packets", "rx_bytes",
                                  "tx_packets", "tx_bytes"}) {
          peer[field] = it->second[field];
        }
      }
      peers.push_back(std::move(peer));
    }
  }
  result["policy_version"] = active ? json(active->version) : json(nullptr);
  result["peers"] = std::move(peers);
  return ok(result);
}

AdminApi::Reply AdminApi::get_stats(std::string_view query_text) {
  std::string error;
  auto params = parse_query(query_text, {"format"}, &error);
  if (!params) return bad_request(error);
  std::string format = params->contains("format") ? params->at("format") : "json";
  if (format != "json" && format != "table") return bad_request("format: expected json or table");
  if (options_.stats_instance.empty()) {
    return error_reply(bhttp::status::not_found, "no data plane instance is configured for stats");
  }
  auto reader = dp::StatsReader::open(options_.stats_instance + "-stats", &error);
  if (!reader) {
    return error_reply(bhttp::status::service_unavailable,
                       "data plane " + options_.stats_instance + ": " + error);
  }
  dp::StatsSnapshot snapshot = reader->snapshot();
  if (format == "table") return ok({{"table", dp::to_table(snapshot)}});
  return {bhttp::status::ok, dp::to_json(snapshot), {}};
}

AdminApi::Reply AdminApi::get_policy() {
  auto active = policies_.active();
  if (!active) return error_reply(bhttp::status::not_found, "no policy is active");
  std::vector<std::string> secrets;
  for (const policy::PeerSpec& peer : active->document->peers) {
    if (peer.preshared_key) secrets.push_back(key_text(*peer.preshared_key));
  }
  return ok({{"version", active->version},
             {"file", active->file_name},
             {"text", redact_preshared_keys(active->text, secrets)}});
}

AdminApi::Reply AdminApi::post_policy(std::string_view query_text, const std::string& body) {
  std::string error;
  auto params = parse_query(query_text, {"file"}, &error);
  if (!params) return bad_request(error);
  std::string file = "policy.json";
  if (auto it = params->find("file"); it != params->end() && !it->second.empty()) file = it->second;
  ApplyResult result = policies_.apply(body, file);
  switch (result.error) {
    case ApplyResult::Error::kNone:
      return ok({{"version", result.version}});
    case ApplyResult::Error::kInvalid:
    case ApplyResult::Error::kNotNewer:
      return bad_request(result.message);
    case ApplyResult::Error::kDataPlane:
      return error_reply(bhttp::status::bad_gateway, result.message);
    case ApplyResult::Error::kPersist:
      break;
  }
  return error_reply(bhttp::status::internal_server_error, result.message);
}

AdminApi::Reply AdminApi::get_hub() {
  json gateway = json::array();
  for (const std::string& prefix : options_.hub.gateway) gateway.push_back(prefix);
  if (gateway.empty()) {
    if (auto active = policies_.active()) {
      for (const policy::IpPrefix& prefix : active->document->gateway) {
        gateway.push_back(policy::format_prefix(prefix));
      }
    }
  }
  return ok({{"public_key", options_.hub.public_key},
             {"endpoint", options_.hub.endpoint},
             {"gateway", std::move(gateway)}});
}

AdminApi::Reply AdminApi::get_budgets(std::string_view query_text) {
  std::string error;
  auto params = parse_query(query_text, {"budget", "key"}, &error);
  if (!params) return bad_request(error);
  std::optional<std::string> budget;
  std::optional<std::string> key;
  if (!take_text(*params, "budget", &budget, &error) || !take_text(*params, "key", &key, &error)) {
    return bad_request(error);
  }
  if (!options_.ledger) return error_reply(bhttp::status::not_found, "budgets are not enabled");
  // With the budget known the ledger can narrow by the whole balance key.
  std::optional<std::string> prefix;
  if (budget && key) prefix = *budget + "|" + *key;
  json list = json::array();
  for (const budget::Balance& b : options_.ledger->balances(budget, prefix, now_ms())) {
    json balance = balance_json(b);
    if (key && balance["key"] != *key) continue;
    list.push_back(std::move(balance));
  }
  return ok({{"budgets", std::move(list)}});
}

AdminApi::Reply AdminApi::post_budget(std::string_view action, const std::string& body) {
  if (!options_.ledger) return error_reply(bhttp::status::not_found, "budgets are not enabled");
  const bool add = action == "add";
  json request = json::parse(body, nullptr, false);
  if (!request.is_object()) return bad_request("body: expected a JSON object");
  for (const auto& [name, value] : request.items()) {
    if (name != "budget" && name != "key" && !(add && (name == "usd" || name == "tokens"))) {
      return bad_request("body: unknown field \"" + name + "\"");
    }
  }
  std::string error;
  std::string budget;
  std::string key;
  if (!take_string(request, "budget", &budget, &error) ||
      !take_string(request, "key", &key, &error)) {
    return bad_request(error);
  }
  if (!is_balance_key(key)) {
    return bad_request("key: expected user:NAME, peer:PUBLIC_KEY, tag:NAME, group:NAME or shared");
  }
  const std::string balance_key = budget + "|" + key;
  const int64_t now = now_ms();
  bool known = false;
  if (add) {
    budget::Amount amount;
    if (!request.contains("usd") && !request.contains("tokens")) {
      return bad_request("body: needs \"usd\", \"tokens\" or both");
    }
    if (request.contains("usd")) {
      auto usd = parse_dollars(request["usd"]);
      if (!usd) {
        return bad_request(
            "usd: expected dollars with at most 12 decimals, as a string or number, e.g. \"5.00\"");
      }
      amount.usd = *usd;
    }
    if (request.contains("tokens")) {
      const json& tokens = request["tokens"];
      // Spent tokens are signed in the ledger; a larger credit could not be represented.
      if (!tokens.is_number_unsigned() ||
          tokens.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return bad_request("tokens: expected a non-negative whole number");
      }
      amount.tokens = tokens.get<uint64_t>();
    }
    known = options_.ledger->add_funds(budget, balance_key, amount, now);
  } else {
    known = options_.ledger->reset(budget, balance_key, now);
  }
  if (!known) {
    return error_reply(bhttp::status::not_found, "no budget \"" + budget + "\" in the policy");
  }
  for (const budget::Balance& b : options_.ledger->balances(budget, balance_key, now)) {
    if (b.balance_key == balance_key) return ok(balance_json(b));
  }
  return error_reply(bhttp::status::internal_server_error, "the balance vanished");
}

AdminApi::Reply AdminApi::get_webhooks(std::string_view query_text) {
  std::string error;
  auto params = parse_query(query_text, {"event", "url", "outcome", "before", "limit"}, &error);
  if (!params) return bad_request(error);
  events::DeliveryQuery query;
  std::optional<std::string> outcome;
  std::optional<std::string> before;
  if (!take_text(*params, "event", &query.event_id, &error) ||
      !take_text(*params, "url", &query.url, &error) ||
      !take_text(*params, "outcome", &outcome, &error) ||
      !take_text(*params, "before", &before, &error) ||
      !take_limit(*params, &query.limit, &error)) {
    return bad_request(error);
  }
  if (outcome) {
    for (auto candidate : {events::DeliveryOutcome::kDelivered, events::DeliveryOutcome::kRetry,
                           events::DeliveryOutcome::kFailed}) {
      if (events::delivery_outcome_name(candidate) == *outcome) query.outcome = candidate;
    }
    if (!query.outcome) return bad_request("outcome: expected delivered, retry or failed");
  }
  if (before) {
    int64_t seq = 0;
    auto [p, ec] = std::from_chars(before->data(), before->data() + before->size(), seq);
    if (ec != std::errc() || p != before->data() + before->size() || seq <= 0) {
      return bad_request("before: expected a delivery's seq");
    }
    query.before_seq = seq;
  }
  if (!options_.outbox) return error_reply(bhttp::status::not_found, "webhooks are not enabled");
  events::OutboxStats stats = options_.outbox->stats(&error);
  if (!error.empty()) return error_reply(bhttp::status::internal_server_error, error);
  auto attempts = options_.outbox->deliveries(query, &error);
  if (!error.empty()) return error_reply(bhttp::status::internal_server_error, error);
  json list = json::array();
  for (const events::DeliveryAttempt& d : attempts) list.push_back(delivery_json(d));
  json next = attempts.size() == query.limit ? json(attempts.back().seq) : json(nullptr);
  return ok({{"stats",
              {{"pending", stats.pending},
               {"delivered", stats.delivered},
               {"failed", stats.failed},
               {"dropped", stats.dropped}}},
             {"deliveries", std::move(list)},
             {"next_before", std::move(next)}});
}

AdminApi::Reply AdminApi::get_metrics() {
  if (!options_.metrics) return error_reply(bhttp::status::not_found, "metrics are not enabled");
  return {bhttp::status::ok, options_.metrics(), {}, "text/plain; version=0.0.4; charset=utf-8"};
}

}  // namespace airlock::control::admin
