// libFuzzer target: one access.log line against a few formats (combined, upstream timings with
// adjacent variables, escape=json, escape=none). The first input byte picks the format, so the
// fuzzer can also mutate the format string itself (byte 4+: "format\nline").
#include "why502/nginx.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "base/text.h"

using namespace why502::nginx;

namespace {
// Every value the parser returns is valid UTF-8 (issue 8): abort otherwise, so libFuzzer reports it.
void check(const std::optional<AccessLogLine> &l) {
  if (!l)
    return;
  for (const auto &[name, v] : l->vars)
    if (!why502::base::is_valid_utf8(v)) {
      fprintf(stderr, "INVARIANT VIOLATED: $%s is not valid UTF-8\n", name.c_str());
      abort();
    }
}

// scan_status (watch's cheap look at every line) takes exactly the lines parse() takes, with the
// same $status: otherwise a 502 could be skipped unparsed.
void check_scan_agrees(const AccessLogParser &p, std::string_view line) {
  ParseStats st;
  auto full = p.parse(line, st);
  check(full);
  auto scan = p.scan_status(line);
  if (scan.matched != full.has_value() || (full && scan.status != full->status)) {
    fprintf(stderr, "INVARIANT VIOLATED: scan_status disagrees with parse()\n");
    abort();
  }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  if (size < 1)
    return 0;
  static const AccessLogParser kParsers[] = {
      AccessLogParser::combined(),
      *AccessLogParser::compile("$remote_addr [$time_local] \"$request\" $status rt=$request_time "
                                "pid=$pid msec=$msec ua=\"$upstream_addr\" us=\"$upstream_status\" "
                                "uct=\"$upstream_connect_time\" urt=\"$upstream_response_time\"$a$b"),
      *AccessLogParser::compile(R"({"time":"$time_iso8601","msec":"$msec","request":"$request",)"
                                R"("status":"$status","upstream_addr":"$upstream_addr"})",
                                Escape::json),
      *AccessLogParser::compile("\"$request\" $status \"$http_user_agent\" ${host}x", Escape::none),
  };
  std::string_view s(reinterpret_cast<const char *>(data) + 1, size - 1);
  unsigned pick = data[0] % 5;
  if (pick < 4) {
    check_scan_agrees(kParsers[pick], s);
  } else {
    auto nl = s.find('\n');
    if (nl == std::string_view::npos)
      return 0;
    auto p = AccessLogParser::compile(s.substr(0, nl), static_cast<Escape>(data[0] % 3));
    if (p.ok())
      check_scan_agrees(*p, s.substr(nl + 1));
  }
  return 0;
}
