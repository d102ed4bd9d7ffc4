// Prometheus metrics for `watch --metrics` (see metrics.h).
#include "sinks/metrics.h"

#include <csignal>
#include <deque>
#include <exception>
#include <sstream>

#include <CivetServer.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "base/proc.h"
#include "why502/address.h"
#include "why502/error.h"

namespace why502::sinks {

namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Labels;

// One label's values, bounded: the first `max` distinct values are themselves, the rest "other".
class BoundedLabel {
public:
  explicit BoundedLabel(size_t max) : max_(max) {}
  // The value to use, and whether it was folded into "other".
  std::pair<std::string, bool> value(const std::string &v) {
    if (seen_.count(v))
      return {v, false};
    if (seen_.size() < max_) {
      seen_.insert(v);
      return {v, false};
    }
    return {"other", true};
  }

private:
  size_t max_;
  std::set<std::string> seen_;
};

// A cumulative count kept elsewhere, mirrored into a counter by its growth.
struct Mirror {
  Counter *counter = nullptr;
  uint64_t last = 0;
  void sync(uint64_t now) {
    if (now > last)
      counter->Increment(double(now - last));
    last = now;
  }
};

std::string death_cause(const ProcessExit &e, bool oom_killed) {
  if (oom_killed)
    return "oom_killed";
  switch (e.signal) {
  case 0:
    return e.exit_code == 0 ? "exited" : "exited_with_error";
  case SIGSEGV:
  case SIGBUS:
  case SIGILL:
  case SIGFPE:
  case SIGABRT:
  case SIGSYS:
    return "crashed";
  default:
    return e.core_dumped ? "crashed" : "killed_by_signal";
  }
}

} // namespace

struct Metrics::Impl {
  MetricsOptions opts;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer;

  Family<Counter> &failures = prometheus::BuildCounter()
                                  .Name("why502_upstream_failures_total")
                                  .Help("Failed upstream requests by the root cause why502 named, and upstream")
                                  .Register(*registry);
  Family<Counter> &failed_requests = prometheus::BuildCounter()
                                         .Name("why502_requests_failed_total")
                                         .Help("Access-log lines with a 5xx status, by status")
                                         .Register(*registry);
  Family<Counter> &unknown = prometheus::BuildCounter()
                                 .Name("why502_verdicts_unknown_total")
                                 .Help("Failed requests why502 could not explain (cause unknown)")
                                 .Register(*registry);
  Family<Counter> &records = prometheus::BuildCounter()
                                 .Name("why502_kernel_records_total")
                                 .Help("Kernel records read from the ring buffer, by kind")
                                 .Register(*registry);
  Family<Counter> &lost = prometheus::BuildCounter()
                              .Name("why502_kernel_records_lost_total")
                              .Help("Kernel records lost, by where (ring buffer full, map full, undecodable)")
                              .Register(*registry);
  Family<Counter> &rate_limited = prometheus::BuildCounter()
                                      .Name("why502_kernel_records_rate_limited_total")
                                      .Help("Host-wide kernel records not sent by design: over the per-second rate limit")
                                      .Register(*registry);
  Family<Counter> &runs_missed = prometheus::BuildCounter()
                                     .Name("why502_kernel_runs_missed_total")
                                     .Help("BPF program runs the kernel skipped because the same program was "
                                           "already running on that CPU (mostly sockets nobody follows)")
                                     .Register(*registry);
  Family<Counter> &log_lines = prometheus::BuildCounter()
                                   .Name("why502_log_lines_total")
                                   .Help("nginx log lines read, by log and result (parsed, unparsed, dropped, "
                                         "unconfigured_upstream)")
                                   .Register(*registry);
  Family<Gauge> &queue_depth = prometheus::BuildGauge()
                                   .Name("why502_listen_queue_depth")
                                   .Help("Connections waiting in a listener's accept queue, at the last sample")
                                   .Register(*registry);
  Family<Gauge> &queue_max = prometheus::BuildGauge()
                                 .Name("why502_listen_queue_max")
                                 .Help("A listener's accept-queue limit (backlog), at the last sample")
                                 .Register(*registry);
  Family<Counter> &deaths = prometheus::BuildCounter()
                                .Name("why502_upstream_process_deaths_total")
                                .Help("Deaths of processes that owned a listening socket, by cause and command")
                                .Register(*registry);
  Family<Counter> &folded = prometheus::BuildCounter()
                                .Name("why502_metric_label_values_folded_total")
                                .Help("Label values folded into \"other\" by the per-label bound, by metric")
                                .Register(*registry);
  Family<Counter> &output_lost = prometheus::BuildCounter()
                                     .Name("why502_output_lines_lost_total")
                                     .Help("Lines watch could not write to its output (full disk, closed pipe)")
                                     .Register(*registry);
  Family<Gauge> &build_info = prometheus::BuildGauge()
                                  .Name("why502_build_info")
                                  .Help("Always 1; the version of the why502 serving these metrics")
                                  .Register(*registry);

  BoundedLabel upstreams, listeners, comms;
  std::map<std::string, Mirror> mirrors; // by a key of metric and labels
  std::set<std::string> shown_listeners;
  // Processes seen owning a listener (samples, listen records), and the OOM victims among them,
  // until their exit record: bounded, the oldest forgotten first.
  std::set<uint32_t> listener_owners;
  std::deque<uint32_t> owner_order;
  std::set<uint32_t> oom_victims;
  static constexpr size_t kMaxOwners = 65536;

  explicit Impl(MetricsOptions o)
      : opts(o), upstreams(o.max_label_values), listeners(o.max_label_values), comms(o.max_label_values) {
    build_info.Add({{"version", WHY502_VERSION}}).Set(1);
    unknown.Add({});
    output_lost.Add({});
  }

  std::string bounded(BoundedLabel &label, const std::string &value, const char *metric) {
    auto [v, was_folded] = label.value(value);
    if (was_folded)
      folded.Add({{"metric", metric}}).Increment();
    return v;
  }

  void mirror(Family<Counter> &family, const Labels &labels, uint64_t now) {
    std::string key = std::to_string(reinterpret_cast<uintptr_t>(&family));
    for (const auto &[k, v] : labels)
      key += "\x1f" + k + "=" + v;
    auto [it, fresh] = mirrors.try_emplace(key);
    if (fresh)
      it->second.counter = &family.Add(labels);
    it->second.sync(now);
  }

  void remember_owner(uint32_t pid) {
    if (!pid || !listener_owners.insert(pid).second)
      return;
    owner_order.push_back(pid);
    if (owner_order.size() > kMaxOwners) {
      listener_owners.erase(owner_order.front());
      oom_victims.erase(owner_order.front());
      owner_order.pop_front();
    }
  }

  bool is_ephemeral(const std::string &address) const {
    auto a = Address::parse(address);
    if (!a || a->is_unix())
      return false;
    return a->port >= opts.ephemeral_ports.first && a->port <= opts.ephemeral_ports.second;
  }
};

Metrics::Metrics(MetricsOptions opts) : impl_(std::make_unique<Impl>(opts)) {}
Metrics::~Metrics() = default;

namespace {
// civetweb says why it could not start only through this callback (the exception is generic).
thread_local std::string civetweb_error;
int keep_civetweb_error(const mg_connection *, const char *message) {
  if (civetweb_error.empty() && message)
    civetweb_error = message;
  return 1; // handled: civetweb prints nothing itself
}
} // namespace

void Metrics::serve(const std::string &address) {
  CivetCallbacks callbacks{};
  callbacks.log_message = keep_civetweb_error;
  civetweb_error.clear();
  try {
    impl_->exposer = std::make_unique<prometheus::Exposer>(address, 2, &callbacks);
  } catch (const std::exception &e) {
    throw Error("--metrics " + address + ": cannot serve metrics there: " +
                (civetweb_error.empty() ? std::string(e.what()) : civetweb_error));
  }
  impl_->exposer->RegisterCollectable(impl_->registry);
}

void Metrics::verdict(const Verdict &v) {
  auto &m = *impl_;
  const double n = v.count > 0 ? double(v.count) : 1.0;
  m.failures
      .Add({{"cause", v.cause},
            {"upstream", m.bounded(m.upstreams, v.upstream.empty() ? "none" : v.upstream, "upstream_failures")}})
      .Increment(n);
  if (v.cause == cause::kUnknown)
    m.unknown.Add({}).Increment(n);
}

void Metrics::kernel_record(const KernelEvent &ev) {
  auto &m = *impl_;
  m.records.Add({{"kind", std::string(event_name(ev.record))}}).Increment();
  if (const auto *l = std::get_if<ListenChange>(&ev.record); l && l->listening)
    m.remember_owner(l->pid);
  if (const auto *o = std::get_if<OomVictim>(&ev.record); o && m.listener_owners.count(o->pid))
    m.oom_victims.insert(o->pid);
  if (const auto *e = std::get_if<ProcessExit>(&ev.record); e && !e->watched && m.listener_owners.count(e->pid)) {
    const bool oom = m.oom_victims.erase(e->pid) > 0;
    m.listener_owners.erase(e->pid);
    m.deaths
        .Add({{"cause", death_cause(*e, oom)}, {"comm", m.bounded(m.comms, e->comm, "upstream_process_deaths")}})
        .Increment();
  }
}

void Metrics::output_line_lost() { impl_->output_lost.Add({}).Increment(); }

void Metrics::failed_request(int status) {
  impl_->failed_requests.Add({{"status", std::to_string(status)}}).Increment();
}

void Metrics::host_sample(const HostSample &s) {
  auto &m = *impl_;
  std::set<std::string> now_shown;
  for (const auto &l : s.listeners) {
    for (const auto &o : l.owners)
      m.remember_owner(o.pid);
    if (m.is_ephemeral(l.address))
      continue;
    std::string label = m.bounded(m.listeners, l.address, "listen_queue");
    if (label == "other")
      continue; // a sum of unrelated queues means nothing: counted as folded, not shown
    now_shown.insert(label);
    m.queue_depth.Add({{"listener", label}}).Set(l.depth);
    m.queue_max.Add({{"listener", label}}).Set(l.max);
  }
  // A listener that closed has no queue: its series go (a stale depth would alert forever).
  for (const auto &gone : m.shown_listeners)
    if (!now_shown.count(gone)) {
      m.queue_depth.Remove(&m.queue_depth.Add({{"listener", gone}}));
      m.queue_max.Remove(&m.queue_max.Add({{"listener", gone}}));
    }
  m.shown_listeners = std::move(now_shown);
}

void Metrics::totals(const MetricsTotals &t) {
  auto &m = *impl_;
  m.mirror(m.lost, {{"site", "ringbuf_full"}}, t.losses.ringbuf_full);
  m.mirror(m.lost, {{"site", "conn_map_full"}}, t.losses.conn_map_full);
  m.mirror(m.lost, {{"site", "watch_map_full"}}, t.losses.watch_map_full);
  m.mirror(m.lost, {{"site", "undecodable"}}, t.losses.undecodable);
  m.mirror(m.runs_missed, {}, t.losses.runs_missed);
  m.mirror(m.rate_limited, {}, t.losses.host_rate_limited);
  m.mirror(m.log_lines, {{"log", "error"}, {"result", "parsed"}}, t.error_lines_parsed);
  m.mirror(m.log_lines, {{"log", "error"}, {"result", "unparsed"}}, t.error_lines_unparsed);
  m.mirror(m.log_lines, {{"log", "error"}, {"result", "unconfigured_upstream"}}, t.error_lines_unconfigured);
  m.mirror(m.log_lines, {{"log", "access"}, {"result", "parsed"}}, t.access_lines_parsed);
  m.mirror(m.log_lines, {{"log", "access"}, {"result", "unparsed"}}, t.access_lines_unparsed);
  m.mirror(m.log_lines, {{"log", "any"}, {"result", "dropped"}}, t.log_lines_dropped);
}

std::string Metrics::text() const {
  prometheus::TextSerializer serializer;
  std::ostringstream out;
  serializer.Serialize(out, impl_->registry->Collect());
  return out.str();
}

std::pair<int, int> Metrics::host_ephemeral_ports() {
  auto text = base::read_small_file("/proc/sys/net/ipv4/ip_local_port_range");
  std::pair<int, int> range = MetricsOptions{}.ephemeral_ports;
  if (text) {
    std::istringstream in(*text);
    int lo = 0, hi = 0;
    if (in >> lo >> hi && lo > 0 && hi >= lo && hi < 65536)
      range = {lo, hi};
  }
  return range;
}

} // namespace why502::sinks
