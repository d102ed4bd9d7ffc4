// Streaming Perfetto trace writer: one packet sequence, written to a file as
// packets are produced. See include/why502/perfetto.h for the contract.
#include "why502/perfetto.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <unistd.h>
#include <unordered_map>

#include "base/output_file.h"
#include "base/time.h"
#include "sinks/perfetto_fields.h"
#include "sinks/perfetto_proto.h"
#include "why502/error.h"

namespace why502::perfetto {

namespace f = fields;
using proto::Encoder;
using proto::Nested;

namespace {

// Flush the write buffer to the file past this size: bounds memory, and keeps
// a crash from losing more than this much of the trace.
constexpr size_t kFlushThreshold = 64 * 1024;

ClockReadings read_clocks() {
  // Bracket the REALTIME read with two BOOTTIME reads and take the midpoint,
  // so the pairing error is half the read latency.
  const uint64_t b0 = base::boot_clock_ns();
  const uint64_t r = base::wall_clock_ns();
  const uint64_t b1 = base::boot_clock_ns();
  return ClockReadings{b0 + (b1 - b0) / 2, r};
}

std::string errno_text(int err) { return std::strerror(err); }

} // namespace

struct TraceWriter::Impl {
  std::string path;
  WriterOptions options;
  ClockReadings clocks;
  WriterStats stats;
  int fd = -1;
  bool closed = false;
  bool capped = false;
  bool first_packet = true; // next packet written is the sequence's first
  bool clear_state = true;  // next packet carries SEQ_INCREMENTAL_STATE_CLEARED
  std::optional<std::string> failure;

  std::string out; // bytes not yet written to fd
  std::string pkt; // the packet being built (reused: no per-packet allocation)

  uint64_t next_uuid = 1;
  uint64_t next_flow = 1;
  // iids grow across resets: upstream forbids reusing an iid for another value
  // within one trace, even after incremental state is cleared.
  uint64_t next_iid = 1;
  std::unordered_map<std::string, uint64_t> event_names, categories, annotation_names;
  struct NewEntry {
    uint32_t table;
    uint64_t iid;
    const std::string *name;
  };
  std::vector<NewEntry> new_entries;

  bool have_event_ts = false;
  uint64_t last_event_ts = 0;

  [[noreturn]] void fail(const std::string &what, int err) {
    failure = "cannot " + what + " Perfetto trace '" + path + "': " + errno_text(err);
    throw Error(*failure);
  }
  void check_failed() const {
    if (failure)
      throw Error(*failure);
  }

  void write_out() {
    size_t off = 0;
    while (off < out.size()) {
      ssize_t n = ::write(fd, out.data() + off, out.size() - off);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        const int err = errno;
        out.clear();
        fail("write", err);
      }
      off += static_cast<size_t>(n);
    }
    out.clear();
  }

  // Common TracePacket header. Every packet is on our one sequence; the first
  // one and each one after an interning reset clear incremental state and
  // (re)declare the packet defaults, every other one depends on that state.
  Encoder begin_packet(std::optional<uint64_t> ts) {
    pkt.clear();
    Encoder e(pkt);
    if (ts)
      e.uint(f::packet::kTimestamp, *ts);
    e.uint(f::packet::kTrustedPacketSequenceId, options.sequence_id);
    if (clear_state) {
      e.uint(f::packet::kSequenceFlags, f::packet::kSeqIncrementalStateCleared);
      Nested d(e, f::packet::kTracePacketDefaults);
      e.uint(f::packet_defaults::kTimestampClockId, kClockBoottime);
    } else {
      e.uint(f::packet::kSequenceFlags, f::packet::kSeqNeedsIncrementalState);
    }
    if (first_packet) {
      e.uint(f::packet::kPreviousPacketDropped, 1);
      e.boolean(f::packet::kFirstPacketOnSequence, true);
    }
    return e;
  }

  // Frames pkt as Trace.packet and queues it, unless the size cap refuses it.
  // Once one packet is refused every later one is too: the file stays a
  // consistent prefix (no event whose interned names were dropped).
  void commit_packet() {
    const size_t framed = 1 + proto::varint_size(pkt.size()) + pkt.size();
    if (capped || (options.max_size_bytes != 0 && stats.bytes_written + framed > options.max_size_bytes)) {
      capped = true;
      ++stats.packets_dropped;
      return;
    }
    Encoder e(out);
    e.bytes(f::trace::kPacket, pkt);
    stats.bytes_written += framed;
    ++stats.packets_written;
    first_packet = false;
    clear_state = false;
    if (out.size() >= kFlushThreshold)
      write_out();
  }

  // Returns false (and counts a drop) when nothing can be written any more.
  bool writable() {
    check_failed();
    if (closed || capped) {
      ++stats.packets_dropped;
      return false;
    }
    return true;
  }

  void write_clock_snapshot() {
    Encoder e = begin_packet(clocks.boottime_ns);
    e.uint(f::packet::kTimestampClockId, kClockBoottime);
    Nested cs(e, f::packet::kClockSnapshot);
    {
      Nested c(e, f::clock_snapshot::kClocks);
      e.uint(f::clock_snapshot::kClockId, kClockBoottime);
      e.uint(f::clock_snapshot::kClockTimestamp, clocks.boottime_ns);
    }
    {
      Nested c(e, f::clock_snapshot::kClocks);
      e.uint(f::clock_snapshot::kClockId, kClockRealtime);
      e.uint(f::clock_snapshot::kClockTimestamp, clocks.realtime_ns);
    }
    e.uint(f::clock_snapshot::kPrimaryTraceClock, kClockBoottime);
  }

  uint64_t intern(std::unordered_map<std::string, uint64_t> &table, uint32_t field, std::string_view s) {
    auto it = table.find(std::string(s));
    if (it != table.end())
      return it->second;
    it = table.emplace(std::string(s), next_iid++).first;
    new_entries.push_back({field, it->second, &it->first});
    return it->second;
  }

  size_t interned_count() const { return event_names.size() + categories.size() + annotation_names.size(); }

  // Bounded interning: past the limit, forget everything and clear the
  // sequence's incremental state; names are re-emitted on next use.
  void maybe_reset_interning() {
    if (interned_count() < options.max_interned_entries)
      return;
    event_names.clear();
    categories.clear();
    annotation_names.clear();
    clear_state = true;
    ++stats.interning_resets;
  }

  void note_ts(uint64_t ts) {
    if (have_event_ts && ts < last_event_ts)
      ++stats.out_of_order_events;
    if (!have_event_ts || ts > last_event_ts)
      last_event_ts = ts;
    have_event_ts = true;
  }

  template <typename Body> uint64_t track_packet(uint64_t parent_uuid, std::string_view name, Body body) {
    const uint64_t uuid = next_uuid++;
    if (!writable())
      return uuid;
    Encoder e = begin_packet(std::nullopt);
    {
      Nested td(e, f::packet::kTrackDescriptor);
      e.uint(f::track_descriptor::kUuid, uuid);
      if (!name.empty())
        e.bytes(f::track_descriptor::kName, name);
      if (parent_uuid != 0)
        e.uint(f::track_descriptor::kParentUuid, parent_uuid);
      body(e);
    }
    commit_packet();
    return uuid;
  }

  struct EventArgs {
    uint64_t type = 0;
    std::string_view name;
    std::string_view category;
    const Annotations *annotations = nullptr;
    const FlowIds *flow_ids = nullptr;
    const FlowIds *terminating = nullptr;
    std::optional<std::variant<int64_t, double>> value;
  };

  void event(uint64_t track_uuid, uint64_t ts, const EventArgs &a) {
    if (!writable())
      return;
    note_ts(ts);
    maybe_reset_interning();
    new_entries.clear();
    const uint64_t name_iid = a.name.empty() ? 0 : intern(event_names, f::interned_data::kEventNames, a.name);
    const uint64_t cat_iid =
        a.category.empty() ? 0 : intern(categories, f::interned_data::kEventCategories, a.category);
    Encoder e = begin_packet(ts);
    {
      Nested te(e, f::packet::kTrackEvent);
      if (cat_iid != 0)
        e.uint(f::track_event::kCategoryIids, cat_iid);
      if (a.annotations != nullptr) {
        for (const Annotation &an : *a.annotations) {
          const uint64_t iid = intern(annotation_names, f::interned_data::kDebugAnnotationNames, an.name);
          Nested d(e, f::track_event::kDebugAnnotations);
          e.uint(f::debug_annotation::kNameIid, iid);
          namespace da = f::debug_annotation;
          std::visit(
              [&e](const auto &v) {
                using T = std::decay_t<decltype(v)>;
                if constexpr (std::is_same_v<T, std::string>)
                  e.bytes(da::kStringValue, v);
                else if constexpr (std::is_same_v<T, int64_t>)
                  e.int64(da::kIntValue, v);
                else if constexpr (std::is_same_v<T, uint64_t>)
                  e.uint(da::kUintValue, v);
                else if constexpr (std::is_same_v<T, double>)
                  e.dbl(da::kDoubleValue, v);
                else
                  e.boolean(da::kBoolValue, v);
              },
              an.value);
        }
      }
      e.uint(f::track_event::kType, a.type);
      if (name_iid != 0)
        e.uint(f::track_event::kNameIid, name_iid);
      e.uint(f::track_event::kTrackUuid, track_uuid);
      if (a.value) {
        if (const auto *i = std::get_if<int64_t>(&*a.value))
          e.int64(f::track_event::kCounterValue, *i);
        else
          e.dbl(f::track_event::kDoubleCounterValue, std::get<double>(*a.value));
      }
      if (a.flow_ids != nullptr)
        for (uint64_t id : *a.flow_ids)
          e.fixed64(f::track_event::kFlowIds, id);
      if (a.terminating != nullptr)
        for (uint64_t id : *a.terminating)
          e.fixed64(f::track_event::kTerminatingFlowIds, id);
    }
    if (!new_entries.empty()) {
      Nested id(e, f::packet::kInternedData);
      for (const NewEntry &n : new_entries) {
        Nested entry(e, n.table);
        e.uint(f::interned_data::kEntryIid, n.iid);
        e.bytes(f::interned_data::kEntryName, *n.name);
      }
    }
    commit_packet();
  }

  void do_close() {
    if (closed)
      return;
    closed = true;
    if (failure) {
      ::close(fd);
      throw Error(*failure);
    }
    write_out();
    if (::close(fd) != 0)
      fail("close", errno);
  }
};

TraceWriter::TraceWriter(const std::string &path, WriterOptions options) : impl_(std::make_unique<Impl>()) {
  Impl &m = *impl_;
  m.path = path;
  m.options = options;
  if (m.options.sequence_id == 0)
    throw Error("Perfetto trace: sequence id 0 is invalid");
  m.clocks = options.clocks ? *options.clocks : read_clocks();
  // No symlinks, 0600 (0640 with a group), O_CLOEXEC; checked before it is truncated.
  base::OutputFileOptions fo;
  fo.truncate = true; // one trace per file: appending would follow a finished trace
  if (options.group)
    fo.group = static_cast<gid_t>(*options.group);
  try {
    m.fd = base::open_output_file(path, fo).release();
  } catch (const why502::Error &e) {
    m.failure = std::string("Perfetto trace: ") + e.what();
    throw Error(*m.failure);
  }
  m.out.reserve(kFlushThreshold + 4096);
  m.write_clock_snapshot();
  m.commit_packet();
}

TraceWriter::~TraceWriter() {
  if (!impl_ || impl_->closed)
    return;
  const bool reported = impl_->failure.has_value();
  try {
    impl_->do_close();
  } catch (const Error &e) {
    // A destructor cannot throw; still never lose a write error silently.
    if (!reported)
      std::fprintf(stderr, "why502: %s\n", e.what());
  }
}

TraceWriter::TraceWriter(TraceWriter &&) noexcept = default;
TraceWriter &TraceWriter::operator=(TraceWriter &&) noexcept = default;

uint64_t TraceWriter::process_track(int pid, std::string_view name, const std::vector<std::string> &cmdline) {
  return impl_->track_packet(0, {}, [&](Encoder &e) {
    Nested p(e, f::track_descriptor::kProcess);
    e.int64(f::process_descriptor::kPid, pid);
    for (const std::string &arg : cmdline)
      e.bytes(f::process_descriptor::kCmdline, arg);
    if (!name.empty())
      e.bytes(f::process_descriptor::kProcessName, name);
  });
}

uint64_t TraceWriter::thread_track(int pid, int tid, std::string_view name) {
  return impl_->track_packet(0, {}, [&](Encoder &e) {
    Nested t(e, f::track_descriptor::kThread);
    e.int64(f::thread_descriptor::kPid, pid);
    e.int64(f::thread_descriptor::kTid, tid);
    if (!name.empty())
      e.bytes(f::thread_descriptor::kThreadName, name);
  });
}

uint64_t TraceWriter::named_track(std::string_view name, uint64_t parent_uuid) {
  return impl_->track_packet(parent_uuid, name, [](Encoder &) {});
}

uint64_t TraceWriter::counter_track(std::string_view name, std::string_view unit, uint64_t parent_uuid) {
  return impl_->track_packet(parent_uuid, name, [&](Encoder &e) {
    namespace cd = f::counter_descriptor;
    Nested c(e, f::track_descriptor::kCounter);
    if (unit == "ns")
      e.uint(cd::kUnit, cd::kUnitTimeNs);
    else if (unit == "count")
      e.uint(cd::kUnit, cd::kUnitCount);
    else if (unit == "bytes")
      e.uint(cd::kUnit, cd::kUnitSizeBytes);
    else if (!unit.empty())
      e.bytes(cd::kUnitName, unit);
  });
}

uint64_t TraceWriter::new_flow_id() { return impl_->next_flow++; }

void TraceWriter::slice_begin(uint64_t track, uint64_t ts, std::string_view name, const Annotations &annotations,
                              const FlowIds &flow_ids, std::string_view category) {
  Impl::EventArgs a;
  a.type = f::track_event::kTypeSliceBegin;
  a.name = name;
  a.category = category;
  a.annotations = &annotations;
  a.flow_ids = &flow_ids;
  impl_->event(track, ts, a);
}

void TraceWriter::slice_end(uint64_t track, uint64_t ts) {
  Impl::EventArgs a;
  a.type = f::track_event::kTypeSliceEnd;
  impl_->event(track, ts, a);
}

void TraceWriter::instant(uint64_t track, uint64_t ts, std::string_view name, const Annotations &annotations,
                          const FlowIds &flow_ids, const FlowIds &terminating_flow_ids, std::string_view category) {
  Impl::EventArgs a;
  a.type = f::track_event::kTypeInstant;
  a.name = name;
  a.category = category;
  a.annotations = &annotations;
  a.flow_ids = &flow_ids;
  a.terminating = &terminating_flow_ids;
  impl_->event(track, ts, a);
}

void TraceWriter::counter(uint64_t track, uint64_t ts, int64_t value) {
  Impl::EventArgs a;
  a.type = f::track_event::kTypeCounter;
  a.value = value;
  impl_->event(track, ts, a);
}

void TraceWriter::counter(uint64_t track, uint64_t ts, double value) {
  Impl::EventArgs a;
  a.type = f::track_event::kTypeCounter;
  a.value = value;
  impl_->event(track, ts, a);
}

void TraceWriter::flush() {
  impl_->check_failed();
  if (!impl_->closed)
    impl_->write_out();
}

void TraceWriter::close() { impl_->do_close(); }

const WriterStats &TraceWriter::stats() const { return impl_->stats; }
bool TraceWriter::failed() const { return impl_->failure.has_value(); }
const ClockReadings &TraceWriter::clocks() const { return impl_->clocks; }
const std::string &TraceWriter::path() const { return impl_->path; }

} // namespace why502::perfetto
