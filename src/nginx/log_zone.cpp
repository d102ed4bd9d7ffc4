// Which UTC offset nginx's error.log times were written in (see LogZone in why502/nginx.h).
#include <ctime>
#include <iterator>

#include "base/time.h"
#include "why502/nginx.h"

namespace why502::nginx {

std::string_view to_string(LogZone::Source s) {
  switch (s) {
  case LogZone::Source::operator_given:
    return "given";
  case LogZone::Source::access_log:
    return "from the access log";
  case LogZone::Source::capture:
    return "from the capture";
  case LogZone::Source::this_host:
    return "this host's zone";
  }
  return "?";
}

void LogZone::set_operator_offset(int offset_s) { operator_offset_ = offset_s; }

void LogZone::learn(ChangePoints &points, std::int64_t epoch_s, int offset_s) {
  // Only changes are kept: a busy access log repeats one offset millions of times.
  if (points.empty()) {
    points.emplace(epoch_s, offset_s);
    return;
  }
  auto next = points.upper_bound(epoch_s);
  if (next == points.begin()) { // earlier than anything known (replay reads files out of order)
    if (next->second == offset_s)
      points.erase(next);
    points.emplace(epoch_s, offset_s);
    return;
  }
  if (std::prev(next)->second != offset_s)
    points.emplace(epoch_s, offset_s);
}

int LogZone::offset_at(const ChangePoints &points, std::int64_t epoch_s) {
  auto it = points.upper_bound(epoch_s);
  return it == points.begin() ? it->second : std::prev(it)->second;
}

LogZone::Source LogZone::source() const {
  if (operator_offset_)
    return Source::operator_given;
  if (!access_.empty())
    return Source::access_log;
  if (!capture_.empty())
    return Source::capture;
  return Source::this_host;
}

std::int64_t LogZone::to_epoch(std::int64_t local_seconds) const {
  const ChangePoints *points = nullptr;
  switch (source()) {
  case Source::operator_given:
    return local_seconds - *operator_offset_;
  case Source::access_log:
    points = &access_;
    break;
  case Source::capture:
    points = &capture_;
    break;
  case Source::this_host: {
    std::tm tm{};
    time_t t = static_cast<time_t>(local_seconds);
    gmtime_r(&t, &tm);
    tm.tm_isdst = -1;
    return static_cast<std::int64_t>(mktime(&tm));
  }
  }
  // Two steps: a guess with the first offset known, then the offset in force at that guess (which
  // differs only within hours of a DST change).
  std::int64_t guess = local_seconds - points->begin()->second;
  return local_seconds - offset_at(*points, guess);
}

std::string LogZone::describe() const {
  int offset = 0;
  switch (source()) {
  case Source::operator_given:
    offset = *operator_offset_;
    break;
  case Source::access_log:
    offset = access_.rbegin()->second;
    break;
  case Source::capture:
    offset = capture_.rbegin()->second;
    break;
  case Source::this_host:
    offset = base::local_utc_offset_s(base::wall_clock_ns() / 1000000000);
    break;
  }
  return "UTC" + base::format_utc_offset(offset) + " (" + std::string(to_string(source())) + ")";
}

} // namespace why502::nginx
