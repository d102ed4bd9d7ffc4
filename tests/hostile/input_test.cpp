// Hostile input is data (issue 8): requests and process names an attacker chooses go through
// the real binary, a real nginx and the real kernel, and why502 keeps running, writes valid JSON,
// gives no verdict to a forged upstream and never writes a terminal escape sequence.
//
// Each test runs in its own network namespace (lab::enter_private_network), so its ports clash
// with nobody. nginx proxies "/" to a port nothing listens on (every proxied request is a 502
// with cause no_listener) and serves /nf/ from an empty root (a 404 logged as open() failed).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/text.h"
#include "why502/lab.h"

using namespace why502::lab;
using json = nlohmann::json;

namespace {

const std::string kFffd = "\xEF\xBF\xBD"; // U+FFFD
// The forged context from the issue, percent-encoded on the wire; nginx decodes it into the
// path of its "open() ... failed" message.
const std::string kForgedUri = "/nf/%22,%20client:%201.2.3.4,%20server:%20x,%20request:%20%22GET%20/%20HTTP/1.1%22,"
                               "%20upstream:%20%22http://10.6.6.6:6666/%22,%20host:%20%22x%22";
const std::string kEvilReferer = "\x1b]52;c;ZXZpbA==\x07\x1b[31mred";

// A port nothing listens on in this namespace: bind, read it, close.
uint16_t closed_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) != 0)
    throw std::runtime_error("cannot pick a closed port");
  close(fd);
  return ntohs(a.sin_port);
}

// Sends `raw` as is (no encoding: the point is the bytes) and returns the response's status.
int raw_http(uint16_t port, const std::string &raw) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string resp;
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0 &&
      write(fd, raw.data(), raw.size()) == ssize_t(raw.size())) {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 && resp.find("\r\n") == std::string::npos)
      resp.append(buf, size_t(n));
  }
  close(fd);
  return parse_status_line(resp.substr(0, resp.find("\r\n")));
}

std::string get(const std::string &target, const std::string &headers = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: why502-lab\r\n" + headers + "Connection: close\r\n\r\n";
}

class HostileInput : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "the hostile tier needs root";
    enter_private_network();
    dir_ = std::make_unique<TempDir>("why502-input");
    mkdir((dir_->path() + "/www").c_str(), 0755);
    dead_port_ = closed_port();
    NginxConfig cfg;
    cfg.error_log_level = "error";
    cfg.http_extra = {"merge_slashes off"}; // keep the forged "http://" intact in nginx's message
    NginxLocation proxied;
    proxied.target = "http://127.0.0.1:" + std::to_string(dead_port_);
    // /nf: a nested location without proxy_pass serves files from an empty root: 404, and nginx
    // logs `open() "<root><decoded URI>" failed` at error level.
    NginxLocation nf = proxied;
    nf.path = "/nf";
    nf.extra = {"location /nf/ { root " + dir_->path() + "/www; } set $why502_unused 1"};
    cfg.locations = {proxied, nf};
    nginx_ = std::make_unique<Nginx>(cfg, dir_->path() + "/nginx");
  }
  void TearDown() override { nginx_.reset(); }

  // Runs `why502 ARGS...` to completion (it stops itself with --duration); `during` runs once the
  // start line is written (JSON) or `settle_s` after the start (text mode, whose start is stderr).
  struct Run {
    int status = -1;
    std::string out, err;
  };
  Run run_why502(std::vector<std::string> args, const std::function<void()> &during, bool wait_start_json) {
    const std::string out = dir_->file("out." + std::to_string(runs_)), err = dir_->file("err." + std::to_string(runs_));
    ++runs_;
    args.insert(args.begin(), WHY502_BINARY);
    SpawnOptions so;
    so.stdout_path = out;
    so.stderr_path = err;
    so.new_process_group = false;
    Process p = Process::spawn(args, so);
    bool started = wait_until(
        [&] {
          if (!p.running())
            return true;
          if (wait_start_json)
            return read_file(out).find("\"type\":\"start\"") != std::string::npos;
          return read_file(err).find("watching") != std::string::npos || !read_file(err).empty();
        },
        30.0, 0.05);
    EXPECT_TRUE(started && p.running()) << "why502 did not start: " << read_file(err);
    during();
    auto st = p.wait(60.0);
    Run r;
    if (!st)
      r.status = p.stop(SIGKILL, 5.0);
    else
      r.status = *st;
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Nginx> nginx_;
  uint16_t dead_port_ = 0;
  int runs_ = 0;
};

// Every line must parse as JSON; returns them.
std::vector<json> json_lines(const std::string &out) {
  std::vector<json> v;
  size_t from = 0;
  while (from < out.size()) {
    size_t nl = out.find('\n', from);
    std::string line = out.substr(from, nl == std::string::npos ? std::string::npos : nl - from);
    from = nl == std::string::npos ? out.size() : nl + 1;
    EXPECT_TRUE(why502::base::is_valid_utf8(line)) << line;
    json j = json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    if (!j.is_discarded())
      v.push_back(std::move(j));
  }
  return v;
}

TEST_F(HostileInput, WatchJsonSurvivesNonUtf8ForgedUriAndEscapes) {
  const uint16_t port = nginx_->port();
  int s_utf8 = 0, s_forged = 0, s_ref = 0;
  Run r = run_why502({"watch", "--json", "--duration", "8", "--nginx-pid", std::to_string(nginx_->master_pid())},
                     [&] {
                       s_utf8 = raw_http(port, get("/caf\xe9\xff"));
                       s_forged = raw_http(port, get(kForgedUri));
                       s_ref = raw_http(port, get("/ref", "Referer: " + kEvilReferer + "\r\n"));
                     },
                     true);
  // The requests did what the test means: nginx's own view.
  EXPECT_EQ(s_utf8, 502);
  EXPECT_EQ(s_forged, 404);
  EXPECT_EQ(s_ref, 502);
  ASSERT_FALSE(nginx_->errors_matching("upstream: \"http://10.6.6.6:6666/\"").empty())
      << "nginx did not log the forged text; the test proves nothing:\n" << read_file(nginx_->error_log());
  ASSERT_FALSE(nginx_->errors_matching("\x1b]52;c;").empty());

  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << "status " << r.status << ": " << r.err;
  auto lines = json_lines(r.out);
  int summaries = 0;
  std::vector<json> verdicts;
  for (const auto &j : lines) {
    summaries += j.value("type", "") == "summary";
    if (j.value("type", "") == "verdict")
      verdicts.push_back(j);
  }
  EXPECT_EQ(summaries, 1) << r.out;
  // (a) the 502 of the non-UTF-8 request: its own verdict, request text with U+FFFD.
  const json *utf8 = nullptr;
  for (const auto &v : verdicts)
    if (v.contains("request") && v["request"].is_object() &&
        v["request"].value("request", "") == "GET /caf" + kFffd + kFffd + " HTTP/1.1")
      utf8 = &v;
  ASSERT_NE(utf8, nullptr) << r.out;
  EXPECT_EQ(utf8->value("cause", ""), "no_listener");
  EXPECT_EQ(utf8->value("upstream", ""), "127.0.0.1:" + std::to_string(dead_port_));
  // (b) nothing names the forged upstream; the 404 is no verdict at all.
  for (const auto &v : verdicts) {
    EXPECT_EQ(v.dump().find("10.6.6.6"), std::string::npos) << v.dump();
    EXPECT_EQ(v.value("upstream", ""), "127.0.0.1:" + std::to_string(dead_port_));
  }
  // (c) the Referer reached the JSON as data: escaped by JSON, one verdict per 502.
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos);
  EXPECT_EQ(verdicts.size(), 2u) << r.out;
}

TEST_F(HostileInput, TextReportShowsEscapesInsteadOfObeyingThem) {
  const uint16_t port = nginx_->port();
  int s = 0;
  Run r = run_why502({"watch", "--duration", "6", "--nginx-pid", std::to_string(nginx_->master_pid())},
                     [&] {
                       sleep(2); // text mode writes its start to stderr; give it time to attach
                       s = raw_http(port, get("/ref", "Referer: " + kEvilReferer + "\r\n"));
                     },
                     false);
  EXPECT_EQ(s, 502);
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.err;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos);
  EXPECT_EQ(r.out.find('\x07'), std::string::npos);
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);
  EXPECT_NE(r.out.find("referrer: \"\\x1b]52;c;ZXZpbA==\\x07\\x1b[31mred\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no_listener"), std::string::npos) << r.out;
}

// (d) A local process names itself "\xff\xfe" and fails a connect while `events` watches it.
TEST_F(HostileInput, EventsSurvivesANonUtf8ProcessName) {
  int go[2];
  ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
  const uint16_t dead = dead_port_;
  pid_t child = fork();
  if (child == 0) {
    close(go[1]);
    prctl(PR_SET_NAME, "\xff\xfe", 0, 0, 0);
    char c;
    if (read(go[0], &c, 1) != 1)
      _exit(1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(dead);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)); // ECONNREFUSED
    usleep(300 * 1000);
    _exit(rc == 0 ? 2 : 0);
  }
  close(go[0]);
  Process target(child); // reaped on every path
  Run r = run_why502({"events", "--json", "--duration", "4", "--pid", std::to_string(child)},
                     [&] { ASSERT_EQ(write(go[1], "g", 1), 1); }, true);
  close(go[1]);
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.err;
  bool record = false, stats = false;
  for (const auto &j : json_lines(r.out)) {
    stats |= j.value("type", "") == "stats";
    if (j.value("event", "") == "conn_fail" && j.value("pid", 0) == child) {
      record = true;
      EXPECT_EQ(j.value("comm", ""), kFffd + kFffd);
      EXPECT_EQ(j.value("remote", ""), "127.0.0.1:" + std::to_string(dead));
    }
  }
  EXPECT_TRUE(record) << r.out << r.err;
  EXPECT_TRUE(stats) << r.out;
}

} // namespace
