// Ring-buffer record decoder and the JSON capture format.
#include "why502/kernel_event.h"

#include <arpa/inet.h>
#include <cstring>
#include <ctime>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "base/text.h"
#include "why502/events.h"

// The layout both sides agree on; a change here is a capture-format change.
static_assert(sizeof(why502_header) == 24);
static_assert(sizeof(why502_tuple) == 40);
static_assert(offsetof(why502_conn_fail, pid) == 64);
static_assert(sizeof(why502_conn_fail) % 8 == 0);
static_assert(sizeof(why502_syscall_err) % 8 == 0);
static_assert(sizeof(why502_drop) % 8 == 0);
static_assert(sizeof(why502_signal) % 8 == 0);
static_assert(sizeof(why502_exit) % 8 == 0);
static_assert(sizeof(why502_listen_change) == 88);
static_assert(offsetof(why502_listen_change, addr) == 56);
static_assert(sizeof(why502_unix_listener_exit) == 176);
static_assert(offsetof(why502_unix_listener_exit, path) == 64);

namespace why502 {

using nlohmann::json;

std::string Endpoint::str() const {
  if (addr.find(':') != std::string::npos)
    return "[" + addr + "]:" + std::to_string(port);
  return addr + ":" + std::to_string(port);
}

namespace {

std::string addr_string(int family, const uint8_t *bytes) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == AF_INET6) {
    // IPv4-mapped addresses read better as plain IPv4.
    static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(bytes, mapped_prefix, 12) == 0)
      return addr_string(AF_INET, bytes + 12);
    inet_ntop(AF_INET6, bytes, buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET, bytes, buf, sizeof(buf));
  }
  return buf;
}

// Task names (prctl PR_SET_NAME) and unix socket paths are any bytes a local user chose: valid UTF-8
// from here on, so every sink can print them.
std::string comm_string(const char *comm, size_t len) {
  return base::valid_utf8(std::string_view(comm, strnlen(comm, len)));
}

// sun_path as /proc/net/unix shows it: a filesystem path up to its NUL, an abstract name (leading
// NUL, then any bytes of the given length) as "@name".
std::string unix_path_string(const char *path, size_t len) {
  if (len > 0 && path[0] == '\0')
    return "@" + base::valid_utf8(std::string_view(path + 1, len - 1));
  return comm_string(path, len);
}

int family_number(uint16_t af) { return af == AF_INET6 ? 6 : 4; }

template <typename T> const T *view(std::span<const uint8_t> bytes) {
  return bytes.size() >= sizeof(T) ? reinterpret_cast<const T *>(bytes.data()) : nullptr;
}

ConnFailure conn_failure_from(uint32_t v, bool *ok) {
  *ok = true;
  switch (v) {
  case WHY502_FAIL_RST_IN_SYN_SENT: return ConnFailure::RstInSynSent;
  case WHY502_FAIL_RST_ESTABLISHED: return ConnFailure::RstEstablished;
  case WHY502_FAIL_FIN_BEFORE_DATA: return ConnFailure::FinBeforeData;
  case WHY502_FAIL_SYN_TIMEOUT: return ConnFailure::SynTimeout;
  case WHY502_FAIL_ICMP_ERROR: return ConnFailure::IcmpError;
  case WHY502_FAIL_SYN_RETRANS: return ConnFailure::SynRetransmit;
  }
  *ok = false;
  return ConnFailure::SynTimeout;
}

DropReason drop_reason_from(uint32_t code) {
  switch (code) {
  case WHY502_DROP_NO_SOCKET: return DropReason::NoSocket;
  case WHY502_DROP_TCP_LISTEN_OVERFLOW: return DropReason::TcpListenOverflow;
  case WHY502_DROP_NETFILTER_DROP: return DropReason::NetfilterDrop;
  case WHY502_DROP_SOCKET_BACKLOG: return DropReason::SocketBacklog;
  case WHY502_DROP_TCP_RESET: return DropReason::TcpReset;
  case WHY502_DROP_SOCKET_RCVBUFF: return DropReason::SocketRcvbuff;
  }
  return DropReason::Other;
}

Endpoint endpoint(int family, const uint8_t *addr, uint16_t port) { return {addr_string(family, addr), port}; }

} // namespace

std::string_view conn_failure_name(ConnFailure f) {
  switch (f) {
  case ConnFailure::RstInSynSent: return "rst_in_syn_sent";
  case ConnFailure::RstEstablished: return "rst_established";
  case ConnFailure::FinBeforeData: return "fin_before_data";
  case ConnFailure::SynTimeout: return "syn_timeout";
  case ConnFailure::IcmpError: return "icmp_error";
  case ConnFailure::SynRetransmit: return "syn_retransmit";
  }
  return "?";
}

std::string_view drop_reason_name(DropReason r) {
  switch (r) {
  case DropReason::NoSocket: return "NO_SOCKET";
  case DropReason::TcpListenOverflow: return "TCP_LISTEN_OVERFLOW";
  case DropReason::NetfilterDrop: return "NETFILTER_DROP";
  case DropReason::SocketBacklog: return "SOCKET_BACKLOG";
  case DropReason::TcpReset: return "TCP_RESET";
  case DropReason::SocketRcvbuff: return "SOCKET_RCVBUFF";
  case DropReason::Other: return "OTHER";
  }
  return "?";
}

std::string_view syscall_name(Syscall s) {
  switch (s) {
  case Syscall::Connect: return "connect";
  case Syscall::Socket: return "socket";
  case Syscall::Accept: return "accept4";
  }
  return "?";
}

std::string_view event_name(const KernelRecord &r) {
  struct Names {
    std::string_view operator()(const ConnFail &) const { return "conn_fail"; }
    std::string_view operator()(const SyscallErr &) const { return "syscall_error"; }
    std::string_view operator()(const PacketDrop &) const { return "packet_drop"; }
    std::string_view operator()(const ResetSent &) const { return "tcp_send_reset"; }
    std::string_view operator()(const OomVictim &) const { return "oom_kill"; }
    std::string_view operator()(const FatalSignal &) const { return "fatal_signal"; }
    std::string_view operator()(const ProcessExit &) const { return "process_exit"; }
    std::string_view operator()(const WatchStart &) const { return "watch"; }
    std::string_view operator()(const ListenChange &) const { return "listen_change"; }
    std::string_view operator()(const UnixListenerExit &) const { return "unix_listener_exit"; }
  };
  return std::visit(Names{}, r);
}

std::string tcp_state_name(uint32_t state) {
  static const char *names[] = {"",          "ESTABLISHED", "SYN_SENT",  "SYN_RECV", "FIN_WAIT1",
                                "FIN_WAIT2", "TIME_WAIT",   "CLOSE",     "CLOSE_WAIT", "LAST_ACK",
                                "LISTEN",    "CLOSING",     "NEW_SYN_RECV"};
  if (state < std::size(names))
    return names[state];
  return "STATE_" + std::to_string(state);
}

std::string errno_name(int err) {
  switch (err) {
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case EAGAIN: return "EAGAIN";
  case ENOMEM: return "ENOMEM";
  case EACCES: return "EACCES";
  case ENFILE: return "ENFILE";
  case EMFILE: return "EMFILE";
  case EPIPE: return "EPIPE";
  case ENOBUFS: return "ENOBUFS";
  case EADDRINUSE: return "EADDRINUSE";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case ENETDOWN: return "ENETDOWN";
  case ENETUNREACH: return "ENETUNREACH";
  case ECONNABORTED: return "ECONNABORTED";
  case ECONNRESET: return "ECONNRESET";
  case ETIMEDOUT: return "ETIMEDOUT";
  case ECONNREFUSED: return "ECONNREFUSED";
  case EHOSTDOWN: return "EHOSTDOWN";
  case EHOSTUNREACH: return "EHOSTUNREACH";
  case EINPROGRESS: return "EINPROGRESS";
  case EPROTO: return "EPROTO";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EINVAL: return "EINVAL";
  case EISCONN: return "EISCONN";
  case EALREADY: return "EALREADY";
  case 0: return "";
  }
  return "E" + std::to_string(err);
}

std::string signal_name(int sig) {
  const char *abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "SIG" + std::to_string(sig);
}

std::optional<KernelEvent> decode_record(std::span<const uint8_t> bytes, std::string *error) {
  const auto *hdr = view<why502_header>(bytes);
  if (!hdr) {
    *error = "record shorter than its header";
    return std::nullopt;
  }
  KernelEvent ev;
  ev.boot_ns = hdr->ts_ns;
  ev.cpu = hdr->cpu;
  ev.host = hdr->flags & WHY502_FLAG_HOST;
  auto truncated = [&](const char *what) {
    *error = std::string("truncated ") + what + " record (" + std::to_string(bytes.size()) + " bytes)";
    return std::nullopt;
  };
  switch (hdr->kind) {
  case WHY502_EV_CONN_FAIL: {
    const auto *r = view<why502_conn_fail>(bytes);
    if (!r)
      return truncated("conn_fail");
    ConnFail c;
    bool ok = false;
    c.failure = conn_failure_from(r->failure, &ok);
    if (!ok) {
      *error = "unknown connection failure " + std::to_string(r->failure);
      return std::nullopt;
    }
    c.pid = r->pid;
    c.tid = r->tid;
    c.comm = comm_string(r->comm, sizeof(r->comm));
    c.family = family_number(r->tuple.family);
    c.local = endpoint(r->tuple.family, r->tuple.saddr, r->tuple.sport);
    c.remote = endpoint(r->tuple.family, r->tuple.daddr, r->tuple.dport);
    c.sk_err = r->sk_err;
    c.syn_retrans = r->syn_retrans;
    c.retrans = r->retrans;
    c.last_state = tcp_state_name(r->last_state);
    c.bytes_received = r->bytes_received;
    c.bytes_acked = r->bytes_acked;
    c.ts_syn_sent = r->ts_syn_sent;
    c.ts_established = r->ts_established;
    c.ts_reset = r->ts_reset;
    c.ts_fin_received = r->ts_fin_received;
    c.ts_error = r->ts_error;
    c.ts_close = r->ts_close;
    c.conn_id = r->conn_id;
    ev.record = std::move(c);
    break;
  }
  case WHY502_EV_SYSCALL_ERR: {
    const auto *r = view<why502_syscall_err>(bytes);
    if (!r)
      return truncated("syscall_error");
    SyscallErr s;
    s.pid = r->pid;
    s.tid = r->tid;
    s.comm = comm_string(r->comm, sizeof(r->comm));
    s.syscall = r->syscall == WHY502_SYS_SOCKET   ? Syscall::Socket
                : r->syscall == WHY502_SYS_ACCEPT ? Syscall::Accept
                                                  : Syscall::Connect;
    s.err = r->err;
    s.fd = r->fd;
    if (r->family == AF_UNIX)
      s.target = "unix:" + comm_string(r->unix_path, sizeof(r->unix_path));
    else if (r->family == AF_INET || r->family == AF_INET6)
      s.target = endpoint(r->family, r->addr, r->port).str();
    ev.record = std::move(s);
    break;
  }
  case WHY502_EV_DROP: {
    const auto *r = view<why502_drop>(bytes);
    if (!r)
      return truncated("packet_drop");
    PacketDrop d;
    d.src = endpoint(r->tuple.family, r->tuple.saddr, r->tuple.sport);
    d.dst = endpoint(r->tuple.family, r->tuple.daddr, r->tuple.dport);
    d.reason = drop_reason_from(r->reason_code);
    d.kernel_reason = r->reason;
    d.tcp_flags = r->tcp_flags;
    ev.record = std::move(d);
    break;
  }
  case WHY502_EV_RESET_SENT: {
    const auto *r = view<why502_reset_sent>(bytes);
    if (!r)
      return truncated("tcp_send_reset");
    ResetSent s;
    s.src = endpoint(r->tuple.family, r->tuple.saddr, r->tuple.sport);
    s.dst = endpoint(r->tuple.family, r->tuple.daddr, r->tuple.dport);
    s.has_socket = r->has_socket;
    s.state = r->has_socket ? tcp_state_name(r->state) : "";
    ev.record = std::move(s);
    break;
  }
  case WHY502_EV_OOM_VICTIM: {
    const auto *r = view<why502_oom_victim>(bytes);
    if (!r)
      return truncated("oom_kill");
    const uint64_t page_kb = 4; // x86-64 and arm64 default; the kernel reports pages
    OomVictim o;
    o.pid = r->pid;
    o.uid = r->uid;
    o.comm = comm_string(r->comm, sizeof(r->comm));
    o.total_vm_kb = r->total_vm_pages * page_kb;
    o.anon_rss_kb = r->anon_rss_pages * page_kb;
    o.file_rss_kb = r->file_rss_pages * page_kb;
    o.shmem_rss_kb = r->shmem_rss_pages * page_kb;
    ev.record = std::move(o);
    break;
  }
  case WHY502_EV_SIGNAL: {
    const auto *r = view<why502_signal>(bytes);
    if (!r)
      return truncated("fatal_signal");
    FatalSignal s;
    s.sig = r->sig;
    s.result = r->result;
    s.target_pid = r->target_pid;
    s.target_tid = r->target_tid;
    s.target_comm = comm_string(r->target_comm, sizeof(r->target_comm));
    s.sender_pid = r->sender_pid;
    s.sender_tid = r->sender_tid;
    s.sender_comm = comm_string(r->sender_comm, sizeof(r->sender_comm));
    s.si_code = r->si_code;
    ev.record = std::move(s);
    break;
  }
  case WHY502_EV_EXIT: {
    const auto *r = view<why502_exit>(bytes);
    if (!r)
      return truncated("process_exit");
    ProcessExit x;
    x.pid = r->pid;
    x.ppid = r->ppid;
    x.comm = comm_string(r->comm, sizeof(r->comm));
    x.signal = r->exit_code & 0x7f;
    x.core_dumped = r->exit_code & 0x80;
    x.exit_code = (r->exit_code >> 8) & 0xff;
    x.watched = r->watched;
    ev.record = std::move(x);
    break;
  }
  case WHY502_EV_WATCH: {
    const auto *r = view<why502_watch>(bytes);
    if (!r)
      return truncated("watch");
    WatchStart w;
    w.pid = r->pid;
    w.parent_pid = r->parent_pid;
    w.comm = comm_string(r->comm, sizeof(r->comm));
    w.via = r->via == 2 ? "exec" : "fork";
    ev.record = std::move(w);
    break;
  }
  case WHY502_EV_LISTEN_CHANGE: {
    const auto *r = view<why502_listen_change>(bytes);
    if (!r)
      return truncated("listen_change");
    if (r->family != AF_INET && r->family != AF_INET6) {
      *error = "listen_change with address family " + std::to_string(r->family);
      return std::nullopt;
    }
    ListenChange l;
    l.pid = r->pid;
    l.tid = r->tid;
    l.comm = comm_string(r->comm, sizeof(r->comm));
    l.family = family_number(r->family);
    l.local = endpoint(r->family, r->addr, r->port);
    l.netns = r->netns;
    l.cookie = r->cookie;
    l.listening = r->listening;
    l.exiting = r->exiting;
    ev.record = std::move(l);
    break;
  }
  case WHY502_EV_UNIX_LISTENER_EXIT: {
    const auto *r = view<why502_unix_listener_exit>(bytes);
    if (!r)
      return truncated("unix_listener_exit");
    UnixListenerExit u;
    u.pid = r->pid;
    u.fd = r->fd;
    u.comm = comm_string(r->comm, sizeof(r->comm));
    u.address = "unix:" + unix_path_string(r->path, std::min<size_t>(r->path_len, sizeof(r->path)));
    u.inode = r->inode;
    u.netns = r->netns;
    ev.record = std::move(u);
    break;
  }
  default:
    *error = "unknown record kind " + std::to_string(hdr->kind);
    return std::nullopt;
  }
  return ev;
}

std::string format_wall_time(int64_t wall_ns) {
  time_t secs = wall_ns / 1000000000;
  long micros = (wall_ns % 1000000000) / 1000;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof(buf) - n, ".%06ldZ", micros);
  return buf;
}

std::optional<int64_t> parse_wall_time(std::string_view iso) {
  struct tm tm = {};
  std::string s(iso);
  const char *rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest)
    return std::nullopt;
  int64_t ns = int64_t(timegm(&tm)) * 1000000000;
  if (*rest == '.') {
    ++rest;
    int64_t scale = 100000000;
    while (*rest >= '0' && *rest <= '9') {
      ns += (*rest - '0') * scale;
      scale /= 10;
      ++rest;
    }
  }
  if (*rest != 'Z' && *rest != 0)
    return std::nullopt;
  return ns;
}

namespace {

json endpoint_json(const Endpoint &e) { return e.str(); }

std::optional<Endpoint> endpoint_from(const std::string &s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon + 1 >= s.size())
    return std::nullopt;
  Endpoint e;
  e.addr = s.substr(0, colon);
  if (e.addr.size() >= 2 && e.addr.front() == '[' && e.addr.back() == ']')
    e.addr = e.addr.substr(1, e.addr.size() - 2);
  try {
    unsigned long port = std::stoul(s.substr(colon + 1));
    if (port > 65535)
      return std::nullopt;
    e.port = uint16_t(port);
  } catch (const std::exception &) {
    return std::nullopt;
  }
  return e;
}

struct ToJson {
  json &j;
  void operator()(const ConnFail &c) const {
    j["failure"] = conn_failure_name(c.failure);
    j["pid"] = c.pid;
    j["tid"] = c.tid;
    j["comm"] = c.comm;
    j["family"] = c.family;
    j["local"] = endpoint_json(c.local);
    j["remote"] = endpoint_json(c.remote);
    j["sk_err"] = c.sk_err;
    j["sk_errno"] = errno_name(c.sk_err);
    j["syn_retrans"] = c.syn_retrans;
    j["retrans"] = c.retrans;
    j["last_state"] = c.last_state;
    j["bytes_received"] = c.bytes_received;
    j["bytes_acked"] = c.bytes_acked;
    j["ts_syn_sent"] = c.ts_syn_sent;
    j["ts_established"] = c.ts_established;
    j["ts_reset"] = c.ts_reset;
    j["ts_fin_received"] = c.ts_fin_received;
    j["ts_error"] = c.ts_error;
    j["ts_close"] = c.ts_close;
    j["conn_id"] = c.conn_id;
  }
  void operator()(const SyscallErr &s) const {
    j["syscall"] = syscall_name(s.syscall);
    j["pid"] = s.pid;
    j["tid"] = s.tid;
    j["comm"] = s.comm;
    j["errno"] = s.err;
    j["errno_name"] = errno_name(s.err);
    j["fd"] = s.fd;
    j["target"] = s.target;
  }
  void operator()(const PacketDrop &d) const {
    j["reason"] = drop_reason_name(d.reason);
    j["kernel_reason"] = d.kernel_reason;
    j["src"] = endpoint_json(d.src);
    j["dst"] = endpoint_json(d.dst);
    j["tcp_flags"] = d.tcp_flags;
  }
  void operator()(const ResetSent &r) const {
    j["src"] = endpoint_json(r.src);
    j["dst"] = endpoint_json(r.dst);
    j["state"] = r.state;
    j["has_socket"] = r.has_socket;
  }
  void operator()(const OomVictim &o) const {
    j["pid"] = o.pid;
    j["uid"] = o.uid;
    j["comm"] = o.comm;
    j["total_vm_kb"] = o.total_vm_kb;
    j["anon_rss_kb"] = o.anon_rss_kb;
    j["file_rss_kb"] = o.file_rss_kb;
    j["shmem_rss_kb"] = o.shmem_rss_kb;
  }
  void operator()(const FatalSignal &s) const {
    j["signal"] = s.sig;
    j["signal_name"] = signal_name(s.sig);
    j["result"] = s.result;
    j["pid"] = s.target_pid;
    j["tid"] = s.target_tid;
    j["comm"] = s.target_comm;
    j["sender_pid"] = s.sender_pid;
    j["sender_tid"] = s.sender_tid;
    j["sender_comm"] = s.sender_comm;
    j["si_code"] = s.si_code;
  }
  void operator()(const ProcessExit &x) const {
    j["pid"] = x.pid;
    j["ppid"] = x.ppid;
    j["comm"] = x.comm;
    j["exit_code"] = x.exit_code;
    j["exit_signal"] = x.signal;
    j["core_dumped"] = x.core_dumped;
    j["watched"] = x.watched;
  }
  void operator()(const WatchStart &w) const {
    j["pid"] = w.pid;
    j["parent_pid"] = w.parent_pid;
    j["comm"] = w.comm;
    j["via"] = w.via;
  }
  void operator()(const ListenChange &l) const {
    j["pid"] = l.pid;
    j["tid"] = l.tid;
    j["comm"] = l.comm;
    j["family"] = l.family;
    j["local"] = endpoint_json(l.local);
    j["netns"] = l.netns;
    j["cookie"] = l.cookie;
    j["listening"] = l.listening;
    j["exiting"] = l.exiting;
  }
  void operator()(const UnixListenerExit &u) const {
    j["pid"] = u.pid;
    j["fd"] = u.fd;
    j["comm"] = u.comm;
    j["local"] = u.address;
    j["inode"] = u.inode;
    j["netns"] = u.netns;
  }
};

} // namespace

json to_json(const KernelEvent &ev) {
  json j;
  j["type"] = "event";
  j["event"] = event_name(ev.record);
  j["time"] = format_wall_time(ev.wall_ns);
  j["boot_ns"] = ev.boot_ns;
  j["cpu"] = ev.cpu;
  j["host"] = ev.host;
  std::visit(ToJson{j}, ev.record);
  return j;
}

std::optional<KernelEvent> event_from_json(const json &j, std::string *error) {
  try {
    KernelEvent ev;
    const std::string name = j.at("event").get<std::string>();
    ev.boot_ns = j.at("boot_ns").get<uint64_t>();
    auto wall = parse_wall_time(j.at("time").get<std::string>());
    if (!wall) {
      *error = "bad time field";
      return std::nullopt;
    }
    ev.wall_ns = *wall;
    ev.cpu = j.value("cpu", 0u);
    ev.host = j.value("host", false);
    auto ep = [&](const char *key) {
      auto e = endpoint_from(j.at(key).get<std::string>());
      if (!e)
        throw std::runtime_error(std::string("bad endpoint in ") + key);
      return *e;
    };
    if (name == "conn_fail") {
      ConnFail c;
      const std::string f = j.at("failure").get<std::string>();
      bool found = false;
      for (auto cand : {ConnFailure::RstInSynSent, ConnFailure::RstEstablished, ConnFailure::FinBeforeData,
                        ConnFailure::SynTimeout, ConnFailure::IcmpError, ConnFailure::SynRetransmit})
        if (conn_failure_name(cand) == f) {
          c.failure = cand;
          found = true;
        }
      if (!found)
        throw std::runtime_error("unknown failure " + f);
      c.pid = j.at("pid");
      c.tid = j.at("tid");
      c.comm = j.at("comm");
      c.family = j.at("family");
      c.local = ep("local");
      c.remote = ep("remote");
      c.sk_err = j.at("sk_err");
      c.syn_retrans = j.at("syn_retrans");
      c.retrans = j.at("retrans");
      c.last_state = j.at("last_state");
      c.bytes_received = j.at("bytes_received");
      c.bytes_acked = j.at("bytes_acked");
      c.ts_syn_sent = j.at("ts_syn_sent");
      c.ts_established = j.at("ts_established");
      c.ts_reset = j.at("ts_reset");
      c.ts_fin_received = j.at("ts_fin_received");
      c.ts_error = j.at("ts_error");
      c.ts_close = j.at("ts_close");
      c.conn_id = j.value("conn_id", uint64_t(0));
      ev.record = std::move(c);
    } else if (name == "syscall_error") {
      SyscallErr s;
      const std::string sc = j.at("syscall").get<std::string>();
      s.syscall = sc == "socket" ? Syscall::Socket : sc == "accept4" ? Syscall::Accept : Syscall::Connect;
      s.pid = j.at("pid");
      s.tid = j.at("tid");
      s.comm = j.at("comm");
      s.err = j.at("errno");
      s.fd = j.at("fd");
      s.target = j.at("target");
      ev.record = std::move(s);
    } else if (name == "packet_drop") {
      PacketDrop d;
      const std::string r = j.at("reason").get<std::string>();
      d.reason = DropReason::Other;
      for (auto cand : {DropReason::NoSocket, DropReason::TcpListenOverflow, DropReason::NetfilterDrop,
                        DropReason::SocketBacklog, DropReason::TcpReset, DropReason::SocketRcvbuff})
        if (drop_reason_name(cand) == r)
          d.reason = cand;
      d.kernel_reason = j.at("kernel_reason");
      d.src = ep("src");
      d.dst = ep("dst");
      d.tcp_flags = j.value("tcp_flags", 0);
      ev.record = std::move(d);
    } else if (name == "tcp_send_reset") {
      ResetSent r;
      r.src = ep("src");
      r.dst = ep("dst");
      r.state = j.at("state");
      r.has_socket = j.at("has_socket");
      ev.record = std::move(r);
    } else if (name == "oom_kill") {
      OomVictim o;
      o.pid = j.at("pid");
      o.uid = j.at("uid");
      o.comm = j.at("comm");
      o.total_vm_kb = j.at("total_vm_kb");
      o.anon_rss_kb = j.at("anon_rss_kb");
      o.file_rss_kb = j.at("file_rss_kb");
      o.shmem_rss_kb = j.at("shmem_rss_kb");
      ev.record = std::move(o);
    } else if (name == "fatal_signal") {
      FatalSignal s;
      s.sig = j.at("signal");
      s.result = j.at("result");
      s.target_pid = j.at("pid");
      s.target_tid = j.at("tid");
      s.target_comm = j.at("comm");
      s.sender_pid = j.at("sender_pid");
      s.sender_tid = j.at("sender_tid");
      s.sender_comm = j.at("sender_comm");
      s.si_code = j.at("si_code");
      ev.record = std::move(s);
    } else if (name == "process_exit") {
      ProcessExit x;
      x.pid = j.at("pid");
      x.ppid = j.at("ppid");
      x.comm = j.at("comm");
      x.exit_code = j.at("exit_code");
      x.signal = j.at("exit_signal");
      x.core_dumped = j.at("core_dumped");
      x.watched = j.at("watched");
      ev.record = std::move(x);
    } else if (name == "watch") {
      WatchStart w;
      w.pid = j.at("pid");
      w.parent_pid = j.at("parent_pid");
      w.comm = j.at("comm");
      w.via = j.at("via");
      ev.record = std::move(w);
    } else if (name == "listen_change") {
      ListenChange l;
      l.pid = j.at("pid");
      l.tid = j.at("tid");
      l.comm = j.at("comm");
      l.family = j.at("family");
      l.local = ep("local");
      l.netns = j.value("netns", 0u);
      l.cookie = j.value("cookie", uint64_t(0));
      l.listening = j.at("listening");
      l.exiting = j.at("exiting");
      ev.record = std::move(l);
    } else if (name == "unix_listener_exit") {
      UnixListenerExit u;
      u.pid = j.at("pid");
      u.fd = j.at("fd");
      u.comm = j.at("comm");
      u.address = j.at("local");
      u.inode = j.at("inode");
      u.netns = j.value("netns", 0u);
      ev.record = std::move(u);
    } else {
      *error = "unknown event \"" + name + "\"";
      return std::nullopt;
    }
    return ev;
  } catch (const std::exception &e) {
    *error = e.what();
    return std::nullopt;
  }
}

} // namespace why502
