// Faults, each undone on destruction: a private netns, iptables rules, sysctls, memory cgroups.
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <thread>

#include "lab/lab_internal.h"
#include "why502/lab.h"

namespace why502::lab {

void enter_private_network() {
  if (unshare(CLONE_NEWNET) != 0)
    throw Error("cannot create a private network namespace (unshare CLONE_NEWNET): " + errno_text(errno) +
                " — run as root");
  // A new netns has only `lo`, and it is down: SIOCSIFFLAGS is enough, no netlink needed.
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw Error("socket: " + errno_text(errno));
  ifreq ifr{};
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
    int e = errno;
    close(fd);
    throw Error("SIOCGIFFLAGS lo: " + errno_text(e));
  }
  ifr.ifr_flags = short(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
    int e = errno;
    close(fd);
    throw Error("cannot bring lo up: " + errno_text(e));
  }
  close(fd);
}

// ───────────────────────────── iptables ─────────────────────────────

IptablesRule::IptablesRule(std::string chain, std::vector<std::string> rule, std::string table, bool insert)
    : chain_(std::move(chain)), table_(std::move(table)), rule_(std::move(rule)) {
  std::vector<std::string> argv{"iptables", "-w", "-t", table_, insert ? "-I" : "-A", chain_};
  argv.insert(argv.end(), rule_.begin(), rule_.end());
  check_command(argv);
  active_ = true;
}

IptablesRule::~IptablesRule() {
  if (!active_)
    return;
  std::vector<std::string> argv{"iptables", "-w", "-t", table_, "-D", chain_};
  argv.insert(argv.end(), rule_.begin(), rule_.end());
  try {
    run_command(argv);
  } catch (...) {
  }
}

std::string IptablesRule::describe() const {
  std::string s = "iptables -t " + table_ + " " + chain_;
  for (auto &r : rule_)
    s += " " + r;
  return s;
}

// ───────────────────────────── sysctl ─────────────────────────────

std::string Sysctl::path_of(std::string_view name) {
  if (!name.empty() && name.front() == '/')
    return std::string(name);
  std::string p = "/proc/sys/" + std::string(name);
  for (size_t i = 10; i < p.size(); ++i)
    if (p[i] == '.')
      p[i] = '/';
  return p;
}

std::string Sysctl::read(std::string_view name) {
  std::string v = read_file(path_of(name));
  while (!v.empty() && (v.back() == '\n' || v.back() == ' '))
    v.pop_back();
  return v;
}

namespace {
void write_proc(const std::string &path, const std::string &value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error("cannot open " + path + ": " + errno_text(errno));
  ssize_t n = write(fd, value.data(), value.size());
  int e = errno;
  close(fd);
  if (n != ssize_t(value.size()))
    throw Error("cannot write '" + value + "' to " + path + ": " + errno_text(e));
}
} // namespace

Sysctl::Sysctl(std::string name, std::string value) : path_(path_of(name)) {
  if (access(path_.c_str(), F_OK) != 0)
    throw Error("no such sysctl: " + name);
  old_ = read(path_);
  write_proc(path_, value);
}

Sysctl::~Sysctl() {
  try {
    write_proc(path_, old_);
  } catch (...) {
  }
}

// ───────────────────────────── memory cgroup (v1) ─────────────────────────────

MemoryCgroup::MemoryCgroup(std::string name, std::uint64_t limit_bytes, std::string root)
    : root_(std::move(root)), path_(root_ + "/why502-" + name) {
  if (access((root_ + "/cgroup.procs").c_str(), F_OK) != 0)
    throw Error("no cgroup v1 memory controller at " + root_);
  // A cgroup left over by a killed run is reused (its limit is rewritten below).
  if (mkdir(path_.c_str(), 0755) != 0 && errno != EEXIST)
    throw Error("cannot create " + path_ + ": " + errno_text(errno));
  write_proc(path_ + "/memory.limit_in_bytes", std::to_string(limit_bytes));
}

MemoryCgroup::~MemoryCgroup() {
  try {
    for (pid_t p : pids())
      write_proc(root_ + "/cgroup.procs", std::to_string(p));
  } catch (...) {
  }
  // rmdir can fail with EBUSY while the last task is still exiting.
  for (int i = 0; i < 100 && rmdir(path_.c_str()) != 0 && errno == EBUSY; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void MemoryCgroup::add(pid_t pid) { write_proc(path_ + "/cgroup.procs", std::to_string(pid)); }

std::vector<pid_t> MemoryCgroup::pids() const {
  std::vector<pid_t> out;
  std::istringstream ss(read_file(path_ + "/cgroup.procs"));
  pid_t p;
  while (ss >> p)
    out.push_back(p);
  return out;
}

std::uint64_t MemoryCgroup::oom_kills() const {
  std::istringstream ss(read_file(path_ + "/memory.oom_control"));
  std::string key;
  std::uint64_t v;
  while (ss >> key >> v)
    if (key == "oom_kill")
      return v;
  return 0;
}

// ───────────────────────────── idle connections ─────────────────────────────

IdleConnections::IdleConnections(const std::string &address, int n) {
  auto sa = parse_address(address);
  if (!sa)
    throw Error("bad address " + address);
  for (int i = 0; i < n; ++i) {
    int fd = socket(sa->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
      throw Error("socket: " + errno_text(errno));
    if (connect(fd, sa->addr(), sa->len) != 0 && errno != EINPROGRESS && errno != EAGAIN) {
      int e = errno;
      close(fd);
      throw Error("connect to " + address + ": " + errno_text(e));
    }
    fds_.push_back(fd);
  }
}

IdleConnections::~IdleConnections() {
  for (int fd : fds_)
    close(fd);
}

std::vector<uint16_t> IdleConnections::local_ports() const {
  std::vector<uint16_t> out;
  for (int fd : fds_) {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) == 0 && a.sin_family == AF_INET)
      out.push_back(ntohs(a.sin_port));
  }
  return out;
}

} // namespace why502::lab
