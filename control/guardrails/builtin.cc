#include "control/guardrails/builtin.h"

#include <array>
#include <cstddef>

namespace airlock::control::guardrails {
namespace {

// Token bodies are long random strings; the minimum lengths keep ordinary words such as
// "sk-learn" or "xoxo" from matching. The OpenAI alternative without a project prefix takes no
// '-', so Anthropic's "sk-ant-..." is reported once, by its own pattern.
constexpr std::array kProviderKeys = {
    BuiltinPattern{"provider_keys/openai",
                   R"re(\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,}))re"},
    BuiltinPattern{"provider_keys/anthropic",
                   R"re(\bsk-ant-[a-z]{2,6}[0-9]{2}-[A-Za-z0-9_-]{20,})re"},
    BuiltinPattern{"provider_keys/google", R"re(\bAIza[0-9A-Za-z_-]{35})re"},
    BuiltinPattern{"provider_keys/github",
                   R"re(\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}))re"},
    BuiltinPattern{"provider_keys/slack", R"re(\bxox[abeprs]-[0-9]{6,}-[0-9A-Za-z-]{8,})re"},
    BuiltinPattern{"provider_keys/stripe", R"re(\b[rs]k_live_[0-9A-Za-z]{20,})re"},
};

// The match runs on over the base64 body (and the "\n" escapes a JSON string gives it), so that
// redaction covers the key material rather than only its header line.
constexpr std::array kPrivateKeys = {
    BuiltinPattern{
        "private_keys/pem",
        R"re(-----BEGIN (?:RSA |EC |DSA |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----[A-Za-z0-9+/=\s\\]*)re"},
    BuiltinPattern{"private_keys/openssh",
                   R"re(-----BEGIN OPENSSH PRIVATE KEY-----[A-Za-z0-9+/=\s\\]*)re"},
};

// Inside a JSON request body quotes around a key name arrive escaped (\"), hence [\\"'].
constexpr std::array kCloudCredentials = {
    BuiltinPattern{"cloud_credentials/aws_access_key_id", R"re(\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)re"},
    BuiltinPattern{
        "cloud_credentials/aws_secret_access_key",
        R"re(\baws_?secret_?access_?key[\\"']{0,2}\s*[:=]\s*[\\"']{0,2}[A-Za-z0-9/+]{40})re", true},
    BuiltinPattern{"cloud_credentials/gcp_service_account",
                   R"re(\bprivate_key_id\\?"\s*:\s*\\?"[0-9a-f]{40}\b)re"},
    BuiltinPattern{"cloud_credentials/azure_storage_key",
                   R"re(\bAccountKey=[A-Za-z0-9+/]{86}==)re"},
};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool luhn_match(std::string_view match) {
  return luhn_valid(match);
}

// Card numbers: Visa, Mastercard (51-55, 2221-2720), Discover and Amex prefixes, written solid or
// in groups split by one kind of separator, then the Luhn check (which also bounds the length).
// Digit runs are the costliest part of a scan, so the shape stays loose and Luhn filters. Area
// numbers 000, 666 and 9xx are never issued as SSNs, so they are left out.
constexpr std::array kPersonalData = {
    BuiltinPattern{"personal_data/email",
                   R"re([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b)re"},
    BuiltinPattern{
        "personal_data/us_ssn",
        R"re(\b(?:00[1-9]|0[1-9][0-9]|[1-578][0-9]{2}|6[0-5][0-9]|66[0-57-9]|6[7-9][0-9])-(?:0[1-9]|[1-9][0-9])-(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})\b)re"},
    BuiltinPattern{
        "personal_data/credit_card",
        R"re(\b(?:4[0-9]{3}|5[1-5][0-9]{2}|2[2-7][0-9]{2}|6011|65[0-9]{2}|3[47][0-9]{2})(?:[0-9]{9,15}|(?: [0-9]{4}){3}|(?:-[0-9]{4}){3}| [0-9]{6} [0-9]{5}|-[0-9]{6}-[0-9]{5})\b)re",
        false, luhn_match},
};

// A target path ends at whitespace, a shell separator, a closing quote (escaped in JSON) or the
// end of the text, so "rm -rf /" matches and "rm -rf /tmp/x" does not.
constexpr std::array kDangerousCommands = {
    BuiltinPattern{
        "dangerous_commands/rm_rf_root",
        R"re(\brm\s+(?:-{1,2}[A-Za-z-]+\s+)*-[A-Za-z]*[rR][A-Za-z]*\s+(?:-{1,2}[A-Za-z-]+\s+)*/\*?(?:[\s;&|)"\'\\]|$))re"},
    BuiltinPattern{
        "dangerous_commands/rm_rf_home",
        R"re(\brm\s+(?:-{1,2}[A-Za-z-]+\s+)*-[A-Za-z]*[rR][A-Za-z]*\s+(?:-{1,2}[A-Za-z-]+\s+)*(?:~|\$HOME|\$\{HOME\})/?\*?(?:[\s;&|)"\'\\]|$))re"},
    BuiltinPattern{"dangerous_commands/mkfs", R"re(\bmkfs(?:\.[a-z0-9]+)?\s[^\n;|&]*/dev/)re"},
    BuiltinPattern{"dangerous_commands/dd_to_disk",
                   R"re(\bdd\s[^\n;|&]*\bof=/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|disk))re"},
    BuiltinPattern{"dangerous_commands/fork_bomb",
                   R"re(:\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:)re"},
    BuiltinPattern{"dangerous_commands/curl_pipe_shell",
                   R"re(\b(?:curl|wget)\s[^\n|;]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b)re"},
    BuiltinPattern{
        "dangerous_commands/chmod_777_root",
        R"re(\bchmod\s+(?:-[A-Za-z]*R[A-Za-z]*\s+|--recursive\s+)777\s+/\*?(?:[\s;&|)"\'\\]|$))re"},
    BuiltinPattern{
        "dangerous_commands/git_force_push_main",
        R"re(\bgit\s+push\s(?:[^\n;|&]*\s)?(?:(?:--force(?:-with-lease)?|-f)\s(?:[^\n;|&]*[\s:+])?(?:main|master)(?:[\s;&|)"'\\]|$)|(?:main|master)\s(?:[^\n;|&]*\s)?(?:--force(?:-with-lease)?|-f)\b|\+(?:refs/heads/)?(?:main|master)(?:[\s;&|)"'\\]|$)))re"},
};

constexpr std::array<std::string_view, 5> kSetNames = {
    "provider_keys", "private_keys", "cloud_credentials", "personal_data", "dangerous_commands"};

}  // namespace

std::span<const BuiltinPattern> builtin_set(std::string_view name) {
  if (name == "provider_keys") return kProviderKeys;
  if (name == "private_keys") return kPrivateKeys;
  if (name == "cloud_credentials") return kCloudCredentials;
  if (name == "personal_data") return kPersonalData;
  if (name == "dangerous_commands") return kDangerousCommands;
  return {};
}

std::span<const std::string_view> builtin_set_names() {
  return kSetNames;
}

bool luhn_valid(std::string_view text) {
  int sum = 0;
  std::size_t digits = 0;
  for (auto it = text.rbegin(); it != text.rend(); ++it) {
    if (*it == ' ' || *it == '-') continue;
    if (!is_digit(*it)) return false;
    int d = *it - '0';
    if (digits % 2 == 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    ++digits;
  }
  return digits >= 13 && digits <= 19 && sum % 10 == 0;
}

}  // namespace airlock::control::guardrails
