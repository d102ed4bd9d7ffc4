// Faults between nginx and a healthy upstream: firewall rules, a full accept queue, exhausted
// ephemeral ports, a tiny fd limit; and upstream groups (retries, keepalive, no live upstreams).
#include "scenario.h"

using namespace why502::scenario;

namespace {

class NetScenario : public AppServerScenario {};

// A route into the void: a veth pair whose far end has no address, and a permanent neighbour entry
// for the target with a MAC no one has, so SYNs leave and nothing answers (the far end discards
// frames not addressed to it; no firewall is involved). Removed on destruction.
class VoidRoute {
public:
  VoidRoute() {
    check_command({"ip", "link", "add", kLink, "type", "veth", "peer", "name", kPeer});
    check_command({"ip", "addr", "add", "10.99.0.1/24", "dev", kLink});
    check_command({"ip", "link", "set", kLink, "up"});
    check_command({"ip", "link", "set", kPeer, "up"});
    check_command({"ip", "neigh", "add", "10.99.0.2", "lladdr", "02:00:00:00:00:99", "dev", kLink, "nud", "permanent"});
  }
  ~VoidRoute() { run_command({"ip", "link", "del", kLink}); }
  VoidRoute(const VoidRoute &) = delete;
  VoidRoute &operator=(const VoidRoute &) = delete;
  static constexpr const char *kTarget = "10.99.0.2:80"; // in the subnet, held by no one

private:
  static constexpr const char *kLink = "why502void", *kPeer = "why502void1";
};

} // namespace

// 8. nginx's SYNs go where nothing answers and nothing records a drop (a host gone dark behind a
// route): connect times out (504) after SYN retransmits.
TEST_F(NetScenario, ConnectTimeoutIntoTheVoid) {
  VoidRoute route;
  start_nginx(proxy_config(std::string("http://") + VoidRoute::kTarget, "2s"));
  start_watch();
  drive("/", 1, 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(504, "upstream timed out (110: Connection timed out) while connecting to upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "connect_timeout", VoidRoute::kTarget))
    EXPECT_EVIDENCE(v, "conn_fail", e.value("failure", "") == "syn_timeout" && e.value("syn_retrans", 0) >= 1);
}

// 9. iptables DROP of nginx's SYNs: connect times out (504).
TEST_F(NetScenario, FirewallDrop) {
  auto &app = start_app();
  start_nginx(proxy_config("http://" + app.address(), "1s"));
  start_watch();
  IptablesRule drop("INPUT", {"-p", "tcp", "--dport", port_of(app), "-j", "DROP"});
  drive("/", 1, 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(504, "upstream timed out (110: Connection timed out) while connecting to upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "firewall_drop", app.address()))
    EXPECT_EVIDENCE(v, "packet_drop", e.value("reason", "") == "NETFILTER_DROP" && e.value("dst", "") == app.address());
}

// 5 (504). The upstream's accept queue is full (backlog 1, never accepts, two idle connections
// queued): the listener drops nginx's SYNs and counts ListenOverflows; nginx's connect times out.
TEST_F(NetScenario, AcceptQueueOverflowTimesOut) {
  Sysctl abort_off("net.ipv4.tcp_abort_on_overflow", "0");
  AppServerOptions o;
  o.behaviour = Behaviour::never_accept;
  o.backlog = 1;
  auto &app = start_app(o);
  IdleConnections fill(app.address(), 2); // a queue of backlog+1 is full
  // 2 s: the first SYN retransmit (at 1 s, TCP_TIMEOUT_INIT) happens before nginx gives up.
  start_nginx(proxy_config("http://" + app.address(), "2s"));
  start_watch();
  drive("/", 1, 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(504, "upstream timed out (110: Connection timed out) while connecting to upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "accept_queue_overflow", app.address())) {
    EXPECT_EVIDENCE(v, "conn_fail", e.value("syn_retrans", 0) >= 1);
    EXPECT_EVIDENCE(v, "listen_queue", e.value("listener", "") == app.address() && e.value("depth", 0) >= e.value("max", 1));
  }
}

// 5 (abort_on_overflow=1). On this kernel a full accept queue drops the SYN before
// tcp_abort_on_overflow is consulted (it only applies to the final ACK of a handshake that began
// while the queue had room), so a pre-filled queue still gives a connect timeout, not a reset.
TEST_F(NetScenario, AcceptQueueOverflowWithAbortOnOverflow) {
  Sysctl abort_on("net.ipv4.tcp_abort_on_overflow", "1");
  AppServerOptions o;
  o.behaviour = Behaviour::never_accept;
  o.backlog = 1;
  auto &app = start_app(o);
  IdleConnections fill(app.address(), 2);
  start_nginx(proxy_config("http://" + app.address(), "2s"));
  start_watch();
  drive("/", 1, 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(504, "upstream timed out (110: Connection timed out) while connecting to upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  expect_verdicts(verdicts, "accept_queue_overflow", app.address());
}

// 12. ip_local_port_range narrowed to two ports, both pinned toward the upstream by idle
// connections: nginx's connect() fails with EADDRNOTAVAIL.
TEST_F(NetScenario, EphemeralPortsExhausted) {
  auto &app = start_app();
  start_nginx(proxy_config("http://" + app.address()));
  Sysctl range("net.ipv4.ip_local_port_range", "40000 40001");
  IdleConnections pin(app.address(), 2);
  ASSERT_EQ(pin.local_ports().size(), 2u);
  start_watch();
  drive("/", 1, 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "(99: Cannot assign requested address) while connecting to upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "ephemeral_ports_exhausted", app.address()))
    EXPECT_EVIDENCE(v, "syscall_error", e.value("errno", 0) == EADDRNOTAVAIL && e.value("syscall", "") == "connect");
}

// The default --syscall-probes on-demand: the first EADDRNOTAVAIL is named from nginx's errno alone
// (no syscall program attached yet: they slow every syscall on the host); that line arms the probes,
// and later failures carry the kernel's syscall_error record.
TEST_F(NetScenario, SyscallProbesArmOnDemand) {
  auto &app = start_app();
  start_nginx(proxy_config("http://" + app.address()));
  Sysctl range("net.ipv4.ip_local_port_range", "40000 40001");
  IdleConnections pin(app.address(), 2);
  ASSERT_EQ(pin.local_ports().size(), 2u);
  start_watch({}); // the default mode
  drive("/", 1, 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "(99: Cannot assign requested address) while connecting to upstream"));
  sleep_for(1.0); // the watcher reads the log (200 ms) and arms
  drive("/", 1, 2);
  auto verdicts = finish_watch();
  if (!watching())
    return;
  auto vs = expect_verdicts(verdicts, "ephemeral_ports_exhausted", app.address());
  ASSERT_EQ(vs.size(), 2u) << dump(verdicts);
  auto has_syscall = [](const nlohmann::json &v) {
    for (const auto &e : v["evidence"])
      if (e.value("event", "") == "syscall_error" && e.value("errno", 0) == EADDRNOTAVAIL)
        return true;
    return false;
  };
  EXPECT_FALSE(has_syscall(vs[0])) << vs[0].dump();
  EXPECT_TRUE(has_syscall(vs[1])) << vs[1].dump();
}

// Retries that succeed are not failures: server A refuses, nginx retries B, the client gets 200.
TEST_F(NetScenario, SuccessfulRetryHasNoVerdict) {
  auto &app = start_app();
  std::string dead = "127.0.0.1:" + std::to_string(free_port());
  NginxConfig cfg = proxy_config("http://backend");
  cfg.upstreams.push_back({"backend", {{dead, 100, "1s", false}, {app.address(), 100, "1s", false}}, std::nullopt, true});
  start_nginx(cfg);
  start_watch();
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(http_get("127.0.0.1", nginx().port(), "/", 5.0).status, 200);
  EXPECT_FALSE(wait_error("connect() failed (111: Connection refused)").empty());
  EXPECT_TRUE(failures().empty());
  auto verdicts = finish_watch();
  if (!watching())
    return;
  EXPECT_TRUE(verdicts.empty()) << dump(verdicts);
}
