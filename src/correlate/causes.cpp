#include "correlate/causes.h"

#include <algorithm>
#include <cerrno>
#include <set>

#include "why502/correlate.h"

namespace why502 {

static_assert(names_are_unique<JoinKind>());

namespace {

using K = JoinKind;
using P = SyscallProbe;

// One row per errno nginx (or a watched worker's syscall) can report on an upstream attempt.
constexpr ErrnoCause kTable[] = {
    // TCP reports refusal as an RST answering the SYN; unix sockets only through connect().
    {ECONNREFUSED, cause::kNoListener, K::Refused, P::ConnectUnix, false},
    {ENOENT, cause::kNoListener, K::Syscall, P::ConnectUnix, false}, // unix socket path missing
    // A full unix backlog (TCP never returns EAGAIN from a non-blocking connect on this kernel family;
    // the probe is armed for both so an odd one is still recorded, and the rule checks for unix).
    {EAGAIN, cause::kUnixBacklogFull, K::Syscall, P::Connect, false},
    {EADDRNOTAVAIL, cause::kEphemeralPorts, K::Syscall, P::Connect, false},
    {EPERM, cause::kConnectDenied, K::Syscall, P::Connect, false},  // local netfilter OUTPUT drop, cgroup
    {EACCES, cause::kConnectDenied, K::Syscall, P::Connect, false}, // LSM
    {ENETUNREACH, cause::kHostUnreachable, K::Unreachable, P::Connect, false}, // no route: connect() itself
    {EHOSTUNREACH, cause::kHostUnreachable, K::Unreachable, P::Connect, false},
    {EHOSTDOWN, cause::kHostUnreachable, K::Unreachable, P::None, false},
    {ENETDOWN, cause::kHostUnreachable, K::Unreachable, P::None, false},
    {ETIMEDOUT, cause::kConnectTimeout, K::SynTimeout, P::None, false},
    {ECONNRESET, cause::kConnectionReset, K::RstEstablished, P::None, false},
    {EMFILE, cause::kFdLimit, K::Syscall, P::Socket, true, " (worker_rlimit_nofile / RLIMIT_NOFILE)"},
    {ENFILE, cause::kFdLimit, K::Syscall, P::Socket, true, " (system-wide fs.file-max)"},
    // Out of kernel memory for a socket: recorded (and shown as evidence), no cause code of its own.
    {ENOBUFS, nullptr, K::Syscall, P::Socket, true},
    {ENOMEM, nullptr, K::Syscall, P::Socket, true},
};

namespace pg = program;
using T = Transport;

// Programs per cause. Every TCP cause reads the connection's record, which inet_sock_set_state emits.
constexpr const char *kRefusedTcp[] = {pg::kSockSetState, pg::kReceiveReset, pg::kExitConnect};
constexpr const char *kDeathOom[] = {pg::kMarkVictim, pg::kProcessExit, pg::kSockSetState};
constexpr const char *kDeathSignal[] = {pg::kSignalGenerate, pg::kProcessExit, pg::kSockSetState};
constexpr const char *kDeathExit[] = {pg::kProcessExit, pg::kSockSetState};
constexpr const char *kSynRetransmits[] = {pg::kSockSetState, pg::kRetransmitSkb}; // a SYN left unanswered
constexpr const char *kConnectOnly[] = {pg::kExitConnect};
constexpr const char *kReset[] = {pg::kSockSetState, pg::kReceiveReset};
constexpr const char *kStateOnly[] = {pg::kSockSetState};
constexpr const char *kUnreachable[] = {pg::kSockSetState, pg::kSkErrorReport, pg::kExitConnect};
constexpr const char *kFirewall[] = {pg::kSockSetState, pg::kKfreeSkb, pg::kRetransmitSkb};
constexpr const char *kFds[] = {pg::kExitSocket, pg::kExitAccept4, pg::kExitAccept};

constexpr CauseSpec kCauses[] = {
    {cause::kNoListener, T::Both, kRefusedTcp,
     "listeners (samples, listen_change) to say nothing listened; nginx's errno 111 alone for unix"},
    // Deaths: the process that owned the upstream (listen_change, unix_listener_exit, samples).
    {cause::kOomKilled, T::Both, kDeathOom, "the upstream's owner (listen_change, unix_listener_exit, samples)"},
    {cause::kKilledBySignal, T::Both, kDeathSignal, "the upstream's owner"},
    {cause::kExited, T::Both, kDeathExit, "the upstream's owner"},
    {cause::kAcceptQueueOverflow, T::Tcp, kSynRetransmits, "listen queue depth and TcpExt ListenOverflows (host samples)"},
    {cause::kUnixBacklogFull, T::Unix, kConnectOnly, "nginx's errno 11 alone without the probe"},
    {cause::kConnectionReset, T::Tcp, kReset, "nginx's errno 104"},
    {cause::kClosedEarly, T::Both, kStateOnly, "nginx's \"prematurely closed\" line (unix: only that)"},
    {cause::kConnectTimeout, T::Tcp, kSynRetransmits, "nginx's 110 while connecting"},
    {cause::kHostUnreachable, T::Tcp, kUnreachable, "nginx's errno 113/101", "no route to {upstream}: {how}"},
    {cause::kFirewallDrop, T::Tcp, kFirewall, ""},
    {cause::kConnectDenied, T::Both, kConnectOnly, "nginx's errno 1/13",
     "the kernel refused nginx's connect to {upstream}: {how} (a local firewall rule, SELinux/LSM or cgroup policy)"},
    {cause::kEphemeralPorts, T::Tcp, kConnectOnly, "nginx's errno 99",
     "no local port was free to connect to {upstream}: {how} (ip_local_port_range exhausted; consider upstream "
     "keepalive)"},
    {cause::kFdLimit, T::Both, kFds, "nginx's errno 24/23", "nginx worker ran out of file descriptors: {how}"},
    {cause::kNoLiveUpstreams, T::Both, {}, "nginx's \"no live upstreams\" line and the verdicts that marked servers down"},
    {cause::kNoKernelFault, T::Tcp, kStateOnly, "the connection's record showing a clean exchange"},
    {cause::kUnknown, T::Both, {}, ""},
};

RecordKind kind_of_errno(int err) {
  if (const auto *e = errno_cause(err); e && e->kind != K::Syscall)
    return {e->kind, 0};
  return {K::Syscall, err};
}

} // namespace

std::span<const CauseSpec> cause_specs() { return kCauses; }

const CauseSpec *cause_spec(std::string_view code) {
  for (const auto &c : kCauses)
    if (c.code == code)
      return &c;
  return nullptr;
}

std::vector<std::string> causes_needing(std::string_view program) {
  std::vector<std::string> out;
  for (const auto &c : kCauses)
    if (std::find(c.programs.begin(), c.programs.end(), program) != c.programs.end())
      out.push_back(c.code);
  return out;
}

std::vector<std::string> causes_degraded_by(const std::vector<ProgramStatus> &programs) {
  std::set<std::string> out;
  for (const auto &p : programs)
    if (!p.attached)
      for (auto &c : causes_needing(p.program))
        out.insert(c);
  return {out.begin(), out.end()};
}

std::string errno_summary(const CauseSpec &c, const std::string &upstream, const std::string &how) {
  std::string out;
  for (std::string_view t = c.errno_summary ? c.errno_summary : ""; !t.empty();) {
    if (t.starts_with("{upstream}")) {
      out += upstream;
      t.remove_prefix(10);
    } else if (t.starts_with("{how}")) {
      out += how;
      t.remove_prefix(5);
    } else {
      out += t.front();
      t.remove_prefix(1);
    }
  }
  return out;
}

std::vector<int> errnos_proving(std::string_view code) {
  std::vector<int> out;
  for (const auto &e : kTable)
    if (e.cause && e.cause == code)
      out.push_back(e.err);
  return out;
}

std::span<const ErrnoCause> errno_causes() { return kTable; }

const ErrnoCause *errno_cause(int err) {
  for (const auto &e : kTable)
    if (e.err == err)
      return &e;
  return nullptr;
}

std::optional<RecordKind> record_kind(const KernelEvent &ev) {
  if (const auto *c = std::get_if<ConnFail>(&ev.record)) {
    switch (c->failure) {
    case ConnFailure::RstInSynSent: return RecordKind{K::Refused, 0};
    case ConnFailure::RstEstablished:
      // The upstream's FIN came first: nginx may have read the end of stream before the RST.
      if (c->ts_fin_received && c->ts_fin_received <= c->ts_reset)
        return RecordKind{K::FinThenRst, 0};
      return RecordKind{K::RstEstablished, 0};
    case ConnFailure::FinBeforeData: return RecordKind{K::FinBeforeData, 0};
    case ConnFailure::SynTimeout: return RecordKind{K::SynTimeout, 0};
    case ConnFailure::IcmpError:
      // SO_ERROR clears sk_err: with it gone only nginx's errno says which ICMP error it was.
      if (c->sk_err == 0)
        return RecordKind{K::IcmpUnknown, 0};
      return kind_of_errno(c->sk_err);
    case ConnFailure::SynRetransmit: return std::nullopt; // connected in the end: a fact, not a failure
    }
    return std::nullopt;
  }
  if (const auto *s = std::get_if<SyscallErr>(&ev.record)) {
    if (s->syscall == Syscall::Accept)
      return std::nullopt; // a worker-wide fact (fd_limit), not an upstream attempt
    return kind_of_errno(s->err);
  }
  return std::nullopt;
}

LineKinds line_kinds(const nginx::ErrorLogLine &line) {
  using F = nginx::UpstreamFailure;
  LineKinds out;
  auto add = [&](RecordKind k) { out.kinds[out.n++] = k; };
  switch (line.failure) {
  case F::timed_out_connecting: add({K::SynTimeout, 0}); return out;
  case F::prematurely_closed:
    add({K::FinBeforeData, 0});
    add({K::FinThenRst, 0});
    return out;
  case F::socket_failed:
    if (line.err)
      add({K::Syscall, *line.err});
    return out;
  case F::connect_failed:
  case F::recv_failed:
  case F::send_failed:
  case F::readv_failed: break;
  default: return out; // timeouts reading/sending, bad headers, no live upstreams: no kernel record says so
  }
  if (!line.err)
    return out;
  int err = *line.err;
  if (err == EPIPE) { // writing to a connection the upstream reset (or closed, then reset)
    add({K::RstEstablished, 0});
    add({K::FinThenRst, 0});
    return out;
  }
  RecordKind k = kind_of_errno(err);
  if (k.kind == K::Syscall && !errno_cause(err))
    return out; // an errno the table does not know: no record can be said to agree
  add(k);
  if (k.kind == K::RstEstablished)
    add({K::FinThenRst, 0});
  if (k.kind == K::Refused || k.kind == K::Unreachable)
    add({K::IcmpUnknown, 0});
  return out;
}

bool needs_syscall_probes(const nginx::ErrorLogLine &l) {
  if (!l.err)
    return false;
  const ErrnoCause *e = errno_cause(*l.err);
  if (!e)
    return false;
  if (l.failure == nginx::UpstreamFailure::socket_failed || l.syscall == "accept4" || l.syscall == "accept")
    return e->probe == P::Socket;
  if (l.failure != nginx::UpstreamFailure::connect_failed)
    return false;
  bool unix_socket = l.upstream_address.rfind("unix:", 0) == 0;
  return e->probe == P::Connect || (e->probe == P::ConnectUnix && unix_socket);
}

bool only_syscall_record(const nginx::ErrorLogLine &l) {
  if (!needs_syscall_probes(l))
    return false;
  if (l.upstream_address.rfind("unix:", 0) == 0)
    return true;
  auto kinds = line_kinds(l);
  for (int i = 0; i < kinds.n; ++i)
    if (kinds.kinds[i].kind != JoinKind::Syscall)
      return false;
  return true;
}

} // namespace why502
