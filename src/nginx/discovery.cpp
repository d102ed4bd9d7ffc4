// Finding nginx from /proc and reading its config file by file through /proc/PID/root (the
// target's binary is never run: see base/target_fs.h for how its files are read).
//
// nginx rewrites its argv into a title: "nginx: master process /usr/sbin/nginx -c X -g ...",
// "nginx: worker process", "nginx: worker process is shutting down", "nginx: cache manager
// process". The master is the nginx process whose parent is not nginx (during a binary upgrade the
// new master is a child of the old one, so it is recognised by its title instead).
#include "why502/nginx.h"

#include "base/proc.h"
#include "base/target_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

namespace why502::nginx {
namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string read_small(const std::string &path, std::size_t cap = 64 * 1024) {
  return base::read_small_file(path, cap).value_or("");
}

struct ProcInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  std::string comm;
  std::string title; // cmdline with NULs as spaces, trailing ones trimmed
  unsigned long long start = 0;
};

// The innermost pid of /proc/PID/status "NSpid:" (the pid in the process's own PID namespace).
pid_t innermost_pid(const std::string &root, pid_t pid) {
  std::istringstream status(read_small(root + "/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("NSpid:", 0) == 0) {
      std::istringstream ids(line.substr(6));
      long v = 0, last = 0;
      while (ids >> v)
        last = v;
      return last > 0 ? static_cast<pid_t>(last) : pid;
    }
  return pid;
}

std::optional<ProcInfo> read_proc(const std::string &root, pid_t pid) {
  std::string base = root + "/" + std::to_string(pid);
  auto stat = base::read_proc_stat(pid, root);
  if (!stat)
    return std::nullopt;
  ProcInfo p;
  p.pid = pid;
  p.comm = stat->comm;
  p.ppid = stat->ppid;
  p.start = stat->start_time;
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
  for (pid_t pid : base::list_pids(root)) {
    auto p = read_proc(root, pid);
    if (p && (p->comm == "nginx" || starts_with(p->title, "nginx: ")))
      out.push_back(std::move(*p));
  }
  std::sort(out.begin(), out.end(), [](auto &a, auto &b) { return a.pid < b.pid; });
  return out;
}

bool is_master_title(std::string_view t) { return starts_with(t, "nginx: master process"); }

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

// The binary's own strings, read as data: "configure arguments: --prefix=... --conf-path=..." is
// one literal in every nginx build (what `nginx -V` prints), and "nginx version: nginx/X.Y.Z".
struct CompiledIn {
  std::string configure;
  std::string version;
};

CompiledIn read_compiled_in(const std::string &exe_path) {
  CompiledIn c;
  static constexpr std::size_t kMaxBinary = 256u * 1024 * 1024;
  std::string bin = read_small(exe_path, kMaxBinary);
  auto literal_at = [&](std::string_view marker) -> std::string {
    auto p = bin.find(marker);
    if (p == std::string::npos)
      return {};
    auto end = bin.find_first_of(std::string_view("\0\n", 2), p);
    if (end == std::string::npos)
      end = bin.size();
    return bin.substr(p + marker.size(), std::min<std::size_t>(end - p - marker.size(), 64 * 1024));
  };
  c.configure = literal_at("configure arguments:");
  std::string ver = literal_at("nginx version: ");
  auto slash = ver.find('/');
  if (slash != std::string::npos) {
    auto end = ver.find_first_not_of("0123456789.", slash + 1);
    c.version = ver.substr(slash + 1, end == std::string::npos ? std::string::npos : end - slash - 1);
  }
  return c;
}

// The config tree as the master sees it: its filesystem, its credentials.
class TargetConfigSource : public ConfigFileSource {
public:
  explicit TargetConfigSource(const base::TargetFs &fs) : fs_(fs) {}
  std::vector<std::string> glob(const std::string &pattern) override { return fs_.glob(pattern, 1024); }
  Result<std::string> read(const std::string &path) override {
    auto f = fs_.read_file(path, kMaxConfigBytes + 1);
    if (!f.ok())
      return Result<std::string>::failure(f.error);
    return std::move(f.text);
  }

private:
  const base::TargetFs &fs_;
};

void read_config(Instance &in, const DiscoverOptions &opts) {
  CompiledIn built = read_compiled_in(in.exe_path);
  in.version = built.version;
  std::string prefix = configure_arg(built.configure, "prefix");
  std::string conf = configure_arg(built.configure, "conf-path");
  if (!in.prefix.empty())
    prefix = in.prefix;
  if (prefix.empty())
    prefix = "/usr/local/nginx/"; // nginx's own default
  if (prefix.back() != '/')
    prefix += '/';
  in.prefix = prefix;
  if (!in.config_path.empty())
    conf = in.config_path;
  if (conf.empty())
    conf = "conf/nginx.conf";
  conf = resolve_path(conf, prefix);
  in.config_path = conf;

  base::TargetFs fs = base::TargetFs::of_process(in.master_pid, opts.proc_root);
  if (!fs.valid()) {
    in.config_error = fs.error();
    return;
  }
  in.foreign_fs = fs.foreign();
  ConfigParseOptions po;
  po.prefix = prefix;
  po.conf_prefix = dir_of(conf);
  po.default_error_log = configure_arg(built.configure, "error-log-path");
  po.default_access_log = configure_arg(built.configure, "http-log-path");
  if (po.default_error_log.empty())
    po.default_error_log = "logs/error.log";
  if (po.default_access_log.empty())
    po.default_access_log = "logs/access.log";
  TargetConfigSource source(fs);
  in.config = parse_config_files(conf, in.globals, source, po);
  if (in.config.files.empty()) {
    in.config_error = in.config.warnings.empty() ? "no configuration file read" : in.config.warnings.front();
  }
}

MasterTrust trust_of(const std::string &root, pid_t pid) {
  MasterTrust t;
  std::string base = root + "/" + std::to_string(pid);
  std::istringstream status(read_small(base + "/status"));
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Uid:", 0) == 0) {
      std::istringstream ids(line.substr(4));
      long r = -1, e = -1;
      ids >> r >> e;
      t.master_ruid = static_cast<uid_t>(r);
      t.master_euid = static_cast<uid_t>(e);
    }
  struct stat st {};
  // stat() follows the exe magic link to the file itself, in whatever mount namespace it lives.
  if (stat((base + "/exe").c_str(), &st) == 0) {
    t.binary_known = true;
    t.binary_uid = st.st_uid;
    t.binary_gid = st.st_gid;
    t.binary_mode = st.st_mode;
  }
  return t;
}

} // namespace

std::string untrusted_master_reason(const MasterTrust &t) {
  if (t.master_ruid != 0 || t.master_euid != 0)
    return "it runs as uid " + std::to_string(t.master_euid != 0 ? t.master_euid : t.master_ruid) +
           ", not root (a real nginx master starts as root)";
  if (!t.binary_known)
    return "its binary cannot be inspected";
  if (t.binary_uid != 0)
    return "its binary is owned by uid " + std::to_string(t.binary_uid) + ", not root";
  if ((t.binary_mode & S_IWOTH) || ((t.binary_mode & S_IWGRP) && t.binary_gid != 0))
    return "its binary is writable by users other than root";
  return {};
}

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
      out.push_back({p.pid, p.title.find("shutting down") != std::string::npos, innermost_pid(proc_root, p.pid)});
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
  std::vector<std::string> skipped;
  for (const ProcInfo *m : masters) {
    MasterTrust trust = trust_of(opts.proc_root, m->pid);
    if (!nginx_pid && opts.require_trusted_master) {
      std::string why = untrusted_master_reason(trust);
      if (!why.empty()) {
        skipped.push_back("pid " + std::to_string(m->pid) + ": " + why);
        res.warnings.push_back("not watching nginx-looking process " + std::to_string(m->pid) + ": " + why +
                               " (pass --nginx-pid " + std::to_string(m->pid) + " to watch it anyway)");
        continue;
      }
    }
    Instance in;
    in.master_pid = m->pid;
    in.master_uid = trust.master_euid;
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
    in.globals = ma.globals;
    if (opts.read_config)
      read_config(in, opts);
    res.instances.push_back(std::move(in));
  }
  if (res.instances.empty()) {
    std::string list;
    for (const auto &s : skipped)
      list += (list.empty() ? "" : "; ") + s;
    return Result<DiscoveryResult>::failure("no trusted nginx master found (" + list +
                                            "); pass --nginx-pid to watch one of them");
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
