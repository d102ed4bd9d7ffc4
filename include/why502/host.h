// Host facts about the upstream side, sampled from userspace: who listens on
// which TCP port / unix path, their accept-queue depth and limit, and the
// ListenOverflows/ListenDrops counters. Read in the network namespace nginx
// lives in (via /proc/<pid>/net and a sock_diag socket opened in that netns).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "why502/error.h"

namespace why502 {

struct ProcessRef {
  uint32_t pid = 0;
  std::string comm;
  bool operator==(const ProcessRef &) const = default;
};

// One listening socket.
struct Listener {
  std::string address;   // "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080", "unix:/run/php/php-fpm.sock"
  uint32_t depth = 0;    // connections waiting in the accept queue now
  uint32_t max = 0;      // the accept-queue limit (listen() backlog, capped by somaxconn)
  uint64_t inode = 0;
  std::vector<ProcessRef> owners; // every process holding the listening fd (master and its workers)
};

// One sample of the host, taken at wall_ns.
struct HostSample {
  int64_t wall_ns = 0;
  std::vector<Listener> listeners;
  uint64_t listen_overflows = 0; // TcpExt ListenOverflows (cumulative, this netns)
  uint64_t listen_drops = 0;     // TcpExt ListenDrops
  // The sampling host's zone (seconds east of UTC): how `analyze` elsewhere reads the error.log
  // times, which nginx writes in local time without a zone. Absent in captures before 2026-12-04.
  std::optional<int> utc_offset_s;
};

nlohmann::json to_json(const HostSample &s);
Result<HostSample> host_sample_from_json(const nlohmann::json &j);

// True when `listener` (as in Listener::address) accepts connections for `upstream`
// ("127.0.0.1:8080" matches "0.0.0.0:8080" and "[::]:8080" too; unix paths match exactly).
bool listener_serves(const std::string &listener, const std::string &upstream);

class HostSampler {
public:
  // netns_pid: a process in the network namespace to look at (an nginx worker); 0 = ours.
  explicit HostSampler(pid_t netns_pid = 0);
  ~HostSampler();
  HostSampler(const HostSampler &) = delete;
  HostSampler &operator=(const HostSampler &) = delete;

  // Switches to another process's netns (e.g. after nginx restarted).
  void set_netns_pid(pid_t pid);

  // Takes a sample. Owner lookup (a walk of /proc/*/fd) reuses the previous
  // answer for inodes already seen, so steady-state samples stay cheap.
  HostSample sample();

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace why502
