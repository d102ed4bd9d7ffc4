// Decodes a Perfetto trace with protoc (text format) into tracks and events, and checks
// the structure (declared tracks, monotonic time, balanced slices). Shared by the unit,
// integration and scenario tiers.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <vector>

namespace why502::pftrace {

namespace fs = std::filesystem;

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

inline std::string unquote(const std::string &v) {
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
    } else if (c == 't') {
      out += '\t';
    } else if (c == 'r') {
      out += '\r';
    } else {
      out += c;
    }
  }
  return out;
}

inline Node parse_text_format(const std::string &text) {
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

inline fs::path proto_dir() { return fs::path(WHY502_SOURCE_DIR) / "proto"; }

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

inline Trace decode(const fs::path &file) {
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

inline std::string join(const std::vector<std::string> &v) {
  std::string out;
  for (const auto &s : v)
    out += s + "\n";
  return out;
}

} // namespace why502::pftrace

#define DECODE_OR_FAIL(var, path)                                                                                      \
  const ::why502::pftrace::Trace var = ::why502::pftrace::decode(path);                                                \
  ASSERT_TRUE(var.ok) << var.error;                                                                                    \
  EXPECT_TRUE(var.problems.empty()) << ::why502::pftrace::join(var.problems)
