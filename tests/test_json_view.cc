#include "control/metering/json_view.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "control/metering/json_parse.h"

// The metering parsers read provider answers through JsonView: whatever a provider or a
// compatible upstream sends, a read gives a value or nothing, never a throw or a crash.
namespace airlock::control {
namespace {

TEST(JsonView, MembersNestedMembersAndArraysRead) {
  const JsonDocument doc(
      R"({"model":"gpt-5.5","usage":{"prompt_tokens":12,"details":{"cached":3}},"list":[1,"two",{"n":3}]})");
  const JsonView root = doc.root();
  ASSERT_TRUE(root.is_object());
  EXPECT_EQ(root.member("model").text(), "gpt-5.5");
  EXPECT_EQ(root.member("usage").member("prompt_tokens").count(), 12u);
  EXPECT_EQ(root.member("usage", "details").member("cached").count(), 3u);
  std::vector<std::string> raw;
  for (const JsonView item : root.member("list").items()) raw.push_back(item.raw());
  EXPECT_EQ(raw, (std::vector<std::string>{"1", "two", R"({"n":3})"}));
  EXPECT_EQ(root.member("list").size(), 3u);
  EXPECT_EQ(root.size(), 3u);
}

TEST(JsonView, AbsentNullAndMistypedValuesReadAsNothing) {
  const JsonDocument doc(R"({"gone":null,"text":"x","n":-4,"f":1.5,"big":18446744073709551615})");
  const JsonView root = doc.root();
  EXPECT_FALSE(root.member("missing"));
  EXPECT_FALSE(root.member("gone"));
  EXPECT_FALSE(root.member("text").member("inner"));
  EXPECT_EQ(root.member("n").text(), "");
  EXPECT_EQ(root.member("n").count(), std::nullopt);
  EXPECT_EQ(root.member("n").integer(), -4);
  EXPECT_EQ(root.member("f").count(), std::nullopt);
  EXPECT_EQ(root.member("f").integer(), std::nullopt);
  EXPECT_EQ(root.member("big").count(), 18446744073709551615u);
  EXPECT_EQ(root.member("big").integer(), std::nullopt);
  int items = 0;
  for (const JsonView item : root.member("text").items()) items += item ? 1 : 0;
  for (const JsonView item : root.member("missing").items()) items += item ? 1 : 0;
  EXPECT_EQ(items, 0);
  EXPECT_EQ(root.member("missing").raw(), "");
  EXPECT_EQ(root.member("missing").size(), 0u);
}

TEST(JsonView, BooleansDecimalsAndMembersNullIncludedRead) {
  const JsonDocument doc(
      R"({"stream":true,"off":false,"cap":100.0,"exp":1e3,"n":100,"s":"1.5","gone":null})");
  const JsonView root = doc.root();
  EXPECT_EQ(root.member("stream").boolean(), true);
  EXPECT_EQ(root.member("off").boolean(), false);
  EXPECT_EQ(root.member("n").boolean(), std::nullopt);
  EXPECT_EQ(root.member("gone").boolean(), std::nullopt);
  // Protobuf JSON writes 100.0 for a count; an integer is not a decimal, nor is a string.
  EXPECT_EQ(root.member("cap").decimal(), 100.0);
  EXPECT_EQ(root.member("exp").decimal(), 1000.0);
  EXPECT_EQ(root.member("n").decimal(), std::nullopt);
  EXPECT_EQ(root.member("s").decimal(), std::nullopt);
  // A null member reads as absent but is there: the budget replaces it rather than adding one.
  EXPECT_TRUE(root.contains("gone"));
  EXPECT_FALSE(root.contains("missing"));
  EXPECT_FALSE(root.member("stream").contains("stream"));
}

TEST(JsonView, MembersComeInDocumentOrderRepeatsIncluded) {
  const JsonDocument doc(R"({"b":1,"a":{"x":null},"b":2})");
  std::vector<std::string> seen;
  for (const auto [key, value] : doc.root().members()) {
    seen.push_back(std::string(key) + "=" + (value ? value.raw() : "absent"));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"b=1", R"(a={"x":null})", "b=2"}));
  int count = 0;
  for (const auto member : doc.root().member("b").members()) count += member.second ? 1 : 0;
  for (const auto member : doc.root().member("missing").members()) count += member.second ? 1 : 0;
  EXPECT_EQ(count, 0);
}

TEST(JsonView, ADocumentTellsANullRootFromText) {
  const JsonDocument null_document("null");
  EXPECT_TRUE(null_document.valid());
  EXPECT_FALSE(null_document.root());
  EXPECT_FALSE(JsonDocument("nul").valid());
  EXPECT_TRUE(JsonDocument(R"({"seed":123456789012345678901234567890})").valid());
}

TEST(JsonView, ARepeatedKeyReadsItsLastValueAsTheRequestParseDoes) {
  constexpr std::string_view kText = R"({"model":"first","model":"second"})";
  const JsonDocument doc(kText);
  EXPECT_EQ(doc.root().member("model").text(), parse_json(kText)["model"]);
}

TEST(JsonView, RawKeepsTheProvidersMemberOrderAndEscapes) {
  const JsonDocument doc(R"({"args": {"z": 1, "a": ["q\"uote", "line\nbreak", "é"], "m": {}}})");
  EXPECT_EQ(doc.root().member("args").raw(), R"({"z":1,"a":["q\"uote","line\nbreak","é"],"m":{}})");
}

TEST(JsonView, TextThatIsNotJsonHasNoRoot) {
  for (const std::string_view text : {"", "{", "{\"usage\":", "not json", "[1,]"}) {
    const JsonDocument doc(text);
    EXPECT_FALSE(doc.root()) << text;
  }
}

TEST(JsonView, IntegersPastSixtyFourBitsStillParse) {
  const JsonDocument doc(R"({"seed":123456789012345678901234567890,"usage":{"total":7}})");
  EXPECT_EQ(doc.root().member("usage").member("total").count(), 7u);
  EXPECT_FALSE(doc.root().member("seed").count());
}

TEST(JsonView, DocumentsNestedPastTheLimitHaveNoRoot) {
  // Also when an integer past 64 bits sends the parse to nlohmann's fallback first.
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  EXPECT_FALSE(JsonDocument(deep).root());
  EXPECT_FALSE(JsonDocument("[123456789012345678901234567890," + deep + "]").root());
}

TEST(JsonView, DocumentsAliveTogetherEachKeepTheirValues) {
  // The thread's reused parser serves one document at a time; a second one, or a parse_json
  // while a document lives, must not overwrite what the first one reads.
  const JsonDocument outer(R"({"name":"outer"})");
  {
    const JsonDocument inner(R"({"name":"inner"})");
    EXPECT_EQ(parse_json(R"({"name":"tree"})")["name"], "tree");
    EXPECT_EQ(inner.root().member("name").text(), "inner");
  }
  EXPECT_EQ(outer.root().member("name").text(), "outer");
  const JsonDocument after(R"({"name":"after"})");
  EXPECT_EQ(after.root().member("name").text(), "after");
  EXPECT_EQ(outer.root().member("name").text(), "outer");
}

TEST(JsonView, ADocumentLargerThanTheReusedParserReads) {
  std::string text = R"({"pad":")" + std::string(3u << 20, 'x') + R"(","usage":{"n":5}})";
  const JsonDocument doc(text);
  EXPECT_EQ(doc.root().member("usage").member("n").count(), 5u);
  EXPECT_EQ(doc.root().member("pad").text().size(), 3u << 20);
}

}  // namespace
}  // namespace airlock::control
