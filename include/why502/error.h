// One exception type for unrecoverable errors: main() prints what() as one line and exits non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace why502 {

class Error : public std::runtime_error {
public:
  explicit Error(const std::string &what, int exit_code = 1) : std::runtime_error(what), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

private:
  int exit_code_;
};

} // namespace why502
