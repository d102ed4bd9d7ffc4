// A real nginx from a temp multi-file config: discovery, `nginx -s reload`, and both log rotation
// styles, with every line delivered exactly once. Needs root (skips otherwise).
#include "why502/nginx.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

using namespace why502::nginx;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const char *nginx_bin() {
  const char *e = getenv("WHY502_NGINX");
  return e ? e : "/usr/sbin/nginx";
}

int run_cmd(const std::vector<std::string> &argv) {
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char *> a;
    for (auto &s : argv)
      a.push_back(const_cast<char *>(s.c_str()));
    a.push_back(nullptr);
    execv(a[0], a.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// HTTP/1.0 GET on 127.0.0.1:port; returns the status code or -1.
int http_get(int port, const std::string &path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int status = -1;
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) {
    std::string req = "GET " + path + " HTTP/1.0\r\nHost: it.test\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[256];
      ssize_t n = read(fd, buf, sizeof buf - 1);
      if (n > 12) {
        buf[n] = 0;
        status = atoi(buf + 9);
      }
    }
  }
  close(fd);
  return status;
}

template <class F> bool wait_for(F f, std::chrono::milliseconds limit = 5000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (f())
      return true;
    std::this_thread::sleep_for(20ms);
  }
  return f();
}

// One private nginx; always stopped and cleaned up, even when a test fails.
constexpr int kPort = 18400;
constexpr int kDeadPort = 18401; // nothing listens here

class NginxIT : public ::testing::Test {
protected:
  void SetUp() override {
    if (geteuid() != 0)
      GTEST_SKIP() << "needs root";
    if (access(nginx_bin(), X_OK) != 0)
      FAIL() << nginx_bin() << " not found (deploy/setup.sh installs nginx)";
    char tmpl[] = "/tmp/why502-nginx-it-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/conf/conf.d");
    fs::create_directories(dir_ + "/logs");
    std::ofstream(dir_ + "/conf/nginx.conf") << "worker_processes 2;\n"
                                                "pid " << dir_ << "/nginx.pid;\n"
                                                "error_log logs/error.log warn;\n"
                                                "events { worker_connections 64; }\n"
                                                "http {\n"
                                                "  include conf.d/*.conf;\n"
                                                "}\n";
    std::ofstream(dir_ + "/conf/conf.d/a_formats.conf")
        << "log_format it '$remote_addr [$time_local] \"$request\" $status pid=$pid '\n"
           "              'msec=$msec ua=\"$upstream_addr\" us=\"$upstream_status\"';\n"
           "access_log logs/access.log it;\n"
           "access_log logs/combined.log;\n";
    std::ofstream(dir_ + "/conf/conf.d/b_server.conf")
        << "upstream dead { server 127.0.0.1:" << kDeadPort << " max_fails=3; keepalive 4; }\n"
        << "server {\n  listen 127.0.0.1:" << kPort << ";\n"
        << "  location /ok { return 200 \"ok\\n\"; }\n"
        << "  location /r/ { return 200 \"r\\n\"; }\n"
        << "  location /dead { proxy_pass http://dead; }\n}\n";
    conf_ = dir_ + "/conf/nginx.conf";
    ASSERT_EQ(run_cmd({nginx_bin(), "-p", dir_ + "/", "-c", conf_}), 0);
    ASSERT_TRUE(wait_for([&] { return master() > 0; })) << "nginx did not write its pid";
    ASSERT_TRUE(wait_for([&] { return scan_workers(master()).size() == 2; }));
    ASSERT_TRUE(wait_for([&] { return http_get(kPort, "/ok") == 200; }));
  }

  void TearDown() override {
    pid_t m = master();
    if (m > 0) {
      kill(m, SIGTERM);
      if (!wait_for([&] { return kill(m, 0) != 0; }, 3000ms))
        kill(m, SIGKILL);
      for (const auto &w : scan_workers(m))
        kill(w.pid, SIGKILL);
    }
    if (!dir_.empty())
      fs::remove_all(dir_);
  }

  pid_t master() const {
    std::ifstream f(dir_ + "/nginx.pid");
    pid_t p = 0;
    f >> p;
    return p;
  }

  std::string dir_, conf_;
};

TEST_F(NginxIT, DiscoversWorkersConfigLogsAndUpstreams) {
  auto r = discover(master());
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->instances.size(), 1u);
  const Instance &in = r->instances[0];
  EXPECT_EQ(in.master_pid, master());
  EXPECT_EQ(in.workers.size(), 2u);
  EXPECT_EQ(in.config_path, conf_);
  EXPECT_EQ(in.prefix, dir_ + "/");
  EXPECT_TRUE(in.config_error.empty()) << in.config_error;
  const Config &c = in.config;
  EXPECT_EQ(c.files.size(), 3u);
  EXPECT_EQ(c.worker_processes, "2");
  ASSERT_EQ(c.error_logs.size(), 1u);
  EXPECT_EQ(c.error_logs[0].path, dir_ + "/logs/error.log");
  EXPECT_EQ(c.error_logs[0].level, "warn");
  ASSERT_EQ(c.access_logs.size(), 2u);
  EXPECT_EQ(c.access_logs[0].path, dir_ + "/logs/access.log");
  EXPECT_EQ(c.access_logs[0].format_name, "it");
  EXPECT_EQ(c.access_logs[1].format_name, "combined");
  const Upstream *u = c.find_upstream("dead");
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->servers.at(0).max_fails, 3);
  EXPECT_EQ(u->keepalive, 4);
  ASSERT_EQ(c.passes.size(), 1u);
  EXPECT_EQ(c.passes[0].upstream, u);

  // The whole path: a 502 through the discovered logs and formats.
  LogTailer err(c.error_logs[0].path), acc(c.access_logs[0].path);
  EXPECT_EQ(http_get(kPort, "/dead"), 502);
  std::optional<ErrorLogLine> el;
  std::optional<AccessLogLine> al;
  auto parser = AccessLogParser::for_format(*c.format_for(c.access_logs[0]));
  ASSERT_TRUE(wait_for([&] {
    err.drain([&](std::string_view l, bool) {
      if (auto p = parse_error_line(l); p && p->failure == UpstreamFailure::connect_failed)
        el = p;
    });
    acc.drain([&](std::string_view l, bool) {
      if (auto p = parser.parse(l))
        al = p;
    });
    return el && al;
  }));
  EXPECT_EQ(el->err, 111);
  EXPECT_EQ(el->upstream_address, "127.0.0.1:" + std::to_string(kDeadPort));
  EXPECT_TRUE(al->is_502());
  ASSERT_EQ(al->upstream.size(), 1u);
  EXPECT_EQ(al->upstream[0].addr, "127.0.0.1:" + std::to_string(kDeadPort));
  EXPECT_EQ(al->pid, el->pid); // same worker in both logs
}

TEST_F(NginxIT, ReloadGivesNewWorkersAndTrackerSeesIt) {
  WorkerTracker t(master());
  auto first = t.rescan();
  ASSERT_EQ(first.added.size(), 2u);
  std::set<pid_t> old(first.added.begin(), first.added.end());
  ASSERT_EQ(run_cmd({nginx_bin(), "-p", dir_ + "/", "-c", conf_, "-s", "reload"}), 0);
  bool reloaded = false;
  ASSERT_TRUE(wait_for([&] {
    auto c = t.rescan();
    reloaded = reloaded || c.reloaded;
    int fresh = 0, stale = 0;
    for (const auto &w : t.workers()) {
      fresh += !w.shutting_down && !old.count(w.pid);
      stale += !w.shutting_down && old.count(w.pid);
    }
    return fresh == 2 && stale == 0;
  }));
  EXPECT_TRUE(reloaded);
  for (const auto &w : scan_workers(master())) {
    if (!w.shutting_down) {
      EXPECT_EQ(old.count(w.pid), 0u);
    }
  }
  EXPECT_TRUE(t.master_alive());
}

// Sends requests /r/<from>..<to>, draining the tailer between them.
class Collector {
public:
  explicit Collector(LogTailer &t) : t_(t) {}
  void drain() {
    t_.drain([&](std::string_view l, bool) {
      auto p = l.find("GET /r/");
      if (p != std::string_view::npos)
        seen_[std::atoi(std::string(l.substr(p + 7)).c_str())]++;
    });
  }
  void send(int from, int to) {
    for (int i = from; i < to; ++i) {
      ASSERT_EQ(http_get(kPort, "/r/" + std::to_string(i)), 200);
      if (i % 7 == 0)
        drain();
    }
  }
  void expect_exactly_once(int n) {
    ASSERT_TRUE(wait_for([&] {
      drain();
      return seen_.size() == static_cast<size_t>(n);
    })) << "got " << seen_.size() << " of " << n;
    for (int i = 0; i < n; ++i)
      EXPECT_EQ(seen_[i], 1) << "request " << i;
  }

private:
  LogTailer &t_;
  std::map<int, int> seen_;
};

TEST_F(NginxIT, RenameCreateReopenDeliversEveryLineOnce) {
  const std::string log = dir_ + "/logs/access.log";
  LogTailer t(log);
  Collector c(t);
  c.send(0, 30);
  fs::rename(log, log + ".1"); // logrotate: rename ...
  c.send(30, 60);              // nginx still writes to access.log.1
  ASSERT_EQ(kill(master(), SIGUSR1), 0); // ... then `nginx -s reopen`
  ASSERT_TRUE(wait_for([&] { return fs::exists(log); }));
  std::this_thread::sleep_for(200ms); // every worker handles USR1
  c.send(60, 90);
  c.expect_exactly_once(90);
  EXPECT_EQ(t.stats().rotations, 1u);
}

TEST_F(NginxIT, CopyTruncateDeliversEveryLineOnce) {
  const std::string log = dir_ + "/logs/access.log";
  LogTailer t(log);
  Collector c(t);
  c.send(0, 40);
  c.expect_exactly_once(40);
  fs::copy_file(log, log + ".1"); // logrotate copytruncate
  fs::resize_file(log, 0);
  c.send(40, 50);
  c.expect_exactly_once(50);
  EXPECT_EQ(t.stats().truncations, 1u);
  EXPECT_EQ(t.stats().rotations, 0u);
}

} // namespace
