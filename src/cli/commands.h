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

// Set by SIGINT/SIGTERM: loops finish their work and print summaries.
bool stop_requested();
void install_stop_handlers();

} // namespace why502::cli
