// The `why502 events --json` command end to end: the binary, a watched process
// making a failure, and the record on stdout within a second.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "harness.h"

using namespace why502::testing;
using clock_type = std::chrono::steady_clock;

namespace {

// Reads lines from `fd` until `pred` accepts one or the deadline passes.
std::optional<nlohmann::json> read_until(int fd, std::string &buf, double timeout_s,
                                         const std::function<bool(const nlohmann::json &)> &pred) {
  auto deadline = clock_type::now() + std::chrono::duration<double>(timeout_s);
  while (clock_type::now() < deadline) {
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      auto j = nlohmann::json::parse(buf.substr(0, nl), nullptr, false);
      buf.erase(0, nl + 1);
      if (!j.is_discarded() && pred(j))
        return j;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) > 0) {
      char chunk[4096];
      ssize_t n = read(fd, chunk, sizeof(chunk));
      if (n <= 0)
        return std::nullopt;
      buf.append(chunk, size_t(n));
    }
  }
  return std::nullopt;
}

} // namespace

TEST(EventsCli, RecordOfAWatchedProcessArrivesWithinASecond) {
  uint16_t port = closed_port();
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  pid_t target = fork();
  if (target == 0) {
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 1)
      _exit(1);
    int fd = nb_connect("127.0.0.1", port);
    sleep_s(0.3);
    close(fd);
    _exit(0);
  }
  close(go[0]);
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  pid_t tool = fork();
  if (tool == 0) {
    dup2(out[1], 1);
    close(out[0]);
    std::string pid = std::to_string(target);
    execl(WHY502_BINARY, "why502", "events", "--json", "--pid", pid.c_str(), "--duration", "10", nullptr);
    _exit(127);
  }
  close(out[1]);
  std::string buf;
  auto start = read_until(out[0], buf, 10, [](const auto &j) { return j.value("type", "") == "start"; });
  ASSERT_TRUE(start) << "no start line from why502 events";
  EXPECT_EQ(start->at("watched_pids"), nlohmann::json::array({target}));

  auto made = clock_type::now();
  ASSERT_EQ(write(go[1], "g", 1), 1);
  auto rec = read_until(out[0], buf, 5, [&](const auto &j) {
    return j.value("event", "") == "conn_fail" && j.value("pid", 0) == target;
  });
  double latency = std::chrono::duration<double>(clock_type::now() - made).count();
  kill(tool, SIGINT);
  auto stats = read_until(out[0], buf, 5, [](const auto &j) { return j.value("type", "") == "stats"; });
  int status = 0;
  waitpid(tool, &status, 0);
  waitpid(target, nullptr, 0);

  ASSERT_TRUE(rec) << "no conn_fail record for pid " << target;
  EXPECT_LT(latency, 1.0);
  EXPECT_EQ(rec->at("failure"), "rst_in_syn_sent");
  EXPECT_EQ(rec->at("remote"), "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(rec->at("sk_errno"), "ECONNREFUSED");
  EXPECT_EQ(rec->at("host"), false);
  ASSERT_TRUE(stats) << "no stats line after SIGINT";
  EXPECT_EQ(stats->at("lost_total"), 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(EventsCli, BadInputIsOneLineAndNonZeroExit) {
  auto run = [](const std::string &args) {
    std::string cmd = std::string(WHY502_BINARY) + " " + args + " 2>&1";
    FILE *p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof(buf), p))
      out += buf;
    int rc = pclose(p);
    return std::make_pair(WEXITSTATUS(rc), out);
  };
  auto [rc1, out1] = run("events --duration -3");
  EXPECT_NE(rc1, 0);
  auto [rc2, out2] = run("analyze /nonexistent --error-log /nonexistent");
  EXPECT_NE(rc2, 0);
  EXPECT_EQ(out2, "why502: cannot read capture /nonexistent: No such file or directory\n");
  auto [rc3, out3] = run("watch --nginx-pid 999999");
  EXPECT_NE(rc3, 0);
  EXPECT_EQ(std::count(out3.begin(), out3.end(), '\n'), 1) << out3;
  auto [rc4, out4] = run("events --json --comm a --comm b --comm c --comm d --comm e --duration 1");
  EXPECT_NE(rc4, 0);
  EXPECT_EQ(out4, "why502: at most 4 --comm names are supported\n");
}
