// LogTailer on temp files: start position, partial lines, rename+create, copytruncate, long lines.
#include "why502/nginx.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace why502::nginx;
namespace fs = std::filesystem;

namespace {

class TailerTest : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/why502-tailer-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/access.log";
  }
  void TearDown() override { fs::remove_all(dir_); }
  void append(const std::string &s, const std::string &p = "") {
    std::ofstream f(p.empty() ? path_ : p, std::ios::app | std::ios::binary);
    f << s;
  }
  std::vector<std::string> drain(LogTailer &t) {
    std::vector<std::string> out;
    t.drain([&](std::string_view l, bool) { out.emplace_back(l); });
    return out;
  }
  std::string dir_, path_;
};

using V = std::vector<std::string>;

TEST_F(TailerTest, StartsAtEndByDefault) {
  append("old1\nold2\n");
  LogTailer t(path_);
  EXPECT_EQ(drain(t), V{});
  append("new1\nnew2\n");
  EXPECT_EQ(drain(t), (V{"new1", "new2"}));
  EXPECT_EQ(t.stats().lines, 2u);
}

TEST_F(TailerTest, StartAtBeginningOption) {
  append("old1\n");
  LogTailer t(path_, {.start_at_end = false});
  EXPECT_EQ(drain(t), V{"old1"});
}

TEST_F(TailerTest, PartialLineWaitsForNewline) {
  LogTailer t(path_, {.start_at_end = false});
  append("abc");
  EXPECT_EQ(drain(t), V{});
  append("def\nx");
  EXPECT_EQ(drain(t), V{"abcdef"});
}

TEST_F(TailerTest, FileCreatedLater) {
  LogTailer t(path_);
  EXPECT_FALSE(t.file_open());
  append("first\n");
  EXPECT_EQ(drain(t), V{"first"});
}

TEST_F(TailerTest, PollableFdWakesOnWrite) {
  append("");
  LogTailer t(path_);
  ASSERT_GE(t.fd(), 0);
  append("x\n");
  pollfd p{t.fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 1000), 1);
  EXPECT_EQ(drain(t), V{"x"});
  pollfd q{t.fd(), POLLIN, 0};
  EXPECT_EQ(poll(&q, 1, 0), 0); // drained: no spurious wakeup
}

TEST_F(TailerTest, RenameAndCreateKeepsReadingOldFileThenSwitches) {
  append("");
  LogTailer t(path_);
  append("a\n");
  fs::rename(path_, path_ + ".1");
  // nginx still writes to the old inode until `nginx -s reopen`
  append("b\n", path_ + ".1");
  append("");
  EXPECT_EQ(drain(t), (V{"a", "b"}));
  append("c\n", path_ + ".1"); // a worker that has not reopened yet
  append("d\n");
  auto got = drain(t);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (V{"c", "d"}));
  EXPECT_EQ(t.stats().rotations, 1u);
  append("e\n");
  EXPECT_EQ(drain(t), V{"e"});
}

TEST_F(TailerTest, CopyTruncateRestartsAtZero) {
  append("");
  LogTailer t(path_);
  append("line-1\nline-2\n");
  EXPECT_EQ(drain(t).size(), 2u);
  fs::resize_file(path_, 0);
  append("x\n");
  EXPECT_EQ(drain(t), V{"x"});
  EXPECT_EQ(t.stats().truncations, 1u);
}

TEST_F(TailerTest, HugeLineIsCutNotStored) {
  append("");
  LogTailer t(path_, {.start_at_end = true, .max_line = 1024, .read_chunk = 4096});
  std::string huge(10 * 1024 * 1024, 'z');
  append(huge + "\nshort\n");
  std::vector<std::pair<size_t, bool>> got;
  // Over more than one drain(): each reads at most max_drain_bytes (8 MiB by default).
  for (int i = 0; i < 3; ++i)
    t.drain([&](std::string_view l, bool cut) { got.emplace_back(l.size(), cut); });
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], (std::pair<size_t, bool>{1024, true}));
  EXPECT_EQ(got[1], (std::pair<size_t, bool>{5, false}));
  EXPECT_EQ(t.stats().truncated_lines, 1u);
  EXPECT_EQ(t.stats().bytes, huge.size() + 7);
}

// /dev/zero, a FIFO or a directory named as a log is refused with a reason, never read: reading
// /dev/zero spun at 100% CPU and never returned from drain().
TEST_F(TailerTest, RefusesWhatIsNotARegularFile) {
  {
    LogTailer t("/dev/zero");
    EXPECT_FALSE(t.file_open());
    EXPECT_EQ(t.last_error(), "/dev/zero: a character device, not a regular file");
    EXPECT_EQ(drain(t), V{});
    EXPECT_EQ(t.stats().bytes, 0u);
  }
  std::string fifo = dir_ + "/fifo.log";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  LogTailer f(fifo);
  EXPECT_FALSE(f.file_open());
  EXPECT_EQ(f.last_error(), fifo + ": a FIFO, not a regular file");
  LogTailer d(dir_);
  EXPECT_EQ(d.last_error(), dir_ + ": a directory, not a regular file");
  LogTailer missing(dir_ + "/misspelled.log");
  EXPECT_FALSE(missing.file_open());
  EXPECT_EQ(missing.last_error(), dir_ + "/misspelled.log: No such file or directory");
}

// One drain() reads at most max_drain_bytes; the rest comes on the next calls, nothing lost.
TEST_F(TailerTest, DrainIsCappedAndResumes) {
  std::string line(99, 'x');
  std::string chunk;
  for (int i = 0; i < 1000; ++i)
    chunk += line + "\n"; // 100 000 bytes
  append(chunk);
  LogTailer t(path_, {.start_at_end = false, .read_chunk = 4096, .max_drain_bytes = 16384});
  size_t total = 0, calls = 0;
  for (size_t got = 1; got > 0 || total < 1000; ++calls) {
    got = drain(t).size();
    EXPECT_LE(got, 16384u / 100 + 1);
    total += got;
    ASSERT_LT(calls, 100u);
  }
  EXPECT_EQ(total, 1000u);
  EXPECT_EQ(t.stats().bytes, 100000u);
  EXPECT_GE(t.stats().capped_drains, 6u); // 100000 / 16384
}

} // namespace
