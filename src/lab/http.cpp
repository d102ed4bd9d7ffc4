// A small blocking-with-deadline HTTP/1.1 client: enough to drive requests through nginx.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
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

Clock::time_point deadline_after(double timeout_s) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
}

// Waits until fd is ready for `events`; false on timeout, stop request or poll error.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  while (Clock::now() < deadline && !stop_requested()) {
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, ms_left(deadline));
    if (r > 0)
      return true;
    if (r < 0 && errno != EINTR)
      return false;
  }
  return false;
}

// A non-blocking TCP connection to host:port (IPv4), or -1 with `error` set.
int connect_ipv4(const std::string &host, uint16_t port, Clock::time_point deadline, std::string &error) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
    error = "bad address " + host;
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = "socket: " + errno_text(errno);
    return -1;
  }
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
    int err = errno;
    if (err == EINPROGRESS) {
      if (!wait_for(fd, POLLOUT, deadline)) {
        close(fd);
        error = "timeout";
        return -1;
      }
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    }
    if (err) {
      close(fd);
      error = "connect: " + errno_text(err);
      return -1;
    }
  }
  return fd;
}

// Sends all of `data`; empty on success, else the error.
std::string send_all(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    if (!wait_for(fd, POLLOUT, deadline))
      return "timeout";
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n <= 0)
      return "send: " + errno_text(errno);
    data.remove_prefix(size_t(n));
  }
  return {};
}

// Appends what can be read to `buf`: 1 data, 0 EOF, -1 error/timeout (`error` set).
int read_some(int fd, std::string &buf, Clock::time_point deadline, std::string &error) {
  char tmp[8192];
  while (true) {
    if (!wait_for(fd, POLLIN, deadline)) {
      error = "timeout";
      return -1;
    }
    ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n < 0) {
      error = "recv: " + errno_text(errno);
      return -1;
    }
    if (n == 0)
      return 0;
    buf.append(tmp, size_t(n));
    return 1;
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto &c : out)
    c = char(tolower(static_cast<unsigned char>(c)));
  return out;
}
} // namespace

HttpResult http_get(const std::string &host, uint16_t port, const std::string &path, double timeout_s,
                    const std::string &host_header) {
  HttpResult res;
  auto start = Clock::now();
  auto deadline = deadline_after(timeout_s);
  auto finish = [&](HttpResult &r) -> HttpResult & {
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return r;
  };
  int fd = connect_ipv4(host, port, deadline, res.error);
  if (fd < 0)
    return finish(res);
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};

  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host_header +
                    "\r\nUser-Agent: why502-lab\r\nConnection: close\r\n\r\n";
  if (res.error = send_all(fd, req, deadline); !res.error.empty())
    return finish(res);
  std::string resp;
  while (read_some(fd, resp, deadline, res.error) > 0) {
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

// ───────────────────────────── keep-alive connection ─────────────────────────────

HttpConnection::HttpConnection(std::string host, uint16_t port, std::string host_header)
    : host_(std::move(host)), host_header_(std::move(host_header)), port_(port) {}

HttpConnection::~HttpConnection() {
  if (fd_ >= 0)
    close(fd_);
}

HttpResult HttpConnection::get(const std::string &path, double timeout_s, const std::string &host_header) {
  HttpResult res;
  auto start = Clock::now();
  auto deadline = deadline_after(timeout_s);
  auto fail = [&](std::string error) -> HttpResult {
    if (fd_ >= 0)
      close(fd_);
    fd_ = -1;
    buf_.clear();
    res.error = std::move(error);
    res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return res;
  };
  if (fd_ < 0) {
    std::string error;
    fd_ = connect_ipv4(host_, port_, deadline, error);
    if (fd_ < 0)
      return fail(error);
    ++connects_;
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + (host_header.empty() ? host_header_ : host_header) +
                    "\r\nUser-Agent: why502-lab\r\n\r\n";
  if (std::string e = send_all(fd_, req, deadline); !e.empty())
    return fail(e);
  // Head.
  size_t hdr_end;
  std::string error;
  while ((hdr_end = buf_.find("\r\n\r\n")) == std::string::npos) {
    int r = read_some(fd_, buf_, deadline, error);
    if (r <= 0)
      return fail(r == 0 ? (buf_.empty() ? "closed before status line" : "closed inside the response head") : error);
  }
  const std::string head = lower(std::string_view(buf_).substr(0, hdr_end + 2));
  res.status = parse_status_line(std::string_view(buf_).substr(0, buf_.find('\n')));
  if (res.status == 0)
    return fail("malformed status line");
  buf_.erase(0, hdr_end + 4);
  const bool close_after = head.find("\r\nconnection: close\r\n") != std::string::npos;
  // Body: Content-Length, chunked, or (neither) up to the close.
  if (auto cl = head.find("\r\ncontent-length:"); cl != std::string::npos) {
    size_t len = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
    while (buf_.size() < len)
      if (read_some(fd_, buf_, deadline, error) <= 0)
        return fail(error.empty() ? "closed inside the body" : error);
    res.body = buf_.substr(0, len);
    buf_.erase(0, len);
  } else if (head.find("\r\ntransfer-encoding: chunked\r\n") != std::string::npos) {
    while (true) {
      size_t eol;
      while ((eol = buf_.find("\r\n")) == std::string::npos)
        if (read_some(fd_, buf_, deadline, error) <= 0)
          return fail(error.empty() ? "closed inside a chunk" : error);
      size_t n = std::strtoul(buf_.c_str(), nullptr, 16);
      while (buf_.size() < eol + 2 + n + 2)
        if (read_some(fd_, buf_, deadline, error) <= 0)
          return fail(error.empty() ? "closed inside a chunk" : error);
      res.body += buf_.substr(eol + 2, n);
      buf_.erase(0, eol + 2 + n + 2);
      if (n == 0)
        break; // (no trailers: nginx sends none)
    }
  } else {
    int r;
    while ((r = read_some(fd_, buf_, deadline, error)) > 0) {
    }
    if (r < 0)
      return fail(error);
    res.body = buf_;
    buf_.clear();
    close(fd_);
    fd_ = -1;
  }
  if (close_after && fd_ >= 0) {
    close(fd_);
    fd_ = -1;
    buf_.clear();
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return res;
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
