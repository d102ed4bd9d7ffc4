// Which processes hold each listening socket: socket inodes mapped to processes
// through /proc/*/fd, cached so steady-state samples do not walk /proc.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "why502/host.h"

namespace why502::host {

class OwnerCache {
public:
  // A full walk happens when a listener inode not seen before appears, when a
  // cached owner no longer holds its fd (exited, closed, pid reused), or when
  // the last walk is older than `refresh` (owners that fork()ed a new holder
  // without anything else changing show up then).
  explicit OwnerCache(std::string proc_root = "/proc",
                      std::chrono::steady_clock::duration refresh = std::chrono::seconds(30));

  // Fills Listener::owners (sorted by pid) for every listener.
  void resolve(std::vector<Listener> &listeners);

  uint64_t walks() const { return walks_; }
  void clear() { cache_.clear(); }

private:
  struct Holder {
    ProcessRef proc;
    int fd = -1; // one fd of proc that refers to the socket, to re-check cheaply
  };
  bool still_held(uint64_t inode, const std::vector<Holder> &holders) const;
  void walk(const std::vector<uint64_t> &inodes);

  std::string proc_root_;
  std::chrono::steady_clock::duration refresh_;
  std::chrono::steady_clock::time_point last_walk_{};
  std::unordered_map<uint64_t, std::vector<Holder>> cache_;
  uint64_t walks_ = 0;
};

// Full /proc walks done by every OwnerCache of this process (for tests and self-metrics).
uint64_t owner_walks_total();

// "socket:[123]" -> 123; 0 for anything else.
uint64_t socket_inode_of_link(std::string_view link);

} // namespace why502::host
