#include "pipeline/watcher.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <poll.h>
#include <set>

#include <spdlog/spdlog.h>

#include "base/time.h"
#include "base/output_file.h"
#include "base/proc.h"
#include "base/target_fs.h"
#include "base/text.h"
#include "correlate/causes.h"
#include "why502/error.h"
#include "why502/host.h"
#include "why502/nginx.h"

namespace why502::pipeline {

using nlohmann::json;

namespace {

// How often logs are read. A verdict is due once its request's access line is in (issue 11: p99
// within 100 ms of it), so this bounds its latency; 40 reads a second of files that usually hold
// nothing new cost nothing measurable, where waking on every write cost nginx several percent.
constexpr int64_t kLogDrainIntervalNs = 25000000;
// Time one pass may spend feeding log lines (the rest waits for the next pass), and the last pass
// at exit (the rest is counted as unread): the loop stays responsive, and the exit bounded.
constexpr int64_t kLogPassBudgetNs = 150000000;
constexpr int64_t kFinishLogBudgetNs = 400000000;
// Log lines read but not fed yet, at most (about 250 bytes each).
constexpr size_t kMaxPendingLines = 200000;
// Syscall probes stay armed this long after the last failure that needed them.
constexpr int64_t kSyscallProbeQuietNs = 600LL * 1000000000;

bool is_failure(const KernelEvent &ev) {
  return std::holds_alternative<ConnFail>(ev.record) || std::holds_alternative<SyscallErr>(ev.record);
}

} // namespace

struct Watcher::Impl {
  WatchOptions opts;
  std::vector<nginx::Instance> instances;
  std::unique_ptr<Tracer> tracer;
  std::unique_ptr<HostSampler> sampler;
  std::unique_ptr<Correlator> correlator;
  std::vector<std::unique_ptr<nginx::WorkerTracker>> trackers;

  struct ErrorTail {
    std::unique_ptr<nginx::LogTailer> tailer;
  };
  struct AccessTail {
    std::unique_ptr<nginx::LogTailer> tailer;
    nginx::AccessLogParser parser = nginx::AccessLogParser::combined();
    std::string format_name;
  };
  std::map<std::string, ErrorTail> error_tails;
  std::map<std::string, AccessTail> access_tails;
  std::vector<std::string> notes; // logs we cannot follow, and why
  nginx::ParseStats error_stats, access_stats;
  // nginx's zone for error.log times: its access lines say it (a container may have its own TZ);
  // until one does, this host's.
  nginx::LogZone log_zone;

  std::unique_ptr<base::OutputFile> capture; // --capture (no symlinks, 0600, O_CLOEXEC)
  int64_t last_sample_ns = 0;
  int64_t last_drain_ns = 0;
  int64_t last_syscall_need_ns = 0;
  int64_t last_rescan_ns = 0;
  // Subscribers (Perfetto, metrics): each list is called in order.
  std::vector<std::function<void(const KernelEvent &)>> kernel_cbs;
  std::vector<std::function<void(const HostSample &)>> sample_cbs;
  std::vector<std::function<void(const nginx::AccessLogLine &, int64_t)>> access_cbs;
  std::vector<std::function<void(int)>> failed_request_cbs;

  // Takes the record, not its JSON: without --capture nothing is formatted (in a 502 storm, building
  // a JSON object per kernel record was a seventh of watch's CPU, for nobody).
  template <typename Record> void write_capture(const Record &r) {
    if (!capture)
      return;
    capture->write_line(base::json_line(to_json(r)));
  }

  // Notes are deduplicated and capped: a reload re-reads the config, and a config with many
  // unreadable includes must not grow the start line without bound.
  void add_note(std::string note) {
    base::make_valid_utf8(note); // paths from a config or /proc are bytes, not text
    if (notes.size() < 100 && std::find(notes.begin(), notes.end(), note) == notes.end())
      notes.push_back(std::move(note));
  }

  void add_logs_from(const nginx::Instance &inst) {
    for (std::size_t i = 0; i < inst.config.warnings.size() && i < 5; ++i)
      add_note("nginx config of master " + std::to_string(inst.master_pid) + ": " + inst.config.warnings[i]);
    if (!opts.error_logs.empty() || !opts.access_logs.empty())
      return; // overrides replace discovery
    // A master in another mount namespace (a container) writes paths of its own filesystem.
    std::shared_ptr<const base::TargetFs> fs;
    if (inst.foreign_fs)
      fs = std::make_shared<const base::TargetFs>(base::TargetFs::of_process(inst.master_pid));
    for (const auto &e : inst.config.error_logs) {
      if (!e.tailable) {
        add_note("error_log " + e.path + " cannot be followed: " + e.not_tailable_reason);
        continue;
      }
      add_error_log(e.path, fs);
      if (e.level == "crit" || e.level == "alert" || e.level == "emerg")
        add_note("error_log " + e.path + " has level " + e.level + ": nginx does not write upstream errors there");
    }
    for (const auto &a : inst.config.access_logs) {
      if (a.off || a.is_stream)
        continue;
      if (!a.tailable) {
        add_note("access_log " + a.path + " cannot be followed: " + a.not_tailable_reason);
        continue;
      }
      const nginx::LogFormat *fmt = inst.config.format_for(a);
      add_access_log(a.path, fmt, fs);
    }
  }

  static nginx::TailerOptions timer_drained(const std::shared_ptr<const base::TargetFs> &fs) {
    nginx::TailerOptions o;
    o.wake_on_write = false; // drained every kLogDrainIntervalNs, not woken per line
    if (fs)
      o.open_path = [fs](const std::string &path, int flags) { return fs->open(path, flags); };
    return o;
  }

  // Tails are keyed by where the file really is: two containers may both log to
  // /var/log/nginx/error.log.
  static std::string tail_key(const std::string &path, const std::shared_ptr<const base::TargetFs> &fs) {
    return fs ? fs->root_label() + path : path;
  }

  // A log that cannot be read now (missing, misspelled, not a regular file) is followed anyway
  // (it may appear later), and said so in the start line: no verdict will quote it until then.
  void note_unopened(const char *what, const nginx::LogTailer &t) {
    if (!t.file_open())
      add_note(std::string(what) + " " + t.last_error() + ": not read until it can be opened");
  }

  void add_error_log(const std::string &path, const std::shared_ptr<const base::TargetFs> &fs = nullptr) {
    std::string key = tail_key(path, fs);
    if (error_tails.count(key))
      return;
    error_tails[key].tailer = std::make_unique<nginx::LogTailer>(path, timer_drained(fs));
    note_unopened("error_log", *error_tails[key].tailer);
  }

  void add_access_log(const std::string &path, const nginx::LogFormat *fmt,
                      const std::shared_ptr<const base::TargetFs> &fs = nullptr) {
    std::string key = tail_key(path, fs);
    if (access_tails.count(key))
      return;
    AccessTail t;
    t.tailer = std::make_unique<nginx::LogTailer>(path, timer_drained(fs));
    note_unopened("access_log", *t.tailer);
    if (fmt) {
      t.parser = nginx::AccessLogParser::for_format(*fmt);
      t.format_name = fmt->name;
    } else {
      t.format_name = "combined";
    }
    access_tails.emplace(key, std::move(t));
  }

  const nginx::LogFormat *format_for_path(const std::string &path) const {
    for (const auto &inst : instances)
      for (const auto &a : inst.config.access_logs)
        if (a.path == path)
          return inst.config.format_for(a);
    return nullptr;
  }

  void sample(int64_t now) {
    HostSample s = sampler->sample();
    last_sample_ns = now;
    correlator->add_host_sample(s);
    write_capture(s);
    for (auto &cb : sample_cbs)
      cb(s);
  }

  void on_kernel(const KernelEvent &ev) {
    correlator->add_kernel(ev);
    write_capture(ev);
    for (auto &cb : kernel_cbs)
      cb(ev);
    // Queue depths matter at the moment of failure: sample now (at most every 100 ms).
    if (is_failure(ev) && ev.wall_ns - last_sample_ns > 100000000)
      sample(base::wall_clock_ns());
  }

  // Lines read but not fed yet, as raw text (a parsed line is ten times larger). Fed within a time
  // budget per pass, so a backlog (a storm on a busy host) can stall neither the loop nor the exit;
  // bounded, and every line let go is counted.
  struct PendingError {
    std::string text;
    bool probes_were_armed; // when it was read: every line was written before any arming it causes
  };
  std::deque<PendingError> pending_errors;
  // Access lines are many (every request): their text goes into one buffer, not a string each.
  struct PendingAccess {
    AccessTail *tail;
    size_t offset, size; // in pending_access_text
  };
  std::vector<PendingAccess> pending_access;
  size_t pending_access_head = 0; // the first not fed yet
  std::string pending_access_text;
  size_t pending_access_count() const { return pending_access.size() - pending_access_head; }
  void clear_pending_access() {
    pending_access.clear();
    pending_access_head = 0;
    pending_access_text.clear();
  }
  void pop_pending_access() {
    if (++pending_access_head == pending_access.size())
      clear_pending_access();
  }
  uint64_t log_lines_dropped = 0; // over kMaxPendingLines
  uint64_t lines_unconfigured_upstream = 0; // failures naming an upstream the config does not have
  // Every upstream peer the watched configs name, when they all name them statically.
  std::optional<std::set<std::string>> configured_peers;
  void learn_configured_peers() {
    std::set<std::string> all;
    for (const auto &inst : instances) {
      auto peers = inst.config.static_upstream_peers();
      if (!peers) {
        configured_peers.reset();
        return;
      }
      all.insert(peers->begin(), peers->end());
    }
    if (instances.empty() || !opts.error_logs.empty())
      configured_peers.reset(); // logs given by the operator may belong to another nginx
    else
      configured_peers = std::move(all);
  }
  uint64_t log_lines_unread = 0;  // still pending when the run ended

  void drain_logs(int64_t budget_ns) {
    const int64_t now_ns = base::wall_clock_ns();
    // Access logs are read before error logs: nginx writes a request's error lines before its access
    // line, so an access line read now always finds its error lines read in the same pass (the other
    // order races with nginx between the two reads). Every pending error line is fed before any
    // pending access line: an access line closes the request whose error lines came before it.
    compact_pending_access();
    for (auto &[path, t] : access_tails)
      t.tailer->drain([&](std::string_view line, bool) {
        if (pending_access_count() >= kMaxPendingLines) {
          ++log_lines_dropped;
          return;
        }
        pending_access.push_back({&t, pending_access_text.size(), line.size()});
        pending_access_text.append(line);
      });
    bool armed = tracer->syscall_probes_armed();
    for (auto &[path, t] : error_tails)
      t.tailer->drain([&](std::string_view line, bool) {
        if (pending_errors.size() >= kMaxPendingLines)
          ++log_lines_dropped;
        else
          pending_errors.push_back({std::string(line), armed});
      });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(budget_ns);
    size_t n = 0;
    auto out_of_time = [&] { return ++n % 64 == 0 && std::chrono::steady_clock::now() >= deadline; };
    while (!pending_errors.empty()) {
      if (out_of_time())
        return;
      const auto &p = pending_errors.front();
      if (auto l = nginx::parse_error_line(p.text, error_stats)) {
        l->pid = host_pid(l->pid);
        if (l->failure != nginx::UpstreamFailure::none && configured_peers &&
            !nginx::upstream_is_configured(*l, *configured_peers)) {
          // The config names every upstream statically and this is none of them: a forged or
          // foreign line (someone else writing to the log) must not become a verdict.
          ++lines_unconfigured_upstream;
          pending_errors.pop_front();
          continue;
        }
        if (needs_syscall_probes(*l))
          arm_syscall_probes();
        correlator->add_error_line(*l, log_zone.to_epoch_ns(*l), p.probes_were_armed || !only_syscall_record(*l));
      }
      pending_errors.pop_front();
    }
    while (pending_access_count() > 0) {
      if (out_of_time())
        return;
      const auto &p = pending_access[pending_access_head];
      AccessTail *t = p.tail;
      const std::string_view text = std::string_view(pending_access_text).substr(p.offset, p.size);
      if (skip_access_line(t->parser, text, now_ns)) {
        pop_pending_access();
        continue;
      }
      last_full_access_parse_ns = now_ns;
      if (auto l = t->parser.parse(text, access_stats)) {
        if (l->pid)
          l->pid = host_pid(*l->pid);
        const auto written = l->epoch_ns();
        int64_t when = written ? *written : base::wall_clock_ns();
        if (l->utc_offset_s)
          log_zone.learn_from_access_log(when / 1000000000, *l->utc_offset_s);
        correlator->add_access_line(*l, when);
        for (auto &cb : access_cbs)
          cb(*l, when);
        if (l->status && *l->status >= 500) // always parsed in full (wants_access_line)
          for (auto &cb : failed_request_cbs)
            cb(*l->status);
      }
      pop_pending_access();
    }
  }

  // A backlog left by a pass out of time keeps its lines; drop what was fed before reading more.
  void compact_pending_access() {
    if (pending_access_head == 0)
      return;
    const size_t fed_bytes = pending_access[pending_access_head].offset;
    pending_access.erase(pending_access.begin(), pending_access.begin() + pending_access_head);
    pending_access_head = 0;
    pending_access_text.erase(0, fed_bytes);
    for (auto &p : pending_access)
      p.offset -= fed_bytes;
  }

  // Most access lines of a healthy proxy are successes nothing waits for: a cheap look at $status
  // (the format matched, no values copied) decides before the full parse (issue 11: watch's CPU per
  // request). Parsed in full all the same: every line while the Perfetto sink draws requests, and
  // one a second, which keeps nginx's UTC offset (LogZone) current.
  int64_t last_full_access_parse_ns = 0;
  bool skip_access_line(const nginx::AccessLogParser &parser, std::string_view text, int64_t now_ns) {
    if (!access_cbs.empty() || now_ns - last_full_access_parse_ns >= 1000000000)
      return false;
    auto scan = parser.scan_status(text);
    if (!scan.matched || correlator->wants_access_line(scan.status))
      return false; // an unmatched line goes through parse() to be counted there
    access_stats.count(true); // it matched the format: parsed, as far as the counts go
    return true;
  }

  // nginx in its own PID namespace (a container) logs the pids it knows: map them to the pids the
  // kernel reports, once per worker change. An unknown pid stays as it is (its kernel records then
  // simply do not join).
  std::map<pid_t, pid_t> ns_to_host_pid;
  void map_namespace_pids(const nginx::WorkerTracker &t) {
    for (const auto &w : t.workers())
      if (w.ns_pid && w.ns_pid != w.pid)
        ns_to_host_pid[w.ns_pid] = w.pid;
    if (ns_to_host_pid.size() > 4096)
      ns_to_host_pid.clear(); // a crash loop of workers: rebuilt at the next change
  }
  pid_t host_pid(pid_t logged) const {
    auto it = ns_to_host_pid.find(logged);
    return it == ns_to_host_pid.end() ? logged : it->second;
  }

  void arm_syscall_probes() {
    last_syscall_need_ns = base::wall_clock_ns();
    if (tracer->arm_syscall_probes())
      spdlog::info("syscall probes armed: nginx reported a connect()/socket() failure");
  }

  // Disarmed again after a quiet period, so a host returns to full speed.
  void maybe_disarm(int64_t now) {
    if (opts.syscall_probes_always || !tracer->syscall_probes_armed())
      return;
    if (now - last_syscall_need_ns > kSyscallProbeQuietNs)
      tracer->disarm_syscall_probes();
  }

  void rescan(int64_t now) {
    last_rescan_ns = now;
    for (auto &t : trackers) {
      auto change = t->rescan();
      for (pid_t p : change.added)
        tracer->watch_pid(p); // fork-following already did this in the kernel; harmless and covers races
      if (!change.added.empty() || !change.removed.empty())
        map_namespace_pids(*t);
      if (change.reloaded) {
        // A reload may have changed log paths: read the config again. The new reading replaces
        // the old one (state stays bounded however often nginx reloads).
        auto again = nginx::discover(t->master_pid());
        if (again)
          for (auto &inst : again->instances) {
            add_logs_from(inst);
            auto same = std::find_if(instances.begin(), instances.end(),
                                     [&](const nginx::Instance &i) { return i.master_pid == inst.master_pid; });
            if (same != instances.end())
              *same = std::move(inst);
            else
              instances.push_back(std::move(inst));
          }
        learn_configured_peers();
      }
    }
  }
};

Watcher::Watcher(const WatchOptions &opts) : impl_(std::make_unique<Impl>()) {
  auto &m = *impl_;
  m.opts = opts;
  Tracer::require_host_pid_namespace(); // before any PID is read from /proc
  auto found = nginx::discover(opts.nginx_pid);
  if (!found)
    throw Error(found.error());
  m.instances = std::move(found->instances);
  for (const auto &w : found->warnings)
    m.add_note(w);

  TracerOptions topts;
  for (const auto &inst : m.instances)
    topts.pids.push_back(inst.master_pid);
  if (!opts.nginx_pid)
    topts.comms = {"nginx"}; // an nginx started later is watched from its exec
  topts.syscall_probes_on_demand = !opts.syscall_probes_always;
  m.tracer = std::make_unique<Tracer>(topts);

  pid_t netns_pid = m.instances.front().workers.empty() ? m.instances.front().master_pid
                                                         : m.instances.front().workers.front().pid;
  m.sampler = std::make_unique<HostSampler>(netns_pid);

  for (const auto &p : opts.error_logs)
    m.add_error_log(p);
  for (const auto &p : opts.access_logs)
    m.add_access_log(p, m.format_for_path(p));
  for (const auto &inst : m.instances) {
    if (!inst.config_error.empty())
      m.add_note("cannot read the configuration of nginx master " + std::to_string(inst.master_pid) + ": " +
                        inst.config_error);
    m.add_logs_from(inst);
    m.trackers.push_back(std::make_unique<nginx::WorkerTracker>(inst.master_pid));
    m.trackers.back()->rescan();
    m.map_namespace_pids(*m.trackers.back());
  }

  m.learn_configured_peers();
  CorrelatorOptions copts;
  // Only logs that are open count: with no readable error log, kernel failures are verdicts on
  // their own instead of waiting for lines that will not come.
  copts.error_log_available = std::any_of(m.error_tails.begin(), m.error_tails.end(),
                                          [](const auto &t) { return t.second.tailer->file_open(); });
  copts.access_log_available = std::any_of(m.access_tails.begin(), m.access_tails.end(),
                                           [](const auto &t) { return t.second.tailer->file_open(); });
  for (const auto &inst : m.instances)
    for (const auto &u : inst.config.upstreams)
      for (const auto &s : u->servers)
        copts.upstream_groups[u->name].push_back(s.address);
  m.correlator = std::make_unique<Correlator>(copts);

  if (!opts.capture_path.empty()) {
    base::OutputFileOptions fo;
    fo.group = opts.output_group;
    m.capture = std::make_unique<base::OutputFile>(opts.capture_path, fo);
  }
  m.sample(base::wall_clock_ns());
}

Watcher::~Watcher() = default;

void Watcher::reopen_capture() {
  if (impl_->capture)
    impl_->capture->reopen();
}

std::vector<Verdict> Watcher::step(int timeout_ms) {
  auto &m = *impl_;
  // Wake for kernel records only. Logs are read on a timer: waking on every access-log write
  // (one per request) cost a busy nginx several percent of its CPU in bench/.
  pollfd pfd{m.tracer->fd(), POLLIN, 0};
  // ...but never sleep past the next log read.
  const int64_t until_drain_ns = m.last_drain_ns + kLogDrainIntervalNs - base::wall_clock_ns();
  timeout_ms = std::clamp<int>(int(until_drain_ns / 1000000) + 1, 0, std::max(timeout_ms, 0));
  poll(&pfd, 1, timeout_ms); // EINTR is fine: the caller checks its stop flag

  m.tracer->poll(0, [&](const KernelEvent &ev) { m.on_kernel(ev); });
  int64_t now = base::wall_clock_ns();
  if (now - m.last_drain_ns >= kLogDrainIntervalNs) {
    m.last_drain_ns = now;
    m.drain_logs(kLogPassBudgetNs);
  }
  if (now - m.last_sample_ns >= int64_t(m.opts.sample_interval_s * 1e9))
    m.sample(now);
  if (now - m.last_rescan_ns >= 1000000000) {
    m.rescan(now);
    m.maybe_disarm(now);
  }
  return m.correlator->advance(now);
}

std::vector<Verdict> Watcher::finish() {
  auto &m = *impl_;
  m.tracer->poll(0, [&](const KernelEvent &ev) { m.on_kernel(ev); });
  // Bounded: --duration and SIGINT are honoured within a second whatever the logs still hold.
  m.drain_logs(kFinishLogBudgetNs);
  m.log_lines_unread += m.pending_errors.size() + m.pending_access_count();
  m.pending_errors.clear();
  m.clear_pending_access();
  return m.correlator->finish();
}

Watcher::LogLineLosses Watcher::log_line_losses() const {
  return {impl_->log_lines_dropped, impl_->log_lines_unread, impl_->lines_unconfigured_upstream};
}

std::vector<json> Watcher::take_notes() { return impl_->correlator->take_notes(); }

void Watcher::on_kernel(std::function<void(const KernelEvent &)> cb) { impl_->kernel_cbs.push_back(std::move(cb)); }
void Watcher::on_sample(std::function<void(const HostSample &)> cb) { impl_->sample_cbs.push_back(std::move(cb)); }
void Watcher::on_failed_request(std::function<void(int)> cb) { impl_->failed_request_cbs.push_back(std::move(cb)); }
Watcher::LogLineCounts Watcher::log_line_counts() const {
  const auto &m = *impl_;
  return {m.error_stats.parsed, m.error_stats.unparsed, m.access_stats.parsed, m.access_stats.unparsed};
}
void Watcher::on_access_line(std::function<void(const nginx::AccessLogLine &, int64_t)> cb) {
  impl_->access_cbs.push_back(std::move(cb));
}

const CorrelatorStats &Watcher::stats() const { return impl_->correlator->stats(); }
LossCounters Watcher::losses() const { return impl_->tracer->losses(); }

std::vector<uint32_t> Watcher::nginx_pids() const { return impl_->tracer->watched_pids(); }

static std::string opts_syscall_mode(const Watcher::Impl &m) {
  if (m.opts.syscall_probes_always)
    return "always";
  return m.tracer->syscall_probes_armed() ? "on-demand (armed)" : "on-demand";
}

json Watcher::start_json() const {
  const auto &m = *impl_;
  json masters = json::array();
  for (const auto &inst : m.instances) {
    json workers = json::array();
    for (const auto &w : inst.workers)
      workers.push_back(w.pid);
    masters.push_back({{"master_pid", inst.master_pid}, {"workers", workers}, {"config", inst.config_path}});
  }
  json errors = json::array(), accesses = json::array();
  for (const auto &[p, t] : m.error_tails)
    errors.push_back(p);
  for (const auto &[p, t] : m.access_tails)
    accesses.push_back({{"path", p}, {"format", t.format_name}});
  return {{"type", "start"},
          {"time", base::format_wall_time(base::wall_clock_ns())},
          {"nginx", masters},
          {"error_logs", errors},
          {"access_logs", accesses},
          {"degraded_causes", causes_degraded_by(m.tracer->programs())},
          {"syscall_probes", opts_syscall_mode(m)},
          {"notes", m.notes}};
}

sinks::ProcessNamer live_process_names() {
  return {[](uint32_t pid) { return base::read_proc_cmdline(pid_t(pid)); },
          [](uint32_t pid) { return base::read_proc_comm(pid_t(pid)); }};
}

std::string Watcher::describe() const {
  const auto &m = *impl_;
  std::string out;
  for (const auto &inst : m.instances) {
    out += "watching nginx master " + std::to_string(inst.master_pid) + " (" + std::to_string(inst.workers.size()) +
           " workers)";
    if (!inst.config_path.empty())
      out += ", config " + inst.config_path;
    out += "\n";
  }
  for (const auto &[p, t] : m.error_tails)
    out += "  error log  " + p + "\n";
  for (const auto &[p, t] : m.access_tails)
    out += "  access log " + p + " (format " + t.format_name + ")\n";
  for (const auto &c : causes_degraded_by(m.tracer->programs()))
    out += "  degraded: " + c + "\n";
  out += "  syscall probes: " + opts_syscall_mode(m) + "\n";
  for (const auto &n : m.notes)
    out += "  note: " + n + "\n";
  return out;
}

} // namespace why502::pipeline
