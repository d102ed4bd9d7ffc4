// why502::lab — a fault lab on loopback: a private network namespace, a real nginx, real upstreams
// and RAII faults (iptables rules, sysctls, memory cgroups, signals). `why502 demo` and the scenario
// tests both use it, so nothing here is a mock: every fault is made for real and undone on destruction.
//
// Rules every class follows:
//  - RAII: a destructor stops what its constructor started (processes are killed and reaped, rules
//    deleted, sysctls restored, cgroups removed), and never throws.
//  - Errors throw why502::Error with one readable line (which command, which errno).
//  - Every wait loop polls `stop_requested()` and throws lab::Interrupted when it is set, so a
//    Ctrl-C handler that calls request_stop() unwinds through the destructors.
//  - Spawned processes get PR_SET_PDEATHSIG(SIGKILL): create lab objects from a thread that outlives
//    them (the main thread), or the kernel kills the child when the creating thread exits.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "why502/error.h"

namespace why502::lab {

// ───────────────────────────── stop flag ─────────────────────────────

// Async-signal-safe: sets an atomic flag that every lab wait loop checks.
void request_stop() noexcept;
bool stop_requested() noexcept;
void clear_stop() noexcept;

// Thrown by a wait loop once request_stop() was called.
class Interrupted : public Error {
public:
  Interrupted() : Error("interrupted", 130) {}
};

// Sleeps up to `seconds`, waking early (and throwing Interrupted) when a stop is requested.
void sleep_for(double seconds);

// ───────────────────────────── environment ─────────────────────────────

// unshare(CLONE_NEWNET) for the calling process and brings `lo` up. Afterwards net.* sysctls
// (tcp_abort_on_overflow, ip_local_port_range) and iptables rules are private to this process and
// its children. Call it once, before creating threads that open sockets. Needs CAP_SYS_ADMIN.
void enter_private_network();

// A fresh directory under $TMPDIR (default /tmp), removed recursively on destruction.
class TempDir {
public:
  explicit TempDir(std::string_view prefix = "why502-lab");
  ~TempDir();
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  const std::string &path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }
  // Writes `content` to path()/name and returns the full path.
  std::string write(std::string_view name, std::string_view content, unsigned mode = 0644) const;

private:
  std::string path_;
};

// A free TCP port on 127.0.0.1 in the current network namespace (bind port 0, read it, close).
uint16_t free_port();

// Runs argv (execvp: argv[0] may be a bare name) to completion, stdout+stderr captured.
struct CommandResult {
  int exit_code = -1; // -1: killed by a signal or could not start
  std::string output;
};
CommandResult run_command(const std::vector<std::string> &argv, double timeout_s = 30.0);
// run_command, throwing Error("<cmd>: <output>") unless it exits 0.
std::string check_command(const std::vector<std::string> &argv, double timeout_s = 30.0);

// Reads a whole file; empty when it does not exist.
std::string read_file(const std::string &path);
std::vector<std::string> read_lines(const std::string &path);

// ───────────────────────────── processes ─────────────────────────────

struct SpawnOptions {
  std::string stdout_path;                   // empty: /dev/null
  std::string stderr_path;                   // empty: same as stdout_path
  std::string cwd;                           // empty: unchanged
  std::map<std::string, std::string> env;   // added to (overrides) the inherited environment
  bool new_process_group = true;             // so stop() can signal the whole tree
};

// A child process, owned: the destructor stops it (SIGTERM, then SIGKILL after 3 s) and reaps it.
class Process {
public:
  Process() = default;
  // fork + execv(argv[0], argv). Throws when the exec fails (reported through a CLOEXEC pipe).
  static Process spawn(const std::vector<std::string> &argv, const SpawnOptions &opts = {});
  // Adopt an already forked child (ownership: reaped by this object).
  explicit Process(pid_t pid, bool process_group = false) : pid_(pid), group_(process_group) {}
  ~Process();
  Process(Process &&o) noexcept;
  Process &operator=(Process &&o) noexcept;
  Process(const Process &) = delete;
  Process &operator=(const Process &) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // Sends `sig` (to the process group when spawned with one, else the pid).
  void signal(int sig) const;
  // Waits up to `timeout_s` for exit; returns the waitpid status, or nullopt on timeout.
  std::optional<int> wait(double timeout_s);
  // signal(sig), wait up to timeout_s, then SIGKILL and reap. Returns the wait status.
  int stop(int sig = SIGTERM, double timeout_s = 3.0);
  // Status from the last successful wait, when the process has exited.
  std::optional<int> exit_status() const { return status_; }


private:
  pid_t pid_ = -1;
  bool group_ = false;
  std::optional<int> status_;
};

// Children of `pid` (from /proc/PID/task/*/children).
std::vector<pid_t> child_pids(pid_t pid);
// Whether `pid` exists and is not a zombie.
bool process_alive(pid_t pid);
// Sends `sig` to any process (not necessarily our child) and waits until it is gone (or a zombie).
// Returns false on timeout.
bool kill_and_wait(pid_t pid, int sig, double timeout_s = 5.0);
// Polls until `pred` holds or timeout; returns the last value of pred().
template <class Pred> bool wait_until(Pred pred, double timeout_s, double step_s = 0.02) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (true) {
    if (pred())
      return true;
    if (std::chrono::steady_clock::now() >= end)
      return false;
    sleep_for(step_s);
  }
}
// Waits until a TCP connect to host:port (or a connect to "unix:/path") succeeds.
bool wait_listening(const std::string &address, double timeout_s = 10.0);

// ───────────────────────────── nginx ─────────────────────────────

struct NginxServer {
  std::string address; // "127.0.0.1:8080" or "unix:/tmp/x.sock"
  int max_fails = 1;
  std::string fail_timeout = "10s";
  bool backup = false;
};

struct NginxUpstream {
  std::string name;
  std::vector<NginxServer> servers;
  std::optional<int> keepalive; // `keepalive N;` (proxy locations then use HTTP/1.1 + Connection "")
  bool zone = false;            // `zone NAME 64k;`: peer state (max_fails) shared by all workers
};

enum class PassKind { proxy, fastcgi, uwsgi };

struct NginxLocation {
  std::string path = "/";
  PassKind kind = PassKind::proxy;
  std::string target;                 // proxy: "http://backend" / "http://127.0.0.1:8080"; fastcgi/uwsgi: "backend" / "unix:/x"
  std::string connect_timeout = "2s"; // proxy_/fastcgi_/uwsgi_connect_timeout
  std::string read_timeout = "5s";
  std::string next_upstream;          // e.g. "error timeout", "off"; empty: nginx default
  std::string next_upstream_tries;    // empty: unlimited
  std::string fastcgi_script;         // fastcgi: SCRIPT_FILENAME
  std::vector<std::string> extra;     // raw directives, each without the trailing ';'
};

struct NginxConfig {
  int worker_processes = 2;
  std::optional<int> worker_rlimit_nofile;
  int worker_connections = 512;
  std::string error_log_level = "info"; // info: nginx logs every upstream error (some are at info/warn)
  uint16_t port = 0;                    // 0: pick a free port
  std::vector<NginxUpstream> upstreams;
  std::vector<NginxLocation> locations;
  std::vector<std::string> http_extra; // raw http{} directives without ';'
};

// The access log format every lab nginx writes ("why502lab"): quoted fields hold spaces/dashes.
// $remote_addr [$time_local] "$request" $status $body_bytes_sent "$http_host" $pid $msec
// "$upstream_addr" "$upstream_status" $request_time "$upstream_connect_time"
extern const char *const kAccessLogFormat;
// Health path served by nginx itself (never touches an upstream, not access-logged).
inline constexpr const char *kHealthPath = "/__why502_lab_health";

// nginx.conf text for `cfg` with every path (pid, logs, temp dirs) inside `dir`, listening on
// 127.0.0.1:`port`. Pure: unit-tested.
std::string render_nginx_conf(const NginxConfig &cfg, const std::string &dir, uint16_t port);

struct AccessEntry {
  std::string client;
  std::string request;
  int status = 0;
  std::string host;
  pid_t pid = 0;
  double msec = 0;                 // unix time, ms resolution
  std::string upstream_addr;       // "-" when none; "a, b" on retries
  std::string upstream_status;     // "-", "502", "502, 200"
  double request_time = 0;
  std::string upstream_connect_time;
};
// Parses one line of kAccessLogFormat; nullopt when it does not match.
std::optional<AccessEntry> parse_access_line(std::string_view line);
std::vector<AccessEntry> read_access_log(const std::string &path);

// A real nginx (`/usr/sbin/nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`) as our child.
// The constructor writes the config, starts nginx, and waits until it answers kHealthPath and all
// workers are up. The destructor sends SIGQUIT (graceful), then SIGKILL after 5 s.
class Nginx {
public:
  Nginx(NginxConfig cfg, std::string dir, std::string binary = "/usr/sbin/nginx");
  ~Nginx();
  Nginx(const Nginx &) = delete;
  Nginx &operator=(const Nginx &) = delete;

  pid_t master_pid() const { return proc_.pid(); }
  std::vector<pid_t> worker_pids() const;
  uint16_t port() const { return port_; }
  const std::string &dir() const { return dir_; }
  std::string conf_path() const { return dir_ + "/nginx.conf"; }
  std::string error_log() const { return dir_ + "/logs/error.log"; }
  std::string access_log() const { return dir_ + "/logs/access.log"; }
  const NginxConfig &config() const { return cfg_; }

  // Rewrites the config (when given), SIGHUP, and waits for a full new set of workers.
  void reload();
  void reload(NginxConfig cfg);
  // Graceful stop (SIGQUIT), SIGKILL after timeout. Idempotent.
  void stop(double timeout_s = 5.0);

  std::vector<AccessEntry> access_entries() const { return read_access_log(access_log()); }
  std::vector<std::string> error_lines() const { return read_lines(error_log()); }
  // error.log lines containing `needle`.
  std::vector<std::string> errors_matching(std::string_view needle) const;

private:
  void wait_ready(const std::vector<pid_t> &old_workers, double timeout_s);

  NginxConfig cfg_;
  std::string dir_;
  std::string binary_;
  uint16_t port_ = 0;
  Process proc_;
};

// ───────────────────────────── upstreams ─────────────────────────────

enum class Behaviour {
  ok,               // 200 "ok\n"
  slow,             // sleep slow_seconds, then 200
  reset,            // read the request, SO_LINGER 0 + close: RST on an established connection
  close_early,      // read the request, close without responding: FIN before any data
  big_header,       // a 200 whose header is 64 KiB (bigger than proxy_buffer_size)
  exit_mid_request, // read the request, exit(3)
  crash,            // read the request, raise SIGSEGV
  alloc,            // read the request, allocate and touch memory until killed (OOM in a cgroup)
  never_accept,     // listen(backlog) and never accept (startup-only: fixed for the server's life)
};
std::string_view behaviour_name(Behaviour b);
std::optional<Behaviour> behaviour_from_name(std::string_view name);

struct AppServerOptions {
  std::string address = "127.0.0.1:0"; // "127.0.0.1:PORT", "[::1]:PORT" (0: pick) or "unix:/path"
  int backlog = 128;
  Behaviour behaviour = Behaviour::ok;
  double slow_seconds = 3.0;
  std::uint64_t alloc_cap_bytes = 2ull << 30; // alloc stops (and hangs) here if nothing killed it
  std::string name = "why502-app"; // comm, via prctl(PR_SET_NAME)
};

// The built-in HTTP upstream: a forked process, one thread per connection, HTTP/1.0 and 1.1 with
// keep-alive. Behaviour is chosen per request by the first path segment (GET /reset, /slow,
// /crash, ... — see behaviour_name) or else by the default, switchable at runtime with
// set_behaviour() (shared memory; no restart). Faults that kill the process (crash, exit,
// alloc) kill the whole server, like a real single-process upstream.
class AppServer {
public:
  explicit AppServer(AppServerOptions opts = {});
  ~AppServer();
  AppServer(const AppServer &) = delete;
  AppServer &operator=(const AppServer &) = delete;

  pid_t pid() const { return proc_.pid(); }
  const std::string &address() const { return address_; } // "127.0.0.1:PORT", "[::1]:PORT" or "unix:/path"
  uint16_t port() const { return port_; }                  // 0 for unix
  void set_behaviour(Behaviour b);
  Behaviour behaviour() const;
  unsigned long requests_served() const;
  bool running() { return proc_.running(); }
  Process &process() { return proc_; }
  // SIGTERM, then SIGKILL; idempotent.
  void stop();

  struct Shared; // the state shared with the forked server (defined in src/lab)

private:
  AppServerOptions opts_;
  std::string address_;
  uint16_t port_ = 0;
  Shared *shared_ = nullptr; // MAP_SHARED with the child
  Process proc_;
};

// php-fpm (`php-fpm8.2 -R -F -n -y DIR/php-fpm.conf`) with one static pool on a unix socket and a
// slow script, for unix_backlog_full.
struct PhpFpmOptions {
  std::string binary = "/usr/sbin/php-fpm8.2";
  int max_children = 1;
  int listen_backlog = 1;
  int max_requests = 0;     // pm.max_requests (0: never recycle)
  double script_sleep = 3.0; // seconds the script sleeps
};
class PhpFpm {
public:
  PhpFpm(PhpFpmOptions opts, const std::string &dir);
  ~PhpFpm();
  PhpFpm(const PhpFpm &) = delete;
  PhpFpm &operator=(const PhpFpm &) = delete;

  const std::string &socket_path() const { return socket_; }
  std::string address() const { return "unix:" + socket_; }
  const std::string &script_path() const { return script_; }
  pid_t master_pid() const { return proc_.pid(); }
  std::vector<pid_t> worker_pids() const { return child_pids(proc_.pid()); }
  std::string log_path() const { return log_; }
  void stop() { proc_.stop(SIGQUIT, 5.0); }

private:
  std::string socket_, script_, log_;
  Process proc_;
};

// gunicorn (`/usr/bin/python3 -m gunicorn`: Debian's python3-gunicorn ships no script) serving a
// WSGI app module from `app_dir`.
struct GunicornOptions {
  std::string python = "/usr/bin/python3";
  std::string app = "app:app"; // module:callable inside app_dir
  std::string app_dir;
  uint16_t port = 0; // 0: pick
  int workers = 1;
  int timeout = 30;
  int backlog = 64;
};
class Gunicorn {
public:
  Gunicorn(GunicornOptions opts, const std::string &log_path);
  ~Gunicorn();
  Gunicorn(const Gunicorn &) = delete;
  Gunicorn &operator=(const Gunicorn &) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  uint16_t port() const { return port_; }
  pid_t master_pid() const { return proc_.pid(); }
  std::vector<pid_t> worker_pids() const { return child_pids(proc_.pid()); }
  void stop() { proc_.stop(); }

private:
  uint16_t port_ = 0;
  Process proc_;
};

// Any command that listens on `address` once started (e.g. /usr/bin/python3 script.py PORT).
// Waits until the address accepts connections.
Process spawn_server(const std::vector<std::string> &argv, const std::string &address,
                     const SpawnOptions &opts = {}, double timeout_s = 15.0);

// ───────────────────────────── faults ─────────────────────────────

// `iptables -w [-t table] -I|-A chain rule...`, deleted with -D on destruction.
class IptablesRule {
public:
  IptablesRule(std::string chain, std::vector<std::string> rule, std::string table = "filter",
               bool insert = true);
  ~IptablesRule();
  IptablesRule(const IptablesRule &) = delete;
  IptablesRule &operator=(const IptablesRule &) = delete;
  std::string describe() const;

private:
  std::string chain_, table_;
  std::vector<std::string> rule_;
  bool active_ = false;
};

// Writes a sysctl (name as "net.ipv4.tcp_abort_on_overflow" or a /proc/sys path) and restores
// the old value on destruction.
class Sysctl {
public:
  Sysctl(std::string name, std::string value);
  ~Sysctl();
  Sysctl(const Sysctl &) = delete;
  Sysctl &operator=(const Sysctl &) = delete;
  const std::string &old_value() const { return old_; }
  static std::string path_of(std::string_view name);
  static std::string read(std::string_view name);

private:
  std::string path_, old_;
};

// cgroup v1 memory cgroup /sys/fs/cgroup/memory/why502-<name>. The destructor moves any remaining
// tasks back to the root cgroup and removes the directory.
class MemoryCgroup {
public:
  MemoryCgroup(std::string name, std::uint64_t limit_bytes,
               std::string root = "/sys/fs/cgroup/memory");
  ~MemoryCgroup();
  MemoryCgroup(const MemoryCgroup &) = delete;
  MemoryCgroup &operator=(const MemoryCgroup &) = delete;
  void add(pid_t pid);
  const std::string &path() const { return path_; }
  std::vector<pid_t> pids() const;
  std::uint64_t oom_kills() const; // memory.oom_control's oom_kill counter

private:
  std::string root_, path_;
};

// `n` TCP connections from this process to `address`, held open and idle until destruction:
// fills a never-accepting listener's accept queue, or pins ephemeral ports toward a destination.
// Connects are non-blocking; a connection still in SYN_SENT counts too.
class IdleConnections {
public:
  IdleConnections(const std::string &address, int n);
  ~IdleConnections();
  IdleConnections(const IdleConnections &) = delete;
  IdleConnections &operator=(const IdleConnections &) = delete;
  size_t size() const { return fds_.size(); }
  // Local ports of the held connections.
  std::vector<uint16_t> local_ports() const;

private:
  std::vector<int> fds_;
};

// ───────────────────────────── HTTP client ─────────────────────────────

struct HttpResult {
  int status = 0;     // 0 when no status line was received
  std::string error;  // empty on success: "connect: ...", "timeout", "closed before status line"
  std::string body;
  double seconds = 0; // wall time of the request
  bool ok() const { return error.empty() && status != 0; }
};

// One GET over a fresh connection (HTTP/1.1, Connection: close). Never throws for network errors.
HttpResult http_get(const std::string &host, uint16_t port, const std::string &path,
                    double timeout_s = 10.0, const std::string &host_header = "why502-lab");
// `n` concurrent GETs (one thread each); results in launch order.
std::vector<HttpResult> http_get_concurrent(const std::string &host, uint16_t port,
                                            const std::string &path, int n, double timeout_s = 10.0);
// A client keep-alive connection: GETs one after another on one TCP connection to host:port
// (HTTP/1.1 keep-alive), as browsers and load balancers send them; it reconnects when the server
// closed the connection (Connection: close). Responses are framed by Content-Length or chunked
// encoding. Never throws for network errors; a request that fails closes the connection.
class HttpConnection {
public:
  HttpConnection(std::string host, uint16_t port, std::string host_header = "why502-lab");
  ~HttpConnection();
  HttpConnection(const HttpConnection &) = delete;
  HttpConnection &operator=(const HttpConnection &) = delete;

  // `host_header` empty: the connection's own.
  HttpResult get(const std::string &path, double timeout_s = 10.0, const std::string &host_header = {});
  int connects() const { return connects_; } // TCP connections opened so far

private:
  std::string host_, host_header_;
  uint16_t port_;
  int fd_ = -1;
  int connects_ = 0;
  std::string buf_; // bytes read past the previous response
};

// Parses the status code of an HTTP response status line ("HTTP/1.1 502 Bad Gateway"); 0 if malformed.
int parse_status_line(std::string_view line);

} // namespace why502::lab
