#include "base/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "base/text.h"

namespace why502::base {

std::optional<std::string> read_small_file(const std::string &path, size_t cap) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return std::nullopt;
  std::string out;
  char buf[16384];
  while (out.size() < cap) {
    ssize_t n = ::read(fd, buf, std::min(sizeof(buf), cap - out.size()));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      errno = err;
      return std::nullopt;
    }
    if (n == 0)
      break;
    out.append(buf, size_t(n));
  }
  ::close(fd);
  return out;
}

std::optional<ProcStat> parse_proc_stat(std::string_view stat) {
  auto open = stat.find('(');
  auto close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open || close + 2 > stat.size())
    return std::nullopt;
  ProcStat p;
  p.comm = valid_utf8(stat.substr(open + 1, close - open - 1));
  std::istringstream rest{std::string(stat.substr(close + 1))};
  long long ppid = 0;
  if (!(rest >> p.state >> ppid))
    return std::nullopt;
  p.ppid = pid_t(ppid);
  // Fields 5..21, then starttime (22).
  std::string skip;
  for (int i = 5; i < 22 && rest; ++i)
    rest >> skip;
  rest >> p.start_time;
  return p;
}

std::optional<ProcStat> read_proc_stat(pid_t pid, const std::string &proc_root) {
  auto s = read_small_file(proc_root + "/" + std::to_string(pid) + "/stat", 4096);
  return s ? parse_proc_stat(*s) : std::nullopt;
}

std::vector<std::string> read_proc_cmdline(pid_t pid, const std::string &proc_root) {
  auto raw = read_small_file(proc_root + "/" + std::to_string(pid) + "/cmdline", 4096).value_or("");
  std::vector<std::string> out;
  std::string cur;
  for (char c : raw) {
    if (c == '\0') {
      out.push_back(valid_utf8(cur)); // process titles are any bytes their owner chose
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty())
    out.push_back(valid_utf8(cur));
  while (!out.empty() && out.back().empty())
    out.pop_back();
  return out;
}

std::string read_proc_comm(pid_t pid, const std::string &proc_root) {
  auto s = read_small_file(proc_root + "/" + std::to_string(pid) + "/comm", 256).value_or("");
  if (auto nl = s.find('\n'); nl != std::string::npos)
    s.resize(nl);
  return valid_utf8(s);
}

std::vector<pid_t> list_pids(const std::string &proc_root) {
  std::vector<pid_t> pids;
  DIR *d = opendir(proc_root.c_str());
  if (!d)
    return pids;
  while (dirent *e = readdir(d)) {
    char *end;
    unsigned long v = strtoul(e->d_name, &end, 10);
    if (*end == 0 && v > 0)
      pids.push_back(pid_t(v));
  }
  closedir(d);
  return pids;
}

std::optional<bool> in_initial_pid_namespace(const std::string &proc_root) {
  constexpr ino_t kInitialPidNamespaceInode = 0xEFFFFFFCU; // PROC_PID_INIT_INO, fixed since Linux 3.8
  struct stat st {};
  if (stat((proc_root + "/self/ns/pid").c_str(), &st) != 0)
    return std::nullopt;
  return st.st_ino == kInitialPidNamespaceInode;
}

} // namespace why502::base
