// Discovery against a fake /proc tree (no root, no nginx): titles, masters, workers, reloads.
#include "why502/nginx.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using namespace why502::nginx;
namespace fs = std::filesystem;

namespace {

TEST(MasterTitle, Debian) {
  auto a = parse_master_title(
      "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;");
  EXPECT_EQ(a.binary, "/usr/sbin/nginx");
  EXPECT_EQ(a.globals, "daemon on; master_process on;");
  EXPECT_EQ(a.conf, "");
}

TEST(MasterTitle, ConfPrefixAndGlobals) {
  auto a = parse_master_title("nginx: master process nginx -p /srv/ng/ -c conf/n.conf -g pid "
                              "/run/x.pid; -e stderr");
  EXPECT_EQ(a.binary, "nginx");
  EXPECT_EQ(a.prefix, "/srv/ng/");
  EXPECT_EQ(a.conf, "conf/n.conf");
  EXPECT_EQ(a.globals, "pid /run/x.pid;");
  auto b = parse_master_title("nginx: master process /usr/sbin/nginx -c/etc/x.conf");
  EXPECT_EQ(b.conf, "/etc/x.conf");
  EXPECT_EQ(parse_master_title("").binary, "");
}

class FakeProc : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/why502-proc-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }
  void proc(pid_t pid, pid_t ppid, const std::string &comm, const std::string &title,
            unsigned long long start = 100) {
    fs::path d = fs::path(root_) / std::to_string(pid);
    fs::create_directories(d);
    std::ofstream(d / "stat") << pid << " (" << comm << ") S " << ppid
                              << " 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 " << start
                              << " 0 0\n";
    std::string cmd = title;
    cmd.push_back('\0');
    std::ofstream(d / "cmdline", std::ios::binary) << cmd;
  }
  void gone(pid_t pid) { fs::remove_all(fs::path(root_) / std::to_string(pid)); }
  DiscoverOptions opts() {
    DiscoverOptions o;
    o.read_config = false;
    o.require_trusted_master = false; // a fake /proc has no credentials; trust has its own tests
    o.proc_root = root_;
    return o;
  }
  std::string root_;
};

TEST_F(FakeProc, NoNginx) {
  proc(1, 0, "systemd", "/sbin/init");
  auto r = discover(std::nullopt, opts());
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().find("not running"), std::string::npos);
}

TEST_F(FakeProc, MasterWorkersHelpers) {
  proc(1, 0, "systemd", "/sbin/init");
  proc(100, 1, "nginx", "nginx: master process /usr/sbin/nginx -c /etc/nginx/nginx.conf");
  proc(101, 100, "nginx", "nginx: worker process");
  proc(102, 100, "nginx", "nginx: worker process");
  proc(103, 100, "nginx", "nginx: cache manager process");
  proc(200, 1, "bash", "bash");
  auto r = discover(std::nullopt, opts());
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->instances.size(), 1u);
  const Instance &in = r->instances[0];
  EXPECT_EQ(in.master_pid, 100);
  EXPECT_EQ(in.workers, (std::vector<Worker>{{101, false, 101}, {102, false, 102}}));
  EXPECT_EQ(in.helper_pids, std::vector<pid_t>{103});
  EXPECT_EQ(in.config_path, "/etc/nginx/nginx.conf");
  EXPECT_EQ(in.args, (std::vector<std::string>{"-c", "/etc/nginx/nginx.conf"}));
  // a worker pid selects its master
  auto w = discover(102, opts());
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w->instances.size(), 1u);
  EXPECT_EQ(w->instances[0].master_pid, 100);
  EXPECT_FALSE(discover(200, opts()).ok());
}

TEST_F(FakeProc, BinaryUpgradeHasTwoMasters) {
  proc(100, 1, "nginx", "nginx: master process /usr/sbin/nginx", 100);
  proc(101, 100, "nginx", "nginx: worker process", 101);
  proc(300, 100, "nginx", "nginx: master process /usr/sbin/nginx", 500); // new master (USR2)
  proc(301, 300, "nginx", "nginx: worker process", 501);
  auto r = discover(std::nullopt, opts());
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->instances.size(), 2u);
  EXPECT_EQ(r->instances[0].master_pid, 100); // old first
  EXPECT_EQ(r->instances[0].workers, (std::vector<Worker>{{101, false, 101}}));
  EXPECT_EQ(r->instances[1].master_pid, 300);
  EXPECT_EQ(r->instances[1].workers, (std::vector<Worker>{{301, false, 301}}));
  EXPECT_FALSE(r->warnings.empty());
}

TEST_F(FakeProc, TrackerSeesReloadNotRespawn) {
  proc(100, 1, "nginx", "nginx: master process /usr/sbin/nginx");
  proc(101, 100, "nginx", "nginx: worker process");
  proc(102, 100, "nginx", "nginx: worker process");
  WorkerTracker t(100, root_);
  auto first = t.rescan();
  EXPECT_EQ(first.added, (std::vector<pid_t>{101, 102}));
  EXPECT_FALSE(first.reloaded);
  // a crashed worker respawned: its sibling stays active -> not a reload
  gone(102);
  proc(103, 100, "nginx", "nginx: worker process");
  auto respawn = t.rescan();
  EXPECT_EQ(respawn.added, std::vector<pid_t>{103});
  EXPECT_EQ(respawn.removed, std::vector<pid_t>{102});
  EXPECT_FALSE(respawn.reloaded);
  // nginx -s reload: old workers shut down, new ones start
  proc(101, 100, "nginx", "nginx: worker process is shutting down");
  proc(103, 100, "nginx", "nginx: worker process is shutting down");
  proc(104, 100, "nginx", "nginx: worker process");
  proc(105, 100, "nginx", "nginx: worker process");
  auto reload = t.rescan();
  EXPECT_EQ(reload.added, (std::vector<pid_t>{104, 105}));
  EXPECT_TRUE(reload.reloaded);
  EXPECT_TRUE(t.workers()[0].shutting_down);
  EXPECT_TRUE(t.master_alive());
  gone(100);
  EXPECT_FALSE(t.master_alive());
}

} // namespace

namespace {
// What a real `nginx -s reload` looks like to 50 ms scans: both generations plain
// "worker process" first, then the old ones gone.
TEST_F(FakeProc, TrackerSeesReloadAcrossScans) {
  proc(100, 1, "nginx", "nginx: master process /usr/sbin/nginx");
  proc(101, 100, "nginx", "nginx: worker process");
  proc(102, 100, "nginx", "nginx: worker process");
  WorkerTracker t(100, root_);
  t.rescan();
  proc(103, 100, "nginx", "nginx: worker process");
  proc(104, 100, "nginx", "nginx: worker process");
  auto mid = t.rescan();
  EXPECT_FALSE(mid.reloaded);
  gone(101);
  gone(102);
  auto done = t.rescan();
  EXPECT_TRUE(done.reloaded);
  EXPECT_EQ(done.removed, (std::vector<pid_t>{101, 102}));
  EXPECT_FALSE(t.rescan().reloaded);
}
} // namespace
