// The live pipeline shared by `watch`, `record` and `demo`: discover nginx,
// attach the BPF programs to its processes, tail its logs, sample the host,
// and feed everything to the correlator.
#pragma once

#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "sinks/perfetto_export.h"
#include "why502/correlate.h"
#include "why502/tracer.h"

namespace why502::pipeline {

struct WatchOptions {
  std::optional<pid_t> nginx_pid;
  std::vector<std::string> error_logs;  // override discovery
  std::vector<std::string> access_logs; // override discovery
  std::string capture_path;             // also write the raw inputs (kernel records, host samples) here
  std::optional<gid_t> output_group;    // --group: the capture file is 0640 and of this group
  double sample_interval_s = 0.5;
  // Attach the syscall programs from the start instead of when nginx first reports a failure
  // only they can see (they slow every syscall on the host while attached).
  bool syscall_probes_always = false;
};

class Watcher {
public:
  // Finds nginx and attaches. Throws Error with one line (nginx not running, not root, ...).
  explicit Watcher(const WatchOptions &opts);
  ~Watcher();

  // Waits up to timeout_ms for input, feeds it on, returns the verdicts that settled.
  std::vector<Verdict> step(int timeout_ms);
  // Everything still pending.
  std::vector<Verdict> finish();
  // SIGHUP: the capture file is opened again at its path (logrotate renamed it). Throws Error.
  void reopen_capture();
  // Notes for the output stream ({"type":"storm",...}) made since the last call.
  std::vector<nlohmann::json> take_notes();

  // Called with every kernel record and host sample as it arrives (Perfetto export, metrics); each
  // call adds a subscriber. An access-line subscriber makes every access line parsed in full; the
  // failed-request one gets the status of each 5xx line only (those are always parsed).
  void on_kernel(std::function<void(const KernelEvent &)> cb);
  void on_sample(std::function<void(const HostSample &)> cb);
  void on_access_line(std::function<void(const nginx::AccessLogLine &, int64_t)> cb);
  void on_failed_request(std::function<void(int status)> cb);
  struct LogLineCounts {
    uint64_t error_parsed = 0, error_unparsed = 0, access_parsed = 0, access_unparsed = 0;
  };
  LogLineCounts log_line_counts() const;

  const CorrelatorStats &stats() const;
  // Log lines let go: over the pending cap, and still unread when the run ended (finish is bounded).
  struct LogLineLosses {
    uint64_t dropped = 0, unread_at_exit = 0;
    uint64_t unconfigured_upstream = 0; // failure lines naming an upstream the static config lacks
  };
  LogLineLosses log_line_losses() const;
  LossCounters losses() const;
  nlohmann::json start_json() const; // {"type":"start", ...}
  std::string describe() const;      // the same, for people
  std::vector<uint32_t> nginx_pids() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

// Track titles for the Perfetto sink, read from this host's /proc.
sinks::ProcessNamer live_process_names();

} // namespace why502::pipeline
