// Ring-buffer record decoder and the JSON capture format.
#include "why502/kernel_event.h"

#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include "base/text.h"
#include "why502/events.h"

// The layout both sides agree on is checked field by field against the BPF object's BTF
// (tests/unit/abi_layout_test.cpp).

namespace why502 {

namespace {

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

Endpoint endpoint(int family, const uint8_t *addr, uint16_t port) { return Address::inet(family, addr, port); }

} // namespace

std::string_view event_name(const KernelRecord &r) {
  return std::visit([](const auto &rec) { return std::decay_t<decltype(rec)>::kName; }, r);
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

Result<KernelEvent> decode_record(std::span<const uint8_t> bytes) {
  const auto *hdr = view<why502_header>(bytes);
  if (!hdr)
    return Result<KernelEvent>::failure("record shorter than its header");
  KernelEvent ev;
  ev.boot_ns = hdr->ts_ns;
  ev.cpu = hdr->cpu;
  ev.host = hdr->flags & WHY502_FLAG_HOST;
  auto truncated = [&](const char *what) {
    return Result<KernelEvent>::failure(std::string("truncated ") + what + " record (" +
                                        std::to_string(bytes.size()) + " bytes)");
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
      return Result<KernelEvent>::failure("unknown connection failure " + std::to_string(r->failure));
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
      s.target = Address::unix_socket(comm_string(r->unix_path, sizeof(r->unix_path))).str();
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
      return Result<KernelEvent>::failure("listen_change with address family " + std::to_string(r->family));
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
    u.address = Address::unix_socket(unix_path_string(r->path, std::min<size_t>(r->path_len, sizeof(r->path)))).str();
    u.inode = r->inode;
    u.netns = r->netns;
    ev.record = std::move(u);
    break;
  }
  default:
    return Result<KernelEvent>::failure("unknown record kind " + std::to_string(hdr->kind));
  }
  return ev;
}

} // namespace why502
