// Perfetto export (`why502 record -o FILE.pftrace`, `watch --perfetto FILE`):
// turns what the live pipeline sees -- kernel records, host samples, nginx
// access lines and verdicts -- into a native Perfetto trace through the
// streaming TraceWriter. Formats only; it never decides.
//
// Tracks
//   nginx worker  a process track (pid, "nginx: worker", cmdline from /proc)
//                 with a thread track per thread that reported something, and
//                 "upstream connections" lanes under it: one slice per failed
//                 upstream connection attempt, connect -> close (concurrent
//                 attempts of one worker overlap, so they take separate lanes:
//                 slices on one track must nest).
//   upstream      a named track per upstream address / unix path: resets and
//                 drops seen there, and a mark per failed attempt.
//   upstream process  a process track per listener owner (host samples,
//                 verdicts) and per OOM victim / fatal-signal target: deaths.
//   counters      accept-queue depth of each upstream listener; failures per
//                 second by verdict cause.
//
// Flow arrows (kernel fact -> 502): a kernel instant is written long before
// the verdict that rests on it is known (the correlator waits seconds for log
// lines). Every kernel instant therefore gets a small pool of fresh flow ids
// up front (more for deaths, which often explain several requests), and a
// bounded FIFO map remembers (event, boot_ns, cpu) -> pool. A verdict takes one
// id from the pool of each evidence item it cites and lists it in
// terminating_flow_ids; unused ids are harmless (trace_processor ignores a
// flow that never ends). A verdict's own instant gets a pool too, so a later
// no_live_upstreams verdict draws arrows from the verdicts it links to.
//
// Time: every event is on CLOCK_BOOTTIME (the writer's ClockSnapshot maps it to
// REALTIME). Log lines and verdicts carry wall time; they are converted with
// the REALTIME - BOOTTIME offset of the kernel records (or of the writer's
// clock snapshot before the first record). Verdicts and failed-connection
// slices arrive seconds after the time they describe, so all events go
// through a ReorderBuffer (reorder_window_ns). An event older than the window
// is written at the window's edge instead (its real time in an annotation,
// counted in stats().clamped), so timestamps never go backwards.
//
// Memory: every map is bounded (oldest entries forgotten first); the reorder
// buffer holds at most max_pending events.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "why502/correlate.h"
#include "why502/host.h"
#include "why502/kernel_event.h"
#include "why502/nginx.h"
#include "why502/perfetto.h"

namespace why502::sinks {

struct ProcessNamer {
  std::function<std::vector<std::string>(uint32_t pid)> cmdline; // argv, empty when unknown
  std::function<std::string(uint32_t pid)> comm;                 // "" when unknown
};

struct PerfettoExportOptions {
  uint64_t max_size_bytes = 0;                      // cap on the file (0 = none)
  uint64_t reorder_window_ns = 12'000'000'000;      // > the correlator's worst verdict delay
  size_t max_pending = 16384;                       // reorder buffer bound
  std::optional<perfetto::ClockReadings> clocks;    // default: read the clocks now (tests fix them)
  // Names of live processes for track titles. Sinks read no /proc: the pipeline passes
  // pipeline::live_process_names(); unset, tracks are named from the records alone.
  ProcessNamer process_names;
  size_t max_flow_sources = 16384;                  // kernel events / verdicts remembered for arrows
  size_t max_tracks = 1024;                         // per kind: workers, processes, upstreams, listeners
  std::optional<unsigned> group;                    // file 0640 and of this gid (else 0600)
};

struct PerfettoExportStats {
  uint64_t kernel_events = 0;
  uint64_t samples = 0;
  uint64_t access_lines = 0;       // 502/504 lines written
  uint64_t verdicts = 0;
  uint64_t connection_slices = 0;
  uint64_t flows_resolved = 0;     // verdict arrows drawn from a kernel instant (or an earlier verdict)
  uint64_t flows_unresolved = 0;   // verdicts whose evidence named no instant still remembered
  uint64_t clamped = 0;            // events older than the reorder window, written at its edge
  uint64_t late = 0;               // written out of order anyway (reorder buffer overflow)
  perfetto::WriterStats writer;
};

class PerfettoExporter {
public:
  // Creates/truncates `path`. Throws perfetto::Error with one line if it cannot.
  explicit PerfettoExporter(const std::string &path, PerfettoExportOptions opts = {});
  ~PerfettoExporter(); // close(); errors go to stderr (prefer calling close())
  PerfettoExporter(const PerfettoExporter &) = delete;
  PerfettoExporter &operator=(const PerfettoExporter &) = delete;

  void kernel(const KernelEvent &ev);
  void sample(const HostSample &s);
  // Only 502/504 lines are written; wall_ns as the watcher computed it.
  void access_line(const nginx::AccessLogLine &line, int64_t wall_ns);
  void verdict(const Verdict &v);
  // Known up front (from the nginx config / discovery): an upstream address or
  // "unix:/path" gets its track, and its listener's accept-queue counter, from
  // the first sample on; an nginx process gets its process track.
  void add_upstream(const std::string &address);
  void add_nginx_process(uint32_t pid);

  // Writes everything held back and closes the file. Throws perfetto::Error on
  // a write failure. Later calls are no-ops.
  void close();
  // True once --max-size was reached (later packets are dropped).
  bool full() const;

  PerfettoExportStats stats() const;
  const std::string &path() const;

  // Feeds everything a cli::Watcher sees (kernel records, samples, access
  // lines) to this exporter; verdicts are passed by the caller, from step().
  template <class W> void connect(W &watcher) {
    watcher.on_kernel([this](const KernelEvent &ev) { kernel(ev); });
    watcher.on_sample([this](const HostSample &s) { sample(s); });
    watcher.on_access_line([this](const nginx::AccessLogLine &l, int64_t wall) { access_line(l, wall); });
  }

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace why502::sinks
