// The `nginx -T` config model, on the dump of the fixture config (tests/fixtures/nginx/nginx_T.txt)
// and on small hand-written dumps for tokenizer edge cases.
#include "why502/nginx.h"

#include <gtest/gtest.h>

#include "nginx_test_util.h"

using namespace why502::nginx;

namespace {

ConfigParseOptions fixture_opts() {
  ConfigParseOptions o;
  o.prefix = "/tmp/why502-fixtures/";
  o.default_error_log = "/var/log/nginx/error.log";
  o.default_access_log = "/var/log/nginx/access.log";
  return o;
}

TEST(ConfigFixture, FilesAndMain) {
  Config c = parse_config(test::read_fixture("nginx_T.txt"), fixture_opts());
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
  ASSERT_EQ(c.files.size(), 5u);
  EXPECT_EQ(c.files[0], "/tmp/why502-fixtures/conf/nginx.conf");
  EXPECT_EQ(c.files[4], "/etc/nginx/fastcgi_params");
  EXPECT_EQ(c.worker_processes, "2");
  EXPECT_EQ(c.worker_rlimit_nofile, 4096);
  EXPECT_EQ(c.pid_file, "/tmp/why502-fixtures/nginx.pid");
}

TEST(ConfigFixture, Logs) {
  Config c = parse_config(test::read_fixture("nginx_T.txt"), fixture_opts());
  ASSERT_EQ(c.error_logs.size(), 1u); // explicit main error_log: no compiled-in default added
  EXPECT_EQ(c.error_logs[0].path, "/tmp/why502-fixtures/logs/error.log"); // relative -> prefix
  EXPECT_EQ(c.error_logs[0].level, "warn");
  EXPECT_TRUE(c.error_logs[0].tailable);
  EXPECT_EQ(c.error_logs[0].where.file, "/tmp/why502-fixtures/conf/nginx.conf");
  EXPECT_EQ(c.error_logs[0].where.line, 6);

  ASSERT_EQ(c.access_logs.size(), 3u);
  EXPECT_EQ(c.access_logs[0].path, "/tmp/why502-fixtures/logs/access_combined.log");
  EXPECT_EQ(c.access_logs[0].format_name, "combined");
  EXPECT_EQ(c.access_logs[1].format_name, "upstream");
  EXPECT_EQ(c.access_logs[1].ignored_params,
            (std::vector<std::string>{"buffer=4k", "flush=1s"}));
  EXPECT_EQ(c.access_logs[2].format_name, "json");
  for (const auto &a : c.access_logs) {
    EXPECT_TRUE(a.tailable);
    EXPECT_NE(c.format_for(a), nullptr);
  }

  ASSERT_EQ(c.log_formats.size(), 3u);
  const LogFormat &up = c.log_formats.at("upstream");
  EXPECT_EQ(up.escape, Escape::default_);
  // three quoted strings over three lines, concatenated
  EXPECT_EQ(up.format,
            "$remote_addr [$time_local] \"$request\" $status $body_bytes_sent rt=$request_time "
            "pid=$pid conn=$connection msec=$msec host=\"$host\" ua=\"$upstream_addr\" "
            "us=\"$upstream_status\" uct=\"$upstream_connect_time\" "
            "uht=\"$upstream_header_time\" urt=\"$upstream_response_time\"");
  EXPECT_EQ(up.where.file, "/tmp/why502-fixtures/conf/conf.d/formats.conf");
  EXPECT_EQ(c.log_formats.at("json").escape, Escape::json);
  EXPECT_EQ(c.log_formats.at("combined").format, kCombinedFormat);
}

TEST(ConfigFixture, UpstreamsAndPasses) {
  Config c = parse_config(test::read_fixture("nginx_T.txt"), fixture_opts());
  ASSERT_EQ(c.upstreams.size(), 3u);
  const Upstream *two = c.find_upstream("two_dead");
  ASSERT_NE(two, nullptr);
  ASSERT_EQ(two->servers.size(), 2u);
  EXPECT_EQ(two->servers[0].address, "127.0.0.1:18101");
  EXPECT_EQ(two->servers[0].max_fails, 1);
  EXPECT_EQ(two->servers[0].fail_timeout, "30s");
  const Upstream *ok = c.find_upstream("dead_then_ok");
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->servers[0].weight, 5);
  EXPECT_TRUE(ok->servers[1].backup);
  EXPECT_EQ(ok->keepalive, 8);
  const Upstream *php = c.find_upstream("php");
  ASSERT_NE(php, nullptr);
  EXPECT_TRUE(php->servers[0].is_unix);
  EXPECT_EQ(php->servers[0].address, "unix:/tmp/why502-fixtures/dead.sock");
  EXPECT_TRUE(php->servers[1].down);

  ASSERT_EQ(c.passes.size(), 20u);
  EXPECT_EQ(c.passes[0].directive, "proxy_pass");
  EXPECT_EQ(c.passes[0].scheme, "http");
  EXPECT_EQ(c.passes[0].address, "127.0.0.1:18101");
  EXPECT_EQ(c.passes[0].upstream, nullptr);
  auto find = [&](std::string_view t) -> const PassTarget * {
    for (const auto &p : c.passes)
      if (p.target == t)
        return &p;
    return nullptr;
  };
  const PassTarget *g = find("http://two_dead");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->upstream, two);
  const PassTarget *u = find("http://unix:/tmp/why502-fixtures/missing.sock:/");
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->address, "unix:/tmp/why502-fixtures/missing.sock");
  const PassTarget *f = find("unix:/tmp/why502-fixtures/dead.sock");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->directive, "fastcgi_pass");
  EXPECT_EQ(f->address, "unix:/tmp/why502-fixtures/dead.sock");
  const PassTarget *gr = find("grpc://127.0.0.1:18101");
  ASSERT_NE(gr, nullptr);
  EXPECT_EQ(gr->scheme, "grpc");
  EXPECT_EQ(gr->address, "127.0.0.1:18101");
  const PassTarget *uw = find("127.0.0.1:18101");
  ASSERT_NE(uw, nullptr);
}

TEST(ConfigTokenizer, QuotesEscapesCommentsBraces) {
  std::string dump = R"(# configuration file /etc/nginx/nginx.conf:
error_log syslog:server=unix:/dev/log info; # comment { ;
error_log stderr;
error_log memory:32m debug;
events{}
http {
  log_format  esc escape=none  "a\"b ${host}" '\'c\' $status' # trailing comment
      "d;e{f}";
  map $x ${y}z { default 1; }
  access_log syslog:server=127.0.0.1 esc;
  access_log /var/log/$host.log esc;
  access_log off;
  access_log logs/gz.log combined gzip=5 if=$loggable;
  server {
    location ~ "^/(a|b){2}$" { proxy_pass http://$backend; }
    location /up { proxy_pass https://app.internal:8443/x; }
  }
}
)";
  Config c = parse_config(dump, {"/usr/share/nginx/", "", "", ""});
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
  ASSERT_EQ(c.error_logs.size(), 3u);
  EXPECT_FALSE(c.error_logs[0].tailable);
  EXPECT_EQ(c.error_logs[0].level, "info");
  EXPECT_EQ(c.error_logs[0].not_tailable_reason, "logs to syslog");
  EXPECT_EQ(c.error_logs[1].not_tailable_reason, "logs to stderr");
  EXPECT_EQ(c.error_logs[1].level, "error");
  EXPECT_FALSE(c.error_logs[2].tailable);
  const LogFormat &f = c.log_formats.at("esc");
  EXPECT_EQ(f.escape, Escape::none);
  EXPECT_EQ(f.format, "a\"b ${host}'c' $statusd;e{f}");
  ASSERT_EQ(c.access_logs.size(), 4u);
  EXPECT_EQ(c.access_logs[0].not_tailable_reason, "logs to syslog");
  EXPECT_EQ(c.access_logs[1].not_tailable_reason, "path contains variables");
  EXPECT_TRUE(c.access_logs[2].off);
  EXPECT_EQ(c.access_logs[3].path, "/usr/share/nginx/logs/gz.log");
  EXPECT_EQ(c.access_logs[3].not_tailable_reason, "gzip-compressed");
  ASSERT_EQ(c.passes.size(), 2u);
  EXPECT_TRUE(c.passes[0].has_variables);
  EXPECT_EQ(c.passes[0].address, "");
  EXPECT_EQ(c.passes[1].scheme, "https");
  EXPECT_EQ(c.passes[1].address, "app.internal:8443");
}

TEST(ConfigTokenizer, DefaultsAndGlobIncludes) {
  std::string dump = "# configuration file /etc/nginx/nginx.conf:\n"
                     "http { include sites/*.conf; include missing.conf; }\n\n"
                     "# configuration file /etc/nginx/sites/a.conf:\n"
                     "upstream a { server 10.0.0.1; }\n"
                     "# configuration file /etc/nginx/sites/b.conf:\n"
                     "server { location / { proxy_pass http://a; } }\n";
  Config c = parse_config(dump, {"/usr/share/nginx/", "", "/var/log/nginx/error.log",
                                 "/var/log/nginx/access.log"});
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_NE(c.warnings[0].find("missing.conf"), std::string::npos);
  ASSERT_EQ(c.error_logs.size(), 1u);
  EXPECT_EQ(c.error_logs[0].path, "/var/log/nginx/error.log");
  ASSERT_EQ(c.access_logs.size(), 1u);
  EXPECT_EQ(c.access_logs[0].path, "/var/log/nginx/access.log");
  ASSERT_EQ(c.passes.size(), 1u);
  ASSERT_NE(c.passes[0].upstream, nullptr);
  EXPECT_EQ(c.passes[0].upstream->servers[0].address, "10.0.0.1");
}

TEST(ConfigTokenizer, BrokenInputNeverThrows) {
  for (std::string d : {"", "garbage", "# configuration file /x:\nhttp {", "# configuration file /x:\n}}}",
                        "# configuration file /x:\nlog_format a \"unterminated", 
                        "# configuration file /x:\ninclude /x;\n"}) {
    Config c = parse_config(d);
    (void)c;
  }
  Config c = parse_config("# configuration file /x:\nhttp {");
  EXPECT_FALSE(c.warnings.empty());
}

TEST(ConfigPaths, Resolve) {
  EXPECT_EQ(resolve_path("logs/a.log", "/p/"), "/p/logs/a.log");
  EXPECT_EQ(resolve_path("logs/a.log", "/p"), "/p/logs/a.log");
  EXPECT_EQ(resolve_path("/abs", "/p/"), "/abs");
}

} // namespace

namespace {
// Found by config_fuzzer: a file that globs itself made the expansion exponential.
TEST(ConfigTokenizer, RecursiveIncludesStayLinear) {
  std::string dump = "# configuration file /c/nginx.conf:\ninclude *.conf; include *.conf;\n"
                     "# configuration file /c/a.conf:\ninclude *.conf; include *.conf;\n"
                     "# configuration file /c/b.conf:\ninclude *.conf; include *.conf;\n";
  Config c = parse_config(dump);
  EXPECT_FALSE(c.warnings.empty());
}
} // namespace
