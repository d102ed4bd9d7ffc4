// Discovery as an attacker would try it (issue 8, "Foreign code runs as host root"):
//  - a process that calls itself nginx is never executed, whoever started it;
//  - a master run by an unprivileged user is not taken automatically, and cannot make why502
//    read a root-only file through `include`;
//  - `load_module` in a config is never loaded (nginx is never run to read its config);
//  - an nginx in a container (own mount, network and PID namespaces) is followed like any other,
//    its files read in its filesystem, nothing created on the host at its paths;
//  - 20 reloads with a large config keep why502's memory bounded.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "why502/lab.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace why502::lab;

namespace {

std::vector<json> json_lines(const std::string &text) {
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{')
      out.push_back(json::parse(line));
  return out;
}

std::optional<json> first_of_type(const std::vector<json> &lines, const std::string &type) {
  for (const auto &j : lines)
    if (j.value("type", "") == type)
      return j;
  return std::nullopt;
}

// `why502 watch --json --duration 1 --nginx-pid PID`: its output and its start line. Exit 0 expected.
std::pair<CommandResult, std::optional<json>> watch_for_a_second(pid_t pid) {
  auto watch = run_command({WHY502_BINARY, "watch", "--json", "--duration", "1", "--nginx-pid", std::to_string(pid)}, 30);
  EXPECT_EQ(watch.exit_code, 0) << watch.output;
  auto start = first_of_type(json_lines(watch.output), "start");
  return {watch, start};
}

// Files next to the stand-ins that say they were run or loaded.
std::vector<std::string> markers(const std::string &dir) {
  std::vector<std::string> out;
  for (const auto &e : fs::directory_iterator(dir)) {
    std::string n = e.path().filename();
    if (n.find(".executed-by-uid-") != std::string::npos || n.find(".loaded-by-uid-") != std::string::npos)
      out.push_back(n);
  }
  return out;
}

// Starts `binary` titled "nginx: master process <binary> -c <conf>", as `uid` (root: 0).
Process start_titled(const std::string &binary, const std::string &conf, uid_t uid) {
  std::string title = "nginx: master process " + binary + " -c " + conf;
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    if (uid != 0 && (setgroups(0, nullptr) != 0 || setgid(uid) != 0 || setuid(uid) != 0))
      _exit(97);
    char *argv[] = {title.data(), nullptr};
    execv(binary.c_str(), argv);
    _exit(98);
  }
  Process p(pid, true);
  EXPECT_TRUE(wait_until([&] { return read_file("/proc/" + std::to_string(pid) + "/comm") == "nginx\n"; }, 5));
  return p;
}

class FakeNginx : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "the hostile tier runs as root";
    fs::permissions(dir_.path(), fs::perms(0755));
    binary_ = dir_.file("nginx");
    fs::copy_file(WHY502_FAKE_NGINX, binary_);
    fs::permissions(binary_, fs::perms(0755));
    secret_ = dir_.write("secret.conf", "SECRETWORD_8f3a;\n", 0600);
    conf_ = dir_.write("nginx.conf", "error_log " + dir_.file("error.log") + ";\nevents {}\nhttp {\n  include " +
                                         secret_ + ";\n}\n");
  }
  TempDir dir_{"why502-hostile-fake"};
  std::string binary_, secret_, conf_;
};

TEST_F(FakeNginx, RunByRootIsReadNeverExecuted) {
  Process fake = start_titled(binary_, conf_, 0);
  auto doctor = run_command({WHY502_BINARY, "doctor", "--json"}, 30);
  EXPECT_NE(doctor.output.find("nginx master " + std::to_string(fake.pid())), std::string::npos) << doctor.output;

  auto [watch, start] = watch_for_a_second(fake.pid());
  ASSERT_TRUE(start) << watch.output;
  EXPECT_EQ(start->at("nginx").at(0).at("config"), conf_);
  EXPECT_EQ(start->at("error_logs"), json::array({dir_.file("error.log")}));
  EXPECT_EQ(markers(dir_.path()), std::vector<std::string>{}) << "why502 executed the target's binary";
}

TEST_F(FakeNginx, RunByNobodyIsNotTakenAndCannotReadRootFilesThroughIt) {
  Process fake = start_titled(binary_, conf_, 65534);
  auto doctor = run_command({WHY502_BINARY, "doctor", "--json"}, 30);
  // Either "not watching nginx-looking process N: ..." (another nginx was found) or "no trusted
  // nginx master found (pid N: ...)".
  EXPECT_NE(doctor.output.find(std::to_string(fake.pid()) + ": it runs as uid 65534"), std::string::npos)
      << doctor.output;

  // Named explicitly, it is watched, but its files are read with its own rights.
  auto [watch, start] = watch_for_a_second(fake.pid());
  ASSERT_TRUE(start) << watch.output;
  std::string notes = start->at("notes").dump();
  EXPECT_NE(notes.find("cannot read included file " + secret_ + ": Permission denied"), std::string::npos) << notes;
  EXPECT_EQ(watch.output.find("SECRETWORD"), std::string::npos) << watch.output;
  EXPECT_EQ(doctor.output.find("SECRETWORD"), std::string::npos) << doctor.output;
  EXPECT_EQ(markers(dir_.path()), std::vector<std::string>{});
}

TEST(LoadModule, InTheConfigIsNeverLoaded) {
  enter_private_network();
  TempDir dir("why502-hostile-module");
  NginxConfig cfg;
  NginxLocation refused;
  refused.target = "http://127.0.0.1:9";
  cfg.locations.push_back(refused);
  Nginx nginx(cfg, dir.path());
  std::string module = dir.file("evil.so");
  fs::copy_file(WHY502_EVIL_MODULE, module);
  // Added after nginx started, as an attacker with write access to an include would.
  std::string conf = read_file(nginx.conf_path());
  std::ofstream(nginx.conf_path(), std::ios::trunc) << "load_module " << module << ";\n" << conf;

  auto doctor = run_command({WHY502_BINARY, "doctor", "--json"}, 30);
  auto [watch, start] = watch_for_a_second(nginx.master_pid());
  ASSERT_TRUE(start) << watch.output;
  EXPECT_EQ(start->at("error_logs"), json::array({nginx.error_log()}));
  EXPECT_EQ(markers(dir.path()), std::vector<std::string>{}) << "the module's constructor ran";
}

// ───────────────────────────── a container ─────────────────────────────

// nginx as PID 1 of its own PID, mount and network namespaces, its config and logs on a tmpfs that
// only it sees, mounted over an (empty) host directory.
class ContainerNginx {
public:
  explicit ContainerNginx(const std::string &dir) : dir_(dir) {
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe");
    pid_t outer = fork();
    if (outer == 0) {
      close(ready[0]);
      if (unshare(CLONE_NEWNS | CLONE_NEWPID) != 0)
        _exit(90);
      try {
        enter_private_network();
      } catch (...) {
        _exit(91);
      }
      if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        _exit(92);
      pid_t init = fork(); // PID 1 of the new namespace
      if (init == 0) {
        if (mount("tmpfs", dir_.c_str(), "tmpfs", 0, "mode=0755") != 0)
          _exit(93);
        fs::create_directories(dir_ + "/logs");
        std::ofstream(dir_ + "/nginx.conf")
            << "worker_processes 2;\npid " << dir_ << "/nginx.pid;\nerror_log " << dir_
            << "/logs/error.log info;\nevents { worker_connections 64; }\nhttp {\n"
            << "  log_format ctr '$remote_addr [$time_local] \"$request\" $status $pid $msec';\n"
            << "  access_log " << dir_ << "/logs/access.log ctr;\n"
            << "  client_body_temp_path " << dir_ << "/body; proxy_temp_path " << dir_ << "/proxy;\n"
            << "  fastcgi_temp_path " << dir_ << "/fcgi; uwsgi_temp_path " << dir_ << "/uwsgi;\n"
            << "  scgi_temp_path " << dir_ << "/scgi;\n"
            << "  server { listen 127.0.0.1:8080; location / { proxy_pass http://127.0.0.1:9; } }\n}\n";
        std::string conf = dir_ + "/nginx.conf";
        execl("/usr/sbin/nginx", "nginx", "-c", conf.c_str(), "-g", "daemon off;", nullptr);
        _exit(94);
      }
      if (write(ready[1], &init, sizeof init) != sizeof init)
        _exit(95);
      int st = 0;
      waitpid(init, &st, 0);
      _exit(0);
    }
    close(ready[1]);
    outer_ = Process(outer, false);
    if (read(ready[0], &master_, sizeof master_) != sizeof master_)
      master_ = 0;
    close(ready[0]);
  }
  ~ContainerNginx() {
    if (master_ > 0)
      kill_and_wait(master_, SIGKILL, 5);
  }
  pid_t master() const { return master_; }

  // A GET from inside the container's network namespace; returns the status.
  int get(const std::string &path) const {
    int status_pipe[2];
    if (pipe2(status_pipe, O_CLOEXEC) != 0)
      return -1;
    pid_t pid = fork();
    if (pid == 0) {
      int ns = open(("/proc/" + std::to_string(master_) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0 || setns(ns, CLONE_NEWNET) != 0)
        _exit(1);
      int status = http_get("127.0.0.1", 8080, path, 5).status;
      if (write(status_pipe[1], &status, sizeof status) != sizeof status)
        _exit(2);
      _exit(0);
    }
    close(status_pipe[1]);
    int status = -1;
    if (read(status_pipe[0], &status, sizeof status) != sizeof status)
      status = -1;
    close(status_pipe[0]);
    waitpid(pid, nullptr, 0);
    return status;
  }

private:
  std::string dir_;
  Process outer_;
  pid_t master_ = 0;
};

TEST(Container, NginxInItsOwnNamespacesIsFollowedAndDiagnosed) {
  ASSERT_EQ(geteuid(), 0u);
  TempDir host_view("why502-hostile-ctr");
  TempDir out("why502-hostile-ctr-out");
  ContainerNginx ctr(host_view.path());
  ASSERT_GT(ctr.master(), 0);
  ASSERT_TRUE(wait_until([&] { return ctr.get("/__up") == 502; }, 10)) << "the container's nginx did not answer";
  std::vector<pid_t> workers = child_pids(ctr.master());
  ASSERT_EQ(workers.size(), 2u);

  // Discovered automatically: a root master from /usr/sbin/nginx, like any other.
  std::string verdicts = out.file("verdicts.jsonl");
  Process watch = Process::spawn({WHY502_BINARY, "watch", "--json", "-o", verdicts, "--duration", "30"},
                                 SpawnOptions{out.file("stdout"), out.file("stderr"), "", {}, true});
  ASSERT_TRUE(wait_until([&] { return read_file(verdicts).find("\"type\":\"start\"") != std::string::npos; }, 10))
      << read_file(out.file("stderr"));
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(ctr.get("/ctr/" + std::to_string(i)), 502);
  auto three_verdicts = [&] {
    int n = 0;
    for (const auto &j : json_lines(read_file(verdicts)))
      n += j.value("type", "") == "verdict" && j.value("cause", "") == "no_listener";
    return n >= 3;
  };
  EXPECT_TRUE(wait_until(three_verdicts, 10)) << read_file(verdicts) << read_file(out.file("stderr"));
  watch.stop(SIGINT, 5);

  auto lines = json_lines(read_file(verdicts));
  auto start = first_of_type(lines, "start");
  ASSERT_TRUE(start);
  std::string root = "/proc/" + std::to_string(ctr.master()) + "/root";
  EXPECT_NE(start->at("error_logs").dump().find(root + host_view.file("logs/error.log")), std::string::npos)
      << start->dump();
  int seen = 0;
  for (const auto &v : lines) {
    if (v.value("type", "") != "verdict" || v.at("request").is_null() ||
        v.at("request").value("request", "").rfind("GET /ctr/", 0) != 0)
      continue;
    ++seen;
    EXPECT_EQ(v.at("cause"), "no_listener") << v.dump();
    EXPECT_EQ(v.at("upstream"), "127.0.0.1:9") << v.dump();
    EXPECT_EQ(v.at("status"), 502) << v.dump();
    // nginx logged its own namespace's pids; the verdict names the worker as the host sees it.
    pid_t pid = v.at("nginx_pid").get<pid_t>();
    EXPECT_NE(std::find(workers.begin(), workers.end(), pid), workers.end()) << v.dump();
    EXPECT_NE(v.at("nginx_error").get<std::string>().find("connect() failed (111"), std::string::npos);
  }
  EXPECT_EQ(seen, 3) << read_file(verdicts);
  // Nothing was created on the host at the container's paths.
  EXPECT_TRUE(fs::is_empty(host_view.path()));
}

// ───────────────────────────── reloads ─────────────────────────────

long rss_kib(pid_t pid) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return -1;
}

TEST(Reloads, TwentyWithALargeConfigKeepMemoryBounded) {
  enter_private_network();
  TempDir dir("why502-hostile-reload");
  TempDir conf_dir("why502-hostile-bigconf");
  // ~8 MB of configuration (comments and a large map), read again at every reload.
  {
    std::ofstream big(conf_dir.file("big.conf"));
    big << "map $uri $why502_big {\n  default 0;\n";
    for (int i = 0; i < 40000; ++i)
      big << "  /generated/path/number/" << i << " " << i << ";\n";
    big << "}\n";
    std::string comment(200, 'x');
    for (int i = 0; i < 30000; ++i)
      big << "# " << comment << "\n";
  }
  ASSERT_GT(fs::file_size(conf_dir.file("big.conf")), 7u * 1024 * 1024);
  NginxConfig cfg;
  NginxLocation refused;
  refused.target = "http://127.0.0.1:9";
  cfg.locations.push_back(refused);
  cfg.http_extra.push_back("include " + conf_dir.file("big.conf"));
  Nginx nginx(cfg, dir.path());
  Process watch = Process::spawn({WHY502_BINARY, "watch", "--json", "-o", dir.file("out.jsonl"), "--nginx-pid",
                                  std::to_string(nginx.master_pid()), "--duration", "120"},
                                 SpawnOptions{dir.file("stdout"), dir.file("stderr"), "", {}, true});
  ASSERT_TRUE(
      wait_until([&] { return read_file(dir.file("out.jsonl")).find("\"type\":\"start\"") != std::string::npos; }, 10));
  long warm = 0;
  for (int i = 1; i <= 20; ++i) {
    nginx.reload();
    sleep_for(1.1); // why502 rescans every second: each reload is seen and its config read
    if (i == 2)
      warm = rss_kib(watch.pid());
  }
  long after = rss_kib(watch.pid());
  ASSERT_GT(warm, 0);
  // Before the fix every reload kept its whole config dump: +8 MB each.
  EXPECT_LT(after - warm, 8 * 1024) << "RSS after 2 reloads " << warm << " KiB, after 20 " << after << " KiB";
  watch.stop(SIGINT, 5);
  RecordProperty("rss_after_2_reloads_kib", std::to_string(warm));
  RecordProperty("rss_after_20_reloads_kib", std::to_string(after));
  std::cout << "why502 RSS after 2 reloads " << warm << " KiB, after 20: " << after << " KiB\n";
}

} // namespace
