// `why502 demo` end to end: the embedded default must name every fault it
// injects, and leave nothing behind.
#include <gtest/gtest.h>

#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <map>
#include <string>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

namespace {

int count_processes(const std::string &comm_prefix) {
  int n = 0;
  if (DIR *d = opendir("/proc")) {
    while (dirent *e = readdir(d)) {
      std::ifstream f(std::string("/proc/") + e->d_name + "/comm");
      std::string comm;
      if (f && std::getline(f, comm) && comm.rfind(comm_prefix, 0) == 0)
        ++n;
    }
    closedir(d);
  }
  return n;
}

int processes_with_cmdline(const std::string &needle) {
  int n = 0;
  if (DIR *d = opendir("/proc")) {
    while (dirent *e = readdir(d)) {
      std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline");
      std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      if (cmdline.find(needle) != std::string::npos)
        ++n;
    }
    closedir(d);
  }
  return n;
}

} // namespace

TEST(DemoCli, NamesEveryInjectedFaultAndCleansUp) {
  const int apps_before = count_processes("app-");
  FILE *p = popen((std::string(WHY502_BINARY) + " demo --json").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::vector<nlohmann::json> verdicts;
  char buf[1 << 16];
  while (fgets(buf, sizeof(buf), p)) {
    auto j = nlohmann::json::parse(buf, nullptr, false);
    if (!j.is_discarded() && j.value("type", "") == "verdict")
      verdicts.push_back(j);
  }
  int rc = pclose(p);
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << "demo exit status " << rc;

  std::map<std::string, nlohmann::json> by_cause;
  for (const auto &v : verdicts)
    by_cause.emplace(v["cause"].get<std::string>(), v);
  // The four faults the issue requires, plus the rest the demo shows.
  for (const char *cause : {"no_listener", "upstream_killed_by_signal", "upstream_oom_killed", "accept_queue_overflow",
                            "connection_reset", "upstream_closed_early"})
    EXPECT_TRUE(by_cause.count(cause)) << "no " << cause << " verdict";
  ASSERT_TRUE(by_cause.count("upstream_oom_killed"));
  const auto &oom = by_cause["upstream_oom_killed"];
  EXPECT_EQ(oom["status"], 502);
  EXPECT_EQ(oom["upstream_process"]["comm"], "app-hungry");
  ASSERT_TRUE(by_cause.count("accept_queue_overflow"));
  EXPECT_EQ(by_cause["accept_queue_overflow"]["status"], 504);
  EXPECT_EQ(verdicts.size(), 7u);

  // Nothing left running: upstreams, and no nginx from the demo's temp dir.
  EXPECT_EQ(count_processes("app-"), apps_before);
  EXPECT_EQ(processes_with_cmdline("why502-demo"), 0);
}
