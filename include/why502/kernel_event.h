// Decoded kernel records: the C++ view of include/why502/events.h, and their
// JSON form (the `why502 events --json` capture format that `analyze` reads back).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include <nlohmann/json_fwd.hpp>

namespace why502 {

struct Endpoint {
  std::string addr; // "127.0.0.1", "::1"
  uint16_t port = 0;
  bool operator==(const Endpoint &) const = default;
  std::string str() const; // "127.0.0.1:8080", "[::1]:8080"
};

enum class ConnFailure { RstInSynSent, RstEstablished, FinBeforeData, SynTimeout, IcmpError, SynRetransmit };

// A watched process's TCP connection failed (or connected only after SYN retransmits).
struct ConnFail {
  uint32_t pid = 0, tid = 0;
  std::string comm;
  Endpoint local, remote;
  int family = 0; // 4 or 6
  ConnFailure failure = ConnFailure::SynTimeout;
  int sk_err = 0;
  uint32_t syn_retrans = 0, retrans = 0;
  std::string last_state;
  uint64_t bytes_received = 0, bytes_acked = 0;
  // Boot-clock timestamps of each step, 0 when not reached.
  uint64_t ts_syn_sent = 0, ts_established = 0, ts_reset = 0, ts_fin_received = 0, ts_error = 0, ts_close = 0;
  uint64_t conn_id = 0;
};

enum class Syscall { Connect, Socket, Accept };

// connect()/socket()/accept4() of a watched process failed.
struct SyscallErr {
  uint32_t pid = 0, tid = 0;
  std::string comm;
  Syscall syscall = Syscall::Connect;
  int err = 0; // positive errno
  int fd = -1;
  // The connect() target: "unix:/path", "127.0.0.1:8080"; empty for socket()/accept().
  std::string target;
};

enum class DropReason { NoSocket, TcpListenOverflow, NetfilterDrop, SocketBacklog, TcpReset, SocketRcvbuff, Other };

// Host-wide: the kernel dropped a TCP packet for an interesting reason.
struct PacketDrop {
  Endpoint src, dst; // as in the packet
  DropReason reason = DropReason::Other;
  uint32_t kernel_reason = 0; // this kernel's enum skb_drop_reason number
  uint8_t tcp_flags = 0;
};

// Host-wide: the kernel sent a RST (src = us, the RST's sender).
struct ResetSent {
  Endpoint src, dst;
  std::string state; // "" when no socket owned the packet
  bool has_socket = false;
};

struct OomVictim {
  uint32_t pid = 0, uid = 0;
  std::string comm;
  uint64_t total_vm_kb = 0, anon_rss_kb = 0, file_rss_kb = 0, shmem_rss_kb = 0;
};

struct FatalSignal {
  int sig = 0;
  int result = 0; // 0: delivered
  uint32_t target_pid = 0, target_tid = 0;
  std::string target_comm;
  uint32_t sender_pid = 0, sender_tid = 0;
  std::string sender_comm;
  int si_code = 0;
};

struct ProcessExit {
  uint32_t pid = 0, ppid = 0;
  std::string comm;
  int exit_code = 0; // exit status (code), valid when signal == 0
  int signal = 0;    // terminating signal, 0 for a normal exit
  bool core_dumped = false;
  bool watched = false;
};

struct WatchStart {
  uint32_t pid = 0, parent_pid = 0;
  std::string comm;
  std::string via; // "fork", "exec", "scan"
};

// Host-wide: a TCP socket started listening (in the context of the task that called listen())
// or stopped (in the context of the task that closed it: `exiting` when that was its owner's exit).
struct ListenChange {
  uint32_t pid = 0, tid = 0;
  std::string comm;
  Endpoint local; // "0.0.0.0:8080", "[::]:8080"
  int family = 0; // 4 or 6
  uint32_t netns = 0;  // network namespace inode, 0 if unknown
  uint64_t cookie = 0; // the socket's cookie: a stop pairs with the start of the same socket
  bool listening = false;
  bool exiting = false;
};

// Host-wide: a process whose last thread was exiting still held a listening unix socket (read from
// its descriptor table before it closed its files). Unix sockets have no state tracepoint: this is
// how the kernel names a unix upstream's owner at its death, however short its life.
struct UnixListenerExit {
  uint32_t pid = 0;
  uint32_t fd = 0;
  std::string comm;
  std::string address; // "unix:/run/app.sock"; abstract names "unix:@name"
  uint64_t inode = 0;  // the socket's inode, as /proc/net/unix shows it
  uint32_t netns = 0;
};

using KernelRecord = std::variant<ConnFail, SyscallErr, PacketDrop, ResetSent, OomVictim, FatalSignal, ProcessExit,
                                  WatchStart, ListenChange, UnixListenerExit>;

struct KernelEvent {
  uint64_t boot_ns = 0; // CLOCK_BOOTTIME
  int64_t wall_ns = 0;  // CLOCK_REALTIME, derived from boot_ns by the reader
  uint32_t cpu = 0;
  bool host = false; // host-wide fact, not tied to a watched process
  KernelRecord record;
};

// Stable names used in JSON ("event" field) and in verdict evidence.
std::string_view event_name(const KernelRecord &r);
std::string_view conn_failure_name(ConnFailure f);
std::string_view drop_reason_name(DropReason r);
std::string_view syscall_name(Syscall s);
std::string tcp_state_name(uint32_t state);
std::string errno_name(int err);   // "ECONNREFUSED"
std::string signal_name(int sig);  // "SIGKILL"

// Turns one ring-buffer record into an event. nullopt (with *error set) on a
// truncated record or an unknown kind: the caller counts it.
std::optional<KernelEvent> decode_record(std::span<const uint8_t> bytes, std::string *error);

// JSON (one object per line in captures). from_json returns nullopt on a malformed object.
nlohmann::json to_json(const KernelEvent &ev);
std::optional<KernelEvent> event_from_json(const nlohmann::json &j, std::string *error);

// Wall-clock formatting shared by every sink: "2026-11-30T17:02:01.123456Z".
std::string format_wall_time(int64_t wall_ns);
std::optional<int64_t> parse_wall_time(std::string_view iso);

} // namespace why502
