#include "control/metering/tool_results.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "control/metering/json_view.h"

// Request bodies are hand-written after the request shapes in shared/research/protocols.md
// (tool results: §0 table, §1-§4), as Claude Code, Codex and Gemini CLI send them: the whole
// conversation so far, ending with the results of the model's last calls.
namespace airlock::control {
namespace {

TEST(ToolResults, AnthropicTakesOnlyTheLastUserMessage) {
  constexpr std::string_view kBody = R"({"model":"claude-sonnet-4-6","max_tokens":32000,
    "system":[{"type":"text","text":"You are Claude Code."}],
    "messages":[
      {"role":"user","content":"fix the build"},
      {"role":"assistant","content":[{"type":"tool_use","id":"toolu_old","name":"Bash","input":{"command":"make"}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_old","content":"error: x"}]},
      {"role":"assistant","content":[
        {"type":"text","text":"Two things."},
        {"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"git status"}},
        {"type":"tool_use","id":"toolu_2","name":"Read","input":{"file_path":"/src/a.cc"}}]},
      {"role":"user","content":[
        {"type":"tool_result","tool_use_id":"toolu_1","content":"On branch main\nnothing to commit"},
        {"type":"tool_result","tool_use_id":"toolu_2","is_error":true,
         "content":[{"type":"text","text":"File does not exist."}]},
        {"type":"text","text":"also check the tests","cache_control":{"type":"ephemeral"}}]}]})";
  const std::vector<ToolResult> expected = {
      {"toolu_1", "Bash", "On branch main\nnothing to commit", false},
      {"toolu_2", "Read", R"([{"type":"text","text":"File does not exist."}])", true},
  };
  EXPECT_EQ(tool_results_from_request(Api::kAnthropicMessages, kBody), expected);
}

TEST(ToolResults, AnthropicFirstTurnAndAssistantLastHaveNone) {
  EXPECT_TRUE(tool_results_from_request(
                  Api::kAnthropicMessages,
                  R"({"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]})")
                  .empty());
  // A prefilled assistant turn ends the body; the results before it are not new.
  EXPECT_TRUE(
      tool_results_from_request(
          Api::kAnthropicMessages,
          R"({"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"x"}]},
                          {"role":"assistant","content":"{"}]})")
          .empty());
}

TEST(ToolResults, ChatTakesToolMessagesAfterTheLastAssistant) {
  constexpr std::string_view kBody = R"({"model":"gpt-5.5","messages":[
      {"role":"system","content":"You are a coding agent."},
      {"role":"user","content":"list files"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_0","type":"function","function":{"name":"shell","arguments":"{}"}}]},
      {"role":"tool","tool_call_id":"call_0","content":"old output"},
      {"role":"assistant","content":null,"tool_calls":[
        {"id":"call_1","type":"function","function":{"name":"shell","arguments":"{\"command\":[\"ls\"]}"}},
        {"id":"call_2","type":"custom","custom":{"name":"apply_patch","input":"*** Begin Patch"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"a.txt\nb.txt"},
      {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"Done!"}]}]})";
  const std::vector<ToolResult> expected = {
      {"call_1", "shell", "a.txt\nb.txt", false},
      {"call_2", "apply_patch", R"([{"type":"text","text":"Done!"}])", false},
  };
  EXPECT_EQ(tool_results_from_request(Api::kOpenAiChat, kBody), expected);
}

TEST(ToolResults, ResponsesTakesOutputItemsAfterTheLastModelItem) {
  // Codex with store=false: the whole history, the model's items included, on every turn.
  constexpr std::string_view kBody = R"({"model":"gpt-5.5","instructions":"You are Codex.",
    "input":[
      {"type":"message","role":"user","content":[{"type":"input_text","text":"run the tests"}]},
      {"type":"function_call","id":"fc_0","call_id":"call_0","name":"shell","arguments":"{}"},
      {"type":"function_call_output","call_id":"call_0","output":"old"},
      {"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAA"},
      {"type":"function_call","id":"fc_1","call_id":"call_1","name":"shell","arguments":"{\"command\":[\"bash\",\"-lc\",\"make test\"]}"},
      {"type":"custom_tool_call","id":"ctc_1","call_id":"call_2","name":"apply_patch","input":"*** Begin Patch"},
      {"type":"local_shell_call","id":"lsh_1","call_id":"call_3","status":"completed","action":{"type":"exec","command":["ls"]}},
      {"type":"function_call_output","call_id":"call_1","output":"{\"output\":\"ok\",\"metadata\":{\"exit_code\":0}}"},
      {"type":"custom_tool_call_output","call_id":"call_2","output":"Success. Updated the following files:\nM a.cc"},
      {"type":"local_shell_call_output","call_id":"call_3","output":[{"type":"input_text","text":"a.cc"}]},
      {"type":"message","role":"user","content":[{"type":"input_text","text":"then commit"}]}],
    "stream":true})";
  const std::vector<ToolResult> expected = {
      {"call_1", "shell", R"({"output":"ok","metadata":{"exit_code":0}})", false},
      {"call_2", "apply_patch", "Success. Updated the following files:\nM a.cc", false},
      {"call_3", "local_shell", R"([{"type":"input_text","text":"a.cc"}])", false},
  };
  EXPECT_EQ(tool_results_from_request(Api::kOpenAiResponses, kBody), expected);
}

TEST(ToolResults, ResponsesWithPreviousResponseIdHasOnlyNewItems) {
  const std::vector<ToolResult> expected = {{"call_7", "", "done", false}};
  EXPECT_EQ(tool_results_from_request(Api::kOpenAiResponses,
                                      R"({"previous_response_id":"resp_1","input":[
                  {"type":"function_call_output","call_id":"call_7","output":"done"}]})"),
            expected);
  EXPECT_TRUE(
      tool_results_from_request(Api::kOpenAiResponses, R"({"input":"just a question"})").empty());
}

TEST(ToolResults, GeminiTakesFunctionResponsesOfTheLastContent) {
  constexpr std::string_view kBody =
      R"({"systemInstruction":{"parts":[{"text":"You are Gemini CLI."}]},
    "contents":[
      {"role":"user","parts":[{"text":"what is here?"}]},
      {"role":"model","parts":[
        {"functionCall":{"id":"fc-1","name":"run_shell_command","args":{"command":"ls"}}},
        {"functionCall":{"name":"read_file","args":{"absolute_path":"/x"}}}]},
      {"role":"user","parts":[
        {"functionResponse":{"id":"fc-1","name":"run_shell_command","response":{"output":"a\nb"}}},
        {"functionResponse":{"name":"read_file","response":{"error":"not found"}}}]}]})";
  const std::vector<ToolResult> expected = {
      {"fc-1", "run_shell_command", R"({"output":"a\nb"})", false},
      {"", "read_file", R"({"error":"not found"})", true},
  };
  EXPECT_EQ(tool_results_from_request(Api::kGeminiGenerate, kBody), expected);
  const JsonDocument parsed(kBody);
  EXPECT_EQ(tool_results_from_json(Api::kGeminiGenerate, parsed.root()), expected);
}

TEST(ToolResults, MalformedBodiesGiveNothing) {
  for (const Api api :
       {Api::kOpenAiChat, Api::kOpenAiResponses, Api::kAnthropicMessages, Api::kGeminiGenerate}) {
    for (const std::string_view body :
         {"", "not json", "[]", "null", R"({"messages":"x","input":7,"contents":{}})",
          R"({"messages":[null,1,{"role":"tool","content":null}],"input":[null,{"type":5}],
              "contents":[{"parts":[{"functionResponse":7}]}]})",
          R"({"messages":[{"role":"user","content":[{"type":"tool_result"}]}]})"}) {
      const std::vector<ToolResult> results = tool_results_from_request(api, body);
      for (const ToolResult& r : results) EXPECT_TRUE(r.call_id.empty()) << body;
    }
  }
}

}  // namespace
}  // namespace airlock::control
