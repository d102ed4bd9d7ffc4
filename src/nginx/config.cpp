// `nginx -T` dump -> Config. A real tokenizer following ngx_conf_read_token(): words, quotes with
// escapes, '#' comments at token start, ';' '{' '}' as terminators, "${" not opening a block.
#include "why502/nginx.h"

#include <fnmatch.h>

#include <algorithm>
#include <cstring>

namespace why502::nginx {
namespace {

struct Token {
  std::string text;
  bool quoted = false;
};

struct Directive {
  std::vector<Token> args; // args[0] is the name
  int line = 0;
  char terminator = ';'; // ';' or '{'
};

// Tokenizes one file; calls on_directive for every directive, on_close for every '}'.
class Tokenizer {
public:
  Tokenizer(std::string_view text) : s_(text) {}

  // Returns false at end of input. `d` gets the directive; kind: 0 directive, 1 block close.
  bool next(Directive &d, int &kind, std::string &error) {
    d.args.clear();
    kind = 0;
    for (;;) {
      skip_space_and_comments();
      if (pos_ >= s_.size()) {
        if (!d.args.empty())
          error = "unexpected end of file, expecting \";\" or \"}\"";
        return false;
      }
      char c = s_[pos_];
      if (c == ';' || c == '{') {
        ++pos_;
        if (d.args.empty()) {
          error = std::string("unexpected \"") + c + "\"";
          continue;
        }
        d.terminator = c;
        return true;
      }
      if (c == '}') {
        ++pos_;
        if (!d.args.empty()) {
          error = "unexpected \"}\"";
          d.args.clear();
        }
        kind = 1;
        return true;
      }
      if (d.args.empty())
        d.line = line_;
      d.args.push_back(read_word());
    }
  }
  int line() const { return line_; }

private:
  void skip_space_and_comments() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == '\n') {
        ++line_;
        ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n')
          ++pos_;
      } else {
        break;
      }
    }
  }

  static void unescape_into(std::string &out, char next) {
    switch (next) {
    case '"': out += '"'; break;
    case '\'': out += '\''; break;
    case '\\': out += '\\'; break;
    case 't': out += '\t'; break;
    case 'r': out += '\r'; break;
    case 'n': out += '\n'; break;
    default: out += '\\'; out += next; break;
    }
  }

  Token read_word() {
    Token t;
    char q = s_[pos_];
    if (q == '"' || q == '\'') {
      t.quoted = true;
      ++pos_;
      while (pos_ < s_.size() && s_[pos_] != q) {
        char c = s_[pos_++];
        if (c == '\n')
          ++line_;
        if (c == '\\' && pos_ < s_.size()) {
          char n = s_[pos_++];
          if (n == '\n')
            ++line_;
          unescape_into(t.text, n);
        } else {
          t.text += c;
        }
      }
      if (pos_ < s_.size())
        ++pos_; // closing quote
      return t;
    }
    bool var_brace = false; // inside "${...}"
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';')
        break;
      if (c == '{' && !(pos_ > 0 && s_[pos_ - 1] == '$'))
        break;
      if (c == '}' && !var_brace)
        break;
      ++pos_;
      if (c == '\\' && pos_ < s_.size()) {
        unescape_into(t.text, s_[pos_++]);
        continue;
      }
      if (c == '{')
        var_brace = true;
      else if (c == '}')
        var_brace = false;
      t.text += c;
    }
    return t;
  }

  std::string_view s_;
  size_t pos_ = 0;
  int line_ = 1;
};

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string dirname_of(std::string_view p) {
  auto i = p.rfind('/');
  if (i == std::string_view::npos)
    return "";
  return std::string(p.substr(0, i + 1));
}

std::optional<long> to_long(std::string_view s) {
  if (s.empty() || s.size() > 18)
    return std::nullopt;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

struct Builder {
  Config &cfg;
  const ConfigParseOptions &opts;
  std::map<std::string, std::string, std::less<>> files; // path -> content
  std::vector<std::string> ctx{"main"};
  Upstream *cur_upstream = nullptr;
  std::vector<std::string> include_stack; // files being parsed, outermost first
  int include_budget = 1024;               // total expansions: globs of globs stay linear
  bool include_bound_warned = false;
  bool main_error_log = false;
  bool http_seen = false, http_access_log = false;
  ConfigFileSource *source = nullptr; // files read on demand (live); null: the dump's files map
  std::size_t bytes_budget = kMaxConfigBytes;

  bool in(std::string_view name) const {
    return std::find(ctx.begin(), ctx.end(), name) != ctx.end();
  }
  bool in_stream() const { return in("stream"); }

  void warn(const SourceLocation &w, std::string msg) {
    if (cfg.warnings.size() < 1000)
      cfg.warnings.push_back(w.file + ":" + std::to_string(w.line) + ": " + std::move(msg));
  }

  void parse_file(const std::string &name, std::string_view text) {
    include_stack.push_back(name);
    parse_tokens(name, text);
    include_stack.pop_back();
  }

  void parse_tokens(const std::string &name, std::string_view text) {
    Tokenizer tok(text);
    Directive d;
    int kind;
    size_t base_depth = ctx.size();
    for (;;) {
      std::string err;
      bool more = tok.next(d, kind, err);
      if (!err.empty())
        warn({name, tok.line()}, err);
      if (!more)
        break;
      if (kind == 1) {
        if (ctx.size() <= base_depth) {
          warn({name, tok.line()}, "unexpected \"}\"");
          continue;
        }
        if (ctx.back() == "upstream")
          cur_upstream = nullptr;
        ctx.pop_back();
        continue;
      }
      handle(d, {name, d.line});
    }
    if (ctx.size() > base_depth) {
      warn({name, tok.line()}, "unexpected end of file, expecting \"}\"");
      ctx.resize(base_depth);
      cur_upstream = nullptr;
    }
  }

  void handle(const Directive &d, const SourceLocation &where) {
    const std::string &name = d.args[0].text;
    if (d.terminator == '{') {
      if (name == "upstream" && d.args.size() >= 2) {
        auto up = std::make_unique<Upstream>();
        up->name = d.args[1].text;
        up->is_stream = in_stream();
        up->where = where;
        cur_upstream = up.get();
        cfg.upstreams.push_back(std::move(up));
      }
      if (name == "http")
        http_seen = true;
      ctx.push_back(name);
      return;
    }
    if (name == "include" && d.args.size() >= 2)
      return include(d.args[1].text, where);
    if (name == "error_log")
      return error_log(d, where);
    if (name == "access_log")
      return access_log(d, where);
    if (name == "log_format")
      return log_format(d, where);
    if (name == "server" && ctx.back() == "upstream" && cur_upstream)
      return upstream_server(d);
    if (name == "keepalive" && ctx.back() == "upstream" && cur_upstream && d.args.size() >= 2) {
      if (auto v = to_long(d.args[1].text))
        cur_upstream->keepalive = static_cast<int>(*v);
      return;
    }
    if (name == "proxy_pass" || name == "fastcgi_pass" || name == "uwsgi_pass" ||
        name == "grpc_pass" || name == "scgi_pass")
      return pass(d, where);
    if (ctx.size() == 1) {
      if (name == "worker_processes" && d.args.size() >= 2)
        cfg.worker_processes = d.args[1].text;
      else if (name == "worker_rlimit_nofile" && d.args.size() >= 2)
        cfg.worker_rlimit_nofile = to_long(d.args[1].text);
      else if (name == "pid" && d.args.size() >= 2)
        cfg.pid_file = resolve_path(d.args[1].text, opts.prefix);
    }
  }

  void include(const std::string &pattern, const SourceLocation &where) {
    // nginx resolves relative includes against the conf prefix (directory of the main file).
    std::string full = pattern.empty() || pattern[0] == '/' ? pattern : opts.conf_prefix + pattern;
    bool glob = full.find_first_of("*?[") != std::string::npos;
    std::vector<std::string> paths;
    if (source) {
      paths = glob ? source->glob(full) : std::vector<std::string>{full};
    } else {
      for (const auto &[path, content] : files)
        if (glob ? fnmatch(full.c_str(), path.c_str(), FNM_PATHNAME) == 0 : path == full)
          paths.push_back(path);
    }
    if (paths.empty() && !glob)
      warn(where, "included file not in the dump: " + full);
    for (const auto &path : paths) {
      if (std::find(include_stack.begin(), include_stack.end(), path) != include_stack.end()) {
        warn(where, "recursive include of " + path + " skipped");
        continue;
      }
      if (include_stack.size() > 32 || --include_budget < 0) {
        if (!include_bound_warned)
          warn(where, "too many or too deep includes, stopped at " + path);
        include_bound_warned = true; // once: a bomb must not crowd out the other warnings
        return;
      }
      if (!source) {
        parse_file(path, files.find(path)->second);
        continue;
      }
      auto text = source->read(path);
      if (!text) {
        warn(where, "cannot read included file " + path + ": " + text.error());
        continue;
      }
      if (text->size() > bytes_budget) {
        warn(where, "the configuration is larger than " + std::to_string(kMaxConfigBytes) +
                        " bytes, stopped at " + path);
        include_budget = -2; // nothing more is read
        return;
      }
      bytes_budget -= text->size();
      note_file(path);
      parse_file(path, *text);
    }
  }

  void note_file(const std::string &path) {
    if (std::find(cfg.files.begin(), cfg.files.end(), path) == cfg.files.end())
      cfg.files.push_back(path);
  }

  std::string context() const { return ctx.back(); }

  void error_log(const Directive &d, const SourceLocation &where) {
    if (d.args.size() < 2)
      return;
    ErrorLogTarget t;
    t.where = where;
    t.context = context();
    const std::string &p = d.args[1].text;
    if (d.args.size() >= 3)
      t.level = d.args[2].text;
    if (p == "stderr") {
      t.path = p;
      t.tailable = false;
      t.not_tailable_reason = "logs to stderr";
    } else if (starts_with(p, "syslog:")) {
      t.path = p;
      t.tailable = false;
      t.not_tailable_reason = "logs to syslog";
    } else if (starts_with(p, "memory:")) {
      t.path = p;
      t.tailable = false;
      t.not_tailable_reason = "logs to an in-memory buffer (debugger only)";
    } else {
      t.path = resolve_path(p, opts.prefix);
      if (t.path == "/dev/null") {
        t.tailable = false;
        t.not_tailable_reason = "logs to /dev/null";
      }
    }
    if (ctx.size() == 1)
      main_error_log = true;
    cfg.error_logs.push_back(std::move(t));
  }

  void access_log(const Directive &d, const SourceLocation &where) {
    if (d.args.size() < 2)
      return;
    AccessLogTarget t;
    t.where = where;
    t.context = context();
    t.is_stream = in_stream();
    if (in("http"))
      http_access_log = true;
    const std::string &p = d.args[1].text;
    if (p == "off") {
      t.off = true;
      t.tailable = false;
      t.not_tailable_reason = "access_log off";
      cfg.access_logs.push_back(std::move(t));
      return;
    }
    if (d.args.size() >= 3)
      t.format_name = d.args[2].text;
    else if (t.is_stream)
      t.format_name = ""; // stream access_log requires a format
    for (size_t i = 3; i < d.args.size(); ++i)
      t.ignored_params.push_back(d.args[i].text);
    if (starts_with(p, "syslog:")) {
      t.path = p;
      t.tailable = false;
      t.not_tailable_reason = "logs to syslog";
    } else if (p.find('$') != std::string::npos) {
      t.path = resolve_path(p, opts.prefix);
      t.tailable = false;
      t.not_tailable_reason = "path contains variables";
    } else {
      t.path = resolve_path(p, opts.prefix);
      if (t.path == "/dev/null") {
        t.tailable = false;
        t.not_tailable_reason = "logs to /dev/null";
      }
    }
    for (const auto &prm : t.ignored_params) {
      if (starts_with(prm, "gzip") && t.tailable) {
        t.tailable = false;
        t.not_tailable_reason = "gzip-compressed";
      }
    }
    cfg.access_logs.push_back(std::move(t));
  }

  void log_format(const Directive &d, const SourceLocation &where) {
    if (d.args.size() < 3)
      return;
    LogFormat f;
    f.name = d.args[1].text;
    f.where = where;
    f.is_stream = in_stream();
    size_t i = 2;
    if (starts_with(d.args[2].text, "escape=")) {
      std::string_view e = std::string_view(d.args[2].text).substr(7);
      if (e == "json")
        f.escape = Escape::json;
      else if (e == "none")
        f.escape = Escape::none;
      else
        f.escape = Escape::default_;
      i = 3;
    }
    for (; i < d.args.size(); ++i)
      f.format += d.args[i].text;
    auto &map = f.is_stream ? cfg.stream_log_formats : cfg.log_formats;
    if (f.name == "combined" && !f.is_stream) {
      warn(where, "duplicate \"log_format\" name \"combined\"");
      return;
    }
    map[f.name] = std::move(f);
  }

  void upstream_server(const Directive &d) {
    if (d.args.size() < 2)
      return;
    UpstreamServer s;
    s.address = d.args[1].text;
    s.is_unix = starts_with(s.address, "unix:");
    for (size_t i = 2; i < d.args.size(); ++i) {
      const std::string &a = d.args[i].text;
      if (starts_with(a, "weight=")) {
        if (auto v = to_long(std::string_view(a).substr(7)))
          s.weight = static_cast<int>(*v);
      } else if (starts_with(a, "max_fails=")) {
        if (auto v = to_long(std::string_view(a).substr(10)))
          s.max_fails = static_cast<int>(*v);
      } else if (starts_with(a, "fail_timeout=")) {
        s.fail_timeout = a.substr(13);
      } else if (a == "backup") {
        s.backup = true;
      } else if (a == "down") {
        s.down = true;
      } else {
        s.other_params.push_back(a);
      }
    }
    cur_upstream->servers.push_back(std::move(s));
  }

  void pass(const Directive &d, const SourceLocation &where) {
    if (d.args.size() < 2)
      return;
    PassTarget p;
    p.directive = d.args[0].text;
    p.target = d.args[1].text;
    p.where = where;
    p.has_variables = p.target.find('$') != std::string::npos;
    std::string_view rest = p.target;
    auto sch = rest.find("://");
    if (sch != std::string_view::npos) {
      p.scheme = std::string(rest.substr(0, sch));
      rest.remove_prefix(sch + 3);
    } else if (p.directive == "grpc_pass") {
      p.scheme = "grpc";
    } else if (p.directive == "uwsgi_pass") {
      p.scheme = "uwsgi";
    }
    if (!p.has_variables || rest.find('$') > rest.find_first_of("/")) {
      if (starts_with(rest, "unix:")) {
        // proxy_pass http://unix:/path:/uri — the socket path ends at the next ':'
        auto colon = rest.find(':', 5);
        p.address = std::string(colon == std::string_view::npos ? rest : rest.substr(0, colon));
      } else {
        auto slash = rest.find('/');
        p.address = std::string(rest.substr(0, slash));
      }
      if (p.address.find('$') != std::string::npos)
        p.address.clear();
    }
    cfg.passes.push_back(std::move(p));
  }
};

} // namespace

std::string resolve_path(std::string_view path, std::string_view prefix) {
  if (path.empty() || path[0] == '/' || prefix.empty())
    return std::string(path);
  std::string out(prefix);
  if (out.back() != '/')
    out += '/';
  out += path;
  return out;
}

const LogFormat *Config::format_for(const AccessLogTarget &log) const {
  const auto &map = log.is_stream ? stream_log_formats : log_formats;
  auto it = map.find(log.format_name);
  return it == map.end() ? nullptr : &it->second;
}

namespace {

// "1.2.3.4:80", "[::1]:8080", "unix:/x" as nginx logs the peer; a bare IPv4/IPv6 literal gets
// nginx's default port 80; nullopt for a host name (nginx resolves it: the logged peer is an address
// we cannot know from the config).
std::optional<std::string> literal_peer(const std::string &addr) {
  if (starts_with(addr, "unix:"))
    return addr.size() > 5 ? std::optional<std::string>(addr) : std::nullopt;
  auto is_port = [](std::string_view p) {
    return !p.empty() && p.size() <= 5 && p.find_first_not_of("0123456789") == std::string_view::npos;
  };
  auto is_ipv4 = [](std::string_view h) {
    int dots = 0;
    for (char c : h) {
      if (c == '.')
        ++dots;
      else if (c < '0' || c > '9')
        return false;
    }
    return dots == 3 && !h.empty();
  };
  if (starts_with(addr, "[")) {
    auto rb = addr.find(']');
    if (rb == std::string::npos)
      return std::nullopt;
    if (rb + 1 == addr.size())
      return addr + ":80";
    if (addr[rb + 1] == ':' && is_port(std::string_view(addr).substr(rb + 2)))
      return addr;
    return std::nullopt;
  }
  auto colon = addr.rfind(':');
  std::string_view host = colon == std::string::npos ? std::string_view(addr) : std::string_view(addr).substr(0, colon);
  if (!is_ipv4(host))
    return std::nullopt;
  if (colon == std::string::npos)
    return addr + ":80";
  return is_port(std::string_view(addr).substr(colon + 1)) ? std::optional<std::string>(addr) : std::nullopt;
}

} // namespace

std::optional<std::set<std::string>> Config::static_upstream_peers() const {
  if (passes.empty())
    return std::nullopt;
  std::set<std::string> peers;
  for (const auto &p : passes) {
    if (p.has_variables || p.address.empty())
      return std::nullopt;
    if (p.upstream) {
      peers.insert(p.upstream->name);
      for (const auto &srv : p.upstream->servers) {
        for (const auto &o : srv.other_params)
          if (o == "resolve" || starts_with(o, "service="))
            return std::nullopt;
        auto lit = literal_peer(srv.address);
        if (!lit)
          return std::nullopt;
        peers.insert(*lit);
      }
      continue;
    }
    auto lit = literal_peer(p.address);
    if (!lit)
      return std::nullopt;
    peers.insert(*lit);
  }
  return peers;
}

const Upstream *Config::find_upstream(std::string_view name) const {
  for (const auto &u : upstreams)
    if (u->name == name)
      return u.get();
  return nullptr;
}

namespace {

void add_combined_format(Config &cfg) {
  LogFormat combined;
  combined.name = "combined";
  combined.format = std::string(kCombinedFormat);
  cfg.log_formats["combined"] = std::move(combined);
}

// What nginx assumes when the config says nothing: compiled-in log paths; upstream links.
void apply_defaults(Builder &b) {
  Config &cfg = b.cfg;
  const ConfigParseOptions &local = b.opts;
  if (!b.main_error_log && !local.default_error_log.empty()) {
    ErrorLogTarget t;
    t.path = resolve_path(local.default_error_log, local.prefix);
    if (local.default_error_log == "stderr") { // Debian's build: --error-log-path=stderr
      t.path = "stderr";
      t.tailable = false;
      t.not_tailable_reason = "logs to stderr";
    }
    t.context = "main";
    t.where = {"(compiled-in default)", 0};
    cfg.error_logs.insert(cfg.error_logs.begin(), std::move(t));
  }
  if (b.http_seen && !b.http_access_log && !local.default_access_log.empty()) {
    AccessLogTarget t;
    t.path = resolve_path(local.default_access_log, local.prefix);
    t.context = "http";
    t.where = {"(compiled-in default)", 0};
    cfg.access_logs.push_back(std::move(t));
  }
  for (auto &p : cfg.passes) {
    if (!p.address.empty())
      p.upstream = cfg.find_upstream(p.address);
  }
}

} // namespace

Config parse_config(std::string_view dump, const ConfigParseOptions &opts) {
  Config cfg;
  add_combined_format(cfg);
  // Split into files at "# configuration file PATH:" markers (each at the start of a line).
  static constexpr std::string_view kMarker = "# configuration file ";
  std::map<std::string, std::string, std::less<>> files;
  std::string first_file, cur;
  size_t pos = 0, cur_start = 0;
  auto flush = [&](size_t end) {
    if (!cur.empty())
      files[cur] = std::string(dump.substr(cur_start, end - cur_start));
  };
  while (pos < dump.size()) {
    size_t eol = dump.find('\n', pos);
    if (eol == std::string_view::npos)
      eol = dump.size();
    std::string_view line = dump.substr(pos, eol - pos);
    if (starts_with(line, kMarker) && line.size() > kMarker.size() + 1 && line.back() == ':') {
      flush(pos);
      cur = std::string(line.substr(kMarker.size(), line.size() - kMarker.size() - 1));
      if (first_file.empty())
        first_file = cur;
      if (std::find(cfg.files.begin(), cfg.files.end(), cur) == cfg.files.end())
        cfg.files.push_back(cur);
      cur_start = std::min(eol + 1, dump.size());
    }
    pos = eol + 1;
  }
  flush(dump.size());
  if (first_file.empty()) {
    cfg.warnings.push_back("no \"# configuration file\" marker: not an `nginx -T` dump");
    return cfg;
  }
  ConfigParseOptions local = opts;
  if (local.conf_prefix.empty())
    local.conf_prefix = dirname_of(first_file);
  Builder b{cfg, local, std::move(files)};
  b.parse_file(first_file, b.files[first_file]);
  apply_defaults(b);
  return cfg;
}

Config parse_config_files(const std::string &main_file, std::string_view globals, ConfigFileSource &source,
                          const ConfigParseOptions &opts) {
  Config cfg;
  add_combined_format(cfg);
  ConfigParseOptions local = opts;
  if (local.conf_prefix.empty())
    local.conf_prefix = dirname_of(main_file);
  Builder b{cfg, local, {}};
  b.source = &source;
  // `-g` directives are parsed before the file, in the main context, as nginx does.
  if (!globals.empty())
    b.parse_file("(command line -g)", globals);
  auto text = source.read(main_file);
  if (!text) {
    cfg.warnings.push_back("cannot read the main configuration file " + main_file + ": " + text.error());
    return cfg;
  }
  if (text->size() > b.bytes_budget) {
    cfg.warnings.push_back("the main configuration file " + main_file + " is larger than " +
                           std::to_string(kMaxConfigBytes) + " bytes");
    return cfg;
  }
  b.bytes_budget -= text->size();
  b.note_file(main_file);
  b.parse_file(main_file, *text);
  apply_defaults(b);
  return cfg;
}

} // namespace why502::nginx
