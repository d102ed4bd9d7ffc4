// Where a subcommand writes its lines: stdout or a file, with write errors
// (full disk, closed pipe) turned into one clear Error instead of silent loss.
// A file is opened through base::open_output_file (no symlinks, 0600, O_CLOEXEC).
#pragma once

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

#include "base/output_file.h"

namespace why502::cli {

class Output {
public:
  // "" or "-" = stdout. group: the file is 0640 and of this group (--group), else 0600.
  explicit Output(const std::string &path, std::optional<gid_t> group = std::nullopt);
  // A file with these options (rotation: watch --rotate-size/--rotate-keep).
  Output(const std::string &path, const base::OutputFileOptions &opts);
  Output(const Output &) = delete;
  Output &operator=(const Output &) = delete;
  void line(std::string_view text); // writes text + '\n' and flushes
  // SIGHUP: open the path again (logrotate renamed the file). No-op for stdout. Throws Error.
  void reopen();
  const std::string &name() const { return name_; }
  const base::OutputFile *file() const { return file_.get(); } // null for stdout

private:
  std::unique_ptr<base::OutputFile> file_; // null: stdout
  std::string name_;
};

} // namespace why502::cli
