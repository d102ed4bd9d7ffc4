// Reading Prometheus text exposition in tests (unit: the sink; scenarios: a real scrape).
#pragma once

#include <optional>
#include <sstream>
#include <string>

namespace why502::test {

// The value of the series whose name and labels are exactly `series` (as prometheus-cpp writes
// them: labels sorted by name), or nullopt when no line has it.
inline std::optional<double> series_value(const std::string &text, const std::string &series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  return std::nullopt;
}

} // namespace why502::test
