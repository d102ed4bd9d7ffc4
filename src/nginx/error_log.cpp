// error.log lines as written by ngx_log_error_core() (nginx 1.22):
//   "YYYY/MM/DD HH:MM:SS [level] PID#TID: [*CONN ]TEXT[ (ERRNO: STRERROR)][ while ACTION]
//    [, client: ADDR][, server: NAME][, request: "LINE"][, subrequest: "URI"]
//    [, upstream: "SCHEMA+PEER+URI"][, host: "HOST"][, referrer: "REF"]"
// The context part comes from ngx_http_log_error()/ngx_http_log_error_handler(); nginx escapes
// nothing in it, so each field is read by the form nginx guarantees (see "The request context").
#include "why502/nginx.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "base/text.h"

namespace why502::nginx {
namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

bool digits(std::string_view s, size_t n, int &out) {
  if (s.size() < n)
    return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

template <class T> bool parse_uint(std::string_view &s, T &out) {
  size_t i = 0;
  T v = 0;
  while (i < s.size() && i < 20 && s[i] >= '0' && s[i] <= '9') {
    v = static_cast<T>(v * 10 + static_cast<T>(s[i] - '0'));
    ++i;
  }
  if (i == 0)
    return false;
  out = v;
  s.remove_prefix(i);
  return true;
}

constexpr std::array<std::string_view, 8> kLevels = {"emerg", "alert", "crit",   "error",
                                                     "warn",  "notice", "info", "debug"};

// ── The request context ──────────────────────────────────────────────────────────────────────
// ngx_http_log_error() and ngx_http_log_error_handler() (src/http/ngx_http_request.c) append, in
// this order and only these:
//   ", client: %V"        the peer address text: an IP address, or "unix:" for a unix socket
//   ", server: %V"        server_name of the matched server{} (or the listen address before a request)
//   ", request: \"%V\""   the raw request line
//   ", subrequest: \"%V\"" the subrequest's URI
//   ", upstream: \"%V%V%s%V\"" schema, peer name, ":" for unix peers, and the upstream URI
//   ", host: \"%V\""      the Host header, which nginx validated
//   ", referrer: \"%V\""  the Referer header, any bytes
// Nothing is escaped: a client puts quotes and these separators into the request line (raw, or
// percent-decoded into a message such as open() "…"), the Host (nginx 1.22 validates little) and
// the Referer. So values are delimited by the form each one must have, not by searching for the
// next key: the client is an address and the server a name (no spaces), the request line is
// "METHOD TARGET[ HTTP/x.y]" whose target has no space (nginx >= 1.21.1 rejects spaces there),
// the upstream starts with "scheme://" and a peer address, the host is a host name, and the
// referrer, the only free-form field, is last and closed by the line's final quote.
// A stream{} session (ngx_stream_log_error, ngx_stream_proxy_log_error) has its own shape:
//   ", client: %V, server: %V[, upstream: \"%V\"], bytes from/to client:%O/%O, bytes from/to upstream:%O/%O"

// nginx formats a whole line in a buffer of NGX_MAX_ERROR_STR (2048) bytes, newline included, and
// cuts what does not fit: a line of 2047 bytes may end inside any field.
constexpr size_t kMaxErrorStr = 2048;
// Anything much longer is not an nginx line; refusing it early bounds the work per line.
constexpr size_t kMaxLine = 4 * kMaxErrorStr;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool all_digits(std::string_view s) {
  if (s.empty() || s.size() > 5)
    return false;
  for (char c : s)
    if (!is_digit(c))
      return false;
  return true;
}

bool valid_port(std::string_view s) { return all_digits(s) && std::stoul(std::string(s)) <= 65535; }

bool ipv4(std::string_view s) {
  in_addr a{};
  return s.size() <= 15 && inet_pton(AF_INET, std::string(s).c_str(), &a) == 1;
}
bool ipv6(std::string_view s) {
  in6_addr a{};
  return s.size() <= 45 && inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

// ngx_sock_ntop() without port: "1.2.3.4", "::1", "unix:" (an unnamed unix peer, or its path).
bool valid_client(std::string_view s) {
  if (starts_with(s, "unix:"))
    return s.find_first_of(" \",") == std::string_view::npos;
  return ipv4(s) || ipv6(s);
}

// An upstream{} name, or a host name: letters, digits, '.', '-', '_', '~' (what an upstream name
// or a resolvable host is made of in practice).
bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 253)
    return false;
  for (char c : s)
    if (!(is_alpha(c) || is_digit(c) || c == '.' || c == '-' || c == '_' || c == '~'))
      return false;
  return true;
}

// A peer as nginx names it: "1.2.3.4:80", "[::1]:80", "unix:/path", or (no live upstreams, or a
// group resolved at run time) an upstream name with an optional ":port".
bool valid_peer(std::string_view p) {
  if (starts_with(p, "unix:")) // a path, or "@name" for an abstract socket
    return p.size() > 6 && (p[5] == '/' || p[5] == '@') && p.find_first_of(" \"") == std::string_view::npos;
  if (starts_with(p, "[")) {
    size_t rb = p.find(']');
    return rb != std::string_view::npos && ipv6(p.substr(1, rb - 1)) && rb + 1 < p.size() &&
           p[rb + 1] == ':' && valid_port(p.substr(rb + 2));
  }
  size_t colon = p.rfind(':');
  std::string_view host = colon == std::string_view::npos ? p : p.substr(0, colon);
  if (colon != std::string_view::npos && !valid_port(p.substr(colon + 1)))
    return false;
  return ipv4(host) || valid_name(host);
}

// The Host header as ngx_http_validate_host() accepts it (host name chars, sub-delims,
// pct-encoding, an IP literal in brackets, ":port"); nginx 1.22 lets more through, and a line
// with such a host is not trusted (a quote or a space there could split fields).
bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 1024)
    return false;
  for (char c : h)
    if (!(is_alpha(c) || is_digit(c) || std::strchr("-._~!$&'()*+,;=%:[]", c)))
      return false;
  return true;
}

// "http://127.0.0.1:8080/x" -> "127.0.0.1:8080"; "fastcgi://unix:/run/php.sock:" ->
// "unix:/run/php.sock"; "http://two_dead/x" -> "two_dead". Empty when the value has not the form
// schema + peer + (":" for unix) + URI (empty, or starting with '/' or '?'). `cut`: the line ended
// inside the value, so the peer counts only if something follows it.
std::string upstream_peer(std::string_view u, bool cut, bool *ambiguous = nullptr) {
  size_t sch = u.find("://");
  if (sch == std::string_view::npos || sch == 0 || sch > 16)
    return {};
  for (char c : u.substr(0, sch))
    if (!(c >= 'a' && c <= 'z') && !is_digit(c) && c != '+' && c != '-' && c != '.')
      return {};
  u.remove_prefix(sch + 3);
  std::string_view peer;
  if (starts_with(u, "unix:")) {
    // ngx_http_log_error_handler puts ":" between a unix peer and the URI, but only while the peer is
    // set: ngx_http_upstream_next() clears it before it logs "upstream timed out", so there the path
    // runs straight into the URI. Then the whole value is the peer, marked ambiguous (the correlator
    // cuts it at a unix path it knows).
    size_t colon = u.find(':', 5);
    if (colon == std::string_view::npos) {
      if (cut || !valid_peer(u))
        return {};
      if (ambiguous)
        *ambiguous = true;
      return std::string(u);
    }
    peer = u.substr(0, colon);
    u.remove_prefix(colon + 1);
  } else {
    size_t end = u.find_first_of("/?");
    if (end == std::string_view::npos && cut)
      return {}; // "http://127.0.0.1:80" cut to "http://127.0.0.1:8" would still look like a peer
    peer = u.substr(0, end);
    u.remove_prefix(end == std::string_view::npos ? u.size() : end);
  }
  if (!u.empty() && u[0] != '/' && u[0] != '?')
    return {};
  return valid_peer(peer) ? std::string(peer) : std::string();
}

struct Context {
  std::string_view client, server, request, subrequest, upstream, host, referrer;
  bool has_upstream = false;
  bool upstream_cut = false; // the line ended inside the upstream value
  bool stream = false;
  bool cut = false; // the line ended inside the context (nginx's buffer was full)
};

// After a complete field: the context may end here, or (when the line was cut) end with a prefix
// of the next separator.
bool ends_here(std::string_view rest, bool may_cut, Context &c) {
  if (rest.empty())
    return true;
  if (!may_cut)
    return false;
  for (std::string_view key : {", request: \"", ", subrequest: \"", ", upstream: \"", ", host: \"",
                               ", referrer: \"", ", bytes from/to client:"})
    if (key.substr(0, rest.size()) == rest) {
      c.cut = true;
      return true;
    }
  return false;
}

// A field the line ended inside (nginx's buffer was full): the rest of the line is its value, and the
// context was cut there. Only where cutting is allowed.
bool take_cut_rest(std::string_view &rest, bool may_cut, std::string_view &value, Context &c) {
  if (!may_cut)
    return false;
  value = rest;
  rest = {};
  c.cut = true;
  return true;
}

// A quoted value that ends at the first closing quote followed by one of `next` (or the end).
// Used for the subrequest URI and the upstream's URI part, whose start is already pinned.
bool quoted_until(std::string_view &rest, std::initializer_list<std::string_view> next, bool may_cut,
                  std::string_view &value, Context &c) {
  for (size_t q = rest.find('"'); q != std::string_view::npos; q = rest.find('"', q + 1)) {
    std::string_view after = rest.substr(q + 1);
    bool ok = after.empty();
    for (std::string_view n : next)
      ok = ok || starts_with(after, n);
    if (ok) {
      value = rest.substr(0, q);
      rest = after;
      return true;
    }
  }
  return take_cut_rest(rest, may_cut, value, c);
}

// "GET /x HTTP/1.1" (or "GET /x", HTTP/0.9): the method is [A-Z_-], the target has no space.
bool request_line(std::string_view &rest, bool may_cut, std::string_view &value, Context &c) {
  size_t i = 0;
  while (i < rest.size() && ((rest[i] >= 'A' && rest[i] <= 'Z') || rest[i] == '_' || rest[i] == '-'))
    ++i;
  if (i == rest.size() && may_cut) { // cut inside the method
    value = rest;
    rest = {};
    c.cut = true;
    return true;
  }
  if (i == 0 || i > 32 || i == rest.size() || rest[i] != ' ')
    return false;
  size_t t = i + 1;
  size_t sp = rest.find(' ', t);
  for (size_t k = t; k < (sp == std::string_view::npos ? rest.size() : sp); ++k)
    if (static_cast<unsigned char>(rest[k]) < 0x21 || rest[k] == 0x7f)
      return false;
  if (sp != std::string_view::npos) {
    // "TARGET HTTP/d.d\""
    std::string_view v = rest.substr(sp + 1);
    size_t k = 0;
    bool shape = starts_with(v, "HTTP/");
    k = 5;
    size_t d1 = k;
    while (shape && k < v.size() && k < d1 + 3 && is_digit(v[k]))
      ++k;
    if (shape && k > d1 && k + 1 < v.size() && v[k] == '.' && is_digit(v[k + 1])) {
      k += 2;
      while (k < v.size() && is_digit(v[k]))
        ++k;
      if (k < v.size() && v[k] == '"' && sp > t) {
        value = rest.substr(0, sp + 1 + k);
        rest.remove_prefix(sp + 1 + k + 1);
        return true;
      }
    }
    if (may_cut && (std::string_view("HTTP/1.1\"").substr(0, v.size()) == v ||
                    (k == v.size() && shape))) {
      value = rest;
      rest = {};
      c.cut = true;
      return true;
    }
    // HTTP/0.9 form: the target ends with the closing quote, then ", " and the next key
    std::string_view target = rest.substr(t, sp - t);
    if (target.size() >= 3 && target.substr(target.size() - 2) == "\",") {
      value = rest.substr(0, sp - 2);
      rest.remove_prefix(sp - 1);
      return true;
    }
    return false;
  }
  // no space after the target: "GET /x\"" at the end of the line, or cut
  if (ends_with(rest, "\"") && rest.size() > t + 1) {
    value = rest.substr(0, rest.size() - 1);
    rest = {};
    return true;
  }
  return take_cut_rest(rest, may_cut, value, c);
}

// Parses the context that starts at ", client: " and runs to the end of the line. Fails unless
// every field has its form and nothing is left over.
bool parse_context(std::string_view rest, bool may_cut, Context &c) {
  c = {};
  rest.remove_prefix(std::string_view(", client: ").size());
  // client: a token without spaces, then ", server: "
  size_t sp = rest.find(' ');
  std::string_view tok = rest.substr(0, sp);
  if (sp == std::string_view::npos) {
    if (!may_cut || tok.size() > 64)
      return false;
    if (valid_client(tok)) // a cut address ("127.0.") is no address
      c.client = tok;
    c.cut = true;
    return true;
  }
  if (tok.empty() || tok.back() != ',' || !valid_client(tok.substr(0, tok.size() - 1)))
    return false;
  c.client = tok.substr(0, tok.size() - 1);
  rest.remove_prefix(sp + 1);
  if (!starts_with(rest, "server: ")) {
    c.cut = may_cut && std::string_view("server: ").substr(0, rest.size()) == rest;
    return c.cut;
  }
  rest.remove_prefix(8);
  // server: a name without spaces (server_name, or the listen address), possibly empty
  sp = rest.find(' ');
  tok = rest.substr(0, sp);
  if (sp == std::string_view::npos) {
    c.server = tok;
    c.cut = may_cut;
    return true;
  }
  if (tok.empty() || tok.back() != ',')
    return false;
  c.server = tok.substr(0, tok.size() - 1);
  rest.remove_prefix(sp - 1); // at ", <key>"

  if (starts_with(rest, ", bytes from/to client:") || starts_with(rest, ", upstream: \"")) {
    // a stream{} session? "..., upstream: \"PEER\", bytes from/to client:N/N, bytes from/to upstream:N/N"
    std::string_view r = rest;
    std::string_view up;
    if (starts_with(r, ", upstream: \"")) {
      r.remove_prefix(13);
      size_t q = r.find('"');
      if (q != std::string_view::npos && valid_peer(r.substr(0, q)) &&
          starts_with(r.substr(q + 1), ", bytes from/to client:")) {
        up = r.substr(0, q);
        r.remove_prefix(q + 1);
      }
    }
    if (starts_with(r, ", bytes from/to client:")) {
      c.stream = true;
      c.upstream = up;
      c.has_upstream = !up.empty();
      return true; // the byte counts are not used
    }
  }
  if (ends_here(rest, may_cut, c))
    return true;
  if (starts_with(rest, ", request: \"")) {
    rest.remove_prefix(12);
    if (!request_line(rest, may_cut, c.request, c))
      return false;
    if (c.cut || ends_here(rest, may_cut, c))
      return true;
  }
  if (starts_with(rest, ", subrequest: \"")) {
    rest.remove_prefix(15);
    if (!quoted_until(rest, {", upstream: \"", ", host: \"", ", referrer: \""}, may_cut, c.subrequest, c))
      return false;
    if (c.cut || ends_here(rest, may_cut, c))
      return true;
  }
  if (starts_with(rest, ", upstream: \"")) {
    rest.remove_prefix(13);
    if (!quoted_until(rest, {", host: \"", ", referrer: \""}, may_cut, c.upstream, c))
      return false;
    c.has_upstream = true;
    c.upstream_cut = c.cut;
    if (c.cut || ends_here(rest, may_cut, c))
      return true;
  }
  if (starts_with(rest, ", host: \"")) {
    rest.remove_prefix(9);
    size_t q = rest.find('"');
    if (q == std::string_view::npos) {
      if (!may_cut || (!rest.empty() && !valid_host(rest)))
        return false;
      c.host = rest;
      c.cut = true;
      return true;
    }
    c.host = rest.substr(0, q);
    if (!valid_host(c.host))
      return false;
    rest.remove_prefix(q + 1);
    if (ends_here(rest, may_cut, c))
      return true;
  }
  if (starts_with(rest, ", referrer: \"")) {
    rest.remove_prefix(13);
    if (ends_with(rest, "\"")) {
      c.referrer = rest.substr(0, rest.size() - 1);
      return true;
    }
    if (!may_cut)
      return false;
    c.referrer = rest;
    c.cut = true;
    return true;
  }
  return false;
}

// ── The message before the context ──────────────────────────────────────────────────────────

// log->action values of ngx_http_upstream.c / ngx_event_connect.c while nginx talks to an upstream.
constexpr std::array<std::string_view, 5> kUpstreamActions = {
    "connecting to upstream", "SSL handshaking to upstream", "sending request to upstream",
    "reading response header from upstream", "reading upstream"};

struct Head {
  std::string_view text, action, err_text, syscall, connect_to;
  std::optional<int> err;
  bool truncated = false;
};

// TEXT[ (ERRNO: STRERROR)][ while ACTION], read from the end: the action is the text after the
// last " while ", errno the last " (N: ...)" group. For any message.
Head split_head(std::string_view head) {
  Head h;
  size_t wp = head.rfind(" while ");
  if (wp != std::string_view::npos) {
    h.action = head.substr(wp + 7);
    head = head.substr(0, wp);
  }
  if (ends_with(head, ")")) {
    size_t op = head.rfind(" (");
    while (op != std::string_view::npos) {
      std::string_view e = head.substr(op + 2, head.size() - op - 3);
      int n = 0;
      std::string_view num = e;
      if (parse_uint(num, n) && starts_with(num, ": ")) {
        h.err = n;
        h.err_text = num.substr(2);
        head = head.substr(0, op);
        break;
      }
      if (op == 0)
        break;
      op = head.rfind(" (", op - 1);
    }
    if (ends_with(head, "..."))
      h.truncated = true; // ngx_log_errno() made room for the errno
  }
  h.text = head;
  // failing syscall: "connect() failed", "connect() to unix:/x failed", "socket() failed"
  size_t paren = head.find("() ");
  if (paren != std::string_view::npos && paren > 0 && paren < 32) {
    std::string_view name = head.substr(0, paren);
    bool ident = true;
    for (char c : name)
      ident = ident && (is_alpha(c) || is_digit(c) || c == '_');
    if (ident && head.find("failed", paren) != std::string_view::npos)
      h.syscall = name;
  }
  return h;
}

// The messages nginx writes when an attempt to an upstream fails, with an upstream action. Only
// these can be upstream failures; the text must be the whole message, so client bytes in a message
// (open() "<uri>" failed, …) never make one. "upstream sent …" quotes bytes of the upstream's
// response: the upstream is trusted that far.
UpstreamFailure failure_shape(const Head &h) {
  bool upstream_action = false;
  for (auto a : kUpstreamActions)
    upstream_action |= h.action == a;
  if (!upstream_action)
    return UpstreamFailure::none;
  std::string_view t = h.text;
  if (t == "no live upstreams")
    return UpstreamFailure::no_live_upstreams;
  if (t == "upstream timed out") {
    if (h.action == "connecting to upstream" || h.action == "SSL handshaking to upstream")
      return UpstreamFailure::timed_out_connecting;
    if (h.action == "sending request to upstream")
      return UpstreamFailure::timed_out_sending;
    return UpstreamFailure::timed_out_reading;
  }
  if (starts_with(t, "upstream prematurely closed ")) {
    for (char c : t)
      if (!is_alpha(c) && c != ' ')
        return UpstreamFailure::none; // "connection", "FastCGI stdout", "FastCGI request"
    return UpstreamFailure::prematurely_closed;
  }
  if (t == "upstream sent too big header")
    return UpstreamFailure::too_big_header;
  if (starts_with(t, "upstream sent invalid header"))
    return UpstreamFailure::invalid_header;
  if (starts_with(t, "upstream sent "))
    return UpstreamFailure::upstream_sent_invalid;
  // "NAME() failed", "connect() to PEER failed", "SSL_do_handshake() failed (SSL: …)"
  if (h.syscall.empty())
    return UpstreamFailure::none;
  std::string_view rest = t.substr(h.syscall.size() + 2);
  if (h.syscall == "connect" && starts_with(rest, " to ") && ends_with(rest, " failed"))
    rest = {};
  else if (starts_with(rest, " failed"))
    rest.remove_prefix(7);
  else
    return UpstreamFailure::none;
  if (!rest.empty() && !(starts_with(rest, " (SSL: ") && ends_with(rest, ")")))
    return UpstreamFailure::none;
  const std::string_view sc = h.syscall;
  if (sc == "connect")
    return UpstreamFailure::connect_failed;
  if (sc == "recv")
    return UpstreamFailure::recv_failed;
  if (sc == "send" || sc == "writev" || sc == "sendfile")
    return UpstreamFailure::send_failed;
  if (sc == "readv")
    return UpstreamFailure::readv_failed;
  if (sc == "socket")
    return UpstreamFailure::socket_failed;
  return UpstreamFailure::other; // SSL_do_handshake(), SSL_read(), …
}

} // namespace

std::string_view to_string(UpstreamFailure f) {
  switch (f) {
  case UpstreamFailure::none: return "none";
  case UpstreamFailure::connect_failed: return "connect_failed";
  case UpstreamFailure::recv_failed: return "recv_failed";
  case UpstreamFailure::send_failed: return "send_failed";
  case UpstreamFailure::readv_failed: return "readv_failed";
  case UpstreamFailure::prematurely_closed: return "prematurely_closed";
  case UpstreamFailure::timed_out_connecting: return "timed_out_connecting";
  case UpstreamFailure::timed_out_reading: return "timed_out_reading";
  case UpstreamFailure::timed_out_sending: return "timed_out_sending";
  case UpstreamFailure::no_live_upstreams: return "no_live_upstreams";
  case UpstreamFailure::too_big_header: return "too_big_header";
  case UpstreamFailure::invalid_header: return "invalid_header";
  case UpstreamFailure::upstream_sent_invalid: return "upstream_sent_invalid";
  case UpstreamFailure::socket_failed: return "socket_failed";
  case UpstreamFailure::other: return "other";
  }
  return "other";
}

std::string_view to_string(Level l) {
  auto i = static_cast<size_t>(l);
  return i < kLevels.size() ? kLevels[i] : "error";
}

bool parse_error_time(std::string_view s, std::tm &out) {
  // "2026/11/30 17:02:01"
  if (s.size() < 19 || s[4] != '/' || s[7] != '/' || s[10] != ' ' || s[13] != ':' || s[16] != ':')
    return false;
  int y, mo, d, h, mi, se;
  if (!digits(s.substr(0), 4, y) || !digits(s.substr(5), 2, mo) || !digits(s.substr(8), 2, d) ||
      !digits(s.substr(11), 2, h) || !digits(s.substr(14), 2, mi) || !digits(s.substr(17), 2, se))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
    return false;
  out = std::tm{};
  out.tm_year = y - 1900;
  out.tm_mon = mo - 1;
  out.tm_mday = d;
  out.tm_hour = h;
  out.tm_min = mi;
  out.tm_sec = se;
  out.tm_isdst = -1;
  return true;
}

bool upstream_is_configured(const ErrorLogLine &line, const std::set<std::string> &peers) {
  if (peers.count(line.upstream_address))
    return true;
  if (!line.upstream_path_ambiguous)
    return false;
  for (const auto &p : peers)
    if (starts_with(p, "unix:") && line.upstream_address.size() > p.size() &&
        line.upstream_address.compare(0, p.size(), p) == 0 && line.upstream_address[p.size()] == '/')
      return true;
  return false;
}

std::optional<ErrorLogLine> parse_error_line(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
    line.remove_suffix(1);
  if (line.size() > kMaxLine)
    return std::nullopt;
  const bool may_cut = line.size() >= kMaxErrorStr - 1; // nginx's buffer was full: fields may be cut
  // Every string this parser returns is valid UTF-8 (a request line is any bytes a client sent).
  std::string clean;
  if (!base::is_valid_utf8(line)) {
    clean = base::valid_utf8(line);
    line = clean;
  }
  ErrorLogLine l;
  if (!parse_error_time(line, l.tm))
    return std::nullopt;
  std::tm tmp = l.tm;
  l.local_seconds = static_cast<std::int64_t>(timegm(&tmp));
  std::string_view s = line.substr(19);
  if (!starts_with(s, " ["))
    return std::nullopt;
  s.remove_prefix(2);
  auto rb = s.find("] ");
  if (rb == std::string_view::npos)
    return std::nullopt;
  std::string_view lvl = s.substr(0, rb);
  bool found = false;
  for (size_t i = 0; i < kLevels.size(); ++i) {
    if (kLevels[i] == lvl) {
      l.level = static_cast<Level>(i);
      found = true;
    }
  }
  if (!found)
    return std::nullopt;
  s.remove_prefix(rb + 2);
  if (!parse_uint(s, l.pid) || !starts_with(s, "#"))
    return std::nullopt;
  s.remove_prefix(1);
  if (!parse_uint(s, l.tid) || !starts_with(s, ": "))
    return std::nullopt;
  s.remove_prefix(2);
  if (starts_with(s, "*")) {
    std::string_view c = s.substr(1);
    std::uint64_t conn = 0;
    if (parse_uint(c, conn) && starts_with(c, " ")) {
      l.connection = conn;
      s = c.substr(1);
    }
  }
  l.message = std::string(s);

  // Where does the context start? Every ", client: " is a candidate: the message before it may
  // hold client bytes (open() "/root/<decoded URI>" failed), and so may the request line, the
  // host and the referrer after it.
  //  1. An upstream failure: the message before the real context is one of nginx's fixed failure
  //     texts, ending with an upstream action, so the first candidate whose message has that
  //     exact shape is the real one (a client cannot put bytes before it), and its context must
  //     parse in full.
  //  2. Any other line: nothing here becomes a failure; the fields are informational. The last
  //     candidate whose context parses in full is taken (a forged context inside the message
  //     stops being the last one as soon as nginx appends the real one).
  //  A line with a candidate but no valid context is not a line nginx wrote: unparsed.
  std::vector<size_t> candidates;
  for (size_t p = s.find(", client: "); p != std::string_view::npos; p = s.find(", client: ", p + 1))
    candidates.push_back(p);
  Context ctx;
  std::optional<size_t> at;
  UpstreamFailure shape = UpstreamFailure::none;
  Head head;
  for (size_t p : candidates) {
    Head h = split_head(s.substr(0, p));
    UpstreamFailure f = failure_shape(h);
    if (f != UpstreamFailure::none && parse_context(s.substr(p), may_cut, ctx)) {
      at = p;
      shape = f;
      head = h;
      break;
    }
  }
  for (size_t i = candidates.size(); !at && i-- > 0;)
    if (parse_context(s.substr(candidates[i]), may_cut, ctx)) {
      at = candidates[i];
      head = split_head(s.substr(0, *at));
    }
  if (!candidates.empty() && !at)
    return std::nullopt;
  if (!at)
    head = split_head(s);

  l.text = std::string(head.text);
  l.action = std::string(head.action);
  l.err = head.err;
  l.err_text = std::string(head.err_text);
  l.syscall = std::string(head.syscall);
  l.truncated = head.truncated || ctx.cut;
  if (at) {
    l.client = std::string(ctx.client);
    l.server = std::string(ctx.server);
    l.request = std::string(ctx.request);
    l.subrequest = std::string(ctx.subrequest);
    l.upstream = std::string(ctx.upstream);
    l.host = std::string(ctx.host);
    l.referrer = std::string(ctx.referrer);
    if (ctx.stream)
      l.upstream_address = valid_peer(ctx.upstream) ? std::string(ctx.upstream) : std::string();
    else if (ctx.has_upstream)
      l.upstream_address = upstream_peer(ctx.upstream, ctx.upstream_cut, &l.upstream_path_ambiguous);
  }
  // A failure names a well-formed upstream, the one nginx's own text names if it names one.
  if (shape != UpstreamFailure::none && !ctx.stream && !l.upstream_address.empty()) {
    std::string_view t = head.text;
    bool agrees = true;
    if (head.syscall == "connect" && starts_with(t, "connect() to ")) {
      std::string_view to = t.substr(13, t.size() - 13 - 7); // "connect() to " PEER " failed"
      agrees = to == l.upstream_address;
    }
    if (agrees)
      l.failure = shape;
  }
  return l;
}

std::optional<ErrorLogLine> parse_error_line(std::string_view line, ParseStats &stats) {
  auto r = parse_error_line(line);
  stats.count(r.has_value());
  return r;
}

} // namespace why502::nginx
