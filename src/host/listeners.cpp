#include "host/listeners.h"

#include "base/proc.h"

#include <memory>
#include <cerrno>
#include <cstring>
#include <limits>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <thread>
#include <unistd.h>

#include "host/proc_parse.h"

namespace why502::host {
namespace {

std::string errno_text(const char *what, int err) { return std::string(what) + ": " + strerror(err); }

int make_diag_socket(int *err) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  // Never hang a sample on a kernel that does not answer.
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Sends `req` (an nlmsghdr followed by the request) and feeds every reply of
// this dump to `on_msg` until NLMSG_DONE.
template <typename Req, typename F>
bool netlink_dump(int fd, Req &req, uint32_t *seq, std::string *error, F &&on_msg) {
  req.nlh.nlmsg_len = sizeof(req);
  req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nlh.nlmsg_seq = ++*seq;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &req, sizeof(req), 0, reinterpret_cast<sockaddr *>(&kernel), sizeof(kernel)) < 0) {
    *error = errno_text("sock_diag send", errno);
    return false;
  }
  // On the heap, not thread_local: two instantiations of 64 KiB of static TLS made every thread
  // of the process need a larger stack, and civetweb's (watch --metrics) could not start.
  constexpr size_t kBufSize = 64 * 1024;
  auto storage = std::make_unique<char[]>(kBufSize); // new[] is aligned for nlmsghdr
  char *buf = storage.get();
  for (;;) {
    ssize_t n = recv(fd, buf, kBufSize, MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      *error = errno_text("sock_diag recv", errno);
      return false;
    }
    if (size_t(n) > kBufSize) {
      *error = "sock_diag reply truncated";
      return false;
    }
    if (n == 0) {
      *error = "sock_diag: empty reply";
      return false;
    }
    int len = int(n);
    for (auto *h = reinterpret_cast<nlmsghdr *>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != req.nlh.nlmsg_seq)
        continue; // left over from an earlier, abandoned dump
      if (h->nlmsg_type == NLMSG_DONE) {
        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
          int code = *static_cast<int *>(NLMSG_DATA(h));
          if (code < 0) {
            *error = errno_text("sock_diag dump", -code);
            return false;
          }
        }
        return true;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        int code = h->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr))
                       ? static_cast<nlmsgerr *>(NLMSG_DATA(h))->error
                       : -EPROTO;
        *error = errno_text("sock_diag", code ? -code : EPROTO);
        return false;
      }
      on_msg(h);
    }
  }
}

} // namespace

// /proc/net/{tcp,tcp6,unix} are read whole, however busy the host: a cap would silently drop the
// listeners past it.
constexpr size_t kMaxProcNetBytes = std::numeric_limits<size_t>::max();

std::string proc_dir(pid_t pid) { return pid ? "/proc/" + std::to_string(pid) : std::string("/proc/self"); }

Result<int> open_sock_diag(pid_t pid) {
  int err = 0;
  if (pid == 0) {
    int fd = make_diag_socket(&err);
    if (fd < 0)
      return Result<int>::failure(errno_text("socket(NETLINK_SOCK_DIAG)", err));
    return fd;
  }
  std::string ns = proc_dir(pid) + "/ns/net";
  // Already in that netns (nginx on the host): no setns, which needs CAP_SYS_ADMIN, and watch drops
  // that capability after attaching (the sampler re-creates this socket after a failure).
  struct stat target, self;
  if (stat(ns.c_str(), &target) == 0 && stat("/proc/self/ns/net", &self) == 0 && target.st_ino == self.st_ino &&
      target.st_dev == self.st_dev)
    return open_sock_diag(0);
  int nsfd = open(ns.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0)
    return Result<int>::failure(errno_text(("open " + ns).c_str(), errno));
  // setns() moves only the calling thread; the thread ends right after, and
  // the socket it made stays bound to that netns.
  int fd = -1;
  const char *stage = "";
  std::thread([&] {
    if (setns(nsfd, CLONE_NEWNET) != 0) {
      err = errno;
      stage = "setns(CLONE_NEWNET)";
      return;
    }
    fd = make_diag_socket(&err);
    if (fd < 0)
      stage = "socket(NETLINK_SOCK_DIAG)";
  }).join();
  close(nsfd);
  if (fd < 0)
    return Result<int>::failure(errno_text(stage, err));
  return fd;
}

Result<std::vector<Listener>> diag_tcp_listeners(int fd, int family, uint32_t *seq) {
  std::string error;
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 r;
  } req{};
  req.r.sdiag_family = uint8_t(family);
  req.r.sdiag_protocol = IPPROTO_TCP;
  req.r.idiag_states = 1u << TCP_LISTEN;
  std::vector<Listener> out;
  bool ok = netlink_dump(fd, req, seq, &error, [&](const nlmsghdr *h) {
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg)))
      return;
    auto *m = static_cast<const inet_diag_msg *>(NLMSG_DATA(h));
    if (m->idiag_state != TCP_LISTEN || m->idiag_family != family)
      return;
    Listener l;
    l.address = format_inet(family, m->id.idiag_src, ntohs(m->id.idiag_sport));
    l.depth = m->idiag_rqueue;
    l.max = m->idiag_wqueue;
    l.inode = m->idiag_inode;
    out.push_back(std::move(l));
  });
  if (!ok)
    return Result<std::vector<Listener>>::failure(error);
  return out;
}

Result<std::vector<Listener>> diag_unix_listeners(int fd, uint32_t *seq) {
  std::string error;
  struct {
    nlmsghdr nlh;
    unix_diag_req r;
  } req{};
  req.r.sdiag_family = AF_UNIX;
  req.r.udiag_states = 1u << TCP_LISTEN;
  req.r.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN;
  std::vector<Listener> out;
  bool ok = netlink_dump(fd, req, seq, &error, [&](const nlmsghdr *h) {
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg)))
      return;
    auto *m = static_cast<const unix_diag_msg *>(NLMSG_DATA(h));
    if (m->udiag_type != SOCK_STREAM || m->udiag_state != TCP_LISTEN)
      return;
    Listener l;
    l.inode = m->udiag_ino;
    bool named = false;
    int alen = int(h->nlmsg_len - NLMSG_LENGTH(sizeof(unix_diag_msg)));
    auto *a = reinterpret_cast<rtattr *>(reinterpret_cast<char *>(NLMSG_DATA(h)) + NLMSG_ALIGN(sizeof(*m)));
    for (; RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
      const char *p = static_cast<const char *>(RTA_DATA(a));
      size_t plen = RTA_PAYLOAD(a);
      if (a->rta_type == UNIX_DIAG_NAME && plen > 0) {
        std::string_view name(p, plen);
        if (name[0] != '\0') // a path: the kernel keeps bind()'s trailing NUL
          name = name.substr(0, name.find('\0'));
        l.address = format_unix(name);
        named = true;
      } else if (a->rta_type == UNIX_DIAG_RQLEN && plen >= sizeof(unix_diag_rqlen)) {
        unix_diag_rqlen q;
        memcpy(&q, p, sizeof(q));
        l.depth = q.udiag_rqueue;
        l.max = q.udiag_wqueue;
      }
    }
    if (named) // nobody can connect() to an unnamed listener
      out.push_back(std::move(l));
  });
  if (!ok)
    return Result<std::vector<Listener>>::failure(error);
  return out;
}

Result<std::vector<Listener>> proc_tcp_listeners(pid_t pid) {
  std::vector<Listener> out;
  for (const char *file : {"/net/tcp", "/net/tcp6"}) {
    std::string path = proc_dir(pid) + file;
    auto content = base::read_small_file(path, kMaxProcNetBytes);
    if (!content) {
      if (std::string_view(file) == "/net/tcp6")
        continue; // IPv6 may be disabled
      return Result<std::vector<Listener>>::failure(errno_text(("read " + path).c_str(), errno));
    }
    size_t pos = 0;
    while (pos < content->size()) {
      size_t nl = content->find('\n', pos);
      if (nl == std::string::npos)
        nl = content->size();
      auto row = parse_proc_net_tcp_line(std::string_view(*content).substr(pos, nl - pos));
      pos = nl + 1;
      if (!row || row->state != TCP_LISTEN)
        continue;
      Listener l;
      l.address = row->local;
      l.depth = row->rx_queue;
      l.inode = row->inode;
      out.push_back(std::move(l));
    }
  }
  return out;
}

Result<std::vector<Listener>> proc_unix_listeners(pid_t pid) {
  std::string path = proc_dir(pid) + "/net/unix";
  auto content = base::read_small_file(path, kMaxProcNetBytes);
  if (!content)
    return Result<std::vector<Listener>>::failure(errno_text(("read " + path).c_str(), errno));
  std::vector<Listener> out;
  size_t pos = 0;
  while (pos < content->size()) {
    size_t nl = content->find('\n', pos);
    if (nl == std::string::npos)
      nl = content->size();
    auto row = parse_proc_net_unix_line(std::string_view(*content).substr(pos, nl - pos));
    pos = nl + 1;
    if (!row || !row->listening() || row->type != SOCK_STREAM || row->path.empty())
      continue;
    Listener l;
    l.address = "unix:" + row->path; // already "@name" for abstract sockets
    l.inode = row->inode;
    out.push_back(std::move(l));
  }
  return out;
}

} // namespace why502::host
