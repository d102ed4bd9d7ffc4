// Bounded reorder window in front of the Perfetto writer. Kernel events arrive
// within milliseconds; the nginx log lines that explain them are read from
// error.log up to ~1 s later, so the two streams interleave out of order.
#include <algorithm>
#include <cstdio>

#include "why502/perfetto.h"

namespace why502::perfetto {

struct ReorderBuffer::Event {
  enum class Kind { kSliceBegin, kSliceEnd, kInstant, kCounterInt, kCounterDouble };
  Kind kind;
  uint64_t track;
  uint64_t ts;
  uint64_t seq; // arrival order: ties keep their order (begin before end at equal ts)
  std::string name;
  std::string category;
  Annotations annotations;
  FlowIds flow_ids;
  FlowIds terminating;
  int64_t int_value = 0;
  double double_value = 0;
};

struct ReorderBuffer::Impl {
  TraceWriter &writer;
  uint64_t window_ns;
  size_t max_pending;
  std::vector<Event> heap; // min-heap on (ts, seq)
  uint64_t next_seq = 0;
  uint64_t newest_ts = 0;
  bool emitted_any = false;
  uint64_t last_emitted_ts = 0;
  uint64_t late = 0;

  static bool later(const Event &a, const Event &b) { return a.ts != b.ts ? a.ts > b.ts : a.seq > b.seq; }

  void emit(const Event &ev) {
    switch (ev.kind) {
    case Event::Kind::kSliceBegin:
      writer.slice_begin(ev.track, ev.ts, ev.name, ev.annotations, ev.flow_ids, ev.category);
      break;
    case Event::Kind::kSliceEnd: writer.slice_end(ev.track, ev.ts); break;
    case Event::Kind::kInstant:
      writer.instant(ev.track, ev.ts, ev.name, ev.annotations, ev.flow_ids, ev.terminating, ev.category);
      break;
    case Event::Kind::kCounterInt: writer.counter(ev.track, ev.ts, ev.int_value); break;
    case Event::Kind::kCounterDouble: writer.counter(ev.track, ev.ts, ev.double_value); break;
    }
    emitted_any = true;
    last_emitted_ts = std::max(last_emitted_ts, ev.ts);
  }

  void pop_one() {
    std::pop_heap(heap.begin(), heap.end(), later);
    Event ev = std::move(heap.back());
    heap.pop_back();
    emit(ev);
  }

  void push(Event ev) {
    ev.seq = next_seq++;
    if (emitted_any && ev.ts < last_emitted_ts) {
      // Older than what is already on disk: nothing to sort it against any more.
      ++late;
      emit(ev);
      return;
    }
    newest_ts = std::max(newest_ts, ev.ts);
    heap.push_back(std::move(ev));
    std::push_heap(heap.begin(), heap.end(), later);
    while (!heap.empty() &&
           (heap.size() > max_pending || (newest_ts >= window_ns && heap.front().ts <= newest_ts - window_ns)))
      pop_one();
  }
};

ReorderBuffer::ReorderBuffer(TraceWriter &writer, uint64_t window_ns, size_t max_pending)
    : impl_(new Impl{writer, window_ns, std::max<size_t>(max_pending, 1), {}}) {}

ReorderBuffer::~ReorderBuffer() {
  const bool reported = impl_->writer.failed();
  try {
    flush_all();
  } catch (const Error &e) {
    // A destructor cannot throw; report a new failure once, not a known one again.
    if (!reported)
      std::fprintf(stderr, "why502: %s\n", e.what());
  }
}

void ReorderBuffer::slice_begin(uint64_t track, uint64_t ts, std::string_view name, Annotations annotations,
                                FlowIds flow_ids, std::string_view category) {
  impl_->push(Event{Event::Kind::kSliceBegin,
                    track,
                    ts,
                    0,
                    std::string(name),
                    std::string(category),
                    std::move(annotations),
                    std::move(flow_ids),
                    {}});
}

void ReorderBuffer::slice_end(uint64_t track, uint64_t ts) {
  impl_->push(Event{Event::Kind::kSliceEnd, track, ts, 0, {}, {}, {}, {}, {}});
}

void ReorderBuffer::instant(uint64_t track, uint64_t ts, std::string_view name, Annotations annotations,
                            FlowIds flow_ids, FlowIds terminating_flow_ids, std::string_view category) {
  impl_->push(Event{Event::Kind::kInstant, track, ts, 0, std::string(name), std::string(category),
                    std::move(annotations), std::move(flow_ids), std::move(terminating_flow_ids)});
}

void ReorderBuffer::counter(uint64_t track, uint64_t ts, int64_t value) {
  Event ev{Event::Kind::kCounterInt, track, ts, 0, {}, {}, {}, {}, {}};
  ev.int_value = value;
  impl_->push(std::move(ev));
}

void ReorderBuffer::counter(uint64_t track, uint64_t ts, double value) {
  Event ev{Event::Kind::kCounterDouble, track, ts, 0, {}, {}, {}, {}, {}};
  ev.double_value = value;
  impl_->push(std::move(ev));
}

void ReorderBuffer::flush_all() {
  while (!impl_->heap.empty())
    impl_->pop_one();
}

size_t ReorderBuffer::pending() const { return impl_->heap.size(); }
uint64_t ReorderBuffer::late_events() const { return impl_->late; }

} // namespace why502::perfetto
