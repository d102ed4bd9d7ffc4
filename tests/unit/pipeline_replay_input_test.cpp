// cli::replay's reading of hostile inputs (no root): what is not a regular file is refused with one
// line, lines that are not records or are too long are counted and skipped, never fatal.
#include "pipeline/replay.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "why502/error.h"

namespace fs = std::filesystem;
using why502::Error;
using why502::pipeline::replay;
using why502::pipeline::ReplayInput;

namespace {

class ReplayInputTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "why502-replay-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir = tmpl;
    empty_log = write("error.log", "");
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string write(const std::string &name, const std::string &content) {
    std::string p = dir + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  static std::string error_of(const ReplayInput &in) {
    try {
      replay(in);
    } catch (const Error &e) {
      return e.what();
    }
    return "";
  }
  std::string dir, empty_log;
};

TEST_F(ReplayInputTest, NotARegularFileIsOneLineError) {
  EXPECT_EQ(error_of({"/dev/zero", {empty_log}, {}, ""}), "cannot read capture /dev/zero: not a regular file");
  EXPECT_EQ(error_of({dir, {empty_log}, {}, ""}), "cannot read capture " + dir + ": a directory, not a regular file");
  std::string fifo = dir + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string cap = write("cap.jsonl", "{\"type\":\"stats\"}\n");
  EXPECT_EQ(error_of({cap, {fifo}, {}, ""}), "cannot read error log " + fifo + ": not a regular file");
  EXPECT_EQ(error_of({cap, {empty_log}, {"/dev/zero"}, ""}), "cannot read access log /dev/zero: not a regular file");
  EXPECT_EQ(error_of({dir + "/missing", {empty_log}, {}, ""}),
            "cannot read capture " + dir + "/missing: No such file or directory");
}

TEST_F(ReplayInputTest, RecordsOfTheWrongShapeAreCountedNotFatal) {
  std::string cap = write("cap.jsonl", "{\"type\":1}\n"
                                       "{\"type\":null}\n"
                                       "{\"type\":\"event\"}\n"
                                       "{\"type\":\"event\",\"event\":\"conn_fail\",\"boot_ns\":\"x\",\"time\":1}\n"
                                       "{\"type\":\"host\",\"event\":\"host_sample\",\"time\":[]}\n"
                                       "[1,2]\n"
                                       "\n"
                                       "{\"type\":\"summary\"}\n"); // a watch --json line: no input, not bad
  auto r = replay({cap, {empty_log}, {}, ""});
  EXPECT_EQ(r.bad_capture_lines, 6u);
  EXPECT_EQ(r.long_lines, 0u);
  EXPECT_TRUE(r.verdicts.empty());
}

TEST_F(ReplayInputTest, LongLinesAreSkippedAndCountedInEveryInput) {
  const std::string huge(why502::pipeline::kMaxReplayLine + 1, 'x');
  std::string cap = write("cap.jsonl", "{\"type\":\"stats\"}\n" + huge + "\n" + huge); // the last without '\n'
  std::string log = write("err.log", huge + "\n");
  auto r = replay({cap, {log}, {}, ""});
  EXPECT_EQ(r.long_lines, 3u);
  EXPECT_EQ(r.bad_capture_lines, 0u);
  // Exactly at the cap is a line like any other (here: not JSON, so a bad capture line).
  std::string at_cap = write("at.jsonl", "{\"type\":\"stats\"}\n" + std::string(why502::pipeline::kMaxReplayLine, 'y') + "\n");
  r = replay({at_cap, {empty_log}, {}, ""});
  EXPECT_EQ(r.long_lines, 0u);
  EXPECT_EQ(r.bad_capture_lines, 1u);
}

TEST_F(ReplayInputTest, FirstLineNotJsonIsNotACapture) {
  std::string cap = write("cap.txt", "hello\n");
  EXPECT_EQ(error_of({cap, {empty_log}, {}, ""}), cap + " is not a why502 capture (line 1 is not JSON)");
}

} // namespace
