// HostSampler, the host_sample JSON form, and listener_serves().
#include "why502/host.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>
#include <ctime>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/time.h"
#include "host/listeners.h"
#include "host/owners.h"
#include "host/proc_parse.h"
#include "why502/kernel_event.h"

namespace why502 {

using nlohmann::json;

// ---------------------------------------------------------------- JSON

json to_json(const HostSample &s) {
  json listeners = json::array();
  for (const auto &l : s.listeners) {
    json owners = json::array();
    for (const auto &o : l.owners)
      owners.push_back({{"pid", o.pid}, {"comm", o.comm}});
    listeners.push_back(
        {{"address", l.address}, {"depth", l.depth}, {"max", l.max}, {"inode", l.inode}, {"owners", owners}});
  }
  json j = {{"type", "host"},
            {"event", "host_sample"},
            {"time", base::format_wall_time(s.wall_ns)},
            {"listen_overflows", s.listen_overflows},
            {"listen_drops", s.listen_drops},
            {"listeners", listeners}};
  if (s.utc_offset_s)
    j["utc_offset_s"] = *s.utc_offset_s;
  return j;
}

namespace {

template <typename T> bool get_unsigned(const json &j, const char *key, T *out, std::string *err, const std::string &where) {
  auto it = j.find(key);
  if (it == j.end()) {
    *err = where + key + ": missing";
    return false;
  }
  bool ok = it->is_number_unsigned() || (it->is_number_integer() && it->get<int64_t>() >= 0);
  if (!ok || it->get<uint64_t>() > uint64_t(std::numeric_limits<T>::max())) {
    *err = where + key + ": expected an unsigned integer";
    return false;
  }
  *out = T(it->get<uint64_t>());
  return true;
}

bool get_string(const json &j, const char *key, std::string *out, std::string *err, const std::string &where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) {
    *err = where + key + (it == j.end() ? ": missing" : ": expected a string");
    return false;
  }
  *out = it->get<std::string>();
  return true;
}

} // namespace

namespace {

std::optional<HostSample> host_sample_from(const json &j, std::string *err) {
  if (!j.is_object()) {
    *err = "host_sample: expected an object";
    return std::nullopt;
  }
  std::string type, event, time;
  if (!get_string(j, "type", &type, err, "") || !get_string(j, "event", &event, err, ""))
    return std::nullopt;
  if (type != "host" || event != "host_sample") {
    *err = "not a host_sample record (type=" + type + ", event=" + event + ")";
    return std::nullopt;
  }
  HostSample s;
  if (!get_string(j, "time", &time, err, ""))
    return std::nullopt;
  auto wall = base::parse_wall_time(time);
  if (!wall) {
    *err = "time: not an ISO UTC time: " + time;
    return std::nullopt;
  }
  s.wall_ns = *wall;
  if (!get_unsigned(j, "listen_overflows", &s.listen_overflows, err, "") ||
      !get_unsigned(j, "listen_drops", &s.listen_drops, err, ""))
    return std::nullopt;
  if (auto off = j.find("utc_offset_s"); off != j.end()) {
    constexpr int64_t kMaxOffset = 18 * 3600; // the widest zone offset ISO 8601 allows
    if (!off->is_number_integer() || off->get<int64_t>() < -kMaxOffset || off->get<int64_t>() > kMaxOffset) {
      *err = "utc_offset_s: expected seconds east of UTC within 18 hours";
      return std::nullopt;
    }
    s.utc_offset_s = static_cast<int>(off->get<int64_t>());
  }
  auto ls = j.find("listeners");
  if (ls == j.end() || !ls->is_array()) {
    *err = "listeners: expected an array";
    return std::nullopt;
  }
  for (size_t i = 0; i < ls->size(); ++i) {
    const json &lj = (*ls)[i];
    std::string where = "listeners[" + std::to_string(i) + "].";
    if (!lj.is_object()) {
      *err = where.substr(0, where.size() - 1) + ": expected an object";
      return std::nullopt;
    }
    Listener l;
    if (!get_string(lj, "address", &l.address, err, where) || !get_unsigned(lj, "depth", &l.depth, err, where) ||
        !get_unsigned(lj, "max", &l.max, err, where) || !get_unsigned(lj, "inode", &l.inode, err, where))
      return std::nullopt;
    if (l.address.empty()) {
      *err = where + "address: empty";
      return std::nullopt;
    }
    if (auto os = lj.find("owners"); os != lj.end()) {
      if (!os->is_array()) {
        *err = where + "owners: expected an array";
        return std::nullopt;
      }
      for (size_t k = 0; k < os->size(); ++k) {
        const json &oj = (*os)[k];
        std::string owhere = where + "owners[" + std::to_string(k) + "].";
        ProcessRef p;
        if (!oj.is_object()) {
          *err = owhere.substr(0, owhere.size() - 1) + ": expected an object";
          return std::nullopt;
        }
        if (!get_unsigned(oj, "pid", &p.pid, err, owhere) || !get_string(oj, "comm", &p.comm, err, owhere))
          return std::nullopt;
        l.owners.push_back(std::move(p));
      }
    }
    s.listeners.push_back(std::move(l));
  }
  return s;
}

} // namespace

Result<HostSample> host_sample_from_json(const json &j) {
  std::string err;
  if (auto s = host_sample_from(j, &err))
    return std::move(*s);
  return Result<HostSample>::failure(err);
}

// ---------------------------------------------------------------- listener_serves

bool listener_serves(const std::string &listener, const std::string &upstream) {
  auto l = Address::parse(listener), u = Address::parse(upstream);
  if (!l || !u)
    return listener == upstream; // an upstream{} name, or text that is no address
  return l->serves(*u);
}

// ---------------------------------------------------------------- HostSampler

struct HostSampler::Impl {
  pid_t pid = 0;
  int diag_fd = -1;
  ino_t netns_ino = 0;
  dev_t netns_dev = 0;
  uint32_t seq = 0;
  // After sock_diag failed, fall back to /proc and only retry it this much later.
  std::chrono::steady_clock::time_point diag_retry_at{};
  // UNIX_DIAG can be missing (a module not loaded) while inet_diag works: then only
  // unix listeners come from /proc, and unix_diag is retried this much later.
  std::chrono::steady_clock::time_point unix_diag_retry_at{};
  bool warned_netns = false, warned_diag = false, warned_netstat = false;
  host::OwnerCache owners;

  ~Impl() { close_diag(); }
  void close_diag() {
    if (diag_fd >= 0)
      close(diag_fd);
    diag_fd = -1;
  }
  void diag_failed(const std::string &why) {
    close_diag();
    diag_retry_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    if (!warned_diag)
      spdlog::warn("host sampler: sock_diag unavailable ({}); reading /proc/{}/net instead, without "
                   "accept-queue limits",
                   why, pid ? std::to_string(pid) : std::string("self"));
    warned_diag = true;
  }
};

HostSampler::HostSampler(pid_t netns_pid) : impl_(std::make_unique<Impl>()) { impl_->pid = netns_pid; }
HostSampler::~HostSampler() = default;

void HostSampler::set_netns_pid(pid_t pid) {
  if (pid == impl_->pid)
    return;
  impl_->pid = pid;
  // The netns inode check in sample() reopens the socket if the netns differs;
  // warnings are worth repeating for a new target.
  impl_->warned_netns = impl_->warned_diag = impl_->warned_netstat = false;
  impl_->diag_retry_at = impl_->unix_diag_retry_at = {};
}

HostSample HostSampler::sample() {
  Impl &m = *impl_;
  HostSample s;
  s.wall_ns = base::wall_clock_ns();
  s.utc_offset_s = base::local_utc_offset_s(s.wall_ns / 1000000000);

  std::string dir = host::proc_dir(m.pid);
  struct stat ns;
  if (stat((dir + "/ns/net").c_str(), &ns) != 0) {
    if (!m.warned_netns)
      spdlog::warn("host sampler: cannot see the netns of {}: {}", dir, strerror(errno));
    m.warned_netns = true;
    m.close_diag();
    m.netns_ino = 0;
    return s;
  }
  m.warned_netns = false;
  if (ns.st_ino != m.netns_ino || ns.st_dev != m.netns_dev) {
    m.close_diag();
    m.netns_ino = ns.st_ino;
    m.netns_dev = ns.st_dev;
    m.diag_retry_at = m.unix_diag_retry_at = {};
  }
  if (m.diag_fd < 0 && std::chrono::steady_clock::now() >= m.diag_retry_at) {
    auto fd = host::open_sock_diag(m.pid);
    if (fd)
      m.diag_fd = *fd;
    else
      m.diag_failed(fd.error());
  }

  bool tcp_done = false, unix_done = false;
  if (m.diag_fd >= 0) {
    auto v4 = host::diag_tcp_listeners(m.diag_fd, AF_INET, &m.seq);
    auto v6 = v4 ? host::diag_tcp_listeners(m.diag_fd, AF_INET6, &m.seq) : v4;
    if (v4 && v6) {
      s.listeners = std::move(*v4);
      s.listeners.insert(s.listeners.end(), v6->begin(), v6->end());
      tcp_done = true;
      if (std::chrono::steady_clock::now() >= m.unix_diag_retry_at) {
        if (auto ux = host::diag_unix_listeners(m.diag_fd, &m.seq)) {
          s.listeners.insert(s.listeners.end(), ux->begin(), ux->end());
          unix_done = true;
        } else {
          spdlog::debug("host sampler: unix_diag failed ({}); unix listeners from /proc", ux.error());
          m.unix_diag_retry_at = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        }
      }
    } else {
      m.diag_failed(v4 ? v6.error() : v4.error());
    }
  }
  if (!tcp_done) {
    if (auto t = host::proc_tcp_listeners(m.pid))
      s.listeners.insert(s.listeners.end(), t->begin(), t->end());
  }
  if (!unix_done) {
    if (auto u = host::proc_unix_listeners(m.pid))
      s.listeners.insert(s.listeners.end(), u->begin(), u->end());
  }

  if (auto netstat = base::read_small_file(dir + "/net/netstat")) {
    if (auto c = host::parse_proc_net_netstat(*netstat)) {
      s.listen_overflows = c->listen_overflows;
      s.listen_drops = c->listen_drops;
    } else if (!m.warned_netstat) {
      spdlog::warn("host sampler: no TcpExt ListenOverflows/ListenDrops in {}/net/netstat", dir);
      m.warned_netstat = true;
    }
  }

  std::sort(s.listeners.begin(), s.listeners.end(), [](const Listener &a, const Listener &b) {
    return std::tie(a.address, a.inode) < std::tie(b.address, b.inode);
  });
  m.owners.resolve(s.listeners);
  return s;
}

} // namespace why502
