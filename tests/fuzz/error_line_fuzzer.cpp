// libFuzzer target: one error.log line. Beyond "no crash", it checks what the parser promises
// (issue 8, "hostile input is data") and aborts on a violation, so libFuzzer reports it:
//  - every string it returns is valid UTF-8;
//  - a line parsed as an upstream failure names a well-formed upstream: the peer appears right
//    after "scheme://" in the upstream field and is an IPv4/IPv6 address with a port, a unix
//    socket path (or @abstract name), or an upstream name;
//  - a client, when present, is an address.
// The checks are written here independently of the parser's own helpers.
#include "why502/nginx.h"

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/text.h"

namespace {

[[noreturn]] void violation(const char *what, std::string_view line, std::string_view value) {
  fprintf(stderr, "INVARIANT VIOLATED: %s\n  value: %.*s\n  line: %.*s\n", what, int(value.size()), value.data(),
          int(line.size()), line.data());
  abort();
}

bool is_ip(std::string_view s, int af) {
  unsigned char buf[16];
  return s.size() < 64 && inet_pton(af, std::string(s).c_str(), buf) == 1;
}

bool is_port(std::string_view s) {
  if (s.empty() || s.size() > 5)
    return false;
  for (char c : s)
    if (c < '0' || c > '9')
      return false;
  return std::stoi(std::string(s)) <= 65535;
}

bool well_formed_peer(std::string_view p) {
  if (p.substr(0, 6) == "unix:/" || p.substr(0, 6) == "unix:@")
    return p.find_first_of(" \"") == std::string_view::npos;
  if (!p.empty() && p[0] == '[') {
    auto rb = p.find("]:");
    return rb != std::string_view::npos && is_ip(p.substr(1, rb - 1), AF_INET6) && is_port(p.substr(rb + 2));
  }
  auto colon = p.rfind(':');
  std::string_view host = p.substr(0, colon);
  if (colon != std::string_view::npos && !is_port(p.substr(colon + 1)))
    return false;
  if (is_ip(host, AF_INET))
    return true;
  if (host.empty())
    return false;
  for (char c : host)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
          c == '_' || c == '~'))
      return false;
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  std::string_view s(reinterpret_cast<const char *>(data), size);
  why502::nginx::ParseStats st;
  auto l = why502::nginx::parse_error_line(s, st);
  if (!l)
    return 0;
  for (const std::string *f : {&l->message, &l->text, &l->err_text, &l->syscall, &l->action, &l->client,
                               &l->server, &l->request, &l->subrequest, &l->upstream, &l->host, &l->referrer,
                               &l->upstream_address})
    if (!why502::base::is_valid_utf8(*f))
      violation("a field is not valid UTF-8", s, *f);
  if (!l->client.empty() && l->client.substr(0, 5) != "unix:" && !is_ip(l->client, AF_INET) &&
      !is_ip(l->client, AF_INET6))
    violation("the client is not an address", s, l->client);
  if (l->failure != why502::nginx::UpstreamFailure::none) {
    const std::string &a = l->upstream_address;
    if (!well_formed_peer(a))
      violation("a failure's upstream address is not well-formed", s, a);
    auto sch = l->upstream.find("://");
    if (sch == std::string::npos || l->upstream.compare(sch + 3, a.size(), a) != 0)
      violation("a failure's upstream address is not the peer of its upstream field", s, l->upstream);
  }
  return 0;
}
