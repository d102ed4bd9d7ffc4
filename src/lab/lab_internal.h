// Private helpers shared by the src/lab/*.cpp files.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <optional>
#include <string>
#include <string_view>

namespace why502::lab {

std::string errno_text(int err);
void write_file(const std::string &path, std::string_view content);

// In a freshly forked child: default signal dispositions, an empty mask, optionally its own
// process group, and SIGKILL when the creating thread dies.
void prepare_child(bool new_group);

struct SockAddr {
  union {
    sockaddr_in in;
    sockaddr_in6 in6;
    sockaddr_un un;
  };
  socklen_t len = 0;
  int family() const { return in.sin_family; }
  const sockaddr *addr() const { return reinterpret_cast<const sockaddr *>(&in); }
};
// "127.0.0.1:8080", "[::1]:8080" or "unix:/path".
std::optional<SockAddr> parse_address(const std::string &address);

} // namespace why502::lab
