// Faults of real upstream servers: python and gunicorn OOM-killed in a memory cgroup, php-fpm's
// unix-socket backlog overflowing.
#include "perfetto_decode.h"
#include "scenario.h"

using namespace why502::scenario;

namespace {

const std::string kScripts = WHY502_SCENARIO_DIR;

class RealScenario : public ScenarioTest {};

// The OOM victim's pid from the cgroup's view: the first pid among `candidates` that died.
pid_t first_dead(const std::vector<pid_t> &candidates) {
  for (pid_t p : candidates)
    if (!process_alive(p))
      return p;
  return 0;
}

} // namespace

// 2a. A python upstream in a 96 MiB memory cgroup allocates while nginx waits on it: OOM-killed.
TEST_F(RealScenario, PythonUpstreamOomKilled) {
  uint16_t port = free_port();
  std::string upstream = "127.0.0.1:" + std::to_string(port);
  SpawnOptions so;
  so.stdout_path = dir() + "/python.log";
  Process py = spawn_server({"/usr/bin/python3", kScripts + "/upstream_app.py", std::to_string(port)}, upstream, so);
  MemoryCgroup cg("scn-python", 96ull << 20);
  cg.add(py.pid());
  start_nginx(proxy_config("http://" + upstream, "1s", "20s"));
  ASSERT_EQ(http_get("127.0.0.1", nginx().port(), "/", 3.0).status, 200);
  const std::string trace = dir() + "/oom.pftrace";
  start_watch({"--syscall-probes", "always", "--perfetto", trace});
  HttpResult r = http_get("127.0.0.1", nginx().port(), "/alloc", 20.0);
  EXPECT_EQ(r.status, 502);
  ASSERT_TRUE(py.wait(5.0));
  ASSERT_GE(cg.oom_kills(), 1u);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "upstream prematurely closed connection while reading response header from upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  uint32_t worker = 0;
  for (auto &v : expect_verdicts(verdicts, "upstream_oom_killed", upstream)) {
    EXPECT_EQ(v["upstream_process"].value("pid", 0), py.pid()) << v.dump();
    EXPECT_EVIDENCE(v, "oom_kill", e.value("pid", 0) == py.pid());
    worker = v["nginx_pid"].get<uint32_t>();
  }

  // The same run as a Perfetto timeline (issue 5): the worker's failed-connection slice, the OOM
  // instant on the upstream process's track, and the 502 instant with an arrow from the OOM kill.
  DECODE_OR_FAIL(t, trace);
  const auto *worker_track = t.process(int(worker));
  ASSERT_NE(worker_track, nullptr) << t.text;
  bool slice = false;
  for (const auto *e : t.named(upstream + " fin_before_data"))
    slice |= e->type == "TYPE_SLICE_BEGIN" && t.tracks.at(e->track).parent == worker_track->uuid;
  EXPECT_TRUE(slice) << "no failed-connection slice under worker " << worker;
  const auto *victim = t.process(py.pid());
  ASSERT_NE(victim, nullptr) << "no track for the upstream process " << py.pid();
  std::vector<uint64_t> oom_flows;
  for (const auto *e : t.named("oom_kill")) {
    EXPECT_EQ(e->track, victim->uuid);
    oom_flows.insert(oom_flows.end(), e->flows.begin(), e->flows.end());
  }
  ASSERT_FALSE(oom_flows.empty()) << "no oom_kill instant with a flow";
  const auto v502 = t.named("502 upstream_oom_killed");
  ASSERT_EQ(v502.size(), 1u);
  bool arrow = false;
  for (uint64_t f : v502[0]->terminating)
    arrow |= std::find(oom_flows.begin(), oom_flows.end(), f) != oom_flows.end();
  EXPECT_TRUE(arrow) << "the 502 instant has no arrow from the OOM kill";
}

// 2b. gunicorn (master + 1 worker) in a 160 MiB cgroup: the worker serving nginx is OOM-killed;
// the master survives and forks a new worker.
TEST_F(RealScenario, GunicornWorkerOomKilled) {
  GunicornOptions go;
  go.app = "upstream_app:app";
  go.app_dir = kScripts;
  go.timeout = 60;
  Gunicorn gun(go, dir() + "/gunicorn.log");
  auto workers = gun.worker_pids();
  ASSERT_EQ(workers.size(), 1u);
  MemoryCgroup cg("scn-gunicorn", 160ull << 20);
  cg.add(gun.master_pid());
  cg.add(workers[0]);
  start_nginx(proxy_config("http://" + gun.address(), "1s", "20s"));
  ASSERT_EQ(http_get("127.0.0.1", nginx().port(), "/", 3.0).status, 200);
  start_watch();
  HttpResult r = http_get("127.0.0.1", nginx().port(), "/alloc", 20.0);
  EXPECT_EQ(r.status, 502);
  ASSERT_TRUE(wait_until([&] { return first_dead(workers) != 0; }, 5.0));
  ASSERT_GE(cg.oom_kills(), 1u);
  EXPECT_TRUE(process_alive(gun.master_pid()));
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(502, "upstream prematurely closed connection while reading response header from upstream"));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "upstream_oom_killed", gun.address())) {
    EXPECT_EQ(v["upstream_process"].value("pid", 0), workers[0]) << v.dump();
    EXPECT_EVIDENCE(v, "oom_kill", e.value("pid", 0) == workers[0]);
  }
}

// 6. php-fpm on a unix socket, one static child, listen.backlog 1, a slow script, six concurrent
// requests: one runs, two wait in the socket's queue, the rest get EAGAIN from connect().
TEST_F(RealScenario, PhpFpmUnixBacklogFull) {
  PhpFpmOptions po;
  po.max_children = 1;
  po.listen_backlog = 1;
  po.script_sleep = 1.0;
  PhpFpm fpm(po, dir());
  NginxConfig cfg;
  NginxLocation l;
  l.kind = PassKind::fastcgi;
  l.target = fpm.address();
  l.fastcgi_script = fpm.script_path();
  l.connect_timeout = "2s";
  l.read_timeout = "10s";
  cfg.locations.push_back(l);
  start_nginx(cfg);
  ASSERT_EQ(http_get("127.0.0.1", nginx().port(), "/", 5.0).status, 200);
  start_watch();
  auto results = http_get_concurrent("127.0.0.1", nginx().port(), "/", 6, 15.0);
  int ok = 0, bad = 0;
  for (auto &r : results)
    (r.status == 200 ? ok : bad) += r.status == 200 || r.status == 502;
  EXPECT_GE(ok, 1);
  EXPECT_GE(bad, 1);
  ASSERT_NO_FATAL_FAILURE(expect_nginx_failed(
      502, "connect() to " + fpm.address() + " failed (11: Resource temporarily unavailable) while connecting to upstream",
      size_t(bad)));
  auto verdicts = finish_watch();
  if (!watching())
    return;
  for (auto &v : expect_verdicts(verdicts, "unix_backlog_full", fpm.address()))
    EXPECT_EVIDENCE(v, "syscall_error", e.value("errno", 0) == EAGAIN && e.value("target", "") == fpm.address());
}
