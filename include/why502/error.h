// The error style, one for the whole code base:
// - Result<T>: a value, or one human-readable line saying why not. Every function whose failure the
//   caller handles and goes on (parsing untrusted input, reading a file that may be gone).
// - why502::Error: a failure the caller cannot go on from (a subcommand cannot start: not root, no
//   BTF, an output it may not create). main() prints what() as one line and exits non-zero.
// Never a bare bool or an error string written through a pointer in new code.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace why502 {

template <class T> class Result {
public:
  Result(T value) : v_(std::move(value)) {}
  static Result failure(std::string message) { return Result(Failure{std::move(message)}); }
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T &value() { return std::get<0>(v_); }
  const T &value() const { return std::get<0>(v_); }
  T *operator->() { return &value(); }
  const T *operator->() const { return &value(); }
  T &operator*() { return value(); }
  const T &operator*() const { return value(); }
  const std::string &error() const { return std::get<1>(v_).message; }

private:
  struct Failure {
    std::string message;
  };
  explicit Result(Failure e) : v_(std::move(e)) {}
  std::variant<T, Failure> v_;
};

class Error : public std::runtime_error {
public:
  explicit Error(const std::string &what, int exit_code = 1) : std::runtime_error(what), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

private:
  int exit_code_;
};

} // namespace why502
