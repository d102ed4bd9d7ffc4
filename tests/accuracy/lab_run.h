// One run of the accuracy lab: a named netns, a real nginx (2 workers, upstream keepalive off or
// on), built-in upstreams on IPv4, IPv6 and unix sockets, 8 concurrent clients (half of them on
// client keep-alive connections) whose requests each
// pick a behaviour by path, a seeded schedule of upstream events (stop, SIGKILL, restart, crash,
// exit, OOM kill), and `why502 watch --capture` running through it all.
//
// Everything the run starts is a member, destroyed in reverse order (watch, nginx, upstreams, the
// memory cgroup, the temp dir, the netns), so a failed assertion or an exception tears it all down.
// The plan (every client's requests and pauses, every event's kind, upstream, time and downtime)
// is a pure function of the seed; only the kernel's timing varies between runs.
#pragma once

#include <sys/wait.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "named_netns.h"
#include "scenario.h"
#include "truth.h"
#include "why502/lab.h"

namespace why502::accuracy {

using namespace why502::lab;

inline double now_s() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

struct RunOptions {
  std::string tag;        // "keepalive_off"
  bool keepalive = false; // `keepalive 32` in every upstream block
  int requests = 500;
  std::uint64_t seed = 1;
  int clients = 8;
};

// An upstream of the lab. Stable ones never die (their failures come from the request's path);
// victims take the scheduled events; `nl` is a port nothing ever listens on.
enum class Role { stable, victim, never_started };
struct Slot {
  std::string name;    // nginx upstream block and location prefix /<name>/
  std::string address; // fixed for the run: a restart reuses it
  Role role = Role::stable;
  bool in_memory_cgroup = false;
  std::unique_ptr<AppServer> app;
  std::vector<pid_t> pids;        // every pid that served it, in order
  std::vector<EventTimes> events; // as they happened
};

// The Host header of requests whose id is in the URI; "<id>.<kLabHost>" for the others.
inline const std::string kLabHost = "why502-lab";

struct Request {
  std::string id;
  std::string location; // nginx location prefix (a slot's name, or "p4": s4 with a long read timeout)
  size_t slot = 0;
  Truth planned = Truth::ok;
  std::optional<EventKind> trigger;    // set for an event's trigger request
  std::optional<size_t> trigger_event; // its event's index in the slot's events, once executed
  double pause = 0;                    // seconds the client waits before sending
  // Keep-alive clients carry the id in the Host header instead of the URI, so that one client
  // connection sends identical request lines (GET /s4/reset/ ...) for different requests: why502
  // must still tell them apart (issue 9: requests on one keep-alive connection were merged).
  bool id_in_host = false;
  // Filled by the client.
  double sent = 0, done = 0;
  HttpResult result;

  std::string path() const {
    return "/" + location + "/" + std::string(wire_behaviour(planned)) + "/" + (id_in_host ? "" : id);
  }
  std::string host() const { return id_in_host ? id + "." + kLabHost : kLabHost; }
};

struct Episode {
  size_t slot;
  EventKind kind;
  double at;       // seconds after traffic starts
  double down;     // seconds nothing listens before the restart
  int status = -1; // the victim's wait status
  bool status_ok = false;
  std::string what; // one line for the report
};

// Seconds an upstream sleeps for /slow/: between the two read timeouts below.
inline constexpr double kSlowSeconds = 1.5;
inline constexpr const char *kReadTimeout = "1s";
inline constexpr const char *kPatientReadTimeout = "3s";
inline constexpr std::uint64_t kCgroupLimit = 64ull << 20;

class LabRun {
public:
  explicit LabRun(RunOptions o) : opts_(std::move(o)), netns_(opts_.tag), dir_("why502-acc") {
    remove_stale_cgroups();
    cgroup_ = std::make_unique<MemoryCgroup>("acc-" + std::to_string(getpid()) + "-" + opts_.tag, kCgroupLimit);
    make_slots();
    plan();
    start_nginx();
  }
  ~LabRun() {
    watch_.reset();
    nginx_.reset();
    for (auto &s : slots_)
      s.app.reset();
  }

  const RunOptions &options() const { return opts_; }
  const std::string &dir() const { return dir_.path(); }
  const std::string &netns() const { return netns_.name(); }
  Nginx &nginx() { return *nginx_; }
  const Nginx &nginx() const { return *nginx_; }
  scenario::Watch &watch() { return *watch_; }
  const std::vector<Slot> &slots() const { return slots_; }
  const std::vector<Request> &requests() const { return requests_; }
  const std::vector<Episode> &episodes() const { return episodes_; }
  std::string capture_path() const { return dir_.file("capture.jsonl"); }
  double traffic_seconds() const { return traffic_end_ - traffic_start_; }
  double traffic_start() const { return traffic_start_; }

  // Starts why502, runs the traffic and the events, waits for the clients, lets why502 read the
  // last log lines and stops it (SIGINT, its normal end).
  void run() {
    // --duration bounds the watcher in case the lab hangs; the lab stops it itself with SIGINT.
    int bound = int(planned_seconds_ * 2) + 60;
    watch_ = std::make_unique<scenario::Watch>(dir(), nginx_->master_pid(),
                                               std::vector<std::string>{"--capture", capture_path()}, bound);
    traffic_start_ = now_s();
    std::vector<std::thread> clients;
    for (int c = 0; c < opts_.clients; ++c)
      clients.emplace_back([this, c] { client(c); });
    std::exception_ptr failure;
    try {
      for (auto &e : episodes_)
        execute(e);
    } catch (...) {
      failure = std::current_exception();
      request_stop(); // clients stop at their next pause
    }
    for (auto &t : clients)
      t.join();
    for (auto &t : triggers_)
      if (t.joinable())
        t.join();
    clear_stop();
    traffic_end_ = now_s();
    if (failure)
      std::rethrow_exception(failure);
    sleep_for(2.0);
    watch_->stop();
  }

  // The label of a request, from the plan and the events on its upstream. The request's interval
  // is what both sides saw: the client's [sent, done], narrowed by nginx's own [start, end] when
  // given (its access line: $msec - $request_time .. $msec, ms resolution and nginx's cached
  // clock, hence widened by kClockSlack).
  Label label(const Request &r, std::optional<std::pair<double, double>> nginx_interval = std::nullopt) const {
    double from = r.sent, to = r.done;
    if (nginx_interval) {
      from = std::max(from, nginx_interval->first - kClockSlack);
      to = std::min(to, nginx_interval->second + kClockSlack);
      if (from > to) // the clocks disagree: keep the client's view
        from = r.sent, to = r.done;
    }
    return label_request(r.planned, r.trigger_event, from, to, slots_[r.slot].events);
  }

private:
  // why502-acc-<pid>-* memory cgroups of runs that were killed (their pid is gone; so are their tasks).
  static void remove_stale_cgroups() noexcept {
    const std::string root = "/sys/fs/cgroup/memory", prefix = "why502-acc-";
    std::error_code ec;
    for (auto &e : std::filesystem::directory_iterator(root, ec)) {
      std::string n = e.path().filename().string();
      if (n.rfind(prefix, 0) != 0)
        continue;
      pid_t pid = pid_t(atol(n.c_str() + prefix.size()));
      if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH)
        rmdir(e.path().c_str());
    }
  }

  size_t slot_index(const std::string &name) const {
    for (size_t i = 0; i < slots_.size(); ++i)
      if (slots_[i].name == name)
        return i;
    throw Error("no slot " + name);
  }

  static bool is_unix(const Slot &s) { return s.address.rfind("unix:", 0) == 0; }

  AppServerOptions app_options(const Slot &s) const {
    AppServerOptions a;
    a.address = s.address;
    a.slow_seconds = kSlowSeconds;
    a.name = "acc-" + s.name;
    return a;
  }

  void start_app(Slot &s) {
    s.app = std::make_unique<AppServer>(app_options(s));
    s.address = s.app->address(); // port 0 resolved on the first start
    s.pids.push_back(s.app->pid());
    if (s.in_memory_cgroup)
      cgroup_->add(s.app->pid());
  }

  void make_slots() {
    auto add = [&](std::string name, std::string address, Role role, bool cg = false) {
      Slot s;
      s.name = std::move(name);
      s.address = std::move(address);
      s.role = role;
      s.in_memory_cgroup = cg;
      slots_.push_back(std::move(s));
    };
    add("s4", "127.0.0.1:0", Role::stable);
    add("s6", "[::1]:0", Role::stable);
    add("su", "unix:" + dir_.file("su.sock"), Role::stable);
    add("v4", "127.0.0.1:0", Role::victim);
    add("v6", "[::1]:0", Role::victim);
    add("vu", "unix:" + dir_.file("vu.sock"), Role::victim);
    add("vm", "127.0.0.1:0", Role::victim, true);
    add("nl", "127.0.0.1:" + std::to_string(free_port()), Role::never_started);
    for (auto &s : slots_)
      if (s.role != Role::never_started)
        start_app(s);
  }

  void start_nginx() {
    NginxConfig c;
    c.worker_processes = 2;
    for (auto &s : slots_) {
      NginxUpstream u;
      u.name = s.name;
      // max_fails=0: a failure never marks the (single) server down, so every request reaches it
      // and its own cause shows, instead of "no live upstreams".
      u.servers.push_back({s.address, 0, "10s", false});
      if (opts_.keepalive)
        u.keepalive = 32;
      c.upstreams.push_back(u);
      NginxLocation l;
      l.path = "/" + s.name + "/";
      l.target = "http://" + s.name + "/";
      l.connect_timeout = "1s";
      // Victims serve only fast behaviours; the longer timeout keeps a death that takes a while
      // (the OOM killer reclaims first: up to ~1.3 s measured) a 502 rather than a 504.
      l.read_timeout = s.role == Role::victim ? kPatientReadTimeout : kReadTimeout;
      c.locations.push_back(l);
    }
    NginxLocation patient;
    patient.path = "/p4/";
    patient.target = "http://s4/";
    patient.read_timeout = kPatientReadTimeout;
    c.locations.push_back(patient);
    nginx_ = std::make_unique<Nginx>(std::move(c), dir_.file("nginx"));
  }

  // The whole plan from the seed: each client's requests, then the events.
  void plan() {
    const size_t s4 = slot_index("s4"), nl = slot_index("nl");
    const std::vector<size_t> stable{s4, slot_index("s6"), slot_index("su")};
    const std::vector<size_t> victims{slot_index("v4"), slot_index("v6"), slot_index("vu"), slot_index("vm")};
    double longest_client = 0;
    client_plan_.resize(size_t(opts_.clients));
    for (int c = 0; c < opts_.clients; ++c) {
      std::mt19937_64 rng(opts_.seed * 1000003u + std::uint64_t(c));
      auto pick = [&](size_t n) { return size_t(std::uniform_int_distribution<size_t>(0, n - 1)(rng)); };
      auto pct = [&] { return std::uniform_real_distribution<double>(0, 100)(rng); };
      int n = opts_.requests / opts_.clients + (c < opts_.requests % opts_.clients ? 1 : 0);
      double t = 0;
      for (int i = 0; i < n; ++i) {
        Request r;
        r.id = "c" + std::to_string(c) + "n" + std::to_string(i);
        r.id_in_host = c % 2 == 1; // the keep-alive clients (see client())
        r.pause = std::uniform_real_distribution<double>(0.05, 0.40)(rng);
        double p = pct();
        if (p < 4) {
          r.slot = nl, r.location = "nl", r.planned = Truth::never_started;
        } else if (p < 8) {
          r.slot = s4, r.location = "p4", r.planned = Truth::slow_ok;
        } else if (p < 13) {
          r.slot = stable[pick(3)], r.planned = Truth::slow_timeout;
        } else if (p < 55) {
          r.slot = stable[pick(3)];
          double q = pct();
          r.planned = q < 40 ? Truth::ok : q < 70 ? Truth::reset : Truth::close_early;
        } else {
          r.slot = victims[pick(4)];
          double q = pct();
          r.planned = q < 60 ? Truth::ok : q < 80 ? Truth::reset : Truth::close_early;
        }
        // A unix socket has no RST: SO_LINGER 0 + close is a plain EOF there, so what the lab does to a
        // unix upstream for /reset/ is an early close, and that is its truth.
        if (r.planned == Truth::reset && is_unix(slots_[r.slot]))
          r.planned = Truth::close_early;
        if (r.location.empty())
          r.location = slots_[r.slot].name;
        t += r.pause + (r.planned == Truth::slow_ok || r.planned == Truth::slow_timeout ? kSlowSeconds : 0.01);
        client_plan_[size_t(c)].push_back(requests_.size());
        requests_.push_back(std::move(r));
      }
      longest_client = std::max(longest_client, t);
    }
    planned_seconds_ = longest_client;
    // Events: one every ~1.6 s while the clients run; the first six are each kind once.
    std::mt19937_64 rng(opts_.seed * 7919u + 17u);
    std::vector<EventKind> kinds{EventKind::stop,  EventKind::sigkill, EventKind::restart,
                                 EventKind::crash, EventKind::exit,    EventKind::oom};
    std::shuffle(kinds.begin(), kinds.end(), rng);
    const size_t vm = slot_index("vm");
    std::vector<size_t> any_victim{slot_index("v4"), slot_index("v6"), slot_index("vu"), vm};
    double at = 1.0;
    for (size_t k = 0; at < planned_seconds_ - 1.5; ++k) {
      EventKind kind = k < kinds.size() ? kinds[k] : kinds[std::uniform_int_distribution<size_t>(0, 5)(rng)];
      Episode e;
      e.kind = kind;
      e.slot = kind == EventKind::oom ? vm : any_victim[std::uniform_int_distribution<size_t>(0, 3)(rng)];
      e.at = at;
      e.down = kind == EventKind::restart ? 0.0 : std::uniform_real_distribution<double>(0.3, 1.0)(rng);
      episodes_.push_back(e);
      if (event_has_trigger(kind)) {
        Request r;
        r.id = "e" + std::to_string(k);
        r.slot = e.slot;
        r.location = slots_[e.slot].name;
        r.planned = event_truth(kind);
        r.trigger = kind;
        trigger_of_.push_back(requests_.size());
        requests_.push_back(std::move(r));
      } else {
        trigger_of_.push_back(SIZE_MAX);
      }
      at += e.down + std::uniform_real_distribution<double>(1.0, 1.6)(rng);
    }
  }

  // On a fresh connection (conn == nullptr) or on the client's keep-alive connection.
  void send(Request &r, HttpConnection *conn = nullptr) {
    r.sent = now_s();
    r.result =
        conn ? conn->get(r.path(), 10.0, r.host()) : http_get("127.0.0.1", nginx_->port(), r.path(), 10.0, r.host());
    r.done = now_s();
  }

  // Odd clients keep one connection to nginx open across their requests (as browsers and load
  // balancers do), so nginx logs several requests per client connection; even ones connect per request.
  void client(int c) {
    try {
      std::optional<HttpConnection> conn;
      if (c % 2 == 1)
        conn.emplace("127.0.0.1", nginx_->port());
      for (size_t idx : client_plan_[size_t(c)]) {
        Request &r = requests_[idx];
        sleep_for(r.pause);
        send(r, conn ? &*conn : nullptr);
      }
    } catch (const Interrupted &) {
      // the main thread failed and asked everyone to stop
    }
  }

  // One event on the main thread (lab processes must be created by a thread that outlives them).
  void execute(Episode &e) {
    double wait = traffic_start_ + e.at - now_s();
    if (wait > 0)
      sleep_for(wait);
    Slot &s = slots_[e.slot];
    EventTimes t{e.kind};
    t.pid = s.app->pid();
    size_t idx = size_t(&e - episodes_.data());
    std::uint64_t ooms_before = cgroup_->oom_kills();
    std::optional<int> st;
    t.event = now_s();
    if (event_has_trigger(e.kind)) {
      Request &r = requests_[trigger_of_[idx]];
      r.trigger_event = s.events.size(); // this event's index once pushed below
      triggers_.emplace_back([this, &r] { send(r); });
      st = s.app->process().wait(15.0);
      if (!st)
        throw Error("lab: " + s.name + " did not die after the " + std::string(event_name(e.kind)) + " trigger " +
                    r.id);
    } else {
      st = s.app->process().stop(e.kind == EventKind::sigkill ? SIGKILL : SIGTERM, 5.0);
    }
    t.dead = now_s();
    e.status = *st;
    switch (e.kind) {
    case EventKind::stop:
    case EventKind::restart: e.status_ok = WIFSIGNALED(*st) && WTERMSIG(*st) == SIGTERM; break;
    case EventKind::sigkill: e.status_ok = WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL; break;
    case EventKind::crash: e.status_ok = WIFSIGNALED(*st) && WTERMSIG(*st) == SIGSEGV; break;
    case EventKind::exit: e.status_ok = WIFEXITED(*st) && WEXITSTATUS(*st) == 3; break;
    case EventKind::oom:
      e.status_ok = WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL && cgroup_->oom_kills() > ooms_before;
      break;
    }
    if (e.down > 0)
      sleep_for(e.down);
    pid_t old = s.app->pid();
    s.app.reset();
    start_app(s);
    t.up = now_s();
    s.events.push_back(t);
    char line[200];
    snprintf(line, sizeof(line), "t+%6.3f %-7s %s pid %d -> %d: event %.3f, reaped %.3f, listening again %.3f",
             t.event - traffic_start_, std::string(event_name(e.kind)).c_str(), s.name.c_str(), int(old),
             int(s.app->pid()), t.event, t.dead, t.up);
    e.what = line;
  }

  RunOptions opts_;
  NamedNetns netns_;
  TempDir dir_;
  std::unique_ptr<MemoryCgroup> cgroup_;
  std::vector<Slot> slots_;
  std::vector<Request> requests_;
  std::vector<std::vector<size_t>> client_plan_;
  std::vector<Episode> episodes_;
  std::vector<size_t> trigger_of_; // per episode: index of its trigger request, or SIZE_MAX
  std::vector<std::thread> triggers_;
  double planned_seconds_ = 0;
  double traffic_start_ = 0, traffic_end_ = 0;
  std::unique_ptr<Nginx> nginx_;
  std::unique_ptr<scenario::Watch> watch_;
};

} // namespace why502::accuracy
