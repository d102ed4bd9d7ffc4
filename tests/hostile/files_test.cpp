// Hostile tier (root): output files, hostile or broken input files, and signals, against the real
// binary and a real nginx (ports 18650-18659 on loopback).
//   * a symlink planted by `nobody` in a sticky world-writable directory, pointing at a root-only
//     file: `record -o`, `watch -o` and `--capture` refuse it and the target is untouched;
//   * created files are 0600 and not inherited by children (FD_CLOEXEC in /proc/PID/fdinfo);
//   * `--error-log /dev/zero`: a note, little CPU, SIGTERM obeyed within a second;
//   * a misspelled `--error-log`: a note, and kernel-only verdicts still come;
//   * `analyze /dev/zero` and a `{"type":1}` capture line;
//   * SIGHUP reopens `-o` after a logrotate-style rename; SIGINT/SIGTERM finish within a second
//     with the summary and stats lines written.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "why502/error.h"
#include "why502/lab.h"

namespace fs = std::filesystem;
using namespace why502;
using namespace why502::lab;
using nlohmann::json;

namespace {

constexpr uint16_t kNginxPort = 18650;
constexpr uint16_t kClosedPort = 18651; // nothing listens: every proxied request is a 502
constexpr uid_t kNobody = 65534;

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::vector<json> json_lines(const std::string &path) {
  std::vector<json> out;
  if (!fs::exists(path))
    return out;
  for (const auto &l : read_lines(path)) {
    auto j = json::parse(l, nullptr, false);
    if (!j.is_discarded())
      out.push_back(j);
  }
  return out;
}

std::vector<json> of_type(const std::vector<json> &lines, const std::string &type) {
  std::vector<json> out;
  for (const auto &j : lines)
    if (j.value("type", "") == type)
      out.push_back(j);
  return out;
}

struct FileState {
  std::string content;
  timespec mtime{};
  mode_t mode = 0;
};

FileState state_of(const std::string &path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return {read_file(path), st.st_mtim, st.st_mode & 07777};
}

// Runs `fn` in a child as nobody (what a local attacker can do); false if it failed.
template <class Fn> bool as_nobody(Fn fn) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0)
      _exit(90);
    _exit(fn() ? 0 : 1);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

NginxConfig failing_nginx() {
  NginxConfig cfg;
  cfg.port = kNginxPort;
  cfg.worker_processes = 1;
  NginxLocation loc;
  loc.target = "http://127.0.0.1:" + std::to_string(kClosedPort);
  loc.next_upstream = "off";
  cfg.locations.push_back(loc);
  return cfg;
}

// A why502 run in the background (watch / record), with its own stdout and stderr files.
class Why502 {
public:
  Why502(const TempDir &dir, std::vector<std::string> args) : err_(dir.file("why502.stderr")) {
    args.insert(args.begin(), WHY502_BINARY);
    SpawnOptions so;
    so.stdout_path = dir.file("why502.stdout");
    so.stderr_path = err_;
    so.new_process_group = false;
    proc_ = Process::spawn(args, so);
  }
  Process &proc() { return proc_; }
  std::string stderr_text() const { return read_file(err_); }
  // Waits until `path` holds a start line (attached); false if why502 exited first.
  bool wait_start(const std::string &path, double timeout_s = 30) {
    wait_until([&] { return !proc_.running() || !of_type(json_lines(path), "start").empty(); }, timeout_s, 0.05);
    return proc_.running() && !of_type(json_lines(path), "start").empty();
  }
  // Sends sig and returns how long why502 took to exit (its status in *status).
  double stop_timed(int sig, int *status) {
    auto t0 = std::chrono::steady_clock::now();
    *status = proc_.stop(sig, 10.0);
    return since(t0);
  }

private:
  std::string err_;
  Process proc_;
};

class FilesTest : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "the hostile tier runs as root";
    work = std::make_unique<TempDir>("why502-hostile-files");
  }
  std::unique_ptr<TempDir> work;
};

// The attack from the review: `nobody` plants a symlink where root will write.
TEST_F(FilesTest, PlantedSymlinkIsRefusedByRecordWatchAndCapture) {
  Nginx nginx(failing_nginx(), work->file("nginx"));
  // A root-only file the attacker wants destroyed, in a root-only directory.
  std::string secret_dir = work->file("root-only");
  ASSERT_EQ(mkdir(secret_dir.c_str(), 0700), 0);
  std::string secret = secret_dir + "/shadow";
  { std::ofstream(secret) << "root:secret:19000::::::\n"; }
  ASSERT_EQ(chmod(secret.c_str(), 0600), 0);
  const FileState before = state_of(secret);

  // A private /tmp: world-writable and sticky, like the real one.
  std::string shared = work->file("tmp");
  ASSERT_EQ(mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(chmod(shared.c_str(), 01777), 0);
  ASSERT_EQ(chmod(work->path().c_str(), 0755), 0); // nobody must reach it
  const std::vector<std::string> names{"trace.pftrace", "watch.jsonl", "capture.jsonl", "planted.jsonl"};
  ASSERT_TRUE(as_nobody([&] {
    for (size_t i = 0; i + 1 < names.size(); ++i)
      if (symlink(secret.c_str(), (shared + "/" + names[i]).c_str()) != 0)
        return false;
    // Not a symlink but a file of the attacker's: they could read what root writes into it.
    int fd = open((shared + "/planted.jsonl").c_str(), O_CREAT | O_WRONLY, 0666);
    return fd >= 0 && close(fd) == 0;
  }));
  struct stat lst {};
  ASSERT_EQ(lstat((shared + "/trace.pftrace").c_str(), &lst), 0);
  ASSERT_TRUE(S_ISLNK(lst.st_mode));
  ASSERT_EQ(lst.st_uid, kNobody);

  const std::string pid = std::to_string(nginx.master_pid());
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  };
  const std::vector<Case> cases{
      {{"record", "-o", shared + "/trace.pftrace", "--nginx-pid", pid, "--duration", "3"},
       "refusing to write through a symlink"},
      {{"watch", "--json", "-o", shared + "/watch.jsonl", "--nginx-pid", pid, "--duration", "3"},
       "refusing to write through a symlink"},
      {{"watch", "--json", "-o", work->file("ok.jsonl"), "--capture", shared + "/capture.jsonl", "--nginx-pid",
        pid, "--duration", "3"},
       "refusing to write through a symlink"},
      {{"watch", "--json", "-o", shared + "/planted.jsonl", "--nginx-pid", pid, "--duration", "3"},
       "the file is owned by uid 65534"},
  };
  for (const auto &c : cases) {
    std::vector<std::string> argv{WHY502_BINARY};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = run_command(argv, 30);
    EXPECT_EQ(r.exit_code, 1) << c.args[0] << " " << c.args[2] << ": " << r.output;
    // The refused path (the one in the shared directory) is named, with the reason, on one line.
    std::string path;
    for (const auto &a : c.args)
      if (a.rfind(shared, 0) == 0)
        path = a;
    EXPECT_EQ(r.output.rfind("why502: ", 0), 0u) << r.output;
    EXPECT_NE(r.output.find("cannot write " + path + ": " + c.expect), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  const FileState after = state_of(secret);
  EXPECT_EQ(after.content, before.content);
  EXPECT_EQ(after.mtime.tv_sec, before.mtime.tv_sec);
  EXPECT_EQ(after.mtime.tv_nsec, before.mtime.tv_nsec);
  EXPECT_EQ(after.mode, 0600u);
  EXPECT_EQ(read_file(shared + "/planted.jsonl"), ""); // nothing written into the attacker's file
}

// Flags of the fd that why502 (pid) holds open on `path`, from /proc/PID/fdinfo; -1 if none.
long fd_flags(pid_t pid, const std::string &path) {
  std::string fddir = "/proc/" + std::to_string(pid) + "/fd";
  for (const auto &e : fs::directory_iterator(fddir)) {
    std::error_code ec;
    auto target = fs::read_symlink(e.path(), ec);
    if (ec || target.string() != path)
      continue;
    std::ifstream info("/proc/" + std::to_string(pid) + "/fdinfo/" + e.path().filename().string());
    std::string key;
    while (info >> key) {
      if (key == "flags:") {
        std::string v;
        info >> v;
        return std::stol(v, nullptr, 8);
      }
    }
  }
  return -1;
}

// Created 0600 (even under a wide umask), O_CLOEXEC; SIGINT: out within a second, summary written.
TEST_F(FilesTest, CreatedFilesAre0600AndCloexecAndSigintFinishesFast) {
  Nginx nginx(failing_nginx(), work->file("nginx"));
  std::string out = work->file("watch.jsonl"), cap = work->file("capture.jsonl"), trace = work->file("t.pftrace");
  mode_t old = umask(0);
  Why502 w(*work, {"watch", "--json", "-o", out, "--capture", cap, "--perfetto", trace, "--nginx-pid",
                   std::to_string(nginx.master_pid()), "--duration", "60"});
  umask(old);
  ASSERT_TRUE(w.wait_start(out)) << w.stderr_text();
  for (const auto &p : {out, cap, trace}) {
    EXPECT_EQ(state_of(p).mode, 0600u) << p;
    long flags = fd_flags(w.proc().pid(), p);
    ASSERT_GE(flags, 0) << p << " is not open in why502";
    EXPECT_TRUE(flags & O_CLOEXEC) << p << std::oct << " flags " << flags;
  }
  EXPECT_TRUE(fd_flags(w.proc().pid(), out) & O_APPEND);
  int status = 0;
  double took = w.stop_timed(SIGINT, &status);
  EXPECT_LT(took, 1.0);
  RecordProperty("stop_seconds", std::to_string(took));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << w.stderr_text();
  auto lines = json_lines(out);
  EXPECT_EQ(of_type(lines, "summary").size(), 1u);
  EXPECT_EQ(of_type(lines, "stats").size(), 1u);
}

// --group: the file is 0640 and of that group (a log shipper may read it); an unknown group is
// one line and exit 1, before anything is attached.
TEST_F(FilesTest, GroupOptionGivesMode0640AndTheGroup) {
  std::string out = work->file("events.jsonl");
  auto r = run_command({WHY502_BINARY, "events", "--comm", "why502-nomatch", "--group", "nogroup", "-o", out,
                        "--duration", "0.5"},
                       30);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  struct stat st {};
  ASSERT_EQ(stat(out.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_gid, kNobody); // nogroup is 65534 on Debian
  EXPECT_EQ(of_type(json_lines(out), "stats").size(), 1u);
  r = run_command({WHY502_BINARY, "events", "--group", "no-such-group-why502", "-o", work->file("x.jsonl"),
                   "--duration", "1"},
                  30);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "why502: no such group: no-such-group-why502\n");
  EXPECT_FALSE(fs::exists(work->file("x.jsonl")));
}

// `--error-log /dev/zero` spun at 100% CPU and ignored SIGTERM.
TEST_F(FilesTest, DevZeroAsErrorLogIsANoteNotASpin) {
  Nginx nginx(failing_nginx(), work->file("nginx"));
  std::string out = work->file("watch.jsonl");
  Why502 w(*work, {"watch", "--json", "-o", out, "--error-log", "/dev/zero", "--nginx-pid",
                   std::to_string(nginx.master_pid()), "--duration", "60"});
  ASSERT_TRUE(w.wait_start(out)) << w.stderr_text();
  auto start = of_type(json_lines(out), "start").at(0);
  const std::string note = "error_log /dev/zero: a character device, not a regular file";
  bool noted = false;
  for (const auto &n : start["notes"])
    noted |= n.get<std::string>().find(note) != std::string::npos;
  EXPECT_TRUE(noted) << start.dump();
  EXPECT_NE(w.stderr_text().find(note), std::string::npos) << w.stderr_text();

  // CPU over two seconds, from /proc/PID/stat (utime + stime, in clock ticks).
  auto cpu_s = [&] {
    std::string stat = read_file("/proc/" + std::to_string(w.proc().pid()) + "/stat");
    std::istringstream in(stat.substr(stat.rfind(')') + 2));
    std::string f;
    std::vector<std::string> fields;
    while (in >> f)
      fields.push_back(f);
    return (std::stod(fields.at(11)) + std::stod(fields.at(12))) / double(sysconf(_SC_CLK_TCK));
  };
  double c0 = cpu_s();
  auto t0 = std::chrono::steady_clock::now();
  sleep_for(2.0);
  double used = (cpu_s() - c0) / since(t0);
  EXPECT_LT(used, 0.05) << "CPU share " << used;
  RecordProperty("cpu_share", std::to_string(used));

  int status = 0;
  double took = w.stop_timed(SIGTERM, &status);
  EXPECT_LT(took, 1.0);
  RecordProperty("stop_seconds", std::to_string(took));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto lines = json_lines(out);
  EXPECT_EQ(of_type(lines, "summary").size(), 1u);
  EXPECT_EQ(of_type(lines, "stats").size(), 1u);
}

// A misspelled --error-log: a note in the start line, and the kernel still names the cause.
TEST_F(FilesTest, MisspelledErrorLogIsANoteAndKernelVerdictsStillCome) {
  Nginx nginx(failing_nginx(), work->file("nginx"));
  std::string out = work->file("watch.jsonl");
  std::string typo = nginx.dir() + "/logs/eror.log";
  Why502 w(*work, {"watch", "--json", "-o", out, "--error-log", typo, "--nginx-pid",
                   std::to_string(nginx.master_pid()), "--duration", "60"});
  ASSERT_TRUE(w.wait_start(out)) << w.stderr_text();
  auto start = of_type(json_lines(out), "start").at(0);
  EXPECT_NE(start["notes"].dump().find("error_log " + typo + ": No such file or directory"), std::string::npos)
      << start.dump();
  EXPECT_NE(w.stderr_text().find(typo + ": No such file or directory"), std::string::npos);

  EXPECT_EQ(http_get("127.0.0.1", nginx.port(), "/").status, 502);
  bool got = wait_until([&] { return !of_type(json_lines(out), "verdict").empty(); }, 15);
  ASSERT_TRUE(got) << read_file(out) << w.stderr_text();
  auto v = of_type(json_lines(out), "verdict").at(0);
  EXPECT_EQ(v.value("cause", ""), "no_listener") << v.dump();
  EXPECT_EQ(v.value("upstream", ""), "127.0.0.1:" + std::to_string(kClosedPort)) << v.dump();
}

// logrotate: rename the file, SIGHUP, and the next verdict lands in a new file at the same path.
TEST_F(FilesTest, SighupReopensTheOutputAfterARename) {
  Nginx nginx(failing_nginx(), work->file("nginx"));
  std::string out = work->file("watch.jsonl"), cap = work->file("capture.jsonl");
  Why502 w(*work, {"watch", "--json", "-o", out, "--capture", cap, "--nginx-pid",
                   std::to_string(nginx.master_pid()), "--duration", "60"});
  ASSERT_TRUE(w.wait_start(out)) << w.stderr_text();
  ASSERT_EQ(rename(out.c_str(), (out + ".1").c_str()), 0);
  ASSERT_EQ(rename(cap.c_str(), (cap + ".1").c_str()), 0);
  w.proc().signal(SIGHUP);
  // The reopen happens at the next loop turn (100 ms); the new files appear then.
  ASSERT_TRUE(wait_until([&] { return fs::exists(out) && fs::exists(cap); }, 3)) << w.stderr_text();
  EXPECT_TRUE(w.proc().running());
  EXPECT_EQ(state_of(out).mode, 0600u);

  EXPECT_EQ(http_get("127.0.0.1", nginx.port(), "/").status, 502);
  ASSERT_TRUE(wait_until([&] { return !of_type(json_lines(out), "verdict").empty(); }, 15))
      << read_file(out) << w.stderr_text();
  auto v = of_type(json_lines(out), "verdict").at(0);
  EXPECT_EQ(v.value("cause", ""), "no_listener") << v.dump();
  // The kernel's record of the refused connect went to the new capture file too.
  bool conn_fail = false;
  for (const auto &j : json_lines(cap))
    conn_fail |= j.value("event", "") == "conn_fail";
  EXPECT_TRUE(conn_fail) << read_file(cap);

  int status = 0;
  double took = w.stop_timed(SIGTERM, &status);
  EXPECT_LT(took, 1.0);
  RecordProperty("stop_seconds", std::to_string(took));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto rotated = json_lines(out + ".1");
  ASSERT_EQ(rotated.size(), 1u) << read_file(out + ".1");
  EXPECT_EQ(rotated[0].value("type", ""), "start");
  auto now = json_lines(out);
  EXPECT_EQ(of_type(now, "start").size(), 0u);
  EXPECT_EQ(of_type(now, "summary").size(), 1u);
  EXPECT_EQ(of_type(now, "stats").size(), 1u);
}

// The same for `events -o`: the kernel record after the SIGHUP lands in the new file.
TEST_F(FilesTest, SighupReopensTheEventsOutput) {
  std::string out = work->file("events.jsonl"), go = work->file("go");
  // A process that connects to a closed port once told to: the failure events reports.
  Process client = Process::spawn(
      {"/usr/bin/python3", "-c",
       "import os, socket, sys, time\n"
       "while not os.path.exists(sys.argv[1]): time.sleep(0.02)\n"
       "try: socket.create_connection(('127.0.0.1', int(sys.argv[2])), 2)\n"
       "except OSError: pass\n"
       "time.sleep(30)\n",
       go, std::to_string(kClosedPort)});
  Why502 w(*work, {"events", "--pid", std::to_string(client.pid()), "-o", out, "--duration", "60"});
  ASSERT_TRUE(w.wait_start(out)) << w.stderr_text();
  ASSERT_EQ(rename(out.c_str(), (out + ".1").c_str()), 0);
  w.proc().signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return fs::exists(out); }, 3)) << w.stderr_text();
  work->write("go", "");
  auto conn_fails = [&] {
    std::vector<json> r;
    for (const auto &j : json_lines(out))
      if (j.value("event", "") == "conn_fail" && j.value("pid", 0) == client.pid())
        r.push_back(j);
    return r;
  };
  ASSERT_TRUE(wait_until([&] { return !conn_fails().empty(); }, 10)) << read_file(out) << w.stderr_text();
  EXPECT_EQ(conn_fails().at(0).value("remote", ""), "127.0.0.1:" + std::to_string(kClosedPort))
      << conn_fails().at(0).dump();
  int status = 0;
  double took = w.stop_timed(SIGTERM, &status);
  EXPECT_LT(took, 1.0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto rotated = json_lines(out + ".1");
  ASSERT_EQ(rotated.size(), 1u) << read_file(out + ".1");
  EXPECT_EQ(rotated[0].value("type", ""), "start");
  EXPECT_EQ(of_type(json_lines(out), "stats").size(), 1u);
}

// `analyze /dev/zero` grew by 450 MB/s and, under a memory limit, printed `total 0` and exit 0.
TEST_F(FilesTest, AnalyzeDevZeroIsAOneLineErrorAtOnce) {
  std::string empty_log = work->write("error.log", "");
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_command({WHY502_BINARY, "analyze", "/dev/zero", "--error-log", empty_log}, 10);
  EXPECT_LT(since(t0), 1.0);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output, "why502: cannot read capture /dev/zero: not a regular file\n");
  // The logs too: a FIFO as the error log is refused (it would block or never end).
  std::string fifo = work->file("fifo.log");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string cap = work->write("cap.jsonl", "{\"type\":\"stats\"}\n");
  r = run_command({WHY502_BINARY, "analyze", cap, "--error-log", fifo}, 10);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output, "why502: cannot read error log " + fifo + ": not a regular file\n");
}

// A capture line that is JSON but not a record aborted analyze with a json type_error.
TEST_F(FilesTest, AnalyzeSkipsAndCountsLinesThatAreNotRecords) {
  std::string empty_log = work->write("error.log", "");
  std::string cap = work->write("cap.jsonl", "{\"type\":1}\n"
                                             "{\"type\":\"event\",\"event\":7}\n"
                                             "{\"type\":\"host\",\"event\":\"host_sample\",\"time\":3}\n"
                                             "not json\n" +
                                                 std::string(2 << 20, 'x') + "\n");
  auto r = run_command({WHY502_BINARY, "analyze", cap, "--error-log", empty_log, "--json"}, 10);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("why502: skipped 4 capture line(s) that are not records, 1 line(s) over 1048576 bytes"),
            std::string::npos)
      << r.output;
  json summary;
  std::istringstream lines(r.output);
  for (std::string l; std::getline(lines, l);)
    if (auto j = json::parse(l, nullptr, false); !j.is_discarded() && j.value("type", "") == "summary")
      summary = j;
  ASSERT_TRUE(summary.is_object()) << r.output;
  EXPECT_EQ(summary.value("skipped_capture_lines", -1), 4);
  EXPECT_EQ(summary.value("skipped_long_lines", -1), 1);

  // Exactly the review's case: one line, {"type":1}.
  std::string one = work->write("one.jsonl", "{\"type\":1}\n");
  r = run_command({WHY502_BINARY, "analyze", one, "--error-log", empty_log}, 10);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("skipped 1 capture line(s) that are not records"), std::string::npos) << r.output;
}

} // namespace
