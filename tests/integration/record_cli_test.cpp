// `why502 record` end to end (root): a real nginx in a temp dir proxies to a
// 127.0.0.1 port nothing listens on, `why502 record -o X.pftrace --nginx-pid
// MASTER --duration 6` runs while a few requests get 502s, and the decoded
// trace must hold the worker's failed-connection slice and a "502 no_listener"
// verdict instant whose flow arrow starts at a kernel instant.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <netinet/in.h>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "harness.h"
#include "perfetto_decode.h"

namespace {

namespace fs = std::filesystem;
using namespace why502::pftrace;

std::string slurp(const fs::path &p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

// nginx proxying 127.0.0.1:listen_port to 127.0.0.1:upstream_port; stopped (and
// killed if need be) on destruction, whatever the test did.
struct PrivateNginx {
  fs::path dir;
  uint16_t listen_port = 0, upstream_port = 0;
  pid_t master = 0;
  std::string error;

  PrivateNginx() {
    dir = fs::temp_directory_path() / ("why502_record_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "logs");
    listen_port = why502::testing::closed_port();
    upstream_port = why502::testing::closed_port(); // bound and closed: nothing listens there
    const std::string d = dir.string();
    std::ofstream(dir / "nginx.conf") << "worker_processes 1;\n"
                                      << "pid " << d << "/nginx.pid;\n"
                                      << "error_log " << d << "/logs/error.log info;\n"
                                      << "events { worker_connections 64; }\n"
                                      << "http {\n"
                                      << "  access_log " << d << "/logs/access.log;\n"
                                      << "  client_body_temp_path " << d << "/tmp_body;\n"
                                      << "  proxy_temp_path " << d << "/tmp_proxy;\n"
                                      << "  fastcgi_temp_path " << d << "/tmp_fastcgi;\n"
                                      << "  uwsgi_temp_path " << d << "/tmp_uwsgi;\n"
                                      << "  scgi_temp_path " << d << "/tmp_scgi;\n"
                                      << "  upstream app { server 127.0.0.1:" << upstream_port << "; }\n"
                                      << "  server { listen 127.0.0.1:" << listen_port
                                      << "; location / { proxy_pass http://app; } }\n"
                                      << "}\n";
    const std::string cmd = "/usr/sbin/nginx -p " + d + " -c " + d + "/nginx.conf 2>" + d + "/start.err";
    if (system(cmd.c_str()) != 0) {
      error = "nginx did not start: " + slurp(dir / "start.err");
      return;
    }
    for (int i = 0; i < 50 && master == 0; ++i) {
      std::string pid = slurp(dir / "nginx.pid");
      if (!pid.empty())
        master = std::stoi(pid);
      else
        sleep_s(0.05);
    }
    if (master == 0)
      error = "nginx wrote no pid file";
    // The pid file appears before the master has forked its worker.
    for (int i = 0; i < 100 && master > 0 && workers().empty(); ++i)
      sleep_s(0.05);
  }

  ~PrivateNginx() {
    if (master > 0) {
      const std::vector<int> children = workers();
      kill(master, SIGTERM);
      for (int i = 0; i < 40 && kill(master, 0) == 0; ++i)
        sleep_s(0.05);
      if (kill(master, 0) == 0)
        kill(master, SIGKILL);
      // Workers a killed master left behind, by pid, if they are still ours.
      for (int pid : children)
        if (slurp("/proc/" + std::to_string(pid) + "/cmdline").find("nginx") != std::string::npos)
          kill(pid, SIGKILL);
    }
    fs::remove_all(dir);
  }

  std::vector<int> workers() const {
    std::vector<int> out;
    std::istringstream in(slurp("/proc/" + std::to_string(master) + "/task/" + std::to_string(master) + "/children"));
    int pid;
    while (in >> pid)
      out.push_back(pid);
    return out;
  }

  // GET / through nginx; returns the HTTP status (0 on failure).
  int get() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(listen_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
      close(fd);
      return 0;
    }
    const std::string req = "GET / HTTP/1.0\r\nHost: test\r\n\r\n";
    if (write(fd, req.data(), req.size()) != ssize_t(req.size())) {
      close(fd);
      return 0;
    }
    char buf[64] = {};
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 12)
      return 0;
    return std::atoi(buf + 9); // "HTTP/1.1 502 ..."
  }
};

} // namespace

TEST(RecordCli, NoListenerGivesSliceVerdictAndResolvedFlow) {
  if (geteuid() != 0)
    GTEST_SKIP() << "needs root";
  if (access("/usr/sbin/nginx", X_OK) != 0)
    FAIL() << "needs /usr/sbin/nginx (deploy/setup.sh installs it)";
  if (system("protoc --version >/dev/null 2>&1") != 0)
    FAIL() << "needs protoc (protobuf-compiler; deploy/setup.sh installs it)";

  PrivateNginx nginx;
  ASSERT_TRUE(nginx.error.empty()) << nginx.error;
  const auto workers = nginx.workers();
  ASSERT_EQ(workers.size(), 1u);
  const fs::path trace = nginx.dir / "x.pftrace";
  const fs::path err = nginx.dir / "record.err";

  const pid_t rec = fork();
  if (rec == 0) {
    int fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    dup2(fd, 1);
    const std::string master = std::to_string(nginx.master);
    execl(WHY502_BINARY, WHY502_BINARY, "record", "-o", trace.c_str(), "--nginx-pid", master.c_str(), "--duration",
          "6", static_cast<char *>(nullptr));
    _exit(127);
  }
  ASSERT_GT(rec, 0);
  struct Reaper { // an early ASSERT must not leave the recorder running
    pid_t pid;
    ~Reaper() {
      if (pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0) {
        kill(pid, SIGTERM);
        waitpid(pid, nullptr, 0);
      }
    }
  } reaper{rec};
  // Attached once it says so (BPF load takes a moment).
  for (int i = 0; i < 100 && slurp(err).find("recording to") == std::string::npos; ++i)
    sleep_s(0.05);
  ASSERT_NE(slurp(err).find("recording to"), std::string::npos) << slurp(err);
  int bad_gateways = 0;
  for (int i = 0; i < 3; ++i)
    bad_gateways += nginx.get() == 502;
  EXPECT_EQ(bad_gateways, 3);

  int status = 0;
  ASSERT_EQ(waitpid(rec, &status, 0), rec);
  reaper.pid = 0;
  const std::string log = slurp(err);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log;

  const Trace t = decode(trace);
  ASSERT_TRUE(t.error.empty()) << t.error;
  EXPECT_TRUE(t.problems.empty()) << join(t.problems);

  // The worker's process track, and its failed-connection slice (connect -> RST).
  uint64_t worker_track = 0;
  for (const auto &[uuid, tr] : t.tracks)
    if (tr.is_process && tr.pid == workers[0])
      worker_track = uuid;
  ASSERT_NE(worker_track, 0u) << t.text;
  EXPECT_EQ(t.tracks.at(worker_track).process_name, "nginx: worker");
  const std::string upstream = "127.0.0.1:" + std::to_string(nginx.upstream_port);
  int slices = 0;
  for (const Event &e : t.events)
    if (e.type == "TYPE_SLICE_BEGIN" && e.name == upstream + " rst_in_syn_sent") {
      ++slices;
      EXPECT_EQ(t.tracks.at(e.track).parent, worker_track);
    }
  EXPECT_GE(slices, 3) << log;

  // The verdict instants, each with an arrow from a kernel instant. (How the
  // correlator groups attempts into requests is its business: at least one
  // 502, and every no_listener verdict, whatever its grouping, has its arrow.)
  std::map<uint64_t, std::string> started_by;
  for (const Event &e : t.events)
    for (uint64_t f : e.flows)
      started_by[f] = e.name;
  int verdicts = 0, with_status = 0;
  for (const Event &e : t.events) {
    if (!e.args.count("cause") || e.args.at("cause") != "no_listener")
      continue;
    ++verdicts;
    EXPECT_EQ(e.args.at("upstream"), upstream);
    if (e.name == "502 no_listener") {
      ++with_status;
      EXPECT_EQ(e.args.at("status"), "502");
      EXPECT_NE(e.args.at("nginx_error").find("111: Connection refused"), std::string::npos);
    }
    int resolved = 0;
    for (uint64_t f : e.terminating)
      if (started_by.count(f)) {
        ++resolved;
        EXPECT_TRUE(started_by.at(f) == "tcp_receive_reset" || started_by.at(f) == "tcp_send_reset")
            << started_by.at(f);
      }
    EXPECT_GE(resolved, 1) << e.name << " has no arrow from its kernel cause\n" << log;
  }
  EXPECT_GE(verdicts, 1) << log;
  EXPECT_GE(with_status, 1) << log;
}
