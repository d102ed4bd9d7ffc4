// Integration harness: runs a fault in a forked child that the real BPF
// programs watch, and collects what the kernel reported about it.
#pragma once

#include <arpa/inet.h>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "why502/kernel_event.h"
#include "why502/tracer.h"

namespace why502::testing {

struct Capture {
  pid_t pid = 0; // the watched child
  std::vector<KernelEvent> events;

  template <typename T> std::vector<T> of(uint32_t pid_filter = 0) const {
    std::vector<T> out;
    for (const auto &ev : events)
      if (const T *r = std::get_if<T>(&ev.record)) {
        if constexpr (requires { r->pid; })
          if (pid_filter && r->pid != pid_filter)
            continue;
        out.push_back(*r);
      }
    return out;
  }
};

inline Tracer &shared_tracer() {
  static Tracer tracer{TracerOptions{}};
  return tracer;
}

// Forks a child that waits until it is watched, runs `fault`, and exits.
// Collects every record until `linger` after the child has exited.
inline Capture run_watched(const std::function<void()> &fault, double linger_s = 0.5, double max_s = 15,
                           Tracer *own_tracer = nullptr) {
  Tracer &tracer = own_tracer ? *own_tracer : shared_tracer();
  tracer.poll(0, [](const KernelEvent &) {}); // drop what earlier tests left
  int go[2];
  if (pipe(go) != 0)
    throw std::runtime_error("pipe");
  pid_t child = fork();
  if (child == 0) {
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 1)
      _exit(90);
    fault();
    _exit(0);
  }
  close(go[0]);
  Capture cap;
  cap.pid = child;
  tracer.watch_pid(child);
  if (write(go[1], "g", 1) != 1)
    throw std::runtime_error("pipe write");
  close(go[1]);
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  std::optional<clock::time_point> exited;
  auto sink = [&](const KernelEvent &ev) { cap.events.push_back(ev); };
  while (true) {
    tracer.poll(50, sink);
    if (!exited) {
      int status;
      if (waitpid(child, &status, WNOHANG) == child)
        exited = clock::now();
    }
    auto now = clock::now();
    if (exited && std::chrono::duration<double>(now - *exited).count() > linger_s)
      break;
    if (std::chrono::duration<double>(now - start).count() > max_s) {
      kill(child, SIGKILL);
      waitpid(child, nullptr, 0);
      break;
    }
  }
  tracer.poll(0, sink);
  return cap;
}

// Runs a shell command in the child (inside its namespaces); aborts the child on failure.
inline void sh(const std::string &cmd) {
  if (system(cmd.c_str()) != 0)
    _exit(91);
}

// A TCP listener on 127.0.0.1 (or ::1) in this process, on an ephemeral port.
struct Listener {
  int fd = -1;
  uint16_t port = 0;
  explicit Listener(int backlog = 16, bool v6 = false) {
    fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (v6) {
      sockaddr_in6 a = {};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a));
      socklen_t len = sizeof(a);
      listen(fd, backlog);
      getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
      port = ntohs(a.sin6_port);
    } else {
      sockaddr_in a = {};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a));
      listen(fd, backlog);
      socklen_t len = sizeof(a);
      getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
      port = ntohs(a.sin_port);
    }
  }
  ~Listener() {
    if (fd >= 0)
      close(fd);
  }
};

// A port nothing listens on: bind, read the port, close.
inline uint16_t closed_port(bool v6 = false) {
  Listener l(1, v6);
  return l.port;
}

inline sockaddr_in loopback_v4(uint16_t port) {
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Non-blocking connect like nginx's; returns the fd (or -errno).
inline int nb_connect(const char *addr, uint16_t port) {
  bool v6 = strchr(addr, ':') != nullptr;
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int rc;
  if (v6) {
    sockaddr_in6 a = {};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    inet_pton(AF_INET6, addr, &a.sin6_addr);
    rc = connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a));
  } else {
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, addr, &a.sin_addr);
    rc = connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a));
  }
  if (rc != 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

inline void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

} // namespace why502::testing
