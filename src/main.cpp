// why502: thin main over libwhy502. Parses options, calls one subcommand, and
// turns every unrecoverable error into one line on stderr and a non-zero exit.
#include <malloc.h>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "base/time.h"
#include "cli/commands.h"
#include "why502/error.h"

namespace {

// Every number on the command line is checked on its text before CLI11 converts it: CLI11's own
// PositiveNumber lets `nan` and `inf` through (a --duration that never ends), and an unsigned
// option would take "-5" as a huge number.
CLI::Validator seconds_in(double max_s) {
  return CLI::Validator(
      [max_s](std::string &v) -> std::string {
        errno = 0;
        char *end = nullptr;
        double d = std::strtod(v.c_str(), &end);
        if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE || !std::isfinite(d))
          return "'" + v + "' is not a number of seconds";
        if (!(d > 0) || d > max_s)
          return "'" + v + "' is out of range: more than 0 and at most " + std::to_string(int64_t(max_s)) + " seconds";
        return "";
      },
      "SECONDS");
}

CLI::Validator integer_in(long long lo, long long hi, const char *what) {
  return CLI::Validator(
      [lo, hi, what](std::string &v) -> std::string {
        errno = 0;
        char *end = nullptr;
        long long n = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE)
          return "'" + v + "' is not " + what;
        if (n < lo || n > hi)
          return "'" + v + "' is out of range: " + what + " from " + std::to_string(lo) + " to " + std::to_string(hi);
        return "";
      },
      what);
}

constexpr double kMaxDurationS = 366.0 * 24 * 3600; // a year: longer is a typo, not a plan
constexpr long long kPidMax = 4194304;               // the kernel's PID_MAX_LIMIT (64-bit)
constexpr long long kMaxTraceBytes = 1LL << 50;      // 1 PiB

} // namespace

int main(int argc, char **argv) {
  using namespace why502;
  // A few threads (ring-buffer reader, log tailers, host sampler) allocate in a storm; glibc would
  // give each its own arena, whose freed pages stay resident. Two arenas keep the peak near what the
  // correlator really holds (the storm scenario bounds the whole process's VmHWM).
  mallopt(M_ARENA_MAX, 2);
  CLI::App app{"why502: names the kernel-level root cause of each failed nginx upstream attempt (502/504)"};
  // One line per mistake (CLI11's default adds a second, "Run with --help ..."); exit codes stay
  // CLI11's (105 for a value that fails its check, 106 for one it cannot convert).
  app.failure_message([](const CLI::App *, const CLI::Error &e) {
    return std::string("why502: ") + e.what() + " (see --help)\n";
  });
  app.set_version_flag("--version", std::string("why502 ") + WHY502_VERSION);
  const auto kSeconds = seconds_in(kMaxDurationS);
  const auto kPid = integer_in(1, kPidMax, "a process id");
  app.require_subcommand(0, 1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "debug logging, including libbpf's verifier output");

  cli::EventsOptions events;
  auto *events_cmd = app.add_subcommand("events", "stream decoded kernel records as JSON lines (capture format)");
  events_cmd->add_flag("--json", events.json, "one JSON object per line (the only format)");
  events_cmd->add_option("--pid", events.pids, "watch this process and its children (repeatable)")->check(kPid);
  events_cmd->add_option("--comm", events.comms, "watch processes with this name (repeatable; default nginx)");
  events_cmd->add_option("--duration", events.duration_s, "stop after SECONDS")->check(kSeconds);
  events_cmd->add_option("-o,--output", events.output, "append to FILE instead of stdout (created 0600)");
  events_cmd->add_option("--group", events.group, "make the output file 0640 and of group NAME");

  cli::DoctorOptions doctor;
  auto *doctor_cmd = app.add_subcommand("doctor", "check what this host supports, in plain words");
  doctor_cmd->add_flag("--json", doctor.json, "print the checks as one JSON object");

  cli::WatchCommandOptions watch;
  auto *watch_cmd = app.add_subcommand("watch", "report the root cause of each failed upstream request (default)");
  auto add_watch_options = [&](CLI::App *cmd) {
    cmd->add_flag("--json", watch.json, "one JSON object per line (type verdict, start, summary, stats)");
    cmd->add_option("-o,--output", watch.output,
                    "append to FILE instead of stdout (created 0600; SIGHUP reopens it after a rotation)");
    cmd->add_option("--duration", watch.duration_s, "stop after SECONDS")->check(kSeconds);
    cmd->add_option("--nginx-pid", watch.nginx_pid, "the nginx master (or a worker) to watch")->check(kPid);
    cmd->add_option("--group", watch.group, "make the -o, --capture and --perfetto files 0640 and of group NAME");
    cmd->add_option("--error-log", watch.error_logs, "follow this error log instead of the configured ones");
    cmd->add_option("--access-log", watch.access_logs, "follow this access log instead of the configured ones");
    cmd->add_option("--capture", watch.capture, "also append the raw kernel records and host samples to FILE");
    cmd->add_option("--syscall-probes", watch.syscall_probes,
                    "on-demand (default: attach connect()/socket() probes when nginx first reports such a "
                    "failure; they slow every syscall on the host) or always")
        ->check(CLI::IsMember({"on-demand", "always"}));
    cmd->add_option("--perfetto", watch.perfetto, "also write a Perfetto trace (ui.perfetto.dev) to FILE");
    cmd->add_option("--metrics", watch.metrics,
                    "serve Prometheus metrics at ADDR/metrics (default 127.0.0.1:9502 when ADDR is left out)")
        ->expected(0, 1);
    cmd->add_option("--rotate-size", watch.rotate_size,
                    "with -o: past SIZE bytes (K, M, G suffixes) rename FILE to FILE.1 and start a new one")
        ->transform(CLI::AsSizeValue(false))
        ->check(CLI::Range(uint64_t(4096), uint64_t(1) << 50, "at least 4096 bytes"));
    cmd->add_option("--rotate-keep", watch.rotate_keep, "with --rotate-size: rotated files kept (FILE.1 .. FILE.N)")
        ->check(CLI::Range(1u, 1000u));
  };
  add_watch_options(watch_cmd);
  add_watch_options(&app); // `why502` alone is `why502 watch`

  cli::RecordOptions record;
  auto *record_cmd =
      app.add_subcommand("record", "write a Perfetto trace (ui.perfetto.dev) of nginx's upstream failures");
  record_cmd->add_option("-o,--output", record.output, "the trace file (FILE.pftrace)")->required();
  record_cmd->add_option("--duration", record.duration_s, "stop after SECONDS")->check(kSeconds);
  record_cmd->add_option("--max-size", record.max_size, "stop writing once the file reaches BYTES")
      ->check(integer_in(1, kMaxTraceBytes, "a size in bytes"));
  record_cmd->add_option("--nginx-pid", record.nginx_pid, "the nginx master (or a worker) to watch")->check(kPid);
  record_cmd->add_option("--group", record.group, "make the trace file 0640 and of group NAME");
  record_cmd->add_option("--error-log", record.error_logs, "follow this error log instead of the configured ones");
  record_cmd->add_option("--access-log", record.access_logs, "follow this access log instead of the configured ones");

  cli::AnalyzeOptions analyze;
  auto *analyze_cmd = app.add_subcommand("analyze", "correlate a recorded capture with nginx logs, offline");
  analyze_cmd->add_option("capture", analyze.capture, "a `why502 events --json` or `watch --capture` file")
      ->required();
  analyze_cmd->add_option("--error-log", analyze.error_logs, "nginx error log of the same period")->required();
  analyze_cmd->add_option("--access-log", analyze.access_logs, "nginx access log of the same period");
  analyze_cmd->add_option("--access-format", analyze.access_format, "its log_format string (default: combined)");
  analyze_cmd
      ->add_option("--log-utc-offset", analyze.log_utc_offset,
                   "the UTC offset nginx wrote error.log times in, e.g. +09:00 (default: from the access "
                   "log's $time_local, else the capture, else this host's zone)")
      ->check(CLI::Validator(
          [](std::string &v) {
            return base::parse_utc_offset(v) ? std::string() : "expected an offset like +09:00, -05:30 or Z";
          },
          "OFFSET"));
  analyze_cmd->add_flag("--json", analyze.json, "one JSON object per line");
  analyze_cmd->add_option("-o,--output", analyze.output, "append to FILE instead of stdout");

  cli::DemoOptions demo;
  auto *demo_cmd = app.add_subcommand(
      "demo", "start a private nginx and upstreams, inject faults one after another, and explain each");
  demo_cmd->add_flag("--json", demo.json, "print verdicts as JSON lines");
  demo_cmd->add_option("-o,--output", demo.output, "append to FILE instead of stdout");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    return app.exit(e);
  }
  spdlog::set_level(verbose ? spdlog::level::trace : spdlog::level::warn);
  spdlog::set_pattern("why502: %v");

  try {
    if (*events_cmd)
      return cli::run_events(events);
    if (*doctor_cmd)
      return cli::run_doctor(doctor);
    if (*demo_cmd)
      return cli::run_demo(demo);
    if (*analyze_cmd)
      return cli::run_analyze(analyze);
    if (*record_cmd)
      return cli::run_record(record);
    return cli::run_watch(watch);
  } catch (const Error &e) {
    fprintf(stderr, "why502: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception &e) {
    fprintf(stderr, "why502: %s\n", e.what());
    return 1;
  }
}
