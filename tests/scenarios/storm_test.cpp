// A 502 storm: an upstream port nobody listens on, and thousands of requests a second through a real
// nginx for 10 s. why502 must account for every 502 (per-request verdicts while the rate allows, then
// aggregates with a count), stop within a second of --duration, and keep its memory bounded.
#include "scenario.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

using namespace why502::scenario;

namespace {

class StormScenario : public ScenarioTest {};

using Clock = std::chrono::steady_clock;

// The client socket, closed on every path.
struct FdGuard {
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0)
      close(fd_);
  }
  FdGuard(const FdGuard &) = delete;
  FdGuard &operator=(const FdGuard &) = delete;
  int get() const { return fd_; }

private:
  int fd_;
};

// `depth` pipelined keep-alive GETs in flight on one connection until `deadline`; reconnects when
// nginx closes (keepalive_requests). Returns the responses read.
uint64_t keep_alive_load(uint16_t port, int depth, Clock::time_point deadline) {
  uint64_t responses = 0;
  std::string request = "GET / HTTP/1.1\r\nHost: storm\r\n\r\n", batch;
  for (int i = 0; i < depth; ++i)
    batch += request;
  while (Clock::now() < deadline) {
    FdGuard fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{2, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) != 0)
      continue;
    std::string buf;
    bool open = true;
    while (open && Clock::now() < deadline) {
      if (send(fd.get(), batch.data(), batch.size(), MSG_NOSIGNAL) != ssize_t(batch.size()))
        break;
      for (int got = 0; got < depth && open;) {
        size_t head = buf.find("\r\n\r\n");
        if (head == std::string::npos) {
          char tmp[16384];
          ssize_t n = recv(fd.get(), tmp, sizeof(tmp), 0);
          if (n <= 0) {
            open = false;
            break;
          }
          buf.append(tmp, size_t(n));
          continue;
        }
        size_t len = 0;
        auto cl = buf.find("Content-Length: ");
        if (cl != std::string::npos && cl < head)
          len = std::stoul(buf.substr(cl + 16));
        if (buf.size() < head + 4 + len) {
          char tmp[16384];
          ssize_t n = recv(fd.get(), tmp, sizeof(tmp), 0);
          if (n <= 0) {
            open = false;
            break;
          }
          buf.append(tmp, size_t(n));
          continue;
        }
        bool closing = buf.substr(0, head).find("Connection: close") != std::string::npos;
        buf.erase(0, head + 4 + len);
        ++got;
        ++responses;
        if (closing)
          open = false;
      }
    }
  }
  return responses;
}

// A /proc/PID/status field in kB (VmHWM: the peak resident set), 0 when unreadable.
uint64_t status_kb(pid_t pid, const std::string &field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0)
      return std::stoull(line.substr(field.size() + 1));
  return 0;
}

// `why502 watch --json -o OUT --duration D` on the test's nginx, once it has written its start line.
Process spawn_watch(pid_t nginx_master, const std::string &out, const std::string &err, double duration_s) {
  SpawnOptions so;
  so.stdout_path = err + ".stdout";
  so.stderr_path = err;
  so.new_process_group = false;
  char duration[32];
  snprintf(duration, sizeof(duration), "%.0f", duration_s);
  auto proc = Process::spawn(
      {WHY502_BINARY, "watch", "--json", "-o", out, "--nginx-pid", std::to_string(nginx_master), "--duration", duration},
      so);
  bool started = wait_until(
      [&] {
        for (auto &l : read_lines(out))
          if (l.find("\"type\":\"start\"") != std::string::npos)
            return true;
        return !proc.running();
      },
      30.0, 0.01);
  if (!started || !proc.running())
    throw why502::Error("why502 watch did not start: " + read_file(err));
  return proc;
}

// Client threads hammering nginx for `seconds`; returns the responses read.
uint64_t storm_load(uint16_t port, double seconds) {
  std::atomic<uint64_t> responses{0};
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) // 4 connections, 16 pipelined requests each
    clients.emplace_back([&] { responses += keep_alive_load(port, 16, deadline); });
  for (auto &t : clients)
    t.join();
  return responses;
}

} // namespace

TEST_F(StormScenario, RefusedStormIsFullyAccountedStopsOnTimeAndStaysSmall) {
  constexpr double kStormS = 10.0;
  constexpr double kDurationS = kStormS + 3.0; // the storm, and the tail of its last lines
  constexpr uint64_t kMaxHwmKb = 64 * 1024;
  const uint16_t refused_port = 18751; // nobody listens on it in this test's network namespace
  auto cfg = proxy_config("http://127.0.0.1:" + std::to_string(refused_port));
  cfg.worker_connections = 1024;
  start_nginx(cfg);
  if (watch_disabled())
    GTEST_SKIP() << "needs why502";

  std::string out = dir() + "/why502.jsonl", err = dir() + "/why502.stderr";
  auto proc = spawn_watch(nginx().master_pid(), out, err, kDurationS);
  const auto started = Clock::now();
  const pid_t why_pid = proc.pid();
  const uint64_t start_rss_kb = status_kb(why_pid, "VmRSS");
  const uint64_t start_hwm_kb = status_kb(why_pid, "VmHWM");

  // Peak memory, read until the process is gone (a zombie has no VmHWM line).
  std::atomic<bool> done{false};
  std::atomic<uint64_t> hwm_kb{0}, anon_max_kb{0}, shmem_max_kb{0}, file_max_kb{0};
  std::thread mem([&] {
    while (!done) {
      if (uint64_t v = status_kb(why_pid, "VmHWM"))
        hwm_kb = v;
      // Resident memory by kind: anonymous (the heap: what the correlator holds), shared (the BPF
      // ring buffer and maps mapped into the process), file-backed (the binary and libraries).
      anon_max_kb = std::max(anon_max_kb.load(), status_kb(why_pid, "RssAnon"));
      shmem_max_kb = std::max(shmem_max_kb.load(), status_kb(why_pid, "RssShmem"));
      file_max_kb = std::max(file_max_kb.load(), status_kb(why_pid, "RssFile"));
      sleep_for(0.05);
    }
  });

  std::atomic<uint64_t> responses{storm_load(nginx().port(), kStormS)};
  auto status = proc.wait(kDurationS + 10.0);
  double exit_after = std::chrono::duration<double>(Clock::now() - started).count();
  done = true;
  mem.join();
  ASSERT_TRUE(status) << "why502 did not exit " << kDurationS + 10 << " s after its start";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << read_file(err);
  // --duration is honoured within a second, however much was pending.
  EXPECT_LE(exit_after, kDurationS + 1.0);

  // nginx's side: a real storm.
  auto entries = nginx().access_entries();
  uint64_t n502 = 0;
  double first = 1e18, last = 0;
  for (auto &e : entries)
    if (e.status == 502) {
      ++n502;
      first = std::min(first, e.msec);
      last = std::max(last, e.msec);
    }
  double rate = n502 / std::max(1.0, last - first);
  ASSERT_GE(rate, 5000.0) << "the harness made only " << rate << " 502/s (" << n502 << " in total, "
                          << responses.load() << " responses read)";

  // why502's side: every 502 counted, as a verdict or in an aggregate.
  uint64_t counted = 0, verdict_lines = 0, aggregate_lines = 0;
  std::map<std::string, uint64_t> causes;
  std::vector<json> storms;
  json stats;
  for (auto &l : read_lines(out)) {
    json j = json::parse(l, nullptr, false);
    if (j.is_discarded())
      continue;
    std::string type = j.value("type", "");
    if (type == "verdict") {
      uint64_t c = j.value("count", uint64_t(0));
      EXPECT_GE(c, 1u) << l;
      counted += c;
      ++verdict_lines;
      aggregate_lines += c > 1;
      causes[j.value("cause", "")] += c;
      EXPECT_FALSE(j["evidence"].empty()) << l;
    } else if (type == "storm") {
      storms.push_back(j);
    } else if (type == "stats") {
      stats = j;
    }
  }
  EXPECT_EQ(counted, n502) << "causes: " << json(causes).dump() << "\nstats: " << stats.dump();
  EXPECT_EQ(causes["no_listener"], counted) << json(causes).dump();
  ASSERT_GE(storms.size(), 2u);
  EXPECT_EQ(storms.front().value("state", ""), "start");
  EXPECT_EQ(storms.back().value("state", ""), "end");
  // Rate-limited: about 200 per-request lines a second of the storm, plus the aggregates.
  EXPECT_LE(verdict_lines, uint64_t((kStormS + 2) * 200 + aggregate_lines));
  // Bounded memory: the whole process's peak resident set (heap, the ring buffer's pages mapped twice,
  // binary and libraries) stays under 64 MiB, and so does its heap alone.
  EXPECT_LE(hwm_kb.load(), kMaxHwmKb);
  EXPECT_LE(anon_max_kb.load(), kMaxHwmKb);
  printf("storm: %llu 502s at %.0f/s; %llu verdict lines (%llu aggregates); why502 exited %.2f s after its "
         "start (--duration %.0f); VmRSS at start %llu kB (VmHWM %llu kB), VmHWM at the end %llu kB (max RssAnon %llu kB, RssShmem %llu kB, RssFile %llu kB); stats %s\n",
         static_cast<unsigned long long>(n502), rate, static_cast<unsigned long long>(verdict_lines),
         static_cast<unsigned long long>(aggregate_lines), exit_after, kDurationS,
         static_cast<unsigned long long>(start_rss_kb), static_cast<unsigned long long>(start_hwm_kb),
         static_cast<unsigned long long>(hwm_kb.load()), static_cast<unsigned long long>(anon_max_kb.load()),
         static_cast<unsigned long long>(shmem_max_kb.load()), static_cast<unsigned long long>(file_max_kb.load()),
         stats.dump().c_str());
}

TEST_F(StormScenario, SigintMidStormStopsWithinASecond) {
  const uint16_t refused_port = 18752;
  auto cfg = proxy_config("http://127.0.0.1:" + std::to_string(refused_port));
  cfg.worker_connections = 1024;
  start_nginx(cfg);
  if (watch_disabled())
    GTEST_SKIP() << "needs why502";
  std::string out = dir() + "/why502.jsonl", err = dir() + "/why502.stderr";
  auto proc = spawn_watch(nginx().master_pid(), out, err, 60);
  // SIGINT 3 s into a 5 s storm: thousands of requests pending in the correlator.
  std::thread stopper([&] {
    sleep_for(3.0);
    proc.signal(SIGINT);
  });
  auto sent = Clock::now() + std::chrono::seconds(3);
  storm_load(nginx().port(), 5.0);
  stopper.join();
  auto status = proc.wait(10.0);
  ASSERT_TRUE(status) << "why502 ignored SIGINT during a storm";
  // It may already have exited while the load ran on: how long after the signal did it finish?
  double after = 0;
  std::string last_line;
  for (auto &l : read_lines(out))
    last_line = l;
  struct stat st{};
  ASSERT_EQ(stat(out.c_str(), &st), 0);
  auto mtime = std::chrono::system_clock::time_point(std::chrono::seconds(st.st_mtim.tv_sec) +
                                                     std::chrono::nanoseconds(st.st_mtim.tv_nsec));
  auto sent_wall = std::chrono::system_clock::now() - (Clock::now() - sent);
  after = std::chrono::duration<double>(mtime - sent_wall).count();
  EXPECT_LE(after, 1.0) << "the last line was written " << after << " s after SIGINT";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << read_file(err);
  EXPECT_NE(last_line.find("\"type\":\"stats\""), std::string::npos) << last_line;
  printf("SIGINT mid-storm: last line written %.3f s after the signal\n", after);
}
