#include "control/metering/sse.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace airlock::control {
namespace {

struct Parsed {
  std::vector<SseEvent> events;
  bool ok = true;
};

Parsed parse_chunks(const std::vector<std::string_view>& chunks,
                    std::size_t max = SseParser::kDefaultMaxEventBytes) {
  SseParser parser(max);
  Parsed out;
  for (std::string_view chunk : chunks) {
    out.ok = parser.feed(chunk, [&](const SseEvent& e) { out.events.push_back(e); }) && out.ok;
  }
  return out;
}

Parsed parse(std::string_view stream) {
  return parse_chunks({stream});
}

std::string with_line_ends(std::string_view lf_stream, std::string_view eol) {
  std::string out;
  for (char c : lf_stream) {
    if (c == '\n') {
      out += eol;
    } else {
      out += c;
    }
  }
  return out;
}

// A mix of the framings the providers use: unnamed OpenAI data lines, named Anthropic and
// Responses events, keep-alive comments, multi-line data, an id, and the [DONE] sentinel.
constexpr std::string_view kFixture =
    ": OPENROUTER PROCESSING\n"
    "\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n"
    "\n"
    "event: message_start\n"
    "data: {\"type\":\"message_start\"}\n"
    "\n"
    ": keepalive\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n"
    "\n"
    "id: 42\n"
    "data: first line\n"
    "data:second line\n"
    "data:  indented\n"
    "\n"
    "data: [DONE]\n"
    "\n";

std::vector<SseEvent> fixture_events() {
  return {
      {"", R"({"choices":[{"index":0,"delta":{"content":"Hi"}}]})", ""},
      {"message_start", R"({"type":"message_start"})", ""},
      {"ping", R"({"type": "ping"})", ""},
      {"", "first line\nsecond line\n indented", "42"},
      {"", "[DONE]", "42"},  // the last event id persists until replaced (WHATWG)
  };
}

TEST(SseLineEnd, FirstCrOrLfWhicheverComesFirst) {
  EXPECT_EQ(find_line_end("data: x\n"), 7u);
  EXPECT_EQ(find_line_end("data: x\r\n"), 7u);
  EXPECT_EQ(find_line_end("data: x\rdata: y\n"), 7u);
  EXPECT_EQ(find_line_end("a\nb\r"), 1u);
  EXPECT_EQ(find_line_end("no end"), std::string_view::npos);
  EXPECT_EQ(find_line_end(""), std::string_view::npos);
  EXPECT_EQ(find_line_end("\r"), 0u);
}

TEST(SseParser, ParsesFixtureEvents) {
  const Parsed p = parse(kFixture);
  EXPECT_TRUE(p.ok);
  EXPECT_EQ(p.events, fixture_events());
}

TEST(SseParser, CrLfAndCrLineEndsGiveSameEvents) {
  for (std::string_view eol : {"\r\n", "\r"}) {
    const Parsed p = parse(with_line_ends(kFixture, eol));
    EXPECT_TRUE(p.ok);
    EXPECT_EQ(p.events, fixture_events()) << "line end size " << eol.size();
  }
}

TEST(SseParser, SplitAtEveryBytePositionGivesSameEvents) {
  for (std::string_view eol : {"\n", "\r\n", "\r"}) {
    const std::string stream = with_line_ends(kFixture, eol);
    const std::string_view s = stream;
    for (std::size_t i = 0; i <= s.size(); ++i) {
      const Parsed p = parse_chunks({s.substr(0, i), s.substr(i)});
      ASSERT_EQ(p.events, fixture_events()) << "split at " << i << " eol size " << eol.size();
    }
  }
}

TEST(SseParser, OneByteChunksGiveSameEvents) {
  const std::string stream = with_line_ends(kFixture, "\r\n");
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < stream.size(); ++i)
    bytes.push_back(std::string_view(stream).substr(i, 1));
  EXPECT_EQ(parse_chunks(bytes).events, fixture_events());
}

TEST(SseParser, CommentsAloneDispatchNothing) {
  EXPECT_TRUE(parse(": keepalive\n\n: ping\n\n").events.empty());
}

TEST(SseParser, BlankLineWithoutDataResetsEventName) {
  const Parsed p = parse("event: orphan\n\ndata: x\n\n");
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_EQ(p.events[0].event, "");
  EXPECT_EQ(p.events[0].data, "x");
}

TEST(SseParser, FieldWithoutColonAndEmptyDataStillDispatch) {
  const Parsed p = parse("data\n\ndata:\n\n");
  ASSERT_EQ(p.events.size(), 2u);
  EXPECT_EQ(p.events[0].data, "");
  EXPECT_EQ(p.events[1].data, "");
}

TEST(SseParser, EventWithoutTerminatingBlankLineIsNotDispatched) {
  SseParser parser;
  int events = 0;
  EXPECT_TRUE(parser.feed("data: {\"partial\":true}\n", [&](const SseEvent&) { ++events; }));
  EXPECT_EQ(events, 0);
}

TEST(SseParser, BuffersOnlyTheIncompleteLineAndEvent) {
  SseParser parser;
  int events = 0;
  const auto count = [&](const SseEvent&) { ++events; };
  ASSERT_TRUE(parser.feed("data: one\n\ndata: two\n\n", count));
  EXPECT_EQ(events, 2);
  EXPECT_EQ(parser.buffered_bytes(), 0u);
  ASSERT_TRUE(parser.feed("data: thr", count));
  EXPECT_EQ(parser.buffered_bytes(), std::string_view("data: thr").size());
  ASSERT_TRUE(parser.feed("ee\n\n", count));
  EXPECT_EQ(events, 3);
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

TEST(SseParser, DataLineOf100KiBSurvivesSmallChunks) {
  const std::string payload(100 * 1024, 'x');
  const std::string stream = "event: response.completed\ndata: " + payload + "\n\n";
  std::vector<std::string_view> chunks;
  for (std::size_t i = 0; i < stream.size(); i += 1000) {
    chunks.push_back(std::string_view(stream).substr(i, 1000));
  }
  const Parsed p = parse_chunks(chunks);
  EXPECT_TRUE(p.ok);
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_EQ(p.events[0].event, "response.completed");
  EXPECT_EQ(p.events[0].data, payload);
}

TEST(SseParser, LineOverMaximumIsAnErrorAndStopsParsing) {
  SseParser parser(1024);
  int events = 0;
  const auto count = [&](const SseEvent&) { ++events; };
  const std::string long_line = "data: " + std::string(2000, 'y');
  EXPECT_FALSE(parser.feed(std::string_view(long_line).substr(0, 700), count) &&
               parser.feed(std::string_view(long_line).substr(700), count));
  ASSERT_TRUE(parser.error().has_value());
  EXPECT_LE(parser.buffered_bytes(), 1024u);
  EXPECT_FALSE(parser.feed("\n\ndata: later\n\n", count));
  EXPECT_EQ(events, 0);
}

TEST(SseParser, EventOverMaximumFromManyLinesIsAnError) {
  std::string stream;
  for (int i = 0; i < 40; ++i) stream += "data: " + std::string(50, 'z') + "\n";
  stream += "\n";
  const Parsed p = parse_chunks({stream}, 1024);
  EXPECT_FALSE(p.ok);
  EXPECT_TRUE(p.events.empty());
}

TEST(SseParser, LineJustUnderMaximumIsAccepted) {
  const std::string stream = "data: " + std::string(1000, 'w') + "\n\n";
  const Parsed p = parse_chunks({stream}, 1024);
  EXPECT_TRUE(p.ok);
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_EQ(p.events[0].data.size(), 1000u);
}

}  // namespace
}  // namespace airlock::control
