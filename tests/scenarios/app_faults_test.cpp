// Faults of the upstream itself, with the built-in C++ upstream (why502-app): nothing listening,
// resets, early close, too-big header, death by signal, exit mid-request.
#include <thread>

#include "scenario.h"

using namespace why502::scenario;

namespace {

class AppScenario : public ScenarioTest {
protected:
  std::unique_ptr<AppServer> app_;

  AppServer &start_app(Behaviour b = Behaviour::ok, double slow = 3.0) {
    AppServerOptions o;
    o.behaviour = b;
    o.slow_seconds = slow;
    app_ = std::make_unique<AppServer>(o);
    return *app_;
  }
  void TearDown() override {
    ScenarioTest::TearDown();
    app_.reset();
  }
};

} // namespace

// 1. Nothing listens on the upstream port: the RST answering nginx's SYN.
TEST_F(AppScenario, NoListener) {
  uint16_t port = free_port();
  std::string upstream = "127.0.0.1:" + std::to_string(port);
  start_nginx(proxy_config("http://" + upstream));
  start_watch();
  drive("/", 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "connect() failed (111: Connection refused) while connecting to upstream", 2));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "no_listener", upstream)) {
    EXPECT_EVIDENCE(v, "conn_fail", e.value("failure", "") == "rst_in_syn_sent" && e.value("remote", "") == upstream);
    EXPECT_NE(v.value("nginx_error", ""), "");
  }
}

// 7. The upstream resets an established connection (SO_LINGER 0 after reading the request).
TEST_F(AppScenario, ConnectionReset) {
  auto &app = start_app(Behaviour::reset);
  start_nginx(proxy_config("http://" + app.address()));
  start_watch();
  drive("/", 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "recv() failed (104: Connection reset by peer) while reading response header from upstream", 2));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "connection_reset", app.address()))
    EXPECT_EVIDENCE(v, "conn_fail", e.value("failure", "") == "rst_established");
  EXPECT_TRUE(app.running());
}

// 8. The upstream closes (FIN) after reading the request, before any response byte.
TEST_F(AppScenario, ClosedEarly) {
  auto &app = start_app(Behaviour::close_early);
  start_nginx(proxy_config("http://" + app.address()));
  start_watch();
  drive("/", 2);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "upstream prematurely closed connection while reading response header from upstream", 2));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "upstream_closed_early", app.address()))
    EXPECT_EVIDENCE(v, "conn_fail", e.value("failure", "") == "fin_before_data");
}

// 14. An application-level fault: a 64 KiB response header. The kernel saw a healthy connection.
TEST_F(AppScenario, TooBigHeaderIsNoKernelFault) {
  auto &app = start_app(Behaviour::big_header);
  start_nginx(proxy_config("http://" + app.address()));
  start_watch();
  drive("/", 1);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "upstream sent too big header while reading response header from upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "no_kernel_fault", app.address()))
    EXPECT_NE(v.value("nginx_error", "").find("upstream sent too big header"), std::string::npos) << v.dump();
}

// 3a. The upstream crashes (SIGSEGV) while handling nginx's request.
TEST_F(AppScenario, UpstreamCrashesWithSigsegv) {
  auto &app = start_app(Behaviour::crash);
  pid_t app_pid = app.pid();
  start_nginx(proxy_config("http://" + app.address()));
  start_watch();
  drive("/", 1, 1);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "upstream prematurely closed connection while reading response header from upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "upstream_killed_by_signal", app.address())) {
    EXPECT_EQ(v["upstream_process"].value("pid", 0), app_pid) << v.dump();
    EXPECT_EVIDENCE(v, "fatal_signal", e.value("signal_name", "") == "SIGSEGV" && e.value("pid", 0) == app_pid);
  }
}

// 3b. The upstream is SIGKILLed (by this test process) while nginx waits for its response.
TEST_F(AppScenario, UpstreamKilledMidRequest) {
  auto &app = start_app(Behaviour::slow, 5.0);
  pid_t app_pid = app.pid();
  start_nginx(proxy_config("http://" + app.address(), "1s", "10s"));
  start_watch();
  std::thread killer([&] {
    wait_until([&] { return app.requests_served() >= 1; }, 5.0);
    kill(app_pid, SIGKILL);
  });
  HttpResult r = http_get("127.0.0.1", nginx().port(), "/", 10.0);
  killer.join();
  EXPECT_EQ(r.status, 502);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "upstream prematurely closed connection while reading response header from upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "upstream_killed_by_signal", app.address())) {
    EXPECT_EQ(v["upstream_process"].value("pid", 0), app_pid) << v.dump();
    EXPECT_EVIDENCE(v, "fatal_signal",
                    e.value("signal_name", "") == "SIGKILL" && e.value("pid", 0) == app_pid &&
                        e.value("sender_pid", 0) == getpid());
  }
}

// 3c. An operator stops the upstream with SIGTERM while why502 watches; nginx is then refused.
// The death why502 saw outranks the bare ECONNREFUSED.
TEST_F(AppScenario, UpstreamStoppedWithSigtermThenRefused) {
  auto &app = start_app(Behaviour::ok);
  pid_t app_pid = app.pid();
  std::string upstream = app.address();
  start_nginx(proxy_config("http://" + upstream));
  EXPECT_EQ(http_get("127.0.0.1", nginx().port(), "/", 3.0).status, 200);
  start_watch();
  app.process().signal(SIGTERM);
  ASSERT_TRUE(app.process().wait(5.0));
  drive("/", 1);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "connect() failed (111: Connection refused) while connecting to upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "upstream_killed_by_signal", upstream)) {
    EXPECT_EQ(v["upstream_process"].value("pid", 0), app_pid) << v.dump();
    EXPECT_EVIDENCE(v, "fatal_signal",
                    e.value("signal_name", "") == "SIGTERM" && e.value("sender_pid", 0) == getpid());
  }
}

// 4. The upstream exits (code 3) mid-request, like a worker recycled by max_requests.
TEST_F(AppScenario, UpstreamExitsMidRequest) {
  auto &app = start_app(Behaviour::exit_mid_request);
  pid_t app_pid = app.pid();
  start_nginx(proxy_config("http://" + app.address()));
  start_watch();
  drive("/", 1, 1);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "upstream prematurely closed connection while reading response header from upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "upstream_exited", app.address())) {
    EXPECT_EQ(v["upstream_process"].value("pid", 0), app_pid) << v.dump();
    EXPECT_EVIDENCE(v, "process_exit", e.value("pid", 0) == app_pid && e.value("exit_code", -1) == 3);
  }
}
