// Offline correlation: a capture (kernel records + host samples, as written by
// `events --json` / `watch --capture`) and nginx log files, replayed in time
// order through the same correlator `watch` uses.
#pragma once

#include <string>
#include <vector>

#include "why502/correlate.h"

namespace why502::cli {

struct ReplayInput {
  std::string capture;
  std::vector<std::string> error_logs;
  std::vector<std::string> access_logs;
  std::string access_format; // log_format string; combined when empty
};

struct ReplayResult {
  std::vector<Verdict> verdicts;
  CorrelatorStats stats;
  uint64_t bad_capture_lines = 0;
  uint64_t unparsed_error_lines = 0;
  uint64_t unparsed_access_lines = 0;
};

// Throws Error with one line for unreadable files or a capture that is not one.
ReplayResult replay(const ReplayInput &in);

} // namespace why502::cli
