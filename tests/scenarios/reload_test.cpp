// Continuous use: why502 keeps explaining failures across `nginx -s reload` (new workers, followed
// in the kernel from fork) and across log rotation (`mv` the logs, `nginx -s reopen`).
#include "scenario.h"

#include <climits>
#include <cstdio>
#include <cstdlib>

using namespace why502::scenario;

namespace {

class ReloadScenario : public ScenarioTest {
protected:
  std::string nobody_ = "127.0.0.1:" + std::to_string(free_port()); // nothing listens here

  static std::set<pid_t> as_set(const std::vector<pid_t> &v) { return {v.begin(), v.end()}; }

  // The verdicts whose time is at or after `since` (unix seconds).
  static std::vector<json> since(const std::vector<json> &vs, double t) {
    std::vector<json> out;
    for (auto &v : vs)
      if (parse_iso_time(v.value("time", "")) >= t)
        out.push_back(v);
    return out;
  }
};

// The `why502 watch` child of this test process (found by its executable).
pid_t why502_child() {
  char want[PATH_MAX];
  if (!realpath(WHY502_BINARY, want))
    return -1;
  for (pid_t p : child_pids(getpid())) {
    char exe[PATH_MAX];
    ssize_t n = readlink(("/proc/" + std::to_string(p) + "/exe").c_str(), exe, sizeof(exe) - 1);
    if (n > 0 && std::string(exe, size_t(n)) == want)
      return p;
  }
  return -1;
}

double now_unix() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

} // namespace

// After a reload the old workers exit and the master forks new ones that why502 never saw in a
// process scan: the BPF fork hook must have put them in the watched set from their first
// instruction, so their very first upstream attempt is explained.
TEST_F(ReloadScenario, NewWorkersAfterReloadAreFollowed) {
  start_nginx(proxy_config("http://" + nobody_));
  auto old_workers = as_set(nginx().worker_pids());
  ASSERT_EQ(old_workers.size(), 2u);
  start_watch();

  nginx().reload();
  auto new_workers = as_set(nginx().worker_pids());
  ASSERT_EQ(new_workers.size(), 2u);
  for (pid_t p : new_workers)
    ASSERT_FALSE(old_workers.count(p)) << "worker " << p << " survived the reload";
  for (pid_t p : old_workers)
    EXPECT_FALSE(process_alive(p)) << "old worker " << p << " still running";

  drive("/", 4, 6);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "connect() failed (111: Connection refused) while connecting to upstream", 4));
  auto f = failures();
  ASSERT_EQ(f.size(), 4u);
  for (auto &e : f) {
    EXPECT_TRUE(new_workers.count(e.pid)) << "access log names worker " << e.pid;
    EXPECT_EQ(e.upstream_addr, nobody_);
  }

  auto verdicts = finish_watch();
  if (!watching())
    return;
  auto matched = expect_verdicts(verdicts, "no_listener", nobody_);
  EXPECT_EQ(matched.size(), 4u);
  for (auto &v : matched) {
    pid_t worker = v.value("nginx_pid", 0);
    EXPECT_TRUE(new_workers.count(worker)) << "not a new worker: " << v.dump();
    EXPECT_FALSE(old_workers.count(worker)) << v.dump();
    ASSERT_TRUE(v["nginx_error"].is_string()) << v.dump();
    EXPECT_NE(v["nginx_error"].get<std::string>().find("(111: Connection refused)"), std::string::npos) << v.dump();
    EXPECT_EVIDENCE(v, "conn_fail",
                    e.value("pid", 0) == worker && e.value("failure", "") == "rst_in_syn_sent" &&
                        e.value("remote", "") == nobody_);
  }
}

// The same, but proving the following happens in the kernel: why502 is SIGSTOPped across the reload
// and the failing requests, so its userspace rescan of nginx's children (once a second) cannot add
// the new workers. Only the BPF fork hook can have put them in the watched set; otherwise their
// connection records would have been filtered out in the kernel and never reach the ring buffer.
TEST_F(ReloadScenario, NewWorkersAreFollowedInTheKernelWhileWhy502IsStopped) {
  start_nginx(proxy_config("http://" + nobody_));
  auto old_workers = as_set(nginx().worker_pids());
  start_watch();
  if (!watching())
    GTEST_SKIP() << "needs why502";
  pid_t w = why502_child();
  ASSERT_GT(w, 0) << "why502 watch child not found";
  ASSERT_EQ(kill(w, SIGSTOP), 0);
  struct Cont {
    pid_t p;
    ~Cont() { kill(p, SIGCONT); }
  } cont{w};
  ASSERT_TRUE(wait_until([&] {
    auto st = read_file("/proc/" + std::to_string(w) + "/stat");
    auto rp = st.rfind(')');
    return rp != std::string::npos && rp + 2 < st.size() && st[rp + 2] == 'T';
  }, 2.0)) << "why502 did not stop";

  nginx().reload();
  auto new_workers = as_set(nginx().worker_pids());
  ASSERT_EQ(new_workers.size(), 2u);
  for (pid_t p : new_workers)
    ASSERT_FALSE(old_workers.count(p));
  drive("/", 3, 5);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "connect() failed (111: Connection refused) while connecting to upstream", 3));
  ASSERT_EQ(kill(w, SIGCONT), 0);

  auto verdicts = finish_watch(3.0);
  auto matched = expect_verdicts(verdicts, "no_listener", nobody_);
  EXPECT_EQ(matched.size(), 3u);
  for (auto &v : matched) {
    pid_t worker = v.value("nginx_pid", 0);
    EXPECT_TRUE(new_workers.count(worker)) << "not a new worker: " << v.dump();
    EXPECT_EVIDENCE(v, "conn_fail",
                    e.value("pid", 0) == worker && e.value("failure", "") == "rst_in_syn_sent" &&
                        e.value("remote", "") == nobody_);
  }
}

// Log rotation the logrotate way: rename both logs, SIGUSR1 to the master (`nginx -s reopen`), and
// nginx writes to fresh files. why502 must notice the new inodes and read the error line (nginx_error)
// and the access line (status) of each later failure from the new files.
TEST_F(ReloadScenario, LogRotationWithReopen) {
  start_nginx(proxy_config("http://" + nobody_));
  auto workers = as_set(nginx().worker_pids());
  start_watch();

  // One failure before the rotation, joined from the original files.
  EXPECT_EQ(http_get("127.0.0.1", nginx().port(), "/before-rotation", 5.0).status, 502);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "(111: Connection refused)", 1));
  // Let why502 read the old files to their end before they are renamed.
  sleep_for(1.0);

  std::string err_old = nginx().error_log() + ".1", acc_old = nginx().access_log() + ".1";
  ASSERT_EQ(rename(nginx().error_log().c_str(), err_old.c_str()), 0);
  ASSERT_EQ(rename(nginx().access_log().c_str(), acc_old.c_str()), 0);
  ASSERT_EQ(kill(nginx().master_pid(), SIGUSR1), 0); // what `nginx -s reopen` sends
  // The master creates the new files, then tells the workers to reopen theirs.
  ASSERT_TRUE(wait_until([&] { return access(nginx().error_log().c_str(), F_OK) == 0 &&
                                      access(nginx().access_log().c_str(), F_OK) == 0; }, 5.0))
      << "nginx did not reopen its logs";
  sleep_for(0.5);
  double rotated_at = now_unix();

  // Distinct paths, so each error line (request: "GET /after-rotation-N ...") is unique to the new file.
  for (int i = 1; i <= 3; ++i)
    EXPECT_EQ(http_get("127.0.0.1", nginx().port(), "/after-rotation-" + std::to_string(i), 5.0).status, 502);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "connect() failed (111: Connection refused) while connecting to upstream", 3));
  auto f = failures(); // the new access.log only
  ASSERT_EQ(f.size(), 3u);
  for (auto &e : f)
    EXPECT_NE(e.request.find("/after-rotation-"), std::string::npos) << e.request;
  auto old_access = read_access_log(acc_old);
  ASSERT_EQ(old_access.size(), 1u);
  EXPECT_EQ(old_access[0].request, "GET /before-rotation HTTP/1.1");
  EXPECT_EQ(read_file(err_old).find("/after-rotation-"), std::string::npos) << "a worker wrote to the renamed error.log";

  auto all = finish_watch();
  if (!watching())
    return;
  EXPECT_EQ(all.size(), 4u) << dump(all);
  std::vector<json> before;
  for (auto &v : all)
    if (parse_iso_time(v.value("time", "")) < rotated_at)
      before.push_back(v);
  ASSERT_EQ(before.size(), 1u) << dump(all);
  EXPECT_EQ(before[0].value("cause", ""), "no_listener") << before[0].dump();
  EXPECT_EQ(before[0].value("status", 0), 502) << before[0].dump();
  ASSERT_TRUE(before[0]["nginx_error"].is_string()) << before[0].dump();
  EXPECT_NE(before[0]["nginx_error"].get<std::string>().find("GET /before-rotation"), std::string::npos) << before[0].dump();

  auto matched = expect_verdicts(since(all, rotated_at), "no_listener", nobody_); // against the new access.log
  ASSERT_EQ(matched.size(), 3u);
  std::set<std::string> paths;
  auto new_errors = read_lines(nginx().error_log());
  for (auto &v : matched) {
    pid_t worker = v.value("nginx_pid", 0);
    EXPECT_TRUE(workers.count(worker)) << v.dump();
    EXPECT_EQ(v.value("status", 0), 502) << "access line not read after rotation: " << v.dump();
    ASSERT_TRUE(v["nginx_error"].is_string()) << "error line not read after rotation: " << v.dump();
    std::string msg = v["nginx_error"].get<std::string>();
    EXPECT_NE(msg.find("connect() failed (111: Connection refused) while connecting to upstream"), std::string::npos) << v.dump();
    auto at = msg.find("GET /after-rotation-");
    ASSERT_NE(at, std::string::npos) << v.dump();
    paths.insert(msg.substr(at, msg.find(' ', at + 4) - at));
    ASSERT_TRUE(v["request"].is_object()) << v.dump();
    EXPECT_EQ(v["request"].value("request", ""), msg.substr(at, msg.find('"', at) - at)) << v.dump();
    // The line is in the new error.log, written by this worker.
    bool in_new = std::any_of(new_errors.begin(), new_errors.end(), [&](const std::string &l) {
      return l.find(msg) != std::string::npos && l.find(" " + std::to_string(worker) + "#") != std::string::npos;
    });
    EXPECT_TRUE(in_new) << msg << "\nnew error.log:\n" << read_file(nginx().error_log());
    EXPECT_EVIDENCE(v, "conn_fail", e.value("pid", 0) == worker && e.value("failure", "") == "rst_in_syn_sent");
  }
  EXPECT_EQ(paths.size(), 3u) << "each verdict joined to its own request";
}
