// Offline correlation: a capture (kernel records + host samples, as written by
// `events --json` / `watch --capture`) and nginx log files, replayed in time
// order through the same correlator `watch` uses.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "why502/correlate.h"
#include "why502/nginx.h"

namespace why502::pipeline {

struct ReplayInput {
  std::string capture;
  std::vector<std::string> error_logs;
  std::vector<std::string> access_logs;
  std::string access_format; // log_format string; combined when empty
  std::optional<int> log_utc_offset_s; // the zone of error.log times, when the operator knows it
};

struct ReplayResult {
  std::vector<Verdict> verdicts;
  CorrelatorStats stats;
  uint64_t bad_capture_lines = 0; // not JSON, or not a valid record ({"type":1}, wrong types)
  uint64_t long_lines = 0;        // over kMaxReplayLine, in any input: skipped
  uint64_t unparsed_error_lines = 0;
  uint64_t unparsed_access_lines = 0;
  nginx::LogZone::Source log_zone = nginx::LogZone::Source::this_host; // how error.log times were read
  std::string log_zone_text;                                           // "UTC+09:00 (from the capture)"
};

// Lines longer than this are skipped and counted (long_lines), never held in memory.
constexpr size_t kMaxReplayLine = 1024 * 1024;

// Throws Error with one line for unreadable files (not regular, I/O error), a capture that is not
// one, or inputs too large to hold (out of memory, more than a few million records).
ReplayResult replay(const ReplayInput &in);

} // namespace why502::pipeline
