// The correlator: pure C++, no kernel or file access. Fed decoded kernel
// records, parsed nginx log lines and host samples (each with its wall time),
// it names one root cause per failed upstream request, with evidence.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "why502/host.h"
#include "why502/kernel_event.h"
#include "why502/nginx.h"

namespace why502 {

// The stable cause codes of DESIGN.md.
namespace cause {
inline constexpr const char *kNoListener = "no_listener";
inline constexpr const char *kOomKilled = "upstream_oom_killed";
inline constexpr const char *kKilledBySignal = "upstream_killed_by_signal";
inline constexpr const char *kExited = "upstream_exited";
inline constexpr const char *kAcceptQueueOverflow = "accept_queue_overflow";
inline constexpr const char *kUnixBacklogFull = "unix_backlog_full";
inline constexpr const char *kConnectionReset = "connection_reset";
inline constexpr const char *kClosedEarly = "upstream_closed_early";
inline constexpr const char *kConnectTimeout = "connect_timeout";
inline constexpr const char *kHostUnreachable = "host_unreachable";
inline constexpr const char *kFirewallDrop = "firewall_drop";
inline constexpr const char *kConnectDenied = "connect_denied";
inline constexpr const char *kEphemeralPorts = "ephemeral_ports_exhausted";
inline constexpr const char *kFdLimit = "fd_limit";
inline constexpr const char *kNoLiveUpstreams = "no_live_upstreams";
inline constexpr const char *kNoKernelFault = "no_kernel_fault";
inline constexpr const char *kUnknown = "unknown";
// Every code, once: the cause table (src/correlate/causes.cpp) has one row for each.
inline constexpr const char *kAll[] = {kNoListener,      kOomKilled,      kKilledBySignal,      kExited,
                                       kAcceptQueueOverflow, kUnixBacklogFull, kConnectionReset, kClosedEarly,
                                       kConnectTimeout,  kHostUnreachable, kFirewallDrop,      kConnectDenied,
                                       kEphemeralPorts,  kFdLimit,        kNoLiveUpstreams,    kNoKernelFault,
                                       kUnknown};
} // namespace cause

// Evidence: kernel records and host facts, typed until a sink turns them into JSON (to_json below).
namespace fact {
// A sample of the upstream's listener: its accept queue then.
struct ListenQueue {
  static constexpr std::string_view kName = "listen_queue";
  int64_t wall_ns = 0;
  std::string listener;
  uint32_t depth = 0, max = 0;
};
// TcpExt ListenOverflows rose between two samples (the whole network namespace).
struct ListenOverflows {
  static constexpr std::string_view kName = "listen_overflows";
  int64_t wall_ns = 0;  // the later sample
  int64_t since_ns = 0; // the earlier one
  uint64_t delta = 0;
};
// nginx's line called for a kernel record of these kinds and none came.
struct KernelRecordMissing {
  static constexpr std::string_view kName = "kernel_record_missing";
  int64_t wall_ns = 0;
  std::vector<std::string> expected; // "rst_established", "syscall_errno:EAGAIN"
  pid_t worker = 0;
  std::string upstream;
};
// An earlier failed attempt of the same request (proxy_next_upstream).
struct EarlierAttempt {
  static constexpr std::string_view kName = "earlier_attempt";
  int64_t wall_ns = 0;
  std::string upstream, nginx_error;
  std::optional<KernelEvent> kernel; // its kernel record
  bool kernel_missing = false;       // one was expected and none came
};
} // namespace fact

using Evidence =
    std::variant<KernelEvent, fact::ListenQueue, fact::ListenOverflows, fact::KernelRecordMissing, fact::EarlierAttempt>;
nlohmann::json to_json(const Evidence &e);

struct Verdict {
  uint64_t id = 0;
  int64_t wall_ns = 0; // when the (last) failed attempt failed
  std::string cause;
  std::string summary;
  std::string upstream; // "127.0.0.1:8080", "unix:/run/php.sock", an upstream{} name, or ""
  uint32_t nginx_pid = 0;
  std::optional<int> status;              // 502/504 from the access log
  std::optional<std::string> nginx_error; // the error.log message that reports the attempt
  struct Request {
    std::string client, request, host;
  };
  std::optional<Request> request;
  std::optional<ProcessRef> upstream_process;
  std::vector<uint64_t> related; // no_live_upstreams: the verdicts that marked the servers down
  std::vector<Evidence> evidence;
  int attempts = 1; // failed attempts nginx made for this request (proxy_next_upstream)
  // Failed requests this verdict stands for: 1, or (in a storm) every request of one second with the
  // same cause and upstream, this one being the exemplar whose evidence is shown.
  uint64_t count = 1;
};

nlohmann::json to_json(const Verdict &v);

struct CorrelatorOptions {
  // With an error log, kernel failures wait for their nginx line (and are only
  // reported with one); without, every kernel failure is a verdict on its own.
  bool error_log_available = true;
  // With an access log, a failed request's verdict waits for its access line:
  // it gets the status, and is dropped when a retry succeeded.
  bool access_log_available = false;
  int64_t settle_ns = 1500000000;       // wait this long after a failure for late facts/lines
  int64_t access_wait_ns = 3000000000;  // and this long for the access line after the error line
  int64_t history_ns = 600000000000;    // facts older than this are forgotten
  // upstream{} name -> its servers, from the nginx config (for no_live_upstreams links, and the
  // most attempts one request can make: one per server).
  std::map<std::string, std::vector<std::string>> upstream_groups;
  // proxy_next_upstream_tries when known (0: bounded by the group's servers only).
  int max_attempts = 0;
};

struct CorrelatorStats {
  uint64_t verdicts = 0;
  uint64_t kernel_failures = 0;
  uint64_t kernel_failures_unmatched = 0; // no nginx line claimed them (e.g. retried keepalive)
  uint64_t error_lines = 0;               // upstream-failure lines
  uint64_t recovered_requests = 0;        // failed attempts whose request still succeeded
  std::map<std::string, uint64_t> by_cause;                                  // failed requests
  std::map<std::pair<std::string, std::string>, uint64_t> by_cause_upstream; // failed requests
  // Storms (more failed requests per second than per-request verdict lines are written for).
  uint64_t verdict_lines = 0;       // lines written, plain and aggregated
  uint64_t aggregated_requests = 0; // failed requests reported through an aggregated line
  uint64_t aggregate_lines = 0;
  uint64_t storms = 0;
  // Bounded state: what was let go early, counted (never silently).
  uint64_t kernel_records_evicted = 0;   // pending kernel failures dropped at the cap before their line came
  uint64_t requests_decided_early = 0;   // decided at the pending-request cap before their access line
  uint64_t lines_missing_kernel_record = 0; // attempts whose agreeing kernel record never came
  uint64_t ownership_evicted = 0;         // listener ownership spans dropped by the history cap
};

class Correlator {
public:
  explicit Correlator(CorrelatorOptions opts = {});
  ~Correlator();
  Correlator(const Correlator &) = delete;
  Correlator &operator=(const Correlator &) = delete;

  void add_kernel(const KernelEvent &ev);
  // wall_ns: the line's own time (nginx's second) in ns since the epoch.
  // kernel_record_possible: false when the only probe that could record this attempt was not
  // attached when it failed (on-demand syscall probes armed by this very line): the line then
  // waits for no record, and cannot take a later attempt's.
  void add_error_line(const nginx::ErrorLogLine &line, int64_t wall_ns, bool kernel_record_possible = true);
  void add_access_line(const nginx::AccessLogLine &line, int64_t wall_ns);
  // Whether an access line of this $status could change anything now: a 5xx always may; any other
  // only while some logged failure still waits for its request's line (a retry that succeeded
  // closes it) or a request was decided before its line came. False means add_access_line would
  // do nothing with it, so a follower may skip parsing it.
  bool wants_access_line(std::optional<int> status) const;
  void add_host_sample(const HostSample &sample);

  // Verdicts whose facts have settled by now_wall_ns, in the order they became final.
  std::vector<Verdict> advance(int64_t now_wall_ns);
  // Everything still pending, decided with what is known (in bounded time: pending state is capped).
  std::vector<Verdict> finish();
  // Notes for the output stream made since the last call: {"type":"storm",...} when aggregation
  // starts and ends.
  std::vector<nlohmann::json> take_notes();

  const CorrelatorStats &stats() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace why502
