// Data-driven correlation: every directory of tests/fixtures/correlate/ is a case (a capture, nginx's
// two logs, the access log's format, and the verdict lines `analyze` must write for them, byte for
// byte). Cases come from real runs: a scenario with WHY502_SAVE_CASES=DIR writes one per passing
// test (tests/fixtures/correlate/README.md).
#include <gtest/gtest.h>

#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "base/text.h"
#include "pipeline/replay.h"
#include "why502/correlate.h"

using namespace why502;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const fs::path kCases = fs::path(WHY502_FIXTURES) / "correlate";
const char *const kFiles[] = {"capture.jsonl", "error.log", "access.log", "access_format", "expected.jsonl", "README.md"};

// nginx writes error.log times in its local zone with no offset. The cases were recorded on a UTC
// host; replay must learn that zone from the inputs (the access log's $time_local, the capture's host
// samples) and not take the replaying process's. So each case is replayed under three zones: UTC, and
// two POSIX TZ strings (no tzdata needed) east and west of it, one with a half-hour offset.
const char *const kReplayZones[] = {"UTC", "JST-9", "NST3:30"};

void use_zone(const char *tz) {
  setenv("TZ", tz, 1);
  tzset();
}

std::vector<std::string> case_names() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto &d : fs::directory_iterator(kCases, ec))
    if (d.is_directory())
      out.push_back(d.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// The instance name: the directory name with everything outside [A-Za-z0-9_] made '_'.
std::string test_name_of(std::string dir) {
  for (char &c : dir)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_')
      c = '_';
  return dir;
}

std::vector<std::string> lines_of(const fs::path &p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

std::vector<std::string> verdict_lines(const fs::path &dir, const char *tz = "UTC") {
  use_zone(tz);
  auto format = lines_of(dir / "access_format");
  auto r = pipeline::replay({(dir / "capture.jsonl").string(),
                             {(dir / "error.log").string()},
                             {(dir / "access.log").string()},
                             format.empty() ? "" : format.front()});
  std::vector<std::string> out;
  for (const auto &v : r.verdicts)
    out.push_back(base::json_line(to_json(v))); // as analyze and watch write it
  return out;
}

std::string shorten(const std::string &s, size_t max = 200) {
  return s.size() <= max ? s : s.substr(0, max) + "...";
}

// Where two verdicts differ, as JSON pointers with both values ("/evidence/0/time: ...").
void json_differences(const json &want, const json &got, const std::string &path, std::vector<std::string> &out) {
  if (out.size() >= 8)
    return;
  if (want.is_object() && got.is_object()) {
    std::set<std::string> keys;
    for (auto it = want.begin(); it != want.end(); ++it)
      keys.insert(it.key());
    for (auto it = got.begin(); it != got.end(); ++it)
      keys.insert(it.key());
    for (const auto &k : keys)
      json_differences(want.contains(k) ? want[k] : json(), got.contains(k) ? got[k] : json(), path + "/" + k, out);
  } else if (want.is_array() && got.is_array()) {
    for (size_t i = 0; i < std::max(want.size(), got.size()); ++i)
      json_differences(i < want.size() ? want[i] : json(), i < got.size() ? got[i] : json(),
                       path + "/" + std::to_string(i), out);
  } else if (want != got) {
    out.push_back(path + ": expected " + shorten(want.is_null() ? "(absent)" : want.dump()) + ", got " +
                  shorten(got.is_null() ? "(absent)" : got.dump()));
  }
}

// A readable account of where `got` departs from `want`: line numbers, the fields that differ, and
// both lines; at most a few lines in full (an accuracy case has a hundred verdicts).
std::string line_diff(const std::vector<std::string> &want, const std::vector<std::string> &got) {
  std::ostringstream s;
  size_t differing = 0, shown = 0;
  for (size_t i = 0; i < std::max(want.size(), got.size()); ++i) {
    const bool has_want = i < want.size(), has_got = i < got.size();
    if (has_want && has_got && want[i] == got[i])
      continue;
    ++differing;
    if (shown++ >= 5)
      continue;
    s << "line " << i + 1 << ":\n";
    if (has_want && has_got) {
      json w = json::parse(want[i], nullptr, false), g = json::parse(got[i], nullptr, false);
      std::vector<std::string> fields;
      if (!w.is_discarded() && !g.is_discarded())
        json_differences(w, g, "", fields);
      for (const auto &f : fields)
        s << "  " << f << "\n";
    }
    s << "  expected: " << (has_want ? want[i] : "(no line)") << "\n";
    s << "  got:      " << (has_got ? got[i] : "(no line)") << "\n";
  }
  if (differing == 0)
    return "";
  s << differing << " of " << std::max(want.size(), got.size()) << " line(s) differ (expected " << want.size()
    << " verdicts, got " << got.size() << ")";
  if (shown > 5)
    s << "; the first 5 are shown";
  s << ".\nIf the change is intended, rewrite expected.jsonl with `why502 analyze --json` on the case "
       "(tests/fixtures/correlate/README.md) and review the diff.\n";
  return s.str();
}

class CorrelateCase : public ::testing::TestWithParam<std::string> {};

} // namespace

TEST_P(CorrelateCase, HasEveryFile) {
  const fs::path dir = kCases / GetParam();
  for (const char *f : kFiles) {
    EXPECT_TRUE(fs::is_regular_file(dir / f)) << dir / f << " is missing";
    EXPECT_GT(fs::exists(dir / f) ? fs::file_size(dir / f) : 0, 0u) << dir / f << " is empty";
  }
  EXPECT_EQ(lines_of(dir / "access_format").size(), 1u) << "access_format is one log_format string on one line";
}

TEST_P(CorrelateCase, AnalyzeWritesTheExpectedVerdictsByteForByte) {
  const fs::path dir = kCases / GetParam();
  for (const char *f : kFiles)
    ASSERT_TRUE(fs::exists(dir / f)) << dir / f << " is missing";
  const auto expected = lines_of(dir / "expected.jsonl");
  ASSERT_FALSE(expected.empty()) << "a case without verdicts proves nothing";
  const auto got = verdict_lines(dir);
  const std::string diff = line_diff(expected, got);
  EXPECT_TRUE(diff.empty()) << GetParam() << ": analyze's verdicts are not expected.jsonl\n" << diff;
  // Not a case of nothing known: at least one verdict names a cause.
  EXPECT_TRUE(std::any_of(expected.begin(), expected.end(), [](const std::string &l) {
    return json::parse(l, nullptr, false).value("cause", cause::kUnknown) != std::string(cause::kUnknown);
  })) << "every verdict of " << GetParam() << " is unknown";
  // And the same again in one process under other zones: no state left over, nothing read from the
  // clock or the host's zone.
  for (const char *tz : kReplayZones)
    EXPECT_EQ(verdict_lines(dir, tz), got) << "a replay of " << GetParam() << " under TZ=" << tz
                                           << " differs from the first";
  use_zone("UTC");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CorrelateCase, ::testing::ValuesIn(case_names()),
                         [](const ::testing::TestParamInfo<std::string> &info) { return test_name_of(info.param); });

TEST(CorrelateCases, ThereAreCasesAndTheirNamesAreDistinctTests) {
  const auto names = case_names();
  ASSERT_FALSE(names.empty()) << "no case directories under " << kCases;
  std::set<std::string> tests;
  for (const auto &n : names)
    EXPECT_TRUE(tests.insert(test_name_of(n)).second) << n << " gives the same test name as another case";
}

// The causes no case shows yet, each with why. Keep it short: a new scenario that records a case
// removes its cause from here (the test below says so).
const std::map<std::string, std::string> kCausesWithoutACase = {
    {cause::kUnknown, "a case of not knowing proves nothing by itself (and each case must name a cause)"},
};

TEST(CorrelateCases, EveryCauseCodeHasACase) {
  std::set<std::string> covered;
  for (const auto &name : case_names())
    for (const auto &l : lines_of(kCases / name / "expected.jsonl"))
      covered.insert(json::parse(l, nullptr, false).value("cause", ""));
  const std::set<std::string> all(std::begin(cause::kAll), std::end(cause::kAll));
  for (const auto &c : all) {
    if (kCausesWithoutACase.count(c))
      continue;
    EXPECT_TRUE(covered.count(c)) << "no case in tests/fixtures/correlate has a " << c
                                  << " verdict: record one (WHY502_SAVE_CASES) or list it in kCausesWithoutACase";
  }
  for (const auto &[c, why] : kCausesWithoutACase) {
    EXPECT_TRUE(all.count(c)) << c << " is listed without a case but is no cause code";
    EXPECT_FALSE(covered.count(c)) << c << " has a case now: remove it from kCausesWithoutACase (" << why << ")";
  }
  for (const auto &c : covered)
    EXPECT_TRUE(all.count(c)) << "a case's expected.jsonl has the cause " << c << ", which is no cause code";
}
