// Helpers shared by the nginx unit tests.
#pragma once

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace why502::nginx::test {

inline std::string fixture_path(const std::string &name) {
  return std::string(WHY502_FIXTURES) + "/nginx/" + name;
}

inline std::string read_fixture(const std::string &name) {
  std::ifstream f(fixture_path(name), std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<std::string> fixture_lines(const std::string &name) {
  std::vector<std::string> out;
  std::istringstream in(read_fixture(name));
  std::string l;
  while (std::getline(in, l))
    out.push_back(l);
  return out;
}

// The fixtures were produced on a UTC host; error.log times are local time.
inline void use_utc() {
  setenv("TZ", "UTC", 1);
  tzset();
}

} // namespace why502::nginx::test
