// Scenario harness: a private netns, a real nginx, a real upstream, `why502 watch --json` as a child,
// one injected fault, and assertions that join nginx's own logs with why502's verdict lines.
//
// Each scenario first proves the fault happened for real (nginx's error.log has the expected
// message, the access log has the 502/504), then checks why502's verdicts; a failure in the first
// half is a harness bug, in the second half a why502 bug.
//
// WHY502_SCENARIO_NO_WATCH=1 runs only the first half (for working on faults without the tracer).
#pragma once

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "json_schema.h"
#include "base/text.h"
#include "pipeline/replay.h"
#include "why502/lab.h"

namespace why502::scenario {

using json = nlohmann::json;
using namespace why502::lab;

inline bool watch_disabled() {
  const char *v = getenv("WHY502_SCENARIO_NO_WATCH");
  return v && *v && std::string(v) != "0";
}

// Once per test process (ctest runs each case as its own process; a direct run shares one netns,
// and every fault below is RAII so cases do not leak into each other).
inline void ensure_private_network() {
  static bool done = [] {
    enter_private_network();
    return true;
  }();
  (void)done;
}

// "2026-11-30T17:02:01.123456Z" -> unix seconds; NaN when malformed.
inline double parse_iso_time(const std::string &s) {
  std::tm tm{};
  const char *rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest)
    return NAN;
  double frac = 0;
  if (*rest == '.') {
    char *end;
    frac = strtod(rest, &end);
  }
  return double(timegm(&tm)) + frac;
}

// `why502 watch --json -o OUT --nginx-pid M --duration 60`, started before the fault.
// (The accuracy lab passes a longer --duration for its long runs.)
class Watch {
public:
  Watch(const std::string &dir, pid_t nginx_master, std::vector<std::string> extra = {}, int duration_s = 60)
      : out_(dir + "/why502.jsonl"), err_(dir + "/why502.stderr") {
    std::vector<std::string> argv{WHY502_BINARY, "watch", "--json", "-o", out_, "--nginx-pid",
                                  std::to_string(nginx_master), "--duration", std::to_string(duration_s)};
    // A capture beside the verdicts (unless the scenario takes its own): `why502 analyze` on it
    // explains a failed scenario (WHY502_KEEP_TMP=1 keeps the directory).
    if (auto it = std::find(extra.begin(), extra.end(), "--capture"); it == extra.end()) {
      capture_ = dir + "/capture.jsonl";
      argv.push_back("--capture");
      argv.push_back(capture_);
    } else if (it + 1 != extra.end()) {
      capture_ = *(it + 1);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    SpawnOptions so;
    so.stdout_path = dir + "/why502.stdout";
    so.stderr_path = err_;
    so.new_process_group = false;
    proc_ = Process::spawn(argv, so);
    bool started = wait_until(
        [&] {
          if (!proc_.running())
            return true;
          for (auto &j : lines())
            if (j.value("type", "") == "start")
              return true;
          return false;
        },
        30.0, 0.05);
    if (!proc_.running())
      throw Error("why502 watch exited before attaching: " + read_file(err_));
    if (!started)
      throw Error("why502 watch wrote no start line within 30 s: " + read_file(err_));
  }
  ~Watch() { stop(); }

  // SIGINT (the normal Ctrl-C path: flush and summarise), SIGKILL if it hangs. Then every line it
  // wrote, and every line of its capture, must follow docs/schema/why502-lines.schema.json.
  int stop() {
    if (!stopped_) {
      stopped_ = true;
      status_ = proc_.stop(SIGINT, 15.0);
      expect_lines_follow_the_schema(out_);
      expect_lines_follow_the_schema(capture_);
    }
    return status_;
  }

  std::vector<json> lines() const {
    std::vector<json> out;
    for (auto &l : read_lines(out_)) {
      json j = json::parse(l, nullptr, false);
      if (!j.is_discarded())
        out.push_back(std::move(j));
    }
    return out;
  }
  std::vector<json> verdicts() const {
    std::vector<json> out;
    for (auto &j : lines())
      if (j.value("type", "") == "verdict")
        out.push_back(j);
    return out;
  }
  const std::string &out_path() const { return out_; }
  pid_t pid() const { return proc_.pid(); }
  std::string stderr_text() const { return read_file(err_); }

private:
  static void expect_lines_follow_the_schema(const std::string &path) {
    static const auto schema =
        why502::test::JsonSchema::load(std::string(WHY502_SOURCE_DIR) + "/docs/schema/why502-lines.schema.json");
    if (path.empty())
      return;
    size_t n = 0, reported = 0;
    for (auto &l : read_lines(path)) {
      ++n;
      json j = json::parse(l, nullptr, false);
      std::vector<std::string> errors =
          j.is_discarded() ? std::vector<std::string>{"not JSON"} : schema.validate(j);
      if (!errors.empty() && reported++ < 5)
        ADD_FAILURE() << path << ":" << n << " does not follow the schema: " << errors.front() << "\n" << l.substr(0, 2000);
    }
  }

  std::string out_, err_, capture_;
  Process proc_;
  bool stopped_ = false;
  int status_ = 0;
};

// Evidence items of `v` with "event" == event.
inline std::vector<json> evidence_of(const json &v, const std::string &event) {
  std::vector<json> out;
  if (v.contains("evidence") && v["evidence"].is_array())
    for (auto &e : v["evidence"])
      if (e.value("event", "") == event)
        out.push_back(e);
  return out;
}


// The base fixture: owns the temp dir, nginx and the watcher; subclasses add the upstream.
class ScenarioTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (geteuid() != 0)
      GTEST_SKIP() << "scenario tests need root";
    ensure_private_network();
    dir_ = std::make_unique<TempDir>("why502-scn");
  }
  void TearDown() override {
    if (const char *cases = getenv("WHY502_SAVE_CASES"); cases && *cases && watch_ && nginx_ && !HasFailure())
      save_case(cases);
    watch_.reset();
    nginx_.reset();
  }

  // WHY502_SAVE_CASES=DIR: a passing scenario becomes a correlation case,
  // DIR/<Suite>.<Test>/{capture.jsonl,error.log,access.log,access_format,expected.jsonl,README.md}
  // (tests/fixtures/correlate/README.md). expected.jsonl is what `analyze` makes of the saved files,
  // kept only when its causes and statuses are the live run's. Nothing here fails the test: a case
  // that cannot be saved says why on stderr.
  void save_case(const std::string &root) {
    namespace fs = std::filesystem;
    watch_->stop();
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    const fs::path out = fs::path(root) / (std::string(info->test_suite_name()) + "." + info->name());
    if (HasFailure()) // stop() checks the schema of every line it wrote
      return;
    const fs::path capture = fs::path(dir()) / "capture.jsonl";
    if (!fs::exists(capture) || fs::file_size(capture) > (2u << 20)) {
      fprintf(stderr, "save_case: %s: no capture, or over 2 MiB: not saved\n", out.c_str());
      return;
    }
    fs::create_directories(out);
    fs::copy_file(capture, out / "capture.jsonl", fs::copy_options::overwrite_existing);
    fs::copy_file(nginx_->error_log(), out / "error.log", fs::copy_options::overwrite_existing);
    fs::copy_file(nginx_->access_log(), out / "access.log", fs::copy_options::overwrite_existing);
    std::ofstream(out / "access_format") << kAccessLogFormat << "\n";
    auto replayed = why502::pipeline::replay({(out / "capture.jsonl").string(), {(out / "error.log").string()},
                                              {(out / "access.log").string()}, kAccessLogFormat});
    std::multiset<std::pair<std::string, int>> live, offline;
    for (auto &v : watch_->verdicts())
      live.insert({v.value("cause", ""), v.value("status", 0)});
    std::string expected;
    std::map<std::pair<std::string, int>, int> counts;
    for (const auto &v : replayed.verdicts) {
      offline.insert({v.cause, v.status.value_or(0)});
      ++counts[{v.cause, v.status.value_or(0)}];
      expected += why502::base::json_line(why502::to_json(v)) + "\n";
    }
    if (live != offline || replayed.verdicts.empty()) {
      fprintf(stderr, "save_case: %s: analyze disagrees with the live run (or no verdicts): not saved\n  live:    %s\n  analyze: %s\n",
              out.c_str(), causes_text(live).c_str(), causes_text(offline).c_str());
      fs::remove_all(out);
      return;
    }
    std::ofstream(out / "expected.jsonl") << expected;
    std::string verdicts;
    for (const auto &[k, n] : counts)
      verdicts += std::string(verdicts.empty() ? "" : ", ") + std::to_string(n) + " x `" + k.first + "`" +
                  (k.second ? " (" + std::to_string(k.second) + ")" : "");
    const std::string source = fs::path(info->file()).filename().string();
    std::ofstream(out / "README.md")
        << "Scenario `" << info->test_suite_name() << "." << info->name() << "` (tests/scenarios/" << source
        << "), recorded with WHY502_SAVE_CASES: a real nginx and upstream in a private network namespace, "
        << "`why502 watch --capture` beside them. What it does (the comment above the test): " << fault_comment(info->file(), info->line())
        << " Expected verdicts (the live run's, and what `analyze` makes of these files): " << verdicts << ".\n";
  }

  static std::string causes_text(const std::multiset<std::pair<std::string, int>> &causes) {
    std::string s;
    for (const auto &[cause, status] : causes)
      s += (s.empty() ? "" : " ") + cause + "(" + std::to_string(status) + ")";
    return s.empty() ? "(none)" : s;
  }

  // The comment block right above the TEST_F at `file`:`line`, as one line of text: each scenario
  // opens with what it breaks, and that is what a case's README should say.
  static std::string fault_comment(const std::string &file, int line) {
    std::vector<std::string> lines; // every line, empty ones too: `line` counts them
    std::ifstream in(file);
    for (std::string l; std::getline(in, l);)
      lines.push_back(l);
    std::vector<std::string> block;
    for (int i = line - 2; i >= 0 && i < int(lines.size()); --i) {
      std::string_view l = lines[i];
      while (!l.empty() && (l.front() == ' ' || l.front() == '\t'))
        l.remove_prefix(1);
      if (l.substr(0, 2) != "//")
        break;
      l.remove_prefix(2);
      while (!l.empty() && l.front() == ' ')
        l.remove_prefix(1);
      block.insert(block.begin(), std::string(l));
    }
    std::string s;
    for (const auto &b : block)
      s += (s.empty() ? "" : " ") + b;
    if (s.empty())
      return "see the test.";
    return s.back() == '.' || s.back() == ')' ? s : s + ".";
  }

  const std::string &dir() const { return dir_->path(); }

  // Single-location config proxying to `target` with short timeouts.
  static NginxConfig proxy_config(const std::string &target, const std::string &connect_timeout = "1s",
                                  const std::string &read_timeout = "3s") {
    NginxConfig c;
    NginxLocation l;
    l.target = target;
    l.connect_timeout = connect_timeout;
    l.read_timeout = read_timeout;
    c.locations.push_back(l);
    return c;
  }

  Nginx &start_nginx(NginxConfig cfg) {
    nginx_ = std::make_unique<Nginx>(std::move(cfg), dir() + "/nginx");
    return *nginx_;
  }
  Nginx &nginx() { return *nginx_; }

  // Starts why502 (unless disabled). Call after nginx and the upstream are up, before the fault.
  // Syscall probes are attached from the start, so every verdict of a syscall-level fault carries
  // the kernel's record; the on-demand default has its own scenario.
  void start_watch(std::vector<std::string> extra = {"--syscall-probes", "always"}) {
    if (!watch_disabled())
      watch_ = std::make_unique<Watch>(dir(), nginx_->master_pid(), std::move(extra));
  }

  // Sequential GETs until `want` responses are 502/504 (or `cap` requests were sent).
  std::vector<HttpResult> drive(const std::string &path = "/", int want = 1, int cap = 10, double timeout_s = 10) {
    std::vector<HttpResult> out;
    int failures = 0;
    for (int i = 0; i < cap && failures < want; ++i) {
      out.push_back(http_get("127.0.0.1", nginx_->port(), path, timeout_s));
      if (failure_statuses_.count(out.back().status))
        ++failures;
    }
    return out;
  }

  // 502/504 lines nginx wrote to the access log.
  std::vector<AccessEntry> failures() const {
    std::vector<AccessEntry> out;
    for (auto &e : nginx_->access_entries())
      if (failure_statuses_.count(e.status))
        out.push_back(e);
    return out;
  }

  // Waits for nginx to have logged `needle` in error.log; returns the matching lines.
  std::vector<std::string> wait_error(const std::string &needle, double timeout_s = 3.0) {
    wait_until([&] { return !nginx_->errors_matching(needle).empty(); }, timeout_s);
    return nginx_->errors_matching(needle);
  }

  // Lets why502 see the last log lines, then stops it. Returns the verdicts.
  std::vector<json> finish_watch(double settle_s = 2.0) {
    if (!watch_)
      return {};
    sleep_for(settle_s);
    watch_->stop();
    return watch_->verdicts();
  }

  // The first half of every scenario: nginx really failed, with `status` and `message`.
  void expect_nginx_failed(int status, const std::string &message, size_t at_least = 1) {
    auto lines = wait_error(message);
    ASSERT_FALSE(lines.empty()) << "nginx's error.log lacks \"" << message << "\" — harness problem:\n"
                                << read_file(nginx_->error_log());
    wait_until([&] { return failures().size() >= at_least; }, 3.0);
    auto f = failures();
    ASSERT_GE(f.size(), at_least) << "no " << status << " in nginx's access log";
    for (auto &e : f)
      EXPECT_EQ(e.status, status) << e.request;
  }

  bool watching() const { return watch_ != nullptr; }

  // The second half: exactly one verdict per 502/504, matched by worker pid, status and time, each
  // with `cause` and `upstream`. Returns the verdicts in access-log order.
  std::vector<json> expect_verdicts(const std::vector<json> &verdicts, const std::string &cause,
                                    const std::string &upstream) {
    auto f = failures();
    auto workers = nginx_->worker_pids();
    std::set<pid_t> worker_set(workers.begin(), workers.end());
    EXPECT_EQ(verdicts.size(), f.size()) << "one verdict per 502/504; got:\n" << dump(verdicts);
    std::vector<json> matched;
    std::set<size_t> used;
    for (auto &e : f) {
      std::optional<size_t> best;
      for (size_t i = 0; i < verdicts.size(); ++i) {
        if (used.count(i))
          continue;
        const json &v = verdicts[i];
        if (v.value("nginx_pid", 0) != e.pid || v.value("status", 0) != e.status)
          continue;
        double t = parse_iso_time(v.value("time", ""));
        // The attempt failed inside the request: between its start and its log line (+ slack).
        if (!(t >= e.msec - e.request_time - 2.0 && t <= e.msec + 2.0))
          continue;
        best = i;
        break;
      }
      if (!best) {
        ADD_FAILURE() << "no verdict for the " << e.status << " of worker " << e.pid << " at " << std::fixed
                      << e.msec << " (" << e.request << "); verdicts:\n"
                      << dump(verdicts);
        continue;
      }
      used.insert(*best);
      const json &v = verdicts[*best];
      EXPECT_EQ(v.value("cause", ""), cause) << v.dump() << "\nnginx error.log:\n" << nginx_errors();
      EXPECT_EQ(v.value("upstream", ""), upstream) << v.dump();
      EXPECT_TRUE(worker_set.count(v.value("nginx_pid", 0))) << v.dump();
      matched.push_back(v);
    }
    return matched;
  }

  // nginx's error.log without [notice]/[info] lines about process management.
  std::string nginx_errors() const {
    std::string s;
    for (auto &l : nginx_->error_lines())
      if (l.find("[notice]") == std::string::npos)
        s += l + "\n";
    return s;
  }

  static std::string dump(const std::vector<json> &vs) {
    std::string s;
    for (auto &v : vs)
      s += v.dump() + "\n";
    return s.empty() ? "(none)\n" : s;
  }

  // Statuses that count as a failed request (fd_limit adds 500).
  std::set<int> failure_statuses_{502, 504};
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Nginx> nginx_;
  std::unique_ptr<Watch> watch_;
};

// Evidence expectations that print the verdict on failure.
#define EXPECT_EVIDENCE(verdict, event, pred)                                                                    \
  do {                                                                                                           \
    auto _ev = ::why502::scenario::evidence_of((verdict), (event));                                              \
    bool _found = std::any_of(_ev.begin(), _ev.end(), [&](const ::why502::scenario::json &e) { return (pred); }); \
    EXPECT_TRUE(_found) << "no " << (event) << " evidence matching " #pred " in " << (verdict).dump();          \
  } while (0)

// A scenario with one built-in upstream (AppServer), stopped after nginx in TearDown.
class AppServerScenario : public ScenarioTest {
protected:
  std::unique_ptr<AppServer> app_;
  AppServer &start_app(AppServerOptions o = {}) {
    app_ = std::make_unique<AppServer>(o);
    return *app_;
  }
  void TearDown() override {
    ScenarioTest::TearDown();
    app_.reset();
  }
  std::string port_of(const AppServer &a) { return std::to_string(a.port()); }
};

} // namespace why502::scenario
