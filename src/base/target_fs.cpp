#include "base/target_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <utility>

namespace why502::base {
namespace {

std::string read_proc_text(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return {};
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0 || out.size() > (1u << 20))
      break;
    out.append(buf, static_cast<std::size_t>(r));
  }
  ::close(fd);
  return out;
}

// Raw syscalls on purpose: glibc's setgroups() changes every thread of the process (setxid
// broadcast); the kernel's is per thread, which is what a scoped switch needs.
long raw_setgroups(std::size_t n, const gid_t *list) { return syscall(SYS_setgroups, n, list); }
uid_t raw_setfsuid(uid_t u) { return static_cast<uid_t>(syscall(SYS_setfsuid, u)); }
gid_t raw_setfsgid(gid_t g) { return static_cast<gid_t>(syscall(SYS_setfsgid, g)); }

bool has_wildcard(std::string_view s) { return s.find_first_of("*?[") != std::string_view::npos; }

std::vector<std::string> split_path(std::string_view p) {
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (i < p.size()) {
    std::size_t j = p.find('/', i);
    if (j == std::string_view::npos)
      j = p.size();
    if (j > i)
      parts.emplace_back(p.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

} // namespace

std::optional<FsCreds> parse_fs_creds(const std::string &status) {
  FsCreds c;
  bool have_uid = false, have_gid = false;
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line)) {
    auto ids = [&](std::string_view key) -> std::vector<long> {
      std::vector<long> v;
      std::istringstream f(line.substr(key.size()));
      long x;
      while (f >> x)
        v.push_back(x);
      return v;
    };
    if (line.rfind("Uid:", 0) == 0) {
      auto v = ids("Uid:");
      if (v.size() >= 4 && v[3] >= 0) {
        c.uid = static_cast<uid_t>(v[3]);
        have_uid = true;
      }
    } else if (line.rfind("Gid:", 0) == 0) {
      auto v = ids("Gid:");
      if (v.size() >= 4 && v[3] >= 0) {
        c.gid = static_cast<gid_t>(v[3]);
        have_gid = true;
      }
    } else if (line.rfind("Groups:", 0) == 0) {
      for (long g : ids("Groups:"))
        if (g >= 0)
          c.groups.push_back(static_cast<gid_t>(g));
    }
  }
  if (!have_uid || !have_gid)
    return std::nullopt;
  return c;
}

ScopedFsCreds::ScopedFsCreds(const FsCreds &creds) {
  if (creds.is_root() || geteuid() != 0)
    return; // reading as root for root, or we are no more privileged than ourselves
  int n = getgroups(0, nullptr);
  if (n > 0) {
    saved_groups_.resize(static_cast<std::size_t>(n));
    n = getgroups(n, saved_groups_.data());
    saved_groups_.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  }
  if (raw_setgroups(creds.groups.size(), creds.groups.data()) != 0) {
    ok_ = false; // CAP_SETGID already dropped: refuse rather than read as root
    return;
  }
  raw_setfsgid(creds.gid);
  raw_setfsuid(creds.uid);
  active_ = true;
  // setfsuid/setfsgid report no errors: read the values back.
  if (raw_setfsuid(static_cast<uid_t>(-1)) != creds.uid || raw_setfsgid(static_cast<gid_t>(-1)) != creds.gid)
    ok_ = false;
}

ScopedFsCreds::~ScopedFsCreds() {
  if (!active_)
    return;
  // fsuid back to 0 first: that re-enables the filesystem capabilities from the permitted set.
  raw_setfsuid(0);
  raw_setfsgid(0);
  raw_setgroups(saved_groups_.size(), saved_groups_.data());
}

TargetFs TargetFs::of_process(pid_t pid, const std::string &proc_root) {
  TargetFs t;
  std::string base = proc_root + "/" + std::to_string(pid);
  t.root_label_ = base + "/root";
  auto creds = parse_fs_creds(read_proc_text(base + "/status"));
  if (!creds) {
    t.error_ = "cannot read the credentials of pid " + std::to_string(pid);
    return t;
  }
  t.creds_ = *creds;
  t.root_fd_ = ::open(t.root_label_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (t.root_fd_ < 0) {
    t.error_ = "cannot open " + t.root_label_ + ": " + std::strerror(errno);
    return t;
  }
  // Another mount namespace (a container, or systemd's PrivateTmp=) or another root (chroot):
  // either way the same path may name another file there.
  struct stat theirs {}, ours{}, their_ns{}, our_ns{};
  if (fstat(t.root_fd_, &theirs) == 0 && stat("/", &ours) == 0)
    t.foreign_ = theirs.st_dev != ours.st_dev || theirs.st_ino != ours.st_ino;
  if (stat((base + "/ns/mnt").c_str(), &their_ns) == 0 && stat("/proc/self/ns/mnt", &our_ns) == 0)
    t.foreign_ = t.foreign_ || their_ns.st_ino != our_ns.st_ino || their_ns.st_dev != our_ns.st_dev;
  return t;
}

TargetFs TargetFs::own() {
  TargetFs t;
  t.root_label_ = "/";
  t.creds_.uid = geteuid();
  t.creds_.gid = getegid();
  t.root_fd_ = ::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (t.root_fd_ < 0)
    t.error_ = std::string("cannot open /: ") + std::strerror(errno);
  return t;
}

TargetFs TargetFs::of_directory(const std::string &dir, const FsCreds &creds) {
  TargetFs t;
  t.root_label_ = dir;
  t.creds_ = creds;
  t.root_fd_ = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (t.root_fd_ < 0) {
    t.error_ = "cannot open " + dir + ": " + std::strerror(errno);
    return t;
  }
  t.foreign_ = true;
  return t;
}

TargetFs::TargetFs(TargetFs &&o) noexcept { *this = std::move(o); }

TargetFs &TargetFs::operator=(TargetFs &&o) noexcept {
  if (this != &o) {
    if (root_fd_ >= 0)
      ::close(root_fd_);
    root_fd_ = std::exchange(o.root_fd_, -1);
    creds_ = std::move(o.creds_);
    root_label_ = std::move(o.root_label_);
    error_ = std::move(o.error_);
    foreign_ = o.foreign_;
  }
  return *this;
}

TargetFs::~TargetFs() {
  if (root_fd_ >= 0)
    ::close(root_fd_);
}

int TargetFs::open(const std::string &path, int flags) const {
  if (root_fd_ < 0 || (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
    errno = root_fd_ < 0 ? EBADF : EPERM;
    return -1;
  }
  open_how how{};
  how.flags = static_cast<__u64>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  // Relative to the root: "/etc/nginx/x" and "etc/nginx/x" are the same path in there.
  std::string rel = path;
  while (!rel.empty() && rel.front() == '/')
    rel.erase(0, 1);
  if (rel.empty())
    rel = ".";
  ScopedFsCreds as_target(creds_);
  if (!as_target.ok()) {
    errno = EPERM;
    return -1;
  }
  int fd;
  do {
    fd = static_cast<int>(syscall(SYS_openat2, root_fd_, rel.c_str(), &how, sizeof how));
  } while (fd < 0 && errno == EINTR);
  return fd;
}

FileText TargetFs::read_file(const std::string &path, std::size_t max_bytes) const {
  FileText out;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    out.error = std::strerror(errno);
    return out;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    out.error = "not a regular file";
    return out;
  }
  char buf[65536];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      out.error = std::strerror(errno);
      break;
    }
    if (r == 0)
      break;
    std::size_t take = std::min(static_cast<std::size_t>(r), max_bytes - out.text.size());
    out.text.append(buf, take);
    if (take < static_cast<std::size_t>(r) || out.text.size() >= max_bytes) {
      out.truncated = true;
      break;
    }
  }
  ::close(fd);
  return out;
}

std::vector<std::string> TargetFs::glob(const std::string &pattern, std::size_t max_matches) const {
  // Expands one component at a time, listing only directories a wildcard needs; the listing is
  // done through open() above, so it is confined to the root and checked as the target's user.
  std::vector<std::string> cur{""};
  auto parts = split_path(pattern);
  for (std::size_t k = 0; k < parts.size() && !cur.empty(); ++k) {
    const std::string &part = parts[k];
    std::vector<std::string> next;
    if (!has_wildcard(part)) {
      for (auto &p : cur)
        next.push_back(p + "/" + part);
    } else {
      for (const auto &dir : cur) {
        int fd = open(dir.empty() ? "/" : dir, O_RDONLY | O_DIRECTORY);
        if (fd < 0)
          continue;
        DIR *d = fdopendir(fd);
        if (!d) {
          ::close(fd);
          continue;
        }
        std::vector<std::string> names;
        while (dirent *e = readdir(d)) {
          std::string_view n = e->d_name;
          if (n == "." || n == "..")
            continue;
          if (fnmatch(part.c_str(), e->d_name, FNM_PERIOD) == 0)
            names.emplace_back(n);
          if (names.size() > max_matches)
            break;
        }
        closedir(d);
        std::sort(names.begin(), names.end());
        for (auto &n : names)
          next.push_back(dir + "/" + n);
      }
    }
    if (next.size() > max_matches)
      next.resize(max_matches);
    cur = std::move(next);
  }
  // Only what exists (a literal tail may name nothing).
  std::vector<std::string> out;
  for (auto &p : cur) {
    int fd = open(p, O_PATH);
    if (fd >= 0) {
      ::close(fd);
      out.push_back(p);
    }
  }
  return out;
}

} // namespace why502::base
