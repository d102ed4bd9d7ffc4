// Each failure made for real by a watched process, and the exact record the
// kernel side reports for it. Root, real kernel, real BPF programs.
#include <gtest/gtest.h>

#include <fstream>
#include <thread>
#include <set>
#include <sstream>
#include <sys/resource.h>
#include <sys/stat.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "harness.h"

using namespace why502;
using namespace why502::testing;

namespace {

std::optional<ConnFail> find_conn(const std::vector<ConnFail> &v, ConnFailure kind, uint16_t dport) {
  for (const auto &c : v)
    if (c.failure == kind && c.remote.port == dport)
      return c;
  return std::nullopt;
}

std::string dump(const Capture &cap) {
  std::string out;
  for (const auto &ev : cap.events)
    out += to_json(ev).dump() + "\n";
  return out;
}

// Private network namespace with loopback up: faults here touch nothing else.
void enter_private_netns() {
  if (unshare(CLONE_NEWNET) != 0)
    _exit(92);
  sh("ip link set lo up");
}

// The peer of a reset burst: accepts `n` connections, waits for a byte on `go_fd`, then closes
// them all with SO_LINGER 0, back to back (a burst of RSTs).
std::thread accept_then_reset(const Listener &l, int n, int go_fd) {
  return std::thread([&l, n, go_fd] {
    std::vector<int> accepted;
    while (int(accepted.size()) < n) {
      int c = accept(l.fd, nullptr, nullptr);
      if (c < 0)
        break;
      accepted.push_back(c);
    }
    char go;
    (void)!read(go_fd, &go, 1);
    linger lg{1, 0};
    for (int c : accepted) {
      setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      close(c);
    }
  });
}

} // namespace

TEST(KernelCapture, ConnectToClosedPortV4IsRstInSynSent) {
  uint16_t port = closed_port();
  auto cap = run_watched([&] {
    int fd = nb_connect("127.0.0.1", port);
    sleep_s(0.2);
    close(fd);
  });
  auto fails = cap.of<ConnFail>(cap.pid);
  auto c = find_conn(fails, ConnFailure::RstInSynSent, port);
  ASSERT_TRUE(c) << dump(cap);
  EXPECT_EQ(c->pid, uint32_t(cap.pid));
  EXPECT_EQ(c->tid, uint32_t(cap.pid));
  EXPECT_EQ(c->family, 4);
  EXPECT_EQ(c->remote.host(), "127.0.0.1");
  EXPECT_EQ(c->local.host(), "127.0.0.1");
  EXPECT_NE(c->local.port, 0);
  EXPECT_EQ(c->sk_err, ECONNREFUSED);
  EXPECT_EQ(c->last_state, "SYN_SENT");
  EXPECT_GT(c->ts_reset, c->ts_syn_sent);
  EXPECT_GE(c->ts_close, c->ts_reset);
  // The host side saw the RST leave the port nobody owned.
  bool rst_sent = false;
  for (const auto &r : cap.of<ResetSent>())
    rst_sent |= r.src.port == port && r.dst.port == c->local.port && !r.has_socket;
  EXPECT_TRUE(rst_sent) << dump(cap);
}

// The connection table is keyed by the socket's cookie, given at SYN_SENT: a socket that connects
// again after a refusal keeps its cookie, and each attempt must still be a record of its own.
TEST(KernelCapture, ASocketConnectingAgainAfterARefusalGivesARecordPerAttempt) {
  uint16_t port = closed_port();
  auto cap = run_watched([&] {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback_v4(port);
    for (int attempt = 0; attempt < 2; attempt++) {
      if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0 || errno != ECONNREFUSED)
        _exit(93);
      sleep_s(0.05);
    }
    close(fd);
  });
  std::vector<ConnFail> refused;
  for (const auto &c : cap.of<ConnFail>(cap.pid))
    if (c.failure == ConnFailure::RstInSynSent && c.remote.port == port)
      refused.push_back(c);
  ASSERT_EQ(refused.size(), 2u) << dump(cap);
  EXPECT_EQ(refused[0].sk_err, ECONNREFUSED);
  EXPECT_EQ(refused[1].sk_err, ECONNREFUSED);
  // The second attempt starts its own record: its SYN_SENT follows the first one's close.
  EXPECT_GE(refused[1].ts_syn_sent, refused[0].ts_close) << dump(cap);
  EXPECT_NE(refused[0].conn_id, refused[1].conn_id);
}

// A socket that already has a cookie (SO_COOKIE, sock_diag or another BPF tool asked for one) is
// followed the same; a socket of an unwatched process with a cookie is not taken for ours.
TEST(KernelCapture, SocketsWithCookiesFromElsewhereAreFollowedOnlyWhenWatched) {
  uint16_t port = closed_port();
  auto cookie_of = [](int fd) {
    uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    return getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0 ? cookie : 0;
  };
  // An unwatched neighbour's socket, cookie asked for, refused while the watched process runs.
  pid_t neighbour = fork();
  if (neighbour == 0) {
    for (int i = 0; i < 20; i++) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (cookie_of(fd) == 0)
        _exit(94);
      sockaddr_in a = loopback_v4(port);
      (void)!connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a));
      sleep_s(0.05);
      close(fd);
    }
    _exit(0);
  }
  auto cap = run_watched([&] {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (cookie_of(fd) == 0)
      _exit(94);
    sockaddr_in a = loopback_v4(port);
    (void)!connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a));
    sleep_s(0.2);
    close(fd);
  });
  int status = 0;
  waitpid(neighbour, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto mine = cap.of<ConnFail>(cap.pid);
  ASSERT_EQ(mine.size(), 1u) << dump(cap);
  EXPECT_EQ(mine[0].failure, ConnFailure::RstInSynSent);
  EXPECT_EQ(mine[0].remote.port, port);
  for (const auto &c : cap.of<ConnFail>())
    EXPECT_EQ(c.pid, uint32_t(cap.pid)) << "a record for an unwatched process\n" << dump(cap);
}

TEST(KernelCapture, ConnectToClosedPortV6IsRstInSynSent) {
  uint16_t port = closed_port(true);
  auto cap = run_watched([&] {
    int fd = nb_connect("::1", port);
    sleep_s(0.2);
    close(fd);
  });
  auto c = find_conn(cap.of<ConnFail>(cap.pid), ConnFailure::RstInSynSent, port);
  ASSERT_TRUE(c) << dump(cap);
  EXPECT_EQ(c->family, 6);
  EXPECT_EQ(c->remote.host(), "::1");
  EXPECT_EQ(c->remote.str(), "[::1]:" + std::to_string(port));
  EXPECT_EQ(c->sk_err, ECONNREFUSED);
}

TEST(KernelCapture, PeerResetOnEstablishedIsRstEstablished) {
  Listener l;
  std::thread server([&] {
    int c = accept(l.fd, nullptr, nullptr);
    char buf[64];
    (void)!read(c, buf, sizeof(buf)); // wait for the request, then reset
    linger lg{1, 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(c);
  });
  auto cap = run_watched([&] {
    int fd = nb_connect("127.0.0.1", l.port);
    pollfd p{fd, POLLOUT, 0};
    poll(&p, 1, 1000);
    (void)!write(fd, "GET / HTTP/1.0\r\n\r\n", 18);
    p = {fd, POLLIN, 0};
    poll(&p, 1, 2000);
    char buf[64];
    (void)!read(fd, buf, sizeof(buf));
    close(fd);
  });
  server.join();
  auto c = find_conn(cap.of<ConnFail>(cap.pid), ConnFailure::RstEstablished, l.port);
  ASSERT_TRUE(c) << dump(cap);
  EXPECT_EQ(c->pid, uint32_t(cap.pid));
  EXPECT_EQ(c->last_state, "ESTABLISHED");
  EXPECT_GT(c->ts_established, c->ts_syn_sent);
  EXPECT_GT(c->ts_reset, c->ts_established);
  EXPECT_EQ(c->bytes_received, 0u);
  EXPECT_GE(c->bytes_acked, 18u); // the request (and our FIN, if the close raced the RST)
  EXPECT_LE(c->bytes_acked, 19u);
}

TEST(KernelCapture, PeerFinBeforeDataIsFinBeforeData) {
  Listener l;
  std::thread server([&] {
    int c = accept(l.fd, nullptr, nullptr);
    char buf[64];
    (void)!read(c, buf, sizeof(buf));
    close(c); // orderly close, not one byte of response
  });
  auto cap = run_watched([&] {
    int fd = nb_connect("127.0.0.1", l.port);
    pollfd p{fd, POLLOUT, 0};
    poll(&p, 1, 1000);
    (void)!write(fd, "GET / HTTP/1.0\r\n\r\n", 18);
    p = {fd, POLLIN, 0};
    poll(&p, 1, 2000);
    char buf[64];
    (void)!read(fd, buf, sizeof(buf));
    close(fd);
  });
  server.join();
  auto c = find_conn(cap.of<ConnFail>(cap.pid), ConnFailure::FinBeforeData, l.port);
  ASSERT_TRUE(c) << dump(cap);
  EXPECT_EQ(c->bytes_received, 0u);
  EXPECT_GT(c->ts_fin_received, c->ts_established);
  EXPECT_GE(c->ts_close, c->ts_fin_received);
  // ts_established and ts_fin_received come from the socket's own TCP clock (monotonic), converted
  // to boot time: on loopback the connect takes well under a second.
  EXPECT_GT(c->ts_established, c->ts_syn_sent);
  EXPECT_LT(c->ts_established - c->ts_syn_sent, 1'000'000'000ull);
  EXPECT_EQ(c->remote.port, l.port);
}

TEST(KernelCapture, NormalExchangeReportsNothing) {
  Listener l;
  std::thread server([&] {
    int c = accept(l.fd, nullptr, nullptr);
    char buf[64];
    (void)!read(c, buf, sizeof(buf));
    (void)!write(c, "HTTP/1.0 200 OK\r\n\r\n", 19);
    close(c);
  });
  auto cap = run_watched([&] {
    int fd = nb_connect("127.0.0.1", l.port);
    pollfd p{fd, POLLOUT, 0};
    poll(&p, 1, 1000);
    (void)!write(fd, "GET / HTTP/1.0\r\n\r\n", 18);
    char buf[64];
    p = {fd, POLLIN, 0};
    poll(&p, 1, 2000);
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    close(fd);
  });
  server.join();
  EXPECT_TRUE(cap.of<ConnFail>(cap.pid).empty()) << dump(cap);
  EXPECT_TRUE(cap.of<SyscallErr>(cap.pid).empty()) << dump(cap);
}

TEST(KernelCapture, SynDroppedByFirewallIsSynTimeoutWithRetransmits) {
  auto cap = run_watched([&] {
    enter_private_netns();
    sh("iptables -A INPUT -p tcp --dport 9 -j DROP");
    int fd = nb_connect("127.0.0.1", 9);
    sleep_s(1.6); // the first SYN retransmit fires after 1 s
    close(fd);
  });
  auto c = find_conn(cap.of<ConnFail>(cap.pid), ConnFailure::SynTimeout, 9);
  ASSERT_TRUE(c) << dump(cap);
  EXPECT_GE(c->syn_retrans, 1u);
  EXPECT_EQ(c->last_state, "SYN_SENT");
  EXPECT_EQ(c->ts_established, 0u);
  EXPECT_EQ(c->ts_reset, 0u);
  bool netfilter = false;
  for (const auto &d : cap.of<PacketDrop>())
    netfilter |= d.reason == DropReason::NetfilterDrop && d.dst.port == 9 && d.src.port == c->local.port;
  EXPECT_TRUE(netfilter) << dump(cap);
}

TEST(KernelCapture, IcmpHostUnreachableIsIcmpError) {
  auto cap = run_watched([&] {
    enter_private_netns();
    sh("iptables -A OUTPUT -p tcp --dport 9 -j REJECT --reject-with icmp-host-unreachable");
    int fd = nb_connect("127.0.0.1", 9);
    sleep_s(0.3);
    close(fd);
  });
  auto c = find_conn(cap.of<ConnFail>(cap.pid), ConnFailure::IcmpError, 9);
  ASSERT_TRUE(c) << dump(cap);
  EXPECT_EQ(c->sk_err, EHOSTUNREACH);
  EXPECT_EQ(c->last_state, "SYN_SENT");
}

TEST(KernelCapture, ListenQueueOverflowShowsSynRetransmits) {
  auto cap = run_watched([&] {
    enter_private_netns();
    // A listener that never accepts, backlog 1, owned by an unwatched-looking helper: this child.
    int l = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(8080);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(l, reinterpret_cast<sockaddr *>(&a), sizeof(a));
    listen(l, 1);
    std::vector<int> fds;
    for (int i = 0; i < 6; ++i)
      fds.push_back(nb_connect("127.0.0.1", 8080));
    sleep_s(1.6);
    for (int fd : fds)
      close(fd);
  });
  uint32_t retransmitted = 0;
  for (const auto &c : cap.of<ConnFail>(cap.pid))
    if (c.remote.port == 8080 && c.syn_retrans >= 1 &&
        (c.failure == ConnFailure::SynTimeout || c.failure == ConnFailure::SynRetransmit)) {
      ++retransmitted;
      // Connected after a SYN retransmit: not before the first retransmit's 1 s timeout.
      if (c.failure == ConnFailure::SynRetransmit) {
        EXPECT_GE(c.ts_established - c.ts_syn_sent, 900'000'000ull) << dump(cap);
      }
    }
  EXPECT_GE(retransmitted, 1u) << dump(cap);
}

TEST(KernelCapture, UnixSocketBacklogFullIsEagain) {
  std::string path = "/tmp/why502-test-" + std::to_string(getpid()) + ".sock";
  unlink(path.c_str());
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  ASSERT_EQ(bind(l, reinterpret_cast<sockaddr *>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(l, 1), 0);
  auto cap = run_watched([&] {
    for (int i = 0; i < 8; ++i) {
      int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (connect(fd, reinterpret_cast<const sockaddr *>(&a), sizeof(a)) != 0 && errno == EAGAIN)
        break;
    }
  });
  close(l);
  unlink(path.c_str());
  auto errs = cap.of<SyscallErr>(cap.pid);
  ASSERT_FALSE(errs.empty()) << dump(cap);
  EXPECT_EQ(errs.back().syscall, Syscall::Connect);
  EXPECT_EQ(errs.back().err, EAGAIN);
  EXPECT_EQ(errs.back().target, "unix:" + path);
  EXPECT_EQ(errs.back().pid, uint32_t(cap.pid));
}

TEST(KernelCapture, NarrowPortRangeIsEaddrnotavail) {
  auto cap = run_watched([&] {
    enter_private_netns();
    sh("sysctl -qw net.ipv4.ip_local_port_range='40000 40001'");
    int l = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(8081);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(l, reinterpret_cast<sockaddr *>(&a), sizeof(a));
    listen(l, 16);
    for (int i = 0; i < 4; ++i)
      nb_connect("127.0.0.1", 8081); // kept open: the two ports stay taken
    sleep_s(0.1);
  });
  auto errs = cap.of<SyscallErr>(cap.pid);
  ASSERT_FALSE(errs.empty()) << dump(cap);
  EXPECT_EQ(errs.front().err, EADDRNOTAVAIL);
  EXPECT_EQ(errs.front().target, "127.0.0.1:8081");
  // The synchronous failure is the syscall's record, not a phantom connection failure.
  // (The two connections that got ports are reset when the child's listener dies: that is real.)
  for (const auto &c : cap.of<ConnFail>(cap.pid)) {
    EXPECT_NE(c.last_state, "SYN_SENT") << dump(cap);
    EXPECT_NE(c.local.port, 0) << dump(cap);
  }
}

TEST(KernelCapture, EmfileOnSocketIsReported) {
  auto cap = run_watched([&] {
    rlimit rl{8, 8};
    setrlimit(RLIMIT_NOFILE, &rl);
    for (int i = 0; i < 16; ++i)
      if (socket(AF_INET, SOCK_STREAM, 0) < 0)
        break;
  });
  auto errs = cap.of<SyscallErr>(cap.pid);
  ASSERT_FALSE(errs.empty()) << dump(cap);
  EXPECT_EQ(errs.front().syscall, Syscall::Socket);
  EXPECT_EQ(errs.front().err, EMFILE);
}

TEST(KernelCapture, OomKillInMemoryCgroupIsReported) {
  const std::string cg = "/sys/fs/cgroup/memory/why502-test-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(cg.c_str(), 0755), 0) << "cgroup v1 memory controller needed at /sys/fs/cgroup/memory";
  {
    std::ofstream(cg + "/memory.limit_in_bytes") << (64 << 20);
  }
  auto cap = run_watched([&] {
    {
      std::ofstream(cg + "/cgroup.procs") << getpid();
    }
    // Touch 512 MiB in a 64 MiB cgroup: the OOM killer picks this process.
    size_t size = size_t(512) << 20;
    char *p = static_cast<char *>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t i = 0; i < size; i += 4096)
      p[i] = 1;
  });
  rmdir(cg.c_str());
  auto ooms = cap.of<OomVictim>(cap.pid);
  ASSERT_EQ(ooms.size(), 1u) << dump(cap);
  EXPECT_GT(ooms[0].anon_rss_kb, 30u * 1024) << dump(cap);
  EXPECT_LE(ooms[0].anon_rss_kb, 70u * 1024);
  bool exit_by_kill = false;
  for (const auto &x : cap.of<ProcessExit>(cap.pid))
    exit_by_kill |= x.signal == SIGKILL && x.watched;
  EXPECT_TRUE(exit_by_kill) << dump(cap);
}

TEST(KernelCapture, SigkillNamesSenderAndTarget) {
  pid_t victim = 0;
  auto cap = run_watched([&] {
    pid_t self = getpid();
    pid_t killer = fork();
    if (killer == 0) {
      sleep_s(0.2);
      kill(self, SIGKILL);
      _exit(0);
    }
    sleep_s(5);
  });
  victim = cap.pid;
  bool found = false;
  for (const auto &s : cap.of<FatalSignal>())
    if (s.target_pid == uint32_t(victim) && s.sig == SIGKILL) {
      found = true;
      EXPECT_NE(s.sender_pid, uint32_t(victim));
      EXPECT_EQ(s.result, 0);
    }
  EXPECT_TRUE(found) << dump(cap);
  bool exited = false;
  for (const auto &x : cap.of<ProcessExit>(cap.pid))
    exited |= x.signal == SIGKILL;
  EXPECT_TRUE(exited) << dump(cap);
}

TEST(KernelCapture, ForkedChildrenAreWatchedFromTheirFirstInstruction) {
  uint16_t port = closed_port();
  auto cap = run_watched([&] {
    pid_t worker = fork();
    if (worker == 0) {
      int fd = nb_connect("127.0.0.1", port);
      sleep_s(0.2);
      close(fd);
      _exit(0);
    }
    waitpid(worker, nullptr, 0);
  });
  auto watches = cap.of<WatchStart>();
  ASSERT_FALSE(watches.empty()) << dump(cap);
  uint32_t worker = 0;
  for (const auto &w : watches)
    if (w.parent_pid == uint32_t(cap.pid) && w.via == "fork")
      worker = w.pid;
  ASSERT_NE(worker, 0u) << dump(cap);
  auto c = find_conn(cap.of<ConnFail>(worker), ConnFailure::RstInSynSent, port);
  ASSERT_TRUE(c) << dump(cap);
  EXPECT_EQ(c->pid, worker);
}

TEST(KernelCapture, UnwatchedProcessesAreNotReported) {
  uint16_t port = closed_port();
  pid_t stranger = fork();
  if (stranger == 0) {
    sleep_s(0.3);
    int fd = nb_connect("127.0.0.1", port);
    sleep_s(0.2);
    close(fd);
    _exit(0);
  }
  auto cap = run_watched([&] { sleep_s(1.0); });
  waitpid(stranger, nullptr, 0);
  for (const auto &ev : cap.events) {
    if (ev.host)
      continue; // host-wide facts are labelled, and may mention anyone
    if (auto *c = std::get_if<ConnFail>(&ev.record)) {
      EXPECT_NE(c->pid, uint32_t(stranger)) << dump(cap);
    }
    if (auto *s = std::get_if<SyscallErr>(&ev.record)) {
      EXPECT_NE(s->pid, uint32_t(stranger)) << dump(cap);
    }
  }
}

// Hundreds of a watched process's connections in flight at once (each its own slot in the BPF
// connection table), then reset by the peer in one burst: the records come within the 5 ms in which
// only the first wakes the reader, and every one must still be read, with its own local port.
TEST(KernelCapture, ABurstOfResetsOnManyOpenConnectionsGivesOneRecordEach) {
  constexpr int kConnections = 300;
  Listener l(kConnections + 16);
  int connected[2];
  ASSERT_EQ(pipe(connected), 0);
  std::thread server = accept_then_reset(l, kConnections, connected[0]); // go: the client holds them all
  auto cap = run_watched([&] {
    std::vector<int> fds;
    for (int i = 0; i < kConnections; ++i)
      fds.push_back(nb_connect("127.0.0.1", l.port));
    for (int fd : fds) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 2000);
    }
    (void)!write(connected[1], "g", 1);
    for (int fd : fds) { // each sees its reset before it is closed
      pollfd p{fd, POLLIN, 0};
      poll(&p, 1, 2000);
      close(fd);
    }
  });
  server.join();
  close(connected[0]);
  close(connected[1]);
  std::set<uint16_t> local_ports;
  for (const auto &c : cap.of<ConnFail>(cap.pid))
    if (c.failure == ConnFailure::RstEstablished && c.remote.port == l.port) {
      EXPECT_EQ(c.pid, uint32_t(cap.pid));
      EXPECT_EQ(c.last_state, "ESTABLISHED");
      EXPECT_GT(c.ts_reset, c.ts_established);
      local_ports.insert(c.local.port);
    }
  EXPECT_EQ(local_ports.size(), size_t(kConnections)) << dump(cap);
  EXPECT_EQ(shared_tracer().losses().conn_map_full, 0u);
}

TEST(KernelCapture, NoLossesAtTestRates) {
  auto l = shared_tracer().losses();
  EXPECT_EQ(l.ringbuf_full, 0u);
  EXPECT_EQ(l.conn_map_full, 0u);
  EXPECT_EQ(l.undecodable, 0u);
}

// A full connection table: a bucket with no free slot gives its oldest connection's slot to the new
// one and counts it. With one hot and one overflow bucket (16 slots), connections 1-8 take the hot
// bucket, 9-16 the overflow; 17-20 and then a refused 21st evict 9-13 in turn. So when the peer
// resets all twenty, exactly 1-8 and 14-20 are still followed and give a record; the refusal, in its
// evicted slot, gives one too.
TEST(KernelCapture, AFullConnectionTableGivesItsOldestSlotAndCountsIt) {
  TracerOptions opts;
  opts.conn_table_buckets = {1, 1};
  Tracer tracer(opts);
  constexpr int kConnections = 20;
  Listener l(kConnections + 4);
  uint16_t refused_port = closed_port();
  int step[2];
  ASSERT_EQ(pipe(step), 0);
  std::vector<uint16_t> order; // local ports in connect order, from the child
  int ports[2];
  ASSERT_EQ(pipe(ports), 0);
  std::thread server = accept_then_reset(l, kConnections, step[0]); // go: the refusal is done
  auto cap = run_watched(
      [&] {
        std::vector<int> fds;
        for (int i = 0; i < kConnections; ++i) {
          int fd = nb_connect("127.0.0.1", l.port);
          pollfd p{fd, POLLOUT, 0};
          poll(&p, 1, 2000);
          sockaddr_in local = {};
          socklen_t len = sizeof(local);
          getsockname(fd, reinterpret_cast<sockaddr *>(&local), &len);
          uint16_t port = ntohs(local.sin_port);
          (void)!write(ports[1], &port, sizeof(port));
          fds.push_back(fd);
        }
        int refused = nb_connect("127.0.0.1", refused_port);
        sleep_s(0.1);
        close(refused);
        (void)!write(step[1], "g", 1);
        for (int fd : fds) {
          pollfd p{fd, POLLIN, 0};
          poll(&p, 1, 2000);
          close(fd);
        }
      },
      0.5, 15, &tracer);
  server.join();
  for (int i = 0; i < kConnections; ++i) {
    uint16_t port = 0;
    ASSERT_EQ(read(ports[0], &port, sizeof(port)), ssize_t(sizeof(port)));
    order.push_back(port);
  }
  for (int fd : {step[0], step[1], ports[0], ports[1]})
    close(fd);

  std::set<uint16_t> reset_ports;
  for (const auto &c : cap.of<ConnFail>(cap.pid))
    if (c.failure == ConnFailure::RstEstablished && c.remote.port == l.port)
      reset_ports.insert(c.local.port);
  std::set<uint16_t> expected;
  for (int i = 0; i < kConnections; ++i)
    if (i < 8 || i >= 13) // 1-8 and 14-20, counted from one
      expected.insert(order[i]);
  EXPECT_EQ(reset_ports, expected) << dump(cap);
  EXPECT_TRUE(find_conn(cap.of<ConnFail>(cap.pid), ConnFailure::RstInSynSent, refused_port)) << dump(cap);
  EXPECT_EQ(tracer.losses().conn_map_full, 5u);
}

TEST(KernelCapture, AConnectionTableSizeThatIsNotAPowerOfTwoIsRefusedInOneLine) {
  TracerOptions opts;
  opts.conn_table_buckets = {3, 1};
  try {
    Tracer tracer(opts);
    FAIL() << "a table of 3 hot buckets was accepted";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "connection table buckets must be powers of two no larger than the compiled sizes");
  }
  opts.conn_table_buckets = {64, 8192};
  EXPECT_THROW(Tracer{opts}, Error);
}
