// Native Perfetto trace writer (`why502 record -o FILE.pftrace`).
//
// Streams TracePackets to a file as they are produced: memory does not grow
// with trace length (interning tables are bounded, the write buffer is fixed).
// The output opens in ui.perfetto.dev and trace_processor.
//
// Timestamps are CLOCK_BOOTTIME nanoseconds (what bpf_ktime_get_boot_ns()
// returns); the first packet is a ClockSnapshot of BOOTTIME and REALTIME so
// the UI can show wall-clock time.
//
// Ordering: the writer emits packets in call order. Callers should feed events
// in non-decreasing timestamp order; sources that arrive late (nginx log lines
// are read ~1 s after the kernel events they explain) go through ReorderBuffer.
// Out-of-order input is still written, and counted in stats().out_of_order_events.
//
// Errors: opening or writing the file throws perfetto::Error with one line
// naming the file and errno text (e.g. a full disk). Nothing fails silently.
#pragma once

#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "why502/error.h"

namespace why502::perfetto {

using why502::Error; // why502/error.h: one exception type

// Builtin clock ids (perfetto.protos.BuiltinClock).
inline constexpr uint32_t kClockRealtime = 1;
inline constexpr uint32_t kClockBoottime = 6;

// A debug annotation value. Pass unsigned values as uint64_t explicitly
// (`uint64_t{5}`): a bare `5u` is ambiguous between int64_t and uint64_t.
using AnnotationValue = std::variant<std::string, int64_t, uint64_t, double, bool>;

struct Annotation {
  std::string name;
  AnnotationValue value;
};
using Annotations = std::vector<Annotation>;
using FlowIds = std::vector<uint64_t>;

struct ClockReadings {
  uint64_t boottime_ns = 0;
  uint64_t realtime_ns = 0;
};

struct WriterOptions {
  // Stop writing once the file would exceed this many bytes (0 = no cap).
  // Packets past the cap are dropped (counted), never partially written.
  uint64_t max_size_bytes = 0;
  // Bound on interned strings (event names, categories, annotation names).
  // Past it, incremental state is cleared and names are re-interned.
  size_t max_interned_entries = 4096;
  // trusted_packet_sequence_id of the single sequence this writer emits.
  uint32_t sequence_id = 1;
  // Clock readings for the initial ClockSnapshot; default: read the clocks now.
  std::optional<ClockReadings> clocks;
  // The file is 0600; with a group, 0640 and of that group (`--group`).
  std::optional<unsigned> group;
};

struct WriterStats {
  uint64_t packets_written = 0;
  uint64_t packets_dropped = 0;  // refused by max_size_bytes
  uint64_t bytes_written = 0;    // logical file size, buffered bytes included
  uint64_t interning_resets = 0; // SEQ_INCREMENTAL_STATE_CLEARED after the first packet
  uint64_t out_of_order_events = 0;
};

class TraceWriter {
public:
  // Creates/truncates `path`. Throws Error if it cannot be opened.
  explicit TraceWriter(const std::string &path, WriterOptions options = {});
  // Flushes. Prefer close(): a destructor cannot throw, so a failure here is
  // reported as one line on stderr.
  ~TraceWriter();
  TraceWriter(TraceWriter &&) noexcept;
  TraceWriter &operator=(TraceWriter &&) noexcept;
  TraceWriter(const TraceWriter &) = delete;
  TraceWriter &operator=(const TraceWriter &) = delete;

  // Tracks. Each call emits a TrackDescriptor at once and returns its uuid
  // (unique within the trace, never 0). Callers cache uuids; calling twice
  // makes two tracks.
  uint64_t process_track(int pid, std::string_view name, const std::vector<std::string> &cmdline = {});
  uint64_t thread_track(int pid, int tid, std::string_view name);
  // A track for e.g. one upstream ("127.0.0.1:8080", "unix:/run/php.sock");
  // parent_uuid = a process track nests it under that process.
  uint64_t named_track(std::string_view name, uint64_t parent_uuid = 0);
  // unit: "ns", "count", "bytes" map to CounterDescriptor.Unit; anything else
  // is written as the free-form unit_name.
  uint64_t counter_track(std::string_view name, std::string_view unit = {}, uint64_t parent_uuid = 0);

  // A fresh flow id (unique within this writer, never 0).
  uint64_t new_flow_id();

  // Events. ts is CLOCK_BOOTTIME ns. A flow starts at the event listing it in
  // flow_ids and ends at the event listing it in terminating_flow_ids, e.g.
  // the kernel RST instant (flow_ids={f}) -> the 502 instant (terminating={f}).
  void slice_begin(uint64_t track, uint64_t ts, std::string_view name, const Annotations &annotations = {},
                   const FlowIds &flow_ids = {}, std::string_view category = {});
  void slice_end(uint64_t track, uint64_t ts);
  void instant(uint64_t track, uint64_t ts, std::string_view name, const Annotations &annotations = {},
               const FlowIds &flow_ids = {}, const FlowIds &terminating_flow_ids = {}, std::string_view category = {});
  void counter(uint64_t track, uint64_t ts, int64_t value);
  void counter(uint64_t track, uint64_t ts, double value);
  template <std::integral T>
  requires(!std::same_as<T, int64_t> && !std::same_as<T, bool>) void counter(uint64_t track, uint64_t ts, T value) {
    counter(track, ts, static_cast<int64_t>(value));
  }

  // Pushes buffered bytes to the file. Throws Error on a write failure.
  void flush();
  // flush() + close(2). Later calls are no-ops; later events are dropped.
  void close();

  const WriterStats &stats() const;
  // True once a write failed (the error was thrown then, and is rethrown by
  // every later call).
  bool failed() const;
  const ClockReadings &clocks() const;
  const std::string &path() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Bounded reorder window in front of a TraceWriter. Events are held until the
// newest timestamp seen is `window_ns` past them (or more than `max_pending`
// are held), then written in (timestamp, arrival) order. An event older than
// one already written is written at once and counted in late_events().
// Memory: at most max_pending events. Must not outlive its writer; call
// flush_all() before closing the writer.
class ReorderBuffer {
public:
  ReorderBuffer(TraceWriter &writer, uint64_t window_ns, size_t max_pending = 65536);
  ~ReorderBuffer(); // flush_all(); errors go to stderr (prefer calling flush_all()).
  ReorderBuffer(const ReorderBuffer &) = delete;
  ReorderBuffer &operator=(const ReorderBuffer &) = delete;

  void slice_begin(uint64_t track, uint64_t ts, std::string_view name, Annotations annotations = {},
                   FlowIds flow_ids = {}, std::string_view category = {});
  void slice_end(uint64_t track, uint64_t ts);
  void instant(uint64_t track, uint64_t ts, std::string_view name, Annotations annotations = {}, FlowIds flow_ids = {},
               FlowIds terminating_flow_ids = {}, std::string_view category = {});
  void counter(uint64_t track, uint64_t ts, int64_t value);
  void counter(uint64_t track, uint64_t ts, double value);

  // Writes every held event in order (e.g. at shutdown).
  void flush_all();
  size_t pending() const;
  uint64_t late_events() const;

private:
  struct Event;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes a small self-contained sample trace (nginx master + worker, an
// upstream track, a connection slice, a kernel RST instant, a 502 instant with
// a flow arrow back to the RST, an accept-queue counter). Used by tests and
// demos; returns the writer's stats.
WriterStats write_sample_trace(const std::string &path, WriterOptions options = {});

} // namespace why502::perfetto
