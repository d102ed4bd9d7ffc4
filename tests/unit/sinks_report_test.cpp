// The text sinks write only their own '\n' as a control character: everything from outside (a
// Referer inside nginx's message, a process name in the evidence, an upstream name) is escaped.
#include "sinks/report.h"

#include <gtest/gtest.h>

using namespace why502;

namespace {

bool has_control(const std::string &s) {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\n') || c == 0x7f)
      return true;
  return false;
}

TEST(TextReport, EscapesEveryFieldFromOutside) {
  Verdict v;
  v.wall_ns = 1796060993LL * 1000000000LL;
  v.status = 502;
  v.cause = "no_listener";
  v.upstream = "127.0.0.1:1\x1b[2J";
  v.summary = "nothing listens on 127.0.0.1:1\r";
  v.nginx_error = "connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, "
                  "server: s, request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:1/\", host: \"h\", "
                  "referrer: \"\x1b]52;c;ZXZpbA==\x07\x1b[31mred\xC2\x9B\"";
  ConnFail c;
  c.comm = "\xEF\xBF\xBD\x1b[31m";
  c.pid = 7;
  v.evidence.push_back(KernelEvent{0, 0, 0, false, c});
  std::string out = sinks::text_report(v);
  EXPECT_FALSE(has_control(out)) << out;
  EXPECT_NE(out.find("referrer: \"\\x1b]52;c;ZXZpbA==\\x07\\x1b[31mred\\u009b\""), std::string::npos) << out;
  EXPECT_NE(out.find("  502  127.0.0.1:1\\x1b[2J  worker 0  no_listener\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  nothing listens on 127.0.0.1:1\\x0d\n"), std::string::npos) << out;
  EXPECT_NE(out.find(" comm=\xEF\xBF\xBD\\x1b[31m failure=syn_timeout"), std::string::npos) << out;
  EXPECT_NE(out.find(" pid=7 "), std::string::npos) << out;
}

TEST(SummaryTable, EscapesUpstreamNamesAndKeepsColumns) {
  CorrelatorStats st;
  st.verdicts = 3;
  st.by_cause_upstream[{"no_listener", "evil\x1b[31m"}] = 3;
  std::string out = sinks::summary_table(st);
  EXPECT_FALSE(has_control(out)) << out;
  // %-28s %-40s %8llu, as before, with the escaped name
  const std::string row = "no_listener" + std::string(28 - 11, ' ') + " " + "evil\\x1b[31m" +
                          std::string(40 - 12, ' ') + " " + "       3\n";
  EXPECT_NE(out.find(row), std::string::npos) << out;
}

} // namespace
