// The join: nginx error lines (one per failed attempt) are matched to the
// kernel's record of the same attempt (same worker pid, same upstream, close in
// time), grouped into requests, closed by the access line, and decided by the
// cause rules in rules.cpp.
#include "why502/correlate.h"

#include <algorithm>

#include "correlate/rules.h"

namespace why502 {

using nlohmann::json;

namespace {

constexpr int64_t kSecond = 1000000000;

// The upstream a kernel failure is about, in the form nginx prints it.
std::string kernel_upstream(const KernelEvent &ev) {
  if (const auto *c = std::get_if<ConnFail>(&ev.record))
    return c->remote.str();
  if (const auto *s = std::get_if<SyscallErr>(&ev.record))
    return s->target;
  return "";
}

uint32_t kernel_pid(const KernelEvent &ev) {
  if (const auto *c = std::get_if<ConnFail>(&ev.record))
    return c->pid;
  if (const auto *s = std::get_if<SyscallErr>(&ev.record))
    return s->pid;
  return 0;
}

// Does the kernel's failure fit what nginx says happened? (Not required for a
// match, but preferred when one worker had several failures in a second.)
bool kinds_agree(const KernelEvent &ev, const nginx::ErrorLogLine &line) {
  using F = nginx::UpstreamFailure;
  if (const auto *s = std::get_if<SyscallErr>(&ev.record)) {
    if (line.failure == F::socket_failed)
      return s->syscall == Syscall::Socket;
    return line.err && *line.err == s->err;
  }
  const auto &c = std::get<ConnFail>(ev.record);
  switch (c.failure) {
  case ConnFailure::RstInSynSent:
  case ConnFailure::IcmpError: return line.failure == F::connect_failed;
  case ConnFailure::SynTimeout:
  case ConnFailure::SynRetransmit: return line.failure == F::timed_out_connecting;
  case ConnFailure::RstEstablished:
  case ConnFailure::FinBeforeData:
    return line.failure == F::recv_failed || line.failure == F::send_failed || line.failure == F::readv_failed ||
           line.failure == F::prematurely_closed;
  }
  return false;
}

bool is_attempt_failure(const KernelEvent &ev) {
  if (const auto *c = std::get_if<ConnFail>(&ev.record))
    return c->failure != ConnFailure::SynRetransmit;
  if (const auto *s = std::get_if<SyscallErr>(&ev.record))
    return s->syscall != Syscall::Accept;
  return false;
}

} // namespace

json to_json(const Verdict &v) {
  json j;
  j["type"] = "verdict";
  j["id"] = v.id;
  j["time"] = format_wall_time(v.wall_ns);
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
  j["evidence"] = v.evidence;
  return j;
}

struct Correlator::Impl {
  CorrelatorOptions opts;
  CorrelatorStats stats;
  Facts facts; // host-wide history the rules read
  uint64_t next_id = 1;

  struct KFail {
    KernelEvent ev;
    int64_t fail_ns;
    uint32_t pid;
    std::string upstream;
    bool claimed = false;
  };
  std::deque<std::shared_ptr<KFail>> kfails;

  struct Attempt {
    nginx::ErrorLogLine line;
    int64_t line_ns;
    std::shared_ptr<KFail> kfail;
  };
  struct Request {
    uint32_t pid = 0;
    std::optional<uint64_t> connection;
    std::vector<Attempt> attempts;
    int64_t last_line_ns = 0;
    std::optional<int> status;
    bool access_seen = false;
  };
  std::deque<std::shared_ptr<Request>> requests;

  struct PendingAccess {
    nginx::AccessLogLine line;
    int64_t wall_ns;
  };
  std::deque<PendingAccess> orphan_access; // 502/504 lines no error line claimed (yet)

  void match(Attempt &a) {
    if (a.kfail)
      return;
    std::shared_ptr<KFail> best;
    int best_score = 0;
    int64_t best_dt = 0;
    for (auto &k : kfails) {
      if (k->claimed || k->pid != uint32_t(a.line.pid))
        continue;
      bool socket_line = a.line.failure == nginx::UpstreamFailure::socket_failed;
      if (!(socket_line ? k->upstream.empty() : k->upstream == a.line.upstream_address))
        continue;
      // nginx prints its cached second; the kernel failure is within it, or a moment after (close after log).
      if (k->fail_ns < a.line_ns - kSecond || k->fail_ns > a.line_ns + 2 * kSecond)
        continue;
      int score = kinds_agree(k->ev, a.line) ? 2 : 1;
      int64_t dt = std::llabs(k->fail_ns - (a.line_ns + kSecond / 2));
      if (score > best_score || (score == best_score && dt < best_dt)) {
        best = k;
        best_score = score;
        best_dt = dt;
      }
    }
    if (best) {
      best->claimed = true;
      a.kfail = best;
    }
  }

  Verdict make_verdict(const Request &r) {
    const Attempt &last = r.attempts.back();
    RuleInput in;
    in.line = &last.line;
    in.line_ns = last.line_ns;
    in.kernel = last.kfail ? &last.kfail->ev : nullptr;
    in.kernel_fail_ns = last.kfail ? last.kfail->fail_ns : 0;
    Verdict v = decide(in, facts, opts);
    v.nginx_pid = r.pid;
    v.status = r.status;
    v.nginx_error = last.line.message;
    if (!last.line.client.empty() || !last.line.request.empty())
      v.request = Verdict::Request{last.line.client, last.line.request, last.line.host};
    v.attempts = int(r.attempts.size());
    // Earlier attempts of the same request are evidence too (proxy_next_upstream).
    for (size_t i = 0; i + 1 < r.attempts.size(); ++i) {
      json prior = {{"event", "earlier_attempt"},
                    {"time", format_wall_time(r.attempts[i].line_ns)},
                    {"upstream", r.attempts[i].line.upstream_address},
                    {"nginx_error", r.attempts[i].line.message}};
      if (r.attempts[i].kfail)
        prior["kernel"] = evidence_json(r.attempts[i].kfail->ev);
      v.evidence.push_back(prior);
    }
    return v;
  }

  Verdict finalize(Verdict v) {
    v.id = next_id++;
    if (v.cause == cause::kNoLiveUpstreams)
      v.related = facts.related_verdicts(v, opts);
    facts.remember_verdict(v);
    ++stats.verdicts;
    ++stats.by_cause[v.cause];
    ++stats.by_cause_upstream[{v.cause, v.upstream}];
    return v;
  }

  bool request_ready(const Request &r, int64_t now) const {
    if (r.access_seen)
      return now >= r.last_line_ns + kSecond + opts.settle_ns;
    if (opts.access_log_available)
      return now >= r.last_line_ns + kSecond + opts.access_wait_ns;
    return now >= r.last_line_ns + kSecond + opts.settle_ns;
  }

  std::vector<Verdict> step(int64_t now, bool flush) {
    std::vector<Verdict> out;
    for (auto &r : requests)
      for (auto &a : r->attempts)
        match(a);

    // Requests whose facts have settled.
    for (auto it = requests.begin(); it != requests.end();) {
      Request &r = **it;
      if (!flush && !request_ready(r, now)) {
        ++it;
        continue;
      }
      // A retry succeeded (any status below 500): not a failed request. A 500 stays: nginx answers
      // 500, not 502, when it cannot even create the upstream socket (fd_limit).
      if (r.access_seen && r.status && *r.status < 500) {
        ++stats.recovered_requests;
      } else {
        out.push_back(finalize(make_verdict(r)));
      }
      it = requests.erase(it);
    }

    // Access-log 502/504s no error line explained.
    for (auto it = orphan_access.begin(); it != orphan_access.end();) {
      if (!flush && now < it->wall_ns + opts.settle_ns + 2 * kSecond) {
        ++it;
        continue;
      }
      out.push_back(finalize(orphan_access_verdict(*it)));
      it = orphan_access.erase(it);
    }

    // Kernel failures: on their own without an error log; otherwise counted when no line claims them.
    for (auto it = kfails.begin(); it != kfails.end();) {
      KFail &k = **it;
      int64_t wait = opts.error_log_available ? opts.settle_ns + 3 * kSecond : opts.settle_ns;
      if (!flush && now < k.fail_ns + wait) {
        ++it;
        continue;
      }
      if (!k.claimed) {
        if (opts.error_log_available) {
          ++stats.kernel_failures_unmatched;
        } else {
          RuleInput in;
          in.kernel = &k.ev;
          in.kernel_fail_ns = k.fail_ns;
          Verdict v = decide(in, facts, opts);
          v.nginx_pid = k.pid;
          out.push_back(finalize(std::move(v)));
        }
      }
      it = kfails.erase(it);
    }
    facts.expire(now - opts.history_ns);
    std::sort(out.begin(), out.end(), [](const Verdict &a, const Verdict &b) { return a.id < b.id; });
    return out;
  }

  Verdict orphan_access_verdict(const PendingAccess &p) {
    // Without an error line, only the same worker's kernel failure (when $pid is logged) may speak for it.
    RuleInput in;
    in.line_ns = p.wall_ns;
    std::string addr = p.line.upstream.empty() ? "" : p.line.upstream.back().addr;
    for (auto &k : kfails) {
      if (k->claimed || !p.line.pid || k->pid != uint32_t(*p.line.pid) || (!addr.empty() && k->upstream != addr))
        continue;
      if (k->fail_ns < p.wall_ns - 2 * kSecond || k->fail_ns > p.wall_ns + kSecond)
        continue;
      k->claimed = true;
      in.kernel = &k->ev;
      in.kernel_fail_ns = k->fail_ns;
      break;
    }
    Verdict v = decide(in, facts, opts);
    if (v.upstream.empty())
      v.upstream = addr;
    v.nginx_pid = p.line.pid ? uint32_t(*p.line.pid) : 0;
    v.status = p.line.status;
    if (!p.line.request.empty() || !p.line.remote_addr.empty())
      v.request = Verdict::Request{p.line.remote_addr, p.line.request, p.line.host};
    return v;
  }
};

Correlator::Correlator(CorrelatorOptions opts) : impl_(std::make_unique<Impl>()) { impl_->opts = std::move(opts); }
Correlator::~Correlator() = default;

void Correlator::add_kernel(const KernelEvent &ev) {
  if (is_attempt_failure(ev)) {
    auto k = std::make_shared<Impl::KFail>();
    k->ev = ev;
    k->fail_ns = ev.wall_ns;
    k->pid = kernel_pid(ev);
    k->upstream = kernel_upstream(ev);
    impl_->kfails.push_back(std::move(k));
    ++impl_->stats.kernel_failures;
    return;
  }
  impl_->facts.add_kernel(ev);
}

void Correlator::add_error_line(const nginx::ErrorLogLine &line, int64_t wall_ns) {
  if (line.failure == nginx::UpstreamFailure::none)
    return;
  ++impl_->stats.error_lines;
  // One request may fail several attempts (proxy_next_upstream): same worker, same connection.
  std::shared_ptr<Impl::Request> req;
  if (line.connection)
    for (auto &r : impl_->requests)
      if (r->pid == uint32_t(line.pid) && r->connection == line.connection && !r->access_seen &&
          r->attempts.back().line.request == line.request)
        req = r;
  if (!req) {
    req = std::make_shared<Impl::Request>();
    req->pid = line.pid;
    req->connection = line.connection;
    impl_->requests.push_back(req);
  }
  req->attempts.push_back({line, wall_ns, nullptr});
  req->last_line_ns = wall_ns;
  impl_->match(req->attempts.back());
}

void Correlator::add_access_line(const nginx::AccessLogLine &line, int64_t wall_ns) {
  // With $upstream_status logged, a line whose attempts all succeeded belongs to a request that
  // never failed: it must not close (and "recover") a failed request that had the same text.
  if (!line.upstream.empty()) {
    bool failed_attempt = false;
    for (const auto &a : line.upstream)
      failed_attempt |= !a.status || *a.status >= 500;
    if (!failed_attempt)
      return;
  }
  // The oldest open request this line closes: same worker/connection when logged, else same request text.
  for (auto &r : impl_->requests) {
    if (r->access_seen)
      continue;
    const auto &first = r->attempts.front();
    if (line.pid && uint32_t(*line.pid) != r->pid)
      continue;
    if (line.connection && r->connection && *line.connection != *r->connection)
      continue;
    if (!line.request.empty() && line.request != first.line.request)
      continue;
    if (!line.remote_addr.empty() && !first.line.client.empty() && line.remote_addr != first.line.client)
      continue;
    // The access line is written when the request ends: at or after its last error line.
    if (wall_ns + kSecond < r->last_line_ns || wall_ns > r->last_line_ns + 600 * kSecond)
      continue;
    r->access_seen = true;
    r->status = line.status;
    return;
  }
  if (line.is_gateway_error())
    impl_->orphan_access.push_back({line, wall_ns});
}

void Correlator::add_host_sample(const HostSample &sample) { impl_->facts.add_sample(sample); }

std::vector<Verdict> Correlator::advance(int64_t now_wall_ns) { return impl_->step(now_wall_ns, false); }

std::vector<Verdict> Correlator::finish() { return impl_->step(INT64_MAX / 2, true); }

const CorrelatorStats &Correlator::stats() const { return impl_->stats; }

} // namespace why502
