// Where the host sampler learns about listening sockets: sock_diag netlink
// dumps (with the accept-queue limit) and the /proc/<pid>/net fallbacks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "why502/host.h"

namespace why502::host {

// A NETLINK_SOCK_DIAG socket created in the network namespace of `pid` (0 = the
// calling thread's). A netlink socket answers for the netns it was created in,
// so it is made on a short-lived thread that setns()es there first. -1 on failure.
Result<int> open_sock_diag(pid_t pid);

// TCP listeners of one family (AF_INET / AF_INET6): depth = idiag_rqueue (accept
// queue now), max = idiag_wqueue (listen backlog). nullopt + *error on failure.
// `seq` is bumped for each request; stale replies with another seq are ignored.
Result<std::vector<Listener>> diag_tcp_listeners(int fd, int family, uint32_t *seq);

// Named unix stream listeners: depth = rqueue (connections not yet accepted), max = backlog.
Result<std::vector<Listener>> diag_unix_listeners(int fd, uint32_t *seq);

// Fallbacks from /proc/<pid>/net (pid 0 = self). TCP: depth = rx_queue of LISTEN rows,
// max unknown (0). Unix: path and inode only (depth and max 0).
Result<std::vector<Listener>> proc_tcp_listeners(pid_t pid);
Result<std::vector<Listener>> proc_unix_listeners(pid_t pid);

// "/proc/<pid>" or "/proc/self".
std::string proc_dir(pid_t pid);

} // namespace why502::host
