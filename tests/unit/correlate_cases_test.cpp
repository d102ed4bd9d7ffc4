// Data-driven correlation: every directory of tests/fixtures/correlate/ is a case (a capture, nginx's
// two logs, the access log's format, and the verdict lines `analyze` must write for them, byte for
// byte). Cases come from real runs: a scenario with WHY502_SAVE_CASES=DIR writes one per passing
// test (tests/fixtures/correlate/README.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "base/text.h"
#include "pipeline/replay.h"
#include "why502/correlate.h"

using namespace why502;
namespace fs = std::filesystem;

namespace {

const fs::path kCases = fs::path(WHY502_FIXTURES) / "correlate";
const char *const kFiles[] = {"capture.jsonl", "error.log", "access.log", "access_format", "expected.jsonl", "README.md"};

std::vector<std::string> case_names() {
  std::vector<std::string> out;
  for (const auto &d : fs::directory_iterator(kCases))
    if (d.is_directory())
      out.push_back(d.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> lines_of(const fs::path &p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

std::vector<std::string> verdict_lines(const fs::path &dir) {
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

class CorrelateCase : public ::testing::TestWithParam<std::string> {};

} // namespace

TEST_P(CorrelateCase, AnalyzeWritesTheExpectedVerdictsByteForByte) {
  const fs::path dir = kCases / GetParam();
  for (const char *f : kFiles)
    ASSERT_TRUE(fs::exists(dir / f)) << dir / f << " is missing";
  const auto expected = lines_of(dir / "expected.jsonl");
  const auto got = verdict_lines(dir);
  ASSERT_FALSE(expected.empty());
  for (size_t i = 0; i < std::max(expected.size(), got.size()); ++i) {
    const std::string e = i < expected.size() ? expected[i] : "(no line)";
    const std::string g = i < got.size() ? got[i] : "(no line)";
    EXPECT_EQ(g, e) << "verdict line " << i + 1 << " of " << GetParam();
  }
  // Not a case of nothing known: at least one verdict names a cause.
  EXPECT_TRUE(std::any_of(expected.begin(), expected.end(),
                          [](const std::string &l) { return l.find("\"cause\":\"unknown\"") == std::string::npos; }));
  // And the same twice: nothing depends on the clock or the host.
  EXPECT_EQ(verdict_lines(dir), got);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CorrelateCase, ::testing::ValuesIn(case_names()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                           std::string n = info.param;
                           for (char &c : n)
                             if (!isalnum(static_cast<unsigned char>(c)))
                               c = '_';
                           return n;
                         });

// One case at least per cause code, except those listed here with the reason.
TEST(CorrelateCases, EveryCauseCodeHasACase) {
  const std::map<std::string, std::string> without = {
      {cause::kUnknown, "a case of not knowing proves nothing by itself"},
  };
  std::set<std::string> covered;
  for (const auto &name : case_names())
    for (const auto &l : lines_of(kCases / name / "expected.jsonl"))
      covered.insert(nlohmann::json::parse(l).value("cause", ""));
  for (const char *c : cause::kAll) {
    if (without.count(c))
      continue;
    EXPECT_TRUE(covered.count(c)) << "no case in tests/fixtures/correlate has a " << c << " verdict";
  }
}
