// airlockctl: the operator's command line. Talks to the control plane's admin API (loopback);
// `policy check` works locally. Exit codes: 0 ok, 1 rejected / check failed / not found,
// 2 usage error or admin API unreachable. Errors go to stderr as "airlockctl: ...".
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/admin/atomic_file.h"
#include "control/ctl/admin_client.h"
#include "control/ctl/peer_add.h"
#include "control/ctl/tool_summary.h"
#include "policy/document.h"
#include "policy/policy.h"

namespace {

using nlohmann::json;
using namespace airlock::control::ctl;
namespace policy = airlock::policy;

constexpr int kOk = 0;
constexpr int kRejected = 1;
constexpr int kUsage = 2;

constexpr std::string_view kUsageText =
    "usage: airlockctl [--admin URL] [--json] COMMAND\n"
    "  peer add NAME --user U [--tag T]... [--device D] [--address IP] [--policy FILE]\n"
    "                [--no-push]     new sandbox peer; prints its wg-quick config\n"
    "  peer list                     peers of the active policy with their traffic\n"
    "  policy check FILE             check locally (including the policy's tests)\n"
    "  policy push FILE              install on the control plane and every data plane\n"
    "  policy show                   the active policy (preshared keys redacted)\n"
    "  requests [--user U] [--model M] [--since T] [--until T] [--before ID] [--limit N]\n"
    "  usage [--by user|model|day] [--user U] [--since T] [--until T]\n"
    "  sessions [--user U] [--since T] [--until T] [--limit N]\n"
    "                                agent sessions, most recently active first\n"
    "  tools [--user U] [--session S] [--name N] [--since T] [--before CURSOR] [--limit N]\n"
    "                                the agents' tool calls per session, in order\n"
    "  stats                         data plane counters\n"
    "  budget list [--budget B] [--key K]  budget balances: spent, limit, reserved, remaining\n"
    "  budget add BUDGET KEY [--usd X] [--tokens N]  credit a balance (KEY: user:alice, ...)\n"
    "  budget reset BUDGET KEY       a balance's spend back to zero for its window\n"
    "  webhooks [--event ID] [--outcome delivered|retry|failed] [--before SEQ] [--limit N]\n"
    "                                webhook delivery attempts, newest first\n"
    "The admin API is --admin, else $AIRLOCK_ADMIN, else http://127.0.0.1:9190.\n"
    "Times are Unix milliseconds or RFC 3339 (2025-01-31, 2025-01-31T12:00:00Z).\n";

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "airlockctl: %s\n", message.c_str());
  return code;
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "airlockctl: %s\n%.*s", message.c_str(), static_cast<int>(kUsageText.size()),
               kUsageText.data());
  return kUsage;
}

void print(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
}

// ---- Arguments ----

const std::set<std::string, std::less<>> kValueOptions = {
    "--admin",  "--user",  "--tag",    "--device", "--address", "--policy",  "--model",
    "--since",  "--until", "--before", "--limit",  "--by",      "--session", "--name",
    "--budget", "--key",   "--usd",    "--tokens", "--event",   "--outcome"};
const std::set<std::string, std::less<>> kFlagOptions = {"--json", "--no-push"};

struct Args {
  std::vector<std::string> words;
  std::multimap<std::string, std::string> options;
  std::set<std::string> flags;

  std::optional<std::string> one(const std::string& name) const {
    auto it = options.find(name);
    return it == options.end() ? std::nullopt : std::optional(it->second);
  }
  std::vector<std::string> all(const std::string& name) const {
    std::vector<std::string> out;
    for (auto [it, end] = options.equal_range(name); it != end; ++it) out.push_back(it->second);
    return out;
  }
  bool flag(const std::string& name) const { return flags.contains(name); }
};

std::optional<Args> parse_args(int argc, char** argv, std::string* error) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (kValueOptions.contains(a)) {
      if (i + 1 >= argc) {
        *error = a + " needs a value";
        return std::nullopt;
      }
      if (a != "--tag" && args.options.contains(a)) {
        *error = a + " given twice";
        return std::nullopt;
      }
      args.options.emplace(a, argv[++i]);
    } else if (kFlagOptions.contains(a)) {
      args.flags.insert(a);
    } else if (a.starts_with("--")) {
      *error = "unknown option " + a;
      return std::nullopt;
    } else {
      args.words.push_back(a);
    }
  }
  return args;
}

// Options a command accepts besides the global --admin and --json.
bool only_options(const Args& args, std::initializer_list<std::string_view> allowed,
                  std::string* error) {
  for (const auto& [name, value] : args.options) {
    if (name != "--admin" && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      *error = name + " does not apply to this command";
      return false;
    }
  }
  if (args.flag("--no-push") &&
      std::find(allowed.begin(), allowed.end(), "--no-push") == allowed.end()) {
    *error = "--no-push does not apply to this command";
    return false;
  }
  return true;
}

bool read_text(const std::string& path, std::string* text, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + path;
    return false;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  *text = std::move(buf).str();
  return true;
}

// ---- Output ----

using Row = std::vector<std::string>;

void print_table(const Row& headers, const std::vector<Row>& rows) {
  std::vector<size_t> widths(headers.size());
  for (size_t c = 0; c < headers.size(); ++c) widths[c] = headers[c].size();
  for (const Row& row : rows) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], row[c].size());
    }
  }
  auto line = [&](const Row& row) {
    std::string out;
    for (size_t c = 0; c < row.size(); ++c) {
      out += row[c];
      if (c + 1 < row.size()) out += std::string(widths[c] - row[c].size() + 2, ' ');
    }
    print(out + "\n");
  };
  line(headers);
  for (const Row& row : rows) line(row);
}

std::string text_of(const json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) return value.get<std::string>().empty() ? "-" : value.get<std::string>();
  if (value.is_array()) {
    std::string out;
    for (const json& item : value) out += (out.empty() ? "" : ",") + text_of(item);
    return out.empty() ? "-" : out;
  }
  return value.dump();
}

std::string handshake_age(const json& unix_ns) {
  if (!unix_ns.is_number() || unix_ns.get<uint64_t>() == 0) return "never";
  auto now = std::chrono::system_clock::now().time_since_epoch();
  int64_t seconds = std::chrono::duration_cast<std::chrono::seconds>(now).count() -
                    static_cast<int64_t>(unix_ns.get<uint64_t>() / 1'000'000'000);
  if (seconds < 0) seconds = 0;
  if (seconds < 120) return std::to_string(seconds) + "s ago";
  if (seconds < 7200) return std::to_string(seconds / 60) + "m ago";
  if (seconds < 172800) return std::to_string(seconds / 3600) + "h ago";
  return std::to_string(seconds / 86400) + "d ago";
}

// ---- Admin API calls ----

struct Context {
  AdminClient client;
  bool json_output = false;
};

// The response body of a 200, parsed; otherwise prints the API's error and sets *code.
std::optional<json> call(const Context& ctx, bool post, const std::string& target, std::string body,
                         int* code) {
  std::string error;
  auto response =
      post ? ctx.client.post(target, std::move(body), &error) : ctx.client.get(target, &error);
  if (!response) {
    *code = fail(kUsage, error);
    return std::nullopt;
  }
  json parsed = json::parse(response->body, nullptr, false);
  if (response->status != 200) {
    std::string message =
        parsed.is_object() && parsed.contains("error") && parsed["error"].is_string()
            ? parsed["error"].get<std::string>()
            : "HTTP " + std::to_string(response->status);
    *code = fail(kRejected, message);
    return std::nullopt;
  }
  if (parsed.is_discarded()) {
    *code = fail(kRejected, "the admin API answered with something that is not JSON");
    return std::nullopt;
  }
  return parsed;
}

std::string query_string(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& params) {
  std::string out;
  for (const auto& [name, value] : params) {
    if (!value) continue;
    out += (out.empty() ? "?" : "&") + name + "=" + percent_encode(*value);
  }
  return out;
}

// ---- Commands ----

int cmd_policy_check(const Args& args) {
  std::string error;
  if (args.words.size() != 3) return usage_error("policy check takes one FILE");
  if (!only_options(args, {}, &error)) return usage_error(error);
  const std::string& path = args.words[2];
  std::string text;
  if (!read_text(path, &text, &error)) return fail(kRejected, error);
  auto doc = policy::parse_document(text, path, &error);
  if (!doc) return fail(kRejected, error);
  if (!policy::compile(*doc, &error)) return fail(kRejected, error);
  if (args.flag("--json")) {
    print(json{{"ok", true},
               {"version", doc->version},
               {"peers", doc->peers.size()},
               {"groups", doc->groups.size()},
               {"rules", doc->rules.size()},
               {"providers", doc->providers.size()},
               {"grants", doc->grants.size()},
               {"tests", doc->tests.size()}}
              .dump() +
          "\n");
  } else {
    print("OK " + path + ": version " + std::to_string(doc->version) + ", " +
          std::to_string(doc->peers.size()) + " peers, " + std::to_string(doc->rules.size()) +
          " rules, " + std::to_string(doc->providers.size()) + " providers, " +
          std::to_string(doc->grants.size()) + " grants, " + std::to_string(doc->tests.size()) +
          " tests passed\n");
  }
  return kOk;
}

int cmd_policy_push(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 3) return usage_error("policy push takes one FILE");
  if (!only_options(args, {}, &error)) return usage_error(error);
  std::string path = args.words[2];
  std::string text;
  if (!read_text(path, &text, &error)) return fail(kUsage, error);
  std::string absolute = std::filesystem::absolute(path).lexically_normal().string();
  int code = kOk;
  auto reply = call(ctx, true, "/v1/admin/policy?file=" + percent_encode(absolute), text, &code);
  if (!reply) return code;
  print(ctx.json_output ? reply->dump() + "\n"
                        : "policy version " + reply->value("version", json()).dump() + " active\n");
  return kOk;
}

int cmd_policy_show(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 2) return usage_error("policy show takes no arguments");
  if (!only_options(args, {}, &error)) return usage_error(error);
  int code = kOk;
  auto reply = call(ctx, false, "/v1/admin/policy", {}, &code);
  if (!reply) return code;
  if (ctx.json_output) {
    print(reply->dump() + "\n");
  } else {
    std::string text = reply->value("text", "");
    print(text);
    if (!text.empty() && text.back() != '\n') print("\n");
  }
  return kOk;
}

int cmd_peer_list(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 2) return usage_error("peer list takes no arguments");
  if (!only_options(args, {}, &error)) return usage_error(error);
  int code = kOk;
  auto reply = call(ctx, false, "/v1/admin/peers", {}, &code);
  if (!reply) return code;
  if (ctx.json_output) {
    print(reply->dump() + "\n");
    return kOk;
  }
  std::vector<Row> rows;
  for (const json& p : (*reply)["peers"]) {
    rows.push_back({text_of(p["user"]), text_of(p["device"]), text_of(p["tags"]),
                    text_of(p["allowed_ips"]), text_of(p["public_key"]), text_of(p["endpoint"]),
                    handshake_age(p["last_handshake_unix_ns"]), text_of(p["rx_bytes"]),
                    text_of(p["tx_bytes"])});
  }
  print_table({"USER", "DEVICE", "TAGS", "ADDRESSES", "PUBLIC KEY", "ENDPOINT", "HANDSHAKE",
               "RX BYTES", "TX BYTES"},
              rows);
  if (reply->contains("stats_error")) {
    fail(kOk, "no data plane counters: " + (*reply)["stats_error"].get<std::string>());
  }
  return kOk;
}

int cmd_peer_add(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 3) return usage_error("peer add takes one NAME");
  if (!only_options(args, {"--user", "--tag", "--device", "--address", "--policy", "--no-push"},
                    &error)) {
    return usage_error(error);
  }
  const std::string& name = args.words[2];
  NewPeer peer;
  peer.user = args.one("--user").value_or("");
  peer.device = args.one("--device").value_or(name);
  peer.tags = args.all("--tag");
  peer.address = args.one("--address");
  if (peer.user.empty()) return usage_error("peer add needs --user");
  for (const std::string& n : std::vector<std::string>{name, peer.user, peer.device}) {
    if (!policy::is_valid_name(n)) return usage_error("\"" + n + "\" is not a valid name");
  }
  for (const std::string& tag : peer.tags) {
    if (!policy::is_valid_name(tag)) return usage_error("\"" + tag + "\" is not a valid tag");
  }
  bool push = !args.flag("--no-push");

  int code = kOk;
  auto hub = call(ctx, false, "/v1/admin/hub", {}, &code);
  if (!hub) return code;
  HubEndpoint hub_endpoint{hub->value("public_key", ""), hub->value("endpoint", ""),
                           hub->value("gateway", std::vector<std::string>{})};
  if (hub_endpoint.public_key.empty() || hub_endpoint.endpoint.empty() ||
      hub_endpoint.gateway.empty()) {
    return fail(kRejected,
                "the control plane does not know the hub's public key, endpoint and gateway");
  }

  // The control plane's version (so the new one is above it) and, failing --policy and
  // $AIRLOCK_POLICY, the file it was last given.
  uint64_t active_version = 0;
  std::string path = args.one("--policy").value_or("");
  if (path.empty()) {
    const char* env = std::getenv("AIRLOCK_POLICY");
    path = env ? env : "";
  }
  std::string error_unused;
  auto shown = ctx.client.get("/v1/admin/policy", &error_unused);
  if (shown && shown->status == 200) {
    json active = json::parse(shown->body, nullptr, false);
    if (active.is_object()) {
      active_version = active.value("version", uint64_t{0});
      std::string file = active.value("file", "");
      if (path.empty() && file.starts_with('/') && std::filesystem::exists(file)) path = file;
    }
  }
  if (path.empty()) return usage_error("peer add needs --policy FILE (or $AIRLOCK_POLICY)");

  std::string text;
  if (!read_text(path, &text, &error)) return fail(kUsage, error);
  KeyPair keys;
  generate_key_pair(&keys);
  auto added = add_peer(text, path, peer, keys.public_key, push ? active_version : 0, &error);
  if (!added) return fail(kRejected, error);

  if (push) {
    std::string absolute = std::filesystem::absolute(path).lexically_normal().string();
    if (!call(ctx, true, "/v1/admin/policy?file=" + percent_encode(absolute), added->text, &code)) {
      return fail(code, "peer not added; " + path + " is unchanged");
    }
  }
  std::string config = wg_quick_config(name, keys, added->address, hub_endpoint);
  bool saved = airlock::control::admin::write_file_atomically(path, added->text, &error);
  if (ctx.json_output) {
    print(json{{"public_key", policy::encode_key_base64(keys.public_key)},
               {"address", added->address},
               {"version", added->version},
               {"pushed", push},
               {"wg_quick", config}}
              .dump() +
          "\n");
  } else {
    print(config);
  }
  if (!saved) {
    // The peer is live already when pushed, so its config is printed above regardless.
    return fail(kRejected, "could not save " + path + ": " + error);
  }
  std::fprintf(stderr, "airlockctl: peer %s (user %s, %s) added to %s, version %llu%s\n",
               name.c_str(), peer.user.c_str(), added->address.c_str(), path.c_str(),
               static_cast<unsigned long long>(added->version),
               push ? ", active" : "; not pushed (airlockctl policy push)");
  return kOk;
}

int cmd_requests(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 1) return usage_error("requests takes no arguments");
  if (!only_options(args, {"--user", "--model", "--since", "--until", "--before", "--limit"},
                    &error)) {
    return usage_error(error);
  }
  std::string query = query_string({{"user", args.one("--user")},
                                    {"model", args.one("--model")},
                                    {"since", args.one("--since")},
                                    {"until", args.one("--until")},
                                    {"before", args.one("--before")},
                                    {"limit", args.one("--limit")}});
  int code = kOk;
  auto reply = call(ctx, false, "/v1/admin/requests" + query, {}, &code);
  if (!reply) return code;
  if (ctx.json_output) {
    print(reply->dump() + "\n");
    return kOk;
  }
  std::vector<Row> rows;
  for (const json& r : (*reply)["requests"]) {
    rows.push_back({text_of(r["id"]), text_of(r["time"]), text_of(r["user"]), text_of(r["model"]),
                    text_of(r["status"]), text_of(r["input_tokens"]), text_of(r["output_tokens"]),
                    text_of(r["cost_dollars"]),
                    std::to_string(r.value("duration_us", int64_t{0}) / 1000),
                    text_of(r["error"])});
  }
  print_table({"ID", "TIME", "USER", "MODEL", "STATUS", "IN", "OUT", "COST $", "MS", "ERROR"},
              rows);
  if (const json& next = (*reply)["next_before"]; next.is_string()) {
    fail(kOk, "more: --before " + next.get<std::string>());
  }
  return kOk;
}

int cmd_usage(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 1) return usage_error("usage takes no arguments");
  if (!only_options(args, {"--by", "--user", "--since", "--until"}, &error)) {
    return usage_error(error);
  }
  std::string by = args.one("--by").value_or("user");
  if (by != "user" && by != "model" && by != "day") return usage_error("--by user|model|day");
  std::string query = query_string({{"group_by", by},
                                    {"user", args.one("--user")},
                                    {"since", args.one("--since")},
                                    {"until", args.one("--until")}});
  int code = kOk;
  auto reply = call(ctx, false, "/v1/admin/usage" + query, {}, &code);
  if (!reply) return code;
  if (ctx.json_output) {
    print(reply->dump() + "\n");
    return kOk;
  }
  std::vector<Row> rows;
  for (const json& u : (*reply)["usage"]) {
    rows.push_back({text_of(u["key"]), text_of(u["requests"]), text_of(u["input_tokens"]),
                    text_of(u["output_tokens"]), text_of(u["cache_read_tokens"]),
                    text_of(u["cache_write_tokens"]), text_of(u["cost_dollars"])});
  }
  std::string key = by;
  std::transform(key.begin(), key.end(), key.begin(), ::toupper);
  print_table({key, "REQUESTS", "INPUT", "OUTPUT", "CACHE READ", "CACHE WRITE", "COST $"}, rows);
  return kOk;
}

int cmd_sessions(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 1) return usage_error("sessions takes no arguments");
  if (!only_options(args, {"--user", "--since", "--until", "--limit"}, &error)) {
    return usage_error(error);
  }
  std::string query = query_string({{"user", args.one("--user")},
                                    {"since", args.one("--since")},
                                    {"until", args.one("--until")},
                                    {"limit", args.one("--limit")}});
  int code = kOk;
  auto reply = call(ctx, false, "/v1/admin/sessions" + query, {}, &code);
  if (!reply) return code;
  if (ctx.json_output) {
    print(reply->dump() + "\n");
    return kOk;
  }
  std::vector<Row> rows;
  for (const json& s : (*reply)["sessions"]) {
    rows.push_back({text_of(s["id"]), text_of(s["user"]), text_of(s["device"]), text_of(s["first"]),
                    text_of(s["last"]), text_of(s["requests"]), text_of(s["tool_calls"]),
                    text_of(s["input_tokens"]), text_of(s["output_tokens"]),
                    text_of(s["cost_dollars"])});
  }
  print_table(
      {"SESSION", "USER", "DEVICE", "FIRST", "LAST", "REQUESTS", "TOOLS", "IN", "OUT", "COST $"},
      rows);
  return kOk;
}

std::string result_text(const json& result) {
  if (!result.is_object()) return "-";
  return result.value("is_error", false) ? "error" : "ok";
}

int cmd_tools(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 1) return usage_error("tools takes no arguments");
  if (!only_options(args, {"--user", "--session", "--name", "--since", "--before", "--limit"},
                    &error)) {
    return usage_error(error);
  }
  std::string query = query_string({{"user", args.one("--user")},
                                    {"session", args.one("--session")},
                                    {"name", args.one("--name")},
                                    {"since", args.one("--since")},
                                    {"before", args.one("--before")},
                                    {"limit", args.one("--limit")}});
  int code = kOk;
  auto reply = call(ctx, false, "/v1/admin/tools" + query, {}, &code);
  if (!reply) return code;
  if (ctx.json_output) {
    print(reply->dump() + "\n");
    return kOk;
  }
  std::vector<Row> rows;
  for (const json& t : (*reply)["tool_calls"]) {
    const std::string name = t.value("name", "");
    rows.push_back({text_of(t["time"]), text_of(t["user"]), text_of(t["session_id"]),
                    text_of(t["name"]), result_text(t["result"]),
                    tool_summary(name, t.value("arguments", ""))});
  }
  print_table({"TIME", "USER", "SESSION", "TOOL", "RESULT", "WHAT"}, rows);
  if (const json& next = (*reply)["next_before"]; next.is_string()) {
    fail(kOk, "more: --before " + next.get<std::string>());
  }
  return kOk;
}

int cmd_stats(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 1) return usage_error("stats takes no arguments");
  if (!only_options(args, {}, &error)) return usage_error(error);
  int code = kOk;
  auto reply = call(
      ctx, false, ctx.json_output ? "/v1/admin/stats" : "/v1/admin/stats?format=table", {}, &code);
  if (!reply) return code;
  print(ctx.json_output ? reply->dump() + "\n" : reply->value("table", ""));
  return kOk;
}

// "$1.25, 3000 tok": the dimensions the budget limits (both when it limits neither, which a
// policy cannot express but an old balance might).
std::string amounts(const json& balance, const char* field) {
  const bool usd = balance["limit_usd"].is_string();
  const bool tokens = balance["limit_tokens"].is_number();
  std::string out;
  const json& dollars = balance[std::string(field) + "_usd"];
  const json& count = balance[std::string(field) + "_tokens"];
  if ((usd || !tokens) && dollars.is_string()) {
    const std::string text = dollars.get<std::string>();
    out = text.starts_with('-') ? "-$" + text.substr(1) : "$" + text;
  }
  if ((tokens || !usd) && count.is_number()) {
    out += (out.empty() ? "" : ", ") + count.dump() + " tok";
  }
  return out.empty() ? "-" : out;
}

void print_balances(const json& balances) {
  std::vector<Row> rows;
  for (const json& b : balances) {
    rows.push_back(
        {text_of(b["budget"]), text_of(b["key"]),
         b["window_end"].is_string() ? b["window_end"].get<std::string>() : text_of(b["window"]),
         amounts(b, "spent"), amounts(b, "limit"), amounts(b, "reserved"),
         amounts(b, "remaining")});
  }
  print_table({"BUDGET", "KEY", "WINDOW-END", "SPENT", "LIMIT", "RESERVED", "REMAINING"}, rows);
}

int cmd_budget_list(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 2) return usage_error("budget list takes no arguments");
  if (!only_options(args, {"--budget", "--key"}, &error)) return usage_error(error);
  std::string query = query_string({{"budget", args.one("--budget")}, {"key", args.one("--key")}});
  int code = kOk;
  auto reply = call(ctx, false, "/v1/admin/budgets" + query, {}, &code);
  if (!reply) return code;
  if (ctx.json_output) {
    print(reply->dump() + "\n");
  } else {
    print_balances((*reply)["budgets"]);
  }
  return kOk;
}

// budget add / budget reset: both answer with the balance as it is now.
int cmd_budget_change(const Context& ctx, const Args& args) {
  std::string error;
  const bool add = args.words[1] == "add";
  if (args.words.size() != 4) return usage_error("budget " + args.words[1] + " takes BUDGET KEY");
  if (!only_options(args,
                    add ? std::initializer_list<std::string_view>{"--usd", "--tokens"}
                        : std::initializer_list<std::string_view>{},
                    &error)) {
    return usage_error(error);
  }
  json body = {{"budget", args.words[2]}, {"key", args.words[3]}};
  if (add) {
    auto usd = args.one("--usd");
    auto tokens = args.one("--tokens");
    if (!usd && !tokens) return usage_error("budget add needs --usd, --tokens or both");
    if (usd) body["usd"] = *usd;  // as text, so the server converts it exactly
    if (tokens) {
      uint64_t count = 0;
      auto [p, ec] = std::from_chars(tokens->data(), tokens->data() + tokens->size(), count);
      if (tokens->empty() || ec != std::errc() || p != tokens->data() + tokens->size()) {
        return usage_error("--tokens expects a whole number");
      }
      body["tokens"] = count;
    }
  }
  int code = kOk;
  auto reply = call(ctx, true, std::string("/v1/admin/budgets/") + (add ? "add" : "reset"),
                    body.dump(), &code);
  if (!reply) return code;
  if (ctx.json_output) {
    print(reply->dump() + "\n");
  } else {
    print_balances(json::array({*reply}));
  }
  return kOk;
}

int cmd_webhooks(const Context& ctx, const Args& args) {
  std::string error;
  if (args.words.size() != 1) return usage_error("webhooks takes no arguments");
  if (!only_options(args, {"--event", "--outcome", "--before", "--limit"}, &error)) {
    return usage_error(error);
  }
  std::string query = query_string({{"event", args.one("--event")},
                                    {"outcome", args.one("--outcome")},
                                    {"before", args.one("--before")},
                                    {"limit", args.one("--limit")}});
  int code = kOk;
  auto reply = call(ctx, false, "/v1/admin/webhooks" + query, {}, &code);
  if (!reply) return code;
  if (ctx.json_output) {
    print(reply->dump() + "\n");
    return kOk;
  }
  std::vector<Row> rows;
  for (const json& d : (*reply)["deliveries"]) {
    rows.push_back({text_of(d["time"]), text_of(d["event_id"]), text_of(d["event_type"]),
                    text_of(d["url"]), text_of(d["attempt"]),
                    d.value("status", 0) == 0 ? "-" : text_of(d["status"]), text_of(d["outcome"]),
                    text_of(d["latency_ms"]), text_of(d["error"])});
  }
  print_table({"TIME", "EVENT", "TYPE", "URL", "ATTEMPT", "STATUS", "OUTCOME", "MS", "ERROR"},
              rows);
  const json& stats = (*reply)["stats"];
  print("deliveries: " + text_of(stats["pending"]) + " pending, " + text_of(stats["delivered"]) +
        " delivered, " + text_of(stats["failed"]) + " failed; " + text_of(stats["dropped"]) +
        " events dropped\n");
  if (const json& next = (*reply)["next_before"]; next.is_number()) {
    fail(kOk, "more: --before " + next.dump());
  }
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  std::string error;
  auto args = parse_args(argc, argv, &error);
  if (!args) return usage_error(error);
  if (args->words.empty()) return usage_error("no command");
  const std::vector<std::string>& w = args->words;

  if (w[0] == "policy" && w.size() >= 2 && w[1] == "check") return cmd_policy_check(*args);

  std::string url = args->one("--admin").value_or("");
  if (url.empty()) {
    const char* env = std::getenv("AIRLOCK_ADMIN");
    url = env && *env ? env : "http://127.0.0.1:9190";
  }
  auto client = AdminClient::create(url, &error);
  if (!client) return usage_error(error);
  Context ctx{std::move(*client), args->flag("--json")};

  if (w[0] == "peer" && w.size() >= 2 && w[1] == "add") return cmd_peer_add(ctx, *args);
  if (w[0] == "peer" && w.size() >= 2 && w[1] == "list") return cmd_peer_list(ctx, *args);
  if (w[0] == "policy" && w.size() >= 2 && w[1] == "push") return cmd_policy_push(ctx, *args);
  if (w[0] == "policy" && w.size() >= 2 && w[1] == "show") return cmd_policy_show(ctx, *args);
  if (w[0] == "requests") return cmd_requests(ctx, *args);
  if (w[0] == "usage") return cmd_usage(ctx, *args);
  if (w[0] == "sessions") return cmd_sessions(ctx, *args);
  if (w[0] == "tools") return cmd_tools(ctx, *args);
  if (w[0] == "stats") return cmd_stats(ctx, *args);
  if (w[0] == "budget" && w.size() >= 2 && w[1] == "list") return cmd_budget_list(ctx, *args);
  if (w[0] == "budget" && w.size() >= 2 && (w[1] == "add" || w[1] == "reset")) {
    return cmd_budget_change(ctx, *args);
  }
  if (w[0] == "webhooks") return cmd_webhooks(ctx, *args);
  return usage_error("unknown command \"" + w[0] + "\"");
}
