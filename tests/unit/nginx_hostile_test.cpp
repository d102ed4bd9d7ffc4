// Hostile input for every nginx parser: never a crash, never a hang, always counted.
#include "why502/nginx.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "nginx_test_util.h"

using namespace why502::nginx;

namespace {

std::vector<std::string> hostile_lines() {
  std::vector<std::string> v = {"", "\n", "\xff\xfe\xfd", std::string(1, '\0'),
                                "2026/11/30 17:02:01 [error] 1#1: *",
                                "2026/11/30 17:02:01 [error] 99999999999999999999999#1: x",
                                "2026/11/30 17:02:01 [error] 1#1: *1 x (",
                                "2026/11/30 17:02:01 [error] 1#1: *1 x (1: ",
                                "2026/11/30 17:02:01 [error] 1#1: *1 x, client: , server: ,"
                                " request: \", upstream: \", host: \"",
                                "1.2.3.4 - - [30/Nov/2026:17:02:01 +0000] \"GET",
                                "\"\"\"\"\"\"\"\"\" \\x \\u12 \\"};
  std::mt19937 rng(42);
  for (int i = 0; i < 200; ++i) {
    std::string s(rng() % 300, '\0');
    for (auto &c : s)
      c = static_cast<char>(rng());
    v.push_back(s);
  }
  // real lines cut at every length
  for (const char *fx : {"error.log", "access_upstream.log", "access_json.log"}) {
    auto lines = test::fixture_lines(fx);
    for (size_t n = 0; n < lines[0].size(); n += 7)
      v.push_back(lines[0].substr(0, n));
  }
  return v;
}

TEST(Hostile, ParsersSurviveGarbage) {
  auto json = AccessLogParser::compile(R"({"a":"$remote_addr","s":"$status","u":"$upstream_addr"})",
                                       Escape::json);
  ASSERT_TRUE(json.ok());
  auto up = AccessLogParser::compile("$remote_addr $status ua=\"$upstream_addr\" $msec $x$y");
  ASSERT_TRUE(up.ok());
  ParseStats e, a;
  for (const auto &s : hostile_lines()) {
    parse_error_line(s, e);
    AccessLogParser::combined().parse(s, a);
    json->parse(s, a);
    up->parse(s, a);
    parse_config(s);
    parse_config("# configuration file /x:\n" + s);
  }
  EXPECT_GT(e.unparsed, 200u);
  EXPECT_GT(a.unparsed, 600u);
}

TEST(Hostile, TenMegabyteLinesAreFast) {
  std::string big(10 * 1024 * 1024, 'a');
  std::string quotes(10 * 1024 * 1024, '"');
  std::string errline = "2026/11/30 17:02:01 [error] 1#1: *1 " + big + ", client: 1.2.3.4, server: x";
  // nginx writes at most NGX_MAX_ERROR_STR (2048) bytes per line: a longer one is refused unread.
  std::string longest = "2026/11/30 17:02:01 [error] 1#1: *1 " + std::string(8000, 'a') + ", client: 1.2.3.4, server: x";
  // many candidate contexts in one line (each ", client: " is tried)
  std::string many = "2026/11/30 17:02:01 [error] 1#1: *1 connect() failed (111: x) while connecting to upstream";
  while (many.size() < 8000)
    many += ", client: 1.2.3.4, server: x, request: \"GET / HTTP/1.1\", upstream: \"http://1.2.3.4:80/\"";
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(parse_error_line(errline));
  EXPECT_TRUE(parse_error_line(longest));
  for (int i = 0; i < 100; ++i) {
    auto m = parse_error_line(many); // the first context is the real one; the rest is the upstream URI
    ASSERT_TRUE(m);
    EXPECT_EQ(m->upstream_address, "1.2.3.4:80");
  }
  EXPECT_FALSE(parse_error_line(big));
  auto p = AccessLogParser::combined();
  EXPECT_FALSE(p.parse(big));
  EXPECT_FALSE(p.parse(quotes));
  auto none = AccessLogParser::compile("\"$a\" \"$b\" \"$c\" \"$d\" x", Escape::none);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->parse(quotes.substr(0, 1 << 20) + " \"" + quotes.substr(0, 1 << 20)));
  parse_config("# configuration file /x:\n" + big);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
                .count();
  EXPECT_LT(ms, 5000);
}

TEST(Hostile, UnknownFieldsStillGiveCommonFields) {
  // A newer nginx in a user format with unknown variables: the map keeps them.
  auto p = AccessLogParser::compile("$remote_addr $status $upstream_quic_rtt $request_time");
  ASSERT_TRUE(p.ok());
  auto l = p->parse("1.2.3.4 502 0.5ms 0.003");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->status, 502);
  EXPECT_EQ(l->vars.at("upstream_quic_rtt"), "0.5ms");
}

} // namespace
