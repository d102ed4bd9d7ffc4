// The zone of nginx's error.log times (they carry none): learnt from the operator, the access log's
// own offsets, the capture's host samples, and only last this process's zone. A replay on a host in
// another zone must give the verdicts the recording host would have.
#include <stdlib.h>
#include <time.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/text.h"
#include "base/time.h"
#include "pipeline/replay.h"
#include "why502/correlate.h"
#include "why502/host.h"
#include "why502/nginx.h"

using namespace why502;
namespace fs = std::filesystem;
using json = nlohmann::json;
using nginx::LogZone;

namespace {

// Sets TZ for one test and puts UTC back (other tests in this binary assume it).
class ZoneGuard {
public:
  explicit ZoneGuard(const char *tz) { set(tz); }
  ~ZoneGuard() { set("UTC"); }

private:
  static void set(const char *tz) {
    setenv("TZ", tz, 1);
    tzset();
  }
};

constexpr int64_t kNoon = 1796040000; // 2026-11-30 12:00:00 UTC

TEST(UtcOffset, ParsesTheSpellingsNginxAndPeopleUse) {
  EXPECT_EQ(base::parse_utc_offset("+09:00"), 9 * 3600);
  EXPECT_EQ(base::parse_utc_offset("-0530"), -(5 * 3600 + 1800));
  EXPECT_EQ(base::parse_utc_offset("Z"), 0);
  EXPECT_EQ(base::parse_utc_offset("+14:00"), 14 * 3600);
  for (const char *bad : {"", "9", "9:00", "+9:00", "+19:00", "+18:30", "+09:60", "+0a:00", "+09-00", "09:00", "+09:00:00"})
    EXPECT_FALSE(base::parse_utc_offset(bad)) << bad;
  EXPECT_EQ(base::format_utc_offset(-(3 * 3600 + 1800)), "-03:30");
  EXPECT_EQ(base::format_utc_offset(0), "+00:00");
}

TEST(UtcOffset, ThisHostsZoneFollowsTz) {
  ZoneGuard tz("JST-9");
  EXPECT_EQ(base::local_utc_offset_s(kNoon), 9 * 3600);
}

TEST(ErrorLogTime, TheClockReadingDoesNotDependOnTheReadersZone) {
  const std::string line = "2026/11/30 12:00:00 [error] 7#7: *1 connect() failed (111: Connection refused) while "
                           "connecting to upstream, client: 127.0.0.1, server: _, request: \"GET / HTTP/1.1\", "
                           "upstream: \"http://127.0.0.1:8080/\", host: \"x\"";
  int64_t utc = 0, tokyo = 0;
  {
    ZoneGuard tz("UTC");
    utc = nginx::parse_error_line(line)->local_seconds;
  }
  {
    ZoneGuard tz("JST-9");
    tokyo = nginx::parse_error_line(line)->local_seconds;
  }
  EXPECT_EQ(utc, kNoon);
  EXPECT_EQ(tokyo, kNoon);
}

TEST(LogZone, TrustsTheOperatorThenTheAccessLogThenTheCaptureThenThisHost) {
  ZoneGuard tz("NST3:30"); // this host: UTC-03:30
  LogZone zone;
  EXPECT_EQ(zone.source(), LogZone::Source::this_host);
  EXPECT_EQ(zone.to_epoch(kNoon), kNoon + 3 * 3600 + 1800);
  zone.learn_from_capture(kNoon, 3600);
  EXPECT_EQ(zone.source(), LogZone::Source::capture);
  EXPECT_EQ(zone.to_epoch(kNoon), kNoon - 3600);
  zone.learn_from_access_log(kNoon, 9 * 3600);
  EXPECT_EQ(zone.source(), LogZone::Source::access_log);
  EXPECT_EQ(zone.to_epoch(kNoon), kNoon - 9 * 3600);
  EXPECT_EQ(zone.describe(), "UTC+09:00 (from the access log)");
  zone.set_operator_offset(-5 * 3600);
  EXPECT_EQ(zone.to_epoch(kNoon), kNoon + 5 * 3600);
  EXPECT_EQ(zone.describe(), "UTC-05:00 (given)");
}

TEST(LogZone, FollowsADaylightSavingChangeInsideThePeriod) {
  // Central Europe leaving summer time: +02:00 until 01:00 UTC, +01:00 after.
  const int64_t change = kNoon; // any instant will do for the model
  LogZone zone;
  zone.learn_from_access_log(change - 7200, 7200);
  zone.learn_from_access_log(change - 60, 7200); // repeats are not change points
  zone.learn_from_access_log(change + 60, 3600);
  // Two hours before the change: local = utc + 2h.
  EXPECT_EQ(zone.to_epoch(change - 7200 + 7200), change - 7200);
  // Two hours after: local = utc + 1h.
  EXPECT_EQ(zone.to_epoch(change + 7200 + 3600), change + 7200);
  // Learnt out of order (replay reads whole files): the same answers.
  LogZone shuffled;
  shuffled.learn_from_capture(change + 60, 3600);
  shuffled.learn_from_capture(change - 7200, 7200);
  EXPECT_EQ(shuffled.to_epoch(change - 7200 + 7200), change - 7200);
  EXPECT_EQ(shuffled.to_epoch(change + 7200 + 3600), change + 7200);
}

TEST(AccessLog, TimeLocalGivesNginxsOffsetEvenWhenMsecGivesTheTime) {
  auto parser = nginx::AccessLogParser::compile("[$time_local] $msec $status");
  ASSERT_TRUE(parser);
  auto l = parser->parse("[30/Nov/2026:21:00:00 +0900] 1796040000.250 502");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->time_ms, kNoon * 1000 + 250);
  EXPECT_EQ(l->utc_offset_s, 9 * 3600);
  auto iso = nginx::AccessLogParser::compile("$time_iso8601 $status");
  ASSERT_TRUE(iso);
  EXPECT_EQ(iso->parse("2026-11-30T08:30:00-03:30 502")->utc_offset_s, -(3 * 3600 + 1800));
  auto msec_only = nginx::AccessLogParser::compile("$msec $status");
  EXPECT_FALSE(msec_only->parse("1796040000.250 502")->utc_offset_s);
}

TEST(HostSampleJson, CarriesTheHostsOffsetAndRefusesNonsense) {
  HostSample s;
  s.wall_ns = kNoon * 1000000000LL;
  s.utc_offset_s = -(3 * 3600 + 1800);
  auto back = host_sample_from_json(to_json(s));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->utc_offset_s, s.utc_offset_s);
  json old = to_json(s);
  old.erase("utc_offset_s"); // a capture from before the field: still a sample, zone unknown
  ASSERT_TRUE(host_sample_from_json(old));
  EXPECT_FALSE(host_sample_from_json(old)->utc_offset_s);
  for (json bad : {json(19 * 3600), json("+09:00"), json(1.5)}) {
    json j = to_json(s);
    j["utc_offset_s"] = bad;
    EXPECT_FALSE(host_sample_from_json(j)) << bad;
  }
}

// A recorded case, moved to a host nine hours east: its error.log rewritten in that zone, its
// capture's host samples saying so, and no access log to learn from. Replayed on a host in yet
// another zone, it must give the verdicts of the original replayed at home.
class MovedCase : public ::testing::Test {
protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "why502-zone-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir = tmpl;
  }
  void TearDown() override { fs::remove_all(dir); }

  static std::vector<std::string> verdicts(const pipeline::ReplayInput &in, pipeline::ReplayResult *out = nullptr) {
    auto r = pipeline::replay(in);
    std::vector<std::string> lines;
    for (const auto &v : r.verdicts)
      lines.push_back(base::json_line(to_json(v)));
    if (out)
      *out = r;
    return lines;
  }
  std::string dir;
};

std::string shift_error_log(const fs::path &from, int offset_s) {
  std::ifstream in(from);
  std::ostringstream out;
  for (std::string l; std::getline(in, l);) {
    std::tm tm{};
    if (nginx::parse_error_time(l, tm)) {
      time_t t = timegm(&tm) + offset_s;
      gmtime_r(&t, &tm);
      char buf[32];
      strftime(buf, sizeof(buf), "%Y/%m/%d %H:%M:%S", &tm);
      l.replace(0, 19, buf);
    }
    out << l << "\n";
  }
  return out.str();
}

std::string with_capture_offset(const fs::path &from, int offset_s) {
  std::ifstream in(from);
  std::ostringstream out;
  for (std::string l; std::getline(in, l);) {
    json j = json::parse(l, nullptr, false);
    if (!j.is_discarded() && j.value("type", "") == "host") {
      j["utc_offset_s"] = offset_s;
      l = base::json_line(j);
    }
    out << l << "\n";
  }
  return out.str();
}

TEST_F(MovedCase, ReplayOnAnotherHostReadsErrorTimesInTheCapturesZone) {
  const fs::path home = fs::path(WHY502_FIXTURES) / "correlate" / "AppScenario.NoListener";
  std::vector<std::string> at_home;
  {
    ZoneGuard tz("UTC");
    at_home = verdicts({(home / "capture.jsonl").string(), {(home / "error.log").string()}, {}, "", std::nullopt});
  }
  ASSERT_FALSE(at_home.empty());
  ASSERT_NE(json::parse(at_home[0]).value("cause", ""), cause::kUnknown);

  const std::string capture = dir + "/capture.jsonl", error_log = dir + "/error.log";
  std::ofstream(capture) << with_capture_offset(home / "capture.jsonl", 9 * 3600);
  std::ofstream(error_log) << shift_error_log(home / "error.log", 9 * 3600);
  for (const char *tz : {"UTC", "NST3:30"}) {
    ZoneGuard guard(tz);
    pipeline::ReplayResult r;
    EXPECT_EQ(verdicts({capture, {error_log}, {}, "", std::nullopt}, &r), at_home) << "TZ=" << tz;
    EXPECT_EQ(r.log_zone, LogZone::Source::capture);
    EXPECT_EQ(r.log_zone_text, "UTC+09:00 (from the capture)");
  }
  // An old capture (no offset) of the moved logs: this host's zone is assumed, and the operator's
  // --log-utc-offset puts it right.
  std::ofstream(capture) << std::ifstream(home / "capture.jsonl").rdbuf();
  ZoneGuard guard("UTC");
  pipeline::ReplayResult r;
  EXPECT_NE(verdicts({capture, {error_log}, {}, "", std::nullopt}, &r), at_home);
  EXPECT_EQ(r.log_zone, LogZone::Source::this_host);
  EXPECT_EQ(verdicts({capture, {error_log}, {}, "", 9 * 3600}, &r), at_home);
  EXPECT_EQ(r.log_zone, LogZone::Source::operator_given);
}

} // namespace
