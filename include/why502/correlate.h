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
} // namespace cause

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
  nlohmann::json evidence = nlohmann::json::array();
  int attempts = 1; // failed attempts nginx made for this request (proxy_next_upstream)
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
  // upstream{} name -> its servers, from the nginx config (for no_live_upstreams links).
  std::map<std::string, std::vector<std::string>> upstream_groups;
};

struct CorrelatorStats {
  uint64_t verdicts = 0;
  uint64_t kernel_failures = 0;
  uint64_t kernel_failures_unmatched = 0; // no nginx line claimed them (e.g. retried keepalive)
  uint64_t error_lines = 0;               // upstream-failure lines
  uint64_t recovered_requests = 0;        // failed attempts whose request still succeeded
  uint64_t ownership_evicted = 0;         // listener ownership intervals dropped by the history cap
  std::map<std::string, uint64_t> by_cause;
  std::map<std::pair<std::string, std::string>, uint64_t> by_cause_upstream;
};

class Correlator {
public:
  explicit Correlator(CorrelatorOptions opts = {});
  ~Correlator();
  Correlator(const Correlator &) = delete;
  Correlator &operator=(const Correlator &) = delete;

  void add_kernel(const KernelEvent &ev);
  // wall_ns: the line's own time (nginx's second) in ns since the epoch.
  void add_error_line(const nginx::ErrorLogLine &line, int64_t wall_ns);
  void add_access_line(const nginx::AccessLogLine &line, int64_t wall_ns);
  void add_host_sample(const HostSample &sample);

  // Verdicts whose facts have settled by now_wall_ns, in the order they became final.
  std::vector<Verdict> advance(int64_t now_wall_ns);
  // Everything still pending, decided with what is known.
  std::vector<Verdict> finish();

  const CorrelatorStats &stats() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace why502
