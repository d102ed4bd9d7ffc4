#include "base/time.h"

#include <ctime>

namespace why502::base {

namespace {
int64_t read_clock(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
} // namespace

int64_t wall_clock_ns() { return read_clock(CLOCK_REALTIME); }
int64_t boot_clock_ns() { return read_clock(CLOCK_BOOTTIME); }

std::string format_wall_time(int64_t wall_ns) {
  time_t secs = wall_ns / 1000000000;
  long micros = (wall_ns % 1000000000) / 1000;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof(buf) - n, ".%06ldZ", micros);
  return buf;
}

std::optional<int64_t> parse_wall_time(std::string_view iso) {
  struct tm tm = {};
  std::string s(iso);
  const char *rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest)
    return std::nullopt;
  int64_t ns = int64_t(timegm(&tm)) * 1000000000;
  if (*rest == '.') {
    ++rest;
    int64_t scale = 100000000;
    while (*rest >= '0' && *rest <= '9') {
      ns += (*rest - '0') * scale;
      scale /= 10;
      ++rest;
    }
  }
  if (*rest != 'Z' && *rest != 0)
    return std::nullopt;
  return ns;
}

} // namespace why502::base
