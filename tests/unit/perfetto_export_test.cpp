// PerfettoExporter tests: a synthetic sequence of kernel records, host samples,
// access lines and verdicts is exported to a temp file, decoded with
// `protoc --decode=perfetto.protos.Trace` (proto/perfetto_trace.proto) and
// checked track by track: worker process track, failed-connection slice,
// kernel instants, flows from cause to 502, counters, monotonic timestamps.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "sinks/perfetto_export.h"

namespace {

namespace fs = std::filesystem;
using namespace why502;
using why502::sinks::PerfettoExporter;
using why502::sinks::PerfettoExportOptions;

// ---- protoc text format -> packets -> tracks and events ---------------------------

struct Node {
  std::string key, value;
  std::vector<Node> kids;
  const Node *child(const std::string &k) const {
    for (const Node &n : kids)
      if (n.key == k)
        return &n;
    return nullptr;
  }
  std::vector<const Node *> all(const std::string &k) const {
    std::vector<const Node *> out;
    for (const Node &n : kids)
      if (n.key == k)
        out.push_back(&n);
    return out;
  }
  bool has(const std::string &k) const { return child(k) != nullptr; }
  uint64_t u(const std::string &k) const { return has(k) ? std::stoull(child(k)->value) : 0; }
  std::string s(const std::string &k) const { return has(k) ? child(k)->value : std::string(); }
};

std::string unquote(const std::string &v) {
  if (v.size() < 2 || v.front() != '"')
    return v;
  std::string out;
  for (size_t i = 1; i + 1 < v.size(); ++i) {
    if (v[i] != '\\') {
      out += v[i];
      continue;
    }
    const char c = v[++i];
    if (c >= '0' && c <= '7') {
      int val = 0, n = 0;
      while (n < 3 && i < v.size() - 1 && v[i] >= '0' && v[i] <= '7')
        val = val * 8 + (v[i++] - '0'), ++n;
      --i;
      out += static_cast<char>(val);
    } else if (c == 'n') {
      out += '\n';
    } else {
      out += c;
    }
  }
  return out;
}

Node parse_text_format(const std::string &text) {
  Node root;
  std::vector<Node *> stack{&root};
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t b = line.find_first_not_of(' ');
    if (b == std::string::npos)
      continue;
    line = line.substr(b);
    if (line == "}") {
      stack.pop_back();
    } else if (line.size() > 2 && line.ends_with(" {")) {
      stack.back()->kids.push_back(Node{line.substr(0, line.size() - 2), {}, {}});
      stack.push_back(&stack.back()->kids.back());
    } else {
      const size_t colon = line.find(": ");
      stack.back()->kids.push_back(Node{line.substr(0, colon), unquote(line.substr(colon + 2)), {}});
    }
  }
  return root;
}

fs::path proto_dir() { return fs::path(WHY502_FIXTURES).parent_path().parent_path() / "proto"; }

struct Track {
  uint64_t uuid = 0, parent = 0;
  std::string name;         // named / counter tracks
  int pid = 0, tid = 0;     // process / thread tracks
  std::string process_name; // process tracks
  std::vector<std::string> cmdline;
  bool counter = false, is_process = false, is_thread = false;
};

struct Event {
  uint64_t ts = 0, track = 0;
  std::string type, name, category;
  std::map<std::string, std::string> args;
  std::vector<uint64_t> flows, terminating;
  std::string counter; // counter_value / double_counter_value as text
};

struct Trace {
  bool ok = false;
  std::string error, text;
  std::map<uint64_t, Track> tracks;
  std::vector<Event> events;
  std::vector<std::string> problems; // structural: ordering, nesting, unknown tracks

  const Track *track_named(const std::string &name) const {
    for (const auto &[id, t] : tracks)
      if (t.name == name)
        return &t;
    return nullptr;
  }
  const Track *process(int pid) const {
    for (const auto &[id, t] : tracks)
      if (t.is_process && t.pid == pid)
        return &t;
    return nullptr;
  }
  std::vector<const Event *> named(const std::string &name) const {
    std::vector<const Event *> out;
    for (const Event &e : events)
      if (e.name == name)
        out.push_back(&e);
    return out;
  }
  std::vector<const Event *> on(uint64_t track) const {
    std::vector<const Event *> out;
    for (const Event &e : events)
      if (e.track == track)
        out.push_back(&e);
    return out;
  }
};

Trace decode(const fs::path &file) {
  Trace t;
  const std::string cmd = "protoc --decode=perfetto.protos.Trace -I '" + proto_dir().string() + "' '" +
                          (proto_dir() / "perfetto_trace.proto").string() + "' < '" + file.string() + "' 2>&1";
  FILE *p = ::popen(cmd.c_str(), "r");
  if (!p) {
    t.error = "cannot run protoc";
    return t;
  }
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    t.text.append(buf, n);
  const int status = ::pclose(p);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    t.error = "protoc failed (is protobuf-compiler installed?): " + t.text;
    return t;
  }
  const Node root = parse_text_format(t.text);
  std::map<std::string, std::map<uint64_t, std::string>> interned;
  std::map<uint64_t, int> depth;
  uint64_t last_ts = 0;
  for (const Node *pk : root.all("packet")) {
    if (pk->u("sequence_flags") == 1)
      interned.clear();
    if (const Node *id = pk->child("interned_data"))
      for (const Node &e : id->kids)
        interned[e.key][e.u("iid")] = e.s("name");
    if (const Node *td = pk->child("track_descriptor")) {
      Track tr;
      tr.uuid = td->u("uuid");
      tr.parent = td->u("parent_uuid");
      tr.name = td->s("name");
      tr.counter = td->has("counter");
      if (const Node *pr = td->child("process")) {
        tr.is_process = true;
        tr.pid = int(pr->u("pid"));
        tr.process_name = pr->s("process_name");
        for (const Node *c : pr->all("cmdline"))
          tr.cmdline.push_back(c->value);
      }
      if (const Node *th = td->child("thread")) {
        tr.is_thread = true;
        tr.pid = int(th->u("pid"));
        tr.tid = int(th->u("tid"));
        tr.name = th->s("thread_name");
      }
      if (tr.parent && !t.tracks.count(tr.parent))
        t.problems.push_back("parent track not declared before " + std::to_string(tr.uuid));
      t.tracks[tr.uuid] = tr;
    }
    if (const Node *te = pk->child("track_event")) {
      Event e;
      e.ts = pk->u("timestamp");
      if (e.ts < last_ts)
        t.problems.push_back("timestamp goes backwards at " + std::to_string(e.ts));
      last_ts = e.ts;
      e.track = te->u("track_uuid");
      e.type = te->s("type");
      if (!t.tracks.count(e.track))
        t.problems.push_back("event on undeclared track");
      if (te->has("name_iid"))
        e.name = interned["event_names"][te->u("name_iid")];
      for (const Node *c : te->all("category_iids"))
        e.category = interned["event_categories"][std::stoull(c->value)];
      for (const Node *a : te->all("debug_annotations")) {
        const std::string name = interned["debug_annotation_names"][a->u("name_iid")];
        for (const char *k : {"string_value", "int_value", "uint_value", "bool_value", "double_value"})
          if (a->has(k))
            e.args[name] = a->s(k);
      }
      for (const Node *f : te->all("flow_ids"))
        e.flows.push_back(std::stoull(f->value));
      for (const Node *f : te->all("terminating_flow_ids"))
        e.terminating.push_back(std::stoull(f->value));
      e.counter = te->has("counter_value") ? te->s("counter_value") : te->s("double_counter_value");
      if (e.type == "TYPE_SLICE_BEGIN")
        ++depth[e.track];
      if (e.type == "TYPE_SLICE_END" && --depth[e.track] < 0)
        t.problems.push_back("slice end without begin");
      t.events.push_back(std::move(e));
    }
  }
  for (auto [track, d] : depth)
    if (d != 0)
      t.problems.push_back("unbalanced slices on track " + std::to_string(track));
  t.ok = true;
  return t;
}

std::string join(const std::vector<std::string> &v) {
  std::string out;
  for (const auto &s : v)
    out += s + "\n";
  return out;
}

// ---- synthetic inputs ---------------------------------------------------------------

constexpr uint64_t kBoot0 = 5'000'000'000;                 // the writer's clock snapshot
constexpr int64_t kWall0 = 1'800'000'000'000'000'000;     // REALTIME at kBoot0
constexpr int64_t kOffset = kWall0 - int64_t(kBoot0);     // REALTIME - BOOTTIME
constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kT0 = kBoot0 + 1000 * kMs;             // the story starts 1 s in

KernelEvent kev(uint64_t boot_ns, KernelRecord r, uint32_t cpu = 0, bool host = false) {
  KernelEvent ev;
  ev.boot_ns = boot_ns;
  ev.wall_ns = int64_t(boot_ns) + kOffset;
  ev.cpu = cpu;
  ev.host = host;
  ev.record = std::move(r);
  return ev;
}

HostSample sample_at(uint64_t boot_ns, uint32_t depth) {
  HostSample s;
  s.wall_ns = int64_t(boot_ns) + kOffset;
  s.listeners.push_back(Listener{"127.0.0.1:8080", depth, 128, 77, {{2000, "gunicorn"}, {2001, "gunicorn"}}});
  s.listeners.push_back(Listener{"0.0.0.0:80", 0, 511, 78, {{1000, "nginx"}, {1001, "nginx"}}});
  return s;
}

ConnFail conn_reset() {
  ConnFail c;
  c.pid = 1001;
  c.tid = 1001;
  c.comm = "nginx";
  c.local = {"127.0.0.1", 51234};
  c.remote = {"127.0.0.1", 8080};
  c.family = 4;
  c.failure = ConnFailure::RstEstablished;
  c.last_state = "ESTABLISHED";
  c.ts_syn_sent = kT0 + 150 * kMs;
  c.ts_established = kT0 + 151 * kMs;
  c.ts_reset = kT0 + 210 * kMs;
  c.ts_close = kT0 + 211 * kMs;
  c.conn_id = 42;
  return c;
}

OomVictim oom() {
  OomVictim o;
  o.pid = 2000;
  o.comm = "gunicorn";
  o.total_vm_kb = 2'097'152;
  o.anon_rss_kb = 1'900'000;
  return o;
}

nlohmann::json evidence(const KernelEvent &ev) {
  nlohmann::json j = to_json(ev);
  j.erase("type");
  return j;
}

class PerfettoExport : public ::testing::Test {
protected:
  void SetUp() override {
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("why502_export_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    // A fake /proc with the cmdlines of the worker and the upstream.
    write_proc(1000, std::string("nginx: master process /usr/sbin/nginx\0", 38));
    write_proc(1001, std::string("nginx: worker process\0", 22));
    write_proc(2000, std::string("gunicorn\0app:app\0-b\0" "127.0.0.1:8080\0", 35));
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write_proc(int pid, const std::string &cmdline) {
    fs::create_directories(dir_ / "proc" / std::to_string(pid));
    std::ofstream(dir_ / "proc" / std::to_string(pid) / "cmdline", std::ios::binary) << cmdline;
  }

  PerfettoExportOptions options() const {
    PerfettoExportOptions o;
    o.clocks = why502::perfetto::ClockReadings{kBoot0, uint64_t(kWall0)};
    o.proc_root = (dir_ / "proc").string();
    return o;
  }
  fs::path file() const { return dir_ / "trace.pftrace"; }

  // The OOM story: gunicorn (owner of 127.0.0.1:8080) is OOM-killed while
  // nginx worker 1001 holds a connection to it; the verdict comes seconds later.
  Verdict oom_story(PerfettoExporter &x) {
    x.add_nginx_process(1000);
    x.add_upstream("127.0.0.1:8080");
    x.sample(sample_at(kT0, 0));
    x.kernel(kev(kT0 + 10 * kMs, WatchStart{1001, 1000, "nginx", "scan"}));
    x.sample(sample_at(kT0 + 100 * kMs, 5));
    const KernelEvent oom_ev = kev(kT0 + 200 * kMs, oom(), 1);
    x.kernel(oom_ev);
    // Unrelated host traffic: must not mint an upstream track.
    x.kernel(kev(kT0 + 205 * kMs, ResetSent{{"10.9.9.9", 40000}, {"10.9.9.8", 50000}, "", false}, 2, true));
    const KernelEvent fail_ev = kev(kT0 + 211 * kMs, conn_reset(), 0);
    x.kernel(fail_ev);
    x.sample(sample_at(kT0 + 600 * kMs, 0));
    x.sample(sample_at(kT0 + 3000 * kMs, 0)); // time passes: the correlator settles

    Verdict v;
    v.id = 1;
    v.wall_ns = int64_t(kT0 + 211 * kMs) + kOffset;
    v.cause = cause::kOomKilled;
    v.summary = "gunicorn pid 2000 (owner of 127.0.0.1:8080) was OOM-killed while nginx was connected";
    v.upstream = "127.0.0.1:8080";
    v.nginx_pid = 1001;
    v.status = 502;
    v.nginx_error = "recv() failed (104: Connection reset by peer) while reading response header from upstream";
    v.upstream_process = ProcessRef{2000, "gunicorn"};
    v.evidence = nlohmann::json::array({evidence(fail_ev), evidence(oom_ev)});
    x.verdict(v);
    return v;
  }

  fs::path dir_;
};

#define DECODE_OR_FAIL(var, path)                                                                                      \
  const Trace var = decode(path);                                                                                      \
  ASSERT_TRUE(var.ok) << var.error;                                                                                    \
  EXPECT_TRUE(var.problems.empty()) << join(var.problems)

TEST_F(PerfettoExport, OomStoryHasTracksSliceInstantsFlowsAndCounters) {
  sinks::PerfettoExportStats st;
  {
    PerfettoExporter x(file().string(), options());
    oom_story(x);
    x.close();
    st = x.stats();
  }
  DECODE_OR_FAIL(t, file());
  EXPECT_EQ(st.verdicts, 1u);
  EXPECT_EQ(st.flows_resolved, 2u);
  EXPECT_EQ(st.clamped, 0u);
  EXPECT_EQ(st.late, 0u);

  // The worker: a process track named like nginx names it, cmdline from /proc.
  const Track *worker = t.process(1001);
  ASSERT_NE(worker, nullptr) << t.text;
  EXPECT_EQ(worker->process_name, "nginx: worker");
  EXPECT_EQ(worker->cmdline, std::vector<std::string>{"nginx: worker process"});
  ASSERT_NE(t.process(1000), nullptr);
  EXPECT_EQ(t.process(1000)->process_name, "nginx: master");

  // The failed connection: one balanced slice, connect -> close, on a lane under the worker.
  std::vector<const Event *> begins;
  for (const Event *e : t.named("127.0.0.1:8080 rst_established"))
    if (e->type == "TYPE_SLICE_BEGIN")
      begins.push_back(e);
  ASSERT_EQ(begins.size(), 1u);
  const Event &slice = *begins[0];
  EXPECT_EQ(slice.type, "TYPE_SLICE_BEGIN");
  EXPECT_EQ(slice.ts, kT0 + 150 * kMs);
  EXPECT_EQ(slice.args.at("local"), "127.0.0.1:51234");
  EXPECT_EQ(t.tracks.at(slice.track).parent, worker->uuid);
  std::vector<const Event *> ends;
  for (const Event *e : t.on(slice.track))
    if (e->type == "TYPE_SLICE_END")
      ends.push_back(e);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0]->ts, kT0 + 211 * kMs);

  // The kernel facts: the RST inside the slice, the OOM kill on gunicorn's track.
  const auto rst = t.named("tcp_receive_reset");
  ASSERT_EQ(rst.size(), 1u);
  EXPECT_EQ(rst[0]->track, slice.track);
  EXPECT_EQ(rst[0]->ts, kT0 + 210 * kMs);
  EXPECT_EQ(rst[0]->type, "TYPE_INSTANT");
  const Track *gunicorn = t.process(2000);
  ASSERT_NE(gunicorn, nullptr);
  EXPECT_EQ(gunicorn->process_name, "gunicorn");
  EXPECT_EQ(gunicorn->cmdline.size(), 4u);
  const auto oom_i = t.named("oom_kill");
  ASSERT_EQ(oom_i.size(), 1u);
  EXPECT_EQ(oom_i[0]->track, gunicorn->uuid);
  EXPECT_EQ(oom_i[0]->args.at("anon_rss_kb"), "1900000");
  EXPECT_EQ(oom_i[0]->args.at("comm"), "gunicorn");

  // The upstream has its own track; unrelated host RSTs go to the host-wide track.
  const Track *up = t.track_named("upstream 127.0.0.1:8080");
  ASSERT_NE(up, nullptr);
  EXPECT_FALSE(t.on(up->uuid).empty());
  const auto stray = t.named("tcp_send_reset");
  ASSERT_EQ(stray.size(), 1u);
  EXPECT_EQ(t.tracks.at(stray[0]->track).name, "kernel (host-wide)");
  EXPECT_EQ(t.track_named("upstream 10.9.9.9:40000"), nullptr);

  // The verdict: a 502 instant on the worker's thread at the failure time,
  // ending flows that the kernel instants started.
  const auto v = t.named("502 upstream_oom_killed");
  ASSERT_EQ(v.size(), 1u);
  const Event &verdict = *v[0];
  EXPECT_EQ(verdict.type, "TYPE_INSTANT");
  EXPECT_EQ(verdict.ts, kT0 + 211 * kMs);
  EXPECT_TRUE(t.tracks.at(verdict.track).is_thread);
  EXPECT_EQ(t.tracks.at(verdict.track).pid, 1001);
  EXPECT_EQ(verdict.args.at("cause"), "upstream_oom_killed");
  EXPECT_EQ(verdict.args.at("status"), "502");
  EXPECT_EQ(verdict.args.at("upstream"), "127.0.0.1:8080");
  EXPECT_NE(verdict.args.at("nginx_error").find("104: Connection reset by peer"), std::string::npos);
  EXPECT_NE(verdict.args.at("summary").find("OOM-killed"), std::string::npos);
  ASSERT_EQ(verdict.terminating.size(), 2u);
  std::map<uint64_t, std::string> started_by;
  for (const Event &e : t.events)
    for (uint64_t f : e.flows)
      EXPECT_TRUE(started_by.emplace(f, e.name).second) << "flow " << f << " started twice";
  std::set<std::string> causes;
  for (uint64_t f : verdict.terminating) {
    ASSERT_TRUE(started_by.count(f)) << "flow " << f << " never started";
    causes.insert(started_by.at(f));
  }
  EXPECT_EQ(causes, (std::set<std::string>{"oom_kill", "tcp_receive_reset"}));

  // Counters: the upstream listener's accept queue (only changes are written),
  // under its owner; nginx's own listener has none. Failures per second by cause.
  const Track *queue = t.track_named("accept queue 127.0.0.1:8080");
  ASSERT_NE(queue, nullptr);
  EXPECT_TRUE(queue->counter);
  EXPECT_EQ(queue->parent, gunicorn->uuid);
  std::vector<std::pair<uint64_t, std::string>> depths;
  for (const Event *e : t.on(queue->uuid))
    depths.emplace_back(e->ts, e->counter);
  EXPECT_EQ(depths, (std::vector<std::pair<uint64_t, std::string>>{
                        {kT0, "0"}, {kT0 + 100 * kMs, "5"}, {kT0 + 600 * kMs, "0"}}));
  EXPECT_EQ(t.track_named("accept queue 0.0.0.0:80"), nullptr);
  const Track *rate = t.track_named("failures/s upstream_oom_killed");
  ASSERT_NE(rate, nullptr);
  EXPECT_TRUE(rate->counter);
  std::vector<std::pair<uint64_t, std::string>> rates;
  for (const Event *e : t.on(rate->uuid))
    rates.emplace_back(e->ts, e->counter);
  const uint64_t sec = (kT0 + 211 * kMs) / 1'000'000'000 * 1'000'000'000;
  EXPECT_EQ(rates, (std::vector<std::pair<uint64_t, std::string>>{{sec, "1"}, {sec + 1'000'000'000, "0"}}));
}

TEST_F(PerfettoExport, AccessLineOnTheSoleWorkerAndNoLiveUpstreamsLinksEarlierVerdicts) {
  {
    PerfettoExporter x(file().string(), options());
    x.add_nginx_process(1000);
    x.add_nginx_process(1001);
    const KernelEvent fail = kev(kT0 + 5 * kMs, [] {
      ConnFail c = conn_reset();
      c.failure = ConnFailure::RstInSynSent;
      c.last_state = "SYN_SENT";
      c.ts_syn_sent = kT0 + 4 * kMs;
      c.ts_established = 0;
      c.ts_reset = c.ts_close = kT0 + 5 * kMs;
      return c;
    }());
    x.kernel(fail);
    nginx::AccessLogLine line;
    line.status = 502;
    line.request = "GET / HTTP/1.1";
    line.remote_addr = "127.0.0.1";
    x.access_line(line, int64_t(kT0 + 6 * kMs) + kOffset);
    nginx::AccessLogLine ok = line;
    ok.status = 200;
    x.access_line(ok, int64_t(kT0 + 7 * kMs) + kOffset); // not a gateway error: not written

    Verdict first;
    first.id = 7;
    first.wall_ns = int64_t(kT0 + 5 * kMs) + kOffset;
    first.cause = cause::kNoListener;
    first.upstream = "127.0.0.1:8080";
    first.nginx_pid = 1001;
    first.evidence = nlohmann::json::array({evidence(fail)});
    x.verdict(first);
    Verdict down;
    down.id = 8;
    down.wall_ns = int64_t(kT0 + 9 * kMs) + kOffset;
    down.cause = cause::kNoLiveUpstreams;
    down.upstream = "app";
    down.nginx_pid = 1001;
    down.related = {7};
    x.verdict(down);
    x.close();
    EXPECT_EQ(x.stats().flows_resolved, 2u);
    EXPECT_EQ(x.stats().access_lines, 1u);
  }
  DECODE_OR_FAIL(t, file());
  const auto access = t.named("access 502 GET / HTTP/1.1");
  ASSERT_EQ(access.size(), 1u);
  EXPECT_EQ(t.tracks.at(access[0]->track).pid, 1001); // no $pid in the line, but only one worker
  EXPECT_TRUE(t.named("access 200 GET / HTTP/1.1").empty());
  const auto first = t.named("failed attempt no_listener");
  const auto down = t.named("failed attempt no_live_upstreams");
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(down.size(), 1u);
  ASSERT_EQ(down[0]->terminating.size(), 1u);
  const auto &own = first[0]->flows;
  EXPECT_NE(std::find(own.begin(), own.end(), down[0]->terminating[0]), own.end());
  EXPECT_TRUE(t.track_named("upstream 127.0.0.1:8080") != nullptr);
  EXPECT_EQ(t.track_named("upstream app"), nullptr); // an upstream{} name is not an address
}

TEST_F(PerfettoExport, LateVerdictIsWrittenAtTheWindowEdgeAndTimeNeverGoesBack) {
  sinks::PerfettoExportStats st;
  {
    auto o = options();
    o.reorder_window_ns = 2'000 * kMs;
    PerfettoExporter x(file().string(), o);
    x.add_upstream("127.0.0.1:8080");
    for (int i = 0; i < 50; ++i)
      x.sample(sample_at(kT0 + uint64_t(i) * 100 * kMs, uint32_t(i % 3)));
    Verdict old;
    old.id = 1;
    old.wall_ns = int64_t(kT0) + kOffset; // 5 s older than the newest sample: past the 2 s window
    old.cause = cause::kConnectTimeout;
    old.nginx_pid = 1001;
    x.verdict(old);
    x.close();
    st = x.stats();
  }
  DECODE_OR_FAIL(t, file());
  EXPECT_GE(st.clamped, 1u); // the verdict (and its failures/s second, which begins before the edge too)
  EXPECT_EQ(st.flows_unresolved, 1u);
  const auto v = t.named("failed attempt connect_timeout");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0]->args.at("real_boot_ns"), std::to_string(kT0));
  EXPECT_GT(v[0]->ts, kT0);
}

TEST_F(PerfettoExport, MemoryIsBoundedOverALongTrace) {
  auto o = options();
  o.max_flow_sources = 64;
  o.max_tracks = 8;
  o.reorder_window_ns = 100 * kMs;
  o.max_pending = 1024; // > the window's worth: an overflow would write early (counted in stats().late)
  PerfettoExporter x(file().string(), o);
  KernelEvent first;
  for (uint32_t i = 0; i < 2000; ++i) {
    ConnFail c = conn_reset();
    c.pid = 3000 + i % 40; // more workers than tracks kept
    c.remote.port = uint16_t(9000 + i % 50);
    c.ts_syn_sent = kT0 + i * kMs;
    c.ts_established = 0;
    c.ts_reset = c.ts_close = kT0 + i * kMs + 500'000;
    KernelEvent ev = kev(c.ts_close, c);
    if (i == 0)
      first = ev;
    x.kernel(ev);
  }
  // The first event's flow pool was forgotten long ago: no arrow, counted.
  Verdict v;
  v.id = 1;
  v.wall_ns = first.wall_ns;
  v.cause = cause::kNoListener;
  v.nginx_pid = 3000;
  v.evidence = nlohmann::json::array({evidence(first)});
  x.verdict(v);
  x.close();
  EXPECT_EQ(x.stats().flows_unresolved, 1u);
  EXPECT_EQ(x.stats().connection_slices, 2000u);
  DECODE_OR_FAIL(t, file());
  EXPECT_EQ(t.named("tcp_receive_reset").size(), 2000u);
}

TEST_F(PerfettoExport, MaxSizeCapsTheFile) {
  auto o = options();
  o.max_size_bytes = 4096;
  PerfettoExporter x(file().string(), o);
  x.add_upstream("127.0.0.1:8080");
  for (uint32_t i = 0; i < 500; ++i)
    x.sample(sample_at(kT0 + i * 10 * kMs, i % 7));
  oom_story(x);
  x.close();
  EXPECT_TRUE(x.full());
  EXPECT_GT(x.stats().writer.packets_dropped, 0u);
  EXPECT_LE(fs::file_size(file()), 4096u);
  const Trace t = decode(file());
  ASSERT_TRUE(t.ok) << t.error; // what was written is whole packets
}

TEST_F(PerfettoExport, UnwritablePathIsOneClearError) {
  try {
    PerfettoExporter x((dir_ / "no" / "such" / "dir" / "t.pftrace").string(), options());
    FAIL() << "expected an error";
  } catch (const why502::perfetto::Error &e) {
    EXPECT_NE(std::string(e.what()).find("t.pftrace"), std::string::npos) << e.what();
  }
}

} // namespace
