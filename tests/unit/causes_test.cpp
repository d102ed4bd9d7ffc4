// The one errno -> cause table (src/correlate/causes.h) and the kinds the join matches on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "correlate/causes.h"
#include "why502/correlate.h"

using namespace why502;

TEST(Causes, BpfAcceptFilterMatchesTheTable) {
  // bpf/why502.bpf.c filters accept() failures in the kernel (is_resource_errno); it must report
  // exactly the errnos the table marks accept_probe.
  std::ifstream f(std::string(WHY502_SOURCE_DIR) + "/bpf/why502.bpf.c");
  ASSERT_TRUE(f);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string src = ss.str();
  auto start = src.find("is_resource_errno(long ret)");
  ASSERT_NE(start, std::string::npos);
  auto end = src.find('}', start);
  std::string body = src.substr(start, end - start);
  std::set<std::string> bpf;
  std::regex errno_re("-(E[A-Z]+)");
  for (auto it = std::sregex_iterator(body.begin(), body.end(), errno_re); it != std::sregex_iterator(); ++it)
    bpf.insert((*it)[1]);
  std::set<std::string> table;
  for (const auto &e : errno_causes())
    if (e.accept_probe)
      table.insert(errno_name(e.err));
  EXPECT_EQ(bpf, table);
}

TEST(Causes, EveryErrnoCauseIsAContractCode) {
  std::set<std::string> codes(std::begin(cause::kAll), std::end(cause::kAll));
  for (const auto &e : errno_causes()) {
    if (e.cause) {
      EXPECT_TRUE(codes.count(e.cause)) << e.cause;
    }
  }
}

TEST(Causes, TheCauseTableHasOneRowPerContractCode) {
  std::multiset<std::string> rows;
  for (const auto &c : cause_specs())
    rows.insert(c.code);
  EXPECT_EQ(rows, std::multiset<std::string>(std::begin(cause::kAll), std::end(cause::kAll)));
  EXPECT_EQ(cause_spec("no_such_cause"), nullptr);
}

TEST(Causes, EveryProgramTheTableNamesIsOneTheTracerLoads) {
  auto programs = program_names();
  std::set<std::string> known(programs.begin(), programs.end());
  for (const auto &c : cause_specs())
    for (const char *p : c.programs)
      EXPECT_TRUE(known.count(p)) << c.code << " names " << p;
  // And every program in the tracer's table is a SEC() of the BPF object's source.
  std::ifstream f(std::string(WHY502_SOURCE_DIR) + "/bpf/why502.bpf.c");
  std::stringstream ss;
  ss << f.rdbuf();
  for (const auto &p : programs) {
    const std::string src = ss.str();
    EXPECT_TRUE(src.find("int " + p + "(") != std::string::npos || src.find("BPF_PROG(" + p + ",") != std::string::npos)
        << p;
  }
}

TEST(Causes, AnErrnoProvesOnlyCausesForItsTransport) {
  // An errno only a unix connect() returns proves a cause the table allows for unix upstreams, and
  // one the TCP state machine reports proves a TCP cause.
  for (const auto &e : errno_causes()) {
    if (!e.cause)
      continue;
    const CauseSpec *c = cause_spec(e.cause);
    ASSERT_NE(c, nullptr) << e.cause;
    if (e.probe == SyscallProbe::ConnectUnix) {
      EXPECT_TRUE(unsigned(c->transport) & unsigned(Transport::Unix)) << e.cause;
    }
    if (e.probe == SyscallProbe::None) {
      EXPECT_TRUE(unsigned(c->transport) & unsigned(Transport::Tcp)) << e.cause;
    }
    // The probe that reports it is a program the cause lists.
    if (e.probe != SyscallProbe::None) {
      const char *probe = e.probe == SyscallProbe::Socket ? program::kExitSocket : program::kExitConnect;
      EXPECT_NE(std::find(c->programs.begin(), c->programs.end(), std::string_view(probe)), c->programs.end())
          << e.cause << " is reported by " << probe;
    }
  }
}

TEST(Causes, HostUnreachableErrnosAreOneSet) {
  // EHOSTDOWN and ENETDOWN count as host_unreachable wherever an errno is read.
  auto errs = errnos_proving(cause::kHostUnreachable);
  EXPECT_EQ(std::set<int>(errs.begin(), errs.end()), (std::set<int>{ENETUNREACH, EHOSTUNREACH, EHOSTDOWN, ENETDOWN}));
}

TEST(Causes, AMissingProgramNamesTheCausesThatLoseEvidence) {
  std::vector<ProgramStatus> programs = {{program::kKfreeSkb, "tp_btf/kfree_skb", false, "not here", false},
                                         {program::kSockSetState, "tp_btf/inet_sock_set_state", true, "", true},
                                         {program::kSendReset, "tp_btf/tcp_send_reset", false, "not here", false}};
  EXPECT_EQ(causes_degraded_by(programs), std::vector<std::string>{cause::kFirewallDrop});
  EXPECT_TRUE(causes_needing(program::kSendReset).empty()); // evidence only: no rule reads it
  EXPECT_EQ(causes_needing(program::kExitSocket), std::vector<std::string>{cause::kFdLimit});
}

namespace {
nginx::ErrorLogLine line(const std::string &message) {
  auto l = nginx::parse_error_line("2026/11/30 17:02:01 [error] 10#10: *1 " + message);
  EXPECT_TRUE(l) << message;
  return *l;
}
const std::string kCtx = ", client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: ";

KernelEvent conn_event(ConnFailure f, int sk_err = 0) {
  ConnFail c;
  c.failure = f;
  c.sk_err = sk_err;
  KernelEvent ev;
  ev.record = c;
  return ev;
}
KernelEvent syscall_event(Syscall call, int err) {
  SyscallErr s;
  s.syscall = call;
  s.err = err;
  KernelEvent ev;
  ev.record = s;
  return ev;
}
} // namespace

TEST(Causes, NginxMessagesAgreeOnlyWithTheirKernelRecord) {
  auto reset = line("recv() failed (104: Connection reset by peer) while reading response header from upstream" +
                    kCtx + "\"http://127.0.0.1:8080/\"");
  auto closed = line("upstream prematurely closed connection while reading response header from upstream" + kCtx +
                     "\"http://127.0.0.1:8080/\"");
  auto refused = line("connect() failed (111: Connection refused) while connecting to upstream" + kCtx +
                      "\"http://127.0.0.1:8080/\"");
  auto timeout = line("upstream timed out (110: Connection timed out) while connecting to upstream" + kCtx +
                      "\"http://127.0.0.1:8080/\"");
  auto unreach = line("connect() failed (113: No route to host) while connecting to upstream" + kCtx +
                      "\"http://10.9.9.9:8080/\"");
  auto eagain = line("connect() to unix:/run/a.sock failed (11: Resource temporarily unavailable) while "
                     "connecting to upstream" + kCtx + "\"http://unix:/run/a.sock:/\"");
  auto emfile = line("socket() failed (24: Too many open files) while connecting to upstream" + kCtx +
                     "\"http://127.0.0.1:8080/\"");

  auto rst = *record_kind(conn_event(ConnFailure::RstEstablished));
  auto fin = *record_kind(conn_event(ConnFailure::FinBeforeData));
  auto syn_rst = *record_kind(conn_event(ConnFailure::RstInSynSent));
  auto syn_to = *record_kind(conn_event(ConnFailure::SynTimeout));
  auto icmp = *record_kind(conn_event(ConnFailure::IcmpError, EHOSTUNREACH));
  auto icmp_unknown = *record_kind(conn_event(ConnFailure::IcmpError, 0));
  auto unix_refused = *record_kind(syscall_event(Syscall::Connect, ECONNREFUSED));
  auto sys_eagain = *record_kind(syscall_event(Syscall::Connect, EAGAIN));
  auto sys_emfile = *record_kind(syscall_event(Syscall::Socket, EMFILE));
  EXPECT_FALSE(record_kind(conn_event(ConnFailure::SynRetransmit)));
  EXPECT_FALSE(record_kind(syscall_event(Syscall::Accept, EMFILE)));

  EXPECT_TRUE(line_kinds(reset).agrees(rst));
  EXPECT_FALSE(line_kinds(reset).agrees(fin)); // the swap the old join allowed
  EXPECT_TRUE(line_kinds(closed).agrees(fin));
  EXPECT_FALSE(line_kinds(closed).agrees(rst));
  EXPECT_TRUE(line_kinds(refused).agrees(syn_rst));
  EXPECT_TRUE(line_kinds(refused).agrees(unix_refused));
  EXPECT_TRUE(line_kinds(refused).agrees(icmp_unknown));
  EXPECT_FALSE(line_kinds(refused).agrees(syn_to));
  EXPECT_TRUE(line_kinds(timeout).agrees(syn_to));
  EXPECT_FALSE(line_kinds(timeout).agrees(syn_rst));
  EXPECT_TRUE(line_kinds(unreach).agrees(icmp));
  EXPECT_TRUE(line_kinds(eagain).agrees(sys_eagain));
  EXPECT_FALSE(line_kinds(eagain).agrees(sys_emfile));
  EXPECT_TRUE(line_kinds(emfile).agrees(sys_emfile));
  EXPECT_FALSE(line_kinds(emfile).agrees(sys_eagain));

  // The same table picks the probes to arm.
  EXPECT_TRUE(needs_syscall_probes(eagain));
  EXPECT_TRUE(needs_syscall_probes(emfile));
  EXPECT_FALSE(needs_syscall_probes(refused)); // TCP: the state machine reports it
  EXPECT_FALSE(needs_syscall_probes(reset));
  auto unix_refused_line = line("connect() to unix:/run/a.sock failed (111: Connection refused) while connecting "
                                "to upstream" + kCtx + "\"http://unix:/run/a.sock:/\"");
  EXPECT_TRUE(needs_syscall_probes(unix_refused_line));
}

TEST(Causes, AnErrnoThatProvesACauseAloneSaysHow) {
  // A syscall errno with a cause and no rule of its own is worded by the table.
  for (const auto &e : errno_causes()) {
    if (!e.cause || e.kind != JoinKind::Syscall || std::string_view(e.cause) == cause::kNoListener ||
        std::string_view(e.cause) == cause::kUnixBacklogFull)
      continue;
    const CauseSpec *c = cause_spec(e.cause);
    ASSERT_NE(c, nullptr);
    EXPECT_NE(c->errno_summary, nullptr) << e.cause;
  }
  const CauseSpec *ports = cause_spec(cause::kEphemeralPorts);
  EXPECT_EQ(errno_summary(*ports, "10.0.0.1:80", "connect() failed with EADDRNOTAVAIL"),
            "no local port was free to connect to 10.0.0.1:80: connect() failed with EADDRNOTAVAIL "
            "(ip_local_port_range exhausted; consider upstream keepalive)");
}
