// Privileges (issue 8): after attaching, `watch`, `events` and `record` keep only the capabilities
// of src/base/privileges.cpp's table (effective, permitted and bounding; none inheritable or
// ambient; no_new_privs), and what they still do needs nothing more: following a reload, arming the
// syscall probes on demand, naming the owner of an upstream that started after the drop.
// A tracefs why502 mounted is unmounted when it is done with it; one it found is left alone. Those
// runs happen in a private mount namespace, so the host's mounts are never touched.
#include "../scenarios/scenario.h"

#include <fcntl.h>
#include <fstream>
#include <map>
#include <sched.h>
#include <sstream>
#include <sys/mount.h>
#include <thread>

#include "base/privileges.h"

using namespace why502::scenario;

namespace {

constexpr const char *kTracefs = "/sys/kernel/tracing";

// "CapEff" -> value, "NoNewPrivs" -> value, from /proc/PID/status.
std::map<std::string, uint64_t> proc_status(pid_t pid) {
  std::map<std::string, uint64_t> out;
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos)
      continue;
    std::string key = line.substr(0, colon), value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    if (key.rfind("Cap", 0) == 0)
      out[key] = std::stoull(value, nullptr, 16);
    else if (key == "NoNewPrivs")
      out[key] = std::stoull(value);
  }
  return out;
}

// The capability sets a dropped why502 shows. The test process is root with this VM's full set
// (minus CAP_SYS_RESOURCE, see KERNEL_NOTES), which holds all four kept capabilities.
void expect_dropped(pid_t pid, const std::string &what) {
  auto st = proc_status(pid);
  const uint64_t want = why502::runtime_capabilities();
  ASSERT_TRUE(st.count("CapEff")) << what << ": no /proc/" << pid << "/status";
  EXPECT_EQ(st["CapEff"], want) << what << " effective: " << why502::cap_names(st["CapEff"]);
  EXPECT_EQ(st["CapPrm"], want) << what << " permitted: " << why502::cap_names(st["CapPrm"]);
  EXPECT_EQ(st["CapBnd"], want) << what << " bounding: " << why502::cap_names(st["CapBnd"]);
  EXPECT_EQ(st["CapInh"], 0u) << what;
  EXPECT_EQ(st["CapAmb"], 0u) << what;
  EXPECT_EQ(st["NoNewPrivs"], 1u) << what;
}

// tracefs mount points at /sys/kernel/tracing in the caller's mount namespace.
int tracefs_mounts_here() {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    // "36 25 0:12 / /sys/kernel/tracing rw,... - tracefs tracefs rw"
    std::istringstream in(line);
    std::string id, parent, dev, root, point;
    in >> id >> parent >> dev >> root >> point;
    if (point == kTracefs && line.find(" - tracefs ") != std::string::npos)
      ++n;
  }
  return n;
}

class PrivilegesScenario : public AppServerScenario {
protected:
  pid_t watch_pid() const { return watch_->pid(); }
};

} // namespace

// watch (syscall probes on demand, the default): reduced sets right after the start line; then a
// reload is followed (new workers' failures explained) and the first EADDRNOTAVAIL arms the
// syscall probes (CAP_PERFMON), so the second failure carries the kernel's syscall_error.
TEST_F(PrivilegesScenario, WatchKeepsOnlyRuntimeCapabilitiesAndStillFollowsReloadsAndArmsProbes) {
  auto &app = start_app();
  start_nginx(proxy_config("http://" + app.address()));
  Sysctl range("net.ipv4.ip_local_port_range", "40000 40001");
  IdleConnections pin(app.address(), 2);
  ASSERT_EQ(pin.local_ports().size(), 2u);
  start_watch({}); // --syscall-probes on-demand
  ASSERT_NO_FATAL_FAILURE(expect_dropped(watch_pid(), "watch"));

  auto old_workers = nginx().worker_pids();
  nginx().reload();
  auto new_workers = nginx().worker_pids();
  ASSERT_EQ(new_workers.size(), 2u);
  for (pid_t p : new_workers)
    ASSERT_EQ(std::count(old_workers.begin(), old_workers.end(), p), 0) << "worker " << p << " survived the reload";

  drive("/", 1, 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "(99: Cannot assign requested address) while connecting to upstream"));
  sleep_for(1.0); // the watcher reads the log (200 ms) and arms the probes
  drive("/", 1, 2);
  auto verdicts = finish_watch();
  auto vs = expect_verdicts(verdicts, "ephemeral_ports_exhausted", app.address());
  ASSERT_EQ(vs.size(), 2u) << dump(verdicts) << watch_->stderr_text();
  for (const auto &v : vs)
    EXPECT_EQ(std::count(new_workers.begin(), new_workers.end(), v.value("nginx_pid", 0)), 1) << v.dump();
  EXPECT_EVIDENCE(vs[1], "syscall_error", e.value("errno", 0) == EADDRNOTAVAIL && e.value("syscall", "") == "connect");
  EXPECT_EQ(watch_->stderr_text().find("attach failed"), std::string::npos) << watch_->stderr_text();
}

// An upstream that starts after the drop, owned by root (whose permitted set is larger than
// why502's now): naming it as the owner of the listener reads /proc/PID/fd links, which needs the
// kept CAP_SYS_PTRACE. Killed mid-request, it must be the verdict's upstream_process.
TEST_F(PrivilegesScenario, UpstreamStartedAfterTheDropIsStillNamed) {
  const uint16_t port = free_port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  start_nginx(proxy_config("http://" + address, "1s", "10s"));
  start_watch();
  ASSERT_NO_FATAL_FAILURE(expect_dropped(watch_pid(), "watch"));
  auto &app = start_app({.address = address, .behaviour = Behaviour::slow, .slow_seconds = 5.0});
  pid_t app_pid = app.pid();
  sleep_for(1.2); // a host sample (every 0.5 s) sees the new listener and resolves its owner
  std::thread killer([&] {
    wait_until([&] { return app.requests_served() >= 1; }, 5.0);
    kill(app_pid, SIGKILL);
  });
  HttpResult r = http_get("127.0.0.1", nginx().port(), "/", 10.0);
  killer.join();
  EXPECT_EQ(r.status, 502);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "upstream prematurely closed connection"));
  auto verdicts = finish_watch();
  for (auto &v : expect_verdicts(verdicts, "upstream_killed_by_signal", address)) {
    ASSERT_TRUE(v["upstream_process"].is_object()) << v.dump();
    EXPECT_EQ(v["upstream_process"].value("pid", 0), app_pid) << v.dump();
  }
}

// record keeps the same sets once its trace is open.
TEST_F(PrivilegesScenario, RecordKeepsOnlyRuntimeCapabilities) {
  auto &app = start_app();
  start_nginx(proxy_config("http://" + app.address()));
  const std::string err = dir() + "/record.stderr";
  SpawnOptions so;
  so.stderr_path = err;
  so.new_process_group = false;
  Process rec = Process::spawn({WHY502_BINARY, "record", "-o", dir() + "/t.pftrace", "--nginx-pid",
                                std::to_string(nginx().master_pid()), "--duration", "30"},
                               so);
  ASSERT_TRUE(wait_until([&] { return read_file(err).find("recording to") != std::string::npos || !rec.running(); },
                         30.0, 0.05))
      << read_file(err);
  ASSERT_TRUE(rec.running()) << read_file(err);
  ASSERT_NO_FATAL_FAILURE(expect_dropped(rec.pid(), "record"));
  EXPECT_EQ(rec.stop(SIGINT, 15.0), 0) << read_file(err);
}

namespace {

struct EventsRun {
  int child_status = -1;     // the forked child's exit status (0: every step worked)
  std::string start_line;    // why502's first output line
  std::string stderr_text;
  int tracefs_after = -1;    // tracefs mounts at /sys/kernel/tracing in that namespace after the run
  uint64_t cap_eff = ~0ull;  // why502's CapEff while it ran
  uint64_t no_new_privs = 0;
};

// `why502 events --duration 2` in a private mount namespace (MS_PRIVATE, recursively: nothing
// propagates back to the host), with tracefs first unmounted there and, when `premount`, mounted
// again by this test. The child reports through files in `dir`.
EventsRun events_in_private_mount_ns(const std::string &dir, bool premount) {
  const std::string out = dir + "/events.jsonl", err = dir + "/events.stderr", report = dir + "/report";
  pid_t child = fork();
  if (child == 0) {
    if (unshare(CLONE_NEWNS) != 0)
      _exit(10);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      _exit(11);
    while (tracefs_mounts_here() > 0)
      if (umount2(kTracefs, MNT_DETACH) != 0)
        _exit(12);
    if (premount && mount("tracefs", kTracefs, "tracefs", 0, nullptr) != 0)
      _exit(13);
    pid_t ev = fork();
    if (ev == 0) {
      int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
        _exit(120);
      execl(WHY502_BINARY, WHY502_BINARY, "events", "--comm", "why502-none", "--duration", "2", (char *)nullptr);
      _exit(121);
    }
    // Its sets once it printed the start line (it drops before printing).
    std::map<std::string, uint64_t> st;
    for (int i = 0; i < 300 && st.empty(); ++i) {
      usleep(10000);
      std::ifstream f(out);
      std::string first;
      if (std::getline(f, first) && !first.empty())
        st = proc_status(ev);
    }
    int status = 0;
    if (waitpid(ev, &status, 0) != ev)
      _exit(14);
    std::ofstream r(report);
    r << tracefs_mounts_here() << " " << st["CapEff"] << " " << st["NoNewPrivs"] << "\n";
    r.close();
    _exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 15);
  }
  EventsRun run;
  int status = 0;
  if (waitpid(child, &status, 0) == child && WIFEXITED(status))
    run.child_status = WEXITSTATUS(status);
  std::ifstream f(out);
  std::getline(f, run.start_line);
  run.stderr_text = read_file(err);
  std::ifstream r(report);
  r >> run.tracefs_after >> run.cap_eff >> run.no_new_privs;
  return run;
}

bool degraded(const std::string &start_line, const std::string &cause) {
  json j = json::parse(start_line, nullptr, false);
  if (j.is_discarded() || !j.contains("degraded_causes"))
    return true;
  for (const auto &c : j["degraded_causes"])
    if (c == cause)
      return true;
  return false;
}

} // namespace

// No tracefs: why502 mounts it to read the syscall tracepoints' ids (their programs attach: fd_limit
// is not degraded), and the mount is gone when it exits. The host's tracefs mounts are unchanged.
TEST(PrivilegesTracefs, MountMadeByWhy502IsUnmountedAtExit) {
  // The hostile tier runs as root (tests/run-all.sh): a skip would hide a broken setup.
  ASSERT_EQ(geteuid(), 0u) << "the hostile tier needs root";
  TempDir dir("why502-priv-tracefs");
  const int host_before = tracefs_mounts_here();
  EventsRun run = events_in_private_mount_ns(dir.path(), false);
  ASSERT_EQ(run.child_status, 0) << run.stderr_text;
  EXPECT_FALSE(degraded(run.start_line, "fd_limit")) << run.start_line << "\n" << run.stderr_text;
  EXPECT_EQ(run.tracefs_after, 0) << "why502 left its tracefs mounted";
  EXPECT_EQ(run.cap_eff, why502::runtime_capabilities()) << why502::cap_names(run.cap_eff);
  EXPECT_EQ(run.no_new_privs, 1u);
  EXPECT_EQ(tracefs_mounts_here(), host_before) << "the host's mounts changed";
}

// tracefs already mounted: why502 uses it and leaves it mounted.
TEST(PrivilegesTracefs, MountFoundIsLeftAlone) {
  // The hostile tier runs as root (tests/run-all.sh): a skip would hide a broken setup.
  ASSERT_EQ(geteuid(), 0u) << "the hostile tier needs root";
  TempDir dir("why502-priv-tracefs");
  const int host_before = tracefs_mounts_here();
  EventsRun run = events_in_private_mount_ns(dir.path(), true);
  ASSERT_EQ(run.child_status, 0) << run.stderr_text;
  EXPECT_FALSE(degraded(run.start_line, "fd_limit")) << run.start_line << "\n" << run.stderr_text;
  EXPECT_EQ(run.tracefs_after, 1) << "why502 unmounted a tracefs it did not mount";
  EXPECT_EQ(tracefs_mounts_here(), host_before) << "the host's mounts changed";
}
