#include "control/metering/session.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <string_view>

// Bodies follow the request shapes in shared/research/protocols.md §1-§4; the Claude Code and
// Codex identifiers are shaped like the ones those clients send.
namespace airlock::control {
namespace {

// Lower-case names, as the gateway's case-insensitive lookup presents them.
HeaderLookup headers(std::map<std::string, std::string, std::less<>> fields) {
  return [fields = std::move(fields)](std::string_view name) -> std::optional<std::string_view> {
    const auto it = fields.find(name);
    if (it == fields.end()) return std::nullopt;
    return std::string_view(it->second);
  };
}

const HeaderLookup kNoHeaders = headers({});

constexpr std::string_view kUuid = "6f1c2a9e-0b7d-4c1e-9a53-2f8e1d4b7c60";

TEST(Session, ClaudeCodeUserIdCarriesTheSession) {
  const std::string body =
      R"({"model":"claude-sonnet-4-6","metadata":{"user_id":"user_3b5f0c_account_0e7c4a1b-1111-2222-3333-444455556666_session_)" +
      std::string(kUuid) + R"("},"messages":[{"role":"user","content":"hi"}]})";
  EXPECT_EQ(session_of(Api::kAnthropicMessages, kNoHeaders, body, "peerA"),
            "cc_" + std::string(kUuid));
}

TEST(Session, ClaudeCodeJsonUserIdCarriesTheSession) {
  const std::string body =
      R"({"metadata":{"user_id":"{\"device_id\":\"d1f0\",\"account_uuid\":\"\",\"session_id\":\")" +
      std::string(kUuid) + R"(\"}"},"messages":[{"role":"user","content":"hi"}]})";
  EXPECT_EQ(session_of(Api::kAnthropicMessages, kNoHeaders, body, "peerA"),
            "cc_" + std::string(kUuid));
}

TEST(Session, ClaudeCodeHeaderWins) {
  const HeaderLookup h = headers({{"x-claude-code-session-id", std::string(kUuid)}});
  EXPECT_EQ(session_of(Api::kAnthropicMessages, h, R"({"messages":[]})", "peerA"),
            "cc_" + std::string(kUuid));
}

TEST(Session, CodexSessionHeader) {
  const std::string body = R"({"instructions":"You are Codex.","input":"hi"})";
  EXPECT_EQ(session_of(Api::kOpenAiResponses, headers({{"session_id", "0199a213-81c0-7800"}}), body,
                       "peerA"),
            "cx_0199a213-81c0-7800");
  EXPECT_EQ(
      session_of(Api::kOpenAiResponses, headers({{"conversation_id", "conv-9"}}), body, "peerA"),
      "cx_conv-9");
}

TEST(Session, ClientIdsAreSanitised) {
  const std::string long_id(300, 'a');
  EXPECT_EQ(session_of(Api::kOpenAiResponses, headers({{"session_id", long_id}}), "{}", "p"),
            "cx_" + std::string(128, 'a'));
  EXPECT_EQ(
      session_of(Api::kOpenAiResponses, headers({{"session_id", "ab c\x1b[31m\n"}}), "{}", "p"),
      "cx_abc[31m");
  // Nothing printable left: not an id, so the fingerprint decides.
  const std::string fp = session_of(Api::kOpenAiResponses, headers({{"session_id", "\t \n"}}),
                                    R"({"input":"hi"})", "p");
  EXPECT_TRUE(fp.starts_with("fp_")) << fp;
}

// Turn 1 and turn 3 of one Codex-less Responses conversation, and a different conversation.
TEST(Session, FingerprintIsStableAcrossTurns) {
  constexpr std::string_view kTurn1 = R"({"model":"gpt-5.5","instructions":"You are an agent.",
    "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"fix bug 12"}]}]})";
  constexpr std::string_view kTurn3 = R"({"model":"gpt-5.5","instructions":"You are an agent.",
    "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"fix bug 12"}]},
             {"type":"function_call","call_id":"c1","name":"shell","arguments":"{}"},
             {"type":"function_call_output","call_id":"c1","output":"ok"},
             {"type":"message","role":"user","content":[{"type":"input_text","text":"now test"}]}]})";
  constexpr std::string_view kOther = R"({"model":"gpt-5.5","instructions":"You are an agent.",
    "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"fix bug 13"}]}]})";
  const std::string s1 = session_of(Api::kOpenAiResponses, kNoHeaders, kTurn1, "peerA");
  ASSERT_EQ(s1.size(), 3u + 16u);
  EXPECT_TRUE(s1.starts_with("fp_"));
  EXPECT_EQ(s1.find_first_not_of("0123456789abcdef", 3), std::string::npos);
  EXPECT_EQ(session_of(Api::kOpenAiResponses, kNoHeaders, kTurn3, "peerA"), s1);
  EXPECT_NE(session_of(Api::kOpenAiResponses, kNoHeaders, kOther, "peerA"), s1);
  // The same prompt from another identity is another session.
  EXPECT_NE(session_of(Api::kOpenAiResponses, kNoHeaders, kTurn1, "peerB"), s1);
}

TEST(Session, FingerprintIsTheDocumentedHash) {
  // printf 'peerA\nYou are helpful.\nhello' | sha256sum -> a9062aa4b5ff66d7ba1e...
  const std::string chat =
      session_of(Api::kOpenAiChat, kNoHeaders,
                 R"({"messages":[{"role":"system","content":"You are helpful."},
                                 {"role":"user","content":"hello"},
                                 {"role":"assistant","content":"hi"},
                                 {"role":"user","content":"more"}]})",
                 "peerA");
  const std::string anthropic = session_of(Api::kAnthropicMessages, kNoHeaders,
                                           R"({"system":[{"type":"text","text":"You are helpful."}],
          "messages":[{"role":"user","content":[{"type":"text","text":"hello"}]}]})",
                                           "peerA");
  const std::string gemini =
      session_of(Api::kGeminiGenerate, kNoHeaders,
                 R"({"systemInstruction":{"parts":[{"text":"You are helpful."}]},
          "contents":[{"role":"user","parts":[{"text":"hello"}]},{"role":"model","parts":[{"text":"hi"}]}]})",
                 "peerA");
  EXPECT_EQ(chat, "fp_a9062aa4b5ff66d7");
  EXPECT_EQ(anthropic, chat);
  EXPECT_EQ(gemini, chat);
}

TEST(Session, NothingToGoOnIsNoSession) {
  for (const Api api :
       {Api::kOpenAiChat, Api::kOpenAiResponses, Api::kAnthropicMessages, Api::kGeminiGenerate}) {
    EXPECT_EQ(session_of(api, kNoHeaders, "", "peerA"), "");
    EXPECT_EQ(session_of(api, kNoHeaders, "not json", "peerA"), "");
    EXPECT_EQ(session_of(api, kNoHeaders, R"({"model":"m"})", "peerA"), "");
    EXPECT_EQ(session_of(api, HeaderLookup{}, R"({"messages":7,"metadata":{"user_id":5}})", "p"),
              "");
  }
}

}  // namespace
}  // namespace airlock::control
