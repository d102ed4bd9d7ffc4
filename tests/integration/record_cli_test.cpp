// `why502 record` end to end (root): a real nginx in a temp dir proxies to a
// 127.0.0.1 port nothing listens on, `why502 record -o X.pftrace --nginx-pid
// MASTER --duration 6` runs while a few requests get 502s, and the decoded
// trace must hold the worker's failed-connection slice and a "502 no_listener"
// verdict instant whose flow arrow starts at a kernel instant.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <netinet/in.h>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

namespace fs = std::filesystem;

// ---- protoc text format -> tracks and events (as in tests/unit/perfetto_export_test.cpp) ----

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
    if (v[i] == '\\' && i + 2 < v.size())
      ++i;
    out += v[i];
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

struct Track {
  uint64_t parent = 0;
  std::string name, process_name;
  int pid = 0;
  bool is_process = false;
};

struct Event {
  uint64_t ts = 0, track = 0;
  std::string type, name;
  std::map<std::string, std::string> args;
  std::vector<uint64_t> flows, terminating;
};

struct Trace {
  std::string error, text;
  std::map<uint64_t, Track> tracks;
  std::vector<Event> events;
  bool monotonic = true;
};

Trace decode(const fs::path &file) {
  Trace t;
  const fs::path proto = fs::path(__FILE__).parent_path().parent_path().parent_path() / "proto";
  const std::string cmd = "protoc --decode=perfetto.protos.Trace -I '" + proto.string() + "' '" +
                          (proto / "perfetto_trace.proto").string() + "' < '" + file.string() + "' 2>&1";
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
    t.error = "protoc failed: " + t.text;
    return t;
  }
  const Node root = parse_text_format(t.text);
  std::map<std::string, std::map<uint64_t, std::string>> interned;
  uint64_t last_ts = 0;
  for (const Node *pk : root.all("packet")) {
    if (pk->u("sequence_flags") == 1)
      interned.clear();
    if (const Node *id = pk->child("interned_data"))
      for (const Node &e : id->kids)
        interned[e.key][e.u("iid")] = e.s("name");
    if (const Node *td = pk->child("track_descriptor")) {
      Track tr;
      tr.parent = td->u("parent_uuid");
      tr.name = td->s("name");
      if (const Node *pr = td->child("process")) {
        tr.is_process = true;
        tr.pid = int(pr->u("pid"));
        tr.process_name = pr->s("process_name");
      }
      t.tracks[td->u("uuid")] = tr;
    }
    if (const Node *te = pk->child("track_event")) {
      Event e;
      e.ts = pk->u("timestamp");
      t.monotonic = t.monotonic && e.ts >= last_ts;
      last_ts = e.ts;
      e.track = te->u("track_uuid");
      e.type = te->s("type");
      if (te->has("name_iid"))
        e.name = interned["event_names"][te->u("name_iid")];
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
      t.events.push_back(std::move(e));
    }
  }
  return t;
}

// ---- a private nginx --------------------------------------------------------------------

uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

std::string slurp(const fs::path &p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

// nginx proxying 127.0.0.1:listen_port to 127.0.0.1:upstream_port; stopped (and
// killed if need be) on destruction, whatever the test did.
struct PrivateNginx {
  fs::path dir;
  uint16_t listen_port = 0, upstream_port = 0;
  pid_t master = 0;
  std::string error;

  PrivateNginx() {
    dir = fs::temp_directory_path() / ("why502_record_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "logs");
    listen_port = free_port();
    upstream_port = free_port(); // bound and closed: nothing listens there
    const std::string d = dir.string();
    std::ofstream(dir / "nginx.conf") << "worker_processes 1;\n"
                                      << "pid " << d << "/nginx.pid;\n"
                                      << "error_log " << d << "/logs/error.log info;\n"
                                      << "events { worker_connections 64; }\n"
                                      << "http {\n"
                                      << "  access_log " << d << "/logs/access.log;\n"
                                      << "  client_body_temp_path " << d << "/tmp_body;\n"
                                      << "  proxy_temp_path " << d << "/tmp_proxy;\n"
                                      << "  fastcgi_temp_path " << d << "/tmp_fastcgi;\n"
                                      << "  uwsgi_temp_path " << d << "/tmp_uwsgi;\n"
                                      << "  scgi_temp_path " << d << "/tmp_scgi;\n"
                                      << "  upstream app { server 127.0.0.1:" << upstream_port << "; }\n"
                                      << "  server { listen 127.0.0.1:" << listen_port
                                      << "; location / { proxy_pass http://app; } }\n"
                                      << "}\n";
    const std::string cmd = "/usr/sbin/nginx -p " + d + " -c " + d + "/nginx.conf 2>" + d + "/start.err";
    if (system(cmd.c_str()) != 0) {
      error = "nginx did not start: " + slurp(dir / "start.err");
      return;
    }
    for (int i = 0; i < 50 && master == 0; ++i) {
      std::string pid = slurp(dir / "nginx.pid");
      if (!pid.empty())
        master = std::stoi(pid);
      else
        sleep_s(0.05);
    }
    if (master == 0)
      error = "nginx wrote no pid file";
  }

  ~PrivateNginx() {
    if (master > 0) {
      const std::vector<int> children = workers();
      kill(master, SIGTERM);
      for (int i = 0; i < 40 && kill(master, 0) == 0; ++i)
        sleep_s(0.05);
      if (kill(master, 0) == 0)
        kill(master, SIGKILL);
      // Workers a killed master left behind, by pid, if they are still ours.
      for (int pid : children)
        if (slurp("/proc/" + std::to_string(pid) + "/cmdline").find("nginx") != std::string::npos)
          kill(pid, SIGKILL);
    }
    fs::remove_all(dir);
  }

  std::vector<int> workers() const {
    std::vector<int> out;
    std::istringstream in(slurp("/proc/" + std::to_string(master) + "/task/" + std::to_string(master) + "/children"));
    int pid;
    while (in >> pid)
      out.push_back(pid);
    return out;
  }

  // GET / through nginx; returns the HTTP status (0 on failure).
  int get() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(listen_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
      close(fd);
      return 0;
    }
    const std::string req = "GET / HTTP/1.0\r\nHost: test\r\n\r\n";
    if (write(fd, req.data(), req.size()) != ssize_t(req.size())) {
      close(fd);
      return 0;
    }
    char buf[64] = {};
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 12)
      return 0;
    return std::atoi(buf + 9); // "HTTP/1.1 502 ..."
  }
};

} // namespace

TEST(RecordCli, NoListenerGivesSliceVerdictAndResolvedFlow) {
  if (geteuid() != 0)
    GTEST_SKIP() << "needs root";
  if (access("/usr/sbin/nginx", X_OK) != 0)
    GTEST_SKIP() << "needs /usr/sbin/nginx";
  if (system("protoc --version >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "needs protoc (protobuf-compiler)";

  PrivateNginx nginx;
  ASSERT_TRUE(nginx.error.empty()) << nginx.error;
  const auto workers = nginx.workers();
  ASSERT_EQ(workers.size(), 1u);
  const fs::path trace = nginx.dir / "x.pftrace";
  const fs::path err = nginx.dir / "record.err";

  const pid_t rec = fork();
  if (rec == 0) {
    int fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    dup2(fd, 1);
    const std::string master = std::to_string(nginx.master);
    execl(WHY502_BINARY, WHY502_BINARY, "record", "-o", trace.c_str(), "--nginx-pid", master.c_str(), "--duration",
          "6", static_cast<char *>(nullptr));
    _exit(127);
  }
  ASSERT_GT(rec, 0);
  struct Reaper { // an early ASSERT must not leave the recorder running
    pid_t pid;
    ~Reaper() {
      if (pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0) {
        kill(pid, SIGTERM);
        waitpid(pid, nullptr, 0);
      }
    }
  } reaper{rec};
  // Attached once it says so (BPF load takes a moment).
  for (int i = 0; i < 100 && slurp(err).find("recording to") == std::string::npos; ++i)
    sleep_s(0.05);
  ASSERT_NE(slurp(err).find("recording to"), std::string::npos) << slurp(err);
  int bad_gateways = 0;
  for (int i = 0; i < 3; ++i)
    bad_gateways += nginx.get() == 502;
  EXPECT_EQ(bad_gateways, 3);

  int status = 0;
  ASSERT_EQ(waitpid(rec, &status, 0), rec);
  reaper.pid = 0;
  const std::string log = slurp(err);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log;

  const Trace t = decode(trace);
  ASSERT_TRUE(t.error.empty()) << t.error;
  EXPECT_TRUE(t.monotonic);

  // The worker's process track, and its failed-connection slice (connect -> RST).
  uint64_t worker_track = 0;
  for (const auto &[uuid, tr] : t.tracks)
    if (tr.is_process && tr.pid == workers[0])
      worker_track = uuid;
  ASSERT_NE(worker_track, 0u) << t.text;
  EXPECT_EQ(t.tracks.at(worker_track).process_name, "nginx: worker");
  const std::string upstream = "127.0.0.1:" + std::to_string(nginx.upstream_port);
  int slices = 0;
  for (const Event &e : t.events)
    if (e.type == "TYPE_SLICE_BEGIN" && e.name == upstream + " rst_in_syn_sent") {
      ++slices;
      EXPECT_EQ(t.tracks.at(e.track).parent, worker_track);
    }
  EXPECT_GE(slices, 3) << log;

  // The verdict instants, each with an arrow from a kernel instant. (How the
  // correlator groups attempts into requests is its business: at least one
  // 502, and every no_listener verdict, whatever its grouping, has its arrow.)
  std::map<uint64_t, std::string> started_by;
  for (const Event &e : t.events)
    for (uint64_t f : e.flows)
      started_by[f] = e.name;
  int verdicts = 0, with_status = 0;
  for (const Event &e : t.events) {
    if (!e.args.count("cause") || e.args.at("cause") != "no_listener")
      continue;
    ++verdicts;
    EXPECT_EQ(e.args.at("upstream"), upstream);
    if (e.name == "502 no_listener") {
      ++with_status;
      EXPECT_EQ(e.args.at("status"), "502");
      EXPECT_NE(e.args.at("nginx_error").find("111: Connection refused"), std::string::npos);
    }
    int resolved = 0;
    for (uint64_t f : e.terminating)
      if (started_by.count(f)) {
        ++resolved;
        EXPECT_TRUE(started_by.at(f) == "tcp_receive_reset" || started_by.at(f) == "tcp_send_reset")
            << started_by.at(f);
      }
    EXPECT_GE(resolved, 1) << e.name << " has no arrow from its kernel cause\n" << log;
  }
  EXPECT_GE(verdicts, 1) << log;
  EXPECT_GE(with_status, 1) << log;
}
