// Decoded kernel records: the C++ view of include/why502/events.h, and their
// JSON form (the `why502 events --json` capture format that `analyze` reads back).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include <nlohmann/json_fwd.hpp>

#include "why502/address.h"
#include "why502/error.h"
#include "why502/enum_names.h"

namespace why502 {

// Each record lists its fields once, in `fields(record, visitor)` below its struct. The JSON writer
// and reader, the JSON schema in docs/, the Perfetto annotations and the text report are all
// generated from those lists: a new field is one line there. A visitor `v` is called as
//   v(key, member, flags)                       a field: number, bool, string, Endpoint or named enum
//   v.named(key, member, name_key, namer, flags) an int with its symbolic name beside it under name_key
//                                               (errno, signal): written, never read back
enum FieldFlag : unsigned {
  kFieldRequired = 0,
  kFieldOptional = 1, // may be absent from older captures: the reader keeps the default
  kFieldTiming = 2,   // a boot-clock step time: the trace's shape, not a detail for the report
  kFieldBookkeeping = 4, // a join key (conn_id, cookie): in the JSON, not in the report
};

template <class Self, class Record>
concept RecordRef = std::is_same_v<std::remove_const_t<Self>, Record>;

// A socket address in a record: "127.0.0.1:8080", "[::1]:8080" (why502/address.h).
using Endpoint = Address;

enum class ConnFailure { RstInSynSent, RstEstablished, FinBeforeData, SynTimeout, IcmpError, SynRetransmit };
template <> struct EnumNames<ConnFailure> {
  static constexpr std::pair<ConnFailure, std::string_view> table[] = {
      {ConnFailure::RstInSynSent, "rst_in_syn_sent"}, {ConnFailure::RstEstablished, "rst_established"},
      {ConnFailure::FinBeforeData, "fin_before_data"}, {ConnFailure::SynTimeout, "syn_timeout"},
      {ConnFailure::IcmpError, "icmp_error"},          {ConnFailure::SynRetransmit, "syn_retransmit"}};
};

// A watched process's TCP connection failed (or connected only after SYN retransmits).
std::string errno_name(int err);  // "ECONNREFUSED"
std::string signal_name(int sig); // "SIGKILL"

struct ConnFail {
  static constexpr std::string_view kName = "conn_fail";
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
template <class R, class V>
  requires RecordRef<R, ConnFail>
void fields(R &r, V &&v) {
  v("failure", r.failure);
  v("pid", r.pid);
  v("tid", r.tid);
  v("comm", r.comm);
  v("family", r.family);
  v("local", r.local);
  v("remote", r.remote);
  v.named("sk_err", r.sk_err, "sk_errno", errno_name);
  v("syn_retrans", r.syn_retrans);
  v("retrans", r.retrans);
  v("last_state", r.last_state);
  v("bytes_received", r.bytes_received);
  v("bytes_acked", r.bytes_acked);
  v("ts_syn_sent", r.ts_syn_sent, kFieldTiming);
  v("ts_established", r.ts_established, kFieldTiming);
  v("ts_reset", r.ts_reset, kFieldTiming);
  v("ts_fin_received", r.ts_fin_received, kFieldTiming);
  v("ts_error", r.ts_error, kFieldTiming);
  v("ts_close", r.ts_close, kFieldTiming);
  v("conn_id", r.conn_id, kFieldOptional | kFieldBookkeeping);
}

enum class Syscall { Connect, Socket, Accept };
template <> struct EnumNames<Syscall> {
  static constexpr std::pair<Syscall, std::string_view> table[] = {
      {Syscall::Connect, "connect"}, {Syscall::Socket, "socket"}, {Syscall::Accept, "accept4"}};
};

// connect()/socket()/accept4() of a watched process failed.
struct SyscallErr {
  static constexpr std::string_view kName = "syscall_error";
  uint32_t pid = 0, tid = 0;
  std::string comm;
  Syscall syscall = Syscall::Connect;
  int err = 0; // positive errno
  int fd = -1;
  // The connect() target: "unix:/path", "127.0.0.1:8080"; empty for socket()/accept().
  std::string target;
};
template <class R, class V>
  requires RecordRef<R, SyscallErr>
void fields(R &r, V &&v) {
  v("syscall", r.syscall);
  v("pid", r.pid);
  v("tid", r.tid);
  v("comm", r.comm);
  v.named("errno", r.err, "errno_name", errno_name);
  v("fd", r.fd);
  v("target", r.target);
}

enum class DropReason { NoSocket, TcpListenOverflow, NetfilterDrop, SocketBacklog, TcpReset, SocketRcvbuff, Other };
template <> struct EnumNames<DropReason> {
  static constexpr std::pair<DropReason, std::string_view> table[] = {
      {DropReason::NoSocket, "NO_SOCKET"},         {DropReason::TcpListenOverflow, "TCP_LISTEN_OVERFLOW"},
      {DropReason::NetfilterDrop, "NETFILTER_DROP"}, {DropReason::SocketBacklog, "SOCKET_BACKLOG"},
      {DropReason::TcpReset, "TCP_RESET"},         {DropReason::SocketRcvbuff, "SOCKET_RCVBUFF"},
      {DropReason::Other, "OTHER"}};
  // A reason this build does not know still reads back (as OTHER): newer kernels add reasons.
  static constexpr std::optional<DropReason> fallback = DropReason::Other;
};

// Host-wide: the kernel dropped a TCP packet for an interesting reason.
struct PacketDrop {
  static constexpr std::string_view kName = "packet_drop";
  Endpoint src, dst; // as in the packet
  DropReason reason = DropReason::Other;
  uint32_t kernel_reason = 0; // this kernel's enum skb_drop_reason number
  uint8_t tcp_flags = 0;
};
template <class R, class V>
  requires RecordRef<R, PacketDrop>
void fields(R &r, V &&v) {
  v("reason", r.reason);
  v("kernel_reason", r.kernel_reason);
  v("src", r.src);
  v("dst", r.dst);
  v("tcp_flags", r.tcp_flags, kFieldOptional);
}

// Host-wide: the kernel sent a RST (src = us, the RST's sender).
struct ResetSent {
  static constexpr std::string_view kName = "tcp_send_reset";
  Endpoint src, dst;
  std::string state; // "" when no socket owned the packet
  bool has_socket = false;
};
template <class R, class V>
  requires RecordRef<R, ResetSent>
void fields(R &r, V &&v) {
  v("src", r.src);
  v("dst", r.dst);
  v("state", r.state);
  v("has_socket", r.has_socket);
}

struct OomVictim {
  static constexpr std::string_view kName = "oom_kill";
  uint32_t pid = 0, uid = 0;
  std::string comm;
  uint64_t total_vm_kb = 0, anon_rss_kb = 0, file_rss_kb = 0, shmem_rss_kb = 0;
};
template <class R, class V>
  requires RecordRef<R, OomVictim>
void fields(R &r, V &&v) {
  v("pid", r.pid);
  v("uid", r.uid);
  v("comm", r.comm);
  v("total_vm_kb", r.total_vm_kb);
  v("anon_rss_kb", r.anon_rss_kb);
  v("file_rss_kb", r.file_rss_kb);
  v("shmem_rss_kb", r.shmem_rss_kb);
}

struct FatalSignal {
  static constexpr std::string_view kName = "fatal_signal";
  int sig = 0;
  int result = 0; // 0: delivered
  uint32_t target_pid = 0, target_tid = 0;
  std::string target_comm;
  uint32_t sender_pid = 0, sender_tid = 0;
  std::string sender_comm;
  int si_code = 0;
};
template <class R, class V>
  requires RecordRef<R, FatalSignal>
void fields(R &r, V &&v) {
  v.named("signal", r.sig, "signal_name", signal_name);
  v("result", r.result);
  v("pid", r.target_pid);
  v("tid", r.target_tid);
  v("comm", r.target_comm);
  v("sender_pid", r.sender_pid);
  v("sender_tid", r.sender_tid);
  v("sender_comm", r.sender_comm);
  v("si_code", r.si_code);
}

struct ProcessExit {
  static constexpr std::string_view kName = "process_exit";
  uint32_t pid = 0, ppid = 0;
  std::string comm;
  int exit_code = 0; // exit status (code), valid when signal == 0
  int signal = 0;    // terminating signal, 0 for a normal exit
  bool core_dumped = false;
  bool watched = false;
};
template <class R, class V>
  requires RecordRef<R, ProcessExit>
void fields(R &r, V &&v) {
  v("pid", r.pid);
  v("ppid", r.ppid);
  v("comm", r.comm);
  v("exit_code", r.exit_code);
  v("exit_signal", r.signal);
  v("core_dumped", r.core_dumped);
  v("watched", r.watched);
}

struct WatchStart {
  static constexpr std::string_view kName = "watch";
  uint32_t pid = 0, parent_pid = 0;
  std::string comm;
  std::string via; // "fork", "exec", "scan"
};
template <class R, class V>
  requires RecordRef<R, WatchStart>
void fields(R &r, V &&v) {
  v("pid", r.pid);
  v("parent_pid", r.parent_pid);
  v("comm", r.comm);
  v("via", r.via);
}

// Host-wide: a TCP socket started listening (in the context of the task that called listen())
// or stopped (in the context of the task that closed it: `exiting` when that was its owner's exit).
struct ListenChange {
  static constexpr std::string_view kName = "listen_change";
  uint32_t pid = 0, tid = 0;
  std::string comm;
  Endpoint local; // "0.0.0.0:8080", "[::]:8080"
  int family = 0; // 4 or 6
  uint32_t netns = 0;  // network namespace inode, 0 if unknown
  uint64_t cookie = 0; // the socket's cookie: a stop pairs with the start of the same socket
  bool listening = false;
  bool exiting = false;
};
template <class R, class V>
  requires RecordRef<R, ListenChange>
void fields(R &r, V &&v) {
  v("pid", r.pid);
  v("tid", r.tid);
  v("comm", r.comm);
  v("family", r.family);
  v("local", r.local);
  v("netns", r.netns, kFieldOptional);
  v("cookie", r.cookie, kFieldOptional | kFieldBookkeeping);
  v("listening", r.listening);
  v("exiting", r.exiting);
}

// Host-wide: a process whose last thread was exiting still held a listening unix socket (read from
// its descriptor table before it closed its files). Unix sockets have no state tracepoint: this is
// how the kernel names a unix upstream's owner at its death, however short its life.
struct UnixListenerExit {
  static constexpr std::string_view kName = "unix_listener_exit";
  uint32_t pid = 0;
  uint32_t fd = 0;
  std::string comm;
  std::string address; // "unix:/run/app.sock"; abstract names "unix:@name"
  uint64_t inode = 0;  // the socket's inode, as /proc/net/unix shows it
  uint32_t netns = 0;
};
template <class R, class V>
  requires RecordRef<R, UnixListenerExit>
void fields(R &r, V &&v) {
  v("pid", r.pid);
  v("fd", r.fd);
  v("comm", r.comm);
  v("local", r.address);
  v("inode", r.inode);
  v("netns", r.netns, kFieldOptional);
}

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
std::string tcp_state_name(uint32_t state);

// Turns one ring-buffer record into an event; a failure (truncated, unknown kind) says why in one
// line, and the caller counts it.
Result<KernelEvent> decode_record(std::span<const uint8_t> bytes);

// JSON (one object per line in captures). event_from_json fails, saying why, on a malformed object.
nlohmann::json to_json(const KernelEvent &ev);
Result<KernelEvent> event_from_json(const nlohmann::json &j);

// The JSON Schema (draft 2020-12) of a kernel record, generated from the field lists: as a capture
// line, or (evidence_item) as a verdict cites it, without "type". docs/schema holds both.
nlohmann::json event_schema(bool evidence_item = false);

// Record fields the text report leaves out: step times and join keys (kFieldTiming, kFieldBookkeeping).
bool is_hidden_detail(std::string_view key);

} // namespace why502
