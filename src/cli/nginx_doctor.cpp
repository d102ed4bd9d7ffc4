// The nginx part of `doctor`: is nginx running, are the logs it writes readable.
// Uses the same discovery as `watch` (masters from /proc, logs from `nginx -T`).
#include <string>
#include <unistd.h>
#include <vector>

#include "cli/commands.h"
#include "why502/nginx.h"

namespace why502::cli {

std::vector<DoctorCheck> nginx_checks() {
  std::vector<DoctorCheck> out;
  auto found = nginx::discover();
  if (!found) {
    out.push_back({"nginx running", false, found.error() + " (watch needs a running nginx)", false});
    return out;
  }
  for (const auto &inst : found->instances) {
    out.push_back({"nginx master " + std::to_string(inst.master_pid), true,
                   std::to_string(inst.workers.size()) + " workers" +
                       (inst.config_path.empty() ? "" : ", config " + inst.config_path),
                   false});
    if (!inst.config_error.empty()) {
      out.push_back({"nginx -T", false, inst.config_error, false});
      continue;
    }
    auto log_check = [&](const std::string &kind, const std::string &path, bool tailable,
                         const std::string &reason) {
      if (!tailable) {
        out.push_back({kind + " " + path, false, "cannot be followed: " + reason, false});
        return;
      }
      const bool readable = access(path.c_str(), R_OK) == 0;
      out.push_back({kind + " " + path, readable, readable ? "" : "not readable", false});
    };
    for (const auto &e : inst.config.error_logs)
      log_check("error_log", e.path, e.tailable, e.not_tailable_reason);
    for (const auto &a : inst.config.access_logs)
      if (!a.off && !a.is_stream)
        log_check("access_log", a.path, a.tailable, a.not_tailable_reason);
  }
  return out;
}

} // namespace why502::cli
