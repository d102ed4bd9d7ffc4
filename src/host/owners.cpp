#include "host/owners.h"

#include "base/proc.h"
#include "base/text.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <unordered_set>

#include "host/listeners.h"

namespace why502::host {
namespace {

std::atomic<uint64_t> g_walks{0};

bool all_digits(const char *s) {
  if (!*s)
    return false;
  for (; *s; ++s)
    if (*s < '0' || *s > '9')
      return false;
  return true;
}

} // namespace

uint64_t owner_walks_total() { return g_walks.load(); }

uint64_t socket_inode_of_link(std::string_view link) {
  constexpr std::string_view prefix = "socket:[";
  if (link.size() <= prefix.size() + 1 || link.substr(0, prefix.size()) != prefix || link.back() != ']')
    return 0;
  std::string_view num = link.substr(prefix.size(), link.size() - prefix.size() - 1);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
  return ec == std::errc() && p == num.data() + num.size() ? v : 0;
}

OwnerCache::OwnerCache(std::string proc_root, std::chrono::steady_clock::duration refresh)
    : proc_root_(std::move(proc_root)), refresh_(refresh) {}

bool OwnerCache::still_held(uint64_t inode, const std::vector<Holder> &holders) const {
  char link[64];
  for (const auto &h : holders) {
    std::string path = proc_root_ + "/" + std::to_string(h.proc.pid) + "/fd/" + std::to_string(h.fd);
    ssize_t n = readlink(path.c_str(), link, sizeof(link));
    if (n <= 0 || socket_inode_of_link(std::string_view(link, size_t(n))) != inode)
      return false;
  }
  return true;
}

void OwnerCache::walk(const std::vector<uint64_t> &inodes) {
  ++walks_;
  ++g_walks;
  last_walk_ = std::chrono::steady_clock::now();
  std::unordered_set<uint64_t> wanted(inodes.begin(), inodes.end());
  std::unordered_map<uint64_t, std::vector<Holder>> found;
  for (uint64_t ino : inodes)
    found[ino];
  DIR *proc = opendir(proc_root_.c_str());
  if (!proc) {
    cache_ = std::move(found);
    return;
  }
  char link[64];
  while (dirent *pe = readdir(proc)) {
    if (!all_digits(pe->d_name))
      continue;
    uint32_t pid = uint32_t(strtoul(pe->d_name, nullptr, 10));
    std::string fddir = proc_root_ + "/" + pe->d_name + "/fd";
    int dfd = open(fddir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
      continue; // exited meanwhile, or a kernel thread
    DIR *fds = fdopendir(dfd);
    if (!fds) {
      close(dfd);
      continue;
    }
    std::string comm;
    bool have_comm = false;
    while (dirent *fe = readdir(fds)) {
      if (!all_digits(fe->d_name))
        continue;
      ssize_t n = readlinkat(dfd, fe->d_name, link, sizeof(link));
      if (n <= 0)
        continue;
      uint64_t ino = socket_inode_of_link(std::string_view(link, size_t(n)));
      if (!ino || !wanted.count(ino))
        continue;
      auto &holders = found[ino];
      if (std::any_of(holders.begin(), holders.end(), [&](const Holder &h) { return h.proc.pid == pid; }))
        continue; // the same socket on several fds of one process
      if (!have_comm) {
        comm = base::read_proc_comm(pid, proc_root_);
        have_comm = true;
      }
      holders.push_back({{pid, comm}, atoi(fe->d_name)});
    }
    closedir(fds);
  }
  closedir(proc);
  for (auto &[ino, holders] : found)
    std::sort(holders.begin(), holders.end(),
              [](const Holder &a, const Holder &b) { return a.proc.pid < b.proc.pid; });
  cache_ = std::move(found);
}

void OwnerCache::resolve(std::vector<Listener> &listeners) {
  if (listeners.empty()) {
    cache_.clear();
    return;
  }
  std::vector<uint64_t> inodes;
  inodes.reserve(listeners.size());
  bool need_walk = std::chrono::steady_clock::now() - last_walk_ >= refresh_;
  for (const auto &l : listeners) {
    inodes.push_back(l.inode);
    if (need_walk)
      continue;
    auto it = cache_.find(l.inode);
    if (it == cache_.end() || !still_held(l.inode, it->second))
      need_walk = true;
  }
  if (need_walk) {
    walk(inodes);
  } else if (cache_.size() > listeners.size() * 2 + 16) {
    // Forget sockets that stopped listening (without walking).
    std::unordered_set<uint64_t> live(inodes.begin(), inodes.end());
    std::erase_if(cache_, [&](const auto &kv) { return !live.count(kv.first); });
  }
  for (auto &l : listeners) {
    l.owners.clear();
    auto it = cache_.find(l.inode);
    if (it == cache_.end())
      continue;
    for (const auto &h : it->second)
      l.owners.push_back(h.proc);
  }
}

} // namespace why502::host
