// The correlator on a recorded capture, and its cause rules on hand-built facts
// (each fact in the form the kernel side and the parsers really produce).
#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <ctime>

#include "cli/replay.h"
#include "why502/correlate.h"
#include "why502/error.h"

using namespace why502;

namespace {

constexpr int64_t kSec = 1000000000;

struct UtcZone : ::testing::Environment {
  void SetUp() override {
    setenv("TZ", "UTC", 1);
    tzset();
  }
};
const auto *utc = ::testing::AddGlobalTestEnvironment(new UtcZone);

// A second on the wall clock that nginx's error log can express (UTC here).
constexpr int64_t kBase = 1764522120; // 2025-11-30 17:02:00 UTC

std::string nginx_time(int64_t epoch) {
  time_t t = epoch;
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y/%m/%d %H:%M:%S", &tm);
  return buf;
}

nginx::ErrorLogLine error_line(int64_t epoch, int pid, int conn, const std::string &message) {
  std::string text = nginx_time(epoch) + " [error] " + std::to_string(pid) + "#" + std::to_string(pid) + ": *" +
                     std::to_string(conn) + " " + message;
  auto l = nginx::parse_error_line(text);
  EXPECT_TRUE(l) << text;
  return *l;
}

std::string refused_msg(const std::string &up = "127.0.0.1:8080") {
  return "connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , "
         "request: \"GET / HTTP/1.1\", upstream: \"http://" + up + "/\", host: \"localhost\"";
}

KernelEvent at(int64_t wall_ns, KernelRecord r, bool host = false) {
  KernelEvent ev;
  ev.wall_ns = wall_ns;
  ev.boot_ns = uint64_t(wall_ns - 1000 * kSec); // any fixed offset
  ev.host = host;
  ev.record = std::move(r);
  return ev;
}

ConnFail conn(uint32_t pid, ConnFailure f, uint16_t dport, int64_t syn_wall_ns) {
  ConnFail c;
  c.pid = c.tid = pid;
  c.comm = "nginx";
  c.local = {"127.0.0.1", 40000};
  c.remote = {"127.0.0.1", dport};
  c.family = 4;
  c.failure = f;
  c.ts_syn_sent = uint64_t(syn_wall_ns - 1000 * kSec);
  return c;
}

HostSample sample(int64_t wall_ns, std::vector<Listener> listeners, uint64_t overflows = 0) {
  HostSample s;
  s.wall_ns = wall_ns;
  s.listeners = std::move(listeners);
  s.listen_overflows = overflows;
  return s;
}

Listener listener(const std::string &addr, uint32_t pid, const std::string &comm, uint32_t depth = 0,
                  uint32_t max = 128) {
  Listener l;
  l.address = addr;
  l.depth = depth;
  l.max = max;
  l.owners = {{pid, comm}};
  return l;
}

bool has_event(const Verdict &v, const std::string &name) {
  for (const auto &e : v.evidence)
    if (e.value("event", "") == name)
      return true;
  return false;
}

} // namespace

TEST(CorrelatorFixture, RecordedNoListenerCaptureGivesOneVerdictPer502) {
  std::string dir = std::string(WHY502_FIXTURES) + "/correlate/no_listener/";
  auto r = cli::replay({dir + "cap.jsonl",
                        {dir + "error.log"},
                        {dir + "access.log"},
                        "$remote_addr [$time_local] \"$request\" $status $pid $connection $upstream_addr $upstream_status"});
  ASSERT_EQ(r.verdicts.size(), 2u);
  EXPECT_EQ(r.bad_capture_lines, 0u);
  std::set<uint32_t> workers;
  for (const auto &v : r.verdicts) {
    EXPECT_EQ(v.cause, "no_listener");
    EXPECT_EQ(v.upstream, "127.0.0.1:18081");
    EXPECT_EQ(v.status, 502);
    EXPECT_TRUE(has_event(v, "conn_fail"));
    EXPECT_EQ(v.evidence[0]["failure"], "rst_in_syn_sent");
    EXPECT_EQ(v.evidence[0]["pid"], v.nginx_pid); // never across workers
    workers.insert(v.nginx_pid);
  }
  EXPECT_EQ(workers, (std::set<uint32_t>{22361, 22363}));
  EXPECT_EQ(r.verdicts[0].request->request, "GET /a HTTP/1.1");
  EXPECT_EQ(r.verdicts[1].request->request, "GET /b HTTP/1.1");
}

TEST(CorrelatorFixture, UnreadableInputsAreOneLineErrors) {
  EXPECT_THROW(cli::replay({"/nonexistent/cap.jsonl", {}, {}, ""}), why502::Error);
  std::string dir = std::string(WHY502_FIXTURES) + "/correlate/no_listener/";
  EXPECT_THROW(cli::replay({dir + "error.log", {dir + "error.log"}, {}, ""}), why502::Error); // not a capture
}

TEST(CorrelatorRules, OomKillOfThePortOwnerWinsOverRefused) {
  Correlator c;
  const int64_t t = kBase * kSec;
  c.add_host_sample(sample(t, {listener("0.0.0.0:8080", 4321, "gunicorn")}));
  OomVictim oom;
  oom.pid = 4321;
  oom.comm = "gunicorn";
  oom.anon_rss_kb = 1900 * 1024;
  c.add_kernel(at(t + kSec, oom, true));
  ProcessExit x;
  x.pid = 4321;
  x.comm = "gunicorn";
  x.signal = SIGKILL;
  c.add_kernel(at(t + kSec + 1000000, x, true));
  c.add_host_sample(sample(t + kSec + 500000000, {}));
  c.add_kernel(at(t + 2 * kSec + 100, conn(1234, ConnFailure::RstInSynSent, 8080, t + 2 * kSec)));
  c.add_error_line(error_line(kBase + 2, 1234, 7, refused_msg()), (kBase + 2) * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "upstream_oom_killed");
  ASSERT_TRUE(v[0].upstream_process);
  EXPECT_EQ(v[0].upstream_process->pid, 4321u);
  EXPECT_EQ(v[0].upstream_process->comm, "gunicorn");
  EXPECT_EQ(v[0].nginx_pid, 1234u);
  EXPECT_TRUE(has_event(v[0], "oom_kill"));
  EXPECT_TRUE(has_event(v[0], "conn_fail"));
  EXPECT_NE(v[0].summary.find("OOM-killed"), std::string::npos) << v[0].summary;
  EXPECT_NE(v[0].summary.find("1.9 GiB"), std::string::npos) << v[0].summary;
}

TEST(CorrelatorRules, SigtermFromAnOperatorNamesSignalAndSender) {
  Correlator c;
  const int64_t t = kBase * kSec;
  c.add_host_sample(sample(t, {listener("127.0.0.1:8080", 77, "python3")}));
  FatalSignal s;
  s.sig = SIGTERM;
  s.target_pid = s.target_tid = 77;
  s.target_comm = "python3";
  s.sender_pid = 500;
  s.sender_comm = "bash";
  c.add_kernel(at(t + kSec, s, true));
  ProcessExit x;
  x.pid = 77;
  x.comm = "python3";
  x.exit_code = 0;
  c.add_kernel(at(t + kSec + 2000000, x, true));
  c.add_host_sample(sample(t + 2 * kSec, {}));
  c.add_kernel(at(t + 3 * kSec, conn(1234, ConnFailure::RstInSynSent, 8080, t + 3 * kSec)));
  c.add_error_line(error_line(kBase + 3, 1234, 9, refused_msg()), (kBase + 3) * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "upstream_killed_by_signal");
  EXPECT_NE(v[0].summary.find("SIGTERM from bash pid 500"), std::string::npos) << v[0].summary;
  EXPECT_TRUE(has_event(v[0], "fatal_signal"));
  EXPECT_TRUE(has_event(v[0], "process_exit"));
}

TEST(CorrelatorRules, HandledSigtermWithoutExitIsNotADeath) {
  Correlator c;
  const int64_t t = kBase * kSec;
  c.add_host_sample(sample(t, {listener("127.0.0.1:8080", 77, "python3")}));
  FatalSignal s;
  s.sig = SIGTERM;
  s.target_pid = 77;
  s.target_comm = "python3";
  s.sender_pid = 500;
  s.sender_comm = "bash";
  c.add_kernel(at(t + kSec, s, true));
  auto k = conn(1234, ConnFailure::RstEstablished, 8080, t + 2 * kSec);
  k.last_state = "ESTABLISHED";
  c.add_kernel(at(t + 2 * kSec + 5, k));
  c.add_error_line(error_line(kBase + 2, 1234, 3,
                              "recv() failed (104: Connection reset by peer) while reading response header from "
                              "upstream, client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: "
                              "\"http://127.0.0.1:8080/\", host: \"localhost\""),
                   (kBase + 2) * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "connection_reset");
  ASSERT_TRUE(v[0].upstream_process);
  EXPECT_EQ(v[0].upstream_process->pid, 77u);
}

TEST(CorrelatorRules, ADeathFollowedByARestartIsNotWhyItWasRefused) {
  Correlator c;
  const int64_t t = kBase * kSec;
  c.add_host_sample(sample(t, {listener("127.0.0.1:8080", 77, "python3")}));
  ProcessExit x;
  x.pid = 77;
  x.comm = "python3";
  x.exit_code = 1;
  c.add_kernel(at(t + kSec, x, true));
  c.add_host_sample(sample(t + 2 * kSec, {listener("127.0.0.1:8080", 78, "python3")})); // restarted
  c.add_host_sample(sample(t + 3 * kSec, {}));                                           // and gone again
  c.add_kernel(at(t + 4 * kSec, conn(1234, ConnFailure::RstInSynSent, 8080, t + 4 * kSec)));
  c.add_error_line(error_line(kBase + 4, 1234, 3, refused_msg()), (kBase + 4) * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "no_listener");
}

TEST(CorrelatorRules, ExitMidRequestIsUpstreamExited) {
  Correlator c;
  const int64_t t = kBase * kSec;
  c.add_host_sample(sample(t, {listener("127.0.0.1:8080", 90, "php-fpm8.2")}));
  ProcessExit x;
  x.pid = 90;
  x.comm = "php-fpm8.2";
  x.exit_code = 3;
  c.add_kernel(at(t + kSec + 10, x, true));
  auto k = conn(1234, ConnFailure::FinBeforeData, 8080, t + kSec);
  c.add_kernel(at(t + kSec + 20, k));
  c.add_error_line(error_line(kBase + 1, 1234, 3,
                              "upstream prematurely closed connection while reading response header from upstream, "
                              "client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: "
                              "\"http://127.0.0.1:8080/\", host: \"localhost\""),
                   (kBase + 1) * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "upstream_exited");
  EXPECT_NE(v[0].summary.find("exited with code 3"), std::string::npos) << v[0].summary;
}

// An owner only the kernel saw: it listened 100 ms, between two samples that show nothing.
KernelEvent listen_change(int64_t wall_ns, uint32_t pid, const std::string &comm, bool listening, bool exiting = false) {
  ListenChange l;
  l.pid = l.tid = pid;
  l.comm = comm;
  l.local = {"127.0.0.1", 8080};
  l.family = 4;
  l.cookie = pid;
  l.listening = listening;
  l.exiting = exiting;
  return at(wall_ns, l, true);
}

TEST(CorrelatorRules, AnOwnerThatLived100msIsNamedFromTheKernelsListenRecords) {
  Correlator c;
  const int64_t t = kBase * kSec, ms = 1000000;
  c.add_host_sample(sample(t, {}));
  c.add_kernel(listen_change(t + 200 * ms, 555, "python3", true));
  ProcessExit x;
  x.pid = 555;
  x.comm = "python3";
  x.exit_code = 2;
  c.add_kernel(at(t + 300 * ms, x, true));
  c.add_kernel(listen_change(t + 300 * ms + 50000, 555, "python3", false, true));
  c.add_kernel(at(t + 400 * ms, conn(1234, ConnFailure::RstInSynSent, 8080, t + 400 * ms)));
  c.add_host_sample(sample(t + kSec, {}));
  c.add_error_line(error_line(kBase, 1234, 7, refused_msg()), kBase * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "upstream_exited") << v[0].summary;
  ASSERT_TRUE(v[0].upstream_process);
  EXPECT_EQ(v[0].upstream_process->pid, 555u);
  EXPECT_NE(v[0].summary.find("exited with code 2"), std::string::npos) << v[0].summary;
}

TEST(CorrelatorRules, AnOwnerOomKilledWhileHoldingOurConnectionIsNamed) {
  Correlator c;
  const int64_t t = kBase * kSec, ms = 1000000;
  c.add_kernel(listen_change(t + 100 * ms, 556, "python3", true));
  OomVictim oom;
  oom.pid = 556;
  oom.comm = "python3";
  oom.anon_rss_kb = 200 * 1024;
  c.add_kernel(at(t + 250 * ms, oom, true));
  ProcessExit x;
  x.pid = 556;
  x.comm = "python3";
  x.signal = SIGKILL;
  c.add_kernel(at(t + 260 * ms, x, true));
  c.add_kernel(listen_change(t + 260 * ms + 50000, 556, "python3", false, true));
  auto k = conn(1234, ConnFailure::RstEstablished, 8080, t + 200 * ms);
  k.last_state = "ESTABLISHED";
  c.add_kernel(at(t + 261 * ms, k));
  c.add_error_line(error_line(kBase, 1234, 3,
                              "recv() failed (104: Connection reset by peer) while reading response header from "
                              "upstream, client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: "
                              "\"http://127.0.0.1:8080/\", host: \"localhost\""),
                   kBase * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "upstream_oom_killed") << v[0].summary;
  ASSERT_TRUE(v[0].upstream_process);
  EXPECT_EQ(v[0].upstream_process->pid, 556u);
}

TEST(CorrelatorRules, AListenerThatStartedAfterTheRefusalOwnedNothing) {
  Correlator c;
  const int64_t t = kBase * kSec, ms = 1000000;
  c.add_kernel(at(t + 400 * ms, conn(1234, ConnFailure::RstInSynSent, 8080, t + 400 * ms)));
  c.add_kernel(listen_change(t + 450 * ms, 600, "python3", true));
  ProcessExit x;
  x.pid = 600;
  x.comm = "python3";
  c.add_kernel(at(t + 500 * ms, x, true));
  c.add_kernel(listen_change(t + 500 * ms + 50000, 600, "python3", false, true));
  c.add_error_line(error_line(kBase, 1234, 7, refused_msg()), kBase * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "no_listener") << v[0].summary;
  EXPECT_FALSE(v[0].upstream_process);
}

TEST(CorrelatorRules, NetfilterDropOfOurSynIsFirewallDrop) {
  Correlator c;
  const int64_t t = kBase * kSec;
  PacketDrop d;
  d.src = {"127.0.0.1", 40000};
  d.dst = {"127.0.0.1", 8080};
  d.reason = DropReason::NetfilterDrop;
  c.add_kernel(at(t + 1000, d, true));
  auto k = conn(1234, ConnFailure::SynTimeout, 8080, t);
  k.syn_retrans = 1;
  c.add_kernel(at(t + 2 * kSec, k));
  c.add_error_line(error_line(kBase + 2, 1234, 5,
                              "upstream timed out (110: Connection timed out) while connecting to upstream, client: "
                              "127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8080/\", "
                              "host: \"localhost\""),
                   (kBase + 2) * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "firewall_drop");
  EXPECT_TRUE(has_event(v[0], "packet_drop"));
}

TEST(CorrelatorRules, FullAcceptQueueIsAcceptQueueOverflow) {
  Correlator c;
  const int64_t t = kBase * kSec;
  c.add_host_sample(sample(t, {listener("127.0.0.1:8080", 66, "app", 2, 1)}, 10));
  auto k = conn(1234, ConnFailure::SynTimeout, 8080, t);
  k.syn_retrans = 1;
  c.add_host_sample(sample(t + kSec, {listener("127.0.0.1:8080", 66, "app", 2, 1)}, 14));
  c.add_kernel(at(t + kSec + kSec / 2, k));
  c.add_host_sample(sample(t + 2 * kSec, {listener("127.0.0.1:8080", 66, "app", 2, 1)}, 15));
  c.add_error_line(error_line(kBase + 1, 1234, 5,
                              "upstream timed out (110: Connection timed out) while connecting to upstream, client: "
                              "127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8080/\", "
                              "host: \"localhost\""),
                   (kBase + 1) * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "accept_queue_overflow");
  EXPECT_TRUE(has_event(v[0], "listen_queue"));
  EXPECT_TRUE(has_event(v[0], "listen_overflows"));
  ASSERT_TRUE(v[0].upstream_process);
  EXPECT_EQ(v[0].upstream_process->pid, 66u);
}

TEST(CorrelatorRules, NoDropNoOverflowIsConnectTimeout) {
  Correlator c;
  const int64_t t = kBase * kSec;
  auto k = conn(1234, ConnFailure::SynTimeout, 8080, t);
  k.syn_retrans = 2;
  c.add_kernel(at(t + 3 * kSec, k));
  auto v = c.finish(); // no error log line at all: counted, not reported (error log available)
  EXPECT_TRUE(v.empty());
  EXPECT_EQ(c.stats().kernel_failures_unmatched, 1u);
}

TEST(CorrelatorRules, UnixEagainIsUnixBacklogFull) {
  Correlator c;
  const int64_t t = kBase * kSec;
  SyscallErr s;
  s.pid = 1234;
  s.syscall = Syscall::Connect;
  s.err = EAGAIN;
  s.target = "unix:/run/php/php-fpm.sock";
  c.add_kernel(at(t + 100, s));
  c.add_error_line(error_line(kBase, 1234, 5,
                              "connect() to unix:/run/php/php-fpm.sock failed (11: Resource temporarily unavailable) "
                              "while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /x.php "
                              "HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/php-fpm.sock:\", host: \"localhost\""),
                   kBase * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "unix_backlog_full");
  EXPECT_EQ(v[0].upstream, "unix:/run/php/php-fpm.sock");
  EXPECT_EQ(v[0].evidence[0]["errno"], EAGAIN);
}

TEST(CorrelatorRules, TooBigHeaderIsNoKernelFault) {
  Correlator c;
  c.add_error_line(error_line(kBase, 1234, 5,
                              "upstream sent too big header while reading response header from upstream, client: "
                              "127.0.0.1, server: , request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8080/\", "
                              "host: \"localhost\""),
                   kBase * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "no_kernel_fault");
  EXPECT_NE(v[0].nginx_error->find("too big header"), std::string::npos);
}

TEST(CorrelatorRules, NoLiveUpstreamsLinksTheVerdictsThatMarkedServersDown) {
  CorrelatorOptions o;
  o.upstream_groups["backend"] = {"127.0.0.1:8080", "127.0.0.1:8081"};
  Correlator c(o);
  const int64_t t = kBase * kSec;
  for (uint16_t port : {8080, 8081}) {
    auto k = conn(1234, ConnFailure::RstInSynSent, port, t);
    c.add_kernel(at(t + 10, k));
  }
  c.add_error_line(error_line(kBase, 1234, 5, refused_msg("127.0.0.1:8080")), kBase * kSec);
  c.add_error_line(error_line(kBase, 1234, 5, refused_msg("127.0.0.1:8081")), kBase * kSec);
  auto first = c.advance((kBase + 10) * kSec);
  ASSERT_EQ(first.size(), 1u); // one request, two failed attempts
  EXPECT_EQ(first[0].attempts, 2);
  EXPECT_EQ(first[0].upstream, "127.0.0.1:8081");
  EXPECT_TRUE(has_event(first[0], "earlier_attempt"));
  c.add_error_line(error_line(kBase + 11, 1234, 6,
                              "no live upstreams while connecting to upstream, client: 127.0.0.1, server: , request: "
                              "\"GET / HTTP/1.1\", upstream: \"http://backend/\", host: \"localhost\""),
                   (kBase + 11) * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "no_live_upstreams");
  EXPECT_EQ(v[0].upstream, "backend");
  EXPECT_EQ(v[0].related, std::vector<uint64_t>{first[0].id});
}

TEST(CorrelatorRules, ARetryThatSucceededIsNoVerdict) {
  CorrelatorOptions o;
  o.access_log_available = true;
  Correlator c(o);
  const int64_t t = kBase * kSec;
  c.add_kernel(at(t + 10, conn(1234, ConnFailure::RstInSynSent, 8080, t)));
  c.add_error_line(error_line(kBase, 1234, 5, refused_msg()), kBase * kSec);
  nginx::AccessLogLine ok;
  ok.status = 200;
  ok.pid = 1234;
  ok.request = "GET / HTTP/1.1";
  ok.remote_addr = "127.0.0.1";
  c.add_access_line(ok, kBase * kSec + 5000000);
  auto v = c.finish();
  EXPECT_TRUE(v.empty());
  EXPECT_EQ(c.stats().recovered_requests, 1u);
}

TEST(CorrelatorRules, NeverMatchesAcrossWorkers) {
  Correlator c;
  const int64_t t = kBase * kSec;
  c.add_kernel(at(t + 10, conn(1111, ConnFailure::RstInSynSent, 8080, t))); // another worker's failure
  c.add_error_line(error_line(kBase, 2222, 5, refused_msg()), kBase * kSec);
  auto v = c.finish();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].nginx_pid, 2222u);
  EXPECT_EQ(v[0].cause, "unknown");
  EXPECT_TRUE(v[0].evidence.empty());
}

TEST(CorrelatorRules, WithoutAnErrorLogEachKernelFailureIsAVerdict) {
  CorrelatorOptions o;
  o.error_log_available = false;
  Correlator c(o);
  const int64_t t = kBase * kSec;
  auto k = conn(1234, ConnFailure::FinBeforeData, 8080, t);
  c.add_kernel(at(t + 10, k));
  EXPECT_TRUE(c.advance(t + 20).empty()); // still settling
  auto v = c.advance(t + 5 * kSec);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].cause, "upstream_closed_early");
  EXPECT_EQ(v[0].nginx_pid, 1234u);
  EXPECT_FALSE(v[0].nginx_error);
}

TEST(CorrelatorRules, VerdictJsonHasTheContractFields) {
  Verdict v;
  v.id = 3;
  v.wall_ns = kBase * kSec;
  v.cause = "no_listener";
  v.upstream = "127.0.0.1:8080";
  v.nginx_pid = 1;
  auto j = to_json(v);
  for (const char *key : {"type", "time", "cause", "summary", "upstream", "nginx_pid", "nginx_error", "request",
                          "upstream_process", "evidence", "status"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["type"], "verdict");
  EXPECT_TRUE(j["nginx_error"].is_null());
  EXPECT_TRUE(j["request"].is_null());
  EXPECT_TRUE(j["upstream_process"].is_null());
}
