// `why502 record -o FILE.pftrace`: a native Perfetto trace of nginx's upstream
// failures (worker tracks, connection slices, kernel instants, queue counters,
// flow arrows from each 502 to its cause). Verdicts also go to stderr, one line each.
#include <chrono>
#include <cstdio>

#include "base/output_file.h"
#include "base/privileges.h"
#include "base/text.h"
#include "cli/commands.h"
#include "pipeline/watcher.h"
#include "sinks/perfetto_export.h"
#include "why502/error.h"
#include "why502/nginx.h"

namespace why502::cli {

using namespace why502::pipeline;

namespace {

std::string verdict_line(const Verdict &v) {
  std::string s = (v.status ? std::to_string(*v.status) : std::string("failed attempt")) + " " + v.cause;
  if (!v.upstream.empty())
    s += " " + v.upstream;
  return s + ": " + v.summary;
}

// Upstream addresses from the nginx config: their listeners' queues are
// tracked from the first sample, before anything fails.
void seed_upstreams(sinks::PerfettoExporter &trace, std::optional<pid_t> nginx_pid) {
  auto found = nginx::discover(nginx_pid);
  if (!found)
    return; // the watcher found nginx a moment ago; without a config we learn upstreams from failures
  for (const auto &inst : found->instances) {
    for (const auto &u : inst.config.upstreams)
      for (const auto &s : u->servers)
        trace.add_upstream(s.address);
    for (const auto &p : inst.config.passes)
      if (!p.upstream && !p.has_variables)
        trace.add_upstream(p.address);
  }
}

} // namespace

int run_record(const RecordOptions &opts) {
  WatchOptions wopts;
  if (opts.nginx_pid)
    wopts.nginx_pid = *opts.nginx_pid;
  wopts.error_logs = opts.error_logs;
  wopts.access_logs = opts.access_logs;
  Watcher watcher(wopts);

  sinks::PerfettoExportOptions eopts;
  eopts.max_size_bytes = opts.max_size;
  eopts.process_names = live_process_names();
  if (!opts.group.empty())
    eopts.group = base::group_id(opts.group);
  sinks::PerfettoExporter trace(opts.output, eopts);
  seed_upstreams(trace, wopts.nginx_pid);
  for (uint32_t pid : watcher.nginx_pids())
    trace.add_nginx_process(pid);
  trace.connect(watcher);
  drop_after_attach(); // attached, trace open: keep only what reloads and probe arming need

  install_stop_handlers();
  fprintf(stderr, "%srecording to %s (Ctrl-C to stop)\n", base::escape_terminal_lines(watcher.describe()).c_str(),
          opts.output.c_str());
  auto emit = [&](const std::vector<Verdict> &verdicts) {
    for (const auto &v : verdicts) {
      trace.verdict(v);
      fprintf(stderr, "%s\n", verdict_line(v).c_str());
    }
  };
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  bool full = false;
  while (!stop_requested()) {
    if (take_reopen_request())
      // A trace is one file (its first packets describe the clocks and tracks): it is not split
      // at a rotation. SIGHUP only does not stop the recording.
      fprintf(stderr, "why502: SIGHUP: still recording to %s (a Perfetto trace is not reopened)\n",
              opts.output.c_str());
    if (opts.duration_s && std::chrono::duration<double>(clock::now() - start).count() >= *opts.duration_s)
      break;
    emit(watcher.step(100));
    if (trace.full()) {
      full = true;
      break;
    }
  }
  emit(watcher.finish());
  trace.close();

  const auto st = trace.stats();
  fprintf(stderr, "why502: wrote %s: %llu bytes, %llu packets, %llu verdicts (%llu with a flow arrow to their cause)\n",
          opts.output.c_str(), static_cast<unsigned long long>(st.writer.bytes_written),
          static_cast<unsigned long long>(st.writer.packets_written), static_cast<unsigned long long>(st.verdicts),
          static_cast<unsigned long long>(st.verdicts - std::min(st.verdicts, st.flows_unresolved)));
  if (full || st.writer.packets_dropped)
    fprintf(stderr, "why502: stopped at --max-size %llu bytes: %llu packets not written\n",
            static_cast<unsigned long long>(opts.max_size),
            static_cast<unsigned long long>(st.writer.packets_dropped));
  if (st.clamped || st.late)
    fprintf(stderr, "why502: %llu events arrived after the reorder window and were written at its edge\n",
            static_cast<unsigned long long>(st.clamped + st.late));
  auto losses = watcher.losses();
  if (losses.total())
    fprintf(stderr, "why502: %llu kernel records lost (ring buffer full: %llu)\n",
            static_cast<unsigned long long>(losses.total()), static_cast<unsigned long long>(losses.ringbuf_full));
  return 0;
}

} // namespace why502::cli
