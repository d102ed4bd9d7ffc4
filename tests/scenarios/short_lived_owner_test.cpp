// An upstream that owned its port for ~200 ms: it starts listening, takes nginx's connection into
// its accept queue, and exits (or is OOM-killed) before a host sample can see it. Only the kernel's
// listen records name it; the verdicts must still be upstream_exited / upstream_oom_killed with
// upstream_process naming that short-lived pid (issue 9, item 3). A unix-socket upstream has no
// listen tracepoint: the kernel names it from its descriptor table as it dies (unix_listener_exit).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include "loopback_listener.h"
#include "scenario.h"

using namespace why502::scenario;

namespace {

enum class Death { exit3, oom, sigkill };

// listen() on a unix socket at `path`; -1 on failure.
int listen_on_unix(const std::string &path, int backlog) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  if (fd < 0 || path.size() >= sizeof(a.sun_path))
    return -1;
  memcpy(a.sun_path, path.c_str(), path.size() + 1);
  unlink(path.c_str());
  if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0 || listen(fd, backlog) != 0 ||
      chmod(path.c_str(), 0666) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// A forked upstream: waits for "go", listens on `port` (or the unix socket `unix_path`), reports
// ready, lives `life_s`, then dies (sigkill: a process of its own kills it).
class BriefUpstream {
public:
  BriefUpstream(uint16_t port, Death how, double life_s, const std::string &unix_path = "") {
    int go[2], ready[2];
    if (pipe(go) != 0 || pipe(ready) != 0)
      throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      close(go[1]);
      close(ready[0]);
      prctl(PR_SET_NAME, "w502-brief");
      char c;
      if (read(go[0], &c, 1) != 1)
        _exit(90);
      int fd = unix_path.empty() ? why502::testing::listen_on_loopback(port, 64) : listen_on_unix(unix_path, 64);
      if (fd < 0)
        _exit(91);
      if (how == Death::sigkill) {
        pid_t self = getpid();
        if (fork() == 0) {
          close(fd); // the listener must die with its owner alone
          usleep(useconds_t(life_s * 1e6));
          kill(self, SIGKILL);
          _exit(0);
        }
      }
      if (write(ready[1], "r", 1) != 1)
        _exit(92);
      if (how == Death::sigkill)
        pause();
      usleep(useconds_t(life_s * 1e6)); // never accepts: nginx's connections wait in the queue
      if (how == Death::exit3)
        _exit(3); // the exit closes the listener: the queued connections are reset
      // Touch memory until the cgroup's OOM killer ends us.
      size_t size = size_t(512) << 20;
      char *p = static_cast<char *>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      for (size_t i = 0; p != MAP_FAILED && i < size; i += 4096)
        p[i] = 1;
      _exit(94);
    }
    close(go[0]);
    close(ready[1]);
    go_ = go[1];
    ready_ = ready[0];
  }
  ~BriefUpstream() {
    if (pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(go_);
    close(ready_);
  }
  pid_t pid() const { return pid_; }
  // Lets it listen; true once it does.
  bool start() {
    char c;
    return write(go_, "g", 1) == 1 && read(ready_, &c, 1) == 1;
  }
  // Its wait status once it died (within timeout_s), -1 otherwise.
  int wait(double timeout_s) {
    int status = -1;
    wait_until([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout_s);
    return status;
  }

private:
  pid_t pid_ = -1;
  int go_ = -1, ready_ = -1;
};

class BriefOwnerScenario : public ScenarioTest {
protected:
  // One request while the owner lives (reset from its accept queue when it dies), then requests
  // until one more is refused.
  void run(Death how, const std::string &cause) {
    uint16_t port = free_port();
    std::string upstream = "127.0.0.1:" + std::to_string(port);
    start_nginx(proxy_config("http://" + upstream, "1s", "5s"));
    std::unique_ptr<MemoryCgroup> cg;
    BriefUpstream up(port, how, how == Death::exit3 ? 0.2 : 0.1);
    if (how == Death::oom) {
      cg = std::make_unique<MemoryCgroup>("scn-brief", 32ull << 20);
      cg->add(up.pid());
    }
    start_watch();
    ASSERT_TRUE(up.start());
    HttpResult first = http_get("127.0.0.1", nginx().port(), "/", 5.0);
    int status = up.wait(5.0);
    ASSERT_NE(status, -1) << "the upstream did not die";
    if (how == Death::exit3)
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << status;
    else
      ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && cg->oom_kills() >= 1) << status;
    EXPECT_EQ(first.status, 502) << first.error;
    drive("/", 1, 3);
    ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "recv() failed (104: Connection reset by peer)"));
    ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "connect() failed (111: Connection refused)", 2));
    auto verdicts = finish_watch();
    if (!watching())
      return;
    auto matched = expect_verdicts(verdicts, cause, upstream);
    EXPECT_EQ(matched.size(), 2u);
    for (auto &v : matched) {
      ASSERT_TRUE(v["upstream_process"].is_object()) << v.dump();
      EXPECT_EQ(v["upstream_process"].value("pid", 0), up.pid()) << v.dump();
      EXPECT_EQ(v["upstream_process"].value("comm", ""), "w502-brief") << v.dump();
    }
  }
};

} // namespace

// A TCP upstream listens for 200 ms, holds nginx's connection in its accept queue, and exits with
// code 3 before a host sample sees it: that request is reset, the next is refused.
TEST_F(BriefOwnerScenario, OwnerThatListened200msThenExitedIsUpstreamExited) {
  run(Death::exit3, "upstream_exited");
}

// A TCP upstream in a 32 MiB memory cgroup listens, holds nginx's connection in its accept queue,
// and is OOM-killed 100 ms later, before a host sample sees it: that request is reset, the next refused.
TEST_F(BriefOwnerScenario, OwnerThatListened100msThenWasOomKilledIsUpstreamOomKilled) {
  run(Death::oom, "upstream_oom_killed");
}

// A unix-socket upstream killed by SIGKILL 100 ms after it listened (issue 9: "a unix-socket upstream
// killed by kill -9 was named only on some runs"). The request waiting in its backlog is reset, the
// next is refused; both name the killed pid, which the kernel saw holding the listener as it died.
TEST_F(BriefOwnerScenario, UnixOwnerKilledBySigkillAfter100msIsNamed) {
  std::string path = dir() + "/brief.sock";
  std::string upstream = "unix:" + path;
  start_nginx(proxy_config("http://" + upstream, "1s", "5s"));
  BriefUpstream up(0, Death::sigkill, 0.1, path);
  start_watch();
  ASSERT_TRUE(up.start());
  HttpResult first = http_get("127.0.0.1", nginx().port(), "/", 5.0);
  int status = up.wait(5.0);
  ASSERT_TRUE(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_EQ(first.status, 502) << first.error;
  drive("/", 1, 3);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "failed (111: Connection refused)", 2));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  auto matched = expect_verdicts(verdicts, "upstream_killed_by_signal", upstream);
  EXPECT_EQ(matched.size(), 2u);
  for (auto &v : matched) {
    ASSERT_TRUE(v["upstream_process"].is_object()) << v.dump();
    EXPECT_EQ(v["upstream_process"].value("pid", 0), up.pid()) << v.dump();
    EXPECT_EQ(v["upstream_process"].value("comm", ""), "w502-brief") << v.dump();
    EXPECT_NE(v.value("summary", "").find("SIGKILL"), std::string::npos) << v.dump();
  }
  // The kernel's own record of the owner (not only a host sample): in the capture beside the verdicts.
  bool recorded = false;
  for (const auto &line : read_lines(dir() + "/capture.jsonl")) {
    auto j = json::parse(line, nullptr, false);
    recorded |= j.value("event", "") == "unix_listener_exit" && j.value("pid", 0) == up.pid() &&
                j.value("local", "") == upstream;
  }
  EXPECT_TRUE(recorded) << "no unix_listener_exit record of pid " << up.pid();
}
