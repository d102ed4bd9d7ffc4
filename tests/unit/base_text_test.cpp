// The UTF-8 sanitizer, the terminal escaper and the JSON line writer (src/base/text.h).
// Expected replacements are those of Python's bytes.decode("utf-8", "replace") (maximal subparts).
#include "base/text.h"

#include <gtest/gtest.h>

using namespace why502::base;

namespace {

const std::string R = "\xEF\xBF\xBD"; // U+FFFD

TEST(Utf8, ValidTextIsKeptByteForByte) {
  for (std::string s : {std::string(), std::string("plain ascii"), std::string("caf\xC3\xA9"),
                        std::string("\xE2\x82\xAC 3 bytes"), std::string("\xF0\x9F\x98\x80 4 bytes"),
                        std::string("\xF4\x8F\xBF\xBF"), std::string("\xED\x9F\xBF"), // U+10FFFF, U+D7FF
                        std::string("\xEE\x80\x80"), std::string("nul\0inside", 10)}) {
    EXPECT_TRUE(is_valid_utf8(s)) << s;
    EXPECT_EQ(valid_utf8(s), s);
  }
}

TEST(Utf8, TheRequestFromTheIssue) {
  EXPECT_FALSE(is_valid_utf8("/caf\xE9\xFF"));
  EXPECT_EQ(valid_utf8("/caf\xE9\xFF"), "/caf" + R + R);
}

TEST(Utf8, InvalidLeadBytesAreOneReplacementEach) {
  EXPECT_EQ(valid_utf8("\x80"), R);             // lone continuation
  EXPECT_EQ(valid_utf8("a\xBF" "b"), "a" + R + "b");
  EXPECT_EQ(valid_utf8("\xFE\xFF"), R + R);     // never valid in UTF-8
  EXPECT_EQ(valid_utf8("\xF5\x80\x80\x80"), R + R + R + R); // would be > U+10FFFF
  EXPECT_EQ(valid_utf8("\xF8\x88\x80\x80\x80"), R + R + R + R + R); // old 5-byte form
}

TEST(Utf8, OverlongFormsAreInvalid) {
  EXPECT_EQ(valid_utf8("\xC0\x80"), R + R);         // NUL as 2 bytes
  EXPECT_EQ(valid_utf8("\xC1\xBF"), R + R);         // U+007F as 2 bytes
  EXPECT_EQ(valid_utf8("\xE0\x80\x80"), R + R + R); // NUL as 3 bytes
  EXPECT_EQ(valid_utf8("\xE0\x9F\xBF"), R + R + R); // U+07FF as 3 bytes
  EXPECT_EQ(valid_utf8("\xF0\x80\x80\xAF"), R + R + R + R); // '/' as 4 bytes
  EXPECT_EQ(valid_utf8("\xF0\x8F\xBF\xBF"), R + R + R + R); // U+FFFF as 4 bytes
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));
}

TEST(Utf8, SurrogatesAreInvalid) {
  EXPECT_EQ(valid_utf8("\xED\xA0\x80"), R + R + R); // U+D800
  EXPECT_EQ(valid_utf8("\xED\xBF\xBF"), R + R + R); // U+DFFF
  EXPECT_EQ(valid_utf8("\xED\xA0\xBD\xED\xB8\x80"), R + R + R + R + R + R); // CESU-8 pair
}

TEST(Utf8, BeyondU10FFFFIsInvalid) {
  EXPECT_EQ(valid_utf8("\xF4\x90\x80\x80"), R + R + R + R); // U+110000
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));
}

TEST(Utf8, TruncatedSequencesAreOneReplacement) {
  EXPECT_EQ(valid_utf8("\xC3"), R);
  EXPECT_EQ(valid_utf8("\xE2\x82"), R);
  EXPECT_EQ(valid_utf8("\xE2\x82" "A"), R + "A");
  EXPECT_EQ(valid_utf8("\xF0\x9F\x98"), R);
  EXPECT_EQ(valid_utf8("\xF0\x9F\x98 x"), R + " x");
  EXPECT_EQ(valid_utf8("\xF0\x9F\xE2\x82\xAC"), R + "\xE2\x82\xAC"); // cut, then a valid euro
  EXPECT_EQ(valid_utf8("\xE2\x82\xF0\x9F\x98\x80"), R + "\xF0\x9F\x98\x80");
}

TEST(Utf8, MakeValidInPlace) {
  std::string ok = "caf\xC3\xA9";
  make_valid_utf8(ok);
  EXPECT_EQ(ok, "caf\xC3\xA9");
  std::string bad = "\xFF\xFE";
  make_valid_utf8(bad);
  EXPECT_EQ(bad, R + R);
  EXPECT_TRUE(is_valid_utf8(bad));
}

TEST(TerminalEscape, ControlsBecomeVisible) {
  EXPECT_EQ(escape_terminal("ref \x1B]52;c;ZXZpbA==\x07 \x1B[31mred"),
            "ref \\x1b]52;c;ZXZpbA==\\x07 \\x1b[31mred");
  EXPECT_EQ(escape_terminal(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(escape_terminal("tab\there"), "tab\\x09here");
  EXPECT_EQ(escape_terminal("line\r\nfake"), "line\\x0d\\x0afake");
  EXPECT_EQ(escape_terminal("del\x7F"), "del\\x7f");
  EXPECT_EQ(escape_terminal("\x1F "), "\\x1f ");
}

TEST(TerminalEscape, C1ControlsAndBidiOverrides) {
  EXPECT_EQ(escape_terminal("\xC2\x9B" "31m"), "\\u009b31m"); // CSI as a C1 character
  EXPECT_EQ(escape_terminal("\xC2\x80\xC2\x9F"), "\\u0080\\u009f");
  EXPECT_EQ(escape_terminal("\xC2\xA0"), "\xC2\xA0"); // NBSP is printable: kept
  EXPECT_EQ(escape_terminal("abc\xE2\x80\xAE" "fed"), "abc\\u202efed"); // RIGHT-TO-LEFT OVERRIDE
  EXPECT_EQ(escape_terminal("\xE2\x81\xA6x\xE2\x81\xA9"), "\\u2066x\\u2069");
}

TEST(TerminalEscape, KeepsPrintableTextAndSanitizes) {
  EXPECT_EQ(escape_terminal("GET /caf\xC3\xA9 \xF0\x9F\x98\x80 C:\\x1b"), "GET /caf\xC3\xA9 \xF0\x9F\x98\x80 C:\\x1b");
  EXPECT_EQ(escape_terminal("/caf\xE9\xFF"), "/caf" + R + R);
  // A raw 8-bit CSI byte is not UTF-8: it becomes U+FFFD, never reaches the terminal as 0x9B.
  EXPECT_EQ(escape_terminal("\x9B" "2J"), R + "2J");
}

TEST(JsonLine, ValidStringsAreWrittenAsIs) {
  nlohmann::json j = {{"type", "verdict"}, {"request", "GET /caf\xC3\xA9 HTTP/1.1"}, {"n", 1}};
  EXPECT_EQ(json_line(j), "{\"n\":1,\"request\":\"GET /caf\xC3\xA9 HTTP/1.1\",\"type\":\"verdict\"}");
  EXPECT_EQ(json_line(nlohmann::json{{"e", "\x1B[31m"}}), "{\"e\":\"\\u001b[31m\"}");
}

TEST(JsonLine, InvalidUtf8IsReplacedNotThrown) {
  nlohmann::json j = {{"comm", "\xFF\xFE"}};
  EXPECT_THROW((void)j.dump(), nlohmann::json::type_error); // what used to stop `watch --json`
  EXPECT_EQ(json_line(j), "{\"comm\":\"" + R + R + "\"}");
  EXPECT_EQ(json_line(nlohmann::json{{"r", "/caf\xE9\xFF"}}), "{\"r\":\"/caf" + R + R + "\"}");
}

} // namespace
