#include "host/proc_parse.h"

#include "base/text.h"
#include "why502/kernel_event.h"

#include <arpa/inet.h>
#include <charconv>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>

namespace why502::host {
namespace {

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
      ++i;
    size_t start = i;
    while (i < s.size() && !(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
      ++i;
    if (i > start)
      out.push_back(s.substr(start, i - start));
  }
  return out;
}

template <typename T> bool parse_num(std::string_view s, T *out, int base) {
  if (s.empty())
    return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

// "0100007F:1F90" (v4) or 32 hex digits ":" port (v6). The kernel prints each
// 32-bit word of the address with %08X of its in-memory value, so each word is
// read back as a native integer and stored as-is.
bool parse_hex_endpoint(std::string_view s, std::string *out) {
  auto colon = s.find(':');
  if (colon == std::string_view::npos)
    return false;
  std::string_view hex = s.substr(0, colon);
  uint16_t port;
  if (!parse_num(s.substr(colon + 1), &port, 16) || s.size() - colon - 1 != 4)
    return false;
  if (hex.size() != 8 && hex.size() != 32)
    return false;
  uint32_t words[4] = {};
  for (size_t w = 0; w < hex.size() / 8; ++w)
    if (!parse_num(hex.substr(w * 8, 8), &words[w], 16))
      return false;
  *out = format_inet(hex.size() == 8 ? AF_INET : AF_INET6, words, port);
  return true;
}

} // namespace

std::string format_inet(int family, const void *addr, uint16_t port) {
  if (family != AF_INET && family != AF_INET6)
    return {};
  return Address::inet(family, addr, port).str(); // one spelling of addresses everywhere
}

std::string format_unix(std::string_view name) {
  std::string path;
  for (char c : name)
    path.push_back(c == '\0' ? '@' : c);
  std::string out = Address::unix_socket(path).str();
  // A path is any bytes its creator chose; the kernel decoder sanitizes the same way, so the two
  // still compare equal.
  base::make_valid_utf8(out);
  return out;
}

std::optional<ProcTcpRow> parse_proc_net_tcp_line(std::string_view line) {
  // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
  auto f = split_ws(line);
  if (f.size() < 10 || f[0].empty() || f[0].back() != ':')
    return std::nullopt;
  ProcTcpRow row;
  std::string remote;
  if (!parse_hex_endpoint(f[1], &row.local) || !parse_hex_endpoint(f[2], &remote))
    return std::nullopt;
  if (!parse_num(f[3], &row.state, 16))
    return std::nullopt;
  auto colon = f[4].find(':');
  if (colon == std::string_view::npos || !parse_num(f[4].substr(0, colon), &row.tx_queue, 16) ||
      !parse_num(f[4].substr(colon + 1), &row.rx_queue, 16))
    return std::nullopt;
  if (!parse_num(f[9], &row.inode, 10))
    return std::nullopt;
  return row;
}

std::optional<ProcUnixRow> parse_proc_net_unix_line(std::string_view line) {
  // Num RefCount Protocol Flags Type St Inode [Path]
  // The path is the rest of the line after the inode (it may contain spaces).
  auto f = split_ws(line);
  if (f.size() < 7 || f[0].empty() || f[0].back() != ':')
    return std::nullopt;
  ProcUnixRow row;
  uint32_t refcount, protocol;
  if (!parse_num(f[1], &refcount, 16) || !parse_num(f[2], &protocol, 16) ||
      !parse_num(f[3], &row.flags, 16) || !parse_num(f[4], &row.type, 16) ||
      !parse_num(f[5], &row.state, 16) || !parse_num(f[6], &row.inode, 10))
    return std::nullopt;
  if (f.size() > 7) {
    size_t start = f[7].data() - line.data();
    std::string_view rest = line.substr(start);
    while (!rest.empty() && (rest.back() == '\n' || rest.back() == '\r'))
      rest.remove_suffix(1);
    row.path = std::string(rest);
  }
  return row;
}

std::optional<TcpExtCounters> parse_proc_net_netstat(std::string_view content) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t nl = content.find('\n', pos);
    if (nl == std::string_view::npos)
      nl = content.size();
    lines.push_back(content.substr(pos, nl - pos));
    pos = nl + 1;
  }
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    auto names = split_ws(lines[i]);
    auto values = split_ws(lines[i + 1]);
    if (names.empty() || names[0] != "TcpExt:" || values.empty() || values[0] != "TcpExt:")
      continue;
    if (names.size() != values.size())
      return std::nullopt;
    TcpExtCounters c;
    bool have_overflows = false, have_drops = false;
    for (size_t k = 1; k < names.size(); ++k) {
      uint64_t *dst = names[k] == "ListenOverflows" ? &c.listen_overflows
                      : names[k] == "ListenDrops"   ? &c.listen_drops
                                                    : nullptr;
      if (!dst)
        continue;
      if (!parse_num(values[k], dst, 10))
        return std::nullopt;
      (dst == &c.listen_overflows ? have_overflows : have_drops) = true;
    }
    if (!have_overflows || !have_drops)
      return std::nullopt;
    return c;
  }
  return std::nullopt;
}

} // namespace why502::host
