#include "cli/output.h"

#include <cerrno>
#include <cstring>

#include "why502/error.h"

namespace why502::cli {

namespace {
base::OutputFileOptions with_group(std::optional<gid_t> group) {
  base::OutputFileOptions o;
  o.group = group;
  return o;
}
} // namespace

Output::Output(const std::string &path, std::optional<gid_t> group) : Output(path, with_group(group)) {}

Output::Output(const std::string &path, const base::OutputFileOptions &opts) : name_("stdout") {
  if (path.empty() || path == "-")
    return;
  file_ = std::make_unique<base::OutputFile>(path, opts);
  name_ = path;
}

void Output::line(std::string_view text) {
  if (file_)
    return file_->write_line(text);
  // Flushed per line: a reader of the pipe sees each record at once.
  if (fwrite(text.data(), 1, text.size(), stdout) != text.size() || fputc('\n', stdout) == EOF ||
      fflush(stdout) != 0)
    throw Error("cannot write to " + name_ + ": " + strerror(errno));
}

void Output::reopen() {
  if (file_)
    file_->reopen();
}

} // namespace why502::cli
