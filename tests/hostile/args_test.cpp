// Hostile tier: bad numbers on the command line. `--duration nan` ran forever, `--max-size -5`
// was accepted and `events --pid 0` watched every process. Each bad value must be one line on
// stderr naming the option, a non-zero exit, and no attaching (so it returns at once).
#include <cctype>
#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "why502/lab.h"

namespace {

struct BadArg {
  std::vector<std::string> args;
  std::string option;  // named in the message
  std::string message; // the rest of the reason
};

// Shown by gtest instead of the struct's bytes.
void PrintTo(const BadArg &b, std::ostream *os) {
  for (const auto &a : b.args)
    *os << a << ' ';
}

class BadArgs : public ::testing::TestWithParam<BadArg> {};

TEST_P(BadArgs, OneLineErrorAndNonZeroExitAtOnce) {
  const BadArg &b = GetParam();
  std::vector<std::string> argv{WHY502_BINARY};
  argv.insert(argv.end(), b.args.begin(), b.args.end());
  auto t0 = std::chrono::steady_clock::now();
  auto r = why502::lab::run_command(argv, 10);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 2.0) << "it must not start watching";
  // CLI11's exit code for a value that fails its check.
  EXPECT_EQ(r.exit_code, 105) << r.output;
  ASSERT_FALSE(r.output.empty());
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << "one line: " << r.output;
  EXPECT_EQ(r.output.rfind("why502: ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find(b.option), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(b.message), std::string::npos) << r.output;
}

const std::string kNotSeconds = "is not a number of seconds";
const std::string kSecondsRange = "is out of range: more than 0 and at most 31622400 seconds";
const std::string kPidRange = "is out of range: a process id from 1 to 4194304";

INSTANTIATE_TEST_SUITE_P(
    Hostile, BadArgs,
    ::testing::Values(BadArg{{"watch", "--duration", "nan"}, "--duration", "'nan' " + kNotSeconds},
                      BadArg{{"watch", "--duration", "inf"}, "--duration", "'inf' " + kNotSeconds},
                      BadArg{{"watch", "--duration", "-1"}, "--duration", "'-1' " + kSecondsRange},
                      BadArg{{"watch", "--duration", "0"}, "--duration", "'0' " + kSecondsRange},
                      BadArg{{"watch", "--duration", "1e12"}, "--duration", "'1e12' " + kSecondsRange},
                      BadArg{{"watch", "--duration", "5s"}, "--duration", "'5s' " + kNotSeconds},
                      BadArg{{"--duration", "NaN"}, "--duration", "'NaN' " + kNotSeconds}, // bare `why502`
                      BadArg{{"events", "--duration", "nan"}, "--duration", "'nan' " + kNotSeconds},
                      BadArg{{"record", "-o", "/tmp/x.pftrace", "--duration", "inf"}, "--duration",
                             "'inf' " + kNotSeconds},
                      BadArg{{"record", "-o", "/tmp/x.pftrace", "--max-size", "-5"}, "--max-size",
                             "'-5' is out of range: a size in bytes from 1 to"},
                      BadArg{{"record", "-o", "/tmp/x.pftrace", "--max-size", "0"}, "--max-size",
                             "'0' is out of range: a size in bytes from 1 to"},
                      BadArg{{"record", "-o", "/tmp/x.pftrace", "--max-size", "1e3"}, "--max-size",
                             "'1e3' is not a size in bytes"},
                      BadArg{{"events", "--pid", "0"}, "--pid", "'0' " + kPidRange},
                      BadArg{{"events", "--pid", "-1"}, "--pid", "'-1' " + kPidRange},
                      BadArg{{"events", "--pid", "4194305"}, "--pid", "'4194305' " + kPidRange},
                      BadArg{{"events", "--pid", "12abc"}, "--pid", "'12abc' is not a process id"},
                      BadArg{{"watch", "--nginx-pid", "0"}, "--nginx-pid", "'0' " + kPidRange},
                      BadArg{{"record", "-o", "/tmp/x.pftrace", "--nginx-pid", "99999999999"}, "--nginx-pid",
                             "'99999999999' " + kPidRange}),
    [](const ::testing::TestParamInfo<BadArg> &info) {
      // e.g. 3_watch_duration_minus1: readable in ctest's list
      std::string name = std::to_string(info.index);
      for (std::string a : info.param.args) {
        if (a.rfind("/tmp/", 0) == 0 || a == "-o")
          continue;
        if (a.rfind("--", 0) == 0)
          a = a.substr(2);
        else if (a[0] == '-')
          a = "minus" + a.substr(1);
        name += "_";
        for (char c : a)
          name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      }
      return name;
    });

} // namespace

namespace {

// why502 inside a PID namespace of its own (a container without hostPID): the kernel side reports
// host PIDs, /proc shows the namespace's, so nothing would ever match. It must say so and stop, not
// watch nothing in silence; `doctor` names the check.
TEST(WrongPlace, APrivatePidNamespaceIsAOneLineErrorAndDoctorSaysWhy) {
  auto in_private_pid_ns = [](std::vector<std::string> args) {
    std::vector<std::string> argv{"unshare", "--pid", "--fork", "--mount-proc", WHY502_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    return why502::lab::run_command(argv, 20);
  };
  for (const auto &cmd : {std::vector<std::string>{"events", "--duration", "5"},
                          std::vector<std::string>{"watch", "--duration", "5", "--nginx-pid", "1"}}) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = in_private_pid_ns(cmd);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 4.0) << cmd[0];
    EXPECT_NE(r.exit_code, 0) << cmd[0] << ": " << r.output;
    EXPECT_NE(r.output.find("why502: in a PID namespace of its own (a container without hostPID?)"), std::string::npos)
        << cmd[0] << ": " << r.output;
    EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << "one line: " << r.output;
  }
  auto doctor = in_private_pid_ns({"doctor", "--json"});
  EXPECT_NE(doctor.exit_code, 0) << doctor.output;
  EXPECT_NE(doctor.output.find(R"({"check":"host PID namespace","core":true,"detail":"in a PID namespace of its own)"),
            std::string::npos)
      << doctor.output;
  // And in the host's namespace the same check passes.
  auto here = why502::lab::run_command({WHY502_BINARY, "doctor", "--json"}, 30);
  EXPECT_NE(here.output.find(R"({"check":"host PID namespace","core":true,"detail":"","ok":true})"), std::string::npos)
      << here.output;
}

} // namespace
