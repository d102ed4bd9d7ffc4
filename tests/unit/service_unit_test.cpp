// deploy/why502.service (issue 8, "Install and service"): systemd's own exposure score stays at 4.0
// or less, the unit only orders itself after nginx (never starts it), and its capability lines are
// exactly the set why502 keeps after attaching (src/base/privileges.cpp), so the two cannot drift.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "base/privileges.h"

namespace {

const std::string kUnit = std::string(WHY502_SOURCE_DIR) + "/deploy/why502.service";

std::string run(const std::string &cmd) {
  std::string out;
  FILE *p = popen(cmd.c_str(), "r");
  if (!p)
    return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
    out.append(buf, n);
  pclose(p);
  return out;
}

// Every "Key=value" line of the unit (comments and section headers left out), in order.
std::vector<std::pair<std::string, std::string>> unit_settings() {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream f(kUnit);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#' || line[0] == ';' || line[0] == '[')
      continue;
    auto eq = line.find('=');
    if (eq != std::string::npos)
      out.emplace_back(line.substr(0, eq), line.substr(eq + 1));
  }
  return out;
}

std::set<std::string> words(const std::string &s) {
  std::set<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w)
    out.insert(w);
  return out;
}

} // namespace

TEST(ServiceUnit, SystemdAnalyzeScoresItAtMost4) {
  ASSERT_FALSE(unit_settings().empty()) << "cannot read " << kUnit;
  std::string out = run("systemd-analyze security --offline=true --no-pager '" + kUnit + "' 2>&1");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(Overall exposure level for why502\.service: ([0-9]+\.[0-9]+))")))
      << "no score from systemd-analyze (installed by deploy/setup-tests.sh):\n" << out;
  double score = std::stod(m[1]);
  EXPECT_LE(score, 4.0) << out;
  EXPECT_GT(score, 0.0) << out;
}

TEST(ServiceUnit, OrdersAfterNginxButNeverStartsIt) {
  bool after = false;
  for (const auto &[key, value] : unit_settings()) {
    if (key == "After" && words(value).count("nginx.service"))
      after = true;
    for (const char *pulls : {"Wants", "Requires", "Requisite", "BindsTo", "PartOf", "Upholds"})
      EXPECT_FALSE(key == pulls && value.find("nginx") != std::string::npos) << key << "=" << value;
  }
  EXPECT_TRUE(after) << "After=nginx.service missing";
}

TEST(ServiceUnit, CapabilitiesAreWhatWhy502KeepsAndTheSandboxIsOn) {
  const std::set<std::string> kept = words(why502::cap_names(why502::runtime_capabilities()));
  ASSERT_EQ(kept.size(), 4u);
  std::map<std::string, std::string> last;
  for (const auto &[key, value] : unit_settings())
    last[key] = value;
  EXPECT_EQ(words(last["CapabilityBoundingSet"]), kept);
  EXPECT_EQ(words(last["AmbientCapabilities"]), kept);
  EXPECT_EQ(last["NoNewPrivileges"], "yes");
  EXPECT_EQ(last["ProtectSystem"], "strict");
  EXPECT_EQ(last["ProtectHome"], "yes");
  EXPECT_EQ(last["PrivateTmp"], "yes");
  EXPECT_EQ(last["UMask"], "0077");
  EXPECT_EQ(last["LogsDirectory"], "why502");
  EXPECT_NE(last["ExecStart"].find("-o /var/log/why502/"), std::string::npos) << "writes outside LogsDirectory";
}
