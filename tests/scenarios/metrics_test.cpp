// `watch --metrics`: Prometheus metrics from a real run. A real nginx, an upstream port nobody
// listens on, three 502s; the scrape must count exactly those (by cause and upstream, by status),
// agree with the verdict lines, pass `promtool check metrics`, and the shipped alert rules must pass
// `promtool check rules`. promtool is Debian's, extracted by deploy/fetch-promtool.sh.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "prometheus_text.h"
#include "scenario.h"

using namespace why502::scenario;

namespace {

using why502::test::series_value;

class MetricsScenario : public ScenarioTest {};

// Runs promtool with `args`, the text on its stdin; its exit status and output.
std::pair<int, std::string> promtool(const std::string &args, const std::string &stdin_text, const std::string &dir) {
  const std::string in = dir + "/promtool.in", out = dir + "/promtool.out";
  std::ofstream(in, std::ios::binary) << stdin_text;
  std::string cmd = std::string(WHY502_PROMTOOL) + " " + args + " <" + in + " >" + out + " 2>&1";
  int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, read_file(out)};
}

} // namespace

TEST_F(MetricsScenario, ScrapeCountsEachFailureByCauseAndAgreesWithTheVerdicts) {
  ASSERT_TRUE(std::filesystem::exists(WHY502_PROMTOOL))
      << WHY502_PROMTOOL << " is missing: deploy/setup-tests.sh extracts it (deploy/fetch-promtool.sh)";
  uint16_t dead = free_port();
  const std::string upstream = "127.0.0.1:" + std::to_string(dead);
  start_nginx(proxy_config("http://" + upstream));
  const uint16_t metrics_port = free_port();
  const std::string address = "127.0.0.1:" + std::to_string(metrics_port);
  start_watch({"--metrics", address});
  drive("/", 3, 3);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "connect() failed (111: Connection refused)", 3));
  if (!watching())
    return;

  const std::string failures = "why502_upstream_failures_total{cause=\"no_listener\",upstream=\"" + upstream + "\"}";
  std::string text;
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = http_get("127.0.0.1", metrics_port, "/metrics", 5.0);
        text = r.body;
        return r.status == 200 && series_value(text, failures) == 3.0;
      },
      10.0))
      << "no " << failures << " 3 in the scrape:\n"
      << text;

  EXPECT_EQ(series_value(text, "why502_requests_failed_total{status=\"502\"}"), 3.0) << text;
  EXPECT_EQ(series_value(text, "why502_verdicts_unknown_total"), 0.0) << text;
  EXPECT_GE(series_value(text, "why502_kernel_records_total{kind=\"conn_fail\"}").value_or(0), 3.0) << text;
  for (const char *site : {"ringbuf_full", "conn_map_full", "watch_map_full", "undecodable"})
    EXPECT_EQ(series_value(text, std::string("why502_kernel_records_lost_total{site=\"") + site + "\"}"), 0.0)
        << site << "\n"
        << text;
  // Runs the kernel skipped to recursion: counted, not necessarily zero under a softirq.
  EXPECT_TRUE(series_value(text, "why502_kernel_runs_missed_total")) << text;
  EXPECT_TRUE(series_value(text, "why502_kernel_records_rate_limited_total")) << text;
  EXPECT_GE(series_value(text, "why502_log_lines_total{log=\"error\",result=\"parsed\"}").value_or(0), 3.0) << text;
  EXPECT_GE(series_value(text, "why502_log_lines_total{log=\"access\",result=\"parsed\"}").value_or(0), 3.0) << text;
  EXPECT_EQ(series_value(text, "why502_build_info{version=\"" WHY502_VERSION "\"}"), 1.0) << text;
  // nginx's own listener is on a free (ephemeral-range) port: never a label.
  EXPECT_EQ(text.find("listener=\"127.0.0.1:" + std::to_string(nginx().port()) + "\""), std::string::npos) << text;

  auto [rc, out] = promtool("check metrics", text, dir());
  EXPECT_EQ(rc, 0) << "promtool check metrics:\n" << out << "\non:\n" << text;
  auto [rules_rc, rules_out] =
      promtool(std::string("check rules ") + WHY502_SOURCE_DIR + "/deploy/kubernetes/why502-alerts.yaml", "", dir());
  EXPECT_EQ(rules_rc, 0) << rules_out;

  // The metrics agree with the verdict lines watch wrote.
  auto verdicts = finish_watch(0.5);
  auto matching = expect_verdicts(verdicts, "no_listener", upstream);
  uint64_t counted = 0;
  for (const auto &v : verdicts)
    counted += v.value("count", uint64_t(1));
  EXPECT_EQ(counted, 3u);
}

TEST_F(MetricsScenario, AnAddressItCannotServeIsOneLineAndExit1) {
  start_nginx(proxy_config("http://127.0.0.1:9"));
  // A port already taken: nginx's own.
  const std::string taken = "127.0.0.1:" + std::to_string(nginx().port());
  SpawnOptions so;
  so.stdout_path = dir() + "/out";
  so.stderr_path = dir() + "/err";
  auto p = Process::spawn({WHY502_BINARY, "watch", "--json", "--nginx-pid", std::to_string(nginx().master_pid()),
                           "--duration", "5", "--metrics", taken},
                          so);
  auto status = p.wait(20.0);
  ASSERT_TRUE(status) << "watch did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << *status;
  const std::string err = read_file(dir() + "/err");
  EXPECT_NE(err.find("--metrics " + taken + ": cannot serve metrics there"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}
