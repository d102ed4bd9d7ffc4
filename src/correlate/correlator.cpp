// The join: nginx error lines (one per failed attempt) are matched to the
// kernel's record of the same attempt, grouped into requests by the access
// lines, and decided by the cause rules in rules.cpp.
//
// Exact join: a line matches only a record of the same worker, the same
// upstream and a kind that agrees with what nginx reports (causes.h). Per
// (worker, upstream, kind) both sides wait in FIFO queues, so the k-th such
// line of a worker takes the k-th such record, in linear time. A line whose
// agreeing record does not come is decided without one and says so.
//
// Order: kernel records of one key are queued in the order of their failure
// time (the RST or FIN's arrival, the close otherwise). On one worker that is
// the order in which it saw the failures: RSTs and FINs wake the worker's
// epoll in arrival order, and refusals and timeouts are closed by the worker
// itself, in its own context, in the order it logs them.
//
// Storms: state is capped (every eviction counted in the stats), and verdict
// lines are rate-limited per second of failures; beyond the rate one
// aggregated line per (cause, upstream, second) carries the count.
#include "why502/correlate.h"

#include <algorithm>
#include <tuple>

#include "base/time.h"
#include "correlate/causes.h"
#include "correlate/rules.h"

namespace why502 {

using nlohmann::json;

namespace {

constexpr int64_t kSecond = 1000000000;
// nginx stamps a line with its cached second, so the kernel record of the same attempt lies in
// [line second - 1 s, line second + 2 s]: before it for an RST or a refusal (the kernel saw it first;
// the cached second may have turned while nginx handled the event), after it for a FIN (nginx logs,
// then closes) or a record emitted at close.
constexpr int64_t kRecordBeforeLineNs = kSecond;
constexpr int64_t kRecordAfterLineNs = 2 * kSecond;
// Kernel records reach the correlator within milliseconds of the fact (ring buffer, polled at least
// every 100 ms); a line still unmatched this long after its window closed has no record.
constexpr int64_t kRecordLatencyNs = kSecond / 2;
// An unclaimed kernel record waits this long for its line, then counts as unmatched.
constexpr int64_t kRecordKeepNs = 5 * kSecond;
// Facts up to the end of a verdict's evidence window (rules.h) have reached the correlator this long
// after it ends: the ring buffer wakes the watcher as each record is submitted (adaptive wakeup),
// records are polled before every step, and the host sample a failure triggers is taken in the
// step that reads its record; replay feeds inputs in time order. What is left is a record another
// CPU submitted a moment late: microseconds, bounded generously.
constexpr int64_t kFactsLatencyNs = kSecond / 50;
// Orphan access lines (a 502/504 no error line explains) wait this long for the kernel's record.
constexpr int64_t kOrphanWaitNs = 3 * kSecond;
// Bounds (a storm is 10k+ failures a second; these hold a few seconds of one).
// At ~2.5 KB an attempt (its nginx line and kernel record), 16k of each stay under 64 MiB.
constexpr size_t kMaxPendingRecords = 16384;
constexpr size_t kMaxPendingAttempts = 16384;
constexpr size_t kMaxOrphans = 10000;
// How far an access line looks past requests of other connections in a shared bucket.
constexpr size_t kMaxBucketScan = 64;
// Per-request verdict lines per second of failures. Beyond it (a storm), the rest of that second is
// reported as one aggregated line per (cause, upstream) with a count: an operator can read 200 lines a
// second of a file, not 16,000, and each line costs the output sink.
constexpr uint64_t kVerdictLinesPerSecond = 200;
// Aggregates of a second are written once nothing pending can still add to it.
constexpr int64_t kAggregateMarginNs = 2 * kSecond;

uint32_t kernel_pid(const KernelEvent &ev) {
  if (const auto *c = std::get_if<ConnFail>(&ev.record))
    return c->pid;
  if (const auto *s = std::get_if<SyscallErr>(&ev.record))
    return s->pid;
  return 0;
}

// The upstream a kernel failure is about, in the form nginx prints it ("" for socket()).
std::string kernel_upstream(const KernelEvent &ev) {
  if (const auto *c = std::get_if<ConnFail>(&ev.record))
    return c->remote.str();
  if (const auto *s = std::get_if<SyscallErr>(&ev.record))
    return s->target;
  return "";
}

// When the kernel saw the attempt fail: the RST's or FIN's arrival, else the record itself (the
// close, or the syscall's return). Evidence windows end here (causality).
int64_t kernel_fail_ns(const KernelEvent &ev) {
  int64_t boot_to_wall = ev.wall_ns - int64_t(ev.boot_ns);
  if (const auto *c = std::get_if<ConnFail>(&ev.record)) {
    if (c->failure == ConnFailure::RstEstablished && c->ts_reset)
      return int64_t(c->ts_reset) + boot_to_wall;
    if (c->failure == ConnFailure::FinBeforeData && c->ts_fin_received)
      return int64_t(c->ts_fin_received) + boot_to_wall;
  }
  return ev.wall_ns;
}

using JoinKey = std::tuple<uint32_t, std::string, int, int>; // worker, upstream, kind, errno

JoinKey join_key(uint32_t pid, const std::string &upstream, const RecordKind &k) {
  return {pid, upstream, int(k.kind), k.err};
}

} // namespace

json to_json(const Verdict &v) {
  json j;
  j["type"] = "verdict";
  j["id"] = v.id;
  j["time"] = base::format_wall_time(v.wall_ns);
  j["cause"] = v.cause;
  j["summary"] = v.summary;
  j["upstream"] = v.upstream;
  j["nginx_pid"] = v.nginx_pid;
  j["status"] = v.status ? json(*v.status) : json(nullptr);
  j["nginx_error"] = v.nginx_error ? json(*v.nginx_error) : json(nullptr);
  if (v.request)
    j["request"] = {{"client", v.request->client}, {"request", v.request->request}, {"host", v.request->host}};
  else
    j["request"] = nullptr;
  if (v.upstream_process)
    j["upstream_process"] = {{"pid", v.upstream_process->pid}, {"comm", v.upstream_process->comm}};
  else
    j["upstream_process"] = nullptr;
  if (!v.related.empty())
    j["related"] = v.related;
  j["attempts"] = v.attempts;
  j["count"] = v.count;
  j["evidence"] = json::array();
  for (const auto &e : v.evidence)
    j["evidence"].push_back(to_json(e));
  return j;
}

struct Correlator::Impl {
  CorrelatorOptions opts;
  CorrelatorStats stats;
  Facts facts; // host-wide history the rules read
  uint64_t next_id = 1;
  std::map<std::string, int> servers_of_group_with; // upstream address -> servers of its largest group

  struct KFail {
    KernelEvent ev;
    int64_t fail_ns = 0;
    uint32_t pid = 0;
    std::string upstream;
    RecordKind kind{};
    bool claimed = false;
    bool gone = false; // evicted or expired
  };
  using KFailP = std::shared_ptr<KFail>;

  struct Attempt {
    // Its own allocation, released once the request is decided: the indexes may still point at a
    // decided attempt for a while, and then it costs a few bytes, not its line.
    std::unique_ptr<nginx::ErrorLogLine> line;
    int64_t line_ns = 0;
    LineKinds kinds;
    KFailP kfail;
    bool resolved = false; // matched, or no agreeing record will come (or none is expected)
    bool missing = false;  // an agreeing record was expected and never came
    bool taken = false;    // grouped into a request
    uint64_t seq = 0;      // arrival order
  };
  using AttemptP = std::shared_ptr<Attempt>;

  struct Request {
    std::vector<AttemptP> attempts;
    std::optional<int> status;
    bool access_seen = false;
    std::optional<Verdict::Request> access_request; // from the access line when the error line lacks it
    std::optional<int64_t> started_ns, ended_ns;    // from the access line's $msec and $request_time
  };

  // The join's two sides, per (worker, upstream, kind).
  std::map<JoinKey, std::deque<KFailP>> records;
  std::map<JoinKey, std::deque<AttemptP>> waiting;
  // Arrival order, for expiry and the cap. Weak: a claimed record belongs to its attempt alone.
  std::deque<std::weak_ptr<KFail>> record_order;
  size_t unclaimed_records = 0; // pending in the key queues (the cap)
  std::deque<AttemptP> waiting_order; // arrival order: a line's window closing

  // Attempts not yet in a request, by the keys an access line can name.
  // A connection's bucket holds one or a few attempts: a vector (a deque costs ~600 bytes empty).
  std::map<std::pair<uint32_t, uint64_t>, std::vector<AttemptP>> by_conn;        // worker, connection
  // Per worker: a storm's requests share one client and request line, and one worker's attempts come
  // in runs the other worker's access lines would have to scan past.
  using TextKey = std::tuple<std::string, std::string, uint32_t>; // client, request line, worker
  std::map<TextKey, std::deque<AttemptP>> by_text;
  uint64_t next_seq = 0;
  // Requests decided before their access line came (the wait or the cap ran out): a late access line
  // closes one of these instead of becoming a second, orphan verdict. Forgotten after a minute.
  std::map<TextKey, uint64_t> decided_unclosed;
  std::deque<std::pair<int64_t, TextKey>> decided_unclosed_order;
  std::deque<AttemptP> attempt_order;                                          // arrival order
  size_t untaken = 0;

  std::deque<Request> to_decide; // formed requests, decided in order once their facts are in

  struct PendingAccess {
    nginx::AccessLogLine line;
    int64_t wall_ns;
  };
  std::deque<PendingAccess> orphan_access; // 502/504 lines no error line claimed

  // Verdict lines per second of failures, and the aggregates of seconds over the rate.
  struct Second {
    uint64_t lines = 0;
    uint64_t aggregated = 0;
    std::map<std::pair<std::string, std::string>, Verdict> aggregates; // (cause, upstream) -> exemplar
  };
  std::map<int64_t, Second> seconds;
  bool storm = false;
  int64_t storm_start_sec = 0, storm_last_sec = 0;
  uint64_t storm_aggregated = 0;
  std::vector<json> notes;
  // Notes wait for take_notes(); a caller that never asks (record, demo) must not grow them forever.
  static constexpr size_t kMaxNotes = 64;
  void note(json j) {
    if (notes.size() >= kMaxNotes)
      notes.erase(notes.begin());
    notes.push_back(std::move(j));
  }

  // ------------------------------------------------------------ join

  void claim(Attempt &a, const KFailP &k) {
    a.kfail = k;
    a.resolved = true;
    k->claimed = true;
    --unclaimed_records;
  }

  void resolve_missing(Attempt &a) {
    if (a.resolved)
      return;
    a.resolved = true;
    a.missing = true;
    ++stats.lines_missing_kernel_record;
  }

  std::string line_upstream(const nginx::ErrorLogLine &l) const {
    return l.failure == nginx::UpstreamFailure::socket_failed ? std::string() : l.upstream_address;
  }

  // A new kernel record: the oldest waiting line of its key whose window holds it takes it.
  void offer_record(const KFailP &k) {
    auto it = waiting.find(join_key(k->pid, k->upstream, k->kind));
    if (it != waiting.end()) {
      auto &q = it->second;
      while (!q.empty()) {
        Attempt &a = *q.front();
        if (a.resolved) {
          q.pop_front();
          continue;
        }
        if (k->fail_ns > a.line_ns + kRecordAfterLineNs) { // records come in time order: none will fit it
          resolve_missing(a);
          q.pop_front();
          continue;
        }
        if (k->fail_ns >= a.line_ns - kRecordBeforeLineNs) {
          claim(a, k);
          q.pop_front();
        }
        break; // else too early for every waiting line: an attempt nginx did not log (kept, counted later)
      }
      if (q.empty())
        waiting.erase(it);
    }
    if (k->claimed)
      return;
    auto &q = records[join_key(k->pid, k->upstream, k->kind)];
    // Usually appended; a record from another CPU may arrive a moment out of order.
    auto pos = q.end();
    while (pos != q.begin() && (*std::prev(pos))->fail_ns > k->fail_ns)
      --pos;
    q.insert(pos, k);
  }

  // A new line: the oldest agreeing record in its window, else it waits for one.
  void offer_line(const AttemptP &a) {
    if (a->kinds.n == 0) {
      a->resolved = true; // nginx reports something no kernel record describes
      return;
    }
    uint32_t pid = uint32_t(a->line->pid);
    std::string up = line_upstream(*a->line);
    std::deque<KFailP> *best = nullptr;
    for (int i = 0; i < a->kinds.n; ++i) {
      auto it = records.find(join_key(pid, up, a->kinds.kinds[i]));
      if (it == records.end())
        continue;
      auto &q = it->second;
      // Claimed, expired, or too early for this line (and so for every later line of the key).
      while (!q.empty() && (q.front()->claimed || q.front()->gone || q.front()->fail_ns < a->line_ns - kRecordBeforeLineNs))
        q.pop_front();
      if (q.empty()) {
        records.erase(it);
        continue;
      }
      if (q.front()->fail_ns <= a->line_ns + kRecordAfterLineNs &&
          (!best || q.front()->fail_ns < best->front()->fail_ns))
        best = &q;
    }
    if (best) {
      KFailP k = best->front();
      best->pop_front();
      claim(*a, k);
      return;
    }
    for (int i = 0; i < a->kinds.n; ++i)
      waiting[join_key(pid, up, a->kinds.kinds[i])].push_back(a);
    waiting_order.push_back(a);
  }

  // Lines whose window closed without a record; records nobody claimed.
  void expire_join(int64_t now, bool flush) {
    while (!waiting_order.empty()) {
      Attempt &a = *waiting_order.front();
      if (!a.resolved && !flush && now < a.line_ns + kRecordAfterLineNs + kRecordLatencyNs)
        break;
      resolve_missing(a);
      waiting_order.pop_front();
    }
    if (waiting_order.empty())
      waiting.clear(); // every entry is resolved
    // Without an error log a record is a verdict of its own once its facts have settled.
    int64_t keep = opts.error_log_available ? kRecordKeepNs : opts.settle_ns;
    while (!record_order.empty()) {
      KFailP kp = record_order.front().lock();
      if (!kp || kp->claimed || kp->gone) {
        record_order.pop_front();
        continue;
      }
      KFail &k = *kp;
      if (!flush && now < k.fail_ns + keep && unclaimed_records <= kMaxPendingRecords)
        break;
      unclaimed_record(k, now < k.fail_ns + keep && !flush);
      k.gone = true;
      --unclaimed_records;
      record_order.pop_front();
      // Out of its key's queue too (it is at or near the front: the queues are in time order).
      if (auto it = records.find(join_key(k.pid, k.upstream, k.kind)); it != records.end()) {
        auto &q = it->second;
        while (!q.empty() && (q.front()->claimed || q.front()->gone))
          q.pop_front();
        if (q.empty())
          records.erase(it);
      }
    }
    if (record_order.empty()) {
      records.clear();
      unclaimed_records = 0;
    }
  }

  std::vector<Verdict> *out = nullptr; // where verdicts of the current step go

  void unclaimed_record(KFail &k, bool evicted) {
    if (evicted)
      ++stats.kernel_records_evicted;
    if (opts.error_log_available) {
      ++stats.kernel_failures_unmatched;
      return;
    }
    RuleInput in;
    in.kernel = &k.ev;
    in.kernel_fail_ns = k.fail_ns;
    Verdict v = decide(in, facts, opts);
    v.nginx_pid = k.pid;
    emit(std::move(v));
  }

  // ------------------------------------------------------------ requests

  int max_attempts_for(const std::string &address) const {
    if (opts.max_attempts > 0)
      return opts.max_attempts;
    auto it = servers_of_group_with.find(address);
    return it == servers_of_group_with.end() ? 0 : it->second;
  }

  // Was `a` on a connection nginx had reused (upstream keepalive)? nginx retries such a failure on the
  // same server, so the next attempt of one request may go to the same address.
  static bool reused_connection(const Attempt &a) {
    if (!a.kfail)
      return false;
    const auto *c = std::get_if<ConnFail>(&a.kfail->ev.record);
    return c && c->bytes_received > 0;
  }

  // Does `next` continue the request of `group`? One request: one worker, one client connection, one
  // request line, each server tried at most once (nginx's tried-peers bitmap; a reused keepalive
  // connection is the exception), at most proxy_next_upstream_tries (or the group's server count).
  bool continues(const std::vector<AttemptP> &group, const Attempt &next) const {
    const auto &first = *group.front()->line;
    if (next.line->pid != first.pid || next.line->connection != first.connection || next.line->request != first.request)
      return false;
    int max = max_attempts_for(next.line->upstream_address);
    if (max > 0 && int(group.size()) >= max)
      return false;
    for (const auto &g : group)
      if (g->line->upstream_address == next.line->upstream_address && !reused_connection(*g))
        return false;
    return true;
  }

  // Takes the attempts of one request from the front of `q`: `n` of them when the access line says
  // how many failed, else the first one and those that continue it.
  template <typename Bucket> static void prune(Bucket &q) {
    auto first = std::find_if(q.begin(), q.end(), [](const AttemptP &a) { return !a->taken; });
    q.erase(q.begin(), first);
  }

  template <typename Bucket>
  std::vector<AttemptP> take_group(Bucket &q, int n, std::optional<uint32_t> pid, std::optional<int64_t> not_after_ns) {
    prune(q);
    std::vector<AttemptP> group;
    size_t scanned = 0;
    for (auto &a : q) {
      if (++scanned > kMaxBucketScan)
        break;
      if (a->taken)
        continue;
      if (group.empty()) {
        if ((pid && uint32_t(a->line->pid) != *pid) || (not_after_ns && a->line_ns > *not_after_ns))
          continue;
        group.push_back(a);
      } else if (n > 0 ? (a->line->pid == group.front()->line->pid && a->line->connection == group.front()->line->connection)
                       : continues(group, *a)) {
        group.push_back(a);
      } else if (n <= 0 && a->line->pid == group.front()->line->pid &&
                 a->line->connection == group.front()->line->connection) {
        break; // the same connection's next request
      }
      if (n > 0 && int(group.size()) >= n)
        break;
    }
    for (auto &a : group) {
      a->taken = true;
      --untaken;
    }
    prune(q);
    return group;
  }

  void form(std::vector<AttemptP> group, std::optional<int> status, bool access_seen,
            std::optional<Verdict::Request> access_request = std::nullopt,
            std::optional<int64_t> started_ns = std::nullopt, std::optional<int64_t> ended_ns = std::nullopt) {
    if (group.empty())
      return;
    // The attempts left the indexes' fronts as taken; prune both buckets of the first one.
    const auto &l = *group.front()->line;
    if (auto it = by_conn.find({uint32_t(l.pid), l.connection.value_or(0)}); it != by_conn.end()) {
      prune(it->second);
      if (it->second.empty())
        by_conn.erase(it);
    }
    if (auto it = by_text.find({l.client, l.request, uint32_t(l.pid)}); it != by_text.end()) {
      prune(it->second);
      if (it->second.empty())
        by_text.erase(it);
    }
    Request r;
    r.attempts = std::move(group);
    r.status = status;
    r.access_seen = access_seen;
    r.access_request = std::move(access_request);
    r.started_ns = started_ns;
    r.ended_ns = ended_ns;
    to_decide.push_back(std::move(r));
  }

  // Attempts no access line claimed in time are requests of their own (no status).
  void expire_attempts(int64_t now, bool flush) {
    int64_t wait = (opts.access_log_available ? opts.access_wait_ns : opts.settle_ns) + kSecond;
    while (!attempt_order.empty()) {
      AttemptP a = attempt_order.front();
      if (a->taken) {
        attempt_order.pop_front();
        continue;
      }
      bool over_cap = untaken > kMaxPendingAttempts;
      if (!flush && !over_cap && now < a->line_ns + wait)
        break;
      if (over_cap && opts.access_log_available)
        ++stats.requests_decided_early;
      auto &q = by_conn[{uint32_t(a->line->pid), a->line->connection.value_or(0)}];
      auto group = take_group(q, 0, std::nullopt, std::nullopt);
      if (group.empty() || group.front() != a) { // not at its bucket's front (cannot happen): alone
        for (auto &g : group) {
          g->taken = false;
          ++untaken;
        }
        a->taken = true;
        --untaken;
        group = {a};
      }
      if (opts.access_log_available) {
        TextKey key{a->line->client, a->line->request, uint32_t(a->line->pid)};
        ++decided_unclosed[key];
        decided_unclosed_order.emplace_back(a->line_ns, std::move(key));
      }
      form(std::move(group), std::nullopt, false);
      attempt_order.pop_front();
    }
  }

  // When every fact a verdict on `a` may read has happened (rules.h: the windows end there).
  int64_t evidence_end(const Attempt &a) const {
    if (!a.kfail)
      return a.line_ns + kNginxClockGranularityNs + kSampleGranularityNs;
    // Queue samples are read for timeouts and for resets before any response (accept_queue_overflow).
    const KFail &k = *a.kfail;
    bool reads_queue_samples = k.kind.kind == JoinKind::SynTimeout;
    if (const auto *c = std::get_if<ConnFail>(&k.ev.record); c && c->failure == ConnFailure::RstEstablished)
      reads_queue_samples |= c->bytes_received == 0;
    return k.fail_ns + (reads_queue_samples ? kSampleGranularityNs : kKernelClockGranularityNs);
  }

  bool ready(const Request &r, int64_t now) const {
    for (const auto &a : r.attempts)
      if (!a->resolved || now < evidence_end(*a) + kFactsLatencyNs)
        return false;
    return true;
  }

  Verdict make_verdict(const Request &r) {
    const Attempt &last = *r.attempts.back();
    RuleInput in;
    in.line = last.line.get();
    in.line_ns = last.line_ns;
    in.kernel = last.kfail ? &last.kfail->ev : nullptr;
    in.kernel_fail_ns = last.kfail ? last.kfail->fail_ns : 0;
    in.kernel_record_missing = last.missing;
    in.request_start_ns = r.started_ns;
    in.request_end_ns = r.ended_ns;
    Verdict v = decide(in, facts, opts);
    v.nginx_pid = uint32_t(last.line->pid);
    v.status = r.status;
    v.nginx_error = last.line->message;
    if (!last.line->client.empty() || !last.line->request.empty())
      v.request = Verdict::Request{last.line->client, last.line->request, last.line->host};
    else if (r.access_request)
      v.request = r.access_request;
    v.attempts = int(r.attempts.size());
    // Earlier attempts of the same request are evidence too (proxy_next_upstream).
    for (size_t i = 0; i + 1 < r.attempts.size(); ++i) {
      const Attempt &a = *r.attempts[i];
      fact::EarlierAttempt prior{a.line_ns, a.line->upstream_address, a.line->message, std::nullopt, false};
      if (a.kfail)
        prior.kernel = a.kfail->ev;
      else if (a.missing)
        prior.kernel_missing = true;
      v.evidence.push_back(std::move(prior));
    }
    return v;
  }

  void decide_requests(int64_t now, bool flush) {
    while (!to_decide.empty()) {
      Request &r = to_decide.front();
      if (!flush && !ready(r, now))
        break;
      // A retry succeeded (any status below 500): not a failed request. A 500 stays: nginx answers
      // 500, not 502, when it cannot even create the upstream socket (fd_limit).
      if (r.access_seen && r.status && *r.status < 500)
        ++stats.recovered_requests;
      else
        emit(make_verdict(r));
      for (auto &a : r.attempts) {
        a->line.reset();
        a->kfail.reset();
      }
      to_decide.pop_front();
    }
  }

  // ------------------------------------------------------------ orphan access lines

  Verdict orphan_access_verdict(const PendingAccess &p) {
    // Without an error line, only the same worker's kernel failure (when $pid is logged) may speak for it.
    RuleInput in;
    in.line_ns = p.wall_ns;
    std::string addr = p.line.upstream.empty() ? "" : p.line.upstream.back().addr;
    if (p.line.pid && !addr.empty()) {
      uint32_t pid = uint32_t(*p.line.pid);
      for (auto it = records.lower_bound({pid, addr, 0, 0});
           it != records.end() && std::get<0>(it->first) == pid && std::get<1>(it->first) == addr; ++it)
        for (auto &k : it->second)
          if (!k->claimed && !k->gone && k->fail_ns >= p.wall_ns - 2 * kSecond && k->fail_ns <= p.wall_ns + kSecond) {
            k->claimed = true;
            --unclaimed_records;
            in.kernel = &k->ev;
            in.kernel_fail_ns = k->fail_ns;
            goto found;
          }
    }
  found:
    Verdict v = decide(in, facts, opts);
    if (v.upstream.empty())
      v.upstream = addr;
    v.nginx_pid = p.line.pid ? uint32_t(*p.line.pid) : 0;
    v.status = p.line.status;
    if (!p.line.request.empty() || !p.line.remote_addr.empty())
      v.request = Verdict::Request{p.line.remote_addr, p.line.request, p.line.host};
    return v;
  }

  void decide_orphans(int64_t now, bool flush) {
    while (!orphan_access.empty() &&
           (flush || orphan_access.size() > kMaxOrphans || now >= orphan_access.front().wall_ns + kOrphanWaitNs)) {
      emit(orphan_access_verdict(orphan_access.front()));
      orphan_access.pop_front();
    }
  }

  // ------------------------------------------------------------ output, rate and storms

  void write_line(Verdict v) {
    v.id = next_id++;
    if (v.cause == cause::kNoLiveUpstreams)
      v.related = facts.related_verdicts(v, opts);
    facts.remember_verdict(v);
    ++stats.verdict_lines;
    out->push_back(std::move(v));
  }

  void emit(Verdict v) {
    v.count = 1;
    ++stats.verdicts;
    ++stats.by_cause[v.cause];
    ++stats.by_cause_upstream[{v.cause, v.upstream}];
    int64_t sec = v.wall_ns / kSecond;
    Second &s = seconds[sec];
    if (s.lines < kVerdictLinesPerSecond) {
      ++s.lines;
      write_line(std::move(v));
      return;
    }
    if (!storm) {
      storm = true;
      storm_start_sec = sec;
      storm_aggregated = 0;
      ++stats.storms;
      note({{"type", "storm"},
                       {"state", "start"},
                       {"time", base::format_wall_time(sec * kSecond)},
                       {"verdict_lines_per_second", kVerdictLinesPerSecond},
                       {"summary", "more than " + std::to_string(kVerdictLinesPerSecond) +
                                       " failed requests in one second: from now on, one verdict line per cause, "
                                       "upstream and second, with a count"}});
    }
    storm_last_sec = std::max(storm_last_sec, sec);
    ++s.aggregated;
    ++storm_aggregated;
    ++stats.aggregated_requests;
    auto [it, fresh] = s.aggregates.try_emplace({v.cause, v.upstream});
    if (fresh)
      it->second = std::move(v); // the exemplar: the first of its kind in the second
    else
      ++it->second.count;
  }

  // The oldest failure time anything pending may still report.
  int64_t pending_floor(int64_t now) const {
    int64_t floor = now;
    if (!to_decide.empty())
      floor = std::min(floor, to_decide.front().attempts.front()->line_ns - kRecordBeforeLineNs);
    for (const auto &a : attempt_order)
      if (!a->taken) {
        floor = std::min(floor, a->line_ns - kRecordBeforeLineNs);
        break;
      }
    if (!orphan_access.empty())
      floor = std::min(floor, orphan_access.front().wall_ns - 2 * kSecond);
    if (!opts.error_log_available && !record_order.empty())
      if (auto k = record_order.front().lock())
        floor = std::min(floor, k->fail_ns);
    return floor;
  }

  void flush_seconds(int64_t now, bool flush) {
    int64_t floor_sec = flush ? INT64_MAX : (pending_floor(now) - kAggregateMarginNs) / kSecond;
    while (!seconds.empty() && seconds.begin()->first < floor_sec) {
      auto node = seconds.extract(seconds.begin());
      Second &s = node.mapped();
      for (auto &[key, v] : s.aggregates) {
        ++stats.aggregate_lines;
        v.summary = std::to_string(v.count) + " failed requests in this second (" + v.cause + ", " +
                    (v.upstream.empty() ? "?" : v.upstream) + "); for example: " + v.summary;
        write_line(std::move(v));
      }
      if (storm && s.aggregated == 0 && node.key() > storm_last_sec)
        end_storm(node.key());
    }
    // A storm whose failures simply stopped ends with its last second.
    if (storm && (flush || storm_last_sec < floor_sec - 1))
      end_storm(storm_last_sec + 1);
  }

  void end_storm(int64_t sec) {
    storm = false;
    note({{"type", "storm"},
                     {"state", "end"},
                     {"time", base::format_wall_time(sec * kSecond)},
                     {"started", base::format_wall_time(storm_start_sec * kSecond)},
                     {"aggregated_requests", storm_aggregated},
                     {"summary", "per-request verdict lines again"}});
  }

  void expire_decided_unclosed(int64_t now) {
    while (!decided_unclosed_order.empty() && (decided_unclosed_order.front().first < now - 60 * kSecond ||
                                               decided_unclosed_order.size() > kMaxPendingAttempts)) {
      auto it = decided_unclosed.find(decided_unclosed_order.front().second);
      if (it != decided_unclosed.end() && --it->second == 0)
        decided_unclosed.erase(it);
      decided_unclosed_order.pop_front();
    }
  }

  // The access line of a request already decided without it?
  bool closes_decided(const std::string &client, const std::string &request, std::optional<uint32_t> pid) {
    auto it = pid ? decided_unclosed.find({client, request, *pid}) : decided_unclosed.lower_bound({client, request, 0});
    if (it == decided_unclosed.end() || std::get<0>(it->first) != client || std::get<1>(it->first) != request)
      return false;
    if (--it->second == 0)
      decided_unclosed.erase(it);
    return true;
  }

  // The bucket of the oldest open attempt with this client and request line (any worker when the
  // access log has no $pid).
  std::deque<AttemptP> *text_bucket(const std::string &client, const std::string &request, std::optional<uint32_t> pid) {
    if (pid) {
      auto it = by_text.find({client, request, *pid});
      return it == by_text.end() ? nullptr : &it->second;
    }
    std::deque<AttemptP> *best = nullptr;
    uint64_t best_seq = UINT64_MAX;
    for (auto it = by_text.lower_bound({client, request, 0});
         it != by_text.end() && std::get<0>(it->first) == client && std::get<1>(it->first) == request; ++it) {
      prune(it->second);
      if (!it->second.empty() && it->second.front()->seq < best_seq) {
        best = &it->second;
        best_seq = it->second.front()->seq;
      }
    }
    return best;
  }

  // ------------------------------------------------------------ step

  std::vector<Verdict> step(int64_t now, bool flush) {
    std::vector<Verdict> result;
    out = &result;
    expire_join(now, flush);
    expire_attempts(now, flush);
    decide_requests(now, flush);
    decide_orphans(now, flush);
    expire_decided_unclosed(now);
    if (flush) // what the joins above let go
      expire_join(now, true);
    flush_seconds(now, flush);
    facts.expire(now - opts.history_ns);
    out = nullptr;
    return result;
  }
};

Correlator::Correlator(CorrelatorOptions opts) : impl_(std::make_unique<Impl>()) {
  impl_->opts = std::move(opts);
  for (const auto &[name, servers] : impl_->opts.upstream_groups)
    for (const auto &s : servers) {
      int &n = impl_->servers_of_group_with[s];
      n = std::max(n, int(servers.size()));
    }
}
Correlator::~Correlator() = default;

void Correlator::add_kernel(const KernelEvent &ev) {
  auto kind = record_kind(ev);
  if (!kind) {
    impl_->facts.add_kernel(ev);
    return;
  }
  std::shared_ptr<Impl::KFail> k(new Impl::KFail); // not make_shared: record_order's weak_ptr must not pin it
  k->ev = ev;
  k->fail_ns = kernel_fail_ns(ev);
  k->pid = kernel_pid(ev);
  k->upstream = kernel_upstream(ev);
  k->kind = *kind;
  ++impl_->stats.kernel_failures;
  impl_->record_order.push_back(k);
  ++impl_->unclaimed_records;
  impl_->offer_record(k); // without an error log no line waits: it stays queued until it is a verdict
}

void Correlator::add_error_line(const nginx::ErrorLogLine &line, int64_t wall_ns, bool kernel_record_possible) {
  if (line.failure == nginx::UpstreamFailure::none)
    return;
  auto &m = *impl_;
  ++m.stats.error_lines;
  auto a = std::make_shared<Impl::Attempt>(); // small: its line is a separate allocation
  a->line = std::make_unique<nginx::ErrorLogLine>(line);
  // Pending attempts are most of the correlator's memory in a storm: drop what no rule or sink reads.
  a->line->server.clear();
  a->line->referrer.clear();
  a->line->subrequest.clear();
  a->line->upstream.clear();
  a->line_ns = wall_ns;
  if (kernel_record_possible)
    a->kinds = line_kinds(line);
  m.offer_line(a);
  m.by_conn[{uint32_t(line.pid), line.connection.value_or(0)}].push_back(a);
  a->seq = m.next_seq++;
  m.by_text[{line.client, line.request, uint32_t(line.pid)}].push_back(a);
  m.attempt_order.push_back(a);
  ++m.untaken;
}

void Correlator::add_access_line(const nginx::AccessLogLine &line, int64_t wall_ns) {
  auto &m = *impl_;
  // With $upstream_status logged, the line says how many attempts failed with an error nginx logs
  // (502/504, or no status at all); a line whose attempts all succeeded closes nothing.
  int failed = -1;
  if (!line.upstream.empty()) {
    bool any_failed = false;
    failed = 0;
    for (const auto &a : line.upstream) {
      any_failed |= !a.status || *a.status >= 500;
      failed += !a.status || *a.status == 502 || *a.status == 504;
    }
    if (!any_failed)
      return;
  }
  std::optional<uint32_t> pid;
  if (line.pid)
    pid = uint32_t(*line.pid);
  std::vector<Impl::AttemptP> group;
  if (failed != 0) {
    // The access line is written when the request ends: after its error lines (nginx's second).
    std::optional<int64_t> not_after = wall_ns + kSecond;
    if (line.pid && line.connection) {
      if (auto it = m.by_conn.find({*pid, *line.connection}); it != m.by_conn.end())
        group = m.take_group(it->second, failed, pid, not_after);
    } else if (auto *q = m.text_bucket(line.remote_addr, line.request, pid)) {
      group = m.take_group(*q, failed, pid, not_after);
    } else if (line.remote_addr.empty() || line.request.empty()) {
      // A format without the client or the request line: the oldest open attempt of the worker.
      for (auto &[key, q] : m.by_conn)
        if (!pid || key.first == *pid) {
          group = m.take_group(q, failed, pid, not_after);
          if (!group.empty())
            break;
        }
    }
  }
  if (!group.empty()) {
    std::optional<Verdict::Request> req;
    if (!line.request.empty() || !line.remote_addr.empty())
      req = Verdict::Request{line.remote_addr, line.request, line.host};
    // $msec (milliseconds) times the request's end precisely; $request_time its start.
    std::optional<int64_t> started, ended;
    if (line.time_ms) {
      ended = *line.time_ms * 1000000;
      if (line.request_time)
        started = *ended - int64_t(*line.request_time * 1e9);
    }
    m.form(std::move(group), line.status, true, std::move(req), started, ended);
    return;
  }
  if (failed != 0 && m.closes_decided(line.remote_addr, line.request, pid))
    return;
  if (line.is_gateway_error())
    m.orphan_access.push_back({line, wall_ns});
}

bool Correlator::wants_access_line(std::optional<int> status) const {
  const auto &m = *impl_;
  // No $status in the format: nothing tells a success from a failure.
  return !status || *status >= 500 || m.untaken > 0 || !m.decided_unclosed.empty();
}

void Correlator::add_host_sample(const HostSample &sample) { impl_->facts.add_sample(sample); }

std::vector<Verdict> Correlator::advance(int64_t now_wall_ns) { return impl_->step(now_wall_ns, false); }

std::vector<Verdict> Correlator::finish() { return impl_->step(INT64_MAX / 2, true); }

std::vector<json> Correlator::take_notes() { return std::exchange(impl_->notes, {}); }

const CorrelatorStats &Correlator::stats() const {
  impl_->stats.ownership_evicted = impl_->facts.ownership_evicted();
  return impl_->stats;
}

} // namespace why502
