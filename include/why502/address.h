// One address type for every layer: an IPv4 or IPv6 socket address, or a unix socket. One text form
// ("127.0.0.1:8080", "[::1]:8080", "unix:/run/app.sock", "unix:@abstract"), made by str() and read
// by parse(). An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is IPv4 here: folded once, where an
// address is made from the kernel's bytes or parsed, so a dual-stack socket and nginx's
// "a.b.c.d:port" compare equal everywhere.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace why502 {

struct Address {
  enum class Kind : uint8_t { Inet4, Inet6, Unix };
  Kind kind = Kind::Inet4;
  std::array<uint8_t, 16> ip{}; // Inet4: the first 4 bytes
  uint16_t port = 0;
  std::string path; // Unix: "/run/app.sock", abstract names "@name"

  Address() = default;
  // A numeric host ("127.0.0.1", "::1") and a port, for literals: throws std::invalid_argument on
  // anything else. Text from outside goes through parse().
  Address(std::string_view host, uint16_t port);

  static Address inet(int af, const void *bytes, uint16_t port); // AF_INET/AF_INET6 network-order bytes
  static Address unix_socket(std::string_view path);
  // "1.2.3.4:80", "[::1]:80", "unix:/path"; nullopt for anything else (host names, no port).
  static std::optional<Address> parse(std::string_view text);

  std::string str() const;
  std::string host() const; // "127.0.0.1", "::1"; the path of a unix socket
  bool is_unix() const { return kind == Kind::Unix; }
  bool is_wildcard() const; // 0.0.0.0 or ::

  // Does a socket listening here take connections made to `target`? The same address, or a wildcard
  // of the family (:: also takes IPv4: dual stack, the Linux default), on the same port.
  bool serves(const Address &target) const;

  bool operator==(const Address &) const = default;
};

} // namespace why502
