// `watch --metrics ADDR`: Prometheus metrics of what watch sees, through prometheus-cpp (Debian's
// prometheus-cpp-dev). Fed on watch's own thread (verdicts, kernel records, host samples, failed
// access lines, and the cumulative loss and log-line counters once a step); scraped from
// prometheus-cpp's HTTP thread, which only reads its atomic counters.
//
// Label values are bounded: at most kMaxLabelValues distinct values per label of a metric, then
// "other" (and why502_metric_label_values_folded_total counts what was folded); listeners on ports in
// the ephemeral range are not labels at all (a client socket of a test or a one-off tool would
// otherwise become a series that never goes away).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "why502/correlate.h"
#include "why502/host.h"
#include "why502/kernel_event.h"
#include "why502/tracer.h"

namespace prometheus {
class Registry;
class Exposer;
template <typename T> class Family;
class Counter;
class Gauge;
} // namespace prometheus

namespace why502::sinks {

inline constexpr const char *kDefaultMetricsAddress = "127.0.0.1:9502";
inline constexpr size_t kMaxLabelValues = 64;

// The cumulative counters watch keeps elsewhere, mirrored into counters once a step.
struct MetricsTotals {
  LossCounters losses;
  uint64_t error_lines_parsed = 0, error_lines_unparsed = 0;
  uint64_t access_lines_parsed = 0, access_lines_unparsed = 0;
  uint64_t log_lines_dropped = 0;           // over watch's pending cap (both logs)
  uint64_t error_lines_unconfigured = 0;    // naming an upstream the static config lacks
};

struct MetricsOptions {
  // Listeners whose port is in [first, last] are client-side ports, never labels
  // (/proc/sys/net/ipv4/ip_local_port_range of the host; its default here).
  std::pair<int, int> ephemeral_ports{32768, 60999};
  size_t max_label_values = kMaxLabelValues;
};

class Metrics {
public:
  explicit Metrics(MetricsOptions opts = {});
  ~Metrics();
  Metrics(const Metrics &) = delete;
  Metrics &operator=(const Metrics &) = delete;

  // Serves GET /metrics on ADDR ("127.0.0.1:9502", "[::1]:9502", ":9502" for every address).
  // Throws Error with one line when it cannot listen there.
  void serve(const std::string &address);

  void verdict(const Verdict &v);
  void kernel_record(const KernelEvent &ev);
  void failed_request(int status); // an access line with a 5xx status
  void host_sample(const HostSample &s);
  void totals(const MetricsTotals &t);
  void output_line_lost(); // a verdict line -o (or stdout) could not take

  // The exposition text a scrape would get (tests; and `watch` never needs it).
  std::string text() const;

  // The host's ephemeral port range, or the default when it cannot be read.
  static std::pair<int, int> host_ephemeral_ports();

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace why502::sinks
