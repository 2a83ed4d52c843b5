// libFuzzer target for the policy reader and compiler: the text an operator pushes with
// `airlockctl policy push`, which must be rejected with an error, never crash the control plane,
// and never reach a data plane unless the data plane can load it.
//
// The input is the policy text. Checks, beyond crashes and sanitizer reports:
// - parse_document (the control plane's reader, errors with file and line) and
//   compile_policy_json (the same reader, errors with the JSON path) accept the same policies;
// - an accepted policy compiles, and the buffer passes load_policy, the data plane's check;
// - a rejection says why, and parse_document's names the file;
// - no error quotes a peer's preshared key, a webhook's secret or a provider's key as written in
//   the policy.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy/document.h"
#include "policy/json.h"
#include "policy/policy.h"

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_policy: %s: %s\n", what, detail.c_str());
  std::abort();
}

void collect_secret(const nlohmann::json& holder, const char* key, std::vector<std::string>& out) {
  if (!holder.is_object()) return;
  const auto it = holder.find(key);
  // Shorter values would match unrelated text in an error by chance.
  if (it != holder.end() && it->is_string() && it->get_ref<const std::string&>().size() >= 8) {
    out.push_back(it->get<std::string>());
  }
}

// The secret values written in the policy, found the way a reader of the text would find them.
std::vector<std::string> secrets_in(std::string_view text) {
  std::vector<std::string> secrets;
  const nlohmann::json policy = nlohmann::json::parse(text, nullptr, false, true);
  if (!policy.is_object()) return secrets;
  for (const char* section : {"peers", "webhooks", "providers"}) {
    const auto list = policy.find(section);
    if (list == policy.end() || !list->is_array()) continue;
    for (const nlohmann::json& entry : *list) {
      collect_secret(entry, "preshared_key", secrets);
      collect_secret(entry, "secret", secrets);
      collect_secret(entry, "key", secrets);
    }
  }
  return secrets;
}

std::string errors_of(std::string_view text) {
  std::string document_error;
  std::string compile_error;
  airlock::policy::parse_document(text, "policy.json", &document_error);
  airlock::policy::compile_policy_json(text, &compile_error);
  return document_error + "\n" + compile_error;
}

// A secret's own text may also be words an error uses anyway ("invalid port"), so each secret
// that occurs once in the text is replaced by a marker that no error could contain by chance: if
// the marker shows up in the errors, they quote whatever stands in the secret's place.
void check_quiet(std::string_view text) {
  for (const std::string& secret : secrets_in(text)) {
    const std::size_t at = text.find(secret);
    if (at == std::string_view::npos || text.find(secret, at + 1) != std::string_view::npos) {
      continue;
    }
    std::string marker;
    while (marker.size() < secret.size()) marker += "Qz7Kx";
    marker.resize(secret.size());
    std::string marked(text);
    marked.replace(at, secret.size(), marker);
    const std::string errors = errors_of(marked);
    if (errors.find(marker) != std::string::npos) fail("an error quotes a secret", errors);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(bytes), size);
  std::string document_error;
  const auto document = airlock::policy::parse_document(text, "policy.json", &document_error);
  std::string compile_error;
  const auto compiled = airlock::policy::compile_policy_json(text, &compile_error);

  if (document.has_value() != compiled.has_value()) {
    fail("parse_document and compile_policy_json disagree",
         document ? compile_error : document_error);
  }
  if (!document) {
    if (document_error.rfind("policy.json", 0) != 0) fail("error without the file", document_error);
    if (compile_error.empty()) fail("compile_policy_json failed without an error", "");
    check_quiet(text);
    return 0;
  }
  std::string error;
  const auto buffer = airlock::policy::compile(*document, &error);
  if (!buffer) fail("an accepted document does not compile", error);
  if (!airlock::policy::load_policy(std::span<const uint8_t>(*buffer), &error)) {
    fail("the data plane would refuse an accepted policy", error);
  }
  if (!airlock::policy::load_policy(std::span<const uint8_t>(*compiled), &error)) {
    fail("the data plane would refuse compile_policy_json's buffer", error);
  }
  return 0;
}
