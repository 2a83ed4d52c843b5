#include "control/metering/json_parse.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

// parse_json must be a drop-in for nlohmann's parse: every consumer reads its tree with
// nlohmann's accessors, so each case is compared with nlohmann's own result, type for type.
namespace airlock::control {
namespace {

using nlohmann::json;

json reference(std::string_view text) {
  return json::parse(text.begin(), text.end(), nullptr, false);
}

// Equal values of equal types all the way down (nlohmann's == calls 1u and 1 equal). The one
// allowed difference: "-0", a signed integer to nlohmann, is unsigned 0 from simdjson's tape.
::testing::AssertionResult same_tree(const json& got, const json& want, const std::string& at) {
  const bool minus_zero = want.is_number_integer() && !want.is_number_unsigned() && want == 0 &&
                          got.is_number_unsigned() && got == 0;
  if (got.type() != want.type() && !minus_zero) {
    return ::testing::AssertionFailure()
           << at << ": type " << got.type_name() << " (" << got.dump() << "), want "
           << want.type_name() << " (" << want.dump() << ")";
  }
  switch (want.type()) {
    case json::value_t::object: {
      if (got.size() != want.size()) {
        return ::testing::AssertionFailure()
               << at << ": " << got.size() << " members, want " << want.size();
      }
      for (auto it = want.begin(); it != want.end(); ++it) {
        if (!got.contains(it.key())) {
          return ::testing::AssertionFailure() << at << ": no member " << it.key();
        }
        auto inner = same_tree(got.at(it.key()), it.value(), at + "." + it.key());
        if (!inner) return inner;
      }
      return ::testing::AssertionSuccess();
    }
    case json::value_t::array: {
      if (got.size() != want.size()) {
        return ::testing::AssertionFailure()
               << at << ": " << got.size() << " items, want " << want.size();
      }
      for (std::size_t i = 0; i < want.size(); ++i) {
        auto inner = same_tree(got[i], want[i], at + "[" + std::to_string(i) + "]");
        if (!inner) return inner;
      }
      return ::testing::AssertionSuccess();
    }
    case json::value_t::number_float: {
      const double a = got.get<double>(), b = want.get<double>();
      if (std::memcmp(&a, &b, sizeof a) != 0) {
        return ::testing::AssertionFailure() << at << ": " << a << ", want " << b;
      }
      return ::testing::AssertionSuccess();
    }
    case json::value_t::discarded:
      return ::testing::AssertionSuccess();
    default:
      if (got != want) {
        return ::testing::AssertionFailure()
               << at << ": " << got.dump() << ", want " << want.dump();
      }
      return ::testing::AssertionSuccess();
  }
}

void expect_like_nlohmann(std::string_view text) {
  EXPECT_TRUE(same_tree(parse_json(text), reference(text), "$")) << "text: " << text;
}

TEST(JsonParse, ScalarsAndContainersMatchNlohmann) {
  for (const char* text : {"{}",
                           "[]",
                           "null",
                           "true",
                           "false",
                           "0",
                           "1",
                           "-1",
                           "-0",
                           "0.0",
                           "-0.0",
                           "1.5",
                           "-2.5e-3",
                           "1E2",
                           "1e400",
                           "4.9e-324",
                           "123456789012345678",
                           "9223372036854775807",
                           "9223372036854775808",
                           "-9223372036854775808",
                           "-9223372036854775809",
                           "18446744073709551615",
                           "18446744073709551616",
                           R"("")",
                           R"("plain")",
                           R"("\"\\\/\b\f\n\r\t")",
                           R"("\u00e9\u4e2d\ud83d\ude00")",
                           "\"caf\xc3\xa9\"",
                           "\xef\xbb\xbf{\"bom\":1}",
                           R"("nul\u0000inside")",
                           R"({"a":1,"a":2})",
                           R"({"b":[1,{"c":null}],"a":{"d":[]}})",
                           " \t\r\n{ \"x\" : [ 1 , 2 ] } \n",
                           R"([1,-1,1.0,"1",true,null,[],{}])"}) {
    expect_like_nlohmann(text);
  }
}

TEST(JsonParse, TextThatIsNotJsonIsDiscarded) {
  for (const std::string& text : {
           std::string(""),         std::string("{"),           std::string(R"({"a":})"),
           std::string("[1,]"),     std::string(R"("\x")"),     std::string("\"a\x01\""),
           std::string("\"\xff\""), std::string(R"("\ud800")"), std::string(R"("\udc00x")"),
           std::string("{} x"),     std::string("NaN"),         std::string("01"),
           std::string("1."),       std::string("'a'"),         std::string("{\"a\" 1}"),
           std::string("[1 2]"),    std::string("tru"),         std::string("\"unterminated"),
           std::string(1, '\0'),
       }) {
    EXPECT_TRUE(parse_json(text).is_discarded()) << "text: " << text;
    EXPECT_TRUE(reference(text).is_discarded()) << "text: " << text;
  }
}

std::string nested(int depth, std::string_view inner = "1") {
  return std::string(depth, '[') + std::string(inner) + std::string(depth, ']');
}

TEST(JsonParse, NestingUpToTheLimitParsesAndDeeperIsRefused) {
  EXPECT_EQ(parse_json(nested(kMaxJsonDepth)).dump(), nested(kMaxJsonDepth));
  EXPECT_FALSE(nests_too_deep(nested(kMaxJsonDepth)));
  for (const int depth : {kMaxJsonDepth + 1, 400000}) {
    EXPECT_TRUE(nests_too_deep(nested(depth))) << depth;
    EXPECT_TRUE(parse_json(nested(depth)).is_discarded()) << depth;
  }
  // simdjson refuses an integer past 64 bits before it reaches the depth, so the fallback to
  // nlohmann's parser must check the depth itself.
  EXPECT_TRUE(parse_json("[123456789012345678901234567890," + nested(5000) + "]").is_discarded());
  EXPECT_FALSE(parse_json("[123456789012345678901234567890," + nested(50) + "]").is_discarded());
}

TEST(JsonParse, BracketsInsideStringsAreNotNesting) {
  // An escaped backslash, then an escaped quote: the string goes on past both.
  const std::string text = R"({"a":")" + std::string(5000, '[') + R"(\\\"{{{"})";
  EXPECT_FALSE(nests_too_deep(text));
  EXPECT_TRUE(parse_json(text).is_object());
  // A string ending in an escaped backslash ends there, so the brackets after it count (the
  // object adds one level to the array's).
  EXPECT_TRUE(nests_too_deep(R"({"a":"\\","b":)" + nested(kMaxJsonDepth) + "}"));
  EXPECT_FALSE(nests_too_deep(R"({"a":"\\","b":)" + nested(kMaxJsonDepth - 1) + "}"));
}

std::string agent_request(std::size_t approx_bytes) {
  json request = {{"model", "claude-sonnet-4-6"},
                  {"max_tokens", 32000},
                  {"stream", true},
                  {"metadata", {{"user_id", "user_ab_account_cd_session_ef"}}},
                  {"system", {{{"type", "text"}, {"text", "You are a coding agent."}}}},
                  {"messages", json::array()}};
  std::size_t bytes = request.dump().size();
  for (int turn = 0; bytes < approx_bytes; ++turn) {
    const std::string id = "toolu_" + std::to_string(turn);
    request["messages"].push_back(
        {{"role", "assistant"},
         {"content",
          {{{"type", "tool_use"},
            {"id", id},
            {"name", "Bash"},
            {"input", {{"command", "ls -la src/" + std::to_string(turn)}}}}}}});
    request["messages"].push_back(
        {{"role", "user"},
         {"content",
          {{{"type", "tool_result"},
            {"tool_use_id", id},
            {"content", std::string(2000, 'a' + turn % 26) + "\n\u00e9\t\"quoted\""}}}}});
    bytes += request["messages"][request["messages"].size() - 2].dump().size() +
             request["messages"].back().dump().size() + 2;
  }
  return request.dump();
}

TEST(JsonParse, AgentRequestsMatchNlohmannBelowAndAboveTheReusedBuffers) {
  for (const std::size_t size :
       {std::size_t{4} << 10, std::size_t{200} << 10, std::size_t{3} << 20}) {
    const std::string text = agent_request(size);
    ASSERT_GE(text.size(), size);
    expect_like_nlohmann(text);
  }
  // A small document after a large one on the same thread: the kept buffers hold no stale tail.
  expect_like_nlohmann(R"({"model":"m"})");
}

// Byte flips, insertions and truncations of valid documents: whatever nlohmann accepts or
// refuses, parse_json must agree with it and build the same tree.
TEST(JsonParse, MutatedDocumentsAgreeWithNlohmann) {
  const std::vector<std::string> seeds = {
      R"({"model":"gpt-5.5","messages":[{"role":"user","content":"hi \u00e9"}],"stream":true,)"
      R"("max_completion_tokens":16,"temperature":0.7,"n":-1,"stop":null})",
      R"([0,-0,1e5,-12.5E-3,18446744073709551615,9223372036854775808,"\ud83d\ude00",[[{}]]])",
      agent_request(2048),
  };
  const std::string alphabet = "{}[]\",:0123456789-+.eE \\/ubfnrtaxlsTFN\x01\x7f\xc3\xa9\xff";
  std::mt19937 rng(20261127);
  int valid = 0, invalid = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text = seeds[i % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const std::size_t at = rng() % text.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 4) {
        case 0:
          text[at] = c;
          break;
        case 1:
          text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        case 2:
          text.erase(at, 1);
          break;
        default:
          text.resize(at);
          break;
      }
    }
    const json want = reference(text);
    (want.is_discarded() ? invalid : valid)++;
    ASSERT_TRUE(same_tree(parse_json(text), want, "$")) << "text: " << text;
  }
  // Both outcomes must have been exercised for the comparison to mean anything.
  EXPECT_GT(valid, 1000);
  EXPECT_GT(invalid, 1000);
}

}  // namespace
}  // namespace airlock::control
