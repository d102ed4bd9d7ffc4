#include "cli/output.h"

#include <cerrno>
#include <cstring>

#include "why502/error.h"

namespace why502::cli {

Output::Output(const std::string &path) : f_(stdout), owned_(false), name_("stdout") {
  if (path.empty() || path == "-")
    return;
  f_ = fopen(path.c_str(), "a");
  if (!f_)
    throw Error("cannot open " + path + " for writing: " + strerror(errno));
  owned_ = true;
  name_ = path;
}

Output::~Output() {
  if (owned_)
    fclose(f_);
}

void Output::line(std::string_view text) {
  // Flushed per line: a reader of the pipe sees each record at once.
  if (fwrite(text.data(), 1, text.size(), f_) != text.size() || fputc('\n', f_) == EOF || fflush(f_) != 0)
    throw Error("cannot write to " + name_ + ": " + strerror(errno));
}

} // namespace why502::cli
