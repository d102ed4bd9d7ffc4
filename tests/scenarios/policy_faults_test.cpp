// Scenario 11: a local policy refuses nginx's connect() with EPERM.
//
// iptables cannot make a TCP connect() fail with EPERM/EACCES on this kernel (REJECT gives timeouts,
// 113, 101 or 111). A real policy that does: a cgroup-v2 BPF_CGROUP_INET4_CONNECT program that
// returns 0. The kernel then fails connect() with EPERM before any packet leaves (tcp_v4_pre_connect
// runs the hook), nginx logs "[crit] ... connect() to ADDR failed (1: Operation not permitted) while
// connecting to upstream" and answers 502.
#include "scenario.h"

#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstring>
#include <fstream>

using namespace why502::scenario;

namespace {

constexpr const char *kCgroup2Root = "/sys/fs/cgroup/unified";

long sys_bpf(int cmd, union bpf_attr *attr) { return syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

// A cgroup-v2 directory with a BPF_CGROUP_INET4_CONNECT program `r0 = 0; exit` attached: every IPv4
// connect() from a task in it fails with EPERM. The destructor detaches, moves every task back to
// the root cgroup and removes the directory.
class DenyConnectCgroup {
public:
  DenyConnectCgroup() {
    path_ = std::string(kCgroup2Root) + "/why502-deny-" + std::to_string(getpid());
    if (mkdir(path_.c_str(), 0755) != 0 && errno != EEXIST)
      throw why502::Error("mkdir " + path_ + ": " + strerror(errno));
    cg_fd_ = open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg_fd_ < 0) {
      int e = errno;
      cleanup();
      throw why502::Error("open " + path_ + ": " + strerror(e));
    }
    // r0 = 0 (BPF_ALU64 | BPF_MOV | BPF_K); exit (BPF_JMP | BPF_EXIT).
    struct bpf_insn insns[2] = {};
    insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
    insns[0].dst_reg = BPF_REG_0;
    insns[0].imm = 0;
    insns[1].code = BPF_JMP | BPF_EXIT;
    static const char license[] = "GPL";
    static char log[4096];
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_CGROUP_SOCK_ADDR;
    attr.expected_attach_type = BPF_CGROUP_INET4_CONNECT;
    attr.insns = uint64_t(uintptr_t(insns));
    attr.insn_cnt = 2;
    attr.license = uint64_t(uintptr_t(license));
    attr.log_buf = uint64_t(uintptr_t(log));
    attr.log_size = sizeof(log);
    attr.log_level = 1;
    memcpy(attr.prog_name, "why502_deny", sizeof("why502_deny"));
    prog_fd_ = int(sys_bpf(BPF_PROG_LOAD, &attr));
    if (prog_fd_ < 0) {
      int e = errno;
      cleanup();
      throw why502::Error(std::string("BPF_PROG_LOAD (cgroup/connect4): ") + strerror(e) + ": " + log);
    }
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = uint32_t(cg_fd_);
    attr.attach_bpf_fd = uint32_t(prog_fd_);
    attr.attach_type = BPF_CGROUP_INET4_CONNECT;
    if (sys_bpf(BPF_PROG_ATTACH, &attr) != 0) {
      int e = errno;
      cleanup();
      throw why502::Error(std::string("BPF_PROG_ATTACH ") + path_ + ": " + strerror(e));
    }
    attached_ = true;
  }
  ~DenyConnectCgroup() { cleanup(); }
  DenyConnectCgroup(const DenyConnectCgroup &) = delete;
  DenyConnectCgroup &operator=(const DenyConnectCgroup &) = delete;

  void add(pid_t pid) const {
    if (!write_procs(path_ + "/cgroup.procs", pid))
      throw why502::Error("move " + std::to_string(pid) + " into " + path_ + ": " + strerror(errno));
  }
  std::vector<pid_t> pids() const {
    std::vector<pid_t> out;
    for (auto &l : read_lines(path_ + "/cgroup.procs"))
      if (!l.empty())
        out.push_back(pid_t(std::stol(l)));
    return out;
  }
  const std::string &path() const { return path_; }

private:
  static bool write_procs(const std::string &file, pid_t pid) {
    int fd = open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      return false;
    std::string s = std::to_string(pid);
    bool ok = write(fd, s.data(), s.size()) == ssize_t(s.size());
    int e = errno;
    close(fd);
    errno = e;
    return ok;
  }

  void cleanup() noexcept {
    if (attached_) {
      union bpf_attr attr;
      memset(&attr, 0, sizeof(attr));
      attr.target_fd = uint32_t(cg_fd_);
      attr.attach_bpf_fd = uint32_t(prog_fd_);
      attr.attach_type = BPF_CGROUP_INET4_CONNECT;
      sys_bpf(BPF_PROG_DETACH, &attr);
      attached_ = false;
    }
    if (prog_fd_ >= 0)
      close(prog_fd_), prog_fd_ = -1;
    if (cg_fd_ >= 0)
      close(cg_fd_), cg_fd_ = -1;
    if (path_.empty())
      return;
    // Exiting tasks may linger a moment; retry the move + rmdir briefly.
    for (int i = 0; i < 100; ++i) {
      try {
        for (pid_t p : pids())
          write_procs(std::string(kCgroup2Root) + "/cgroup.procs", p);
      } catch (...) {
      }
      if (rmdir(path_.c_str()) == 0 || errno == ENOENT)
        break;
      usleep(20000);
    }
    path_.clear();
  }

  std::string path_;
  int cg_fd_ = -1;
  int prog_fd_ = -1;
  bool attached_ = false;
};

class PolicyScenario : public ScenarioTest {
protected:
  std::unique_ptr<AppServer> app_;
  void TearDown() override {
    ScenarioTest::TearDown();
    app_.reset();
  }
};

} // namespace

// 11. A cgroup connect4 program denies nginx's connects: connect() returns EPERM at once.
TEST_F(PolicyScenario, ConnectDenied) {
  struct stat st;
  if (stat((std::string(kCgroup2Root) + "/cgroup.procs").c_str(), &st) != 0)
    GTEST_SKIP() << "no cgroup2 hierarchy at " << kCgroup2Root;
  app_ = std::make_unique<AppServer>();
  auto &app = *app_;
  start_nginx(proxy_config("http://" + app.address(), "1s"));
  // Healthy before the policy: the upstream works and nginx reaches it.
  ASSERT_EQ(http_get("127.0.0.1", nginx().port(), "/", 5.0).status, 200);
  start_watch();

  std::set<pid_t> workers;
  std::string cgroup_path;
  {
    DenyConnectCgroup deny;
    cgroup_path = deny.path();
    deny.add(nginx().master_pid());
    for (pid_t w : nginx().worker_pids()) {
      deny.add(w);
      workers.insert(w);
    }
    ASSERT_EQ(workers.size(), 2u);
    auto in = deny.pids();
    ASSERT_EQ(in.size(), 3u) << "master and both workers in " << deny.path();
    // Our own connects (the client) are not in the cgroup and are not affected.
    drive("/", 3, 6);
    ASSERT_NO_FATAL_FAILURE(
        expect_nginx_failed(502, "failed (1: Operation not permitted) while connecting to upstream", 3));
  }
  EXPECT_NE(stat(cgroup_path.c_str(), &st), 0) << cgroup_path << " was not removed";
  // The policy is gone: nginx reaches the upstream again.
  EXPECT_EQ(http_get("127.0.0.1", nginx().port(), "/", 5.0).status, 200);

  // What nginx really logs: ngx_event_connect_peer's "[crit] connect() to ADDR failed (1: ...)".
  auto lines = nginx().errors_matching("(1: Operation not permitted)");
  ASSERT_FALSE(lines.empty());
  for (auto &l : lines) {
    EXPECT_NE(l.find("[crit]"), std::string::npos) << l;
    EXPECT_NE(l.find("connect() to " + app.address() + " failed (1: Operation not permitted) while connecting to upstream"),
              std::string::npos)
        << l;
  }
  auto f = failures();
  ASSERT_EQ(f.size(), 3u);
  for (auto &e : f) {
    EXPECT_EQ(e.upstream_addr, app.address());
    EXPECT_EQ(e.upstream_status, "502");
    EXPECT_TRUE(workers.count(e.pid)) << e.pid;
  }
  EXPECT_EQ(app.requests_served(), 2u) << "only the two healthy requests reached the upstream";

  auto verdicts = finish_watch();
  if (!watching())
    return;
  auto matched = expect_verdicts(verdicts, "connect_denied", app.address());
  EXPECT_EQ(matched.size(), 3u);
  for (auto &v : matched) {
    pid_t worker = v.value("nginx_pid", 0);
    EXPECT_TRUE(workers.count(worker)) << v.dump();
    ASSERT_TRUE(v["nginx_error"].is_string()) << v.dump();
    EXPECT_NE(v["nginx_error"].get<std::string>().find("(1: Operation not permitted)"), std::string::npos) << v.dump();
    EXPECT_EVIDENCE(v, "syscall_error",
                    e.value("syscall", "") == "connect" && e.value("errno", 0) == EPERM &&
                        e.value("errno_name", "") == "EPERM" && e.value("pid", 0) == worker &&
                        e.value("target", "") == app.address());
    // EPERM comes from the pre-connect hook: no SYN was sent, so no TCP connection record.
    EXPECT_TRUE(evidence_of(v, "conn_fail").empty()) << v.dump();
  }
}
