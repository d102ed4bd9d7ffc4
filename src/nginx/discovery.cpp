// Finding nginx from /proc and reading its config through `<exe> -T`.
//
// nginx rewrites its argv into a title: "nginx: master process /usr/sbin/nginx -c X -g ...",
// "nginx: worker process", "nginx: worker process is shutting down", "nginx: cache manager
// process". The master is the nginx process whose parent is not nginx (during a binary upgrade the
// new master is a child of the old one, so it is recognised by its title instead).
#include "why502/nginx.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

namespace why502::nginx {
namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string read_small(const std::string &path, std::size_t cap = 64 * 1024) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return {};
  std::string out;
  char buf[4096];
  while (out.size() < cap) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(r));
  }
  ::close(fd);
  return out;
}

struct ProcInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  std::string comm;
  std::string title; // cmdline with NULs as spaces, trailing ones trimmed
  unsigned long long start = 0;
};

std::optional<ProcInfo> read_proc(const std::string &root, pid_t pid) {
  std::string base = root + "/" + std::to_string(pid);
  std::string stat = read_small(base + "/stat");
  // "pid (comm) S ppid ..." — comm may contain spaces and ')', so split at the last ')'
  auto lp = stat.find('(');
  auto rp = stat.rfind(')');
  if (lp == std::string::npos || rp == std::string::npos || rp < lp)
    return std::nullopt;
  ProcInfo p;
  p.pid = pid;
  p.comm = stat.substr(lp + 1, rp - lp - 1);
  std::istringstream rest(stat.substr(rp + 2));
  std::string state;
  long long ppid = 0;
  rest >> state >> ppid;
  p.ppid = static_cast<pid_t>(ppid);
  // field 22 is starttime; we consumed fields 3 and 4
  std::string skip;
  for (int i = 5; i < 22 && rest; ++i)
    rest >> skip;
  rest >> p.start;
  std::string cmd = read_small(base + "/cmdline");
  for (char &c : cmd)
    if (c == '\0')
      c = ' ';
  while (!cmd.empty() && cmd.back() == ' ')
    cmd.pop_back();
  p.title = cmd;
  return p;
}

std::vector<ProcInfo> list_nginx(const std::string &root) {
  std::vector<ProcInfo> out;
  DIR *d = opendir(root.c_str());
  if (!d)
    return out;
  while (dirent *e = readdir(d)) {
    char *end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end)
      continue;
    auto p = read_proc(root, static_cast<pid_t>(pid));
    if (p && (p->comm == "nginx" || starts_with(p->title, "nginx: ")))
      out.push_back(std::move(*p));
  }
  closedir(d);
  std::sort(out.begin(), out.end(), [](auto &a, auto &b) { return a.pid < b.pid; });
  return out;
}

bool is_master_title(std::string_view t) { return starts_with(t, "nginx: master process"); }

struct CmdResult {
  int status = -1;
  std::string out, err;
  bool timed_out = false;
};

// fork/exec with both pipes drained through poll(); killed after timeout_ms.
CmdResult run(const std::vector<std::string> &argv, int timeout_ms) {
  CmdResult res;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0)
    return res;
  if (pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return res;
  }
  std::vector<char *> args;
  for (auto &a : argv)
    args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0)
      dup2(devnull, 0);
    execv(args[0], args.data());
    _exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  if (pid < 0) {
    ::close(out[0]);
    ::close(err[0]);
    return res;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[8192];
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      res.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    int r = ::poll(fds, 2, static_cast<int>(left));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        std::string &dst = i == 0 ? res.out : res.err;
        if (dst.size() < 64u * 1024 * 1024)
          dst.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto &f : fds)
    if (f.fd >= 0)
      ::close(f.fd);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  res.status = st;
  return res;
}

std::string configure_arg(std::string_view v_output, std::string_view name) {
  std::string key = "--" + std::string(name) + "=";
  auto p = v_output.find(key);
  if (p == std::string_view::npos)
    return {};
  auto start = p + key.size();
  auto end = v_output.find_first_of(" \n", start);
  return std::string(v_output.substr(start, end == std::string_view::npos ? end : end - start));
}

std::string dir_of(const std::string &p) {
  auto i = p.rfind('/');
  return i == std::string::npos ? std::string() : p.substr(0, i + 1);
}

void read_config(Instance &in, const DiscoverOptions &opts) {
  // `-V` gives the compiled-in prefix, conf path and default log paths.
  CmdResult v = run({in.exe_path, "-V"}, opts.command_timeout_ms);
  std::string vout = v.err + v.out;
  std::string prefix = configure_arg(vout, "prefix");
  std::string conf = configure_arg(vout, "conf-path");
  if (!in.prefix.empty())
    prefix = in.prefix;
  if (prefix.empty())
    prefix = "/usr/local/nginx/";
  if (prefix.back() != '/')
    prefix += '/';
  in.prefix = prefix;
  if (!in.config_path.empty())
    conf = resolve_path(in.config_path, prefix);
  if (conf.empty())
    conf = prefix + "conf/nginx.conf";
  conf = resolve_path(conf, prefix);
  in.config_path = conf;

  std::vector<std::string> argv = {in.exe_path, "-T", "-q"};
  for (std::size_t i = 0; i < in.args.size(); ++i)
    argv.push_back(in.args[i]);
  CmdResult t = run(argv, opts.command_timeout_ms);
  if (t.timed_out) {
    in.config_error = "`nginx -T` timed out";
    return;
  }
  if (!WIFEXITED(t.status) || WEXITSTATUS(t.status) != 0 || t.out.empty()) {
    std::string e = t.err;
    while (!e.empty() && (e.back() == '\n' || e.back() == ' '))
      e.pop_back();
    in.config_error = "`nginx -T` failed" + (e.empty() ? std::string() : ": " + e);
    if (t.out.empty())
      return;
  }
  in.config_dump = std::move(t.out);
  ConfigParseOptions po;
  po.prefix = prefix;
  po.conf_prefix = dir_of(conf);
  po.default_error_log = configure_arg(vout, "error-log-path");
  po.default_access_log = configure_arg(vout, "http-log-path");
  if (po.default_error_log.empty())
    po.default_error_log = "logs/error.log";
  if (po.default_access_log.empty())
    po.default_access_log = "logs/access.log";
  in.config = parse_config(in.config_dump, po);
}

} // namespace

MasterArgs parse_master_title(std::string_view t) {
  MasterArgs a;
  static constexpr std::string_view kPrefix = "nginx: master process ";
  if (starts_with(t, kPrefix))
    t.remove_prefix(kPrefix.size());
  // split by spaces; the -g value runs until the next token that is a known flag
  std::vector<std::string> tok;
  std::size_t i = 0;
  while (i < t.size()) {
    while (i < t.size() && t[i] == ' ')
      ++i;
    std::size_t j = t.find(' ', i);
    if (j == std::string_view::npos)
      j = t.size();
    if (j > i)
      tok.emplace_back(t.substr(i, j - i));
    i = j;
  }
  if (tok.empty())
    return a;
  a.binary = tok[0];
  auto is_flag = [](const std::string &s) {
    return s.size() == 2 && s[0] == '-' && std::string_view("cpgesqtTvV?h").find(s[1]) != std::string_view::npos;
  };
  for (std::size_t k = 1; k < tok.size(); ++k) {
    const std::string &f = tok[k];
    if ((f == "-c" || f == "-p") && k + 1 < tok.size()) {
      (f == "-c" ? a.conf : a.prefix) = tok[++k];
    } else if (f == "-g") {
      std::string g;
      while (k + 1 < tok.size() && !is_flag(tok[k + 1])) {
        if (!g.empty())
          g += ' ';
        g += tok[++k];
      }
      a.globals = g;
    } else if (starts_with(f, "-c") && f.size() > 2) {
      a.conf = f.substr(2);
    } else if (starts_with(f, "-p") && f.size() > 2) {
      a.prefix = f.substr(2);
    }
  }
  return a;
}

std::vector<Worker> scan_workers(pid_t master_pid, const std::string &proc_root) {
  std::vector<Worker> out;
  // /proc/PID/task/PID/children lists children without a full scan (CONFIG_PROC_CHILDREN);
  // fall back to scanning when absent.
  std::string kids = read_small(proc_root + "/" + std::to_string(master_pid) + "/task/" +
                                std::to_string(master_pid) + "/children");
  std::vector<ProcInfo> procs;
  if (!kids.empty()) {
    std::istringstream in(kids);
    long pid;
    while (in >> pid)
      if (auto p = read_proc(proc_root, static_cast<pid_t>(pid)))
        procs.push_back(std::move(*p));
  } else {
    procs = list_nginx(proc_root);
  }
  for (const auto &p : procs) {
    if (p.ppid != master_pid)
      continue;
    if (starts_with(p.title, "nginx: worker process")) {
      out.push_back({p.pid, p.title.find("shutting down") != std::string::npos});
    }
  }
  std::sort(out.begin(), out.end(), [](auto &a, auto &b) { return a.pid < b.pid; });
  return out;
}

Result<DiscoveryResult> discover(std::optional<pid_t> nginx_pid, const DiscoverOptions &opts) {
  DiscoveryResult res;
  auto all = list_nginx(opts.proc_root);
  if (all.empty())
    return Result<DiscoveryResult>::failure("nginx is not running (no nginx process in " +
                                            opts.proc_root + ")");
  auto find = [&](pid_t pid) -> const ProcInfo * {
    for (const auto &p : all)
      if (p.pid == pid)
        return &p;
    return nullptr;
  };
  std::vector<const ProcInfo *> masters;
  for (const auto &p : all) {
    const ProcInfo *parent = find(p.ppid);
    bool parent_is_nginx = parent && parent->comm == "nginx";
    if (is_master_title(p.title) || (!parent_is_nginx && !starts_with(p.title, "nginx: worker")))
      masters.push_back(&p);
  }
  if (nginx_pid) {
    const ProcInfo *p = find(*nginx_pid);
    if (!p)
      return Result<DiscoveryResult>::failure("pid " + std::to_string(*nginx_pid) +
                                              " is not an nginx process");
    const ProcInfo *m = is_master_title(p->title) ? p : find(p->ppid);
    if (!m || std::find(masters.begin(), masters.end(), m) == masters.end())
      m = p;
    masters = {m};
  }
  // old master first: after USR2 the old one started earlier
  std::sort(masters.begin(), masters.end(),
            [](auto *a, auto *b) { return a->start != b->start ? a->start < b->start : a->pid < b->pid; });
  for (const ProcInfo *m : masters) {
    Instance in;
    in.master_pid = m->pid;
    in.start_time = m->start;
    in.workers = scan_workers(m->pid, opts.proc_root);
    for (const auto &p : all)
      if (p.ppid == m->pid && (starts_with(p.title, "nginx: cache")))
        in.helper_pids.push_back(p.pid);
    in.exe_path = opts.proc_root + "/" + std::to_string(m->pid) + "/exe";
    char buf[4096];
    ssize_t n = readlink(in.exe_path.c_str(), buf, sizeof buf - 1);
    if (n > 0) {
      in.binary.assign(buf, static_cast<std::size_t>(n));
      static constexpr std::string_view kDel = " (deleted)";
      if (in.binary.size() > kDel.size() &&
          in.binary.compare(in.binary.size() - kDel.size(), kDel.size(), kDel) == 0)
        in.binary_deleted = true;
    } else {
      res.warnings.push_back("cannot read " + in.exe_path + ": " + std::strerror(errno) +
                             " (not root?)");
    }
    MasterArgs ma = parse_master_title(m->title);
    in.config_path = ma.conf;
    in.prefix = ma.prefix;
    if (!ma.conf.empty()) {
      in.args.push_back("-c");
      in.args.push_back(ma.conf);
    }
    if (!ma.prefix.empty()) {
      in.args.push_back("-p");
      in.args.push_back(ma.prefix);
    }
    if (!ma.globals.empty()) {
      in.args.push_back("-g");
      in.args.push_back(ma.globals);
    }
    if (opts.read_config) {
      if (n > 0)
        read_config(in, opts);
      else
        in.config_error = "binary unreadable";
    }
    res.instances.push_back(std::move(in));
  }
  if (res.instances.size() > 1)
    res.warnings.push_back(std::to_string(res.instances.size()) +
                           " nginx masters (binary upgrade in progress?)");
  return res;
}

WorkerTracker::WorkerTracker(pid_t master_pid, std::string proc_root)
    : master_(master_pid), proc_root_(std::move(proc_root)) {}

bool WorkerTracker::master_alive() const {
  auto p = read_proc(proc_root_, master_);
  return p && (p->comm == "nginx" || starts_with(p->title, "nginx: "));
}

WorkerTracker::Change WorkerTracker::rescan() {
  Change c;
  std::vector<Worker> now = scan_workers(master_, proc_root_);
  auto has = [](const std::vector<Worker> &v, pid_t pid) {
    return std::any_of(v.begin(), v.end(), [&](const Worker &w) { return w.pid == pid; });
  };
  for (const auto &w : now)
    if (!has(workers_, w.pid))
      c.added.push_back(w.pid);
  for (const auto &w : workers_)
    if (!has(now, w.pid))
      c.removed.push_back(w.pid);
  std::vector<pid_t> active;
  for (const auto &w : now)
    if (!w.shutting_down)
      active.push_back(w.pid);
  auto in = [](const std::vector<pid_t> &v, pid_t p) {
    return std::find(v.begin(), v.end(), p) != v.end();
  };
  if (first_) {
    baseline_ = active;
  } else {
    bool baseline_alive = false;
    bool fresh = false;
    for (pid_t p : active) {
      if (in(baseline_, p))
        baseline_alive = true;
      else
        fresh = true;
    }
    if (!baseline_alive && fresh && !baseline_.empty()) {
      c.reloaded = true; // the whole old generation is gone or shutting down
      baseline_ = active;
    } else if (baseline_alive && active.size() <= baseline_.size()) {
      baseline_ = active; // a respawn, or nothing changed: no surplus generation in flight
    } else if (baseline_.empty()) {
      baseline_ = active;
    }
    // else: old and new generations both active (reload in progress): keep the old baseline
  }
  first_ = false;
  workers_ = std::move(now);
  return c;
}

} // namespace why502::nginx
