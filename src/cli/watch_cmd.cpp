// `why502` / `why502 watch`: live reports per failed upstream request, summary on exit.
#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "cli/output.h"
#include "cli/watcher.h"
#include "sinks/perfetto_export.h"
#include "sinks/report.h"

namespace why502::cli {

nlohmann::json stats_json(const LossCounters &l, uint64_t events); // events_cmd.cpp

int run_watch(const WatchCommandOptions &opts) {
  Output out(opts.output);
  WatchOptions wopts;
  wopts.nginx_pid = opts.nginx_pid;
  wopts.error_logs = opts.error_logs;
  wopts.access_logs = opts.access_logs;
  wopts.capture_path = opts.capture;
  wopts.syscall_probes_always = opts.syscall_probes == "always";
  Watcher watcher(wopts);
  std::unique_ptr<sinks::PerfettoExporter> trace; // --perfetto: record alongside
  if (!opts.perfetto.empty()) {
    trace = std::make_unique<sinks::PerfettoExporter>(opts.perfetto);
    trace->connect(watcher);
  }
  install_stop_handlers();
  if (opts.json)
    out.line(watcher.start_json().dump());
  else
    fprintf(stderr, "%s", watcher.describe().c_str());

  auto emit = [&](const std::vector<Verdict> &verdicts) {
    for (const auto &v : verdicts) {
      if (trace)
        trace->verdict(v);
      out.line(opts.json ? to_json(v).dump() : sinks::text_report(v));
    }
    // Storm notes: when verdicts switch to one aggregated line per cause, upstream and second, and back.
    for (const auto &n : watcher.take_notes())
      out.line(opts.json ? n.dump() : "why502: " + n.value("time", std::string()) + " " + n.value("summary", std::string()));
  };
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  while (!stop_requested()) {
    if (opts.duration_s && std::chrono::duration<double>(clock::now() - start).count() >= *opts.duration_s)
      break;
    emit(watcher.step(100));
  }
  emit(watcher.finish());
  if (trace)
    trace->close();
  auto losses = watcher.losses();
  if (opts.json) {
    out.line(sinks::summary_json(watcher.stats()).dump());
    auto stats = stats_json(losses, watcher.stats().kernel_failures);
    // The correlator's bounded state: whatever it let go early is counted here.
    const auto &cs = watcher.stats();
    stats["kernel_records_evicted"] = cs.kernel_records_evicted;
    stats["requests_decided_early"] = cs.requests_decided_early;
    stats["lines_missing_kernel_record"] = cs.lines_missing_kernel_record;
    stats["verdict_lines"] = cs.verdict_lines;
    stats["aggregated_requests"] = cs.aggregated_requests;
    stats["aggregate_lines"] = cs.aggregate_lines;
    stats["storms"] = cs.storms;
    stats["log_lines_dropped"] = watcher.log_line_losses().dropped;
    stats["log_lines_unread_at_exit"] = watcher.log_line_losses().unread_at_exit;
    out.line(stats.dump());
  } else {
    out.line(sinks::summary_table(watcher.stats()));
  }
  if (losses.total())
    fprintf(stderr, "why502: %llu kernel records lost (ring buffer full: %llu)\n",
            static_cast<unsigned long long>(losses.total()), static_cast<unsigned long long>(losses.ringbuf_full));
  return 0;
}

} // namespace why502::cli
