#include "sinks/report.h"

#include "base/time.h"
#include "base/text.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace why502::sinks {

using base::escape_terminal;
using nlohmann::json;

namespace {

// "17:02:01.123" in local time: what an operator compares with nginx's log.
std::string clock_time(int64_t wall_ns) {
  time_t secs = wall_ns / 1000000000;
  struct tm tm;
  localtime_r(&secs, &tm);
  char buf[32];
  snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%03lld", tm.tm_hour, tm.tm_min, tm.tm_sec,
           static_cast<long long>((wall_ns / 1000000) % 1000));
  return buf;
}

std::string evidence_line(const json &e) {
  std::string line;
  if (e.contains("time") && e["time"].is_string())
    if (auto t = base::parse_wall_time(e["time"].get<std::string>()))
      line += clock_time(*t) + "  ";
  line += escape_terminal(e.value("event", std::string("?")));
  // Fields a reader needs; the line's header, step times and join keys stay in the JSON.
  static const char *header[] = {"time", "event", "boot_ns", "cpu", "host", "type", "kernel"};
  for (auto it = e.begin(); it != e.end(); ++it) {
    bool skipped = is_hidden_detail(it.key());
    for (const char *s : header)
      skipped |= it.key() == s;
    if (skipped || (it->is_string() && it->get<std::string>().empty()))
      continue;
    // Values come from the kernel (comms, unix paths) and from logs: shown, never obeyed.
    line += " " + escape_terminal(it.key()) + "=" +
            escape_terminal(it->is_string() ? it->get<std::string>() : base::json_line(*it));
  }
  return line;
}

} // namespace

std::string text_report(const Verdict &v) {
  // Every string field can hold client or local-user bytes (a Referer, a process name): each is
  // escaped on its own, so the only control character this report writes is its own '\n'.
  std::string out = clock_time(v.wall_ns) + "  " + (v.status ? std::to_string(*v.status) : std::string("---")) +
                    "  " + (v.upstream.empty() ? "?" : escape_terminal(v.upstream)) + "  worker " +
                    std::to_string(v.nginx_pid) + "  " + escape_terminal(v.cause) + "\n";
  out += "  " + escape_terminal(v.summary) + "\n";
  if (v.count > 1)
    out += "  (" + std::to_string(v.count) + " failed requests this second; this one's evidence below)\n";
  if (v.attempts > 1)
    out += "  (" + std::to_string(v.attempts) + " failed attempts for this request)\n";
  if (v.nginx_error)
    out += "  nginx: " + escape_terminal(*v.nginx_error) + "\n";
  if (!v.related.empty()) {
    out += "  after verdicts:";
    for (auto id : v.related)
      out += " #" + std::to_string(id);
    out += "\n";
  }
  for (const auto &e : v.evidence)
    out += "    " + evidence_line(to_json(e)) + "\n";
  return out;
}

std::string summary_table(const CorrelatorStats &stats) {
  std::string out;
  char buf[512];
  snprintf(buf, sizeof(buf), "\n%-28s %-40s %8s\n", "cause", "upstream", "failures");
  out += buf;
  for (const auto &[key, n] : stats.by_cause_upstream) {
    // Names are escaped and appended whole: a fixed buffer could cut a UTF-8 sequence in two.
    std::string cause = escape_terminal(key.first), upstream = escape_terminal(key.second);
    if (upstream.empty())
      upstream = "-";
    cause.resize(std::max<size_t>(cause.size(), 28), ' ');
    upstream.resize(std::max<size_t>(upstream.size(), 40), ' ');
    snprintf(buf, sizeof(buf), " %8llu\n", static_cast<unsigned long long>(n));
    out += cause + " " + upstream + buf;
  }
  snprintf(buf, sizeof(buf), "%-28s %-40s %8llu\n", "total", "", static_cast<unsigned long long>(stats.verdicts));
  out += buf;
  if (stats.recovered_requests)
    out += std::to_string(stats.recovered_requests) + " failed attempt(s) were retried successfully by nginx\n";
  if (stats.ownership_evicted)
    out += std::to_string(stats.ownership_evicted) + " listener ownership record(s) dropped by the history cap\n";
  return out;
}

json summary_json(const CorrelatorStats &stats) {
  json by = json::array();
  for (const auto &[key, n] : stats.by_cause_upstream)
    by.push_back({{"cause", key.first}, {"upstream", key.second}, {"failures", n}});
  return {{"type", "summary"},
          {"verdicts", stats.verdicts},
          {"by_cause", stats.by_cause},
          {"by_cause_upstream", by},
          {"kernel_failures", stats.kernel_failures},
          {"kernel_failures_unmatched", stats.kernel_failures_unmatched},
          {"error_lines", stats.error_lines},
          {"recovered_requests", stats.recovered_requests},
          {"ownership_evicted", stats.ownership_evicted}};
}

} // namespace why502::sinks
