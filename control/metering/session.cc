#include "control/metering/session.h"

#include <sodium.h>

#include <array>

#include <nlohmann/json.hpp>

#include "control/metering/json_access.h"
#include "control/metering/json_parse.h"

namespace airlock::control {
namespace {

using json_access::member;
using json_access::text_of;
using nlohmann::json;

constexpr std::size_t kMaxClientIdChars = 128;

// Client ids end up in the log, tables and terminals: keep them short and free of control
// characters and spaces.
std::string sanitise(std::string_view id) {
  std::string out;
  for (const char c : id) {
    if (out.size() == kMaxClientIdChars) break;
    if (c > ' ' && c < 0x7f) out.push_back(c);
  }
  return out;
}

std::string with_prefix(std::string_view prefix, std::string_view id) {
  std::string clean = sanitise(id);
  return clean.empty() ? "" : std::string(prefix) + clean;
}

// Claude Code's metadata.user_id: "user_<hash>_account_<uuid>_session_<uuid>", or in newer
// versions a JSON object serialised into the string.
std::string claude_code_session(const json& body) {
  const std::string user_id = text_of(member(body, "metadata", "user_id"));
  if (user_id.starts_with('{')) {
    const json inner = json::parse(user_id, nullptr, false);
    return text_of(member(inner, "session_id"));
  }
  constexpr std::string_view kMarker = "_session_";
  const std::size_t at = user_id.find(kMarker);
  return at == std::string::npos ? "" : user_id.substr(at + kMarker.size());
}

// The text of a message content: a string, or the `text` of its parts joined with "\n".
std::string content_text(const json* content) {
  if (content == nullptr) return "";
  if (content->is_string()) return content->get<std::string>();
  std::string out;
  if (!content->is_array()) return out;
  for (const json& part : *content) {
    std::string text = part.is_string() ? part.get<std::string>() : text_of(member(part, "text"));
    if (text.empty()) continue;
    if (!out.empty()) out.push_back('\n');
    out += text;
  }
  return out;
}

const json* first_with_role(const json* list, std::initializer_list<std::string_view> roles) {
  if (list == nullptr || !list->is_array()) return nullptr;
  for (const json& item : *list) {
    const std::string role = text_of(member(item, "role"));
    for (const std::string_view wanted : roles) {
      if (role == wanted) return &item;
    }
  }
  return nullptr;
}

std::string content_of_first(const json* list, std::initializer_list<std::string_view> roles,
                             const char* content_key) {
  const json* item = first_with_role(list, roles);
  return item ? content_text(member(*item, content_key)) : "";
}

struct ConversationStart {
  std::string system;
  std::string first_user;
};

ConversationStart conversation_start(Api api, const json& body) {
  ConversationStart start;
  switch (api) {
    case Api::kAnthropicMessages:
      start.system = content_text(member(body, "system"));
      start.first_user = content_of_first(member(body, "messages"), {"user"}, "content");
      break;
    case Api::kOpenAiChat: {
      const json* messages = member(body, "messages");
      start.system = content_of_first(messages, {"system", "developer"}, "content");
      start.first_user = content_of_first(messages, {"user"}, "content");
      break;
    }
    case Api::kOpenAiResponses: {
      const json* input = member(body, "input");
      start.system = text_of(member(body, "instructions"));
      if (start.system.empty()) {
        start.system = content_of_first(input, {"system", "developer"}, "content");
      }
      start.first_user = input && input->is_string() ? input->get<std::string>()
                                                     : content_of_first(input, {"user"}, "content");
      break;
    }
    case Api::kGeminiGenerate: {
      start.system = content_text(member(body, "systemInstruction", "parts"));
      const json* contents = member(body, "contents");
      // A content without a role is the user's.
      start.first_user = content_of_first(contents, {"user", ""}, "parts");
      break;
    }
  }
  return start;
}

std::string sha256_prefix_hex(std::string_view data) {
  // libsodium rather than OpenSSL's EVP interface, which allocates a context and looks the
  // digest up in its provider store on every call: on the request path that cost more than
  // hashing a conversation's start.
  std::array<unsigned char, crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(data.data()),
                     data.size());
  constexpr std::size_t kPrefixBytes = 8;  // 16 hex digits
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * kPrefixBytes);
  for (std::size_t i = 0; i < kPrefixBytes; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xf]);
  }
  return hex;
}

}  // namespace

std::string session_of_json(Api api, const HeaderLookup& header, const json& body,
                            std::string_view identity_key) {
  const auto header_id = [&](std::string_view name, std::string_view prefix) -> std::string {
    if (!header) return "";
    const std::optional<std::string_view> value = header(name);
    return value ? with_prefix(prefix, *value) : "";
  };
  if (std::string id = header_id("x-claude-code-session-id", "cc_"); !id.empty()) return id;
  if (api == Api::kAnthropicMessages) {
    if (std::string id = with_prefix("cc_", claude_code_session(body)); !id.empty()) return id;
  }
  if (std::string id = header_id("session_id", "cx_"); !id.empty()) return id;
  if (std::string id = header_id("conversation_id", "cx_"); !id.empty()) return id;

  const ConversationStart start = conversation_start(api, body);
  if (start.system.empty() && start.first_user.empty()) return "";
  std::string material(identity_key);
  material.append("\n").append(start.system).append("\n").append(start.first_user);
  return "fp_" + sha256_prefix_hex(material);
}

std::string session_of(Api api, const HeaderLookup& header, std::string_view body,
                       std::string_view identity_key) {
  const json parsed = parse_json(body);
  return session_of_json(api, header, parsed, identity_key);
}

}  // namespace airlock::control
