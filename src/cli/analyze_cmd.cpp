// `why502 analyze`: the correlator offline, on a capture (`events --json` or
// `watch --capture`) and the nginx logs of the same period.
#include <cstdio>

#include "base/text.h"
#include "base/time.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "pipeline/replay.h"
#include "sinks/report.h"

namespace why502::cli {

using namespace why502::pipeline;

int run_analyze(const AnalyzeOptions &opts) {
  ReplayInput in{opts.capture, opts.error_logs, opts.access_logs, opts.access_format, std::nullopt};
  if (!opts.log_utc_offset.empty())
    in.log_utc_offset_s = base::parse_utc_offset(opts.log_utc_offset); // checked by the CLI
  ReplayResult r = replay(in);
  // nginx's error.log times have no zone: when neither the access log nor the capture says which it
  // was, this host's is assumed, and that is worth a line (logs copied from elsewhere are off by hours).
  if (r.log_zone == nginx::LogZone::Source::this_host)
    fprintf(stderr,
            "why502: error.log times read as %s: neither the access log ($time_local) nor the capture "
            "says nginx's zone; --log-utc-offset sets it\n",
            r.log_zone_text.c_str());
  Output out(opts.output);
  for (const auto &v : r.verdicts)
    out.line(opts.json ? base::json_line(to_json(v)) : sinks::text_report(v));
  // Skipped input is part of the answer: a summary over fewer lines than the files hold says so.
  const bool skipped = r.bad_capture_lines || r.long_lines || r.unparsed_error_lines || r.unparsed_access_lines;
  if (opts.json) {
    auto summary = sinks::summary_json(r.stats);
    summary["skipped_capture_lines"] = r.bad_capture_lines;
    summary["skipped_long_lines"] = r.long_lines;
    summary["unparsed_error_lines"] = r.unparsed_error_lines;
    summary["unparsed_access_lines"] = r.unparsed_access_lines;
    summary["error_log_zone"] = r.log_zone_text;
    out.line(base::json_line(summary));
  } else {
    std::string table = sinks::summary_table(r.stats);
    if (skipped) {
      if (!table.empty() && table.back() == '\n')
        table.pop_back();
      table += "\nskipped: " + std::to_string(r.bad_capture_lines) + " capture line(s) that are not records, " +
               std::to_string(r.long_lines) + " line(s) over " + std::to_string(kMaxReplayLine) + " bytes, " +
               std::to_string(r.unparsed_error_lines) + " error-log line(s), " +
               std::to_string(r.unparsed_access_lines) + " access-log line(s) not understood";
    }
    out.line(table);
  }
  if (skipped)
    fprintf(stderr,
            "why502: skipped %llu capture line(s) that are not records, %llu line(s) over %zu bytes, %llu "
            "error-log line(s), %llu access-log line(s) it could not parse\n",
            static_cast<unsigned long long>(r.bad_capture_lines), static_cast<unsigned long long>(r.long_lines),
            kMaxReplayLine, static_cast<unsigned long long>(r.unparsed_error_lines),
            static_cast<unsigned long long>(r.unparsed_access_lines));
  return 0;
}

} // namespace why502::cli
