// Lab basics: the stop flag, temp dirs, files, child processes and their cleanup.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "lab/lab_internal.h"
#include "why502/lab.h"

extern char **environ;

namespace why502::lab {

namespace {
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "request_stop must be async-signal-safe");
} // namespace

void request_stop() noexcept { g_stop.store(true, std::memory_order_relaxed); }
bool stop_requested() noexcept { return g_stop.load(std::memory_order_relaxed); }
void clear_stop() noexcept { g_stop.store(false, std::memory_order_relaxed); }

void sleep_for(double seconds) {
  using Clock = std::chrono::steady_clock;
  auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (true) {
    if (stop_requested())
      throw Interrupted();
    auto now = Clock::now();
    if (now >= end)
      return;
    Clock::duration step = std::min<Clock::duration>(end - now, std::chrono::milliseconds(20));
    std::this_thread::sleep_for(step);
  }
}

std::string errno_text(int err) { return std::string(strerror(err)); }

// ───────────────────────────── files ─────────────────────────────

TempDir::TempDir(std::string_view prefix) {
  const char *tmp = getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + std::string(prefix) + ".XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data()))
    throw Error("cannot create a temporary directory " + templ + ": " + errno_text(errno));
  path_ = buf.data();
  // nginx workers and php-fpm pools may drop privileges; let them read/write here.
  chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  // WHY502_KEEP_TMP=1 keeps every lab directory (logs, verdicts, captures) for a post-mortem.
  if (const char *keep = getenv("WHY502_KEEP_TMP"); keep && *keep && std::string_view(keep) != "0")
    return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(std::string_view name, std::string_view content, unsigned mode) const {
  std::string p = file(name);
  write_file(p, content);
  chmod(p.c_str(), mode);
  return p;
}

void write_file(const std::string &path, std::string_view content) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f)
    throw Error("cannot write " + path + ": " + errno_text(errno));
  f << content;
  f.close();
  if (!f)
    throw Error("cannot write " + path);
}

std::string read_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    return {};
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> read_lines(const std::string &path) {
  std::vector<std::string> out;
  std::istringstream ss(read_file(path));
  std::string line;
  while (std::getline(ss, line))
    if (!line.empty())
      out.push_back(line);
  return out;
}

namespace {

uint16_t any_free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw Error("socket: " + errno_text(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) != 0) {
    int e = errno;
    close(fd);
    throw Error("cannot find a free port: " + errno_text(e));
  }
  close(fd);
  return ntohs(a.sin_port);
}

} // namespace

// A port is free only until someone binds it: two calls in a row can get the same one (a test once
// gave its "closed" upstream port to its own proxy, which then proxied to itself). So a port handed
// out recently in this process is never handed out again.
uint16_t free_port() {
  static std::mutex mu;
  static std::deque<uint16_t> recent;
  constexpr size_t kRemembered = 1024;
  std::lock_guard lock(mu);
  for (int attempt = 0; attempt < 64; ++attempt) {
    uint16_t port = any_free_port();
    if (std::find(recent.begin(), recent.end(), port) != recent.end())
      continue;
    recent.push_back(port);
    if (recent.size() > kRemembered)
      recent.pop_front();
    return port;
  }
  throw Error("cannot find a free port not handed out already");
}

// ───────────────────────────── addresses ─────────────────────────────

std::optional<SockAddr> parse_address(const std::string &address) {
  SockAddr out{};
  if (address.rfind("unix:", 0) == 0) {
    std::string path = address.substr(5);
    if (path.empty() || path.size() >= sizeof(out.un.sun_path))
      return std::nullopt;
    out.un.sun_family = AF_UNIX;
    memcpy(out.un.sun_path, path.c_str(), path.size() + 1);
    out.len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return out;
  }
  auto colon = address.rfind(':');
  if (colon == std::string::npos)
    return std::nullopt;
  if (address.front() == '[') {
    // "[::1]:8080": IPv6, bracketed as nginx writes it.
    if (colon < 2 || address[colon - 1] != ']')
      return std::nullopt;
    out.in6.sin6_family = AF_INET6;
    try {
      unsigned long port = std::stoul(address.substr(colon + 1));
      if (port > 65535)
        return std::nullopt;
      out.in6.sin6_port = htons(uint16_t(port));
    } catch (const std::exception &) {
      return std::nullopt;
    }
    if (inet_pton(AF_INET6, address.substr(1, colon - 2).c_str(), &out.in6.sin6_addr) != 1)
      return std::nullopt;
    out.len = sizeof(sockaddr_in6);
    return out;
  }
  out.in.sin_family = AF_INET;
  try {
    unsigned long port = std::stoul(address.substr(colon + 1));
    if (port > 65535)
      return std::nullopt;
    out.in.sin_port = htons(uint16_t(port));
  } catch (const std::exception &) {
    return std::nullopt;
  }
  if (inet_pton(AF_INET, address.substr(0, colon).c_str(), &out.in.sin_addr) != 1)
    return std::nullopt;
  out.len = sizeof(sockaddr_in);
  return out;
}

bool wait_listening(const std::string &address, double timeout_s) {
  auto sa = parse_address(address);
  if (!sa)
    throw Error("bad address " + address);
  return wait_until(
      [&] {
        int fd = socket(sa->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
          return false;
        bool ok = connect(fd, sa->addr(), sa->len) == 0;
        close(fd);
        return ok;
      },
      timeout_s, 0.05);
}

// ───────────────────────────── processes ─────────────────────────────

namespace {

// Everything the child needs, prepared before fork (no allocation after fork in a threaded parent).
struct ExecPlan {
  std::vector<std::string> argv_s, env_s;
  std::vector<char *> argv, envp;
  void finish() {
    for (auto &a : argv_s)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto &e : env_s)
      envp.push_back(e.data());
    envp.push_back(nullptr);
  }
};

// Undo what a parent may have changed that exec would keep: blocked signals and ignored ones
// (the demo blocks SIGINT for sigwait; nginx must still get its signals).
void reset_signals_in_child() {
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int s : {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM, SIGSEGV})
    ::signal(s, SIG_DFL);
}

} // namespace

void prepare_child(bool new_group) {
  reset_signals_in_child();
  if (new_group)
    setpgid(0, 0);
  // Die with the creator (Ctrl-C, a killed test): no nginx left listening in an orphaned netns.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
}

Process Process::spawn(const std::vector<std::string> &argv, const SpawnOptions &opts) {
  if (argv.empty())
    throw Error("spawn: empty argv");
  ExecPlan plan;
  plan.argv_s = argv;
  std::map<std::string, std::string> env;
  for (char **e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos)
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (auto &[k, v] : opts.env)
    env[k] = v;
  for (auto &[k, v] : env)
    plan.env_s.push_back(k + "=" + v);
  plan.finish();
  std::string out_path = opts.stdout_path.empty() ? "/dev/null" : opts.stdout_path;
  std::string err_path = opts.stderr_path.empty() ? out_path : opts.stderr_path;

  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) != 0)
    throw Error("pipe: " + errno_text(errno));
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(errpipe[0]);
    close(errpipe[1]);
    throw Error("fork: " + errno_text(e));
  }
  if (pid == 0) {
    close(errpipe[0]);
    prepare_child(opts.new_process_group);
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err = err_path == out_path ? out : open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0 || err < 0) {
      int e = errno;
      (void)!write(errpipe[1], &e, sizeof(e));
      _exit(127);
    }
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    if (!opts.cwd.empty() && chdir(opts.cwd.c_str()) != 0) {
      int e = errno;
      (void)!write(errpipe[1], &e, sizeof(e));
      _exit(127);
    }
    execve(plan.argv[0], plan.argv.data(), plan.envp.data());
    int e = errno;
    (void)!write(errpipe[1], &e, sizeof(e));
    _exit(127);
  }
  close(errpipe[1]);
  int child_errno = 0;
  ssize_t n;
  do
    n = read(errpipe[0], &child_errno, sizeof(child_errno));
  while (n < 0 && errno == EINTR);
  close(errpipe[0]);
  if (n == sizeof(child_errno)) {
    waitpid(pid, nullptr, 0);
    throw Error("cannot start " + argv[0] + ": " + errno_text(child_errno));
  }
  return Process(pid, opts.new_process_group);
}

Process::~Process() {
  if (pid_ > 0 && !status_)
    stop(SIGTERM, 3.0);
}

Process::Process(Process &&o) noexcept : pid_(o.pid_), group_(o.group_), status_(o.status_) { o.pid_ = -1; }

Process &Process::operator=(Process &&o) noexcept {
  if (this != &o) {
    if (pid_ > 0 && !status_)
      stop(SIGTERM, 3.0);
    pid_ = o.pid_;
    group_ = o.group_;
    status_ = o.status_;
    o.pid_ = -1;
  }
  return *this;
}

bool Process::running() {
  if (pid_ <= 0 || status_)
    return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    return false;
  }
  return r == 0;
}

void Process::signal(int sig) const {
  if (pid_ > 0 && !status_)
    ::kill(pid_, sig);
}

// Never throws (destructors use it): polls waitpid without the stop flag.
std::optional<int> Process::wait(double timeout_s) {
  if (pid_ <= 0)
    return std::nullopt;
  if (status_)
    return status_;
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (true) {
    int st;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      status_ = r == pid_ ? st : 0;
      return status_;
    }
    if (std::chrono::steady_clock::now() >= end)
      return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int Process::stop(int sig, double timeout_s) {
  if (pid_ <= 0)
    return 0;
  if (!status_) {
    ::kill(pid_, sig);
    if (!wait(timeout_s)) {
      ::kill(pid_, SIGKILL);
      wait(10.0);
    }
  }
  // Grandchildren (nginx workers, gunicorn/php-fpm workers) left behind by a killed master.
  if (group_)
    ::kill(-pid_, SIGKILL);
  return status_.value_or(0);
}

std::vector<pid_t> child_pids(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  std::string taskdir = "/proc/" + std::to_string(pid) + "/task";
  for (auto &t : std::filesystem::directory_iterator(taskdir, ec)) {
    std::istringstream ss(read_file(t.path().string() + "/children"));
    pid_t c;
    while (ss >> c)
      out.push_back(c);
  }
  return out;
}

bool process_alive(pid_t pid) {
  if (pid <= 0)
    return false;
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty())
    return false;
  auto rp = stat.rfind(')');
  if (rp == std::string::npos || rp + 2 >= stat.size())
    return false;
  char state = stat[rp + 2];
  return state != 'Z' && state != 'X';
}

bool kill_and_wait(pid_t pid, int sig, double timeout_s) {
  if (::kill(pid, sig) != 0 && errno == ESRCH)
    return true;
  return wait_until([&] { return !process_alive(pid); }, timeout_s, 0.01);
}

CommandResult run_command(const std::vector<std::string> &argv, double timeout_s) {
  CommandResult res;
  if (argv.empty())
    return res;
  ExecPlan plan;
  plan.argv_s = argv;
  plan.finish();
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0)
    throw Error("pipe: " + errno_text(errno));
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(out[0]);
    close(out[1]);
    throw Error("fork: " + errno_text(e));
  }
  if (pid == 0) {
    prepare_child(false);
    int in = open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    execvp(plan.argv[0], plan.argv.data());
    dprintf(2, "cannot run %s: %s\n", plan.argv[0], strerror(errno));
    _exit(127);
  }
  close(out[1]);
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  char buf[4096];
  while (true) {
    pollfd p{out[0], POLLIN, 0};
    int r = poll(&p, 1, 50);
    if (r > 0) {
      ssize_t n = read(out[0], buf, sizeof(buf));
      if (n > 0) {
        res.output.append(buf, size_t(n));
        continue;
      }
      if (n == 0)
        break;
      if (errno != EINTR && errno != EAGAIN)
        break;
    }
    if (std::chrono::steady_clock::now() >= end) {
      ::kill(pid, SIGKILL);
      res.output += "\n(timed out)";
      break;
    }
  }
  close(out[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  res.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return res;
}

std::string check_command(const std::vector<std::string> &argv, double timeout_s) {
  CommandResult r = run_command(argv, timeout_s);
  if (r.exit_code != 0) {
    std::string cmd;
    for (auto &a : argv)
      cmd += (cmd.empty() ? "" : " ") + a;
    std::string out = r.output;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
      out.pop_back();
    for (auto &c : out)
      if (c == '\n')
        c = ' ';
    throw Error(cmd + " failed (exit " + std::to_string(r.exit_code) + "): " + out);
  }
  return r.output;
}

Process spawn_server(const std::vector<std::string> &argv, const std::string &address, const SpawnOptions &opts,
                     double timeout_s) {
  Process p = Process::spawn(argv, opts);
  bool up = wait_until(
      [&] {
        if (!p.running())
          return true;
        auto sa = parse_address(address);
        int fd = socket(sa->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok = fd >= 0 && connect(fd, sa->addr(), sa->len) == 0;
        if (fd >= 0)
          close(fd);
        return ok;
      },
      timeout_s, 0.05);
  if (!p.running()) {
    std::string log = opts.stdout_path.empty() ? "" : read_file(opts.stdout_path);
    if (log.size() > 600)
      log = log.substr(log.size() - 600);
    throw Error(argv[0] + " exited before listening on " + address + (log.empty() ? "" : ": " + log));
  }
  if (!up)
    throw Error(argv[0] + " did not listen on " + address + " within " + std::to_string(int(timeout_s)) + " s");
  return p;
}

} // namespace why502::lab
