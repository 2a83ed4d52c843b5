// Guardrail scan rate with every builtin set on a realistic 64 KiB chat request (English, code,
// shell and JSON tool results, JSON-escaped as a client sends it) that contains no secret, the
// common case. Block mode is the prompt scan; a body with escapes is decoded before it is
// scanned, so it is measured as sent, with its backslashes replaced (no decoding), and with
// non-ASCII text escaped as \uXXXX too. Stream mode feeds the same text as tool-call arguments in
// SSE-sized fragments and whole.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/guardrails/guardrails.h"

namespace {

using airlock::control::guardrails::Guardrails;
using airlock::control::guardrails::ToolCallScanner;

constexpr std::size_t kPromptBytes = 64 * 1024;

const char* const kEnglish =
    "The deployment failed again last night, and the on-call engineer traced it to a race "
    "between the migration job and the readiness probe. Could you review the patch below, "
    "explain why the retry loop does not back off, and suggest a test that reproduces it? "
    "Contact the release manager before Friday if the fix needs a schema change. ";

const char* const kCode =
    "#include <vector>\n"
    "template <typename T> T sum(const std::vector<T>& v) {\n"
    "  T total{};\n"
    "  for (const auto& x : v) total += x;  // 4111 is not a card, 123-45 not an SSN\n"
    "  return total;\n"
    "}\n"
    "def retry(fn, attempts=5, delay=0.2):\n"
    "    for i in range(attempts):\n"
    "        try:\n"
    "            return fn()\n"
    "        except TimeoutError as e:\n"
    "            time.sleep(delay * 2 ** i)\n"
    "$ git push origin feature/retry && rm -rf ./build && curl -sS https://ci.example/api\n";

nlohmann::json tool_result(int i) {
  return {{"id", i},
          {"status", i % 3 == 0 ? "failed" : "ok"},
          {"duration_ms", 1200 + i * 7},
          {"path", "src/service/handler_" + std::to_string(i) + ".cc"},
          {"log", "connect to db-" + std::to_string(i % 4) + ".internal:5432 took 38ms"}};
}

const char* const kNonAscii =
    "Le déploiement a échoué cette nuit ; können Sie den Patch prüfen? デプロイが失敗しました。 ";

enum class Spelling {
  kAsSent,     // "\n" and "\"" throughout, as JSON encoders write it
  kNoEscapes,  // every backslash replaced by '/'
  kAsciiOnly,  // plus non-ASCII text, written as \uXXXX as Python's json.dumps does by default
};

std::string realistic_prompt(Spelling spelling = Spelling::kAsSent) {
  nlohmann::json messages = nlohmann::json::array();
  messages.push_back({{"role", "system"}, {"content", "You are a careful coding assistant."}});
  const std::string user =
      std::string(spelling == Spelling::kAsciiOnly ? kNonAscii : "") + kEnglish + kCode;
  for (int turn = 0;; ++turn) {
    nlohmann::json results = nlohmann::json::array();
    for (int i = 0; i < 8; ++i) results.push_back(tool_result(turn * 8 + i));
    messages.push_back({{"role", "user"}, {"content", user}});
    messages.push_back({{"role", "tool"}, {"content", results.dump()}});
    const nlohmann::json body = {{"model", "gpt-4.1"}, {"stream", true}, {"messages", messages}};
    std::string text = body.dump(-1, ' ', spelling == Spelling::kAsciiOnly);
    if (text.size() >= kPromptBytes) {
      text.resize(kPromptBytes);  // a byte count, not a document, is what the scan rate needs
      if (spelling == Spelling::kNoEscapes) std::replace(text.begin(), text.end(), '\\', '/');
      return text;
    }
  }
}

std::shared_ptr<const Guardrails> all_builtins() {
  airlock::policy::GuardrailSpec spec;
  spec.name = "all";
  spec.from = {"*"};
  spec.builtin = {"provider_keys", "private_keys", "cloud_credentials", "personal_data",
                  "dangerous_commands"};
  spec.prompt = airlock::policy::PromptAction::kBlock;
  spec.response = airlock::policy::ResponseAction::kCut;
  std::string error;
  auto g = Guardrails::compile(std::vector{spec}, &error);
  if (!g) throw std::runtime_error(error);
  return g;
}

void scan_prompt(benchmark::State& state, Spelling spelling) {
  const auto guardrails = all_builtins();
  std::string prompt = realistic_prompt(spelling);
  const std::size_t index = 0;
  for (auto _ : state) {
    auto verdict = guardrails->scan_prompt({&index, 1}, prompt);
    if (verdict.blocked) state.SkipWithError("clean prompt blocked");
    benchmark::DoNotOptimize(verdict);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * prompt.size()));
}

void BM_PromptBlockMode(benchmark::State& state) {
  scan_prompt(state, Spelling::kAsSent);
}
BENCHMARK(BM_PromptBlockMode);

void BM_PromptBlockModeNoEscapes(benchmark::State& state) {
  scan_prompt(state, Spelling::kNoEscapes);
}
BENCHMARK(BM_PromptBlockModeNoEscapes);

void BM_PromptBlockModeAsciiOnly(benchmark::State& state) {
  scan_prompt(state, Spelling::kAsciiOnly);
}
BENCHMARK(BM_PromptBlockModeAsciiOnly);

// Arg: fragment size (tool-call argument deltas are typically tens of bytes).
void BM_ToolCallStreamMode(benchmark::State& state) {
  const auto guardrails = all_builtins();
  const std::string text = realistic_prompt();
  const std::string_view view(text);
  const auto fragment = static_cast<std::size_t>(state.range(0));
  const std::size_t index = 0;
  for (auto _ : state) {
    ToolCallScanner scanner(guardrails, {&index, 1});
    for (std::size_t at = 0; at < view.size(); at += fragment)
      scanner.feed("call_0", view.substr(at, fragment));
    scanner.close();
    if (scanner.cut()) state.SkipWithError("clean text cut");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ToolCallStreamMode)->Arg(32)->Arg(256)->Arg(kPromptBytes);

}  // namespace

BENCHMARK_MAIN();
