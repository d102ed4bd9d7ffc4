// why502::nginx — everything why502 knows about nginx, without root and without libbpf:
// process discovery, the config model (read by why502, never by running nginx), log tailing, error.log and access.log parsing.
//
// Pure C++. Kernel code never includes this; the correlator consumes the parsed structs.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "why502/error.h"

namespace why502::nginx {

using why502::Result; // why502/error.h: the one error style

// Counts of lines a parser accepted or rejected; rejected lines are never fatal.
struct ParseStats {
  std::uint64_t parsed = 0;
  std::uint64_t unparsed = 0;
  void count(bool ok) { ok ? ++parsed : ++unparsed; }
};

// ───────────────────────────── config model ────────────────────────────────────────

struct SourceLocation {
  std::string file; // from the "# configuration file X:" marker
  int line = 0;
};

struct ErrorLogTarget {
  std::string path;           // absolute (resolved against the prefix) or "stderr"/"syslog:..."/"memory:..."
  std::string level = "error"; // nginx's default level
  bool tailable = true;
  std::string not_tailable_reason; // set when !tailable
  std::string context;             // "main", "http", "server", "location", "stream", "mail", ...
  SourceLocation where;
};

struct AccessLogTarget {
  std::string path;                  // resolved; empty when off
  std::string format_name = "combined";
  bool off = false;
  bool tailable = true;
  std::string not_tailable_reason;
  std::vector<std::string> ignored_params; // buffer=, gzip, flush=, if= (noted, irrelevant to parsing)
  bool is_stream = false;                  // access_log inside stream {}
  std::string context;
  SourceLocation where;
};

enum class Escape { default_, json, none };

struct LogFormat {
  std::string name;
  Escape escape = Escape::default_;
  std::string format; // the concatenated format string
  bool is_stream = false;
  SourceLocation where;
};

struct UpstreamServer {
  std::string address; // "127.0.0.1:8080", "backend.local", "unix:/run/php.sock"
  bool is_unix = false;
  int weight = 1;
  int max_fails = 1;
  std::string fail_timeout = "10s";
  bool backup = false;
  bool down = false;
  std::vector<std::string> other_params; // max_conns=, resolve, service=, slow_start=, ...
};

struct Upstream {
  std::string name;
  std::vector<UpstreamServer> servers;
  std::optional<int> keepalive;
  bool is_stream = false;
  SourceLocation where;
};

struct PassTarget {
  std::string directive; // proxy_pass, fastcgi_pass, uwsgi_pass, grpc_pass, scgi_pass
  std::string target;    // as written: "http://backend/x", "unix:/run/php.sock", "127.0.0.1:9000"
  std::string scheme;    // "http", "https", "grpc", "grpcs", "uwsgi", "suwsgi", "" (fastcgi/scgi)
  std::string address;   // host[:port] or "unix:/path"; empty when the target is built from variables
  const Upstream *upstream = nullptr; // set by parse_config when `address` names an upstream block
  bool has_variables = false;
  SourceLocation where;
};

struct ConfigParseOptions {
  std::string prefix = "/usr/share/nginx/"; // -p, or --prefix from `nginx -V`
  std::string conf_prefix;                  // directory of the main config file (includes are relative to it)
  std::string default_error_log;            // --error-log-path; used when no error_log in main context
  std::string default_access_log;           // --http-log-path; used when http{} has no access_log
};

struct Config {
  std::vector<std::string> files; // every file in the dump, in order
  std::vector<ErrorLogTarget> error_logs;
  std::vector<AccessLogTarget> access_logs;
  std::map<std::string, LogFormat> log_formats; // http formats, "combined" always present
  std::map<std::string, LogFormat> stream_log_formats;
  std::vector<std::unique_ptr<Upstream>> upstreams; // stable addresses for PassTarget::upstream
  std::vector<PassTarget> passes;
  std::string worker_processes = "1"; // "auto" or a number, as written
  std::optional<long> worker_rlimit_nofile;
  std::string pid_file; // resolved
  std::vector<std::string> warnings; // syntax problems, unknown include targets, ...

  const LogFormat *format_for(const AccessLogTarget &log) const;
  // Every peer an upstream failure of this config can name ("127.0.0.1:8080", "[::1]:80",
  // "unix:/run/php.sock", and upstream{} names for "no live upstreams"), when the config names them
  // all statically; nullopt when any target is built from variables or names a host to resolve.
  std::optional<std::set<std::string>> static_upstream_peers() const;
  const Upstream *find_upstream(std::string_view name) const;
};

// Parses the stdout of `nginx -T` (recorded fixtures, `analyze`). Never throws; problems land in
// Config::warnings.
Config parse_config(std::string_view dump, const ConfigParseOptions &opts = {});

// Where parse_config_files reads a live config tree from (discovery: the target's own filesystem,
// with its credentials). Implementations bound what they return; the parser bounds the total.
class ConfigFileSource {
public:
  virtual ~ConfigFileSource() = default;
  // Existing paths matching an absolute glob(7) pattern, sorted.
  virtual std::vector<std::string> glob(const std::string &pattern) = 0;
  // The text of one regular file, or why it cannot be read.
  virtual Result<std::string> read(const std::string &path) = 0;
};

// The whole configuration, included files and all, is at most this large (include bombs).
inline constexpr std::size_t kMaxConfigBytes = 64u * 1024 * 1024;

// Reads and parses the configuration nginx itself would: `globals` (the master's -g) first, then
// `main_file` with its includes expanded from `source`. nginx is never run. Never throws.
Config parse_config_files(const std::string &main_file, std::string_view globals, ConfigFileSource &source,
                          const ConfigParseOptions &opts = {});

// Resolves a config path like nginx does: absolute stays, relative is joined to `prefix`.
std::string resolve_path(std::string_view path, std::string_view prefix);

// ───────────────────────────── discovery (/proc) ─────────────────────────────

struct Worker {
  pid_t pid = 0;
  bool shutting_down = false; // "nginx: worker process is shutting down" (old generation after a reload)
  // The pid nginx itself knows and logs ($pid, "PID#TID:"), in its own PID namespace (a container);
  // equals `pid` when nginx shares why502's PID namespace.
  pid_t ns_pid = 0;
  bool operator==(const Worker &) const = default;
};

struct Instance {
  pid_t master_pid = 0;
  uid_t master_uid = 0;
  std::vector<Worker> workers; // children of the master (worker, cache manager/loader excluded)
  std::vector<pid_t> helper_pids; // cache manager / cache loader
  std::string binary;             // /proc/PID/exe target (may end with " (deleted)")
  bool binary_deleted = false;
  std::string exe_path;           // "/proc/PID/exe": read (never executed) for compiled-in defaults
  std::string version;            // "1.22.1", from the binary's own version string; may be empty
  std::vector<std::string> args;  // -c/-p/-g as recovered from the master's title
  std::string config_path;        // in the master's filesystem
  std::string prefix;
  std::string globals;            // the -g directives
  // The master sees another filesystem than why502 (a container): every path above, and the log
  // paths in `config`, are paths in there, to be opened through base::TargetFs::of_process().
  bool foreign_fs = false;
  std::string config_error; // why the config could not be read (Config then empty)
  Config config;
  unsigned long long start_time = 0; // /proc/PID/stat starttime (ticks), tells old from new master
};

struct DiscoverOptions {
  bool read_config = true; // read the config files through /proc/PID/root (nginx is never run)
  std::string proc_root = "/proc";
  // Without an explicit pid, only masters that run as root from a root-owned binary that nobody
  // else can write are taken: any user can start a process titled "nginx: master process".
  bool require_trusted_master = true;
};

// Why an nginx-looking master was not taken automatically, or "" when it may be.
struct MasterTrust {
  uid_t master_ruid = 0, master_euid = 0;
  bool binary_known = false; // stat of /proc/PID/exe worked
  uid_t binary_uid = 0;
  gid_t binary_gid = 0;
  unsigned binary_mode = 0;
};
std::string untrusted_master_reason(const MasterTrust &t);

struct DiscoveryResult {
  std::vector<Instance> instances; // several during a binary upgrade (USR2), oldest first
  std::vector<std::string> warnings;
};

// Finds every nginx master (or only the one owning `nginx_pid`, master or worker).
// Fails only when no nginx is found.
Result<DiscoveryResult> discover(std::optional<pid_t> nginx_pid = std::nullopt,
                                 const DiscoverOptions &opts = {});

// Fast re-scan of one master's children (no config reading): for following reloads.
std::vector<Worker> scan_workers(pid_t master_pid, const std::string &proc_root = "/proc");

// Recovers -c/-p/-g from a master title such as
// "nginx: master process /usr/sbin/nginx -c /etc/nginx/nginx.conf -g daemon on; master_process on;".
struct MasterArgs {
  std::string binary;
  std::string conf;
  std::string prefix;
  std::string globals;
};
MasterArgs parse_master_title(std::string_view cmdline);

// Tracks the worker set of one master between scans.
class WorkerTracker {
public:
  struct Change {
    std::vector<pid_t> added;
    std::vector<pid_t> removed;
    // New workers replaced the whole previous active generation (seen across scans: during a
    // reload nginx briefly shows both generations as plain "worker process"). With a single
    // worker a crash+respawn looks the same; nginx logs "exited on signal" for that case.
    bool reloaded = false;
  };
  explicit WorkerTracker(pid_t master_pid, std::string proc_root = "/proc");
  Change rescan(); // the first call reports every worker as added, reloaded=false
  const std::vector<Worker> &workers() const { return workers_; }
  bool master_alive() const;
  pid_t master_pid() const { return master_; }

private:
  pid_t master_;
  std::string proc_root_;
  std::vector<Worker> workers_;
  std::vector<pid_t> baseline_; // the active generation reloads are measured against
  bool first_ = true;
};

// ───────────────────────────── error.log ─────────────────────────────

enum class UpstreamFailure {
  none, // not an upstream failure
  connect_failed,
  recv_failed,
  send_failed, // send() / writev() / sendfile()
  readv_failed,
  prematurely_closed,
  timed_out_connecting,
  timed_out_reading,
  timed_out_sending,
  no_live_upstreams,
  too_big_header,
  invalid_header,
  upstream_sent_invalid, // invalid status line, invalid chunked response, unexpected FastCGI record, ...
  socket_failed,
  other, // an error while talking to an upstream that matches none of the above
};
std::string_view to_string(UpstreamFailure f);

enum class Level { emerg, alert, crit, error, warn, notice, info, debug };
std::string_view to_string(Level l);

struct ErrorLogLine {
  std::tm tm{};            // as written, local time of the nginx host
  // tm read as if it were UTC: the line's clock reading, free of any zone. LogZone turns it into
  // a time since the epoch once nginx's UTC offset is known.
  std::int64_t local_seconds = 0;
  Level level = Level::error;
  pid_t pid = 0;
  std::uint64_t tid = 0;
  std::optional<std::uint64_t> connection; // "*N"
  std::string message;     // everything after "pid#tid: [*N ]"
  std::string text;        // message without errno, action and request context
  std::optional<int> err;  // errno number
  std::string err_text;    // "Connection refused"
  std::string syscall;     // "connect", "recv", "writev", "socket", ... (from "xxx() failed")
  std::string action;      // "connecting to upstream", "reading response header from upstream", ...
  std::string client, server, request, subrequest, host, referrer;
  std::string upstream;         // "http://127.0.0.1:8080/x", "fastcgi://unix:/run/php.sock:"
  std::string upstream_address; // "127.0.0.1:8080", "unix:/run/php.sock"
  // A unix peer logged without the ":" nginx normally puts before the URI ("upstream timed out"):
  // upstream_address is then the path and the URI run together, to be cut at a known socket path.
  bool upstream_path_ambiguous = false;
  UpstreamFailure failure = UpstreamFailure::none;
  bool truncated = false; // nginx cut the message at NGX_MAX_ERROR_STR ("..." before errno)
};

// Does the failure's upstream belong to `peers` (Config::static_upstream_peers)? A unix peer logged
// run together with its URI (upstream_path_ambiguous) belongs when one of them is its prefix.
bool upstream_is_configured(const ErrorLogLine &line, const std::set<std::string> &peers);

std::optional<ErrorLogLine> parse_error_line(std::string_view line);
std::optional<ErrorLogLine> parse_error_line(std::string_view line, ParseStats &stats);

// "2026/11/30 17:02:01" -> broken-down time; false if malformed.
bool parse_error_time(std::string_view s, std::tm &out);

// nginx writes error.log times in its own local zone, with no offset; the reader's zone may differ
// (`analyze` on another host, nginx in a container with its own TZ). LogZone holds what is known of
// nginx's UTC offset, by trust: an offset the operator gave; the offsets nginx itself writes in
// access lines ($time_local, $time_iso8601); the capturing host's zone recorded in the capture's
// host samples; and last this process's own zone. Offsets are kept as change points in time, so a
// DST change inside the period is followed.
class LogZone {
public:
  enum class Source { operator_given, access_log, capture, this_host };
  void set_operator_offset(int offset_s);
  void learn_from_access_log(std::int64_t epoch_s, int offset_s) { learn(access_, epoch_s, offset_s); }
  void learn_from_capture(std::int64_t epoch_s, int offset_s) { learn(capture_, epoch_s, offset_s); }
  // The instant an error line's clock reading (ErrorLogLine::local_seconds) stands for.
  std::int64_t to_epoch(std::int64_t local_seconds) const;
  std::int64_t to_epoch_ns(const ErrorLogLine &l) const { return to_epoch(l.local_seconds) * 1000000000LL; }
  Source source() const;
  // "+09:00 (from the access log)": for notes.
  std::string describe() const;

private:
  using ChangePoints = std::map<std::int64_t, int>; // epoch second -> offset from then on
  static void learn(ChangePoints &points, std::int64_t epoch_s, int offset_s);
  static int offset_at(const ChangePoints &points, std::int64_t epoch_s);
  std::optional<int> operator_offset_;
  ChangePoints access_, capture_;
};
std::string_view to_string(LogZone::Source s);

// ───────────────────────────── access.log ─────────────────────────────

struct UpstreamAttempt {
  std::string addr; // "127.0.0.1:8081", "unix:/run/php.sock", or an upstream group name when none was live
  std::optional<int> status;
  std::optional<double> connect_time, header_time, response_time;
  int group = 0; // increments at each " : " (internal redirect to another upstream group)
};

struct AccessLogLine {
  std::map<std::string, std::string> vars; // every variable in the format, unescaped
  std::optional<int> status;
  std::optional<double> time;           // epoch seconds ($msec gives ms, else $time_iso8601/$time_local)
  std::optional<int> utc_offset_s;      // nginx's own zone, when the format has $time_local or $time_iso8601
  std::optional<std::int64_t> time_ms;  // epoch milliseconds when $msec is present
  std::optional<pid_t> pid;
  std::optional<std::uint64_t> connection;
  std::string remote_addr, request, method, uri, host;
  std::optional<double> request_time;
  std::vector<UpstreamAttempt> upstream; // zipped $upstream_addr/_status/_connect_time/_header_time/_response_time

  // When nginx wrote the line: $msec to the millisecond, else the $time_* second; nullopt without either.
  std::optional<std::int64_t> epoch_ns() const {
    if (time_ms)
      return *time_ms * 1000000;
    if (time)
      return static_cast<std::int64_t>(*time * 1e9);
    return std::nullopt;
  }

  bool is_502() const { return status == 502; }
  bool is_504() const { return status == 504; }
  bool is_gateway_error() const { return status == 502 || status == 504; }
};

// A compiled log_format. Matching is literal-anchored and non-greedy with bounded backtracking.
class AccessLogParser {
public:
  struct Segment {
    bool is_var = false;
    std::string text;     // literal bytes, or the variable name without '$'
    bool numeric = false; // $status, $pid, $msec, ...: only digits, '.', or "-" match
  };
  static Result<AccessLogParser> compile(std::string_view format, Escape escape = Escape::default_);
  static AccessLogParser combined();
  static AccessLogParser for_format(const LogFormat &f); // falls back to combined on a bad format

  std::optional<AccessLogLine> parse(std::string_view line) const;
  std::optional<AccessLogLine> parse(std::string_view line, ParseStats &stats) const;
  // The cheap look a follower takes before parse(): does the line match the format, and its $status
  // (nullopt without one). No allocation per variable, no unescaping; several times cheaper than
  // parse() on a combined line, and most lines of a healthy proxy need no more than this.
  struct StatusScan {
    bool matched = false;
    std::optional<int> status;
  };
  StatusScan scan_status(std::string_view line) const;
  const std::vector<Segment> &segments() const { return segs_; }
  Escape escape() const { return escape_; }

private:
  AccessLogParser() = default;
  std::vector<Segment> segs_;
  Escape escape_ = Escape::default_;
  // Known once the format is compiled, not looked up again for every line.
  std::size_t n_vars_ = 0;
  std::size_t status_var_ = SIZE_MAX; // index of $status among the variables; SIZE_MAX without one
};

inline constexpr std::string_view kCombinedFormat =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent "
    "\"$http_referer\" \"$http_user_agent\"";

// Splits "a, b : c" into attempts with group numbers. "-" entries become empty / nullopt.
std::vector<std::pair<std::string, int>> split_upstream_list(std::string_view v);
// "30/Nov/2026:17:02:01 +0100" -> epoch seconds (and the offset, 3600, when asked)
std::optional<std::int64_t> parse_time_local(std::string_view s, int *offset_s = nullptr);
// "2026-11-30T17:02:01+01:00" -> epoch seconds
std::optional<std::int64_t> parse_time_iso8601(std::string_view s, int *offset_s = nullptr);

// ───────────────────────────── log tailer ─────────────────────────────

struct TailerOptions {
  bool start_at_end = true;
  std::size_t max_line = 64 * 1024; // longer lines are cut to this and counted
  std::size_t read_chunk = 64 * 1024;
  // Bytes one drain() reads at most (over the current and the rotated file); the rest waits for
  // the next call, so a log that grows without end cannot hold the caller's loop.
  std::size_t max_drain_bytes = 8 * 1024 * 1024;
  // Watch writes (IN_MODIFY) so fd() wakes a poller on every new line. Off when the caller drains
  // on a timer: each inotify event costs the writer (nginx) time in its write() path.
  bool wake_on_write = true;
  // How to open the path (flags as for open(2)); empty: open(2) in why502's own filesystem. Set for
  // an nginx in another mount namespace (base::TargetFs::open), where inotify is not used either:
  // such a log is only drained on a timer.
  std::function<int(const std::string &path, int flags)> open_path;
};

struct TailerStats {
  std::uint64_t lines = 0;
  std::uint64_t bytes = 0;
  std::uint64_t truncated_lines = 0;
  std::uint64_t rotations = 0;     // rename/delete + create: switched to a new inode
  std::uint64_t truncations = 0;   // copytruncate: the file shrank, restarted at 0
  std::uint64_t read_errors = 0;
  std::uint64_t capped_drains = 0; // drain() stopped at max_drain_bytes with more to read
};

// Follows one log file by path, never blocking. Usage: poll() on fd() for POLLIN, then drain().
// drain() may also simply be called periodically (it re-checks the path every call).
class LogTailer {
public:
  using LineCallback = std::function<void(std::string_view line, bool truncated)>;

  explicit LogTailer(std::string path, TailerOptions opts = {});
  ~LogTailer();
  LogTailer(const LogTailer &) = delete;
  LogTailer &operator=(const LogTailer &) = delete;

  int fd() const { return inotify_fd_; } // inotify fd, readable when the file or its directory changed
  // Delivers every complete line available now; returns the number delivered.
  std::size_t drain(const LineCallback &cb);
  const TailerStats &stats() const { return stats_; }
  const std::string &path() const { return path_; }
  bool file_open() const { return cur_.fd >= 0; }
  // Why the file is not open ("PATH: No such file or directory", "PATH: a character device, not a
  // regular file"); empty while it is.
  const std::string &last_error() const { return last_error_; }

  // How long a rotated-away file keeps being read after it last grew (nginx writes to it until
  // every worker has reopened its logs).
  static constexpr int kRetiredIdleMs = 2000;

private:
  struct File {
    int fd = -1;
    dev_t dev = 0;
    ino_t ino = 0;
    off_t offset = 0;
    std::string partial; // bytes of the current unfinished line, at most max_line
    bool overflow = false;
    std::int64_t last_data_ms = 0;
  };
  int open_path(int flags) const;
  bool stat_path(struct stat &st) const;
  bool open_file(File &f, bool at_end);
  void close_file(File &f);
  void read_available(File &f, const LineCallback &cb, std::size_t &n);
  void feed(File &f, const char *p, std::size_t len, const LineCallback &cb, std::size_t &n);
  void flush_partial(File &f, const LineCallback &cb, std::size_t &n);
  void emit_partial(File &f, const LineCallback &cb, std::size_t &n);
  void clear_inotify();
  void watch_dir();
  void watch_file();

  std::string path_;
  TailerOptions opts_;
  TailerStats stats_;
  int inotify_fd_ = -1;
  int dir_wd_ = -1;
  File cur_;
  File old_; // the rotated-away file, drained until idle
  std::vector<char> buf_;
  std::string last_error_;
  std::size_t budget_ = 0; // bytes the current drain() may still read
};

} // namespace why502::nginx
