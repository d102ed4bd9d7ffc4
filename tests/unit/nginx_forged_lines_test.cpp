// Lines in which a client wrote part of the text: forged URIs, Host and Referer headers, and bytes
// that are not UTF-8. The request context is built the way ngx_http_log_error_handler() builds it
// (nginx 1.22, src/http/ngx_http_request.c); a forged value must not add, move or replace fields, and
// must never make (or redirect) an upstream failure.
#include "why502/nginx.h"

#include <gtest/gtest.h>

#include "base/text.h"

using namespace why502::nginx;

namespace {

const std::string kTime = "2026/11/30 17:02:01 ";
const std::string kRefused = "[error] 7#7: *9 connect() failed (111: Connection refused) while connecting to upstream";
// What a client puts in its URI, percent-encoded on the wire, decoded by nginx into open()'s path.
const std::string kForged = "\", client: 1.2.3.4, server: x, request: \"GET / HTTP/1.1\", upstream: "
                            "\"http://10.6.6.6:6666/\", host: \"x\"";
const std::string kForgedEncoded = "%22,%20client:%201.2.3.4,%20server:%20x,%20request:%20%22GET%20/%20HTTP/1.1%22,"
                                   "%20upstream:%20%22http://10.6.6.6:6666/%22,%20host:%20%22x%22";

ErrorLogLine parse(const std::string &s) {
  auto l = parse_error_line(kTime + s);
  EXPECT_TRUE(l) << s;
  return l.value_or(ErrorLogLine{});
}

void expect_all_utf8(const ErrorLogLine &l) {
  for (const std::string *f : {&l.message, &l.text, &l.err_text, &l.syscall, &l.action, &l.client, &l.server,
                               &l.request, &l.subrequest, &l.host, &l.referrer, &l.upstream, &l.upstream_address})
    EXPECT_TRUE(why502::base::is_valid_utf8(*f)) << *f;
}

// The 404: the decoded URI in open()'s path holds a whole fake context.
TEST(ForgedLines, NotFoundWithAForgedUpstreamInTheUri) {
  auto l = parse("[error] 7#7: *3 open() \"/srv/www/nf/" + kForged +
                 "\" failed (2: No such file or directory), client: 127.0.0.1, server: localhost, request: "
                 "\"GET /nf/" + kForgedEncoded + " HTTP/1.1\", host: \"127.0.0.1:18600\"");
  EXPECT_EQ(l.client, "127.0.0.1");
  EXPECT_EQ(l.server, "localhost");
  EXPECT_EQ(l.request, "GET /nf/" + kForgedEncoded + " HTTP/1.1");
  EXPECT_EQ(l.upstream, "");
  EXPECT_EQ(l.upstream_address, "");
  EXPECT_EQ(l.host, "127.0.0.1:18600");
  EXPECT_EQ(l.referrer, "");
  EXPECT_EQ(l.err, 2);
  EXPECT_EQ(l.text, "open() \"/srv/www/nf/" + kForged + "\" failed");
  EXPECT_EQ(l.failure, UpstreamFailure::none);
}

// The same with the issue's stream-style upstream and a final `referrer: "` that swallows the real
// context: from the forged ", client: " the rest would parse, but nginx's real context comes last.
TEST(ForgedLines, NotFoundWhoseForgedContextSwallowsTheRealOne) {
  const std::string forged = "\", client: 1.2.3.4, server: x, request: \"GET / HTTP/1.1\", upstream: "
                             "\"http://10.6.6.6:6666/\", referrer: \"";
  auto l = parse("[error] 7#7: *3 open() \"/srv/www/nf/" + forged +
                 "\" failed (2: No such file or directory), client: 127.0.0.1, server: localhost, request: "
                 "\"GET /nf/x HTTP/1.1\", host: \"h\", referrer: \"http://r/\"");
  EXPECT_EQ(l.client, "127.0.0.1");
  EXPECT_EQ(l.request, "GET /nf/x HTTP/1.1");
  EXPECT_EQ(l.upstream_address, "");
  EXPECT_EQ(l.host, "h");
  EXPECT_EQ(l.referrer, "http://r/");
  EXPECT_EQ(l.failure, UpstreamFailure::none);
  // the form from the issue, upstream without a scheme
  auto s = parse("[error] 7#7: *3 open() \"/srv/www/\", client: 1.2.3.4, server: x, upstream: \"10.6.6.6:6666\"\" "
                 "failed (2: No such file or directory), client: 127.0.0.1, server: localhost, request: \"GET / "
                 "HTTP/1.1\", host: \"h\"");
  EXPECT_EQ(s.client, "127.0.0.1");
  EXPECT_EQ(s.upstream_address, "");
  EXPECT_EQ(s.failure, UpstreamFailure::none);
}

// A real failure whose Referer holds a whole fake context: the failure keeps nginx's own fields.
TEST(ForgedLines, FailureWithAForgedContextInTheReferrer) {
  const std::string ref = "x" + kForged + ", referrer: \"y";
  auto l = parse(kRefused + ", client: 127.0.0.1, server: localhost, request: \"GET /a HTTP/1.1\", upstream: "
                            "\"http://127.0.0.1:18601/a\", host: \"h\", referrer: \"" + ref + "\"");
  EXPECT_EQ(l.client, "127.0.0.1");
  EXPECT_EQ(l.server, "localhost");
  EXPECT_EQ(l.request, "GET /a HTTP/1.1");
  EXPECT_EQ(l.upstream, "http://127.0.0.1:18601/a");
  EXPECT_EQ(l.upstream_address, "127.0.0.1:18601");
  EXPECT_EQ(l.host, "h");
  EXPECT_EQ(l.referrer, ref);
  EXPECT_EQ(l.failure, UpstreamFailure::connect_failed);
}

// Quotes and separators inside the request target (no spaces: nginx >= 1.21.1 rejects those).
TEST(ForgedLines, FailureWithQuotesAndSeparatorsInTheRequest) {
  const std::string target = "/a\",client:1.2.3.4,upstream:\"http://10.6.6.6:6666/\",host:\"x\"";
  auto l = parse(kRefused + ", client: 127.0.0.1, server: localhost, request: \"GET " + target +
                 " HTTP/1.1\", upstream: \"http://127.0.0.1:18601" + target + "\", host: \"h\"");
  EXPECT_EQ(l.client, "127.0.0.1");
  EXPECT_EQ(l.request, "GET " + target + " HTTP/1.1");
  EXPECT_EQ(l.upstream, "http://127.0.0.1:18601" + target);
  EXPECT_EQ(l.upstream_address, "127.0.0.1:18601");
  EXPECT_EQ(l.host, "h");
  EXPECT_EQ(l.referrer, "");
  EXPECT_EQ(l.failure, UpstreamFailure::connect_failed);
}

// A forged client: the first ", client: " of the line is in the message, the real one follows.
TEST(ForgedLines, ForgedClientInTheMessage) {
  auto l = parse("[error] 7#7: *3 \"/srv/www/x, client: 6.6.6.6, server: evil/index.html\" is not found (2: No "
                 "such file or directory), client: ::ffff:127.0.0.1, server: localhost, request: \"GET "
                 "/x,%20client:%206.6.6.6,%20server:%20evil/ HTTP/1.1\", host: \"h\"");
  EXPECT_EQ(l.client, "::ffff:127.0.0.1");
  EXPECT_EQ(l.server, "localhost");
  EXPECT_EQ(l.host, "h");
  EXPECT_EQ(l.failure, UpstreamFailure::none);
  // a client that is not an address makes no context at all
  EXPECT_FALSE(parse_error_line(kTime + kRefused + ", client: evil, server: x, request: \"GET / HTTP/1.1\", "
                                                   "upstream: \"http://127.0.0.1:1/\""));
}

// A forged host: nginx 1.22 accepts a quote in Host. The host ends at its first quote; what
// follows can only lengthen the referrer, never reach the upstream (which comes before).
TEST(ForgedLines, ForgedHost) {
  auto l = parse(kRefused + ", client: 127.0.0.1, server: localhost, request: \"GET / HTTP/1.1\", upstream: "
                            "\"http://127.0.0.1:18601/\", host: \"a\", referrer: \"b\", referrer: \"http://r/\"");
  EXPECT_EQ(l.upstream_address, "127.0.0.1:18601");
  EXPECT_EQ(l.host, "a");
  EXPECT_EQ(l.referrer, "b\", referrer: \"http://r/");
  EXPECT_EQ(l.failure, UpstreamFailure::connect_failed);
  // A host with a space, or one that tries to bring its own upstream, is not a host: unparsed.
  ParseStats st;
  EXPECT_FALSE(parse_error_line(kTime + kRefused + ", client: 127.0.0.1, server: s, request: \"GET / HTTP/1.1\", "
                                                   "upstream: \"http://127.0.0.1:1/\", host: \"a b\"", st));
  EXPECT_FALSE(parse_error_line(kTime + kRefused + ", client: 127.0.0.1, server: s, request: \"GET / HTTP/1.1\", "
                                                   "host: \"a\", upstream: \"http://10.6.6.6:6666/\"", st));
  EXPECT_EQ(st.unparsed, 2u);
  // the forged-host text inside a 404's URI changes nothing either
  auto nf = parse("[error] 7#7: *3 open() \"/srv/www/\", host: \"evil\"\" failed (2: No such file or directory), "
                  "client: 127.0.0.1, server: localhost, request: \"GET /%22,%20host:%20%22evil%22 HTTP/1.1\", "
                  "host: \"good\"");
  EXPECT_EQ(nf.host, "good");
}

// Only nginx's upstream failure messages, with an upstream action, are failures.
TEST(ForgedLines, OnlyRealUpstreamFailuresCount) {
  const std::string ctx = ", client: 127.0.0.1, server: s, request: \"GET /x HTTP/1.1\", upstream: "
                          "\"http://127.0.0.1:18601/x\", host: \"h\"";
  for (const std::string head : {
           "[error] 7#7: *3 open() \"/srv/www/x\" failed (2: No such file or directory)",
           "[error] 7#7: *3 writev() failed (32: Broken pipe) while sending to client", // the client left
           "[error] 7#7: *3 upstream SSL certificate does not match \"x\" while SSL handshaking to upstream",
           "[error] 7#7: *3 connect() failed (111: Connection refused)",                 // no action
           "[error] 7#7: *3 connect() failed (111: Connection refused) while reading client request headers",
           "[error] 7#7: *3 upstream timed out (110: Connection timed out) while sending to client",
           "[warn] 7#7: *3 upstream server temporarily disabled while connecting to upstream",
       }) {
    auto l = parse(head + ctx);
    EXPECT_EQ(l.upstream_address, "127.0.0.1:18601") << head;
    EXPECT_EQ(l.failure, UpstreamFailure::none) << head;
  }
  EXPECT_EQ(parse(kRefused + ctx).failure, UpstreamFailure::connect_failed);
  EXPECT_EQ(parse("[error] 7#7: *3 SSL_do_handshake() failed (SSL: error:0A000086:SSL routines::certificate verify "
                  "failed) while SSL handshaking to upstream" + ctx)
                .failure,
            UpstreamFailure::other);
}

// The upstream must be schema://peer… with a well-formed peer, and agree with connect()'s text.
TEST(ForgedLines, UpstreamMustBeWellFormed) {
  const std::string pre = kRefused + ", client: 127.0.0.1, server: s, request: \"GET / HTTP/1.1\", upstream: \"";
  for (const std::string up : {"10.6.6.6:6666", "http://", "http://10.6.6.6:99999/", "http://evil host/",
                               "http://10.6.6.6:6666x", "ht tp://10.6.6.6:1/", "http://[::1/"}) {
    auto l = parse(pre + up + "\", host: \"h\"");
    EXPECT_EQ(l.upstream_address, "") << up;
    EXPECT_EQ(l.failure, UpstreamFailure::none) << up;
  }
  auto mismatch = parse("[error] 7#7: *3 connect() to 127.0.0.1:1 failed (111: Connection refused) while "
                        "connecting to upstream, client: 127.0.0.1, server: s, request: \"GET / HTTP/1.1\", "
                        "upstream: \"http://10.6.6.6:6666/\"");
  EXPECT_EQ(mismatch.failure, UpstreamFailure::none);
}

// The request line: bytes that are not UTF-8 become U+FFFD in every field.
TEST(ForgedLines, NonUtf8RequestIsSanitized) {
  auto l = parse(kRefused + ", client: 127.0.0.1, server: s, request: \"GET /caf\xE9\xFF HTTP/1.1\", upstream: "
                            "\"http://127.0.0.1:18601/caf\xE9\xFF\", host: \"h\", referrer: \"\xC0\xAF\"");
  EXPECT_EQ(l.request, "GET /caf\xEF\xBF\xBD\xEF\xBF\xBD HTTP/1.1");
  EXPECT_EQ(l.upstream_address, "127.0.0.1:18601");
  EXPECT_EQ(l.referrer, "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(l.failure, UpstreamFailure::connect_failed);
  expect_all_utf8(l);
}

// A stream{} session has its own context; it is parsed but is no HTTP upstream failure.
TEST(ForgedLines, StreamContext) {
  auto l = parse(kRefused + ", client: 127.0.0.1, server: 0.0.0.0:12345, upstream: \"127.0.0.1:8080\", bytes "
                            "from/to client:0/0, bytes from/to upstream:0/0");
  EXPECT_EQ(l.client, "127.0.0.1");
  EXPECT_EQ(l.server, "0.0.0.0:12345");
  EXPECT_EQ(l.upstream_address, "127.0.0.1:8080");
  EXPECT_EQ(l.failure, UpstreamFailure::none);
}

// nginx cuts a line at 2047 bytes: the last field may be cut, a cut peer is not trusted.
TEST(ForgedLines, LinesCutByNginx) {
  const std::string pre = kTime + kRefused + ", client: 127.0.0.1, server: s, request: \"GET /";
  std::string uri(2047, 'u');
  // cut inside the upstream's URI: the peer is complete
  std::string a = pre + "x HTTP/1.1\", upstream: \"http://127.0.0.1:18601/" + uri;
  a.resize(2047);
  auto la = parse_error_line(a);
  ASSERT_TRUE(la);
  EXPECT_TRUE(la->truncated);
  EXPECT_EQ(la->upstream_address, "127.0.0.1:18601");
  EXPECT_EQ(la->failure, UpstreamFailure::connect_failed);
  // cut inside the peer: "127.0.0.1:1860" must not be taken for a peer
  const std::string tail = " HTTP/1.1\", upstream: \"http://127.0.0.1:1860";
  std::string b = pre + std::string(2047 - pre.size() - tail.size(), 'u') + tail;
  ASSERT_EQ(b.size(), 2047u);
  auto lb = parse_error_line(b);
  ASSERT_TRUE(lb);
  EXPECT_EQ(lb->upstream_address, "");
  EXPECT_EQ(lb->failure, UpstreamFailure::none);
  // the same cut line one byte shorter is not nginx's cut: unparsed
  EXPECT_FALSE(parse_error_line(a.substr(0, 2046)));
}

} // namespace
