// Where a subcommand writes its lines: stdout or a file, with write errors
// (full disk, closed pipe) turned into one clear Error instead of silent loss.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace why502::cli {

class Output {
public:
  explicit Output(const std::string &path); // "" or "-" = stdout
  ~Output();
  Output(const Output &) = delete;
  Output &operator=(const Output &) = delete;
  void line(std::string_view text); // writes text + '\n' and flushes
  const std::string &name() const { return name_; }

private:
  FILE *f_;
  bool owned_;
  std::string name_;
};

} // namespace why502::cli
