// Scenarios 10, 13, 15 and keepalive attribution: faults that first showed gaps in why502 (each
// comment names what it used to report) and now pass.
#include "scenario.h"

using namespace why502::scenario;

namespace {

class MoreScenario : public AppServerScenario {};

} // namespace

// why502 used to say: cause firewall_drop (the REJECT target also drops the SYN: NETFILTER_DROP), and the
// conn_fail record shows failure "syn_timeout", sk_err 0 although ts_error is set; nginx said 113.
// 10. REJECT with icmp-host-unreachable: connect() fails with 113.
TEST_F(MoreScenario, HostUnreachable) {
  auto &app = start_app();
  start_nginx(proxy_config("http://" + app.address(), "1s"));
  start_watch();
  IptablesRule reject("INPUT", {"-p", "tcp", "--dport", port_of(app), "-j", "REJECT", "--reject-with", "icmp-host-unreachable"});
  drive("/", 1, 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "connect() failed (113: No route to host) while connecting to upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "host_unreachable", app.address()))
    // nginx's getsockopt(SO_ERROR) consumes the errno before the socket closes, so the kernel record
    // carries the error report (ts_error) and nginx's line the errno; the REJECT also drops the SYN.
    EXPECT_EVIDENCE(v, "conn_fail", e.value("failure", "") == "icmp_error" && e.value("ts_error", uint64_t{0}) > 0 &&
                                        (e.value("sk_err", 0) == 0 || e.value("sk_err", 0) == EHOSTUNREACH));
}

// why502 used to say: nothing (no verdict for a 500). nginx answers 500, not 502, when socket() fails, so
// fd_limit can only ever show as a 500 "socket() failed (24: Too many open files)" [alert] line.
// 13. worker_rlimit_nofile just large enough for a worker to start and accept the client: the
// upstream socket() fails with EMFILE, and nginx answers 500 (not 502). The smallest such limit depends on the build, so search it.
TEST_F(MoreScenario, FdLimit) {
  auto &app = start_app();
  NginxConfig cfg = proxy_config("http://" + app.address());
  std::string why;
  for (int n = 8; n <= 40 && !nginx_; ++n) {
    cfg.worker_rlimit_nofile = n;
    try {
      nginx_ = std::make_unique<Nginx>(cfg, dir() + "/nginx-" + std::to_string(n));
    } catch (const why502::Error &e) {
      why = e.what();
    }
  }
  ASSERT_TRUE(nginx_) << why;
  start_watch();
  // nginx answers 500, not 502, when socket() fails (ngx_http_upstream_connect: NGX_ERROR).
  failure_statuses_ = {500, 502, 504};
  drive("/", 1, 4);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(500, "socket() failed (24: Too many open files) while connecting to upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "fd_limit", app.address()))
    EXPECT_EVIDENCE(v, "syscall_error", e.value("errno", 0) == EMFILE);
}

// why502 used to say: causes right (no_listener, then no_live_upstreams), but no "related" ids.
// 15. Both servers of a group refuse; the next request finds no live upstream. The second verdict
// links to the first.
TEST_F(MoreScenario, NoLiveUpstreams) {
  std::string a = "127.0.0.1:" + std::to_string(free_port());
  std::string b = "127.0.0.1:" + std::to_string(free_port());
  NginxConfig cfg = proxy_config("http://backend");
  cfg.upstreams.push_back({"backend", {{a, 1, "30s", false}, {b, 1, "30s", false}}, std::nullopt, true});
  start_nginx(cfg);
  start_watch();
  drive("/", 2, 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "no live upstreams while connecting to upstream", 2));
  ASSERT_FALSE(nginx().errors_matching("connect() failed (111: Connection refused)").empty());
  auto f = failures();
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].upstream_addr, a + ", " + b);
  EXPECT_EQ(f[1].upstream_addr, "backend");
  auto verdicts = finish_watch();
  if (!watching())
    return;
  ASSERT_EQ(verdicts.size(), 2u) << dump(verdicts);
  EXPECT_EQ(verdicts[0].value("cause", ""), "no_listener") << verdicts[0].dump();
  EXPECT_TRUE(verdicts[0].value("upstream", "") == a || verdicts[0].value("upstream", "") == b) << verdicts[0].dump();
  EXPECT_EQ(verdicts[1].value("cause", ""), "no_live_upstreams") << verdicts[1].dump();
  ASSERT_TRUE(verdicts[1].contains("related")) << verdicts[1].dump();
  bool linked = false;
  for (auto &id : verdicts[1]["related"])
    linked |= id == verdicts[0]["id"];
  EXPECT_TRUE(linked) << verdicts[1].dump();
}

// why502 said (about 1 run in 3): cause "unknown", nginx_error null, no evidence, for one of the three
// 502s. nginx logged request *12 twice (the cached connection reset, then nginx's retry on a fresh
// connection reset too), then *14 and *16; the two *12 lines seem to be joined to two requests.
// Keepalive upstream, two workers: healthy traffic on cached connections, then resets, then healthy
// again. Exactly one verdict per 502, none for the 200s around them.
TEST_F(MoreScenario, KeepaliveResetsAreAttributedPerRequest) {
  auto &app = start_app();
  NginxConfig cfg = proxy_config("http://backend");
  cfg.upstreams.push_back({"backend", {{app.address(), 0, "10s", false}}, 4, false});
  start_nginx(cfg);
  start_watch();
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(http_get("127.0.0.1", nginx().port(), "/", 5.0).status, 200);
  app.set_behaviour(Behaviour::reset);
  drive("/", 3, 3);
  app.set_behaviour(Behaviour::ok);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(http_get("127.0.0.1", nginx().port(), "/", 5.0).status, 200);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "(104: Connection reset by peer)", 3));
  EXPECT_EQ(failures().size(), 3u);
  auto verdicts = finish_watch();
  if (!watching())
    return;
  expect_verdicts(verdicts, "connection_reset", app.address());
}

// A capture recorded live (`watch --capture`) replayed offline with `analyze` and the same logs
// gives the same verdicts: same causes, upstreams, workers and statuses, in the same order.
TEST_F(MoreScenario, AnalyzeReplaysTheCaptureToTheSameVerdicts) {
  auto &app = start_app();
  start_nginx(proxy_config("http://" + app.address()));
  const std::string capture = dir() + "/capture.jsonl";
  start_watch({"--syscall-probes", "always", "--capture", capture});
  drive("/reset", 2, 2);
  drive("/close_early", 1, 1);
  drive("/crash", 1, 1);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "(104: Connection reset by peer)", 2));
  auto live = finish_watch();
  if (!watching())
    return;
  auto key = [](const nlohmann::json &v) {
    return v["cause"].get<std::string>() + " " + v["upstream"].get<std::string>() + " " +
           std::to_string(v["nginx_pid"].get<uint32_t>()) + " " + v["status"].dump();
  };
  std::vector<std::string> want;
  for (const auto &v : live)
    if (v.value("type", "") == "verdict")
      want.push_back(key(v));
  ASSERT_EQ(want.size(), 4u) << dump(live);

  auto r = run_command({WHY502_BINARY, "analyze", capture, "--error-log", nginx().error_log(), "--access-log",
                        nginx().access_log(), "--access-format", kAccessLogFormat, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> got;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("type", "") == "verdict")
      got.push_back(key(j));
  }
  EXPECT_EQ(got, want) << r.output;
}
