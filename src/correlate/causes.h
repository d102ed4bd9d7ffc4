// The cause table: for each cause code, what it needs (the BPF programs whose records prove it, other
// facts it reads, TCP or unix upstreams) and, below, the errno -> cause table. The rules, the probe
// arming (needs_syscall_probes), the degraded-cause report of `doctor`/`events`/`watch`
// (causes_degraded_by) and a unit test of BPF's errno filter all read these two tables.
//
// The errno -> cause table. It serves three readers that used to keep their
// own lists: the join (which kernel record agrees with what nginx reports), the
// cause rules (what a syscall record or nginx's own errno proves), and the
// watcher (which nginx lines call for the on-demand syscall probes). The BPF
// side's accept() filter (is_resource_errno in bpf/why502.bpf.c) is checked
// against `accept_probe` by a unit test.
#pragma once

#include <optional>
#include <span>
#include <string>

#include "why502/kernel_event.h"
#include "why502/nginx.h"
#include "why502/tracer.h"

namespace why502 {

// The BPF programs the cause table names (bpf/why502.bpf.c; a unit test checks each is a program of
// the object). The tracer needs no list: it reads the programs from the object itself.
namespace program {
inline constexpr const char *kSockSetState = "on_inet_sock_set_state";
inline constexpr const char *kReceiveReset = "on_tcp_receive_reset";
inline constexpr const char *kSkErrorReport = "on_inet_sk_error_report";
inline constexpr const char *kRetransmitSkb = "on_tcp_retransmit_skb";
inline constexpr const char *kKfreeSkb = "on_kfree_skb";
inline constexpr const char *kSendReset = "on_tcp_send_reset";
inline constexpr const char *kMarkVictim = "on_mark_victim";
inline constexpr const char *kSignalGenerate = "on_signal_generate";
inline constexpr const char *kProcessExit = "on_sched_process_exit";
inline constexpr const char *kProcessFork = "on_sched_process_fork";
inline constexpr const char *kProcessExec = "on_sched_process_exec";
inline constexpr const char *kExitConnect = "on_sys_exit_connect";
inline constexpr const char *kExitSocket = "on_sys_exit_socket";
inline constexpr const char *kExitAccept4 = "on_sys_exit_accept4";
inline constexpr const char *kExitAccept = "on_sys_exit_accept";
} // namespace program

// Which upstreams a cause can be named for.
enum class Transport : unsigned { Tcp = 1, Unix = 2, Both = 3 };

struct CauseSpec {
  const char *code;
  Transport transport;
  // BPF programs whose records prove it (program:: names); fewer attached, less evidence.
  std::span<const char *const> programs;
  const char *also; // the other facts its rule reads, in words (host samples, nginx's lines)
  // For a cause an errno proves by itself: the verdict's summary, with {upstream} and {how} (who
  // reported the errno: "connect() failed with EADDRNOTAVAIL", nginx's "(99: ...)"). nullptr: the
  // cause has a rule of its own (rules.cpp), or no errno proves it alone.
  const char *errno_summary = nullptr;
};

// errno_summary with its placeholders filled in.
std::string errno_summary(const CauseSpec &c, const std::string &upstream, const std::string &how);

std::span<const CauseSpec> cause_specs();
const CauseSpec *cause_spec(std::string_view code);
// Causes that lose evidence when a program is missing; and for every program that did not attach.
std::vector<std::string> causes_needing(std::string_view program);
std::vector<std::string> causes_degraded_by(const std::vector<ProgramStatus> &programs);
// The errnos nginx (or a syscall record) reports that prove `code` (from the errno table below).
std::vector<int> errnos_proving(std::string_view code);

// What kind of kernel record reports a failed attempt. A log line and a kernel
// record join only when their kinds agree (DESIGN.md, "exact join").
enum class JoinKind {
  RstEstablished, // RST on an established connection (nginx: 104, "reset by peer")
  FinBeforeData,  // FIN before any data ("upstream prematurely closed connection")
  FinThenRst,     // FIN, then RST: nginx saw whichever it read first
  Refused,        // RST answering the SYN, or connect() ECONNREFUSED (unix sockets) (111)
  SynTimeout,     // no answer to the SYN until nginx gave up (110 while connecting)
  Unreachable,    // ICMP error or connect() with EHOSTUNREACH/ENETUNREACH (113/101)
  IcmpUnknown,    // ICMP error whose errno nginx consumed before close: 111 or 113/101
  Syscall,        // connect()/socket() returned this errno: the record carries it (11, 99, 1/13, 24, ...)
};
template <> struct EnumNames<JoinKind> {
  static constexpr std::pair<JoinKind, std::string_view> table[] = {
      {JoinKind::RstEstablished, "rst_established"}, {JoinKind::FinBeforeData, "fin_before_data"},
      {JoinKind::FinThenRst, "fin_then_rst"},         {JoinKind::Refused, "refused"},
      {JoinKind::SynTimeout, "syn_timeout"},          {JoinKind::Unreachable, "unreachable"},
      {JoinKind::IcmpUnknown, "icmp_error"},          {JoinKind::Syscall, "syscall_errno"}};
};

// Which probe reports an errno as a syscall record (armed on demand).
enum class SyscallProbe {
  None,        // the TCP state machine reports it (tracepoints always attached)
  Connect,     // sys_exit_connect, any family
  ConnectUnix, // sys_exit_connect, only for unix-socket upstreams (TCP reports it as a state change)
  Socket,      // sys_exit_socket (and accept4/accept where `accept_probe`)
};

struct ErrnoCause {
  int err;
  const char *cause; // the cause code nginx's errno (or the syscall record) proves, nullptr: none by itself
  JoinKind kind;     // the kernel record that reports it
  SyscallProbe probe;
  bool accept_probe; // BPF also reports accept()/accept4() failing with it (a worker out of resources)
  const char *hint = ""; // appended to the cause's errno_summary ("(worker_rlimit_nofile / RLIMIT_NOFILE)")
};

std::span<const ErrnoCause> errno_causes();
const ErrnoCause *errno_cause(int err);

// The join key of a kernel failure record (nullopt: not an attempt failure).
struct RecordKind {
  JoinKind kind;
  int err = 0; // for JoinKind::Syscall
  bool operator==(const RecordKind &) const = default;
};
std::optional<RecordKind> record_kind(const KernelEvent &ev);

// The kinds of kernel record that agree with an nginx error line, most specific
// first (empty: nginx reports something no kernel record describes, e.g. a timeout reading).
struct LineKinds {
  RecordKind kinds[3];
  int n = 0;
  bool agrees(const RecordKind &k) const {
    for (int i = 0; i < n; ++i)
      if (kinds[i] == k)
        return true;
    return false;
  }
};
LineKinds line_kinds(const nginx::ErrorLogLine &line);

// Does this nginx line report a failure only the syscall probes see?
bool needs_syscall_probes(const nginx::ErrorLogLine &line);
// Is a syscall record the only kernel record that can describe this line's attempt (no TCP state
// change does: a unix socket, or an errno only connect()/socket() return)?
bool only_syscall_record(const nginx::ErrorLogLine &line);

} // namespace why502
