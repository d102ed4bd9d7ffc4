// error.log lines as written by ngx_log_error_core() (nginx 1.22):
//   "YYYY/MM/DD HH:MM:SS [level] PID#TID: [*CONN ]TEXT[ (ERRNO: STRERROR)][ while ACTION]
//    [, client: ADDR][, server: NAME][, request: "LINE"][, subrequest: "URI"]
//    [, upstream: "SCHEMA+PEER+URI"][, host: "HOST"][, referrer: "REF"]"
// The context part comes from ngx_http_log_error()/ngx_http_log_error_handler(); nginx does not
// escape quotes inside it, so quoted values are delimited by the next known key, not by '"'.
#include "why502/nginx.h"

#include <array>
#include <cstring>

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

// Keys of the request context in the order ngx_http_log_error* appends them.
struct Key {
  std::string_view token; // ", client: "
  bool quoted;
};
constexpr std::array<Key, 7> kKeys = {{{", client: ", false},
                                       {", server: ", false},
                                       {", request: \"", true},
                                       {", subrequest: \"", true},
                                       {", upstream: \"", true},
                                       {", host: \"", true},
                                       {", referrer: \"", true}}};

std::string *field(ErrorLogLine &l, size_t i) {
  switch (i) {
  case 0: return &l.client;
  case 1: return &l.server;
  case 2: return &l.request;
  case 3: return &l.subrequest;
  case 4: return &l.upstream;
  case 5: return &l.host;
  default: return &l.referrer;
  }
}

// Parses ", client: ..." onwards. `ctx` starts at ", client: " (or another key).
void parse_context(std::string_view ctx, ErrorLogLine &l) {
  size_t k = 0;
  while (!ctx.empty() && k < kKeys.size()) {
    // find which key we are at (keys may be absent, never reordered)
    size_t which = kKeys.size();
    for (size_t j = k; j < kKeys.size(); ++j) {
      if (starts_with(ctx, kKeys[j].token)) {
        which = j;
        break;
      }
    }
    if (which == kKeys.size())
      return;
    ctx.remove_prefix(kKeys[which].token.size());
    // the value ends at the earliest later key (quoted: key preceded by the closing quote)
    size_t end = std::string_view::npos;
    for (size_t j = which + 1; j < kKeys.size(); ++j) {
      std::string needle(kKeys[j].token);
      if (kKeys[which].quoted)
        needle.insert(needle.begin(), '"'); // (not "\"" + ...: GCC 12 -Wrestrict false positive)
      size_t p = ctx.find(needle);
      if (p != std::string_view::npos && p < end)
        end = p;
    }
    std::string_view value;
    if (end == std::string_view::npos) {
      value = ctx;
      if (kKeys[which].quoted && ends_with(value, "\""))
        value.remove_suffix(1);
      ctx = {};
    } else {
      value = ctx.substr(0, end);
      ctx.remove_prefix(end + (kKeys[which].quoted ? 1 : 0));
    }
    *field(l, which) = std::string(value);
    k = which + 1;
  }
}

// "http://127.0.0.1:8080/x" -> "127.0.0.1:8080"; "fastcgi://unix:/run/php.sock:" -> "unix:/run/php.sock"
std::string upstream_address(std::string_view u) {
  auto sch = u.find("://");
  if (sch != std::string_view::npos)
    u.remove_prefix(sch + 3);
  if (starts_with(u, "unix:")) {
    // nginx prints schema + "unix:/path" + ":" + uri for AF_UNIX peers
    auto colon = u.find(':', 5);
    return std::string(colon == std::string_view::npos ? u : u.substr(0, colon));
  }
  if (starts_with(u, "[")) { // IPv6 "[::1]:8080"
    auto rb = u.find(']');
    if (rb == std::string_view::npos)
      return std::string(u);
    auto slash = u.find('/', rb);
    return std::string(u.substr(0, slash));
  }
  auto slash = u.find('/');
  return std::string(u.substr(0, slash));
}

UpstreamFailure classify(const ErrorLogLine &l) {
  std::string_view t = l.text;
  const std::string &a = l.action;
  bool upstream_ctx = !l.upstream.empty() || a.find("upstream") != std::string::npos;
  if (starts_with(t, "no live upstreams"))
    return UpstreamFailure::no_live_upstreams;
  if (starts_with(t, "upstream timed out")) {
    if (a == "connecting to upstream" || a == "SSL handshaking to upstream")
      return UpstreamFailure::timed_out_connecting;
    if (a == "sending request to upstream")
      return UpstreamFailure::timed_out_sending;
    return UpstreamFailure::timed_out_reading; // reading response header / reading upstream
  }
  if (starts_with(t, "upstream prematurely closed"))
    return UpstreamFailure::prematurely_closed;
  if (starts_with(t, "upstream sent too big header"))
    return UpstreamFailure::too_big_header;
  if (starts_with(t, "upstream sent invalid header"))
    return UpstreamFailure::invalid_header;
  if (starts_with(t, "upstream sent "))
    return UpstreamFailure::upstream_sent_invalid;
  if (!upstream_ctx)
    return UpstreamFailure::none;
  const std::string &sc = l.syscall;
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
  if (l.level <= Level::error)
    return UpstreamFailure::other;
  return UpstreamFailure::none;
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

std::optional<ErrorLogLine> parse_error_line(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
    line.remove_suffix(1);
  ErrorLogLine l;
  if (!parse_error_time(line, l.tm))
    return std::nullopt;
  std::tm tmp = l.tm;
  l.epoch = static_cast<std::int64_t>(mktime(&tmp));
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

  // Split off the request context: the first ", client: " (the message text never legitimately
  // contains it except inside an "upstream sent invalid header" excerpt, which nginx truncates).
  std::string_view head = s;
  size_t cp = s.find(", client: ");
  if (cp != std::string_view::npos) {
    head = s.substr(0, cp);
    parse_context(s.substr(cp), l);
  } else {
    // lines without a client (e.g. upstream keepalive / subrequest contexts) may still carry keys
    for (const auto &k : kKeys) {
      size_t p = s.find(k.token);
      if (p != std::string_view::npos) {
        head = s.substr(0, p);
        parse_context(s.substr(p), l);
        break;
      }
    }
  }
  // " while ACTION" (last occurrence: the action never contains " while ")
  size_t wp = head.rfind(" while ");
  if (wp != std::string_view::npos) {
    l.action = std::string(head.substr(wp + 7));
    head = head.substr(0, wp);
  }
  // " (ERRNO: STRERROR)" at the end of the text
  if (ends_with(head, ")")) {
    size_t op = head.rfind(" (");
    while (op != std::string_view::npos) {
      std::string_view e = head.substr(op + 2, head.size() - op - 3);
      int n = 0;
      std::string_view num = e;
      if (parse_uint(num, n) && starts_with(num, ": ")) {
        l.err = n;
        l.err_text = std::string(num.substr(2));
        head = head.substr(0, op);
        break;
      }
      if (op == 0)
        break;
      op = head.rfind(" (", op - 1);
    }
    if (ends_with(head, "...")) {
      l.truncated = true;
    }
  }
  l.text = std::string(head);
  // failing syscall: "connect() failed", "connect() to unix:/x failed", "socket() failed"
  size_t paren = head.find("() ");
  if (paren != std::string_view::npos && paren > 0 && paren < 32) {
    std::string_view name = head.substr(0, paren);
    bool ident = true;
    for (char c : name)
      ident = ident && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                        (c >= '0' && c <= '9'));
    if (ident && head.find("failed", paren) != std::string_view::npos)
      l.syscall = std::string(name);
  }
  if (!l.upstream.empty())
    l.upstream_address = upstream_address(l.upstream);
  else if (l.syscall == "connect" && starts_with(head, "connect() to ")) {
    std::string_view to = head.substr(13);
    size_t f = to.rfind(" failed");
    if (f != std::string_view::npos)
      l.upstream_address = std::string(to.substr(0, f));
  }
  l.failure = classify(l);
  return l;
}

std::optional<ErrorLogLine> parse_error_line(std::string_view line, ParseStats &stats) {
  auto r = parse_error_line(line);
  stats.count(r.has_value());
  return r;
}

} // namespace why502::nginx
