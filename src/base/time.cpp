#include "base/time.h"

#include <cstdio>
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

int local_utc_offset_s(int64_t wall_s) {
  time_t t = static_cast<time_t>(wall_s);
  struct tm tm {};
  if (!localtime_r(&t, &tm))
    return 0;
  return static_cast<int>(tm.tm_gmtoff);
}

std::string format_utc_offset(int offset_s) {
  int a = offset_s < 0 ? -offset_s : offset_s;
  char buf[16];
  snprintf(buf, sizeof(buf), "%c%02d:%02d", offset_s < 0 ? '-' : '+', a / 3600, a / 60 % 60);
  return buf;
}

std::optional<int> parse_utc_offset(std::string_view text) {
  if (text == "Z" || text == "UTC")
    return 0;
  if (text.size() != 5 && text.size() != 6)
    return std::nullopt;
  if (text[0] != '+' && text[0] != '-')
    return std::nullopt;
  std::string_view hh = text.substr(1, 2), mm = text.substr(text.size() == 6 ? 4 : 3, 2);
  if (text.size() == 6 && text[3] != ':')
    return std::nullopt;
  auto digit2 = [](std::string_view d) -> int {
    if (d.size() != 2 || d[0] < '0' || d[0] > '9' || d[1] < '0' || d[1] > '9')
      return -1;
    return (d[0] - '0') * 10 + (d[1] - '0');
  };
  int h = digit2(hh), m = digit2(mm);
  if (h < 0 || m < 0 || h > 18 || m > 59 || (h == 18 && m != 0))
    return std::nullopt;
  int s = h * 3600 + m * 60;
  return text[0] == '-' ? -s : s;
}

} // namespace why502::base
