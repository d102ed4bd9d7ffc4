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

#include "base/proc.h"
#include "sinks/perfetto_export.h"

#include "perfetto_decode.h"

namespace {

namespace fs = std::filesystem;
using namespace why502::pftrace;
using namespace why502;
using why502::sinks::PerfettoExporter;
using why502::sinks::PerfettoExportOptions;

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

Evidence evidence(const KernelEvent &ev) { return ev; }

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
    const std::string proc = (dir_ / "proc").string();
    o.process_names = {[proc](uint32_t pid) { return why502::base::read_proc_cmdline(pid_t(pid), proc); },
                       [proc](uint32_t pid) { return why502::base::read_proc_comm(pid_t(pid), proc); }};
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
    v.evidence = {evidence(fail_ev), evidence(oom_ev)};
    x.verdict(v);
    return v;
  }

  fs::path dir_;
};


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
    first.evidence = {evidence(fail)};
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
  v.evidence = {evidence(first)};
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
