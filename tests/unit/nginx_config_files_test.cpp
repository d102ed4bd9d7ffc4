// parse_config_files: the live config read file by file (never by running nginx), includes and
// globs expanded from a source, `-g` applied first, and bounds against include bombs.
#include "why502/nginx.h"

#include <fnmatch.h>
#include <gtest/gtest.h>

#include <map>

using namespace why502::nginx;

namespace {

class MapSource : public ConfigFileSource {
public:
  std::map<std::string, std::string> files;
  std::vector<std::string> read_log;
  std::vector<std::string> glob(const std::string &pattern) override {
    std::vector<std::string> out;
    for (const auto &[p, t] : files)
      if (fnmatch(pattern.c_str(), p.c_str(), FNM_PATHNAME | FNM_PERIOD) == 0)
        out.push_back(p);
    return out;
  }
  Result<std::string> read(const std::string &path) override {
    read_log.push_back(path);
    auto it = files.find(path);
    if (it == files.end())
      return Result<std::string>::failure("Permission denied");
    return it->second;
  }
};

ConfigParseOptions debian() {
  ConfigParseOptions o;
  o.prefix = "/usr/share/nginx/";
  o.default_error_log = "/var/log/nginx/error.log";
  o.default_access_log = "/var/log/nginx/access.log";
  return o;
}

TEST(ConfigFiles, IncludesGlobsAndUpstreams) {
  MapSource src;
  src.files["/etc/nginx/nginx.conf"] = "worker_processes 2;\nhttp {\n include mime.types;\n"
                                       " include /etc/nginx/conf.d/*.conf;\n}\n";
  src.files["/etc/nginx/mime.types"] = "types { text/html html; }\n";
  src.files["/etc/nginx/conf.d/a.conf"] =
      "upstream app { server 127.0.0.1:8080; server unix:/run/app.sock backup; }\n";
  src.files["/etc/nginx/conf.d/b.conf"] =
      "server { listen 80; error_log /var/log/b.err; access_log /var/log/b.acc; "
      "location / { proxy_pass http://app; } }\n";
  src.files["/etc/nginx/conf.d/z.disabled"] = "this is not read {";
  Config c = parse_config_files("/etc/nginx/nginx.conf", "", src, debian());
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
  EXPECT_EQ(c.files, (std::vector<std::string>{"/etc/nginx/nginx.conf", "/etc/nginx/mime.types",
                                               "/etc/nginx/conf.d/a.conf", "/etc/nginx/conf.d/b.conf"}));
  EXPECT_EQ(c.worker_processes, "2");
  ASSERT_EQ(c.upstreams.size(), 1u);
  EXPECT_EQ(c.upstreams[0]->servers.size(), 2u);
  ASSERT_EQ(c.passes.size(), 1u);
  EXPECT_EQ(c.passes[0].upstream, c.upstreams[0].get());
  // The main context had no error_log: the compiled-in default comes first.
  ASSERT_EQ(c.error_logs.size(), 2u);
  EXPECT_EQ(c.error_logs[0].path, "/var/log/nginx/error.log");
  EXPECT_EQ(c.error_logs[1].path, "/var/log/b.err");
}

TEST(ConfigFiles, GlobalsFromTheCommandLineComeFirst) {
  MapSource src;
  src.files["/srv/n/conf/nginx.conf"] = "error_log logs/e.log;\nevents {}\n";
  auto o = debian();
  o.prefix = "/srv/n/";
  Config c = parse_config_files("/srv/n/conf/nginx.conf", "pid /run/x.pid; worker_processes 3;", src, o);
  EXPECT_EQ(c.pid_file, "/run/x.pid");
  EXPECT_EQ(c.worker_processes, "3");
  ASSERT_EQ(c.error_logs.size(), 1u);
  EXPECT_EQ(c.error_logs[0].path, "/srv/n/logs/e.log");
}

TEST(ConfigFiles, UnreadableFilesAreWarningsNotContent) {
  // A master run by an unprivileged user cannot make why502 read a root-only file for it: the
  // source refuses, and nothing of the file reaches the config or the warnings.
  MapSource src;
  src.files["/etc/nginx/nginx.conf"] = "include /root/secret;\nerror_log /var/log/e.log;\n";
  Config c = parse_config_files("/etc/nginx/nginx.conf", "", src, debian());
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0], "/etc/nginx/nginx.conf:1: cannot read included file /root/secret: Permission denied");
  EXPECT_EQ(c.error_logs.size(), 1u);

  MapSource none;
  Config empty = parse_config_files("/etc/nginx/nginx.conf", "", none, debian());
  ASSERT_EQ(empty.warnings.size(), 1u);
  EXPECT_EQ(empty.warnings[0],
            "cannot read the main configuration file /etc/nginx/nginx.conf: Permission denied");
  EXPECT_TRUE(empty.files.empty());
}

TEST(ConfigFiles, IncludeBombsAreBounded) {
  // Each file includes the next twice; recursion and a fan-out of 2^40 must stay linear.
  MapSource src;
  src.files["/c/nginx.conf"] = "include /c/f0;\ninclude /c/nginx.conf;\n";
  for (int i = 0; i < 40; ++i)
    src.files["/c/f" + std::to_string(i)] =
        "include /c/f" + std::to_string(i + 1) + ";\ninclude /c/f" + std::to_string(i + 1) + ";\n";
  Config c = parse_config_files("/c/nginx.conf", "", src, debian());
  EXPECT_LE(src.read_log.size(), 1100u);
  bool recursive = false, bounded = false;
  for (const auto &w : c.warnings) {
    recursive |= w.find("recursive include of /c/nginx.conf") != std::string::npos;
    bounded |= w.find("too many or too deep includes") != std::string::npos;
  }
  EXPECT_TRUE(recursive);
  EXPECT_TRUE(bounded);
}

TEST(ConfigFiles, TotalSizeIsBounded) {
  MapSource src;
  std::string big(kMaxConfigBytes / 2 + 1, '#');
  src.files["/c/nginx.conf"] = "include /c/big1;\ninclude /c/big2;\nerror_log /e.log;\n";
  src.files["/c/big1"] = big;
  src.files["/c/big2"] = big;
  Config c = parse_config_files("/c/nginx.conf", "", src, debian());
  bool stopped = false;
  for (const auto &w : c.warnings)
    stopped |= w.find("larger than") != std::string::npos;
  EXPECT_TRUE(stopped);
  EXPECT_EQ(c.files, (std::vector<std::string>{"/c/nginx.conf", "/c/big1"}));
}

TEST(MasterTrustTest, OnlyRootMastersFromRootOwnedBinaries) {
  MasterTrust ok{0, 0, true, 0, 0, 0100755};
  EXPECT_EQ(untrusted_master_reason(ok), "");
  MasterTrust group_root_writable = ok;
  group_root_writable.binary_mode = 0100775;
  EXPECT_EQ(untrusted_master_reason(group_root_writable), "");
  MasterTrust nobody = ok;
  nobody.master_ruid = nobody.master_euid = 65534;
  EXPECT_EQ(untrusted_master_reason(nobody), "it runs as uid 65534, not root (a real nginx master starts as root)");
  MasterTrust user_binary = ok;
  user_binary.binary_uid = 1000;
  EXPECT_EQ(untrusted_master_reason(user_binary), "its binary is owned by uid 1000, not root");
  MasterTrust world = ok;
  world.binary_mode = 0100777;
  EXPECT_EQ(untrusted_master_reason(world), "its binary is writable by users other than root");
  MasterTrust group = ok;
  group.binary_gid = 100;
  group.binary_mode = 0100775;
  EXPECT_EQ(untrusted_master_reason(group), "its binary is writable by users other than root");
  MasterTrust unknown = ok;
  unknown.binary_known = false;
  EXPECT_EQ(untrusted_master_reason(unknown), "its binary cannot be inspected");
}

} // namespace

namespace {

Config from(const std::string &http) {
  MapSource src;
  src.files["/c/nginx.conf"] = "http {\n" + http + "\n}\n";
  return parse_config_files("/c/nginx.conf", "", src, debian());
}

TEST(StaticUpstreams, EveryPeerAConfigCanName) {
  Config c = from("upstream app { server 127.0.0.1:8080; server [::1]:8081; server unix:/run/a.sock; "
                  "server 10.0.0.7; }\nserver { location / { proxy_pass http://app; }\n"
                  "location /php { fastcgi_pass unix:/run/php.sock; }\n"
                  "location /d { proxy_pass http://127.0.0.1:9000/x; } }");
  auto peers = c.static_upstream_peers();
  ASSERT_TRUE(peers);
  EXPECT_EQ(*peers, (std::set<std::string>{"app", "127.0.0.1:8080", "[::1]:8081", "unix:/run/a.sock", "10.0.0.7:80",
                                           "unix:/run/php.sock", "127.0.0.1:9000"}));
}

TEST(StaticUpstreams, VariablesOrHostNamesMeanTheListIsNotKnown) {
  EXPECT_FALSE(from("server { location / { proxy_pass http://$backend; } }").static_upstream_peers());
  EXPECT_FALSE(from("server { location / { proxy_pass http://backend.internal:8080; } }").static_upstream_peers());
  EXPECT_FALSE(from("upstream a { server app.local:80; }\nserver { location / { proxy_pass http://a; } }")
                   .static_upstream_peers());
  EXPECT_FALSE(from("server { listen 80; }").static_upstream_peers()); // no upstream at all
}

TEST(StaticUpstreams, AFailureMustNameAConfiguredPeer) {
  std::set<std::string> peers{"127.0.0.1:8080", "unix:/run/app.sock"};
  auto line = [](const std::string &upstream) {
    auto l = parse_error_line("2026/12/03 10:00:00 [error] 7#7: *1 upstream prematurely closed connection while "
                              "reading response header from upstream, client: 127.0.0.1, server: x, request: \"GET "
                              "/ HTTP/1.1\", upstream: \"" + upstream + "\", host: \"x\"");
    EXPECT_TRUE(l);
    return *l;
  };
  EXPECT_TRUE(upstream_is_configured(line("http://127.0.0.1:8080/"), peers));
  EXPECT_FALSE(upstream_is_configured(line("http://10.6.6.6:6666/"), peers));
  EXPECT_TRUE(upstream_is_configured(line("http://unix:/run/app.sock:/"), peers));
  // nginx's "upstream timed out" drops the ':' after a unix peer: the prefix decides.
  auto t = parse_error_line("2026/12/03 10:00:00 [error] 7#7: *1 upstream timed out (110: Connection timed out) "
                            "while reading response header from upstream, client: 127.0.0.1, server: x, request: "
                            "\"GET /slow HTTP/1.1\", upstream: \"http://unix:/run/app.sock/slow\", host: \"x\"");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->upstream_path_ambiguous);
  EXPECT_TRUE(upstream_is_configured(*t, peers));
  EXPECT_FALSE(upstream_is_configured(*t, {"unix:/run/app"}));
}

} // namespace
