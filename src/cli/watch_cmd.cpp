// `why502` / `why502 watch`: live reports per failed upstream request, summary on exit.
#include <chrono>
#include <cstdio>

#include "base/output_file.h"
#include "base/privileges.h"
#include "base/text.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "pipeline/watcher.h"
#include "why502/error.h"
#include "sinks/metrics.h"
#include "sinks/perfetto_export.h"
#include "sinks/report.h"

namespace why502::cli {

using namespace why502::pipeline;

nlohmann::json stats_json(const LossCounters &l, uint64_t events); // events_cmd.cpp

int run_watch(const WatchCommandOptions &opts) {
  std::optional<gid_t> group;
  if (!opts.group.empty())
    group = base::group_id(opts.group);
  if (opts.rotate_size && (opts.output.empty() || opts.output == "-"))
    throw Error("--rotate-size needs -o FILE (stdout cannot be rotated)");
  base::OutputFileOptions out_opts;
  out_opts.group = group;
  out_opts.rotate_size = opts.rotate_size;
  out_opts.rotate_keep = opts.rotate_keep;
  Output out(opts.output, out_opts);
  WatchOptions wopts;
  wopts.output_group = group;
  wopts.nginx_pid = opts.nginx_pid;
  wopts.error_logs = opts.error_logs;
  wopts.access_logs = opts.access_logs;
  wopts.capture_path = opts.capture;
  wopts.syscall_probes_always = opts.syscall_probes == "always";
  Watcher watcher(wopts);
  std::unique_ptr<sinks::PerfettoExporter> trace; // --perfetto: record alongside
  if (!opts.perfetto.empty()) {
    sinks::PerfettoExportOptions eopts;
    eopts.group = group;
    eopts.process_names = live_process_names();
    trace = std::make_unique<sinks::PerfettoExporter>(opts.perfetto, eopts);
    trace->connect(watcher);
  }
  std::unique_ptr<sinks::Metrics> metrics; // --metrics: bound before privileges drop
  if (opts.metrics) {
    sinks::MetricsOptions mopts;
    mopts.ephemeral_ports = sinks::Metrics::host_ephemeral_ports();
    metrics = std::make_unique<sinks::Metrics>(mopts);
    metrics->serve(opts.metrics->empty() ? sinks::kDefaultMetricsAddress : *opts.metrics);
    watcher.on_kernel([m = metrics.get()](const KernelEvent &ev) { m->kernel_record(ev); });
    watcher.on_sample([m = metrics.get()](const HostSample &s) { m->host_sample(s); });
    watcher.on_failed_request([m = metrics.get()](int status) { m->failed_request(status); });
  }
  // The cumulative counters, mirrored once a step: losses are live, not only in the exit line.
  auto update_totals = [&] {
    if (!metrics)
      return;
    sinks::MetricsTotals t;
    t.losses = watcher.losses();
    const auto lines = watcher.log_line_counts();
    t.error_lines_parsed = lines.error_parsed;
    t.error_lines_unparsed = lines.error_unparsed;
    t.access_lines_parsed = lines.access_parsed;
    t.access_lines_unparsed = lines.access_unparsed;
    t.log_lines_dropped = watcher.log_line_losses().dropped;
    t.error_lines_unconfigured = watcher.log_line_losses().unconfigured_upstream;
    metrics->totals(t);
  };
  drop_after_attach(group.has_value()); // attached, outputs open: keep only what reloads and probe arming need
  install_stop_handlers();
  if (opts.json) {
    auto start_line = watcher.start_json();
    out.line(base::json_line(start_line));
    // Notes (a log that cannot be read, ...) also reach the operator's terminal, not only the file.
    for (const auto &n : start_line["notes"])
      fprintf(stderr, "why502: note: %s\n", base::escape_terminal(base::valid_utf8(n.get<std::string>())).c_str());
  } else {
    fprintf(stderr, "%s", base::escape_terminal_lines(watcher.describe()).c_str());
  }

  // A line that cannot be written (a full disk, a closed pipe) is counted and said on stderr (once
  // a minute), and watch goes on: the next line may fit, and the metrics and the exit line still
  // count what was lost. Only the start line, written before anything else, may fail the run.
  uint64_t output_lines_lost = 0;
  std::chrono::steady_clock::time_point last_loss_note{};
  auto write_out = [&](const std::string &text) {
    try {
      out.line(text);
    } catch (const Error &e) {
      ++output_lines_lost;
      if (metrics)
        metrics->output_line_lost();
      const auto now = std::chrono::steady_clock::now();
      if (output_lines_lost == 1 || now - last_loss_note >= std::chrono::seconds(60)) {
        last_loss_note = now;
        fprintf(stderr, "why502: %s; %llu output line(s) lost so far\n", e.what(),
                static_cast<unsigned long long>(output_lines_lost));
      }
    }
  };
  auto emit = [&](const std::vector<Verdict> &verdicts) {
    for (const auto &v : verdicts) {
      if (trace)
        trace->verdict(v);
      if (metrics)
        metrics->verdict(v);
      write_out(opts.json ? base::json_line(to_json(v)) : sinks::text_report(v));
    }
    // Storm notes: when verdicts switch to one aggregated line per cause, upstream and second, and back.
    for (const auto &n : watcher.take_notes())
      write_out(opts.json ? base::json_line(n)
                         : "why502: " + n.value("time", std::string()) + " " +
                               base::escape_terminal(n.value("summary", std::string())));
  };
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  update_totals(); // every loss series exists (at 0) from the first scrape on
  auto last_totals = start;
  while (!stop_requested()) {
    if (take_reopen_request()) {
      // logrotate renamed the files: the next line goes to a new file at the same path. The
      // Perfetto trace is one file and is not split.
      try {
        out.reopen();
        watcher.reopen_capture();
      } catch (const Error &e) { // the old file stays in use: nothing is lost
        fprintf(stderr, "why502: SIGHUP: %s; still writing to the old file\n", e.what());
      }
    }
    if (opts.duration_s && std::chrono::duration<double>(clock::now() - start).count() >= *opts.duration_s)
      break;
    auto verdicts = watcher.step(100);
    const bool decided = !verdicts.empty();
    emit(verdicts);
    // Steps come every 25 ms under load; a scrape is seconds apart, and reading the kernel's loss
    // counters is a syscall: four times a second keeps the losses live without paying that 40 times.
    // A step that decided requests mirrors at once, so a scrape's line counts agree with its verdicts.
    if (decided || clock::now() - last_totals >= std::chrono::milliseconds(250)) {
      update_totals();
      last_totals = clock::now();
    }
  }
  emit(watcher.finish());
  update_totals();
  if (trace)
    trace->close();
  auto losses = watcher.losses();
  if (opts.json) {
    write_out(base::json_line(sinks::summary_json(watcher.stats())));
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
    stats["ownership_evicted"] = cs.ownership_evicted;
    stats["log_lines_dropped"] = watcher.log_line_losses().dropped;
    stats["log_lines_unread_at_exit"] = watcher.log_line_losses().unread_at_exit;
    stats["log_lines_unconfigured_upstream"] = watcher.log_line_losses().unconfigured_upstream;
    stats["output_lines_lost"] = output_lines_lost;
    stats["output_rotations"] = out.file() ? out.file()->rotations() : 0;
    stats["output_rotation_failures"] = out.file() ? out.file()->rotation_failures() : 0;
    write_out(base::json_line(stats));
  } else {
    write_out(sinks::summary_table(watcher.stats()));
  }
  if (output_lines_lost)
    fprintf(stderr, "why502: %llu output line(s) could not be written\n",
            static_cast<unsigned long long>(output_lines_lost));
  if (losses.total())
    fprintf(stderr, "why502: %llu kernel records lost (ring buffer full: %llu)\n",
            static_cast<unsigned long long>(losses.total()), static_cast<unsigned long long>(losses.ringbuf_full));
  return 0;
}

} // namespace why502::cli
