// TraceWriter tests: traces are written to temp files, decoded with
// `protoc --decode=perfetto.protos.Trace` against proto/perfetto_trace.proto
// (upstream field numbers), and checked for the structure trace_processor and
// the UI rely on.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <csignal>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "why502/perfetto.h"

#include "perfetto_decode.h"

namespace {

namespace fs = std::filesystem;
using namespace why502::perfetto;

// ---- protoc text format -> tree -----------------------------------------------

// protoc's text format as a tree: tests/common/perfetto_decode.h (shared by every tier).
using why502::pftrace::Node;
using why502::pftrace::parse_text_format;

std::string find_protoc() {
  if (const char *env = std::getenv("WHY502_PROTOC"); env && *env)
    return env;
  std::stringstream path(std::getenv("PATH") ? std::getenv("PATH") : "");
  std::string dir;
  while (std::getline(path, dir, ':')) {
    auto p = fs::path(dir) / "protoc";
    if (::access(p.c_str(), X_OK) == 0)
      return p.string();
  }
  return {};
}

using why502::pftrace::proto_dir;

struct Decoded {
  bool ok = false;
  std::string error; // why decoding failed
  std::string text;  // protoc's output
  Node root;
  std::vector<const Node *> packets() const { return root.all("packet"); }
};

Decoded decode(const fs::path &trace) {
  Decoded d;
  const std::string protoc = find_protoc();
  if (protoc.empty()) {
    d.error = "protoc not found in PATH: install protobuf-compiler or set WHY502_PROTOC";
    return d;
  }
  const std::string cmd = "'" + protoc + "' --decode=perfetto.protos.Trace -I '" + proto_dir().string() + "' '" +
                          (proto_dir() / "perfetto_trace.proto").string() + "' < '" + trace.string() + "' 2>&1";
  FILE *p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    d.error = "cannot run " + cmd;
    return d;
  }
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    d.text.append(buf, n);
  const int status = ::pclose(p);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    d.error = "protoc failed: " + d.text;
    return d;
  }
  d.root = parse_text_format(d.text);
  d.ok = true;
  return d;
}

// ---- structural checks ----------------------------------------------------------

// Everything trace_processor needs to import the trace as we intend. Returns a
// list of problems (empty = valid).
struct Report {
  std::vector<std::string> problems;
  std::map<uint64_t, const Node *> tracks; // uuid -> track_descriptor
  std::vector<std::string> event_names;    // resolved, in order
  std::map<uint64_t, std::string> flow_start_event, flow_end_event;
  size_t clears = 0;
};

void check_unknown_fields(const Node &n, Report &r) {
  for (const Node &k : n.kids) {
    if (!k.key.empty() && std::isdigit(static_cast<unsigned char>(k.key[0])))
      r.problems.push_back("field unknown to perfetto_trace.proto: " + k.key);
    check_unknown_fields(k, r);
  }
}

Report validate(const Decoded &d, uint32_t seq_id = 1) {
  Report r;
  check_unknown_fields(d.root, r);
  const auto packets = d.packets();
  if (packets.empty()) {
    r.problems.push_back("no packets");
    return r;
  }
  const Node &first = *packets[0];
  if (!first.has("clock_snapshot"))
    r.problems.push_back("first packet is not a clock snapshot");
  if (first.u("previous_packet_dropped") == 0)
    r.problems.push_back("first packet: previous_packet_dropped unset");
  if (first.s("first_packet_on_sequence") != "true")
    r.problems.push_back("first packet: first_packet_on_sequence unset");

  std::map<std::string, std::map<uint64_t, std::string>> interned; // table -> iid -> name
  std::map<std::string, std::map<uint64_t, std::string>> ever;     // iids never reused
  std::map<uint64_t, int> depth;
  uint64_t last_ts = 0;
  for (size_t i = 0; i < packets.size(); ++i) {
    const Node &p = *packets[i];
    const std::string at = "packet " + std::to_string(i) + ": ";
    if (p.u("trusted_packet_sequence_id") != seq_id)
      r.problems.push_back(at + "wrong sequence id");
    const uint64_t flags = p.u("sequence_flags");
    if (i == 0 && flags != 1)
      r.problems.push_back(at + "first packet must clear incremental state");
    if (flags == 1) {
      ++r.clears;
      interned.clear();
      const Node *defaults = p.child("trace_packet_defaults");
      if (!defaults || defaults->u("timestamp_clock_id") != kClockBoottime)
        r.problems.push_back(at + "state cleared without BOOTTIME packet defaults");
    } else if (flags != 2) {
      r.problems.push_back(at + "sequence_flags neither CLEARED nor NEEDS_INCREMENTAL_STATE");
    }
    if (const Node *id = p.child("interned_data")) {
      for (const Node &entry : id->kids) {
        const uint64_t iid = entry.u("iid");
        const std::string name = entry.s("name");
        if (iid == 0)
          r.problems.push_back(at + "interned iid 0");
        auto [it, fresh] = ever[entry.key].emplace(iid, name);
        if (!fresh && it->second != name)
          r.problems.push_back(at + "iid reused for another string");
        interned[entry.key][iid] = name;
      }
    }
    auto resolve = [&](const std::string &table, uint64_t iid) -> std::string {
      auto t = interned[table].find(iid);
      if (t == interned[table].end()) {
        r.problems.push_back(at + "unresolved " + table + " iid " + std::to_string(iid));
        return {};
      }
      return t->second;
    };
    if (const Node *td = p.child("track_descriptor")) {
      const uint64_t uuid = td->u("uuid");
      if (uuid == 0)
        r.problems.push_back(at + "track uuid 0");
      if (!r.tracks.emplace(uuid, td).second)
        r.problems.push_back(at + "duplicate track uuid");
      if (td->has("parent_uuid") && !r.tracks.count(td->u("parent_uuid")))
        r.problems.push_back(at + "parent_uuid not declared before");
    }
    if (const Node *te = p.child("track_event")) {
      if (!p.has("timestamp"))
        r.problems.push_back(at + "event without timestamp");
      const uint64_t ts = p.u("timestamp");
      if (ts < last_ts)
        r.problems.push_back(at + "timestamp goes backwards");
      last_ts = ts;
      const uint64_t track = te->u("track_uuid");
      auto t = r.tracks.find(track);
      if (t == r.tracks.end()) {
        r.problems.push_back(at + "event on undeclared track " + std::to_string(track));
        continue;
      }
      const bool counter_track = t->second->has("counter");
      const std::string type = te->s("type");
      if ((type == "TYPE_COUNTER") != counter_track)
        r.problems.push_back(at + type + " on a " + (counter_track ? "counter" : "slice") + " track");
      if (type == "TYPE_SLICE_BEGIN")
        ++depth[track];
      if (type == "TYPE_SLICE_END" && --depth[track] < 0)
        r.problems.push_back(at + "slice end without begin");
      std::string name;
      if (te->has("name_iid"))
        name = resolve("event_names", te->u("name_iid"));
      for (const Node *c : te->all("category_iids"))
        resolve("event_categories", std::stoull(c->value));
      for (const Node *a : te->all("debug_annotations"))
        resolve("debug_annotation_names", a->u("name_iid"));
      if (!name.empty())
        r.event_names.push_back(name);
      for (const Node *fl : te->all("flow_ids")) {
        const uint64_t id = std::stoull(fl->value);
        if (!r.flow_start_event.emplace(id, name).second)
          r.problems.push_back(at + "flow started twice");
      }
      for (const Node *fl : te->all("terminating_flow_ids")) {
        const uint64_t id = std::stoull(fl->value);
        if (!r.flow_start_event.count(id))
          r.problems.push_back(at + "terminating flow never started");
        r.flow_end_event[id] = name;
      }
    }
  }
  for (auto [track, dep] : depth)
    if (dep != 0)
      r.problems.push_back("unbalanced slices on track " + std::to_string(track));
  return r;
}

std::string join(const std::vector<std::string> &v) {
  std::string out;
  for (const auto &s : v)
    out += s + "\n";
  return out;
}

// ---- fixture ------------------------------------------------------------------

class PerfettoWriter : public ::testing::Test {
protected:
  void SetUp() override {
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ =
        fs::temp_directory_path() / ("why502_perfetto_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path file(const std::string &name = "trace.pftrace") const { return dir_ / name; }

  static WriterOptions fixed_clocks(WriterOptions o = {}) {
    o.clocks = ClockReadings{5'000'000'000, 1'800'000'000'000'000'000};
    return o;
  }

  fs::path dir_;
};

// This file's traces are raw packet trees, not the shared decoder's tracks/events.
#undef DECODE_OR_FAIL
#define DECODE_OR_FAIL(var, path)                                                                                      \
  const Decoded var = decode(path);                                                                                    \
  ASSERT_TRUE(var.ok) << var.error

TEST_F(PerfettoWriter, SampleTraceIsValid) {
  const WriterStats st = write_sample_trace(file());
  DECODE_OR_FAIL(d, file());
  const Report r = validate(d);
  EXPECT_TRUE(r.problems.empty()) << join(r.problems) << d.text;
  EXPECT_EQ(st.packets_written, d.packets().size());
  EXPECT_EQ(st.bytes_written, fs::file_size(file()));
  EXPECT_EQ(st.packets_dropped, 0u);
  EXPECT_EQ(r.clears, 1u);

  // The 502 verdict's flow arrow resolves back to its kernel cause.
  ASSERT_EQ(r.flow_end_event.size(), 1u);
  const uint64_t flow = r.flow_end_event.begin()->first;
  EXPECT_EQ(r.flow_end_event.at(flow), "502 upstream_oom_killed");
  EXPECT_EQ(r.flow_start_event.at(flow), "oom:mark_victim");
}

TEST_F(PerfettoWriter, ClockSnapshotMapsBoottimeToRealtime) {
  {
    TraceWriter w(file().string(), fixed_clocks());
    w.close();
  }
  DECODE_OR_FAIL(d, file());
  ASSERT_EQ(d.packets().size(), 1u);
  const Node &p = *d.packets()[0];
  EXPECT_EQ(p.u("timestamp"), 5'000'000'000u);
  EXPECT_EQ(p.u("timestamp_clock_id"), kClockBoottime);
  const Node *cs = p.child("clock_snapshot");
  ASSERT_NE(cs, nullptr);
  EXPECT_EQ(cs->s("primary_trace_clock"), "BUILTIN_CLOCK_BOOTTIME");
  std::map<uint64_t, uint64_t> clocks;
  for (const Node *c : cs->all("clocks"))
    clocks[c->u("clock_id")] = c->u("timestamp");
  EXPECT_EQ(clocks, (std::map<uint64_t, uint64_t>{{kClockRealtime, 1'800'000'000'000'000'000u},
                                                  {kClockBoottime, 5'000'000'000u}}));
  EXPECT_EQ(p.u("sequence_flags"), 1u);
  EXPECT_TRUE(validate(d).problems.empty());
}

TEST_F(PerfettoWriter, RealClocksAreRead) {
  TraceWriter w(file().string());
  EXPECT_GT(w.clocks().boottime_ns, 0u);
  EXPECT_GT(w.clocks().realtime_ns, 1'600'000'000'000'000'000u); // after 2020
  w.close();
}

TEST_F(PerfettoWriter, TrackDescriptors) {
  TraceWriter w(file().string(), fixed_clocks());
  const uint64_t proc = w.process_track(4321, "gunicorn", {"gunicorn", "-b", "127.0.0.1:8080"});
  const uint64_t thr = w.thread_track(1234, 1235, "nginx: worker");
  const uint64_t up = w.named_track("unix:/run/php.sock", proc);
  const uint64_t c1 = w.counter_track("accept queue", "count", proc);
  const uint64_t c2 = w.counter_track("rtt", "ns");
  const uint64_t c3 = w.counter_track("rx", "bytes");
  const uint64_t c4 = w.counter_track("rate", "req/s");
  const uint64_t c5 = w.counter_track("plain");
  w.close();
  EXPECT_EQ((std::set<uint64_t>{proc, thr, up, c1, c2, c3, c4, c5}).size(), 8u);

  DECODE_OR_FAIL(d, file());
  const Report r = validate(d);
  ASSERT_TRUE(r.problems.empty()) << join(r.problems);
  ASSERT_EQ(r.tracks.size(), 8u);
  const Node &p = *r.tracks.at(proc)->child("process");
  EXPECT_EQ(p.u("pid"), 4321u);
  EXPECT_EQ(p.s("process_name"), "gunicorn");
  ASSERT_EQ(p.all("cmdline").size(), 3u);
  EXPECT_EQ(p.all("cmdline")[2]->value, "127.0.0.1:8080");
  const Node &t = *r.tracks.at(thr)->child("thread");
  EXPECT_EQ(t.u("pid"), 1234u);
  EXPECT_EQ(t.u("tid"), 1235u);
  EXPECT_EQ(t.s("thread_name"), "nginx: worker");
  EXPECT_EQ(r.tracks.at(up)->s("name"), "unix:/run/php.sock");
  EXPECT_EQ(r.tracks.at(up)->u("parent_uuid"), proc);
  EXPECT_FALSE(r.tracks.at(up)->has("counter"));
  EXPECT_EQ(r.tracks.at(c1)->u("parent_uuid"), proc);
  EXPECT_EQ(r.tracks.at(c1)->child("counter")->s("unit"), "UNIT_COUNT");
  EXPECT_EQ(r.tracks.at(c2)->child("counter")->s("unit"), "UNIT_TIME_NS");
  EXPECT_EQ(r.tracks.at(c3)->child("counter")->s("unit"), "UNIT_SIZE_BYTES");
  EXPECT_EQ(r.tracks.at(c4)->child("counter")->s("unit_name"), "req/s");
  EXPECT_TRUE(r.tracks.at(c5)->has("counter"));
  EXPECT_FALSE(r.tracks.at(c5)->has("parent_uuid"));
}

TEST_F(PerfettoWriter, EventsAnnotationsAndCounters) {
  TraceWriter w(file().string(), fixed_clocks());
  const uint64_t tr = w.named_track("127.0.0.1:8080");
  const uint64_t ctr = w.counter_track("queue", "count");
  const uint64_t t = 6'000'000'000;
  w.slice_begin(tr, t, "connect",
                {{"errno", int64_t{-111}},
                 {"sock", uint64_t{UINT64_MAX}},
                 {"ok", false},
                 {"ratio", 0.25},
                 {"peer", std::string("a\"b\n")}},
                {}, "kernel");
  w.counter(ctr, t + 1, int64_t{-3});
  w.counter(ctr, t + 2, 2.5);
  w.counter(ctr, t + 3, 7);        // int overload
  w.instant(tr, t + 4, "connect"); // same name: interned once
  w.slice_end(tr, t + 5);
  w.close();

  DECODE_OR_FAIL(d, file());
  const Report r = validate(d);
  ASSERT_TRUE(r.problems.empty()) << join(r.problems) << d.text;
  const auto packets = d.packets();
  ASSERT_EQ(packets.size(), 9u); // clock + 2 tracks + 6 events
  const Node &begin = *packets[3];
  EXPECT_EQ(begin.u("timestamp"), t);
  const Node &te = *begin.child("track_event");
  EXPECT_EQ(te.s("type"), "TYPE_SLICE_BEGIN");
  EXPECT_EQ(te.u("track_uuid"), tr);
  const auto ann = te.all("debug_annotations");
  ASSERT_EQ(ann.size(), 5u);
  EXPECT_EQ(ann[0]->s("int_value"), "-111");
  EXPECT_EQ(ann[1]->s("uint_value"), "18446744073709551615");
  EXPECT_EQ(ann[2]->s("bool_value"), "false");
  EXPECT_EQ(ann[3]->s("double_value"), "0.25");
  EXPECT_EQ(ann[4]->s("string_value"), "a\"b\n");
  const Node &interned = *begin.child("interned_data");
  EXPECT_EQ(interned.all("debug_annotation_names").size(), 5u);
  EXPECT_EQ(interned.child("event_categories")->s("name"), "kernel");
  EXPECT_EQ(packets[4]->child("track_event")->s("counter_value"), "-3");
  EXPECT_EQ(packets[5]->child("track_event")->s("double_counter_value"), "2.5");
  EXPECT_EQ(packets[6]->child("track_event")->s("counter_value"), "7");
  EXPECT_EQ(packets[7]->child("track_event")->u("name_iid"), te.u("name_iid"));
  EXPECT_FALSE(packets[7]->has("interned_data"));
  EXPECT_FALSE(packets[8]->child("track_event")->has("name_iid")); // slice end: no name
  EXPECT_EQ(r.event_names, (std::vector<std::string>{"connect", "connect"}));
}

TEST_F(PerfettoWriter, FlowsFromCauseToVerdict) {
  TraceWriter w(file().string(), fixed_clocks());
  const uint64_t kernel = w.named_track("kernel");
  const uint64_t worker = w.thread_track(10, 10, "worker");
  const uint64_t f1 = w.new_flow_id();
  const uint64_t f2 = w.new_flow_id();
  EXPECT_NE(f1, f2);
  EXPECT_NE(f1, 0u);
  w.instant(kernel, 6'000'000'000, "tcp_receive_reset", {}, {f1});
  w.instant(kernel, 6'000'000'100, "sched_process_exit", {}, {f2});
  w.instant(worker, 6'500'000'000, "502 no_listener", {}, {}, {f1, f2});
  w.close();

  DECODE_OR_FAIL(d, file());
  const Report r = validate(d);
  ASSERT_TRUE(r.problems.empty()) << join(r.problems);
  EXPECT_EQ(r.flow_start_event.at(f1), "tcp_receive_reset");
  EXPECT_EQ(r.flow_start_event.at(f2), "sched_process_exit");
  EXPECT_EQ(r.flow_end_event.at(f1), "502 no_listener");
  EXPECT_EQ(r.flow_end_event.at(f2), "502 no_listener");
}

TEST_F(PerfettoWriter, ValidatorCatchesBrokenTraces) {
  // The checks above are only worth something if they can fail.
  TraceWriter w(file().string(), fixed_clocks());
  const uint64_t tr = w.named_track("t");
  w.slice_end(tr, 6'000'000'000);                  // end without begin
  w.instant(tr, 5'900'000'000, "late");            // backwards
  w.instant(999, 6'100'000'000, "nowhere");        // undeclared track
  w.instant(tr, 6'200'000'000, "x", {}, {}, {77}); // flow never started
  w.close();
  EXPECT_EQ(w.stats().out_of_order_events, 1u);
  DECODE_OR_FAIL(d, file());
  const std::string problems = join(validate(d).problems);
  EXPECT_NE(problems.find("slice end without begin"), std::string::npos) << problems;
  EXPECT_NE(problems.find("timestamp goes backwards"), std::string::npos) << problems;
  EXPECT_NE(problems.find("undeclared track"), std::string::npos) << problems;
  EXPECT_NE(problems.find("terminating flow never started"), std::string::npos) << problems;
}

TEST_F(PerfettoWriter, MonotonicInputGivesMonotonicOutput) {
  TraceWriter w(file().string(), fixed_clocks());
  const uint64_t a = w.named_track("a");
  const uint64_t b = w.named_track("b");
  const uint64_t c = w.counter_track("c");
  uint64_t t = 6'000'000'000;
  for (int i = 0; i < 500; ++i) {
    w.slice_begin(i % 2 ? a : b, t += 10, "s" + std::to_string(i % 7));
    w.counter(c, t, int64_t{i});
    w.instant(i % 2 ? a : b, t += 3, "i");
    w.slice_end(i % 2 ? a : b, t += 1);
  }
  w.close();
  EXPECT_EQ(w.stats().out_of_order_events, 0u);
  DECODE_OR_FAIL(d, file());
  const Report r = validate(d);
  EXPECT_TRUE(r.problems.empty()) << join(r.problems);
  EXPECT_EQ(d.packets().size(), 4u + 2000u);
}

TEST_F(PerfettoWriter, StreamsToDiskWhileRecording) {
  // Memory must not grow with trace length: bytes reach the file before close,
  // and what is still buffered stays under the 64 KiB flush threshold.
  TraceWriter w(file().string(), fixed_clocks());
  const uint64_t tr = w.named_track("t");
  uint64_t t = 6'000'000'000;
  for (int i = 0; i < 20000; ++i)
    w.instant(tr, t += 1000, "e", {{"i", int64_t{i}}});
  const uint64_t on_disk = fs::file_size(file());
  EXPECT_GT(w.stats().bytes_written, 200'000u);
  EXPECT_GT(on_disk, 0u);
  EXPECT_LT(w.stats().bytes_written - on_disk, 64u * 1024u + 4096u);
  w.flush();
  EXPECT_EQ(fs::file_size(file()), w.stats().bytes_written);
  w.close();
}

TEST_F(PerfettoWriter, InterningIsBoundedAndResetsIncrementalState) {
  WriterOptions o = fixed_clocks();
  o.max_interned_entries = 8;
  TraceWriter w(file().string(), o);
  const uint64_t tr = w.named_track("t");
  uint64_t t = 6'000'000'000;
  for (int i = 0; i < 40; ++i)
    w.instant(tr, t += 1000, "event " + std::to_string(i % 20), {{"k" + std::to_string(i % 3), int64_t{i}}}, {}, {},
              "cat");
  w.close();
  EXPECT_GT(w.stats().interning_resets, 3u);

  DECODE_OR_FAIL(d, file());
  const Report r = validate(d); // names resolve after every reset; no iid reused
  ASSERT_TRUE(r.problems.empty()) << join(r.problems) << d.text;
  EXPECT_EQ(r.clears, 1 + w.stats().interning_resets);
  ASSERT_EQ(r.event_names.size(), 40u);
  for (int i = 0; i < 40; ++i)
    EXPECT_EQ(r.event_names[i], "event " + std::to_string(i % 20));
}

TEST_F(PerfettoWriter, MaxSizeCapStopsWritingAndCountsDrops) {
  WriterOptions o = fixed_clocks();
  o.max_size_bytes = 2000;
  TraceWriter w(file().string(), o);
  const uint64_t tr = w.named_track("t");
  uint64_t t = 6'000'000'000;
  for (int i = 0; i < 300; ++i)
    w.instant(tr, t += 1000, "e", {{"i", int64_t{i}}});
  w.close();
  const WriterStats st = w.stats();
  EXPECT_LE(fs::file_size(file()), 2000u);
  EXPECT_GT(fs::file_size(file()), 1900u); // filled up to the cap, not far below
  EXPECT_EQ(st.bytes_written, fs::file_size(file()));
  EXPECT_GT(st.packets_dropped, 0u);
  EXPECT_EQ(st.packets_written + st.packets_dropped, 2u + 300u);

  DECODE_OR_FAIL(d, file()); // only whole packets were written
  EXPECT_EQ(d.packets().size(), st.packets_written);
  EXPECT_TRUE(validate(d).problems.empty());
}

TEST_F(PerfettoWriter, OpenFailureIsOneClearLine) {
  const std::string path = (dir_ / "no-such-dir" / "t.pftrace").string();
  try {
    TraceWriter w(path);
    FAIL() << "no exception";
  } catch (const Error &e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// A full disk, without root: the file size limit (RLIMIT_FSIZE) makes write() fail with EFBIG
// past `bytes`, as ENOSPC would (/dev/full no longer serves: the writer refuses a device).
class FileSizeLimit {
public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &old_);
    old_sig_ = signal(SIGXFSZ, SIG_IGN); // else the kernel kills us instead of failing the write
    rlimit l = old_;
    l.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &l);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &old_);
    signal(SIGXFSZ, old_sig_);
  }

private:
  rlimit old_{};
  sighandler_t old_sig_;
};

TEST_F(PerfettoWriter, FullDiskIsReportedOnClose) {
  const std::string path = file().string();
  FileSizeLimit full(64);
  TraceWriter w(path, fixed_clocks());
  w.instant(w.named_track("t"), 6'000'000'000, "e");
  EXPECT_FALSE(w.failed()); // still buffered
  try {
    w.close();
    FAIL() << "no exception";
  } catch (const Error &e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("File too large"), std::string::npos) << msg;
  }
}

TEST_F(PerfettoWriter, FullDiskIsReportedWhileStreaming) {
  FileSizeLimit full(64);
  TraceWriter w(file().string(), fixed_clocks());
  const uint64_t tr = w.named_track("t");
  uint64_t t = 6'000'000'000;
  // Enough to pass the write buffer: the error surfaces from an event call,
  // and again from every later call (never silently swallowed).
  EXPECT_THROW(for (int i = 0; i < 100000; ++i) w.instant(tr, t += 1, "e", {{"i", int64_t{i}}}), Error);
  EXPECT_TRUE(w.failed());
  EXPECT_THROW(w.instant(tr, t + 1, "e"), Error);
  EXPECT_THROW(w.close(), Error);
}

TEST_F(PerfettoWriter, EventsAfterCloseAreDropped) {
  TraceWriter w(file().string(), fixed_clocks());
  const uint64_t tr = w.named_track("t");
  w.close();
  w.close(); // idempotent
  w.instant(tr, 6'000'000'000, "late");
  EXPECT_EQ(w.stats().packets_dropped, 1u);
  DECODE_OR_FAIL(d, file());
  EXPECT_EQ(d.packets().size(), 2u);
}

TEST_F(PerfettoWriter, ReorderBufferSortsWithinWindow) {
  TraceWriter w(file().string(), fixed_clocks());
  const uint64_t kernel = w.named_track("kernel");
  const uint64_t worker = w.thread_track(1, 1, "w");
  const uint64_t base = 6'000'000'000;
  constexpr uint64_t kSec = 1'000'000'000;
  {
    ReorderBuffer rb(w, 2 * kSec);
    // Kernel events in real time; the log line for each arrives ~1 s later.
    for (uint64_t i = 0; i < 20; ++i) {
      const uint64_t f = w.new_flow_id();
      rb.instant(kernel, base + i * kSec / 2, "rst", {}, {f});
      if (i >= 2)
        rb.instant(worker, base + (i - 2) * kSec / 2 + 1000, "502", {}, {}, {f - 2});
    }
    rb.slice_begin(worker, base + 10 * kSec, "req");
    rb.slice_end(worker, base + 10 * kSec); // same ts: stays after its begin
    rb.counter(w.counter_track("q"), base + 10 * kSec + 1, int64_t{3});
    EXPECT_GT(rb.pending(), 0u);
    rb.flush_all();
    EXPECT_EQ(rb.pending(), 0u);
    EXPECT_EQ(rb.late_events(), 0u);
  }
  w.close();
  EXPECT_EQ(w.stats().out_of_order_events, 0u);
  DECODE_OR_FAIL(d, file());
  const Report r = validate(d);
  EXPECT_TRUE(r.problems.empty()) << join(r.problems);
  EXPECT_EQ(r.flow_end_event.size(), 18u);
}

TEST_F(PerfettoWriter, ReorderBufferIsBounded) {
  TraceWriter w(file().string(), fixed_clocks());
  const uint64_t tr = w.named_track("t");
  ReorderBuffer rb(w, UINT64_MAX / 2, /*max_pending=*/16);
  for (uint64_t i = 0; i < 100; ++i) {
    rb.instant(tr, 6'000'000'000 + i, "e");
    EXPECT_LE(rb.pending(), 16u);
  }
  rb.instant(tr, 5'000'000'000, "too late"); // older than what is already written
  EXPECT_EQ(rb.late_events(), 1u);
  rb.flush_all();
  w.close();
  EXPECT_EQ(w.stats().out_of_order_events, 1u);
}

// A fixed-clock sample is byte-for-byte stable: a change in encoding shows up
// here first. tests/fixtures/perfetto/sample.txt is its protoc decoding.
TEST_F(PerfettoWriter, SampleMatchesGoldenFixture) {
  write_sample_trace(file(), fixed_clocks());
  const fs::path golden = fs::path(WHY502_FIXTURES) / "perfetto" / "sample.pftrace";
  auto slurp = [](const fs::path &p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  ASSERT_TRUE(fs::exists(golden)) << golden;
  EXPECT_TRUE(slurp(file()) == slurp(golden))
      << "encoding changed; if intended, regenerate " << golden << " and sample.txt";
  DECODE_OR_FAIL(d, golden);
  EXPECT_EQ(d.text, slurp(golden.parent_path() / "sample.txt"));
}

} // namespace
