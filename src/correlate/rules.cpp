// Cause rules. Precedence (DESIGN.md): a death of the upstream process that
// why502 saw, while it held our connection or owned the upstream's port/path
// (with nothing listening since), wins over the symptom; then the most
// specific kernel fact; then what nginx's own errno proves; else unknown.
#include "correlate/rules.h"

#include "base/time.h"
#include "correlate/causes.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>

namespace why502 {

using nlohmann::json;

namespace {

constexpr int64_t kSecond = 1000000000;
constexpr size_t kMaxDeaths = 20000;
constexpr size_t kMaxDrops = 20000;
constexpr size_t kMaxSamples = 2400; // 20 minutes at two samples a second
constexpr size_t kMaxVerdicts = 2000;
// Listen spans: sockets listening now (bounded by the host's listeners), and ended ones kept for
// the history window (a crash loop restarting every 100 ms fills 8192 in ~14 minutes).
constexpr size_t kMaxOpenSpans = 8192;
constexpr size_t kMaxClosedSpans = 8192;
constexpr size_t kMaxOwnership = 8192; // (listener, owner set) spans from samples and unix exits

template <typename T> void cap(std::deque<T> &d, size_t n) {
  while (d.size() > n)
    d.pop_front();
}

std::string seconds(int64_t ns) {
  char buf[32];
  double s = std::fabs(double(ns)) / 1e9;
  if (s < 1.0)
    snprintf(buf, sizeof(buf), "%.0f ms", s * 1e3);
  else
    snprintf(buf, sizeof(buf), "%.1f s", s);
  return buf;
}

std::string human_kb(uint64_t kb) {
  char buf[32];
  if (kb >= 1024 * 1024)
    snprintf(buf, sizeof(buf), "%.1f GiB", double(kb) / (1024 * 1024));
  else if (kb >= 1024)
    snprintf(buf, sizeof(buf), "%.0f MiB", double(kb) / 1024);
  else
    snprintf(buf, sizeof(buf), "%llu KiB", static_cast<unsigned long long>(kb));
  return buf;
}

fact::ListenQueue sample_item(const Listener &l, int64_t wall_ns) { return {wall_ns, l.address, l.depth, l.max}; }

std::string who(uint32_t pid, const std::string &comm) { return comm + " pid " + std::to_string(pid); }

// The process a death record is about.
uint32_t death_pid(const KernelEvent &e) {
  if (const auto *o = std::get_if<OomVictim>(&e.record))
    return o->pid;
  if (const auto *s = std::get_if<FatalSignal>(&e.record))
    return s->target_pid;
  if (const auto *x = std::get_if<ProcessExit>(&e.record))
    return x->pid;
  return 0;
}

// Verdicts kept for no_live_upstreams links, newest first; more are not read per verdict.
constexpr size_t kMaxRelatedScan = 256;

// The port of "1.2.3.4:80" / "[::1]:80"; 0 for unix paths and upstream{} names.
uint16_t port_of(const std::string &address) {
  auto a = Address::parse(address);
  return a && !a->is_unix() ? a->port : 0;
}

} // namespace

void Facts::pop_death() {
  const KernelEvent *e = &deaths_.front();
  auto it = deaths_by_pid_.find(death_pid(*e));
  if (it != deaths_by_pid_.end()) {
    if (!it->second.empty() && it->second.front() == e)
      it->second.pop_front();
    if (it->second.empty())
      deaths_by_pid_.erase(it);
  }
  deaths_.pop_front();
}

std::deque<HostSample>::const_iterator Facts::first_sample_after(int64_t t) const {
  return std::upper_bound(samples_.begin(), samples_.end(), t,
                          [](int64_t v, const HostSample &s) { return v < s.wall_ns; });
}

json to_json(const Evidence &e) {
  struct ToJson {
    json operator()(const KernelEvent &ev) const {
      json j = to_json(ev);
      j.erase("type"); // an evidence item, not a capture line
      return j;
    }
    json operator()(const fact::ListenQueue &q) const {
      return {{"event", q.kName}, {"time", base::format_wall_time(q.wall_ns)}, {"listener", q.listener},
              {"depth", q.depth}, {"max", q.max}};
    }
    json operator()(const fact::ListenOverflows &o) const {
      return {{"event", o.kName}, {"time", base::format_wall_time(o.wall_ns)}, {"delta", o.delta},
              {"since", base::format_wall_time(o.since_ns)}};
    }
    json operator()(const fact::KernelRecordMissing &m) const {
      return {{"event", m.kName}, {"time", base::format_wall_time(m.wall_ns)}, {"expected", m.expected},
              {"worker", m.worker}, {"upstream", m.upstream}};
    }
    json operator()(const fact::EarlierAttempt &a) const {
      json j = {{"event", a.kName}, {"time", base::format_wall_time(a.wall_ns)}, {"upstream", a.upstream},
                {"nginx_error", a.nginx_error}};
      if (a.kernel)
        j["kernel"] = (*this)(*a.kernel);
      else if (a.kernel_missing)
        j["kernel"] = "missing";
      return j;
    }
  };
  return std::visit(ToJson{}, e);
}

// ---------------------------------------------------------------- Facts

void Facts::add_kernel(const KernelEvent &ev) {
  if (std::holds_alternative<OomVictim>(ev.record) || std::holds_alternative<FatalSignal>(ev.record) ||
      std::holds_alternative<ProcessExit>(ev.record)) {
    deaths_.push_back(ev);
    deaths_by_pid_[death_pid(deaths_.back())].push_back(&deaths_.back());
    while (deaths_.size() > kMaxDeaths)
      pop_death();
  } else if (std::holds_alternative<PacketDrop>(ev.record) || std::holds_alternative<ResetSent>(ev.record) ||
             std::holds_alternative<ConnFail>(ev.record)) {
    drops_.push_back(ev);
    cap(drops_, kMaxDrops);
  } else if (const auto *l = std::get_if<ListenChange>(&ev.record)) {
    add_listen_change(ev, *l);
  } else if (const auto *u = std::get_if<UnixListenerExit>(&ev.record)) {
    // The kernel saw this process hold the unix listener as it died: an owner, as a sample would
    // have shown it, however short its life. (Whether the listener lives on in another holder, a
    // pool's master, the samples tell; a unix listen() has no tracepoint.)
    ownership_.push_back({u->address, {{u->pid, u->comm}}, ev.wall_ns, ev.wall_ns});
    if (ownership_.size() > kMaxOwnership) {
      ownership_.erase(ownership_.begin());
      ++spans_evicted_;
    }
  }
}

void Facts::add_listen_change(const KernelEvent &ev, const ListenChange &l) {
  ProcessRef by{l.pid, l.comm};
  if (l.listening) {
    if (open_spans_.size() >= kMaxOpenSpans) {
      open_spans_.erase(open_spans_.begin());
      ++spans_evicted_;
    }
    open_spans_.push_back({l.local.str(), l.local.port, l.netns, l.cookie, by, std::nullopt, ev.wall_ns, INT64_MAX,
                           false});
    return;
  }
  // A stop pairs with its socket's start by cookie (by address in a capture without cookies).
  const std::string address = l.local.str();
  auto same = [&](const ListenSpan &s) {
    return l.cookie ? s.cookie == l.cookie : s.address == address && s.netns == l.netns;
  };
  ListenSpan span;
  auto it = std::find_if(open_spans_.rbegin(), open_spans_.rend(), same);
  if (it != open_spans_.rend()) {
    span = std::move(*it);
    open_spans_.erase(std::next(it).base());
  } else {
    // Listening since before why502 started: whoever closed it held it (a LISTEN socket closes
    // when its last descriptor goes), so the closer is its owner.
    span = {address, l.local.port, l.netns, l.cookie, by, std::nullopt, 0, INT64_MAX, false};
  }
  span.closer = by;
  span.end_ns = ev.wall_ns;
  span.ended_by_exit = l.exiting;
  closed_spans_.push_back(std::move(span));
  if (closed_spans_.size() > kMaxClosedSpans) {
    closed_spans_.pop_front();
    ++spans_evicted_;
  }
}

void Facts::add_sample(const HostSample &s) {
  for (const auto &l : s.listeners) {
    std::map<uint32_t, std::string> owners;
    for (const auto &o : l.owners)
      owners[o.pid] = o.comm;
    // Extend the open span for this listener when its owners did not change.
    Ownership *open = nullptr;
    for (auto &o : ownership_)
      if (o.address == l.address && o.last_ns >= (samples_.empty() ? 0 : samples_.back().wall_ns))
        open = &o;
    if (open && open->owners == owners) {
      open->last_ns = s.wall_ns;
    } else {
      ownership_.push_back({l.address, owners, s.wall_ns, s.wall_ns});
      if (ownership_.size() > kMaxOwnership) {
        ownership_.erase(ownership_.begin());
        ++spans_evicted_;
      }
    }
  }
  // Kept in time order (the binary searches below rely on it).
  if (!samples_.empty() && s.wall_ns < samples_.back().wall_ns)
    return;
  samples_.push_back(s);
  cap(samples_, kMaxSamples);
}

void Facts::remember_verdict(const Verdict &v) {
  verdicts_.push_back({v.id, v.wall_ns, v.upstream, v.nginx_pid});
  cap(verdicts_, kMaxVerdicts);
}

void Facts::expire(int64_t before_ns) {
  auto old = [&](const KernelEvent &e) { return e.wall_ns < before_ns; };
  while (!deaths_.empty() && old(deaths_.front()))
    pop_death();
  while (!drops_.empty() && old(drops_.front()))
    drops_.pop_front();
  while (!samples_.empty() && samples_.front().wall_ns < before_ns)
    samples_.pop_front();
  std::erase_if(ownership_, [&](const Ownership &o) { return o.last_ns < before_ns; });
  // Closed spans are in end order; open ones are facts about now and never expire.
  while (!closed_spans_.empty() && closed_spans_.front().end_ns < before_ns)
    closed_spans_.pop_front();
}

std::vector<Facts::ListenSpan> Facts::listen_spans(const std::string &upstream, int64_t from_ns,
                                                   int64_t to_ns) const {
  std::vector<ListenSpan> out;
  const uint16_t port = port_of(upstream);
  if (port == 0)
    return out;
  auto take = [&](const ListenSpan &s) {
    if (s.port == port && s.start_ns <= to_ns && s.end_ns >= from_ns && listener_serves(s.address, upstream))
      out.push_back(s);
  };
  for (const auto &s : closed_spans_)
    take(s);
  for (const auto &s : open_spans_)
    take(s);
  return out;
}

std::map<uint32_t, std::string> Facts::owners_of(const std::string &upstream, int64_t until_ns) const {
  std::map<uint32_t, std::string> out;
  // Causality: a listener that started after until_ns owned nothing then.
  for (const auto &s : listen_spans(upstream, INT64_MIN, until_ns)) {
    out.emplace(s.owner.pid, s.owner.comm);
    if (s.closer)
      out.emplace(s.closer->pid, s.closer->comm);
  }
  for (const auto &o : ownership_)
    if (o.first_ns <= until_ns && listener_serves(o.address, upstream))
      out.insert(o.owners.begin(), o.owners.end());
  return out;
}

bool Facts::listener_seen(const std::string &upstream, int64_t from_ns, int64_t to_ns) const {
  // A listener the kernel saw start in the window.
  for (const auto &s : listen_spans(upstream, from_ns, to_ns))
    if (s.start_ns > from_ns)
      return true;
  // Through the ownership spans (few), not every sample: a span covers consecutive samples that
  // showed the listener, so one that ends after from_ns and starts by to_ns was seen in the window.
  for (const auto &o : ownership_)
    if (o.last_ns > from_ns && o.first_ns <= to_ns && listener_serves(o.address, upstream)) {
      // The span's samples are discrete: check one really falls in the window.
      for (auto it = first_sample_after(std::max(from_ns, o.first_ns - 1)); it != samples_.end() && it->wall_ns <= std::min(to_ns, o.last_ns); ++it)
        for (const auto &l : it->listeners)
          if (listener_serves(l.address, upstream))
            return true;
    }
  return false;
}

bool Facts::listened_by_another(const std::string &upstream, uint32_t pid, int64_t from_ns, int64_t to_ns) const {
  // A socket the kernel saw start listening in the window, by another process: a restart.
  for (const auto &s : listen_spans(upstream, from_ns, to_ns))
    if (s.start_ns > from_ns && s.owner.pid != pid)
      return true;
  // A sample in the window showing a holder that did not hold it before: a newcomer. Holders that
  // were there before do not count (a gunicorn master whose worker died still holds the listener),
  // nor does a listener with no holder (an exiting owner's socket: files closed, socket not gone).
  const auto before = owners_of(upstream, from_ns);
  for (auto it = first_sample_after(from_ns); it != samples_.end() && it->wall_ns <= to_ns; ++it)
    for (const auto &l : it->listeners)
      if (listener_serves(l.address, upstream))
        for (const auto &o : l.owners)
          if (o.pid != pid && !before.count(o.pid))
            return true;
  return false;
}

std::string Facts::unix_path_prefix_of(const std::string &joined, const CorrelatorOptions &opts) const {
  // The longest unix socket known (listening in a sample, or a server of the config) that the
  // joined "unix:/path/URI" starts with, followed by the URI's '/'.
  std::string best;
  auto consider = [&](const std::string &addr) {
    if (addr.size() > best.size() && addr.rfind("unix:", 0) == 0 && joined.size() > addr.size() &&
        joined.compare(0, addr.size(), addr) == 0 && joined[addr.size()] == '/')
      best = addr;
  };
  for (const auto &o : ownership_)
    consider(o.address);
  for (const auto &[name, servers] : opts.upstream_groups)
    for (const auto &srv : servers)
      consider(srv);
  return best.empty() ? joined : best;
}

bool Facts::sampled(int64_t from_ns, int64_t to_ns) const {
  auto it = first_sample_after(from_ns);
  return it != samples_.end() && it->wall_ns <= to_ns;
}

Facts::Overflow Facts::overflow_between(const std::string &upstream, int64_t from_ns, int64_t to_ns) const {
  Overflow out;
  const HostSample *before = nullptr, *after = nullptr;
  auto first = first_sample_after(from_ns - 1); // wall_ns >= from_ns
  if (first != samples_.begin())
    before = &*std::prev(first);
  for (auto it = first; it != samples_.end(); ++it) {
    const HostSample &s = *it;
    if (s.wall_ns >= to_ns && !after)
      after = &s;
    if (s.wall_ns > to_ns)
      break;
    for (const auto &l : s.listeners)
      if (listener_serves(l.address, upstream) && l.max > 0 && l.depth >= l.max) {
        if (!out.queue_full)
          out.evidence.push_back(sample_item(l, s.wall_ns));
        out.queue_full = true;
      }
  }
  // No sample at or after the window's end: the last one in it.
  if (!after && !samples_.empty() && samples_.back().wall_ns > from_ns && samples_.back().wall_ns <= to_ns)
    after = &samples_.back();
  // No sample before the window (why502 just started): the first one in it is the baseline.
  if (!before && first != samples_.end())
    before = &*first;
  if (before && after && after->listen_overflows > before->listen_overflows) {
    out.overflows_delta = after->listen_overflows - before->listen_overflows;
    out.evidence.push_back(fact::ListenOverflows{after->wall_ns, before->wall_ns, out.overflows_delta});
  }
  return out;
}

std::optional<Listener> Facts::listener_at(const std::string &upstream, int64_t at_ns) const {
  // The latest sample showing it, up to one sample period after at_ns (causality), looking back a
  // bounded number of samples; `address` (exact) when given, else any listener serving `upstream`.
  auto sampled = [&](const std::string &address, int64_t from, int64_t before) -> std::optional<Listener> {
    constexpr int kLookBack = 8;
    auto it = first_sample_after(std::min(at_ns + kSampleGranularityNs, before - 1));
    for (int n = 0; it != samples_.begin() && n < kLookBack; ++n) {
      --it;
      if (it->wall_ns < from)
        break;
      for (const auto &l : it->listeners)
        if (address.empty() ? listener_serves(l.address, upstream) : l.address == address)
          return l;
    }
    return std::nullopt;
  };
  // The kernel's listener at at_ns (the latest started, if several): its owner is exact.
  std::optional<ListenSpan> span;
  for (auto &s : listen_spans(upstream, at_ns, at_ns))
    if (s.end_ns > at_ns && (!span || s.start_ns >= span->start_ns))
      span = std::move(s);
  if (!span)
    return sampled("", INT64_MIN, INT64_MAX);
  // A sample of the same socket's lifetime adds the queue numbers and who holds it then: the
  // process that called listen() first when it still does (it may have handed the socket to an
  // exec'd server, or be a supervisor such as systemd).
  if (auto l = sampled(span->address, span->start_ns, span->end_ns)) {
    auto it = std::find_if(l->owners.begin(), l->owners.end(),
                           [&](const ProcessRef &p) { return p.pid == span->owner.pid; });
    if (it != l->owners.end())
      std::rotate(l->owners.begin(), it, std::next(it));
    return l;
  }
  // Only the kernel saw it: whoever held it to the end (the closer), then who called listen().
  Listener out{span->address};
  if (span->closer)
    out.owners.push_back(*span->closer);
  if (!span->closer || span->closer->pid != span->owner.pid)
    out.owners.push_back(span->owner);
  return out;
}

std::optional<Facts::Death> Facts::death_of(const std::map<uint32_t, std::string> &pids, int64_t from_ns,
                                            int64_t to_ns) const {
  std::optional<Death> best;
  int best_rank = 0;
  // The exit must have happened by to_ns too: a process that exits after the failure had not died.
  auto exit_after = [&](uint32_t pid, int64_t t) -> const KernelEvent * {
    auto it = deaths_by_pid_.find(pid);
    if (it == deaths_by_pid_.end())
      return nullptr;
    for (const KernelEvent *e : it->second)
      if (const auto *x = std::get_if<ProcessExit>(&e->record); x && e->wall_ns >= t && e->wall_ns <= to_ns)
        return e;
    return nullptr;
  };
  std::vector<const KernelEvent *> candidates;
  for (const auto &[pid, comm] : pids)
    if (auto it = deaths_by_pid_.find(pid); it != deaths_by_pid_.end())
      candidates.insert(candidates.end(), it->second.begin(), it->second.end());
  for (const KernelEvent *ep : candidates) {
    const KernelEvent &e = *ep;
    if (e.wall_ns < from_ns || e.wall_ns > to_ns)
      continue;
    int rank = 0;
    uint32_t pid = 0;
    std::string comm;
    const KernelEvent *exit = nullptr;
    if (const auto *o = std::get_if<OomVictim>(&e.record)) {
      pid = o->pid, comm = o->comm, rank = 3;
    } else if (const auto *s = std::get_if<FatalSignal>(&e.record)) {
      // A handled SIGTERM is not a death: count it only when the process then exited.
      if (s->result != 0 || !(exit = exit_after(s->target_pid, e.wall_ns)))
        continue;
      pid = s->target_pid, comm = s->target_comm, rank = 2;
    } else if (const auto *x = std::get_if<ProcessExit>(&e.record)) {
      pid = x->pid, comm = x->comm, rank = 1, exit = &e;
    }
    if (!pids.count(pid))
      continue;
    if (rank == 3)
      exit = exit_after(pid, e.wall_ns);
    // The most recent death wins: an owner that died earlier was replaced by the one that died
    // later (a crash loop kills several owners in turn). Records of one process's death (OOM kill,
    // then its SIGKILL, then its exit) describe the same death: the most telling one names it.
    const int64_t dead_ns = exit ? exit->wall_ns : e.wall_ns;
    if (!best || pid != best->pid) {
      const int64_t best_dead_ns = best ? (best->exit ? best->exit->wall_ns : best->cause->wall_ns) : INT64_MIN;
      if (dead_ns < best_dead_ns)
        continue;
    } else if (rank < best_rank || (rank == best_rank && e.wall_ns < best->cause->wall_ns)) {
      continue;
    }
    best = Death{&e, exit, pid, comm};
    best_rank = rank;
  }
  return best;
}

std::vector<const KernelEvent *> Facts::netfilter_drops(const ConnFail &c, int64_t from_ns, int64_t to_ns) const {
  std::vector<const KernelEvent *> out;
  for (const auto &e : drops_) {
    const auto *d = std::get_if<PacketDrop>(&e.record);
    if (!d || d->reason != DropReason::NetfilterDrop || e.wall_ns < from_ns || e.wall_ns > to_ns)
      continue;
    bool ours = (d->src == c.local && d->dst == c.remote) || (d->src == c.remote && d->dst == c.local);
    if (ours)
      out.push_back(&e);
  }
  return out;
}

std::vector<uint64_t> Facts::related_verdicts(const Verdict &v, const CorrelatorOptions &opts) const {
  std::vector<uint64_t> out;
  auto group = opts.upstream_groups.find(v.upstream);
  size_t scanned = 0;
  for (auto it = verdicts_.rbegin(); it != verdicts_.rend() && ++scanned <= kMaxRelatedScan; ++it) {
    const auto &p = *it;
    // v's time is nginx's second: earlier verdicts of the same second count.
    if (p.wall_ns > v.wall_ns + kNginxClockGranularityNs || p.wall_ns < v.wall_ns - 60 * kSecond)
      continue;
    bool member = group != opts.upstream_groups.end()
                      ? std::find(group->second.begin(), group->second.end(), p.upstream) != group->second.end()
                      : p.nginx_pid == v.nginx_pid; // peer state is per worker without a shared zone
    if (member && p.upstream != v.upstream)
      out.push_back(p.id);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------- rules

namespace {

struct Context {
  const RuleInput &in;
  const Facts &facts;
  Verdict &v;
  int64_t fail_ns;
  // Where every evidence window ends (causality): the failure plus its clock's granularity.
  int64_t window_end() const {
    if (in.kernel)
      return fail_ns + kKernelClockGranularityNs;
    int64_t end = fail_ns + kNginxClockGranularityNs;
    if (in.request_end_ns)
      end = std::min(end, *in.request_end_ns + kAccessClockGranularityNs);
    return end;
  }
  // Where a log-only attempt's connection may have started: with the request (its access line),
  // else `fallback` before nginx's line.
  int64_t log_only_start(int64_t fallback_ns) const {
    return in.request_start_ns ? *in.request_start_ns - kAccessClockGranularityNs : fail_ns - fallback_ns;
  }
};

bool is_unix(const std::string &upstream) { return upstream.rfind("unix:", 0) == 0; }

// Death of whoever served the upstream. `refused`: the connection never reached
// a process (so any earlier death counts, if nothing listened since);
// otherwise it must fall within the connection's life.
bool death_rule(Context &c, bool refused, int64_t conn_start_ns) {
  const std::string &up = c.v.upstream;
  if (up.empty())
    return false;
  // Who held the port is a state, not an event: a sample up to one interval after the failure still
  // names the process that held it at the failure (one that only started listening later cannot have
  // died before the failure, and the death below must have). Causality is kept by the death's window.
  auto owners = c.facts.owners_of(up, c.window_end() + kSampleGranularityNs);
  if (owners.empty())
    return false;
  int64_t from = refused ? 0 : conn_start_ns - kSecond;
  auto death = c.facts.death_of(owners, from, c.window_end());
  if (!death)
    return false;
  // Another process listened there between the death and the failure (a restart, a new owner):
  // this attempt reached the newcomer, or was refused after it came and went, so the old death is
  // not its cause. The dying process itself may still show in a sample taken between the fatal
  // signal and its exit; that does not count.
  const int64_t dead_ns = death->exit ? death->exit->wall_ns : death->cause->wall_ns;
  // A connection that started after its server had died was not served by it (it reached a
  // successor, or was refused): the death must end within the connection's life. The fatal signal
  // may come earlier (a SIGTERM'd server finishing its requests); the exit may not, except for the
  // moment between sched_process_exit and the dying task closing its files, when its listener
  // still accepts.
  if (!refused && dead_ns < conn_start_ns - kExitClosesFilesNs)
    return false;
  if (c.facts.listened_by_another(up, death->pid, dead_ns, c.window_end()))
    return false;
  int64_t dt = c.fail_ns - death->cause->wall_ns;
  // Within the clock's granularity of the failure (a log-only verdict knows nginx's second only).
  std::string when = dt >= 0 ? seconds(dt) + " before the failure" : "within the same " +
                     std::string(c.in.kernel ? "millisecond" : "second") + " as the failure";
  std::string owner = who(death->pid, death->comm) + ", which owned " + up + ",";
  c.v.upstream_process = ProcessRef{death->pid, death->comm};
  c.v.evidence.push_back(*death->cause);
  if (death->exit && death->exit != death->cause)
    c.v.evidence.push_back(*death->exit);
  if (const auto *o = std::get_if<OomVictim>(&death->cause->record)) {
    c.v.cause = cause::kOomKilled;
    c.v.summary = owner + " was OOM-killed " + when + " (rss " + human_kb(o->anon_rss_kb + o->file_rss_kb + o->shmem_rss_kb) + ")";
  } else if (const auto *s = std::get_if<FatalSignal>(&death->cause->record)) {
    c.v.cause = cause::kKilledBySignal;
    if (s->sender_pid == s->target_pid)
      c.v.summary = owner + " died of " + signal_name(s->sig) + " (raised by its own fault) " + when;
    else
      c.v.summary = owner + " was killed by " + signal_name(s->sig) + " from " + who(s->sender_pid, s->sender_comm) +
                    " " + when;
  } else {
    const auto &x = std::get<ProcessExit>(death->cause->record);
    if (x.signal) {
      c.v.cause = cause::kKilledBySignal;
      c.v.summary = owner + " was killed by " + signal_name(x.signal) + " (sender not seen) " + when;
    } else {
      c.v.cause = cause::kExited;
      c.v.summary = owner + " exited with code " + std::to_string(x.exit_code) + " " + when;
    }
  }
  if (refused)
    c.v.summary += "; nothing has listened on " + up + " since";
  return true;
}

void name_listener_owner(Context &c) {
  if (c.v.upstream_process)
    return;
  if (auto l = c.facts.listener_at(c.v.upstream, c.fail_ns); l && !l->owners.empty())
    c.v.upstream_process = l->owners.front();
}

bool overflow_rule(Context &c, int64_t from_ns, const std::string &symptom) {
  auto o = c.facts.overflow_between(c.v.upstream, from_ns - kSecond, c.fail_ns + kSampleGranularityNs);
  // ListenOverflows counts every listener of the namespace: only this listener seen full proves it.
  if (!o.queue_full)
    return false;
  c.v.cause = cause::kAcceptQueueOverflow;
  std::string detail;
  if (o.queue_full) {
    const auto &q = std::get<fact::ListenQueue>(o.evidence.front());
    detail = "its accept queue was full (" + std::to_string(q.depth) + "/" + std::to_string(q.max) + ")";
  }
  if (o.overflows_delta) {
    if (!detail.empty())
      detail += " and ";
    detail += "ListenOverflows rose by " + std::to_string(o.overflows_delta);
  }
  c.v.summary = "the listener on " + c.v.upstream + " did not take the connection: " + detail + "; " + symptom;
  for (auto &e : o.evidence)
    c.v.evidence.push_back(e);
  name_listener_owner(c);
  return true;
}

// What an errno proves by itself (the table in causes.cpp), from a syscall record or from nginx's own
// line; `how` says who reported it ("connect() failed with EAGAIN", "(11: Resource temporarily ...)").
bool errno_rule(Context &c, int err, const std::string &how, bool from_kernel) {
  const ErrnoCause *e = errno_cause(err);
  if (!e || !e->cause)
    return false;
  const std::string &up = c.v.upstream;
  std::string_view code = e->cause;
  if (code == cause::kUnixBacklogFull) {
    if (!is_unix(up))
      return false;
    c.v.cause = cause::kUnixBacklogFull;
    c.v.summary = "the backlog of " + up + " was full: " + how + " (every worker busy, listen queue at its limit)";
    if (auto l = c.facts.listener_at(up, c.fail_ns)) {
      c.v.evidence.push_back(sample_item(*l, c.fail_ns));
      if (!l->owners.empty())
        c.v.upstream_process = l->owners.front();
    }
    return true;
  }
  if (code == cause::kNoListener) {
    if (death_rule(c, true, 0))
      return true;
    std::string what = err == ENOENT ? "the socket " + up + " does not exist" : "nothing listens on " + up;
    if (!from_kernel) {
      // Only host samples can prove absence without a kernel record.
      if (!c.facts.sampled(c.fail_ns - 2 * kSecond, c.window_end()) ||
          c.facts.listener_seen(up, c.fail_ns - 2 * kSecond, c.window_end()))
        return false;
      what += " (no listener in host samples around the failure)";
    }
    c.v.cause = cause::kNoListener;
    c.v.summary = what + ": " + how;
    return true;
  }
  // The rest: the cause table says what the errno proves and how to say it.
  const CauseSpec *spec = cause_spec(code);
  if (!spec || !spec->errno_summary)
    return false; // timeouts and resets: proved by the TCP records, not by an errno alone
  c.v.summary = errno_summary(*spec, up, how) + e->hint;
  c.v.cause = std::string(code);
  return true;
}

void syscall_rules(Context &c, const SyscallErr &s) {
  const std::string &up = c.v.upstream;
  std::string call = std::string(enum_name(s.syscall)) + "() failed with " + errno_name(s.err);
  if (errno_rule(c, s.err, call, true))
    return;
  c.v.cause = cause::kUnknown;
  c.v.summary = call + " while connecting to " + (up.empty() ? "the upstream" : up);
}

void conn_rules(Context &c, const ConnFail &k, int64_t boot_to_wall) {
  int64_t start_ns = k.ts_syn_sent ? int64_t(k.ts_syn_sent) + boot_to_wall : c.fail_ns;
  switch (k.failure) {
  case ConnFailure::RstInSynSent:
    if (death_rule(c, true, start_ns))
      return;
    c.v.cause = cause::kNoListener;
    c.v.summary = "nothing listens on " + c.v.upstream + ": the kernel answered nginx's SYN with RST";
    return;
  case ConnFailure::IcmpError: {
    // nginx may have consumed the error (SO_ERROR clears it) before close: then its errno names it.
    int err = k.sk_err ? k.sk_err : (c.in.line && c.in.line->err ? *c.in.line->err : 0);
    if (const ErrnoCause *e = errno_cause(err); e && e->cause == std::string_view(cause::kHostUnreachable)) {
      c.v.cause = cause::kHostUnreachable;
      c.v.summary = "an ICMP error (" + errno_name(err) + ") answered nginx's SYN to " + c.v.upstream;
    } else {
      c.v.cause = cause::kConnectDenied;
      c.v.summary = "an ICMP error (" + errno_name(err) + ") answered nginx's SYN to " + c.v.upstream +
                    ": a firewall REJECT rule";
    }
    for (auto *d : c.facts.netfilter_drops(k, start_ns - kSecond / 10, c.window_end()))
      c.v.evidence.push_back(*d);
    return;
  }
  case ConnFailure::SynTimeout:
  case ConnFailure::SynRetransmit: {
    auto drops = c.facts.netfilter_drops(k, start_ns - kSecond / 10, c.window_end());
    if (!drops.empty()) {
      c.v.cause = cause::kFirewallDrop;
      c.v.summary = "netfilter dropped nginx's SYN to " + c.v.upstream + " (" + std::to_string(drops.size()) +
                    " drop(s), " + std::to_string(k.syn_retrans) + " retransmit(s))";
      for (auto *d : drops)
        c.v.evidence.push_back(*d);
      return;
    }
    std::string symptom = k.syn_retrans ? "nginx's SYN was retransmitted " + std::to_string(k.syn_retrans) + " time(s)"
                                        : "nginx gave up before its SYN was answered";
    if (overflow_rule(c, start_ns, symptom))
      return;
    c.v.cause = cause::kConnectTimeout;
    c.v.summary = "no answer to nginx's SYN to " + c.v.upstream + " (" + std::to_string(k.syn_retrans) +
                  " retransmit(s), no drop seen on this host)";
    return;
  }
  case ConnFailure::RstEstablished:
    if (death_rule(c, false, start_ns))
      return;
    // tcp_abort_on_overflow: the listener resets a handshake its full queue cannot take.
    if (k.bytes_received == 0 && overflow_rule(c, start_ns, "the connection was reset before any response"))
      return;
    c.v.cause = cause::kConnectionReset;
    c.v.summary = "the upstream " + c.v.upstream + " reset the connection (" + k.last_state + ", " +
                  std::to_string(k.bytes_received) + " bytes received)";
    name_listener_owner(c);
    return;
  case ConnFailure::FinBeforeData:
    if (death_rule(c, false, start_ns))
      return;
    c.v.cause = cause::kClosedEarly;
    c.v.summary = "the upstream " + c.v.upstream + " closed the connection before sending a byte";
    name_listener_owner(c);
    return;
  }
}

// No kernel record of the attempt: what nginx's own message and errno prove.
void log_only_rules(Context &c, const nginx::ErrorLogLine &line) {
  using F = nginx::UpstreamFailure;
  const std::string &up = c.v.upstream;
  switch (line.failure) {
  case F::too_big_header:
  case F::invalid_header:
  case F::upstream_sent_invalid:
    c.v.cause = cause::kNoKernelFault;
    c.v.summary = "the connection to " + up + " was healthy; nginx rejected the response: " + line.text;
    name_listener_owner(c);
    return;
  case F::timed_out_reading:
  case F::timed_out_sending:
    if (death_rule(c, false, c.log_only_start(600 * kSecond)))
      return;
    c.v.cause = cause::kNoKernelFault;
    c.v.summary = "the upstream " + up + " accepted the connection but was silent until nginx's timeout";
    name_listener_owner(c);
    return;
  case F::prematurely_closed:
  case F::recv_failed:
  case F::readv_failed:
  case F::send_failed:
    if (death_rule(c, false, c.log_only_start(60 * kSecond)))
      return;
    if (line.failure == F::prematurely_closed) {
      c.v.cause = cause::kClosedEarly;
      c.v.summary = "the upstream " + up + " closed the connection before a full response";
      name_listener_owner(c);
      return;
    }
    break;
  case F::timed_out_connecting:
    c.v.cause = cause::kConnectTimeout;
    c.v.summary = "nginx timed out connecting to " + up + " (no kernel record of the attempt)";
    if (overflow_rule(c, c.fail_ns - 60 * kSecond, "nginx timed out connecting"))
      return;
    return;
  case F::socket_failed:
  case F::connect_failed:
    if (line.err && errno_rule(c, *line.err,
                               line.syscall + "() failed (" + std::to_string(*line.err) + ": " + line.err_text + ")",
                               false))
      return;
    break;
  default:
    break;
  }
  c.v.cause = cause::kUnknown;
  c.v.summary = "nginx reported \"" + line.text + "\" for " + (up.empty() ? "the upstream" : up) +
                " and the kernel recorded nothing about the attempt";
}

// nginx's line called for a kernel record (causes.h: one whose kind agrees) and none came: say so,
// never borrow a record of another kind.
void note_missing_record(Context &c, const nginx::ErrorLogLine &line) {
  std::vector<std::string> expected;
  auto kinds = line_kinds(line);
  for (int i = 0; i < kinds.n; ++i)
    expected.push_back(std::string(enum_name(kinds.kinds[i].kind)) +
                       (kinds.kinds[i].err ? ":" + errno_name(kinds.kinds[i].err) : ""));
  c.v.evidence.push_back(fact::KernelRecordMissing{c.in.line_ns, expected, line.pid, c.v.upstream});
  c.v.summary += " (the kernel's record of this attempt is missing: no " + expected.front() +
                 " record from this worker to " + (c.v.upstream.empty() ? "the upstream" : c.v.upstream) +
                 " around nginx's line)";
}

} // namespace

Verdict decide(const RuleInput &in, const Facts &facts, const CorrelatorOptions &opts) {
  Verdict v;
  v.wall_ns = in.kernel ? in.kernel_fail_ns : in.line_ns;
  if (in.line)
    v.upstream = in.line->upstream_path_ambiguous ? facts.unix_path_prefix_of(in.line->upstream_address, opts)
                                                  : in.line->upstream_address;
  if (v.upstream.empty() && in.kernel) {
    if (const auto *k = std::get_if<ConnFail>(&in.kernel->record))
      v.upstream = k->remote.str();
    else if (const auto *s = std::get_if<SyscallErr>(&in.kernel->record))
      v.upstream = s->target;
  }
  if (in.kernel)
    v.evidence.push_back(*in.kernel);
  Context c{in, facts, v, v.wall_ns};

  if (in.line && in.line->failure == nginx::UpstreamFailure::no_live_upstreams) {
    v.cause = cause::kNoLiveUpstreams;
    v.summary = "every server of upstream \"" + v.upstream + "\" was marked down by earlier failures";
    return v;
  }
  if (in.kernel) {
    if (const auto *s = std::get_if<SyscallErr>(&in.kernel->record)) {
      syscall_rules(c, *s);
      return v;
    }
    // boot->wall offset from the record itself: its wall time minus its boot time.
    int64_t boot_to_wall = in.kernel->wall_ns - int64_t(in.kernel->boot_ns);
    conn_rules(c, std::get<ConnFail>(in.kernel->record), boot_to_wall);
    return v;
  }
  if (in.line) {
    log_only_rules(c, *in.line);
    if (in.kernel_record_missing)
      note_missing_record(c, *in.line);
    return v;
  }
  v.cause = cause::kUnknown;
  v.summary = "nginx logged a gateway error but neither its error log nor the kernel recorded a failed attempt";
  return v;
}

} // namespace why502
