// why502: thin main over libwhy502. Parses options, calls one subcommand, and
// turns every unrecoverable error into one line on stderr and a non-zero exit.
#include <cstdio>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "why502/error.h"

int main(int argc, char **argv) {
  using namespace why502;
  CLI::App app{"why502: names the kernel-level root cause of each failed nginx upstream attempt (502/504)"};
  app.require_subcommand(0, 1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "debug logging, including libbpf's verifier output");

  cli::EventsOptions events;
  auto *events_cmd = app.add_subcommand("events", "stream decoded kernel records as JSON lines (capture format)");
  events_cmd->add_flag("--json", events.json, "one JSON object per line (the only format)");
  events_cmd->add_option("--pid", events.pids, "watch this process and its children (repeatable)");
  events_cmd->add_option("--comm", events.comms, "watch processes with this name (repeatable; default nginx)");
  events_cmd->add_option("--duration", events.duration_s, "stop after SECONDS")->check(CLI::PositiveNumber);
  events_cmd->add_option("-o,--output", events.output, "append to FILE instead of stdout");

  cli::DoctorOptions doctor;
  auto *doctor_cmd = app.add_subcommand("doctor", "check what this host supports, in plain words");
  doctor_cmd->add_flag("--json", doctor.json, "print the checks as one JSON object");

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
    fprintf(stderr, "why502: the watch command is not built yet; try `why502 events --json` or `why502 doctor`\n");
    return 2;
  } catch (const Error &e) {
    fprintf(stderr, "why502: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception &e) {
    fprintf(stderr, "why502: %s\n", e.what());
    return 1;
  }
}
