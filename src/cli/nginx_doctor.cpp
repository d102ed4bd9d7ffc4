// The nginx part of `doctor`: is nginx running, are the logs it writes readable.
// Uses the same discovery as `watch` (masters from /proc, the config read through /proc/PID/root;
// nginx is never run).
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "base/target_fs.h"
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
  for (const auto &w : found->warnings)
    out.push_back({"nginx discovery", false, w, false});
  for (const auto &inst : found->instances) {
    out.push_back({"nginx master " + std::to_string(inst.master_pid), true,
                   std::to_string(inst.workers.size()) + " workers" +
                       (inst.config_path.empty() ? "" : ", config " + inst.config_path),
                   false});
    if (!inst.config_error.empty()) {
      out.push_back({"nginx config", false, inst.config_error, false});
      continue;
    }
    // Logs as the master sees them (its filesystem: a container's, maybe), as regular files.
    const base::TargetFs fs = base::TargetFs::of_process(inst.master_pid);
    auto log_check = [&](const std::string &kind, const std::string &path, bool tailable,
                         const std::string &reason) {
      if (!tailable) {
        out.push_back({kind + " " + path, false, "cannot be followed: " + reason, false});
        return;
      }
      int fd = fs.open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
      struct stat st {};
      const bool readable = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
      if (fd >= 0)
        close(fd);
      out.push_back({kind + " " + path, readable, readable ? "" : "not readable as a regular file", false});
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
