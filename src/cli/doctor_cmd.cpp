// `why502 doctor`: what this host supports, in plain words. Exit 0 when the core works.
#include <cstdio>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/fmt/ranges.h>

#include "base/proc.h"
#include "base/text.h"
#include "cli/commands.h"
#include "correlate/causes.h"
#include "why502/error.h"
#include "why502/tracer.h"

namespace why502::cli {

namespace {

bool exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

} // namespace

int run_doctor(const DoctorOptions &opts) {
  std::vector<DoctorCheck> checks;
  const bool root = geteuid() == 0;
  checks.push_back({"running as root", root, root ? "" : "run with sudo: BPF needs CAP_BPF + CAP_PERFMON", true});
  const bool host_pids = base::in_initial_pid_namespace().value_or(true);
  checks.push_back({"host PID namespace", host_pids,
                    host_pids ? "" : "in a PID namespace of its own: run in the host's (hostPID: true, no --pid)", true});
  const bool btf = exists("/sys/kernel/btf/vmlinux");
  checks.push_back({"kernel BTF", btf, btf ? "/sys/kernel/btf/vmlinux" : "kernel built without CONFIG_DEBUG_INFO_BTF",
                    true});
  const auto tracefs_problem = tracefs_missing();
  checks.push_back({"tracefs (syscall tracepoints)", !tracefs_problem, tracefs_problem.value_or("/sys/kernel/tracing"),
                    false});

  bool core_loaded = false;
  if (root && btf) {
    try {
      TracerOptions topts; // nothing watched: only proves load + attach
      Tracer tracer(topts);
      core_loaded = true;
      for (const auto &p : tracer.programs()) {
        std::string detail;
        if (!p.attached) {
          auto lost = causes_needing(p.program);
          detail = p.problem + (lost.empty() ? "; no cause depends on it" : "; less evidence for: " +
                                                                               fmt::format("{}", fmt::join(lost, ", ")));
        }
        checks.push_back({p.tracepoint, p.attached, detail, p.required});
      }
    } catch (const Error &e) {
      checks.push_back({"BPF programs load and attach", false, e.what(), true});
    }
  }
  for (auto &c : nginx_checks())
    checks.push_back(std::move(c));

  bool core_ok = core_loaded;
  for (const auto &c : checks)
    if (c.core && !c.ok)
      core_ok = false;

  if (opts.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto &c : checks)
      j.push_back({{"check", c.what}, {"ok", c.ok}, {"detail", c.detail}, {"core", c.core}});
    printf("%s\n", base::json_line(nlohmann::json{{"type", "doctor"}, {"ok", core_ok}, {"checks", j}}).c_str());
  } else {
    size_t width = 0;
    for (const auto &c : checks)
      width = std::max(width, c.what.size());
    for (const auto &c : checks)
      printf("%-4s %-*s  %s\n", c.ok ? "ok" : (c.core ? "FAIL" : "warn"), int(width), c.what.c_str(),
             c.detail.c_str());
    printf("\n%s\n", core_ok ? "why502 can run on this host." : "why502 cannot run here: fix the FAIL lines above.");
  }
  return core_ok ? 0 : 1;
}

} // namespace why502::cli
