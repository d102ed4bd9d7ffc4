// access.log lines driven by a log_format. The format compiles to literal/variable segments;
// a line matches when every literal is found in order. Variables take the shortest text that lets
// the rest match (bounded backtracking). escape=default writes '"', '\\' and bytes <0x20/>0x7e as
// \xHH, so a literal '"' never occurs inside a value; escape=json writes \" instead, so a literal
// starting with '"' must not match an escaped quote.
#include "why502/nginx.h"

#include <cstdlib>
#include <cstring>

#include "base/text.h"

namespace why502::nginx {
namespace {


bool is_var_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string unescape_default(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 3 < v.size() + 0 && v[i + 1] == 'x' && hexval(v[i + 2]) >= 0 &&
        hexval(v[i + 3]) >= 0) {
      out += static_cast<char>(hexval(v[i + 2]) * 16 + hexval(v[i + 3]));
      i += 3;
    } else {
      out += v[i];
    }
  }
  return out;
}

void put_utf8(std::string &out, unsigned cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

std::string unescape_json(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '\\' || i + 1 >= v.size()) {
      out += v[i];
      continue;
    }
    char n = v[++i];
    switch (n) {
    case '"': out += '"'; break;
    case '\\': out += '\\'; break;
    case '/': out += '/'; break;
    case 'n': out += '\n'; break;
    case 'r': out += '\r'; break;
    case 't': out += '\t'; break;
    case 'b': out += '\b'; break;
    case 'f': out += '\f'; break;
    case 'u': {
      unsigned cp = 0;
      bool ok = i + 4 < v.size();
      for (size_t k = 1; ok && k <= 4; ++k) {
        int h = hexval(v[i + k]);
        ok = h >= 0;
        cp = cp * 16 + static_cast<unsigned>(h < 0 ? 0 : h);
      }
      if (ok) {
        put_utf8(out, cp);
        i += 4;
      } else {
        out += "\\u";
      }
      break;
    }
    default: out += '\\'; out += n; break;
    }
  }
  return out;
}

std::optional<double> to_double(std::string_view s) {
  if (s.empty() || s.size() > 40 || s == "-")
    return std::nullopt;
  char buf[48];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = 0;
  char *end = nullptr;
  double d = std::strtod(buf, &end);
  if (end != buf + s.size())
    return std::nullopt;
  return d;
}

template <class T> std::optional<T> to_uint(std::string_view s) {
  if (s.empty() || s.size() > 19)
    return std::nullopt;
  T v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    v = static_cast<T>(v * 10 + static_cast<T>(c - '0'));
  }
  return v;
}

int month_index(std::string_view m) {
  static constexpr const char *kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i)
    if (m == kMonths[i])
      return i;
  return -1;
}

std::optional<int> num(std::string_view s, size_t pos, size_t n) {
  if (pos + n > s.size())
    return std::nullopt;
  auto v = to_uint<int>(s.substr(pos, n));
  return v;
}

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  // Howard Hinnant's algorithm: days since 1970-01-01 for a proleptic Gregorian date.
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

std::int64_t to_epoch(int y, int mo, int d, int h, int mi, int s, int offset_sec) {
  return days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 +
         h * 3600 + mi * 60 + s - offset_sec;
}

bool numeric_var(std::string_view name) {
  static constexpr std::string_view kNumeric[] = {
      "status",     "body_bytes_sent", "bytes_sent", "request_length",
      "connection", "connection_requests", "pid", "msec", "request_time"};
  for (auto n : kNumeric)
    if (name == n)
      return true;
  return false;
}

bool numeric_value(std::string_view v) {
  if (v == "-")
    return true;
  if (v.empty())
    return false;
  for (char c : v)
    if (!((c >= '0' && c <= '9') || c == '.'))
      return false;
  return true;
}

// A format's literals are a few bytes (" - ", "\" "): compared inline rather than through
// memcmp, and found by memchr on their first byte. Matching is most of watch's own CPU with
// upstream keepalive on (issue 11). With the trivial value slots below, scan_status of a combined
// line went from 112 to 79 ns here.
bool literal_at(std::string_view line, size_t pos, std::string_view lit) {
  if (pos > line.size() || line.size() - pos < lit.size())
    return false;
  for (size_t i = 0; i < lit.size(); ++i)
    if (line[pos + i] != lit[i])
      return false;
  return true;
}

size_t find_literal(std::string_view line, std::string_view lit, size_t from) {
  if (lit.empty())
    return from <= line.size() ? from : std::string_view::npos;
  while (from < line.size() && line.size() - from >= lit.size()) {
    const void *hit = std::memchr(line.data() + from, lit[0], line.size() - from - lit.size() + 1);
    if (!hit)
      return std::string_view::npos;
    size_t p = static_cast<size_t>(static_cast<const char *>(hit) - line.data());
    if (literal_at(line, p + 1, lit.substr(1)))
      return p;
    from = p + 1;
  }
  return std::string_view::npos;
}

struct Matcher {
  const std::vector<AccessLogParser::Segment> &segs;
  Escape esc;
  std::string_view line;
  struct ValueSpan { // a trivial type: the stack slots need no initialising
    const char *data;
    size_t size;
  } *values; // one per variable of the format (MatchedValues)
  std::string_view set(size_t vi, std::string_view v) {
    values[vi] = {v.data(), v.size()};
    return v;
  }
  static bool numeric_or_any(const AccessLogParser::Segment &sg, std::string_view v) {
    return !sg.numeric || numeric_value(v);
  }
  // Bounded backtracking: every call and every byte scanned costs one unit, so a hostile line
  // costs at most a few passes over itself.
  std::int64_t budget = 0;

  // Is a literal occurrence at `p` inside a JSON-escaped value (preceded by an odd run of '\')?
  bool escaped_at(size_t p) const {
    size_t n = 0;
    while (p > n && line[p - 1 - n] == '\\')
      ++n;
    return n % 2 == 1;
  }

  bool match(size_t si, size_t pos, size_t vi) {
    if (--budget < 0)
      return false;
    if (si == segs.size())
      return pos == line.size();
    const auto &sg = segs[si];
    if (!sg.is_var) {
      if (!literal_at(line, pos, sg.text))
        return false;
      return match(si + 1, pos + sg.text.size(), vi);
    }
    if (si + 1 == segs.size()) // last variable takes the rest
      return numeric_or_any(sg, set(vi, line.substr(pos)));
    const auto &next = segs[si + 1];
    if (next.is_var) { // two adjacent variables: the first takes one token
      size_t sp = line.find(' ', pos);
      size_t end = sp == std::string_view::npos ? line.size() : sp;
      if (!numeric_or_any(sg, set(vi, line.substr(pos, end - pos))))
        return false;
      return match(si + 1, end, vi + 1);
    }
    size_t p = pos;
    for (;;) {
      size_t from = p;
      p = find_literal(line, next.text, p);
      budget -= static_cast<std::int64_t>((p == std::string_view::npos ? line.size() : p) - from);
      if (p == std::string_view::npos)
        return false;
      if (esc == Escape::json && escaped_at(p)) {
        ++p;
        continue;
      }
      if (!numeric_or_any(sg, set(vi, line.substr(pos, p - pos))))
        return false; // a longer value would not be numeric either
      if (match(si + 1, p, vi + 1))
        return true;
      if (budget < 0)
        return false;
      ++p;
    }
  }
};

// Where a line's matched values go: on the stack for any format of up to 32 variables, so matching
// a line allocates nothing (watch looks at every access line; issue 11).
class MatchedValues {
public:
  explicit MatchedValues(size_t n) {
    if (n > kInline)
      heap_.resize(n);
  }
  Matcher::ValueSpan *data() { return heap_.empty() ? inline_ : heap_.data(); }
  // Only after a successful match, which has set every value.
  std::string_view operator[](size_t i) const {
    const auto &v = heap_.empty() ? inline_[i] : heap_[i];
    return {v.data, v.size};
  }

private:
  static constexpr size_t kInline = 32;
  Matcher::ValueSpan inline_[kInline];
  std::vector<Matcher::ValueSpan> heap_;
};

// Match one line (its line ending dropped) against the format; the values are views into `line`.
bool match_line(const std::vector<AccessLogParser::Segment> &segs, Escape esc, std::string_view &line,
                MatchedValues &values) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
    line.remove_suffix(1);
  Matcher m{segs, esc, line, values.data(), 4096 + 4 * static_cast<std::int64_t>(line.size())};
  return m.match(0, 0, 0);
}

void fill_upstreams(AccessLogLine &l) {
  auto get = [&](const char *k) -> const std::string * {
    auto it = l.vars.find(k);
    return it == l.vars.end() ? nullptr : &it->second;
  };
  const std::string *addr = get("upstream_addr");
  const std::string *st = get("upstream_status");
  const std::string *ct = get("upstream_connect_time");
  const std::string *ht = get("upstream_header_time");
  const std::string *rt = get("upstream_response_time");
  std::vector<std::pair<std::string, int>> a, s, c, h, r;
  if (addr)
    a = split_upstream_list(*addr);
  if (st)
    s = split_upstream_list(*st);
  if (ct)
    c = split_upstream_list(*ct);
  if (ht)
    h = split_upstream_list(*ht);
  if (rt)
    r = split_upstream_list(*rt);
  size_t n = std::max({a.size(), s.size(), c.size(), h.size(), r.size()});
  if (n > 1024)
    n = 1024;
  for (size_t i = 0; i < n; ++i) {
    UpstreamAttempt u;
    if (i < a.size()) {
      u.addr = a[i].first;
      u.group = a[i].second;
    } else if (i < s.size()) {
      u.group = s[i].second;
    }
    if (i < s.size())
      if (auto v = to_uint<int>(s[i].first))
        u.status = *v;
    if (i < c.size())
      u.connect_time = to_double(c[i].first);
    if (i < h.size())
      u.header_time = to_double(h[i].first);
    if (i < r.size())
      u.response_time = to_double(r[i].first);
    l.upstream.push_back(std::move(u));
  }
}

void fill_known(AccessLogLine &l) {
  auto get = [&](const char *k) -> const std::string * {
    auto it = l.vars.find(k);
    return it == l.vars.end() ? nullptr : &it->second;
  };
  if (auto *v = get("status"))
    if (auto n = to_uint<int>(*v))
      l.status = *n;
  if (auto *v = get("pid"))
    if (auto n = to_uint<pid_t>(*v))
      l.pid = *n;
  if (auto *v = get("connection"))
    l.connection = to_uint<std::uint64_t>(*v);
  if (auto *v = get("remote_addr"))
    l.remote_addr = *v;
  if (auto *v = get("request")) {
    l.request = *v;
    auto sp = v->find(' ');
    if (sp != std::string::npos) {
      l.method = v->substr(0, sp);
      auto sp2 = v->find(' ', sp + 1);
      l.uri = v->substr(sp + 1, sp2 == std::string::npos ? std::string::npos : sp2 - sp - 1);
    }
  }
  if (auto *v = get("request_method"))
    l.method = *v;
  if (auto *v = get("request_uri"))
    l.uri = *v;
  if (auto *v = get("host"))
    l.host = *v;
  else if (auto *hv = get("http_host"))
    l.host = *hv;
  else if (auto *sn = get("server_name"))
    l.host = *sn;
  if (auto *v = get("request_time"))
    l.request_time = to_double(*v);
  if (auto *v = get("msec")) {
    if (auto d = to_double(*v)) {
      l.time = *d;
      // $msec is "sec.mmm": integer ms without floating rounding
      auto dot = v->find('.');
      auto sec = to_uint<std::int64_t>(std::string_view(*v).substr(0, dot));
      if (sec) {
        std::int64_t ms = *sec * 1000;
        if (dot != std::string::npos) {
          std::string_view frac = std::string_view(*v).substr(dot + 1, 3);
          int mult = 100;
          for (char c : frac) {
            if (c < '0' || c > '9')
              break;
            ms += (c - '0') * mult;
            mult /= 10;
          }
        }
        l.time_ms = ms;
      }
    }
  }
  // Either zone-bearing time gives nginx's UTC offset (LogZone reads error.log times with it),
  // even when $msec is the time used.
  int offset = 0;
  if (auto *v = get("time_iso8601")) {
    if (auto t = parse_time_iso8601(*v, &offset)) {
      l.utc_offset_s = offset;
      if (!l.time)
        l.time = static_cast<double>(*t);
    }
  }
  if (auto *v = get("time_local")) {
    if (auto t = parse_time_local(*v, &offset)) {
      l.utc_offset_s = offset;
      if (!l.time)
        l.time = static_cast<double>(*t);
    }
  }
  fill_upstreams(l);
}

} // namespace

std::vector<std::pair<std::string, int>> split_upstream_list(std::string_view v) {
  // ngx_http_upstream_addr_variable() etc.: ", " between attempts, " : " before the attempts of
  // the next upstream group (after an internal redirect).
  std::vector<std::pair<std::string, int>> out;
  int group = 0;
  size_t i = 0;
  while (i <= v.size() && out.size() < 1024) {
    size_t comma = v.find(", ", i);
    size_t colon = v.find(" : ", i);
    size_t end = std::min(comma, colon);
    std::string_view item = v.substr(i, end == std::string_view::npos ? v.size() - i : end - i);
    out.emplace_back(item == "-" ? std::string() : std::string(item), group);
    if (end == std::string_view::npos)
      break;
    if (end == colon) {
      ++group;
      i = end + 3;
    } else {
      i = end + 2;
    }
  }
  return out;
}

std::optional<std::int64_t> parse_time_local(std::string_view s, int *offset_s) {
  // "30/Nov/2026:17:02:01 +0100"
  if (s.size() < 26 || s[2] != '/' || s[6] != '/' || s[11] != ':' || s[14] != ':' || s[17] != ':' ||
      s[20] != ' ' || (s[21] != '+' && s[21] != '-'))
    return std::nullopt;
  auto d = num(s, 0, 2), y = num(s, 7, 4), h = num(s, 12, 2), mi = num(s, 15, 2),
       se = num(s, 18, 2), oh = num(s, 22, 2), om = num(s, 24, 2);
  int mo = month_index(s.substr(3, 3));
  if (!d || !y || !h || !mi || !se || !oh || !om || mo < 0)
    return std::nullopt;
  int off = (*oh * 3600 + *om * 60) * (s[21] == '-' ? -1 : 1);
  if (offset_s)
    *offset_s = off;
  return to_epoch(*y, mo + 1, *d, *h, *mi, *se, off);
}

std::optional<std::int64_t> parse_time_iso8601(std::string_view s, int *offset_s) {
  // "2026-11-30T17:02:01+01:00" (nginx always writes the numeric offset)
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
    return std::nullopt;
  auto y = num(s, 0, 4), mo = num(s, 5, 2), d = num(s, 8, 2), h = num(s, 11, 2),
       mi = num(s, 14, 2), se = num(s, 17, 2);
  if (!y || !mo || !d || !h || !mi || !se || *mo < 1 || *mo > 12)
    return std::nullopt;
  int off = 0;
  std::string_view z = s.substr(19);
  if (z == "Z") {
    off = 0;
  } else if (z.size() == 6 && (z[0] == '+' || z[0] == '-') && z[3] == ':') {
    auto oh = num(z, 1, 2), om = num(z, 4, 2);
    if (!oh || !om)
      return std::nullopt;
    off = (*oh * 3600 + *om * 60) * (z[0] == '-' ? -1 : 1);
  } else {
    return std::nullopt;
  }
  if (offset_s)
    *offset_s = off;
  return to_epoch(*y, *mo, *d, *h, *mi, *se, off);
}

Result<AccessLogParser> AccessLogParser::compile(std::string_view format, Escape escape) {
  AccessLogParser p;
  p.escape_ = escape;
  std::string lit;
  auto push_lit = [&] {
    if (!lit.empty()) {
      p.segs_.push_back({false, lit, false});
      lit.clear();
    }
  };
  for (size_t i = 0; i < format.size();) {
    char c = format[i];
    if (c != '$') {
      lit += c;
      ++i;
      continue;
    }
    std::string name;
    if (i + 1 < format.size() && format[i + 1] == '{') {
      size_t close = format.find('}', i + 2);
      if (close == std::string_view::npos)
        return Result<AccessLogParser>::failure("unclosed \"${\" in log_format");
      name = std::string(format.substr(i + 2, close - i - 2));
      i = close + 1;
    } else {
      size_t j = i + 1;
      while (j < format.size() && is_var_char(format[j]))
        ++j;
      name = std::string(format.substr(i + 1, j - i - 1));
      i = j;
    }
    if (name.empty())
      return Result<AccessLogParser>::failure("invalid variable name in log_format");
    push_lit();
    bool numeric = numeric_var(name);
    p.segs_.push_back({true, std::move(name), numeric});
  }
  push_lit();
  if (p.segs_.empty())
    return Result<AccessLogParser>::failure("empty log_format");
  for (const auto &seg : p.segs_)
    if (seg.is_var) {
      if (seg.text == "status" && p.status_var_ == SIZE_MAX)
        p.status_var_ = p.n_vars_;
      ++p.n_vars_;
    }
  return p;
}

AccessLogParser AccessLogParser::combined() { return *compile(kCombinedFormat); }

AccessLogParser AccessLogParser::for_format(const LogFormat &f) {
  auto r = compile(f.format, f.escape);
  return r.ok() ? std::move(*r) : combined();
}

std::optional<AccessLogLine> AccessLogParser::parse(std::string_view line) const {
  MatchedValues values(n_vars_);
  if (!match_line(segs_, escape_, line, values))
    return std::nullopt;
  AccessLogLine l;
  size_t vi = 0;
  for (const auto &s : segs_) {
    if (!s.is_var)
      continue;
    std::string_view raw = values[vi++];
    std::string v = escape_ == Escape::json    ? unescape_json(raw)
                    : escape_ == Escape::none ? std::string(raw)
                                              : unescape_default(raw);
    // nginx writes "\xE9" for a non-ASCII byte of a request; unescaped, it is any byte the client
    // sent. Valid UTF-8 from here on (U+FFFD for invalid bytes), so every sink can print it.
    base::make_valid_utf8(v);
    l.vars.emplace(s.text, std::move(v));
  }
  fill_known(l);
  return l;
}

AccessLogParser::StatusScan AccessLogParser::scan_status(std::string_view line) const {
  // The same match as parse(), so a line is "matched" here exactly when parse() would take it; only
  // the values are left as views into the line ($status is digits: nothing to unescape).
  MatchedValues values(n_vars_);
  StatusScan r;
  r.matched = match_line(segs_, escape_, line, values);
  if (r.matched && status_var_ != SIZE_MAX)
    r.status = to_uint<int>(values[status_var_]);
  return r;
}

std::optional<AccessLogLine> AccessLogParser::parse(std::string_view line, ParseStats &stats) const {
  auto r = parse(line);
  stats.count(r.has_value());
  return r;
}

} // namespace why502::nginx
