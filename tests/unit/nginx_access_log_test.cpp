// access.log parsing on lines written by a real nginx 1.22 in three formats (combined, a custom
// upstream format, escape=json). Formats come from the fixture's own `nginx -T` dump.
#include "why502/nginx.h"

#include <gtest/gtest.h>

#include "nginx_test_util.h"

using namespace why502::nginx;
using why502::nginx::test::fixture_lines;

namespace {

Config fixture_config() {
  return parse_config(test::read_fixture("nginx_T.txt"), {"/tmp/why502-fixtures/", "", "", ""});
}

AccessLogParser parser_for(const std::string &name) {
  Config c = fixture_config();
  auto it = c.log_formats.find(name);
  EXPECT_NE(it, c.log_formats.end()) << name;
  auto p = AccessLogParser::compile(it->second.format, it->second.escape);
  EXPECT_TRUE(p.ok()) << p.error();
  return std::move(*p);
}

TEST(AccessLogCombined, EveryRealLineParses) {
  auto p = AccessLogParser::combined();
  ParseStats st;
  for (const auto &s : fixture_lines("access_combined.log"))
    p.parse(s, st);
  EXPECT_EQ(st.parsed, 21u);
  EXPECT_EQ(st.unparsed, 0u);
}

TEST(AccessLogCombined, Fields) {
  auto lines = fixture_lines("access_combined.log");
  auto l = AccessLogParser::combined().parse(lines.at(0));
  ASSERT_TRUE(l);
  EXPECT_EQ(l->remote_addr, "127.0.0.1");
  EXPECT_EQ(l->request, "GET /refused?q=1 HTTP/1.1");
  EXPECT_EQ(l->method, "GET");
  EXPECT_EQ(l->uri, "/refused?q=1");
  EXPECT_EQ(l->status, 502);
  EXPECT_TRUE(l->is_502());
  EXPECT_TRUE(l->is_gateway_error());
  EXPECT_EQ(l->time, 1796060993.0);
  EXPECT_FALSE(l->time_ms);
  EXPECT_EQ(l->epoch_ns(), 1796060993 * 1000000000LL); // the $time_local second
  EXPECT_EQ(l->vars.at("remote_user"), "-");
  EXPECT_EQ(l->vars.at("body_bytes_sent"), "157");
  EXPECT_EQ(l->vars.at("http_referer"), "http://ref.test/a?b=1");
  // escape=default wrote \x22 and \xC3\xBC; the map holds the real bytes
  EXPECT_EQ(l->vars.at("http_user_agent"), "why502-fixtures \"quoted\" \xC3\xBC");
  EXPECT_TRUE(l->upstream.empty());
  auto t = AccessLogParser::combined().parse(lines.at(19));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->request, "POST /noread HTTP/1.1");
  EXPECT_TRUE(t->is_504());
}

TEST(AccessLogUpstream, EveryRealLineParses) {
  auto p = parser_for("upstream");
  ParseStats st;
  for (const auto &s : fixture_lines("access_upstream.log"))
    p.parse(s, st);
  EXPECT_EQ(st.parsed, 21u);
  EXPECT_EQ(st.unparsed, 0u);
}

TEST(AccessLogUpstream, SingleAttempt) {
  auto l = parser_for("upstream").parse(fixture_lines("access_upstream.log").at(0));
  ASSERT_TRUE(l);
  EXPECT_EQ(l->status, 502);
  EXPECT_EQ(l->pid, 12068);
  EXPECT_EQ(l->connection, 1u);
  EXPECT_EQ(l->time_ms, 1796060993405);
  EXPECT_DOUBLE_EQ(*l->time, 1796060993.405);
  EXPECT_EQ(l->epoch_ns(), 1796060993405 * 1000000LL); // $msec wins, exact to the millisecond
  EXPECT_DOUBLE_EQ(*l->request_time, 0.001);
  EXPECT_EQ(l->host, "127.0.0.1");
  ASSERT_EQ(l->upstream.size(), 1u);
  EXPECT_EQ(l->upstream[0].addr, "127.0.0.1:18101");
  EXPECT_EQ(l->upstream[0].status, 502);
  EXPECT_FALSE(l->upstream[0].connect_time);
  EXPECT_FALSE(l->upstream[0].header_time);
  EXPECT_DOUBLE_EQ(*l->upstream[0].response_time, 0.001);
}

TEST(AccessLogUpstream, RetriesAndNoLive) {
  auto lines = fixture_lines("access_upstream.log");
  auto p = parser_for("upstream");
  auto two = p.parse(lines.at(9));
  ASSERT_TRUE(two);
  ASSERT_EQ(two->upstream.size(), 2u);
  EXPECT_EQ(two->upstream[0].addr, "127.0.0.1:18101");
  EXPECT_EQ(two->upstream[1].addr, "127.0.0.1:18112");
  EXPECT_EQ(two->upstream[1].status, 502);
  auto none = p.parse(lines.at(10));
  ASSERT_TRUE(none);
  ASSERT_EQ(none->upstream.size(), 1u);
  EXPECT_EQ(none->upstream[0].addr, "two_dead"); // no live upstreams: the group name
  auto retry = p.parse(lines.at(11));
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->status, 200);
  ASSERT_EQ(retry->upstream.size(), 2u);
  EXPECT_EQ(retry->upstream[0].status, 502);
  EXPECT_EQ(retry->upstream[1].addr, "127.0.0.1:18108");
  EXPECT_EQ(retry->upstream[1].status, 200);
  EXPECT_DOUBLE_EQ(*retry->upstream[1].connect_time, 0.0);
  EXPECT_DOUBLE_EQ(*retry->upstream[1].header_time, 0.001);
}

TEST(AccessLogUpstream, InternalRedirectGroups) {
  auto l = parser_for("upstream").parse(fixture_lines("access_upstream.log").at(18));
  ASSERT_TRUE(l);
  EXPECT_EQ(l->vars.at("upstream_addr"), "127.0.0.1:18101 : 127.0.0.1:18101, 127.0.0.1:18108");
  ASSERT_EQ(l->upstream.size(), 3u);
  EXPECT_EQ(l->upstream[0].group, 0);
  EXPECT_EQ(l->upstream[1].group, 1);
  EXPECT_EQ(l->upstream[2].group, 1);
  EXPECT_EQ(l->upstream[2].status, 200);
  EXPECT_EQ(l->upstream[1].status, 502);
}

TEST(AccessLogUpstream, UnixSocketAndTimeout) {
  auto lines = fixture_lines("access_upstream.log");
  auto p = parser_for("upstream");
  auto u = p.parse(lines.at(12));
  ASSERT_TRUE(u);
  EXPECT_EQ(u->upstream.at(0).addr, "unix:/tmp/why502-fixtures/missing.sock");
  auto t = p.parse(lines.at(19));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->status, 504);
  EXPECT_DOUBLE_EQ(*t->upstream.at(0).connect_time, 0.001);
  EXPECT_DOUBLE_EQ(*t->upstream.at(0).response_time, 1.0);
}

TEST(AccessLogJson, EveryRealLineParses) {
  auto p = parser_for("json");
  EXPECT_EQ(p.escape(), Escape::json);
  ParseStats st;
  for (const auto &s : fixture_lines("access_json.log"))
    p.parse(s, st);
  EXPECT_EQ(st.parsed, 21u);
  EXPECT_EQ(st.unparsed, 0u);
}

TEST(AccessLogJson, Fields) {
  auto l = parser_for("json").parse(fixture_lines("access_json.log").at(11));
  ASSERT_TRUE(l);
  EXPECT_EQ(l->request, "GET /retry?q=1 HTTP/1.1");
  EXPECT_EQ(l->vars.at("http_user_agent"), "why502-fixtures \"quoted\" \xC3\xBC");
  EXPECT_EQ(l->vars.at("time_iso8601"), "2026-11-30T17:49:56+00:00");
  EXPECT_EQ(l->time_ms, 1796060996496);
  ASSERT_EQ(l->upstream.size(), 2u);
  EXPECT_EQ(l->upstream[1].status, 200);
  EXPECT_EQ(l->pid, 12068);
}

TEST(AccessLogFormats, CompileSegments) {
  auto p = AccessLogParser::compile("${remote_addr}x$status-[$time_local]");
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->segments().size(), 6u);
  EXPECT_TRUE(p->segments()[0].is_var);
  EXPECT_EQ(p->segments()[0].text, "remote_addr");
  EXPECT_EQ(p->segments()[1].text, "x");
  EXPECT_FALSE(AccessLogParser::compile("${oops").ok());
  EXPECT_FALSE(AccessLogParser::compile("").ok());
  auto l = p->parse("1.2.3.4x504-[30/Nov/2026:17:02:01 +0100]");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->status, 504);
  EXPECT_EQ(l->time, 1796054521.0); // 16:02:01Z
  // A format without any time variable: the line has no time of its own (the follower uses its clock).
  auto untimed = AccessLogParser::compile("$remote_addr $status");
  ASSERT_TRUE(untimed.ok());
  auto u = untimed->parse("1.2.3.4 502");
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->epoch_ns());
}

TEST(AccessLogFormats, UnknownTrailingFieldsFromNewerNginx) {
  // A line with more text than the format expects does not match: counted, not crashed.
  auto p = AccessLogParser::combined();
  ParseStats st;
  EXPECT_FALSE(p.parse("1.2.3.4 - - [30/Nov/2026:17:02:01 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" "
                       "\"ua\" extra=1",
                       st));
  EXPECT_EQ(st.unparsed, 1u);
  // ...but a format ending in a variable absorbs it
  auto q = AccessLogParser::compile("$status $rest");
  ASSERT_TRUE(q.ok());
  auto l = q->parse("502 a b c");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->vars.at("rest"), "a b c");
}

TEST(AccessLogFormats, EscapeNoneBacktracks) {
  auto p = AccessLogParser::compile("\"$request\" $status \"$http_user_agent\"", Escape::none);
  ASSERT_TRUE(p.ok());
  // The shortest $request ("GET /a") would make $status "x": numeric variables refuse that.
  auto l = p->parse("\"GET /a\" x \"b HTTP/1.1\" 502 \"ua\"");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->request, "GET /a\" x \"b HTTP/1.1");
  EXPECT_EQ(l->status, 502);
}

TEST(AccessLogTimes, Parsers) {
  EXPECT_EQ(parse_time_local("01/Jan/1970:00:00:00 +0000"), 0);
  EXPECT_EQ(parse_time_local("30/Nov/2026:17:02:01 -0530"), 1796058121 + 5 * 3600 + 1800);
  EXPECT_EQ(parse_time_iso8601("2026-11-30T17:02:01+00:00"), 1796058121);
  EXPECT_EQ(parse_time_iso8601("2026-11-30T17:02:01Z"), 1796058121);
  EXPECT_FALSE(parse_time_iso8601("2026-11-30 17:02:01"));
  EXPECT_FALSE(parse_time_local("30/Foo/2026:17:02:01 +0000"));
}

TEST(AccessLogLists, Split) {
  auto v = split_upstream_list("a:1, b:2 : c:3");
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0], (std::pair<std::string, int>{"a:1", 0}));
  EXPECT_EQ(v[2], (std::pair<std::string, int>{"c:3", 1}));
  auto d = split_upstream_list("-");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].first, "");
}

} // namespace

// scan_status is the follower's cheap look before parse(): it must take exactly the lines parse()
// takes, and read the same $status, on real lines of every format and on lines that match none.
TEST(AccessLogScan, AgreesWithParseOnEveryRealLineAndOnJunk) {
  const std::pair<const char *, const char *> logs[] = {
      {"combined", "access_combined.log"}, {"upstream", "access_upstream.log"}, {"json", "access_json.log"}};
  size_t statuses = 0;
  for (const auto &[format, file] : logs) {
    AccessLogParser p = parser_for(format);
    auto lines = fixture_lines(file);
    ASSERT_FALSE(lines.empty()) << file;
    lines.push_back("");
    lines.push_back("not an access line at all");
    lines.push_back(lines.front().substr(0, lines.front().size() / 2)); // cut in the middle
    for (const auto &line : lines) {
      auto full = p.parse(line);
      auto scan = p.scan_status(line);
      EXPECT_EQ(scan.matched, full.has_value()) << format << ": " << line;
      if (full) {
        EXPECT_EQ(scan.status, full->status) << format << ": " << line;
        statuses += scan.status.has_value();
      }
    }
  }
  EXPECT_GT(statuses, 30u); // the fixtures' lines do carry statuses
  auto no_status = AccessLogParser::compile("$remote_addr $request_time");
  ASSERT_TRUE(no_status);
  auto scan = no_status->scan_status("127.0.0.1 0.001");
  EXPECT_TRUE(scan.matched);
  EXPECT_FALSE(scan.status);
  // A format naming $status twice: both read the first, so a 502 in the second cannot be skipped
  // by the scan and then be seen by parse(), nor the other way round.
  auto twice = AccessLogParser::compile("$status $remote_addr $status");
  ASSERT_TRUE(twice);
  const std::string line = "200 127.0.0.1 502";
  EXPECT_EQ(twice->scan_status(line).status, 200);
  EXPECT_EQ(twice->parse(line)->status, 200);
}

// Matched values live on the stack up to 32 variables and on the heap beyond: a format on each
// side of that line reads every value where it is.
TEST(AccessLogScan, FormatsOfManyVariablesReadEveryValue) {
  for (int n : {31, 32, 33, 80}) {
    std::string format = "$status", line = "502";
    for (int i = 1; i < n; ++i) {
      format += " $v" + std::to_string(i);
      line += " x" + std::to_string(i);
    }
    auto p = AccessLogParser::compile(format);
    ASSERT_TRUE(p) << n;
    auto scan = p->scan_status(line);
    EXPECT_TRUE(scan.matched) << n;
    EXPECT_EQ(scan.status, 502) << n;
    auto l = p->parse(line);
    ASSERT_TRUE(l) << n;
    EXPECT_EQ(l->status, 502) << n;
    EXPECT_EQ(l->vars.at("v" + std::to_string(n - 1)), "x" + std::to_string(n - 1)) << n;
    EXPECT_EQ(l->vars.at("v1"), "x1") << n;
  }
}
