// Perfetto export: kernel records, host samples, access lines and verdicts as
// tracks, slices, instants, counters and flow arrows. See perfetto_export.h.
#include "sinks/perfetto_export.h"

#include "base/text.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

namespace why502::sinks {

using perfetto::Annotations;
using perfetto::FlowIds;

namespace {

constexpr uint64_t kSecond = 1'000'000'000;

// A map that forgets its oldest entry past `cap` (memory must not grow with
// trace length). Entries are only ever added, so insertion order is FIFO order.
template <class K, class V> class BoundedMap {
public:
  explicit BoundedMap(size_t cap) : cap_(std::max<size_t>(cap, 1)) {}
  V *find(const K &k) {
    auto it = m_.find(k);
    return it == m_.end() ? nullptr : &it->second;
  }
  V &insert(const K &k, V v) { // k must be absent
    while (m_.size() >= cap_) {
      m_.erase(order_.front());
      order_.pop_front();
    }
    order_.push_back(k);
    return m_.emplace(k, std::move(v)).first->second;
  }
  template <class F> void for_each(F &&f) {
    for (auto &[k, v] : m_)
      f(k, v);
  }
  size_t size() const { return m_.size(); }

private:
  size_t cap_;
  std::map<K, V> m_;
  std::deque<K> order_;
};

perfetto::Annotation str(std::string name, std::string value) { return {std::move(name), std::move(value)}; }
perfetto::Annotation num(std::string name, int64_t value) { return {std::move(name), value}; }

// A kernel record's details, from its field list (the same list its JSON comes from). Step times are
// left out: they are the slice's shape.
struct AnnotationWriter {
  Annotations &a;
  template <class T> void operator()(const char *key, const T &v, unsigned flags = kFieldRequired) {
    if (flags & kFieldTiming)
      return;
    if constexpr (std::is_same_v<T, Endpoint>)
      a.push_back(str(key, v.str()));
    else if constexpr (std::is_enum_v<T>)
      a.push_back(str(key, std::string(enum_name(v))));
    else if constexpr (std::is_same_v<T, std::string>)
      a.push_back(str(key, v));
    else if constexpr (std::is_same_v<T, bool>)
      a.push_back({key, v});
    else if constexpr (std::is_same_v<T, uint64_t>)
      a.push_back({key, uint64_t{v}});
    else
      a.push_back(num(key, int64_t(v)));
  }
  void named(const char *key, const int &v, const char *name_key, std::string (*namer)(int),
             unsigned = kFieldRequired) {
    a.push_back(num(key, v));
    if (v)
      a.push_back(str(name_key, namer(v)));
  }
};

template <class Record> Annotations annotations_of(const Record &r) {
  Annotations a;
  fields(r, AnnotationWriter{a});
  return a;
}

std::string flow_key(std::string_view event, uint64_t boot_ns, uint64_t cpu) {
  return std::string(event) + "@" + std::to_string(boot_ns) + "/" + std::to_string(cpu);
}

std::string verdict_key(uint64_t id) { return "verdict#" + std::to_string(id); }

// The kernel fact a failed connection ends with, named like the tracepoint that saw it.
std::string_view fact_name(ConnFailure f) {
  switch (f) {
  case ConnFailure::RstInSynSent:
  case ConnFailure::RstEstablished: return "tcp_receive_reset";
  case ConnFailure::FinBeforeData: return "fin_before_data";
  case ConnFailure::SynTimeout: return "syn_timeout";
  case ConnFailure::IcmpError: return "icmp_error";
  case ConnFailure::SynRetransmit: return "syn_retransmit";
  }
  return "conn_fail";
}

// How many verdicts may draw an arrow from one kernel instant. A death or a
// listen-queue drop often explains several requests; a failed connection one.
// Facts about processes and ports nobody knows as nginx or an upstream get one.
constexpr size_t kDeathPool = 8, kUpstreamFactPool = 4, kConnPool = 2, kStrangerPool = 1;

} // namespace

struct PerfettoExporter::Impl {
  PerfettoExportOptions opts;
  perfetto::TraceWriter w;
  std::unique_ptr<perfetto::ReorderBuffer> rb; // declared after w: destroyed first
  PerfettoExportStats st;
  int64_t boot_to_wall = 0; // REALTIME - BOOTTIME
  uint64_t newest = 0;      // newest timestamp handed to the reorder buffer
  bool closed = false;

  struct Lane {
    uint64_t uuid = 0;
    uint64_t busy_until = 0;
  };
  struct Worker {
    uint64_t process = 0;
    bool master = false;
    std::vector<Lane> lanes;
  };
  struct Queue {
    uint64_t uuid = 0;
    int64_t last = -1;
  };
  struct Rate {
    uint64_t uuid = 0;
    std::map<uint64_t, uint64_t> open; // second -> failures, not yet written
    uint64_t next_open = 0;            // seconds before this are written
    std::optional<uint64_t> zero_due;  // second at which the rate falls back to 0
  };
  struct Pool {
    FlowIds ids;
    size_t used = 0;
  };
  static constexpr size_t kMaxLanes = 16;
  static constexpr size_t kMaxCauses = 64;

  BoundedMap<uint32_t, Worker> workers;
  BoundedMap<std::pair<uint32_t, uint32_t>, uint64_t> threads;
  BoundedMap<uint32_t, uint64_t> processes; // upstream owners, OOM victims, signal targets
  BoundedMap<std::string, uint64_t> upstreams;
  BoundedMap<std::string, Queue> queues;
  // Listeners found serving no known upstream, with the upstream generation
  // they were checked against: samples re-check only when upstreams change.
  BoundedMap<std::string, uint64_t> not_upstream;
  uint64_t upstream_gen = 0;
  std::map<std::string, Rate> rates;
  BoundedMap<std::string, Pool> flows;
  uint64_t host_track = 0, nginx_track = 0;

  Impl(const std::string &path, PerfettoExportOptions o)
      : opts(std::move(o)), w(path, writer_options(opts)), workers(opts.max_tracks), threads(opts.max_tracks),
        processes(opts.max_tracks), upstreams(opts.max_tracks), queues(opts.max_tracks),
        not_upstream(opts.max_tracks), flows(opts.max_flow_sources) {
    rb = std::make_unique<perfetto::ReorderBuffer>(w, opts.reorder_window_ns, opts.max_pending);
    boot_to_wall = int64_t(w.clocks().realtime_ns) - int64_t(w.clocks().boottime_ns);
  }

  static perfetto::WriterOptions writer_options(const PerfettoExportOptions &o) {
    perfetto::WriterOptions wo;
    wo.max_size_bytes = o.max_size_bytes;
    wo.clocks = o.clocks;
    wo.group = o.group;
    return wo;
  }

  // ---- time ----

  uint64_t to_boot(int64_t wall_ns) const {
    const int64_t b = wall_ns - boot_to_wall;
    return b > 0 ? uint64_t(b) : 0;
  }
  uint64_t floor_ts() const { return newest > opts.reorder_window_ns ? newest - opts.reorder_window_ns : 0; }
  // Where an event at `ts` is written: never before what the reorder buffer may
  // already have written (the window's edge). The real time goes into `a`.
  uint64_t place(uint64_t ts, Annotations *a = nullptr) {
    const uint64_t f = floor_ts();
    if (ts < f) {
      ++st.clamped;
      if (a)
        a->push_back({"real_boot_ns", uint64_t{ts}});
      ts = f;
    }
    newest = std::max(newest, ts);
    return ts;
  }

  // ---- tracks ----

  std::vector<std::string> read_cmdline(uint32_t pid) const {
    return opts.process_names.cmdline ? opts.process_names.cmdline(pid) : std::vector<std::string>{};
  }

  std::string read_comm(uint32_t pid) const {
    return opts.process_names.comm ? opts.process_names.comm(pid) : std::string();
  }

  Worker &worker(uint32_t pid) {
    if (Worker *wk = workers.find(pid))
      return *wk;
    auto cmd = read_cmdline(pid);
    std::string name = "nginx: worker";
    Worker wk;
    if (!cmd.empty() && cmd[0].starts_with("nginx: master")) {
      name = "nginx: master";
      wk.master = true;
    }
    // A process seen first as something else (e.g. an exit) keeps that track.
    if (uint64_t *p = processes.find(pid))
      wk.process = *p;
    else
      wk.process = w.process_track(int(pid), name, cmd);
    return workers.insert(pid, std::move(wk));
  }

  uint64_t thread(uint32_t pid, uint32_t tid) {
    if (tid == 0)
      tid = pid;
    worker(pid);
    if (uint64_t *t = threads.find({pid, tid}))
      return *t;
    return threads.insert({pid, tid}, w.thread_track(int(pid), int(tid), "nginx: worker"));
  }

  uint64_t process(uint32_t pid, const std::string &comm) {
    if (Worker *wk = workers.find(pid))
      return wk->process;
    if (uint64_t *p = processes.find(pid))
      return *p;
    std::string name = comm.empty() ? read_comm(pid) : comm;
    if (name.empty())
      name = "pid " + std::to_string(pid);
    return processes.insert(pid, w.process_track(int(pid), name, read_cmdline(pid)));
  }

  uint64_t upstream(const std::string &addr) {
    if (uint64_t *u = upstreams.find(addr))
      return *u;
    ++upstream_gen;
    return upstreams.insert(addr, w.named_track("upstream " + addr));
  }

  uint64_t host() {
    if (!host_track)
      host_track = w.named_track("kernel (host-wide)");
    return host_track;
  }

  std::optional<uint32_t> sole_worker() {
    std::optional<uint32_t> found;
    size_t n = 0;
    workers.for_each([&](uint32_t pid, const Worker &wk) {
      if (!wk.master) {
        found = pid;
        ++n;
      }
    });
    return n == 1 ? found : std::nullopt;
  }

  uint64_t nginx() {
    if (!nginx_track)
      nginx_track = w.named_track("nginx (worker unknown)");
    return nginx_track;
  }

  // A lane under the worker free from `begin` on; 0 when all are busy.
  uint64_t lane(uint32_t pid, uint64_t begin, uint64_t end) {
    Worker &wk = worker(pid);
    for (Lane &l : wk.lanes)
      if (l.busy_until <= begin) {
        l.busy_until = end;
        return l.uuid;
      }
    if (wk.lanes.size() >= kMaxLanes)
      return 0;
    std::string name = "upstream connections";
    if (!wk.lanes.empty())
      name += " #" + std::to_string(wk.lanes.size() + 1);
    wk.lanes.push_back({w.named_track(name, wk.process), end});
    return wk.lanes.back().uuid;
  }

  // ---- flows ----

  FlowIds new_pool(const std::string &key, size_t n) {
    if (n == 0 || flows.find(key))
      return {};
    Pool p;
    for (size_t i = 0; i < n; ++i)
      p.ids.push_back(w.new_flow_id());
    return flows.insert(key, std::move(p)).ids;
  }

  std::optional<uint64_t> take(const std::string &key) {
    Pool *p = flows.find(key);
    if (!p || p->used >= p->ids.size())
      return std::nullopt;
    return p->ids[p->used++];
  }

  // ---- kernel records ----

  void instant(uint64_t track, uint64_t ts, std::string_view name, Annotations a, FlowIds flows_out,
               std::string_view category = "kernel", FlowIds terminating = {}) {
    const uint64_t at = place(ts, &a);
    rb->instant(track, at, name, std::move(a), std::move(flows_out), std::move(terminating), category);
  }

  void conn_fail(const KernelEvent &ev, const ConnFail &c, FlowIds flow) {
    const std::string remote = c.remote.str();
    upstream(remote);
    uint64_t begin = c.ts_syn_sent ? c.ts_syn_sent : ev.boot_ns;
    uint64_t fail = c.ts_reset ? c.ts_reset : c.ts_fin_received ? c.ts_fin_received : c.ts_error ? c.ts_error : 0;
    uint64_t end = c.ts_close ? c.ts_close : std::max(fail, ev.boot_ns);
    end = std::max(end, begin);
    if (!fail)
      fail = end;
    fail = std::clamp(fail, begin, end);

    Annotations a = annotations_of(c);
    if (c.ts_established)
      a.push_back(num("connect_ms_x1000", int64_t((c.ts_established - begin) / 1000)));

    const std::string name = remote + " " + std::string(enum_name(c.failure));
    const uint64_t track = lane(c.pid, std::max(begin, floor_ts()), std::max(end, floor_ts()));
    if (track) {
      ++st.connection_slices;
      Annotations sa = a;
      const uint64_t b = place(begin, &sa);
      rb->slice_begin(track, b, name, std::move(sa), {}, "kernel");
      if (c.ts_established && c.ts_established >= begin && c.ts_established <= end)
        instant(track, std::max(c.ts_established, b), "tcp_established", {str("remote", remote)}, {});
      instant(track, std::max(fail, b), fact_name(c.failure), a, std::move(flow));
      rb->slice_end(track, place(std::max(end, b)));
    } else {
      // Every lane busy (a connection storm): the fact without its slice.
      instant(thread(c.pid, c.tid), fail, fact_name(c.failure), a, std::move(flow));
    }
    // The upstream's own view: a mark per failed attempt.
    instant(upstream(remote), fail, name, {num("nginx_pid", c.pid), str("local", c.local.str())}, {});
  }

  // The track of a host-wide packet fact: the upstream it was going to or
  // coming from when that upstream is known (config, failures), else the
  // host-wide track (other traffic on the host must not mint upstream tracks).
  uint64_t upstream_of(const Endpoint &preferred, const Endpoint &other) {
    const std::string p = preferred.str(), o = other.str();
    if (upstreams.find(p))
      return upstream(p);
    if (upstreams.find(o))
      return upstream(o);
    return 0;
  }

  void kernel(const KernelEvent &ev) {
    ++st.kernel_events;
    if (ev.wall_ns)
      boot_to_wall = ev.wall_ns - int64_t(ev.boot_ns);
    const std::string key = flow_key(event_name(ev.record), ev.boot_ns, ev.cpu);
    auto pool = [&](size_t n) { return new_pool(key, n); };
    std::visit(
        [&](const auto &r) {
          using T = std::decay_t<decltype(r)>;
          if constexpr (std::is_same_v<T, ConnFail>) {
            conn_fail(ev, r, pool(kConnPool));
          } else if constexpr (std::is_same_v<T, SyscallErr>) {
            if (!r.target.empty())
              upstream(r.target);
            instant(thread(r.pid, r.tid), ev.boot_ns, std::string(enum_name(r.syscall)) + "() " + errno_name(r.err),
                    annotations_of(r), pool(kConnPool));
          } else if constexpr (std::is_same_v<T, PacketDrop>) {
            const uint64_t track = upstream_of(r.dst, r.src);
            instant(track ? track : host(), ev.boot_ns, "drop " + std::string(enum_name(r.reason)), annotations_of(r),
                    pool(track ? kUpstreamFactPool : kStrangerPool));
          } else if constexpr (std::is_same_v<T, ResetSent>) {
            const uint64_t track = upstream_of(r.src, r.dst);
            instant(track ? track : host(), ev.boot_ns, "tcp_send_reset", annotations_of(r),
                    pool(track ? kUpstreamFactPool : kStrangerPool));
          } else if constexpr (std::is_same_v<T, OomVictim>) {
            instant(process(r.pid, r.comm), ev.boot_ns, "oom_kill", annotations_of(r), pool(kDeathPool));
          } else if constexpr (std::is_same_v<T, FatalSignal>) {
            instant(process(r.target_pid, r.target_comm), ev.boot_ns, "signal " + signal_name(r.sig), annotations_of(r),
                    pool(kDeathPool));
          } else if constexpr (std::is_same_v<T, ProcessExit>) {
            Annotations a = annotations_of(r);
            if (r.signal)
              a.push_back(str("signal_name", signal_name(r.signal)));
            // Known processes (nginx, upstream owners, victims) on their own track; others host-wide.
            uint64_t track = 0;
            if (Worker *wk = workers.find(r.pid))
              track = wk->process;
            else if (uint64_t *p = processes.find(r.pid))
              track = *p;
            else if (r.watched)
              track = worker(r.pid).process;
            else
              track = host();
            instant(track, ev.boot_ns, "exit " + r.comm, std::move(a), pool(track == host_track ? kStrangerPool : kDeathPool));
          } else if constexpr (std::is_same_v<T, WatchStart>) {
            instant(worker(r.pid).process, ev.boot_ns, "watch (" + r.via + ")", annotations_of(r), {}, "why502");
          } else if constexpr (std::is_same_v<T, ListenChange>) {
            // Only listeners of upstreams this trace knows: every listen() on the host would be noise.
            if (upstreams.find(r.local.str()))
              instant(upstream(r.local.str()), ev.boot_ns, r.listening ? "listen" : "stopped listening",
                      annotations_of(r), pool(kUpstreamFactPool));
          } else if constexpr (std::is_same_v<T, UnixListenerExit>) {
            // The owner of a unix upstream died holding its socket: on the owner's track, like its exit.
            instant(process(r.pid, r.comm), ev.boot_ns, "exit holding " + r.address, annotations_of(r),
                    pool(kDeathPool));
          } else {
            // A record with no place of its own yet: an instant on the host-wide track, never nothing.
            instant(host(), ev.boot_ns, std::string(T::kName), annotations_of(r), pool(kStrangerPool));
          }
        },
        ev.record);
    close_rates(false);
  }

  // ---- host samples ----

  bool serves_known_upstream(const std::string &listener) {
    uint64_t *checked = not_upstream.find(listener);
    if (checked && *checked == upstream_gen)
      return false;
    bool yes = false;
    upstreams.for_each([&](const std::string &u, uint64_t) { yes = yes || listener_serves(listener, u); });
    if (!yes) {
      if (checked)
        *checked = upstream_gen;
      else
        not_upstream.insert(listener, upstream_gen);
    }
    return yes;
  }

  void sample(const HostSample &s) {
    ++st.samples;
    const uint64_t ts = to_boot(s.wall_ns);
    for (const Listener &l : s.listeners) {
      Queue *q = queues.find(l.address);
      if (!q) {
        if (!serves_known_upstream(l.address))
          continue;
        uint64_t parent = 0;
        if (!l.owners.empty()) {
          auto owner = std::min_element(l.owners.begin(), l.owners.end(),
                                        [](const ProcessRef &a, const ProcessRef &b) { return a.pid < b.pid; });
          parent = process(owner->pid, owner->comm);
          for (const ProcessRef &o : l.owners)
            process(o.pid, o.comm);
        }
        q = &queues.insert(l.address, Queue{w.counter_track("accept queue " + l.address, "count", parent), -1});
      }
      if (q->last != int64_t(l.depth)) {
        q->last = l.depth;
        rb->counter(q->uuid, place(ts), int64_t(l.depth));
      }
    }
    close_rates(false);
  }

  // ---- nginx ----

  void access_line(const nginx::AccessLogLine &l, int64_t wall_ns) {
    if (!l.is_gateway_error())
      return;
    ++st.access_lines;
    Annotations a{num("status", *l.status), str("request", l.request), str("client", l.remote_addr)};
    if (!l.host.empty())
      a.push_back(str("host", l.host));
    std::string addrs;
    for (const auto &u : l.upstream)
      addrs += (addrs.empty() ? "" : ", ") + u.addr;
    if (!addrs.empty())
      a.push_back(str("upstream_addr", addrs));
    if (l.request_time)
      a.push_back({"request_time", *l.request_time});
    // Without $pid in the log format the worker is known only when there is one.
    uint64_t track = 0;
    if (l.pid)
      track = thread(uint32_t(*l.pid), uint32_t(*l.pid));
    else if (auto only = sole_worker())
      track = thread(*only, *only);
    else
      track = nginx();
    instant(track, to_boot(wall_ns), "access " + std::to_string(*l.status) + " " + l.request, std::move(a), {},
            "nginx");
    close_rates(false);
  }

  void verdict(const Verdict &v) {
    ++st.verdicts;
    FlowIds term;
    std::set<std::string> cited;
    // Arrows end at the kernel records the verdict cites (and those of its earlier attempts).
    auto cite = [&](const KernelEvent &e) {
      const std::string key = flow_key(event_name(e.record), e.boot_ns, e.cpu);
      if (!cited.insert(key).second)
        return;
      if (auto id = take(key))
        term.push_back(*id);
    };
    for (const auto &e : v.evidence) {
      if (const auto *k = std::get_if<KernelEvent>(&e))
        cite(*k);
      else if (const auto *a = std::get_if<fact::EarlierAttempt>(&e); a && a->kernel)
        cite(*a->kernel);
    }
    for (uint64_t rel : v.related)
      if (auto id = take(verdict_key(rel)))
        term.push_back(*id);
    if (term.empty())
      ++st.flows_unresolved;
    st.flows_resolved += term.size();

    Annotations a{str("cause", v.cause), str("summary", v.summary), str("upstream", v.upstream),
                  {"verdict_id", uint64_t{v.id}}, num("attempts", v.attempts)};
    if (v.status)
      a.push_back(num("status", *v.status));
    if (v.nginx_error)
      a.push_back(str("nginx_error", *v.nginx_error));
    if (v.nginx_pid)
      a.push_back(num("nginx_pid", v.nginx_pid));
    if (v.upstream_process) {
      a.push_back(num("upstream_pid", v.upstream_process->pid));
      a.push_back(str("upstream_comm", v.upstream_process->comm));
      process(v.upstream_process->pid, v.upstream_process->comm);
    }
    if (v.request) {
      a.push_back(str("request", v.request->request));
      a.push_back(str("client", v.request->client));
      if (!v.request->host.empty())
        a.push_back(str("host", v.request->host));
    }
    if (!v.upstream.empty() && v.upstream.find_first_of(":/") != std::string::npos)
      upstream(v.upstream);
    const uint64_t track = v.nginx_pid ? thread(v.nginx_pid, v.nginx_pid) : nginx();
    const std::string name = (v.status ? std::to_string(*v.status) : std::string("failed attempt")) + " " + v.cause;
    FlowIds own = new_pool(verdict_key(v.id), 4);
    const uint64_t ts = place(to_boot(v.wall_ns), &a);
    rb->instant(track, ts, name, std::move(a), std::move(own), std::move(term), "verdict");
    count_failure(v.cause, ts);
    close_rates(false);
  }

  // ---- failures per second, by cause ----

  void count_failure(const std::string &cause, uint64_t ts) {
    auto it = rates.find(cause);
    if (it == rates.end()) {
      if (rates.size() >= kMaxCauses)
        return;
      it = rates.emplace(cause, Rate{w.counter_track("failures/s " + cause, "failures/s"), {}, 0, {}}).first;
    }
    Rate &r = it->second;
    const uint64_t sec = std::max(ts / kSecond, r.next_open); // a second already written counts in the next
    ++r.open[sec];
  }

  // Writes the seconds that can no longer receive verdicts: a verdict arrives
  // at most ~2/3 of the reorder window after its time.
  void close_rates(bool all) {
    const uint64_t lag = opts.reorder_window_ns / 3 * 2;
    const uint64_t limit = all ? UINT64_MAX : (newest > lag ? (newest - lag) / kSecond : 0);
    for (auto &[cause, r] : rates) {
      if (r.zero_due && *r.zero_due < limit) {
        if (!r.open.count(*r.zero_due))
          rb->counter(r.uuid, place(*r.zero_due * kSecond), int64_t{0});
        r.zero_due.reset();
      }
      while (!r.open.empty() && r.open.begin()->first < limit) {
        const auto [sec, n] = *r.open.begin();
        r.open.erase(r.open.begin());
        rb->counter(r.uuid, place(sec * kSecond), int64_t(n));
        r.next_open = sec + 1;
        if (r.open.count(sec + 1))
          continue;
        if (sec + 1 < limit)
          rb->counter(r.uuid, place((sec + 1) * kSecond), int64_t{0});
        else
          r.zero_due = sec + 1;
      }
      if (!all && limit > r.next_open)
        r.next_open = limit;
    }
  }

  void close() {
    if (closed)
      return;
    closed = true;
    close_rates(true);
    for (auto &[cause, r] : rates)
      if (r.zero_due)
        rb->counter(r.uuid, place(*r.zero_due * kSecond), int64_t{0});
    rb->flush_all();
    st.late = rb->late_events();
    w.close();
  }
};

PerfettoExporter::PerfettoExporter(const std::string &path, PerfettoExportOptions opts)
    : impl_(std::make_unique<Impl>(path, std::move(opts))) {}

PerfettoExporter::~PerfettoExporter() {
  if (!impl_ || impl_->closed)
    return;
  const bool reported = impl_->w.failed();
  try {
    impl_->close();
  } catch (const std::exception &e) {
    if (!reported)
      std::fprintf(stderr, "why502: %s\n", e.what());
  }
}

void PerfettoExporter::kernel(const KernelEvent &ev) {
  if (!impl_->closed)
    impl_->kernel(ev);
}
void PerfettoExporter::sample(const HostSample &s) {
  if (!impl_->closed)
    impl_->sample(s);
}
void PerfettoExporter::access_line(const nginx::AccessLogLine &line, int64_t wall_ns) {
  if (!impl_->closed)
    impl_->access_line(line, wall_ns);
}
void PerfettoExporter::verdict(const Verdict &v) {
  if (!impl_->closed)
    impl_->verdict(v);
}
void PerfettoExporter::add_upstream(const std::string &address) {
  if (!impl_->closed && !address.empty())
    impl_->upstream(address);
}
void PerfettoExporter::add_nginx_process(uint32_t pid) {
  if (!impl_->closed)
    impl_->worker(pid);
}
void PerfettoExporter::close() { impl_->close(); }
bool PerfettoExporter::full() const { return impl_->w.stats().packets_dropped > 0; }

PerfettoExportStats PerfettoExporter::stats() const {
  PerfettoExportStats s = impl_->st;
  s.late = impl_->rb->late_events();
  s.writer = impl_->w.stats();
  return s;
}

const std::string &PerfettoExporter::path() const { return impl_->w.path(); }

} // namespace why502::sinks
