// The nginx part of `doctor`: is nginx running, are its logs readable.
#include <dirent.h>
#include <fstream>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace why502::cli {

std::vector<DoctorCheck> nginx_checks() {
  std::vector<DoctorCheck> out;
  int count = 0;
  if (DIR *d = opendir("/proc")) {
    while (dirent *e = readdir(d)) {
      std::ifstream f(std::string("/proc/") + e->d_name + "/comm");
      std::string comm;
      if (f && std::getline(f, comm) && comm == "nginx")
        ++count;
    }
    closedir(d);
  }
  out.push_back({"nginx running", count > 0,
                 count ? std::to_string(count) + " nginx processes" : "no process named nginx (why502 will wait)",
                 false});
  return out;
}

} // namespace why502::cli
