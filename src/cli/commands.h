// One entry point per subcommand; main.cpp only parses options into these structs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace why502::cli {

struct EventsOptions {
  bool json = true;
  std::vector<uint32_t> pids;
  std::vector<std::string> comms;
  std::optional<double> duration_s;
  std::string output; // "" = stdout
  std::string group;  // --group: output file 0640 and of this group
};
int run_events(const EventsOptions &opts);

// One line of the doctor table.
struct DoctorCheck {
  std::string what;
  bool ok;
  std::string detail;
  bool core; // the tool cannot work without it
};
std::vector<DoctorCheck> nginx_checks(); // nginx_doctor.cpp

struct DoctorOptions {
  bool json = false;
};
int run_doctor(const DoctorOptions &opts);

struct WatchCommandOptions {
  bool json = false;
  std::string output;
  std::optional<double> duration_s;
  std::optional<int> nginx_pid;
  std::vector<std::string> error_logs;
  std::vector<std::string> access_logs;
  std::string capture; // also record the raw inputs for `analyze`
  std::string perfetto; // also write a Perfetto trace here
  std::string syscall_probes = "on-demand"; // or "always"
  std::string group;                        // --group: output files 0640 and of this group
  std::optional<std::string> metrics;       // --metrics [ADDR]: serve Prometheus metrics ("" = default)
  uint64_t rotate_size = 0;                 // --rotate-size BYTES for -o (0: no rotation)
  unsigned rotate_keep = 5;                 // --rotate-keep N
};
int run_watch(const WatchCommandOptions &opts);

struct RecordOptions {
  std::string output; // the .pftrace file
  std::optional<double> duration_s;
  uint64_t max_size = 0; // bytes, 0 = no cap
  std::string group;     // --group: the trace 0640 and of this group
  std::optional<int> nginx_pid;
  std::vector<std::string> error_logs;
  std::vector<std::string> access_logs;
};
int run_record(const RecordOptions &opts); // record_cmd.cpp

struct AnalyzeOptions {
  std::string capture;
  std::vector<std::string> error_logs;
  std::vector<std::string> access_logs;
  std::string access_format; // log_format string of the access log; combined by default
  std::string log_utc_offset; // "+09:00": the zone nginx wrote error.log times in (else learnt)
  bool json = false;
  std::string output;
};
int run_analyze(const AnalyzeOptions &opts);

struct DemoOptions {
  bool json = false;
  std::string output;
};
// Exit 0 when every injected fault got the expected cause, 3 otherwise.
int run_demo(const DemoOptions &opts); // demo_cmd.cpp

// Set by SIGINT/SIGTERM: loops finish their work and print summaries.
bool stop_requested();
// True once per SIGHUP (cleared by the call): loops reopen their output files at the same paths
// (logrotate renamed them; the next line goes to a new file).
bool take_reopen_request();
void install_stop_handlers(); // INT, TERM, HUP (and SIGPIPE ignored)

} // namespace why502::cli
