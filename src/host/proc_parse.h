// Parsers for the /proc/<pid>/net files the host sampler reads: the fallback
// listener sources (tcp, tcp6, unix) and the TcpExt counters (netstat).
// Pure string functions, no file access, so they are unit-tested on captured lines.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace why502::host {

// One row of /proc/net/tcp or /proc/net/tcp6.
struct ProcTcpRow {
  std::string local;     // "127.0.0.1:8080", "[::]:8080"
  uint8_t state = 0;     // TCP_* (0x0A = LISTEN)
  uint32_t tx_queue = 0;
  uint32_t rx_queue = 0; // for a LISTEN socket: connections waiting in the accept queue
  uint64_t inode = 0;
};
// nullopt for the header line and anything malformed.
std::optional<ProcTcpRow> parse_proc_net_tcp_line(std::string_view line);

// One row of /proc/net/unix.
struct ProcUnixRow {
  uint32_t flags = 0; // 0x10000 (__SO_ACCEPTCON) = listening
  uint16_t type = 0;  // SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5
  uint8_t state = 0;  // SS_UNCONNECTED = 1, ...
  uint64_t inode = 0;
  std::string path;   // "" unnamed, "/run/x.sock", "@abstract"
  bool listening() const { return flags & 0x10000; }
};
std::optional<ProcUnixRow> parse_proc_net_unix_line(std::string_view line);

// TcpExt counters of /proc/net/netstat (whole file: a name line then a value line per group).
struct TcpExtCounters {
  uint64_t listen_overflows = 0;
  uint64_t listen_drops = 0;
};
std::optional<TcpExtCounters> parse_proc_net_netstat(std::string_view content);

// "127.0.0.1:8080" / "[::1]:8080" from a raw address (network byte order, 4 or 16 bytes)
// and a host-order port.
std::string format_inet(int family, const void *addr, uint16_t port);

// "unix:/path", "unix:@abstract" from a sun_path-style name ('\0' first = abstract;
// embedded NULs shown as '@', as /proc/net/unix does).
std::string format_unix(std::string_view name);

} // namespace why502::host
