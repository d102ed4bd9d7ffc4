// error.log parsing on lines written by a real nginx 1.22 (tests/fixtures/nginx/make_fixtures.sh).
#include "why502/nginx.h"

#include <gtest/gtest.h>

#include "nginx_test_util.h"

using namespace why502::nginx;
using why502::nginx::test::fixture_lines;

namespace {

class ErrorLogFixture : public ::testing::Test {
protected:
  void SetUp() override {
    test::use_utc();
    lines_ = fixture_lines("error.log");
    ASSERT_EQ(lines_.size(), 29u);
  }
  ErrorLogLine line(size_t i) {
    auto l = parse_error_line(lines_.at(i));
    EXPECT_TRUE(l.has_value()) << lines_.at(i);
    return l.value_or(ErrorLogLine{});
  }
  // The first parsed line for a request path with the given failure.
  ErrorLogLine for_request(const std::string &req, UpstreamFailure f) {
    for (const auto &s : lines_) {
      auto l = parse_error_line(s);
      if (l && l->request == req && l->failure == f)
        return *l;
    }
    ADD_FAILURE() << "no " << to_string(f) << " line for " << req;
    return {};
  }
  std::vector<std::string> lines_;
};

TEST_F(ErrorLogFixture, EveryRealLineParses) {
  ParseStats st;
  for (const auto &s : lines_)
    parse_error_line(s, st);
  EXPECT_EQ(st.parsed, 29u);
  EXPECT_EQ(st.unparsed, 0u);
}

TEST_F(ErrorLogFixture, ConnectRefusedAllFields) {
  ErrorLogLine l = line(0);
  EXPECT_EQ(l.tm.tm_year, 2026 - 1900);
  EXPECT_EQ(l.tm.tm_mon, 10);
  EXPECT_EQ(l.tm.tm_mday, 30);
  EXPECT_EQ(l.tm.tm_hour, 17);
  EXPECT_EQ(l.tm.tm_min, 49);
  EXPECT_EQ(l.tm.tm_sec, 53);
  EXPECT_EQ(l.local_seconds, 1796060993); // same second as $msec in access_upstream.log line 1 (the host was UTC)
  EXPECT_EQ(l.level, Level::error);
  EXPECT_EQ(l.pid, 12068);
  EXPECT_EQ(l.tid, 12068u);
  EXPECT_EQ(l.connection, 1u);
  EXPECT_EQ(l.text, "connect() failed");
  EXPECT_EQ(l.syscall, "connect");
  EXPECT_EQ(l.err, 111);
  EXPECT_EQ(l.err_text, "Connection refused");
  EXPECT_EQ(l.action, "connecting to upstream");
  EXPECT_EQ(l.client, "127.0.0.1");
  EXPECT_EQ(l.server, "fixtures.test");
  EXPECT_EQ(l.request, "GET /refused?q=1 HTTP/1.1");
  EXPECT_EQ(l.upstream, "http://127.0.0.1:18101/refused?q=1");
  EXPECT_EQ(l.upstream_address, "127.0.0.1:18101");
  EXPECT_EQ(l.host, "127.0.0.1:18100");
  EXPECT_EQ(l.referrer, "http://ref.test/a?b=1");
  EXPECT_EQ(l.failure, UpstreamFailure::connect_failed);
  EXPECT_FALSE(l.truncated);
}

TEST_F(ErrorLogFixture, ResetByPeer) {
  auto l = for_request("GET /reset?q=1 HTTP/1.1", UpstreamFailure::recv_failed);
  EXPECT_EQ(l.err, 104);
  EXPECT_EQ(l.err_text, "Connection reset by peer");
  EXPECT_EQ(l.syscall, "recv");
  EXPECT_EQ(l.action, "reading response header from upstream");
  EXPECT_EQ(l.upstream_address, "127.0.0.1:18102");
}

TEST_F(ErrorLogFixture, PrematurelyClosed) {
  auto l = for_request("GET /closed?q=1 HTTP/1.1", UpstreamFailure::prematurely_closed);
  EXPECT_EQ(l.text, "upstream prematurely closed connection");
  EXPECT_FALSE(l.err.has_value());
  EXPECT_EQ(l.connection, 5u);
}

TEST_F(ErrorLogFixture, Timeouts) {
  auto r = for_request("GET /hang?q=1 HTTP/1.1", UpstreamFailure::timed_out_reading);
  EXPECT_EQ(r.err, 110);
  EXPECT_EQ(r.err_text, "Connection timed out");
  auto c = for_request("GET /synqueue?q=1 HTTP/1.1", UpstreamFailure::timed_out_connecting);
  EXPECT_EQ(c.upstream_address, "127.0.0.1:18111");
  auto s = for_request("POST /noread HTTP/1.1", UpstreamFailure::timed_out_sending);
  EXPECT_EQ(s.action, "sending request to upstream");
  // "while reading upstream" (body phase) is a read timeout too
  auto b = for_request("GET /badstatus?q=1 HTTP/1.1", UpstreamFailure::timed_out_reading);
  EXPECT_EQ(b.action, "reading upstream");
}

TEST_F(ErrorLogFixture, ApplicationLevelFaults) {
  auto big = for_request("GET /bigheader?q=1 HTTP/1.1", UpstreamFailure::too_big_header);
  EXPECT_EQ(big.text, "upstream sent too big header");
  auto inv = for_request("GET /badheader?q=1 HTTP/1.1", UpstreamFailure::invalid_header);
  EXPECT_EQ(inv.text, "upstream sent invalid header: \"X-Bad\\x00...\"");
  EXPECT_EQ(inv.client, "127.0.0.1");
  auto st = for_request("GET /badstatus?q=1 HTTP/1.1", UpstreamFailure::upstream_sent_invalid);
  EXPECT_EQ(st.text, "upstream sent no valid HTTP/1.0 header");
}

TEST_F(ErrorLogFixture, NoLiveUpstreamsNamesTheGroup) {
  auto l = for_request("GET /twodead?q=1 HTTP/1.1", UpstreamFailure::no_live_upstreams);
  EXPECT_EQ(l.upstream, "http://two_dead/twodead?q=1");
  EXPECT_EQ(l.upstream_address, "two_dead");
  EXPECT_EQ(l.connection, 22u);
}

TEST_F(ErrorLogFixture, TemporarilyDisabledIsWarnNotFailure) {
  auto l = line(10);
  EXPECT_EQ(l.level, Level::warn);
  EXPECT_EQ(l.text, "upstream server temporarily disabled");
  EXPECT_EQ(l.failure, UpstreamFailure::none);
}

TEST_F(ErrorLogFixture, UnixSockets) {
  auto miss = for_request("GET /nosock?q=1 HTTP/1.1", UpstreamFailure::connect_failed);
  EXPECT_EQ(miss.level, Level::crit);
  EXPECT_EQ(miss.err, 2);
  EXPECT_EQ(miss.text, "connect() to unix:/tmp/why502-fixtures/missing.sock failed");
  EXPECT_EQ(miss.upstream, "http://unix:/tmp/why502-fixtures/missing.sock:/?q=1");
  EXPECT_EQ(miss.upstream_address, "unix:/tmp/why502-fixtures/missing.sock");
  auto dead = for_request("GET /deadsock?q=1 HTTP/1.1", UpstreamFailure::connect_failed);
  EXPECT_EQ(dead.err, 111);
  EXPECT_EQ(dead.upstream, "fastcgi://unix:/tmp/why502-fixtures/dead.sock:");
  EXPECT_EQ(dead.upstream_address, "unix:/tmp/why502-fixtures/dead.sock");
}

TEST_F(ErrorLogFixture, OtherSchemes) {
  EXPECT_EQ(for_request("GET /fcgirefused?q=1 HTTP/1.1", UpstreamFailure::connect_failed).upstream,
            "fastcgi://127.0.0.1:18101");
  auto uw = for_request("GET /uwsgi?q=1 HTTP/1.1", UpstreamFailure::connect_failed);
  EXPECT_EQ(uw.upstream, "uwsgi://127.0.0.1:18101");
  EXPECT_EQ(uw.upstream_address, "127.0.0.1:18101");
  EXPECT_EQ(for_request("GET /scgi?q=1 HTTP/1.1", UpstreamFailure::connect_failed).upstream,
            "scgi://127.0.0.1:18101");
  EXPECT_EQ(for_request("GET /grpc?q=1 HTTP/1.1", UpstreamFailure::connect_failed).upstream,
            "grpc://127.0.0.1:18101");
}

TEST_F(ErrorLogFixture, BodyBufferedWarningHasNoUpstream) {
  auto l = line(25);
  EXPECT_EQ(l.text, "a client request body is buffered to a temporary file "
                    "/tmp/why502-fixtures/tmp/body/0000000001");
  EXPECT_EQ(l.request, "POST /noread HTTP/1.1");
  EXPECT_TRUE(l.upstream.empty());
  EXPECT_EQ(l.failure, UpstreamFailure::none);
}

// Lines below are built from nginx 1.22's format strings (ngx_event_connect.c, ngx_writev_chain.c,
// ngx_readv_chain.c, ngx_linux_sendfile_chain.c, ngx_send.c); the fixture run could not provoke them.
TEST(ErrorLogSynthetic, SyscallFailures) {
  const std::string ctx = ", client: 10.0.0.1, server: _, request: \"POST /u HTTP/1.1\", "
                          "upstream: \"http://10.0.0.2:80/u\", host: \"a\"";
  struct Case {
    std::string head;
    UpstreamFailure f;
    std::string syscall;
    int err;
  } cases[] = {
      {"[error] 7#7: *9 writev() failed (32: Broken pipe) while sending request to upstream",
       UpstreamFailure::send_failed, "writev", 32},
      {"[error] 7#7: *9 send() failed (104: Connection reset by peer) while sending request to "
       "upstream",
       UpstreamFailure::send_failed, "send", 104},
      {"[error] 7#7: *9 sendfile() failed (32: Broken pipe) while sending request to upstream",
       UpstreamFailure::send_failed, "sendfile", 32},
      {"[error] 7#7: *9 readv() failed (104: Connection reset by peer) while reading upstream",
       UpstreamFailure::readv_failed, "readv", 104},
      {"[alert] 7#7: *9 socket() failed (24: Too many open files) while connecting to upstream",
       UpstreamFailure::socket_failed, "socket", 24},
      {"[crit] 7#7: *9 connect() to 10.0.0.2:80 failed (99: Cannot assign requested address) while "
       "connecting to upstream",
       UpstreamFailure::connect_failed, "connect", 99},
  };
  for (const auto &c : cases) {
    auto l = parse_error_line("2026/11/30 17:02:01 " + c.head + ctx);
    ASSERT_TRUE(l) << c.head;
    EXPECT_EQ(l->failure, c.f) << c.head;
    EXPECT_EQ(l->syscall, c.syscall) << c.head;
    EXPECT_EQ(l->err, c.err) << c.head;
    EXPECT_EQ(l->host, "a");
  }
  auto u = parse_error_line("2026/11/30 17:02:01 [error] 7#7: *9 connect() to "
                            "unix:/run/php/php-fpm.sock failed (11: Resource temporarily "
                            "unavailable) while connecting to upstream, client: 1.2.3.4, server: "
                            "x, request: \"GET / HTTP/1.1\", upstream: "
                            "\"fastcgi://unix:/run/php/php-fpm.sock:\", host: \"x\"");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->upstream_address, "unix:/run/php/php-fpm.sock");
}

TEST(ErrorLogSynthetic, NonRequestLines) {
  auto l = parse_error_line("2026/11/30 17:02:01 [alert] 100#100: worker process 123 exited on "
                            "signal 9");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->level, Level::alert);
  EXPECT_FALSE(l->connection);
  EXPECT_EQ(l->text, "worker process 123 exited on signal 9");
  EXPECT_EQ(l->failure, UpstreamFailure::none);
  auto n = parse_error_line("2026/11/30 17:02:01 [notice] 1#1: signal process started\n");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->level, Level::notice);
}

TEST(ErrorLogSynthetic, QuotesInsideRequestAndIpv6) {
  // nginx >= 1.21.1 rejects a space in the request target, so quotes and commas are all a target
  // can hold; the request line ends at " HTTP/x.y\"".
  auto l = parse_error_line(
      "2026/11/30 17:02:01 [error] 7#7: *9 connect() failed (111: Connection refused) while "
      "connecting to upstream, client: ::1, server: x, request: \"GET /a\"b,host:\"c HTTP/1.1\", "
      "upstream: \"http://[::1]:8080/a\"b,host:\"c\", host: \"h\"");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->client, "::1");
  EXPECT_EQ(l->request, "GET /a\"b,host:\"c HTTP/1.1");
  EXPECT_EQ(l->upstream, "http://[::1]:8080/a\"b,host:\"c");
  EXPECT_EQ(l->upstream_address, "[::1]:8080");
  EXPECT_EQ(l->host, "h");
  EXPECT_EQ(l->failure, UpstreamFailure::connect_failed);
  // With a space in the target (older nginx, or a line nginx never wrote) fields cannot be told
  // apart: the line is not parsed at all.
  EXPECT_FALSE(parse_error_line(
      "2026/11/30 17:02:01 [error] 7#7: *9 connect() failed (111: Connection refused) while "
      "connecting to upstream, client: ::1, server: x, request: \"GET /a\"b, host: \"c HTTP/1.1\", "
      "upstream: \"http://[::1]:8080/a\"b\", host: \"h\""));
}

TEST(ErrorLogSynthetic, Rejects) {
  ParseStats st;
  for (std::string s : {"", "garbage", "2026/11/30 17:02:01", "2026/13/30 17:02:01 [error] 1#1: x",
                        "2026/11/30 17:02:01 [loud] 1#1: x", "2026/11/30 17:02:01 [error] x#1: y",
                        "2026/11/30 17:02:01 [error] 1#1 y"})
    EXPECT_FALSE(parse_error_line(s, st)) << s;
  EXPECT_EQ(st.unparsed, 7u);
}

} // namespace
