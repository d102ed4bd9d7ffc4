#include "why502/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace why502 {

namespace {

constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool all_zero(const uint8_t *b, size_t n) {
  return std::all_of(b, b + n, [](uint8_t c) { return c == 0; });
}

// The host part as text: IPv4, IPv6 (mapped ones already folded).
std::optional<Address> from_host(std::string_view host, uint16_t port) {
  std::string h(host);
  uint8_t bytes[16] = {};
  if (inet_pton(AF_INET, h.c_str(), bytes) == 1)
    return Address::inet(AF_INET, bytes, port);
  if (inet_pton(AF_INET6, h.c_str(), bytes) == 1)
    return Address::inet(AF_INET6, bytes, port);
  return std::nullopt;
}

} // namespace

Address::Address(std::string_view host, uint16_t p) {
  auto a = from_host(host, p);
  if (!a)
    throw std::invalid_argument("not a numeric address: " + std::string(host));
  *this = *a;
}

Address Address::inet(int af, const void *bytes, uint16_t port) {
  Address a;
  a.port = port;
  const auto *b = static_cast<const uint8_t *>(bytes);
  if (af == AF_INET6 && std::memcmp(b, kMappedPrefix, 12) != 0) {
    a.kind = Kind::Inet6;
    std::memcpy(a.ip.data(), b, 16);
  } else {
    a.kind = Kind::Inet4;
    std::memcpy(a.ip.data(), af == AF_INET6 ? b + 12 : b, 4);
  }
  return a;
}

Address Address::unix_socket(std::string_view path) {
  Address a;
  a.kind = Kind::Unix;
  a.path = std::string(path);
  return a;
}

std::optional<Address> Address::parse(std::string_view s) {
  if (s.rfind("unix:", 0) == 0)
    return s.size() > 5 ? std::optional(unix_socket(s.substr(5))) : std::nullopt;
  std::string_view host, port;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find("]:");
    if (close == std::string_view::npos)
      return std::nullopt;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos || s.find(':') != colon)
      return std::nullopt; // an IPv6 address without brackets, or no port
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  unsigned long p = std::stoul(std::string(port));
  if (p > 65535)
    return std::nullopt;
  return from_host(host, uint16_t(p));
}

std::string Address::host() const {
  if (kind == Kind::Unix)
    return path;
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(kind == Kind::Inet4 ? AF_INET : AF_INET6, ip.data(), buf, sizeof(buf));
  return buf;
}

std::string Address::str() const {
  switch (kind) {
  case Kind::Unix: return "unix:" + path;
  case Kind::Inet6: return "[" + host() + "]:" + std::to_string(port);
  case Kind::Inet4: break;
  }
  return host() + ":" + std::to_string(port);
}

bool Address::is_wildcard() const {
  return kind != Kind::Unix && all_zero(ip.data(), kind == Kind::Inet4 ? 4 : 16);
}

bool Address::serves(const Address &t) const {
  if (is_unix() || t.is_unix())
    return is_unix() && t.is_unix() && path == t.path;
  if (port != t.port)
    return false;
  if (kind == Kind::Inet4)
    return t.kind == Kind::Inet4 && (is_wildcard() || ip == t.ip);
  // An IPv6 listener: [::] takes IPv6 and IPv4 too (mapped addresses are IPv4 already).
  return is_wildcard() || (t.kind == Kind::Inet6 && ip == t.ip);
}

} // namespace why502
