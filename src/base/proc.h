// Reading /proc (or a copy of it under another root, for tests): the one reader of small files and
// of /proc/PID/{stat,cmdline,comm} that every layer uses. Values a process chose (comm, cmdline)
// come back as valid UTF-8.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace why502::base {

// The whole file, up to `cap` bytes (EINTR retried); nullopt when it cannot be opened or read
// (errno says why).
std::optional<std::string> read_small_file(const std::string &path, size_t cap = 1 << 20);

struct ProcStat {
  std::string comm; // as the kernel stores it (any bytes; valid UTF-8 here)
  char state = '?';
  pid_t ppid = 0;
  unsigned long long start_time = 0; // field 22, clock ticks after boot
};
// "pid (comm) S ppid ... starttime ...": comm may hold spaces and ')', so it ends at the last ')'.
std::optional<ProcStat> parse_proc_stat(std::string_view stat);
std::optional<ProcStat> read_proc_stat(pid_t pid, const std::string &proc_root = "/proc");

// argv of a process ("nginx: worker process" titles are one element), empty when gone.
std::vector<std::string> read_proc_cmdline(pid_t pid, const std::string &proc_root = "/proc");
std::string read_proc_comm(pid_t pid, const std::string &proc_root = "/proc");

// Every numeric entry of proc_root.
std::vector<pid_t> list_pids(const std::string &proc_root = "/proc");

// Is this process in the host's (initial) PID namespace? The kernel side reports host PIDs
// (bpf_get_current_pid_tgid), and every PID why502 reads from /proc must be the same numbers: in a
// PID namespace of its own (a container without hostPID) it would follow nobody and say nothing.
// Known by the initial namespace's fixed inode (PROC_PID_INIT_INO); nullopt when
// /proc/self/ns/pid cannot be read.
std::optional<bool> in_initial_pid_namespace(const std::string &proc_root = "/proc");

} // namespace why502::base
