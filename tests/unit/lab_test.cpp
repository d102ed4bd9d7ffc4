// The fault lab without root: config text, access-log parsing, the HTTP client against local
// sockets, and the built-in upstream's behaviours (it only needs 127.0.0.1, not privileges).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "why502/lab.h"

using namespace why502::lab;

namespace {

NginxConfig sample_config() {
  NginxConfig c;
  c.worker_rlimit_nofile = 64;
  c.upstreams.push_back({"backend", {{"127.0.0.1:9001", 2, "5s", false}, {"unix:/tmp/x.sock", 1, "10s", true}}, 8});
  NginxLocation proxy;
  proxy.path = "/";
  proxy.target = "http://backend";
  proxy.connect_timeout = "1s";
  proxy.next_upstream = "error timeout";
  c.locations.push_back(proxy);
  NginxLocation php;
  php.path = "/php";
  php.kind = PassKind::fastcgi;
  php.target = "unix:/tmp/php.sock";
  php.fastcgi_script = "/tmp/slow.php";
  c.locations.push_back(php);
  return c;
}

bool contains(const std::string &hay, const std::string &needle) { return hay.find(needle) != std::string::npos; }

} // namespace

TEST(LabNginxConf, RendersEveryDirectiveInsideTheDir) {
  std::string conf = render_nginx_conf(sample_config(), "/d", 8080);
  EXPECT_TRUE(contains(conf, "worker_processes 2;\n"));
  EXPECT_TRUE(contains(conf, "worker_rlimit_nofile 64;\n"));
  EXPECT_TRUE(contains(conf, "pid /d/logs/nginx.pid;"));
  EXPECT_TRUE(contains(conf, "error_log /d/logs/error.log info;"));
  EXPECT_TRUE(contains(conf, "access_log /d/logs/access.log why502lab;"));
  EXPECT_TRUE(contains(conf, "$pid $msec \"$upstream_addr\" \"$upstream_status\" $request_time"));
  EXPECT_TRUE(contains(conf, "proxy_temp_path /d/temp/proxy;"));
  EXPECT_TRUE(contains(conf, "server 127.0.0.1:9001 max_fails=2 fail_timeout=5s;"));
  EXPECT_TRUE(contains(conf, "server unix:/tmp/x.sock max_fails=1 fail_timeout=10s backup;"));
  EXPECT_TRUE(contains(conf, "keepalive 8;"));
  EXPECT_TRUE(contains(conf, "listen 127.0.0.1:8080;"));
  EXPECT_TRUE(contains(conf, "proxy_pass http://backend;"));
  EXPECT_TRUE(contains(conf, "proxy_connect_timeout 1s;"));
  EXPECT_TRUE(contains(conf, "proxy_next_upstream error timeout;"));
  // keepalive upstream: HTTP/1.1 and no Connection: close
  EXPECT_TRUE(contains(conf, "proxy_http_version 1.1;"));
  EXPECT_TRUE(contains(conf, "proxy_set_header Connection \"\";"));
  EXPECT_TRUE(contains(conf, "fastcgi_pass unix:/tmp/php.sock;"));
  EXPECT_TRUE(contains(conf, "fastcgi_param SCRIPT_FILENAME /tmp/slow.php;"));
  EXPECT_TRUE(contains(conf, std::string("location = ") + kHealthPath));
}

TEST(LabNginxConf, NoKeepaliveHeadersWithoutKeepalive) {
  NginxConfig c;
  NginxLocation l;
  l.target = "http://127.0.0.1:9";
  c.locations.push_back(l);
  std::string conf = render_nginx_conf(c, "/d", 1);
  EXPECT_FALSE(contains(conf, "proxy_http_version"));
  EXPECT_FALSE(contains(conf, "worker_rlimit_nofile"));
}

// nginx itself accepts what we render (no root needed for -t with every path in a temp dir).
TEST(LabNginxConf, NginxAcceptsTheConfig) {
  if (access("/usr/sbin/nginx", X_OK) != 0)
    GTEST_SKIP() << "no /usr/sbin/nginx";
  TempDir d("why502-labconf");
  std::filesystem::create_directories(d.path() + "/logs");
  std::filesystem::create_directories(d.path() + "/temp");
  std::string conf = d.write("nginx.conf", render_nginx_conf(sample_config(), d.path(), 18080));
  CommandResult r = run_command({"/usr/sbin/nginx", "-t", "-p", d.path() + "/", "-e", d.path() + "/logs/error.log",
                                 "-c", conf});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(LabAccessLog, ParsesTheLabFormat) {
  auto e = parse_access_line("127.0.0.1 [30/Nov/2026:17:02:01 +0000] \"GET /x HTTP/1.1\" 502 157 \"why502-lab\" "
                             "4242 1764522121.123 \"127.0.0.1:8080, 127.0.0.1:8081\" \"502, 502\" 0.004 \"0.001, -\"");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->client, "127.0.0.1");
  EXPECT_EQ(e->request, "GET /x HTTP/1.1");
  EXPECT_EQ(e->status, 502);
  EXPECT_EQ(e->host, "why502-lab");
  EXPECT_EQ(e->pid, 4242);
  EXPECT_DOUBLE_EQ(e->msec, 1764522121.123);
  EXPECT_EQ(e->upstream_addr, "127.0.0.1:8080, 127.0.0.1:8081");
  EXPECT_EQ(e->upstream_status, "502, 502");
  EXPECT_DOUBLE_EQ(e->request_time, 0.004);
  EXPECT_EQ(e->upstream_connect_time, "0.001, -");
}

TEST(LabAccessLog, RejectsOtherFormats) {
  EXPECT_FALSE(parse_access_line("127.0.0.1 - - [30/Nov/2026:17:02:01 +0000] \"GET / HTTP/1.1\" 200 3 \"-\" \"curl\""));
  EXPECT_FALSE(parse_access_line(""));
  EXPECT_FALSE(parse_access_line("1 [x] \"unterminated"));
}

TEST(LabHttp, ParsesStatusLines) {
  EXPECT_EQ(parse_status_line("HTTP/1.1 502 Bad Gateway\r"), 502);
  EXPECT_EQ(parse_status_line("HTTP/1.0 200 OK"), 200);
  EXPECT_EQ(parse_status_line("HTTP/1.1 504"), 504);
  EXPECT_EQ(parse_status_line("HTTP/1.1 5x2 Bad"), 0);
  EXPECT_EQ(parse_status_line("HTTP/1.1 5022 Bad"), 0);
  EXPECT_EQ(parse_status_line("SSH-2.0-OpenSSH"), 0);
  EXPECT_EQ(parse_status_line(""), 0);
}

namespace {
// A one-shot server on 127.0.0.1 that answers the first connection with `reply` (or just closes).
struct OneShot {
  int lfd;
  uint16_t port = 0;
  std::thread t;
  explicit OneShot(std::string reply, bool read_first = true, double hold_s = 0) {
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(lfd, reinterpret_cast<sockaddr *>(&a), sizeof(a));
    listen(lfd, 4);
    socklen_t len = sizeof(a);
    getsockname(lfd, reinterpret_cast<sockaddr *>(&a), &len);
    port = ntohs(a.sin_port);
    t = std::thread([this, reply, read_first, hold_s] {
      int fd = accept(lfd, nullptr, nullptr);
      if (fd < 0)
        return;
      char buf[4096];
      if (read_first)
        (void)!recv(fd, buf, sizeof(buf), 0);
      if (!reply.empty())
        (void)!send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::duration<double>(hold_s));
      close(fd);
    });
  }
  ~OneShot() {
    shutdown(lfd, SHUT_RDWR);
    t.join();
    close(lfd);
  }
};
} // namespace

TEST(LabHttp, ReadsStatusAndBody) {
  OneShot s("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\n\r\nhello");
  HttpResult r = http_get("127.0.0.1", s.port, "/", 2.0);
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.body, "hello");
}

TEST(LabHttp, ReportsCloseBeforeStatus) {
  OneShot s("");
  HttpResult r = http_get("127.0.0.1", s.port, "/", 2.0);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error, "closed before status line");
}

TEST(LabHttp, TimesOut) {
  OneShot s("", true, 1.0);
  HttpResult r = http_get("127.0.0.1", s.port, "/", 0.2);
  EXPECT_EQ(r.error, "timeout");
  EXPECT_LT(r.seconds, 0.9);
}

TEST(LabHttp, ReportsRefusedConnect) {
  uint16_t port = free_port();
  HttpResult r = http_get("127.0.0.1", port, "/", 1.0);
  EXPECT_EQ(r.error, "connect: Connection refused");
}

TEST(LabHttp, KeepAliveConnectionReusesAndReconnects) {
  AppServer app;
  HttpConnection c("127.0.0.1", app.port());
  for (int i = 0; i < 3; ++i) {
    HttpResult r = c.get("/ok/" + std::to_string(i), 2.0);
    EXPECT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ok\n");
  }
  EXPECT_EQ(c.connects(), 1);
  EXPECT_EQ(app.requests_served(), 3u);
  // The server closes without answering: an error, and the next request opens a new connection.
  EXPECT_EQ(c.get("/close_early", 2.0).error, "closed before status line");
  HttpResult r = c.get("/ok", 2.0);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(c.connects(), 2);
}

TEST(LabAppServer, BehaviourNamesRoundTrip) {
  for (auto b : {Behaviour::ok, Behaviour::slow, Behaviour::reset, Behaviour::close_early, Behaviour::big_header,
                 Behaviour::exit_mid_request, Behaviour::crash, Behaviour::alloc, Behaviour::never_accept})
    EXPECT_EQ(behaviour_from_name(behaviour_name(b)), b);
  EXPECT_FALSE(behaviour_from_name("nope"));
}

TEST(LabAppServer, ServesAndSwitchesBehaviourAtRuntime) {
  AppServer app;
  EXPECT_GT(app.port(), 0);
  EXPECT_EQ(app.address(), "127.0.0.1:" + std::to_string(app.port()));
  HttpResult r = http_get("127.0.0.1", app.port(), "/", 2.0);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "ok\n");
  // comm is set for the tracer to name
  EXPECT_EQ(read_file("/proc/" + std::to_string(app.pid()) + "/comm"), "why502-app\n");

  app.set_behaviour(Behaviour::close_early);
  r = http_get("127.0.0.1", app.port(), "/", 2.0);
  EXPECT_EQ(r.error, "closed before status line");
  // The path overrides the default.
  r = http_get("127.0.0.1", app.port(), "/ok", 2.0);
  EXPECT_EQ(r.status, 200);
  r = http_get("127.0.0.1", app.port(), "/reset", 2.0);
  EXPECT_EQ(r.error, "recv: Connection reset by peer");
  r = http_get("127.0.0.1", app.port(), "/big_header", 2.0);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(app.requests_served(), 5u);
  EXPECT_TRUE(app.running());
}

TEST(LabAppServer, ExitMidRequestExitsWithCode3) {
  AppServer app;
  HttpResult r = http_get("127.0.0.1", app.port(), "/exit_mid_request", 2.0);
  EXPECT_EQ(r.status, 0);
  auto st = app.process().wait(5.0);
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), 3);
}

TEST(LabAppServer, CrashDiesOfSigsegv) {
  AppServer app;
  http_get("127.0.0.1", app.port(), "/crash", 2.0);
  auto st = app.process().wait(5.0);
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFSIGNALED(*st));
  EXPECT_EQ(WTERMSIG(*st), SIGSEGV);
}

TEST(LabAppServer, UnixSocketAndSlow) {
  TempDir d("why502-labunix");
  AppServerOptions o;
  o.address = "unix:" + d.file("app.sock");
  o.behaviour = Behaviour::slow;
  o.slow_seconds = 0.3;
  AppServer app(o);
  EXPECT_EQ(app.address(), o.address);
  EXPECT_TRUE(wait_listening(app.address(), 2.0));
}

TEST(LabAppServer, ListensOnIpv6Loopback) {
  AppServerOptions o;
  o.address = "[::1]:0";
  AppServer app(o);
  ASSERT_NE(app.port(), 0);
  EXPECT_EQ(app.address(), "[::1]:" + std::to_string(app.port()));
  EXPECT_TRUE(wait_listening(app.address(), 2.0));
  EXPECT_THROW(wait_listening("[::1:80", 0.1), why502::Error); // a bracket left open is not an address
}

TEST(LabAppServer, NeverAcceptFillsTheBacklog) {
  AppServerOptions o;
  o.behaviour = Behaviour::never_accept;
  o.backlog = 1;
  AppServer app(o);
  // The handshake completes (the kernel accepts into the queue), but no response ever comes.
  HttpResult r = http_get("127.0.0.1", app.port(), "/", 0.3);
  EXPECT_EQ(r.error, "timeout");
}

TEST(LabProcess, SpawnReportsExecFailure) {
  EXPECT_THROW(Process::spawn({"/nonexistent/binary"}), why502::Error);
}

TEST(LabProcess, StopReapsAndReportsTheSignal) {
  Process p = Process::spawn({"/bin/sleep", "30"});
  EXPECT_TRUE(p.running());
  int st = p.stop(SIGTERM, 2.0);
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGTERM);
  EXPECT_FALSE(p.running());
}

TEST(LabProcess, RunCommandCapturesOutput) {
  CommandResult r = run_command({"/bin/sh", "-c", "echo out; echo err >&2; exit 4"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.output, "out\nerr\n");
  EXPECT_THROW(check_command({"/bin/false"}), why502::Error);
}

TEST(LabStop, SleepIsInterruptible) {
  request_stop();
  EXPECT_THROW(sleep_for(5), Interrupted);
  clear_stop();
  EXPECT_NO_THROW(sleep_for(0.01));
}

TEST(LabFiles, TempDirIsRemoved) {
  std::string path;
  {
    TempDir d;
    path = d.path();
    d.write("a", "x");
    EXPECT_EQ(read_file(d.file("a")), "x");
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(LabSysctl, PathOfName) {
  EXPECT_EQ(Sysctl::path_of("net.ipv4.tcp_abort_on_overflow"), "/proc/sys/net/ipv4/tcp_abort_on_overflow");
  EXPECT_EQ(Sysctl::path_of("/proc/sys/x/y"), "/proc/sys/x/y");
}
