// The metrics sink on its own (no server): what each input adds, the label bounds, listeners that
// go away, deaths of listener owners by cause, and the cumulative counters mirrored by growth.
#include "sinks/metrics.h"

#include <csignal>
#include <sstream>

#include <gtest/gtest.h>

#include "prometheus_text.h"

using namespace why502;
using sinks::Metrics;
using sinks::MetricsOptions;

namespace {

using why502::test::series_value;

Verdict verdict(const std::string &cause, const std::string &upstream, uint64_t count = 1) {
  Verdict v;
  v.cause = cause;
  v.upstream = upstream;
  v.count = count;
  return v;
}

KernelEvent exit_of(uint32_t pid, const std::string &comm, int signal, int code = 0, bool watched = false) {
  ProcessExit e;
  e.pid = pid;
  e.comm = comm;
  e.signal = signal;
  e.exit_code = code;
  e.watched = watched;
  KernelEvent ev;
  ev.record = e;
  return ev;
}

HostSample sample_with(std::vector<Listener> listeners) {
  HostSample s;
  s.listeners = std::move(listeners);
  return s;
}

Listener listener(const std::string &address, uint32_t depth, uint32_t max, uint32_t owner = 0) {
  Listener l;
  l.address = address;
  l.depth = depth;
  l.max = max;
  if (owner)
    l.owners.push_back({owner, "gunicorn"});
  return l;
}

} // namespace

TEST(Metrics, VerdictsCountRequestsByCauseAndUpstreamAggregatesIncluded) {
  Metrics m;
  m.verdict(verdict("no_listener", "127.0.0.1:8080"));
  m.verdict(verdict("no_listener", "127.0.0.1:8080", 41)); // a storm's aggregate line
  m.verdict(verdict(cause::kUnknown, "127.0.0.1:8081"));
  m.failed_request(502);
  m.failed_request(504);
  m.failed_request(502);
  const std::string t = m.text();
  EXPECT_EQ(series_value(t, R"(why502_upstream_failures_total{cause="no_listener",upstream="127.0.0.1:8080"})"), 42.0) << t;
  EXPECT_EQ(series_value(t, R"(why502_upstream_failures_total{cause="unknown",upstream="127.0.0.1:8081"})"), 1.0);
  EXPECT_EQ(series_value(t, "why502_verdicts_unknown_total"), 1.0);
  EXPECT_EQ(series_value(t, R"(why502_requests_failed_total{status="502"})"), 2.0);
  EXPECT_EQ(series_value(t, R"(why502_requests_failed_total{status="504"})"), 1.0);
  EXPECT_EQ(series_value(t, R"(why502_build_info{version=")" WHY502_VERSION R"("})"), 1.0);
  EXPECT_NE(t.find("# TYPE why502_upstream_failures_total counter"), std::string::npos);
  EXPECT_NE(t.find("# HELP why502_upstream_failures_total "), std::string::npos);
}

TEST(Metrics, UpstreamLabelsAreBoundedAndTheFoldingIsCounted) {
  MetricsOptions o;
  o.max_label_values = 2;
  Metrics m(o);
  for (const char *u : {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.1:80"})
    m.verdict(verdict("connection_reset", u));
  const std::string t = m.text();
  EXPECT_EQ(series_value(t, R"(why502_upstream_failures_total{cause="connection_reset",upstream="10.0.0.1:80"})"), 2.0) << t;
  EXPECT_EQ(series_value(t, R"(why502_upstream_failures_total{cause="connection_reset",upstream="other"})"), 2.0);
  EXPECT_EQ(t.find("10.0.0.3:80"), std::string::npos);
  EXPECT_EQ(series_value(t, R"(why502_metric_label_values_folded_total{metric="upstream_failures"})"), 2.0);
}

TEST(Metrics, ListenQueuesSkipEphemeralPortsAndGoWithTheirListener) {
  MetricsOptions o;
  o.ephemeral_ports = {32768, 60999};
  Metrics m(o);
  m.host_sample(sample_with({listener("127.0.0.1:8080", 3, 128), listener("127.0.0.1:41000", 1, 16),
                             listener("unix:/run/php/fpm.sock", 0, 511)}));
  std::string t = m.text();
  EXPECT_EQ(series_value(t, R"(why502_listen_queue_depth{listener="127.0.0.1:8080"})"), 3.0) << t;
  EXPECT_EQ(series_value(t, R"(why502_listen_queue_max{listener="127.0.0.1:8080"})"), 128.0);
  EXPECT_EQ(series_value(t, R"(why502_listen_queue_max{listener="unix:/run/php/fpm.sock"})"), 511.0);
  EXPECT_EQ(t.find("41000"), std::string::npos) << "an ephemeral port became a label";
  m.host_sample(sample_with({listener("unix:/run/php/fpm.sock", 2, 511)}));
  t = m.text();
  EXPECT_EQ(t.find("127.0.0.1:8080"), std::string::npos) << "a closed listener keeps its series:\n" << t;
  EXPECT_EQ(series_value(t, R"(why502_listen_queue_depth{listener="unix:/run/php/fpm.sock"})"), 2.0);
}

TEST(Metrics, DeathsOfListenerOwnersByCause) {
  Metrics m;
  m.host_sample(sample_with({listener("127.0.0.1:8080", 0, 128, 100), listener("127.0.0.1:8081", 0, 128, 101),
                             listener("127.0.0.1:8082", 0, 128, 102), listener("127.0.0.1:8083", 0, 128, 103)}));
  OomVictim oom;
  oom.pid = 100;
  oom.comm = "gunicorn";
  KernelEvent oom_ev;
  oom_ev.record = oom;
  m.kernel_record(oom_ev);
  m.kernel_record(exit_of(100, "gunicorn", SIGKILL));
  m.kernel_record(exit_of(101, "gunicorn", SIGSEGV));
  m.kernel_record(exit_of(102, "gunicorn", SIGTERM));
  m.kernel_record(exit_of(103, "gunicorn", 0, 3));
  m.kernel_record(exit_of(200, "bash", SIGKILL));                  // owned no listener
  m.kernel_record(exit_of(101, "gunicorn", SIGSEGV));              // the same pid again: counted once
  m.kernel_record(exit_of(300, "nginx", SIGKILL, 0, /*watched*/ true)); // nginx itself is not an upstream
  const std::string t = m.text();
  for (auto [cause, n] : std::initializer_list<std::pair<const char *, double>>{
           {"oom_killed", 1}, {"crashed", 1}, {"killed_by_signal", 1}, {"exited_with_error", 1}})
    EXPECT_EQ(series_value(t, std::string(R"(why502_upstream_process_deaths_total{cause=")") + cause +
                                  R"(",comm="gunicorn"})"),
              n)
        << cause << "\n"
        << t;
  EXPECT_EQ(t.find("comm=\"bash\""), std::string::npos);
  EXPECT_EQ(t.find("comm=\"nginx\""), std::string::npos);
  EXPECT_EQ(series_value(t, R"(why502_kernel_records_total{kind="process_exit"})"), 7.0);
  EXPECT_EQ(series_value(t, R"(why502_kernel_records_total{kind="oom_kill"})"), 1.0);
}

TEST(Metrics, CumulativeCountersAreMirroredByTheirGrowth) {
  Metrics m;
  sinks::MetricsTotals t;
  t.losses.ringbuf_full = 5;
  t.losses.host_rate_limited = 7;
  t.losses.runs_missed = 3;
  t.access_lines_parsed = 1000;
  t.error_lines_unparsed = 2;
  m.totals(t);
  t.losses.ringbuf_full = 8;
  t.access_lines_parsed = 1500;
  m.totals(t);
  m.totals(t); // no growth, no change
  const std::string text = m.text();
  EXPECT_EQ(series_value(text, R"(why502_kernel_records_lost_total{site="ringbuf_full"})"), 8.0) << text;
  EXPECT_EQ(series_value(text, R"(why502_kernel_records_lost_total{site="conn_map_full"})"), 0.0);
  EXPECT_EQ(series_value(text, "why502_kernel_runs_missed_total"), 3.0) << text;
  EXPECT_EQ(series_value(text, "why502_kernel_records_rate_limited_total"), 7.0);
  EXPECT_EQ(series_value(text, R"(why502_log_lines_total{log="access",result="parsed"})"), 1500.0);
  EXPECT_EQ(series_value(text, R"(why502_log_lines_total{log="error",result="unparsed"})"), 2.0);
}
