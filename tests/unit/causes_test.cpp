// The one errno -> cause table (src/correlate/causes.h) and the kinds the join matches on.
#include <gtest/gtest.h>

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

TEST(Causes, EveryCauseInTheTableIsAContractCode) {
  std::set<std::string> codes = {cause::kNoListener, cause::kUnixBacklogFull, cause::kEphemeralPorts,
                                 cause::kConnectDenied, cause::kHostUnreachable, cause::kConnectTimeout,
                                 cause::kConnectionReset, cause::kFdLimit};
  for (const auto &e : errno_causes()) {
    if (e.cause) {
      EXPECT_TRUE(codes.count(e.cause)) << e.cause;
    }
  }
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
