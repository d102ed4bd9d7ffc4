// `why502 events`: the decoded kernel records, one JSON object per line. The
// debug view of the kernel side and the capture format `analyze` reads.
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/text.h"
#include "cli/commands.h"
#include "correlate/causes.h"
#include "base/privileges.h"
#include "cli/output.h"
#include "why502/error.h"
#include "why502/tracer.h"

namespace why502::cli {

nlohmann::json stats_json(const LossCounters &l, uint64_t events) {
  return {{"type", "stats"},
          {"events", events},
          {"lost_total", l.total()},
          {"lost_ringbuf_full", l.ringbuf_full},
          {"lost_conn_map_full", l.conn_map_full},
          {"lost_watch_map_full", l.watch_map_full},
          {"lost_host_rate_limited", l.host_rate_limited},
          {"lost_undecodable", l.undecodable},
          {"fd_walks_capped", l.fd_walks_capped},
          {"kernel_runs_missed", l.runs_missed}};
}

void warn_degraded(const Tracer &tracer) {
  for (const auto &p : tracer.programs())
    if (!p.attached)
      fprintf(stderr, "why502: %s not attached (%s): less evidence for %s\n", p.tracepoint.c_str(),
              p.problem.c_str(), fmt::format("{}", fmt::join(causes_needing(p.program), ", ")).c_str());
}

int run_events(const EventsOptions &opts) {
  TracerOptions topts;
  topts.pids = opts.pids;
  topts.comms = opts.comms;
  if (topts.pids.empty() && topts.comms.empty())
    topts.comms = {"nginx"};
  Output out(opts.output, opts.group.empty() ? std::nullopt : std::optional<gid_t>(base::group_id(opts.group)));
  Tracer tracer(topts);
  drop_after_attach(!opts.group.empty()); // attached, output open: keep only what polling and exit need
  warn_degraded(tracer);
  install_stop_handlers();
  // Readers (and tests) know from this line that the programs are attached.
  out.line(base::json_line(nlohmann::json{{"type", "start"},
                                          {"watched_pids", tracer.watched_pids()},
                                          {"comms", topts.comms},
                                          {"degraded_causes", causes_degraded_by(tracer.programs())}}));

  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  uint64_t events = 0;
  auto sink = [&](const KernelEvent &ev) {
    out.line(base::json_line(to_json(ev)));
    ++events;
  };
  while (!stop_requested()) {
    if (take_reopen_request()) {
      try {
        out.reopen(); // logrotate renamed the file: go on in a new one at the same path
      } catch (const Error &e) { // the old file stays in use: nothing is lost
        fprintf(stderr, "why502: SIGHUP: %s; still writing to the old file\n", e.what());
      }
    }
    int timeout_ms = 200;
    if (opts.duration_s) {
      double left = *opts.duration_s - std::chrono::duration<double>(clock::now() - start).count();
      if (left <= 0)
        break;
      timeout_ms = std::min(200, int(left * 1000) + 1);
    }
    tracer.poll(timeout_ms, sink);
  }
  tracer.poll(0, sink); // what is already in the buffer
  auto losses = tracer.losses();
  out.line(base::json_line(stats_json(losses, events)));
  if (losses.total())
    fprintf(stderr, "why502: %llu kernel records lost (see the stats line)\n",
            static_cast<unsigned long long>(losses.total()));
  return 0;
}

} // namespace why502::cli
