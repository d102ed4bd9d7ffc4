// Host-wide history (deaths, drops, listener samples, earlier verdicts) and the
// cause rules that read it. Private to src/correlate/.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "why502/correlate.h"

namespace why502 {

// Causality: an event after the failure is never its cause. Every evidence window ends at the failure
// time plus at most the granularity of the clock that timed the failure:
// - a kernel record: CLOCK_BOOTTIME, the same clock as every other kernel record, shifted to wall time
//   by one offset per capture; two records of one instant differ by the offset's refresh (NTP slew),
//   far below a millisecond;
inline constexpr int64_t kKernelClockGranularityNs = 1000000;
// - only nginx's line: nginx stamps it with its cached second, so the failure lies in that second;
inline constexpr int64_t kNginxClockGranularityNs = 1000000000;
// - the access line's $msec: nginx's cached time (updated after each epoll wait, so at or after the
//   kernel event that woke the worker), in milliseconds. When the request's access line has it, a
//   log-only attempt failed by then: the window ends there instead of at the end of the error
//   line's second. (`timer_resolution` would make the cache coarser; it is rarely set on proxies.)
inline constexpr int64_t kAccessClockGranularityNs = 1000000;
// - host samples (listen queues, listeners): taken every 0.5 s and at each failure (at most every
//   100 ms); a sample up to one period after the failure is the queue as the failure met it.
inline constexpr int64_t kSampleGranularityNs = 500000000;
// A dying task's exit record (sched_process_exit) comes just before it closes its files (do_exit:
// exit_files), so its listener may accept a connection in between: microseconds, bounded generously
// for a loaded host.
inline constexpr int64_t kExitClosesFilesNs = 50000000;


class Facts {
public:
  void add_kernel(const KernelEvent &ev);
  void add_sample(const HostSample &s);
  void remember_verdict(const Verdict &v);
  void expire(int64_t before_ns);

  // Every process known to own a listener that serves `upstream` and that started listening by
  // until_ns: the kernel's listen records first (exact, even for a process that lived 100 ms),
  // then host samples (which add the other processes sharing the socket, e.g. workers).
  std::map<uint32_t, std::string> owners_of(const std::string &upstream, int64_t until_ns) const;
  // Did a listener serving `upstream` start (kernel) or show up in a sample in (from_ns, to_ns]?
  bool listener_seen(const std::string &upstream, int64_t from_ns, int64_t to_ns) const;
  // Did another process than `pid` start serving `upstream` in (from_ns, to_ns] (a restart, a new
  // owner)? A kernel listen record of another pid, or a sample holder that did not hold it by
  // from_ns. A listener with no holder (an exiting owner's socket) is nobody's.
  bool listened_by_another(const std::string &upstream, uint32_t pid, int64_t from_ns, int64_t to_ns) const;
  // A unix peer logged run together with its URI ("unix:/run/app.sock/x"): the known socket path it
  // starts with, or `joined` unchanged when none is known.
  std::string unix_path_prefix_of(const std::string &joined, const CorrelatorOptions &opts) const;
  // Did samples cover (from_ns, to_ns] at all? (Absence of a listener proves nothing otherwise.)
  bool sampled(int64_t from_ns, int64_t to_ns) const;
  // Samples showing the accept queue of `upstream`'s listener full, and the ListenOverflows delta.
  struct Overflow {
    std::vector<Evidence> evidence;
    bool queue_full = false;
    uint64_t overflows_delta = 0;
  };
  Overflow overflow_between(const std::string &upstream, int64_t from_ns, int64_t to_ns) const;
  // The listener that serves `upstream` at at_ns: the one the kernel saw listening then (with
  // the holders and queue numbers of a sample of it, if any), else the nearest sample's.
  std::optional<Listener> listener_at(const std::string &upstream, int64_t at_ns) const;

  // One socket's time in LISTEN, from the kernel's listen_change records: [start_ns, end_ns).
  struct ListenSpan {
    std::string address; // "0.0.0.0:8080"
    uint16_t port = 0;
    uint32_t netns = 0;
    uint64_t cookie = 0;
    ProcessRef owner;                // who called listen(), or who closed it when the start predates us
    std::optional<ProcessRef> closer; // who closed it, when that was seen
    int64_t start_ns = 0;            // 0: started before why502 saw it
    int64_t end_ns = INT64_MAX;      // INT64_MAX: still listening
    bool ended_by_exit = false;      // the closer was exiting (PF_EXITING): its death closed it
  };
  // Spans of listeners serving `upstream` that were listening at some time in [from_ns, to_ns].
  std::vector<ListenSpan> listen_spans(const std::string &upstream, int64_t from_ns, int64_t to_ns) const;
  // Spans dropped by the history cap (never by expiry): the correlator's ownership_evicted.
  uint64_t ownership_evicted() const { return spans_evicted_; }

  struct Death {
    const KernelEvent *cause = nullptr; // OomVictim, FatalSignal or ProcessExit
    const KernelEvent *exit = nullptr;  // the ProcessExit that followed, if seen
    uint32_t pid = 0;
    std::string comm;
  };
  // The latest death of one of `pids` in [from_ns, to_ns], named by its most telling record
  // (OOM > fatal signal > exit).
  std::optional<Death> death_of(const std::map<uint32_t, std::string> &pids, int64_t from_ns, int64_t to_ns) const;

  std::vector<const KernelEvent *> netfilter_drops(const ConnFail &c, int64_t from_ns, int64_t to_ns) const;

  std::vector<uint64_t> related_verdicts(const Verdict &v, const CorrelatorOptions &opts) const;

private:
  std::deque<HostSample>::const_iterator first_sample_after(int64_t t) const; // wall_ns > t
  void pop_death();
  std::deque<KernelEvent> deaths_; // OOM victims, fatal signals, exits
  std::map<uint32_t, std::deque<const KernelEvent *>> deaths_by_pid_; // index into deaths_ (pid: victim)
  std::deque<KernelEvent> drops_;  // packet drops, resets sent, SYN-retransmit anomalies
  std::deque<HostSample> samples_;
  struct Ownership {
    std::string address;
    std::map<uint32_t, std::string> owners;
    int64_t first_ns = 0, last_ns = 0;
  };
  std::vector<Ownership> ownership_; // one entry per (listener, owner set) span
  void add_listen_change(const KernelEvent &ev, const ListenChange &l);
  std::vector<ListenSpan> open_spans_;    // listening now, in start order
  std::deque<ListenSpan> closed_spans_;   // ended, in end order
  uint64_t spans_evicted_ = 0;
  struct PastVerdict {
    uint64_t id;
    int64_t wall_ns;
    std::string upstream;
    uint32_t nginx_pid;
  };
  std::deque<PastVerdict> verdicts_;
};

struct RuleInput {
  const nginx::ErrorLogLine *line = nullptr; // the attempt's error line, if any
  int64_t line_ns = 0;
  const KernelEvent *kernel = nullptr; // the kernel's record of the attempt, if any
  int64_t kernel_fail_ns = 0;          // when the kernel saw it fail (RST/FIN arrival, else the record)
  bool kernel_record_missing = false;  // nginx's line called for a kernel record that never came
  // The request's life from its access line ($msec, $request_time), when the format has them: every
  // attempt started after request_start_ns and failed by request_end_ns.
  std::optional<int64_t> request_start_ns, request_end_ns;
};

// Names the most specific cause the facts prove. Fills cause, summary, upstream,
// upstream_process, evidence and wall_ns.
Verdict decide(const RuleInput &in, const Facts &facts, const CorrelatorOptions &opts);

} // namespace why502
