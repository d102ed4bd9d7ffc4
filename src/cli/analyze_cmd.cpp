// `why502 analyze`: the correlator offline, on a capture (`events --json` or
// `watch --capture`) and the nginx logs of the same period.
#include <cstdio>

#include "cli/commands.h"
#include "cli/output.h"
#include "cli/replay.h"
#include "sinks/report.h"

namespace why502::cli {

int run_analyze(const AnalyzeOptions &opts) {
  ReplayResult r = replay({opts.capture, opts.error_logs, opts.access_logs, opts.access_format});
  Output out(opts.output);
  for (const auto &v : r.verdicts)
    out.line(opts.json ? to_json(v).dump() : sinks::text_report(v));
  out.line(opts.json ? sinks::summary_json(r.stats).dump() : sinks::summary_table(r.stats));
  if (r.bad_capture_lines || r.unparsed_error_lines || r.unparsed_access_lines)
    fprintf(stderr, "why502: skipped %llu capture line(s), %llu error-log line(s), %llu access-log line(s) it could not parse\n",
            static_cast<unsigned long long>(r.bad_capture_lines), static_cast<unsigned long long>(r.unparsed_error_lines),
            static_cast<unsigned long long>(r.unparsed_access_lines));
  return 0;
}

} // namespace why502::cli
