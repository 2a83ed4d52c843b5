#include "control/metering/session.h"

#include <openssl/evp.h>

#include <array>

#include "control/metering/json_view.h"

namespace airlock::control {
namespace {

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
std::string claude_code_session(JsonView body) {
  const std::string user_id = body.member("metadata", "user_id").text();
  if (user_id.starts_with('{')) {
    const JsonDocument inner(user_id);
    return inner.root().member("session_id").text();
  }
  constexpr std::string_view kMarker = "_session_";
  const std::size_t at = user_id.find(kMarker);
  return at == std::string::npos ? "" : user_id.substr(at + kMarker.size());
}

// The text of a message content: a string, or the `text` of its parts joined with "\n".
std::string content_text(JsonView content) {
  if (content.is_string()) return content.text();
  std::string out;
  for (const JsonView part : content.items()) {
    const std::string text = part.is_string() ? part.text() : part.member("text").text();
    if (text.empty()) continue;
    if (!out.empty()) out.push_back('\n');
    out += text;
  }
  return out;
}

JsonView first_with_role(JsonView list, std::initializer_list<std::string_view> roles) {
  for (const JsonView item : list.items()) {
    const std::string role = item.member("role").text();
    for (const std::string_view wanted : roles) {
      if (role == wanted) return item;
    }
  }
  return {};
}

std::string content_of_first(JsonView list, std::initializer_list<std::string_view> roles,
                             std::string_view content_key) {
  return content_text(first_with_role(list, roles).member(content_key));
}

struct ConversationStart {
  std::string system;
  std::string first_user;
};

ConversationStart conversation_start(Api api, JsonView body) {
  ConversationStart start;
  switch (api) {
    case Api::kAnthropicMessages:
      start.system = content_text(body.member("system"));
      start.first_user = content_of_first(body.member("messages"), {"user"}, "content");
      break;
    case Api::kOpenAiChat: {
      const JsonView messages = body.member("messages");
      start.system = content_of_first(messages, {"system", "developer"}, "content");
      start.first_user = content_of_first(messages, {"user"}, "content");
      break;
    }
    case Api::kOpenAiResponses: {
      const JsonView input = body.member("input");
      start.system = body.member("instructions").text();
      if (start.system.empty()) {
        start.system = content_of_first(input, {"system", "developer"}, "content");
      }
      start.first_user =
          input.is_string() ? input.text() : content_of_first(input, {"user"}, "content");
      break;
    }
    case Api::kGeminiGenerate: {
      start.system = content_text(body.member("systemInstruction", "parts"));
      // A content without a role is the user's.
      start.first_user = content_of_first(body.member("contents"), {"user", ""}, "parts");
      break;
    }
  }
  return start;
}

std::string sha256_prefix_hex(std::string_view data) {
  // OpenSSL's SHA-256 uses the CPU's SHA extensions: about 4x libsodium's portable code, which
  // cost more than anything else the request path did for a Claude Code turn (whose system
  // prompt alone is tens of KiB). The digest is fetched once, not looked up in OpenSSL's
  // provider store on every call.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int digest_size = 0;
  if (sha256 == nullptr ||
      EVP_Digest(data.data(), data.size(), digest.data(), &digest_size, sha256, nullptr) != 1) {
    return "";
  }
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

std::string session_of_json(Api api, const HeaderLookup& header, JsonView body,
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
  const std::string digest = sha256_prefix_hex(material);
  return digest.empty() ? "" : "fp_" + digest;
}

std::string session_of(Api api, const HeaderLookup& header, std::string_view body,
                       std::string_view identity_key) {
  const JsonDocument parsed(body);
  return session_of_json(api, header, parsed.root(), identity_key);
}

}  // namespace airlock::control
