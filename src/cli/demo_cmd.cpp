// `why502 demo`: the embedded default for a newcomer. A private nginx and
// upstreams in a throw-away network namespace and temp dir, real faults
// injected one after another, and the verdicts as `watch` prints them.
// Everything is torn down on exit, Ctrl-C included (RAII + the lab's stop flag).
#include <chrono>
#include <csignal>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/text.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "pipeline/watcher.h"
#include "sinks/report.h"
#include "why502/error.h"
#include "why502/lab.h"

namespace why502::cli {

using namespace why502::pipeline;

namespace {

void on_interrupt(int) {
  lab::request_stop(); // async-signal-safe; every lab wait and our pump loop see it
}

struct Fault {
  std::string title;     // what an operator would call it
  std::string path;      // the nginx location that reaches the faulty upstream
  std::string expect;    // the cause why502 should name
  std::function<void()> inject;
};

} // namespace

int run_demo(const DemoOptions &opts) {
  if (geteuid() != 0)
    throw Error("why502 demo must run as root (it loads BPF programs and creates a private network namespace)");
  struct sigaction sa = {};
  sa.sa_handler = on_interrupt;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Output out(opts.output);
  auto say = [&](const std::string &text) {
    if (!opts.json)
      out.line(text);
  };

  lab::enter_private_network(); // faults below touch only this namespace
  lab::TempDir dir("why502-demo");
  say("why502 demo: a private nginx and upstreams in a new network namespace (" + dir.path() + ")");

  // One upstream per fault, so each fault's verdict is about one process.
  lab::AppServer stopped({.name = "app-stopped"});
  lab::AppServer resetting({.behaviour = lab::Behaviour::reset, .name = "app-reset"});
  lab::AppServer crashing({.behaviour = lab::Behaviour::crash, .name = "app-crash"});
  lab::AppServer closing({.behaviour = lab::Behaviour::close_early, .name = "app-close"});
  lab::AppServer full_queue({.backlog = 1, .behaviour = lab::Behaviour::never_accept, .name = "app-busy"});
  std::unique_ptr<lab::MemoryCgroup> cgroup;
  std::unique_ptr<lab::AppServer> hungry;
  try {
    hungry = std::make_unique<lab::AppServer>(
        lab::AppServerOptions{.behaviour = lab::Behaviour::alloc, .alloc_cap_bytes = 1ull << 30, .name = "app-hungry"});
    cgroup = std::make_unique<lab::MemoryCgroup>("demo-" + std::to_string(getpid()), 64ull << 20);
    cgroup->add(hungry->pid());
  } catch (const lab::Interrupted &) {
    throw;
  } catch (const Error &e) {
    say("(skipping the OOM fault: " + std::string(e.what()) + ")");
    hungry.reset();
    cgroup.reset();
  }
  const std::string nobody = "127.0.0.1:" + std::to_string(lab::free_port());

  lab::NginxConfig cfg;
  cfg.worker_processes = 2;
  auto route = [&](const std::string &path, const std::string &target, const std::string &connect_timeout = "2s") {
    lab::NginxLocation loc;
    loc.path = path;
    loc.target = "http://" + target;
    loc.connect_timeout = connect_timeout;
    loc.read_timeout = "3s";
    loc.next_upstream = "off";
    cfg.locations.push_back(loc);
  };
  route("/gone/", nobody);
  route("/stopped/", stopped.address());
  if (hungry)
    route("/hungry/", hungry->address());
  route("/busy/", full_queue.address(), "1s");
  route("/reset/", resetting.address());
  route("/crash/", crashing.address());
  route("/close/", closing.address());
  lab::Nginx nginx(cfg, dir.path() + "/nginx");
  say("nginx master " + std::to_string(nginx.master_pid()) + " on 127.0.0.1:" + std::to_string(nginx.port()) +
      ", 2 workers; attaching why502...");

  WatchOptions wopts;
  wopts.nginx_pid = nginx.master_pid();
  Watcher watcher(wopts);
  if (opts.json)
    out.line(base::json_line(watcher.start_json()));
  else
    say(base::escape_terminal_lines(watcher.describe()));

  std::unique_ptr<lab::IdleConnections> queue_filler;
  std::vector<Fault> faults = {
      {"nothing listens on the upstream port", "/gone/", "no_listener", [] {}},
      {"the upstream is stopped (SIGTERM) while why502 watches", "/stopped/", "upstream_killed_by_signal",
       [&] { stopped.stop(); }},
  };
  if (hungry)
    faults.push_back({"the upstream is OOM-killed in a 64 MiB memory cgroup while serving", "/hungry/",
                      "upstream_oom_killed", [] {}});
  faults.push_back({"the upstream's listen queue is full (backlog 1, never accepts)", "/busy/",
                    "accept_queue_overflow", [&] {
                      queue_filler = std::make_unique<lab::IdleConnections>(full_queue.address(), 4);
                    }});
  faults.push_back({"the upstream resets the connection mid-request (SO_LINGER 0)", "/reset/", "connection_reset",
                    [] {}});
  faults.push_back({"the upstream crashes with SIGSEGV mid-request", "/crash/", "upstream_killed_by_signal", [] {}});
  faults.push_back({"the upstream closes before responding", "/close/", "upstream_closed_early", [] {}});

  auto emit = [&](const std::vector<Verdict> &verdicts, std::vector<Verdict> *seen) {
    for (const auto &v : verdicts) {
      out.line(opts.json ? base::json_line(to_json(v)) : sinks::text_report(v));
      if (seen)
        seen->push_back(v);
    }
  };
  // Let the watcher settle its start-up sample.
  emit(watcher.step(200), nullptr);

  int matched = 0;
  for (size_t i = 0; i < faults.size(); ++i) {
    const Fault &f = faults[i];
    say("\n[" + std::to_string(i + 1) + "/" + std::to_string(faults.size()) + "] " + f.title);
    f.inject();
    lab::sleep_for(0.3); // let a sample see the fault's state (queue depth, dead process)
    emit(watcher.step(0), nullptr);
    auto r = lab::http_get("127.0.0.1", nginx.port(), f.path, 6.0);
    say("    GET " + f.path + " -> " + (r.status ? std::to_string(r.status) : r.error));
    std::vector<Verdict> got;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(8);
    while (got.empty() && std::chrono::steady_clock::now() < deadline) {
      if (lab::stop_requested())
        throw lab::Interrupted();
      emit(watcher.step(100), &got);
    }
    bool ok = false;
    for (const auto &v : got)
      ok |= v.cause == f.expect;
    matched += ok;
    if (!opts.json && got.empty())
      say("    (no verdict yet)");
    queue_filler.reset();
  }
  emit(watcher.finish(), nullptr);
  if (opts.json) {
    out.line(base::json_line(sinks::summary_json(watcher.stats())));
  } else {
    out.line(sinks::summary_table(watcher.stats()));
    say(std::to_string(matched) + " of " + std::to_string(faults.size()) +
        " faults named as expected. Cleaning up (nginx, upstreams, namespace, temp dir).");
  }
  return matched == int(faults.size()) ? 0 : 3;
}

} // namespace why502::cli
