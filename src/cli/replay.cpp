// Offline replay of a capture and nginx logs through the correlator.
#include <algorithm>
#include <fstream>
#include <variant>

#include <nlohmann/json.hpp>

#include "cli/replay.h"
#include "why502/correlate.h"
#include "why502/error.h"
#include "why502/host.h"
#include "why502/nginx.h"

namespace why502::cli {

namespace {

struct Input {
  int64_t wall_ns;
  int order; // samples before kernel records before log lines at the same instant
  std::variant<KernelEvent, HostSample, nginx::ErrorLogLine, nginx::AccessLogLine> item;
};

std::ifstream open_or_throw(const std::string &path, const char *what) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw Error(std::string("cannot read ") + what + " " + path);
  return f;
}

} // namespace

ReplayResult replay(const ReplayInput &opts) {
  ReplayResult result;
  std::vector<Input> inputs;
  {
    auto f = open_or_throw(opts.capture, "capture");
    std::string line;
    size_t n = 0;
    while (std::getline(f, line)) {
      ++n;
      if (line.empty())
        continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        if (n == 1)
          throw Error(opts.capture + " is not a why502 capture (line 1 is not JSON)");
        ++result.bad_capture_lines;
        continue;
      }
      std::string type = j.value("type", "");
      std::string err;
      if (type == "event") {
        if (auto ev = event_from_json(j, &err))
          inputs.push_back({ev->wall_ns, 1, *ev});
        else
          ++result.bad_capture_lines;
      } else if (type == "host") {
        if (auto s = host_sample_from_json(j, &err))
          inputs.push_back({s->wall_ns, 0, *s});
        else
          ++result.bad_capture_lines;
      }
    }
  }
  nginx::ParseStats error_stats, access_stats;
  for (const auto &path : opts.error_logs) {
    auto f = open_or_throw(path, "error log");
    std::string line;
    while (std::getline(f, line))
      if (auto l = nginx::parse_error_line(line, error_stats))
        inputs.push_back({l->epoch * 1000000000LL, 2, *l});
  }
  auto parser = nginx::AccessLogParser::combined();
  if (!opts.access_format.empty()) {
    auto compiled = nginx::AccessLogParser::compile(opts.access_format);
    if (!compiled)
      throw Error("bad access log format: " + compiled.error());
    parser = *compiled;
  }
  for (const auto &path : opts.access_logs) {
    auto f = open_or_throw(path, "access log");
    std::string line;
    while (std::getline(f, line))
      if (auto l = parser.parse(line, access_stats)) {
        int64_t when = l->time_ms ? *l->time_ms * 1000000 : l->time ? int64_t(*l->time * 1e9) : 0;
        inputs.push_back({when, 3, *l});
      }
  }
  std::stable_sort(inputs.begin(), inputs.end(), [](const Input &a, const Input &b) {
    return a.wall_ns != b.wall_ns ? a.wall_ns < b.wall_ns : a.order < b.order;
  });

  CorrelatorOptions copts;
  copts.error_log_available = !opts.error_logs.empty();
  copts.access_log_available = !opts.access_logs.empty();
  Correlator correlator(copts);
  auto keep = [&](std::vector<Verdict> v) {
    for (auto &x : v)
      result.verdicts.push_back(std::move(x));
  };
  // Replay in time order, letting the correlator settle as the live one would.
  for (const auto &in : inputs) {
    if (const auto *k = std::get_if<KernelEvent>(&in.item))
      correlator.add_kernel(*k);
    else if (const auto *s = std::get_if<HostSample>(&in.item))
      correlator.add_host_sample(*s);
    else if (const auto *e = std::get_if<nginx::ErrorLogLine>(&in.item))
      correlator.add_error_line(*e, in.wall_ns);
    else
      correlator.add_access_line(std::get<nginx::AccessLogLine>(in.item), in.wall_ns);
    keep(correlator.advance(in.wall_ns));
  }
  keep(correlator.finish());
  result.stats = correlator.stats();
  result.unparsed_error_lines = error_stats.unparsed;
  result.unparsed_access_lines = access_stats.unparsed;
  return result;
}

} // namespace why502::cli
