// The kernel side as C++ sees it: load and attach the BPF programs, keep the
// watched-process set, and turn ring-buffer records into KernelEvents.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "why502/kernel_event.h"

namespace why502 {

struct TracerOptions {
  std::vector<uint32_t> pids;       // watched, with their existing descendants
  std::vector<std::string> comms;   // processes with these names, now and when they exec later
  uint32_t host_records_per_sec = 2000; // per CPU, for drops/resets/exits
  // Mount /sys/kernel/tracing if absent, for the syscall tracepoints' ids; unmounted again before
  // the constructor returns (arming later needs only the ids).
  bool mount_tracefs = true;
  // Enabling any syscall tracepoint sends every syscall of every process on the host through the
  // kernel's slow path (bench/: most of why502's cost to nginx). On demand, the syscall programs
  // are loaded and verified at start but attached only by arm_syscall_probes().
  bool syscall_probes_on_demand = false;
  // The connection table's buckets in use (8 connections each): {hot, overflow}, powers of two no
  // larger than the compiled 64 and 4096; {0, 0} uses those. Tests make it tiny to fill it.
  std::pair<uint32_t, uint32_t> conn_table_buckets = {0, 0};
};


// Every program of the BPF object (bpf/why502.bpf.c), in its order: the object is the program table.
std::vector<std::string> program_names();

// What happened to one BPF program at start-up.
struct ProgramStatus {
  std::string program;    // "on_kfree_skb"
  std::string tracepoint; // "tp_btf/kfree_skb"
  bool attached = false;
  std::string problem;    // why not, in plain words
  bool required = false;  // without it why502 cannot run at all
  bool syscall_probe = false; // a tp/syscalls program (can be armed on demand)
  bool armed = false;         // attached right now
};

// Losses counted in the kernel (summed over CPUs) and in userspace.
struct LossCounters {
  uint64_t ringbuf_full = 0;
  uint64_t conn_map_full = 0;
  uint64_t watch_map_full = 0;
  uint64_t host_rate_limited = 0;
  uint64_t undecodable = 0; // userspace: records the decoder rejected
  // Dying processes whose descriptor table was larger than the unix-listener walk reads (its
  // listeners past the cap may be missed; not a lost record, so not in total()).
  uint64_t fd_walks_capped = 0;
  // Program runs the kernel skipped because the same program was already running on that CPU (a
  // softirq interrupting it). Most are transitions of sockets nobody follows; one may have carried
  // evidence, so they are reported, but they are not lost records: not in total() either.
  uint64_t runs_missed = 0;
  uint64_t total() const {
    return ringbuf_full + conn_map_full + watch_map_full + host_rate_limited + undecodable;
  }
};

// Probes only, no load: is each tracepoint on this kernel? A tracefs mounted for this is unmounted
// before it returns.
std::vector<ProgramStatus> probe_tracepoints(bool mount_tracefs);
// nullopt when tracefs is mounted at /sys/kernel/tracing; otherwise why not, and whether why502 can
// mount it while it attaches. Never mounts (`doctor` only reads).
std::optional<std::string> tracefs_missing();

class Tracer {
public:
  // Throws Error with one clear line: not root, not in the host's PID namespace, no BTF, load failure.
  explicit Tracer(const TracerOptions &opts);
  // The PID check alone, for callers that read /proc before they load (watch discovers nginx first).
  static void require_host_pid_namespace();
  ~Tracer();
  Tracer(const Tracer &) = delete;
  Tracer &operator=(const Tracer &) = delete;

  const std::vector<ProgramStatus> &programs() const;

  // Attach / detach the syscall programs (connect/socket/accept errors). arm returns true when it
  // attached something now.
  bool arm_syscall_probes();
  void disarm_syscall_probes();
  bool syscall_probes_armed() const;

  // Adds a process (and its existing descendants) to the watched set.
  void watch_pid(uint32_t pid);
  std::vector<uint32_t> watched_pids() const;

  // Waits up to timeout_ms for records and hands each decoded one to `sink`.
  // Returns the number of records consumed.
  int poll(int timeout_ms, const std::function<void(const KernelEvent &)> &sink);
  // The fd to wait on in an outer poll()/epoll loop.
  int fd() const;

  LossCounters losses() const;
  // CLOCK_REALTIME - CLOCK_BOOTTIME, refreshed at each poll.
  int64_t boot_to_wall_ns() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads CLOCK_REALTIME - CLOCK_BOOTTIME now.
int64_t current_boot_to_wall_ns();

} // namespace why502
