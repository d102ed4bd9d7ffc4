// The built-in HTTP upstream: one forked process, one thread per connection, a behaviour per
// request (first path segment) or a default switchable at runtime through shared memory.
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <thread>

#include "lab/lab_internal.h"
#include "why502/lab.h"

namespace why502::lab {

struct AppServer::Shared {
  std::atomic<int> behaviour;
  std::atomic<unsigned long> served;
};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<unsigned long>::is_always_lock_free,
              "shared-memory atomics must be lock-free");

namespace {

constexpr std::pair<Behaviour, std::string_view> kNames[] = {
    {Behaviour::ok, "ok"},
    {Behaviour::slow, "slow"},
    {Behaviour::reset, "reset"},
    {Behaviour::close_early, "close_early"},
    {Behaviour::big_header, "big_header"},
    {Behaviour::exit_mid_request, "exit_mid_request"},
    {Behaviour::crash, "crash"},
    {Behaviour::alloc, "alloc"},
    {Behaviour::never_accept, "never_accept"},
};

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data.remove_prefix(size_t(n));
  }
  return true;
}

// Reads one request head (and a Content-Length body) from `buf`+fd. Returns the head, or empty on EOF.
std::string read_request(int fd, std::string &buf) {
  while (true) {
    auto end = buf.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::string head = buf.substr(0, end + 4);
      size_t body = 0;
      std::string lower = head;
      for (auto &ch : lower)
        ch = char(tolower(static_cast<unsigned char>(ch)));
      if (auto cl = lower.find("\r\ncontent-length:"); cl != std::string::npos)
        body = std::strtoul(lower.c_str() + cl + 17, nullptr, 10);
      while (buf.size() < end + 4 + body) {
        char tmp[4096];
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
          return {};
        buf.append(tmp, size_t(n));
      }
      buf.erase(0, end + 4 + body);
      return head;
    }
    char tmp[4096];
    ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return {};
    buf.append(tmp, size_t(n));
  }
}

std::string response(int status, std::string_view reason, std::string_view body, bool keep_alive,
                     std::string_view extra_headers = {}) {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  r += "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  r += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  r += extra_headers;
  r += "\r\n";
  r += body;
  return r;
}

struct ChildCtx {
  AppServer::Shared *shared;
  double slow_seconds;
  std::uint64_t alloc_cap;
};

void serve_connection(int fd, const ChildCtx &ctx) {
  std::string buf;
  while (true) {
    std::string head = read_request(fd, buf);
    if (head.empty())
      break;
    // Request line: METHOD SP PATH SP VERSION
    auto sp1 = head.find(' ');
    auto sp2 = head.find(' ', sp1 + 1);
    auto eol = head.find("\r\n");
    std::string path = sp1 == std::string::npos ? "/" : head.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string version = sp2 == std::string::npos ? "" : head.substr(sp2 + 1, eol - sp2 - 1);
    std::string lower = head;
    for (auto &ch : lower)
      ch = char(tolower(static_cast<unsigned char>(ch)));
    bool keep_alive = version == "HTTP/1.1" ? lower.find("connection: close") == std::string::npos
                                            : lower.find("connection: keep-alive") != std::string::npos;
    std::string seg = path.substr(1);
    seg = seg.substr(0, std::min(seg.find('/'), seg.find('?')));
    Behaviour b = behaviour_from_name(seg).value_or(Behaviour(ctx.shared->behaviour.load()));
    ctx.shared->served.fetch_add(1);
    switch (b) {
    case Behaviour::ok:
    case Behaviour::never_accept:
      break;
    case Behaviour::slow:
      std::this_thread::sleep_for(std::chrono::duration<double>(ctx.slow_seconds));
      break;
    case Behaviour::reset: {
      linger lg{1, 0}; // close() now sends RST instead of FIN
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      close(fd);
      return;
    }
    case Behaviour::close_early:
      close(fd); // request fully read, so this is a FIN, not an RST
      return;
    case Behaviour::big_header: {
      std::string big = "X-Why502-Big: " + std::string(64 * 1024, 'a') + "\r\n";
      send_all(fd, response(200, "OK", "ok\n", false, big));
      close(fd);
      return;
    }
    case Behaviour::exit_mid_request:
      _exit(3); // like a worker recycled mid-request (pm.max_requests, max-requests)
    case Behaviour::crash:
      raise(SIGSEGV);
      _exit(139);
    case Behaviour::alloc: {
      // Touch every page so the memory is charged to the cgroup; the OOM killer ends this.
      std::uint64_t total = 0;
      while (total < ctx.alloc_cap) {
        const size_t chunk = 8u << 20;
        char *p = static_cast<char *>(malloc(chunk));
        if (!p)
          break;
        memset(p, 0x5a, chunk);
        total += chunk;
      }
      while (true)
        pause();
    }
    }
    if (!send_all(fd, response(200, "OK", "ok\n", keep_alive)) || !keep_alive)
      break;
  }
  close(fd);
}

[[noreturn]] void child_main(int lfd, const AppServerOptions &opts, AppServer::Shared *shared) {
  prctl(PR_SET_NAME, opts.name.c_str());
  rlimit nocore{0, 0}; // a crash must not wait for a core dump handler
  setrlimit(RLIMIT_CORE, &nocore);
  if (opts.behaviour == Behaviour::never_accept)
    while (true)
      pause();
  ChildCtx ctx{shared, opts.slow_seconds, opts.alloc_cap_bytes};
  while (true) {
    int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
        continue;
      _exit(1);
    }
    std::thread([fd, ctx] { serve_connection(fd, ctx); }).detach();
  }
}

} // namespace

std::string_view behaviour_name(Behaviour b) {
  for (auto &[k, v] : kNames)
    if (k == b)
      return v;
  return "?";
}

std::optional<Behaviour> behaviour_from_name(std::string_view name) {
  for (auto &[k, v] : kNames)
    if (v == name)
      return k;
  return std::nullopt;
}

AppServer::AppServer(AppServerOptions opts) : opts_(std::move(opts)) {
  auto sa = parse_address(opts_.address);
  if (!sa)
    throw Error("AppServer: bad address " + opts_.address);
  void *mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED)
    throw Error("mmap: " + errno_text(errno));
  shared_ = new (mem) Shared{};
  shared_->behaviour.store(int(opts_.behaviour));
  shared_->served.store(0);

  // Bind and listen here, so the port is known and connectable when the constructor returns.
  int lfd = socket(sa->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0)
    throw Error("socket: " + errno_text(errno));
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (sa->family() == AF_UNIX)
    unlink(sa->un.sun_path);
  if (bind(lfd, sa->addr(), sa->len) != 0 || listen(lfd, opts_.backlog) != 0) {
    int e = errno;
    close(lfd);
    munmap(shared_, sizeof(Shared));
    throw Error("AppServer cannot listen on " + opts_.address + ": " + errno_text(e));
  }
  if (sa->family() == AF_UNIX)
    chmod(sa->un.sun_path, 0666); // nginx workers run as `nobody` when the master is root
  if (sa->family() == AF_INET) {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    getsockname(lfd, reinterpret_cast<sockaddr *>(&a), &len);
    port_ = ntohs(a.sin_port);
    address_ = "127.0.0.1:" + std::to_string(port_);
  } else if (sa->family() == AF_INET6) {
    sockaddr_in6 a{};
    socklen_t len = sizeof(a);
    getsockname(lfd, reinterpret_cast<sockaddr *>(&a), &len);
    port_ = ntohs(a.sin6_port);
    address_ = opts_.address.substr(0, opts_.address.rfind(':') + 1) + std::to_string(port_);
  } else {
    address_ = opts_.address;
  }
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(lfd);
    throw Error("fork: " + errno_text(e));
  }
  if (pid == 0) {
    prepare_child(true);
    child_main(lfd, opts_, shared_);
  }
  close(lfd);
  proc_ = Process(pid, true);
}

AppServer::~AppServer() {
  stop();
  if (address_.rfind("unix:", 0) == 0)
    unlink(address_.substr(5).c_str());
  if (shared_)
    munmap(shared_, sizeof(Shared));
}

void AppServer::stop() { proc_.stop(SIGTERM, 3.0); }

void AppServer::set_behaviour(Behaviour b) { shared_->behaviour.store(int(b)); }
Behaviour AppServer::behaviour() const { return Behaviour(shared_->behaviour.load()); }
unsigned long AppServer::requests_served() const { return shared_->served.load(); }

} // namespace why502::lab
