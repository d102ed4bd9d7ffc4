// listener_serves() and the host_sample JSON form.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "why502/host.h"

using why502::HostSample;
using why502::listener_serves;
using nlohmann::json;

TEST(HostListenerServes, Table) {
  struct Row {
    const char *listener, *upstream;
    bool serves;
  } rows[] = {
      {"127.0.0.1:8080", "127.0.0.1:8080", true},
      {"127.0.0.1:8080", "127.0.0.1:8081", false},
      {"127.0.0.1:8080", "10.0.0.1:8080", false},
      {"0.0.0.0:8080", "127.0.0.1:8080", true},
      {"0.0.0.0:8080", "10.1.2.3:8080", true},
      {"0.0.0.0:8080", "10.1.2.3:8081", false},
      {"0.0.0.0:8080", "[::1]:8080", false},        // an IPv4 socket never takes IPv6
      {"[::]:8080", "[::1]:8080", true},
      {"[::]:8080", "127.0.0.1:8080", true},        // dual stack
      {"[::]:8080", "127.0.0.1:9090", false},
      {"[::1]:8080", "[::1]:8080", true},
      {"[::1]:8080", "[0:0::1]:8080", true},        // same address, other spelling
      {"[::1]:8080", "127.0.0.1:8080", false},
      {"[::1]:8080", "[fe80::1]:8080", false},
      {"[::ffff:127.0.0.1]:8080", "127.0.0.1:8080", true},
      {"127.0.0.1:8080", "[::ffff:127.0.0.1]:8080", true},
      {"unix:/run/php/php-fpm.sock", "unix:/run/php/php-fpm.sock", true},
      {"unix:/run/php/php-fpm.sock", "unix:/run/php/other.sock", false},
      {"unix:@gunicorn", "unix:@gunicorn", true},
      {"unix:@gunicorn", "unix:/gunicorn", false},
      {"unix:/run/a.sock", "127.0.0.1:80", false},
      {"0.0.0.0:80", "unix:/run/a.sock", false},
      {"0.0.0.0:80", "localhost:80", false},       // names are not resolved here
      {"0.0.0.0:80", "", false},
  };
  for (const auto &r : rows)
    EXPECT_EQ(listener_serves(r.listener, r.upstream), r.serves) << r.listener << " vs " << r.upstream;
}

namespace {

HostSample example() {
  HostSample s;
  s.wall_ns = 1718000000123456000; // whole microseconds: the JSON time keeps microseconds
  s.listen_overflows = 42;
  s.listen_drops = 43;
  s.listeners.push_back({"127.0.0.1:8080", 4, 3, 123, {{100, "gunicorn"}, {101, "gunicorn"}}});
  s.listeners.push_back({"unix:@abstract name", 0, 4096, 124, {}});
  s.listeners.push_back({"[::]:9000", 0, 511, 18446744073709551615ull, {{1, "php-fpm: master"}}});
  return s;
}

bool same(const HostSample &a, const HostSample &b) {
  if (a.wall_ns != b.wall_ns || a.listen_overflows != b.listen_overflows || a.listen_drops != b.listen_drops ||
      a.listeners.size() != b.listeners.size())
    return false;
  for (size_t i = 0; i < a.listeners.size(); ++i) {
    const auto &x = a.listeners[i], &y = b.listeners[i];
    if (x.address != y.address || x.depth != y.depth || x.max != y.max || x.inode != y.inode || x.owners != y.owners)
      return false;
  }
  return true;
}

} // namespace

TEST(HostSampleJson, Format) {
  json j = to_json(example());
  EXPECT_EQ(j["type"], "host");
  EXPECT_EQ(j["event"], "host_sample");
  EXPECT_EQ(j["time"], "2024-06-10T06:13:20.123456Z");
  EXPECT_EQ(j["listen_overflows"], 42);
  EXPECT_EQ(j["listen_drops"], 43);
  ASSERT_EQ(j["listeners"].size(), 3u);
  EXPECT_EQ(j["listeners"][0],
            json::parse(R"({"address":"127.0.0.1:8080","depth":4,"max":3,"inode":123,
                            "owners":[{"pid":100,"comm":"gunicorn"},{"pid":101,"comm":"gunicorn"}]})"));
  EXPECT_EQ(j["listeners"][1]["owners"], json::array());
}

TEST(HostSampleJson, RoundTripThroughText) {
  HostSample s = example();
  auto back = why502::host_sample_from_json(json::parse(to_json(s).dump()));
  ASSERT_TRUE(back) << back.error();
  EXPECT_TRUE(same(s, *back));
  HostSample empty;
  empty.wall_ns = 0;
  auto back2 = why502::host_sample_from_json(json::parse(to_json(empty).dump()));
  ASSERT_TRUE(back2) << back2.error();
  EXPECT_TRUE(same(empty, *back2));
}

TEST(HostSampleJson, OwnersAreOptional) {
  auto s = why502::host_sample_from_json(
      json::parse(R"({"type":"host","event":"host_sample","time":"2024-06-10T06:13:20.000001Z",
                      "listen_overflows":0,"listen_drops":0,
                      "listeners":[{"address":"0.0.0.0:80","depth":0,"max":511,"inode":9}]})"));
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(s->wall_ns, 1717999999999999999 + 1001);
  ASSERT_EQ(s->listeners.size(), 1u);
  EXPECT_TRUE(s->listeners[0].owners.empty());
}

TEST(HostSampleJson, Malformed) {
  json good = to_json(example());
  struct Case {
    const char *what;
    std::function<void(json &)> mutate;
    const char *error_has;
  } cases[] = {
      {"not an object", [](json &j) { j = json::array(); }, "object"},
      {"wrong type", [](json &j) { j["type"] = "kernel"; }, "not a host_sample"},
      {"wrong event", [](json &j) { j["event"] = "conn_fail"; }, "not a host_sample"},
      {"no time", [](json &j) { j.erase("time"); }, "time"},
      {"bad time", [](json &j) { j["time"] = "yesterday"; }, "time"},
      {"time a number", [](json &j) { j["time"] = 5; }, "time"},
      {"negative counter", [](json &j) { j["listen_overflows"] = -1; }, "listen_overflows"},
      {"counter a string", [](json &j) { j["listen_drops"] = "7"; }, "listen_drops"},
      {"counter a float", [](json &j) { j["listen_drops"] = 1.5; }, "listen_drops"},
      {"no listeners", [](json &j) { j.erase("listeners"); }, "listeners"},
      {"listeners an object", [](json &j) { j["listeners"] = json::object(); }, "listeners"},
      {"listener a string", [](json &j) { j["listeners"][1] = "x"; }, "listeners[1]"},
      {"no address", [](json &j) { j["listeners"][0].erase("address"); }, "listeners[0].address"},
      {"empty address", [](json &j) { j["listeners"][0]["address"] = ""; }, "listeners[0].address"},
      {"depth too big", [](json &j) { j["listeners"][0]["depth"] = 4294967296ull; }, "listeners[0].depth"},
      {"no max", [](json &j) { j["listeners"][2].erase("max"); }, "listeners[2].max"},
      {"inode negative", [](json &j) { j["listeners"][0]["inode"] = -5; }, "listeners[0].inode"},
      {"owners an object", [](json &j) { j["listeners"][0]["owners"] = json::object(); }, "owners"},
      {"owner without comm", [](json &j) { j["listeners"][0]["owners"][1].erase("comm"); },
       "listeners[0].owners[1].comm"},
      {"owner pid string", [](json &j) { j["listeners"][0]["owners"][0]["pid"] = "1"; },
       "listeners[0].owners[0].pid"},
  };
  for (const auto &c : cases) {
    json j = good;
    c.mutate(j);
    auto r = why502::host_sample_from_json(j);
    EXPECT_FALSE(r) << c.what;
    if (!r) {
      EXPECT_NE(r.error().find(c.error_has), std::string::npos) << c.what << ": " << r.error();
    }
  }
  EXPECT_FALSE(why502::host_sample_from_json(json::array()));
}
