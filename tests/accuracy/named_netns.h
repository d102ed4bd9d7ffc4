// A named network namespace (`ip netns add lab-acc-<pid>-<n>`) that the calling thread enters, with
// `lo` up (127.0.0.1 and ::1). Named, unlike lab::enter_private_network(), so that it can be seen
// (`ip netns list`), entered by hand while a run is paused, and removed when the lab leaves it; a
// run killed before its destructor ran leaves one behind, which the next run deletes (its pid is
// dead).
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>

#include "why502/lab.h"

namespace why502::accuracy {

class NamedNetns {
public:
  // Enters a fresh namespace on the calling thread; threads and children it starts afterwards
  // inherit it. Call from the main thread before starting any lab process.
  explicit NamedNetns(const std::string &tag) {
    remove_stale();
    static int counter = 0;
    name_ = std::string(kPrefix) + std::to_string(getpid()) + "-" + std::to_string(counter++) + "-" + tag;
    lab::check_command({"ip", "netns", "add", name_});
    try {
      lab::check_command({"ip", "-n", name_, "link", "set", "lo", "up"});
      old_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
      if (old_ < 0)
        throw Error("cannot open /proc/thread-self/ns/net: " + std::string(strerror(errno)));
      int fd = open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        throw Error("cannot open /run/netns/" + name_ + ": " + strerror(errno));
      int rc = setns(fd, CLONE_NEWNET);
      int e = errno;
      close(fd);
      if (rc != 0)
        throw Error("setns " + name_ + ": " + strerror(e));
    } catch (...) {
      leave();
      throw;
    }
  }
  ~NamedNetns() { leave(); }
  NamedNetns(const NamedNetns &) = delete;
  NamedNetns &operator=(const NamedNetns &) = delete;

  const std::string &name() const { return name_; }

private:
  static constexpr const char *kPrefix = "lab-acc-";

  void leave() noexcept {
    if (old_ >= 0) {
      (void)setns(old_, CLONE_NEWNET);
      close(old_);
      old_ = -1;
    }
    if (!name_.empty()) {
      try {
        lab::run_command({"ip", "netns", "del", name_});
      } catch (...) {
      }
      name_.clear();
    }
  }

  // lab-acc-<pid>-... left by a run that was killed (its pid no longer exists): what still runs in
  // it was started by that run (nginx workers outlive a SIGKILLed master), so it is killed first.
  static void remove_stale() noexcept {
    std::error_code ec;
    for (auto &e : std::filesystem::directory_iterator("/run/netns", ec)) {
      std::string n = e.path().filename().string();
      if (n.rfind(kPrefix, 0) != 0)
        continue;
      pid_t pid = pid_t(atol(n.c_str() + strlen(kPrefix)));
      if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
        try {
          std::istringstream pids(lab::run_command({"ip", "netns", "pids", n}).output);
          for (pid_t p; pids >> p;)
            lab::kill_and_wait(p, SIGKILL, 2.0);
          lab::run_command({"ip", "netns", "del", n});
        } catch (...) {
        }
      }
    }
  }

  std::string name_;
  int old_ = -1;
};

} // namespace why502::accuracy
