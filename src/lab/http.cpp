// A small blocking-with-deadline HTTP/1.1 client: enough to drive requests through nginx.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "lab/lab_internal.h"
#include "why502/lab.h"

namespace why502::lab {

int parse_status_line(std::string_view line) {
  // "HTTP/1.x SSS reason"
  if (line.substr(0, 5) != "HTTP/")
    return 0;
  auto sp = line.find(' ');
  if (sp == std::string_view::npos || sp + 4 > line.size())
    return 0;
  int code = 0;
  for (size_t i = sp + 1; i < sp + 4; ++i) {
    if (line[i] < '0' || line[i] > '9')
      return 0;
    code = code * 10 + (line[i] - '0');
  }
  if (sp + 4 < line.size() && line[sp + 4] != ' ' && line[sp + 4] != '\r' && line[sp + 4] != '\n')
    return 0;
  return code >= 100 && code <= 999 ? code : 0;
}

namespace {
using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : int(std::min<long long>(left, 50)); // short slices: the stop flag is polled
}
} // namespace

HttpResult http_get(const std::string &host, uint16_t port, const std::string &path, double timeout_s,
                    const std::string &host_header) {
  HttpResult res;
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  auto finish = [&](HttpResult &r) -> HttpResult & {
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return r;
  };
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
    res.error = "bad address " + host;
    return finish(res);
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    res.error = "socket: " + errno_text(errno);
    return finish(res);
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};

  auto wait_for = [&](short events) -> bool {
    while (Clock::now() < deadline && !stop_requested()) {
      pollfd p{fd, events, 0};
      int r = poll(&p, 1, ms_left(deadline));
      if (r > 0)
        return true;
      if (r < 0 && errno != EINTR)
        return false;
    }
    return false;
  };

  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
    if (errno != EINPROGRESS) {
      res.error = "connect: " + errno_text(errno);
      return finish(res);
    }
    if (!wait_for(POLLOUT)) {
      res.error = "timeout";
      return finish(res);
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      res.error = "connect: " + errno_text(err);
      return finish(res);
    }
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host_header +
                    "\r\nUser-Agent: why502-lab\r\nConnection: close\r\n\r\n";
  std::string_view out = req;
  while (!out.empty()) {
    if (!wait_for(POLLOUT)) {
      res.error = "timeout";
      return finish(res);
    }
    ssize_t n = send(fd, out.data(), out.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n <= 0) {
      res.error = "send: " + errno_text(errno);
      return finish(res);
    }
    out.remove_prefix(size_t(n));
  }
  std::string resp;
  char buf[8192];
  while (true) {
    if (!wait_for(POLLIN)) {
      res.error = "timeout";
      break;
    }
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n < 0) {
      res.error = "recv: " + errno_text(errno);
      break;
    }
    if (n == 0)
      break;
    resp.append(buf, size_t(n));
  }
  res.status = parse_status_line(std::string_view(resp).substr(0, resp.find('\n')));
  if (auto hdr_end = resp.find("\r\n\r\n"); hdr_end != std::string::npos)
    res.body = resp.substr(hdr_end + 4);
  if (res.status != 0 && res.error == "timeout" && resp.find("\r\n\r\n") != std::string::npos)
    res.error.clear(); // a status and headers arrived; the body timing out is the caller's business
  if (res.status == 0 && res.error.empty())
    res.error = resp.empty() ? "closed before status line" : "malformed status line";
  return finish(res);
}

std::vector<HttpResult> http_get_concurrent(const std::string &host, uint16_t port, const std::string &path, int n,
                                            double timeout_s) {
  std::vector<HttpResult> out(size_t(std::max(n, 0)));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] { out[size_t(i)] = http_get(host, port, path, timeout_s); });
  for (auto &t : threads)
    t.join();
  return out;
}

} // namespace why502::lab
