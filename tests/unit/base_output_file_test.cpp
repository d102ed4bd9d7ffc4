// base::open_output_file: what it refuses and how it creates, without root (a private directory
// under $TMPDIR stands for /tmp, /var/log, ...).
#include "base/output_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "why502/error.h"

namespace fs = std::filesystem;
using why502::Error;
using why502::base::open_output_file;
using why502::base::OutputFile;
using why502::base::OutputFileOptions;

namespace {

class OutputFileTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "why502-outfile-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << strerror(errno);
    dir = tmpl;
    chmod(dir.c_str(), 0700);
  }
  void TearDown() override {
    chmod(dir.c_str(), 0700);
    fs::remove_all(dir);
  }

  std::string path(const std::string &name) const { return (fs::path(dir) / name).string(); }

  static std::string read(const std::string &p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  static mode_t mode_of(const std::string &p) {
    struct stat st {};
    EXPECT_EQ(lstat(p.c_str(), &st), 0);
    return st.st_mode & 07777;
  }
  // The message open_output_file threw, or "" if it did not.
  static std::string refusal(const std::string &p, OutputFileOptions o = {}) {
    try {
      open_output_file(p, o);
    } catch (const Error &e) {
      return e.what();
    }
    return "";
  }

  std::string dir;
};

TEST_F(OutputFileTest, CreatesMode0600WithCloexecAndAppends) {
  umask(0); // the mode must not depend on the umask
  std::string p = path("out.jsonl");
  {
    OutputFile f(p);
    int fl = fcntl(f.fd(), F_GETFD);
    ASSERT_GE(fl, 0);
    EXPECT_TRUE(fl & FD_CLOEXEC);
    int st = fcntl(f.fd(), F_GETFL);
    EXPECT_TRUE(st & O_APPEND);
    EXPECT_FALSE(st & O_NONBLOCK);
    f.write_line("one");
  }
  umask(022);
  EXPECT_EQ(mode_of(p), 0600u);
  OutputFile again(p);
  again.write_line("two");
  EXPECT_EQ(read(p), "one\ntwo\n");
}

TEST_F(OutputFileTest, GroupGivesMode0640EvenUnderUmask077) {
  umask(077);
  std::string p = path("group.jsonl");
  OutputFileOptions o;
  o.group = getegid(); // a group we are in: no privilege needed to set it
  auto fd = open_output_file(p, o);
  umask(022);
  ASSERT_TRUE(fd);
  struct stat st {};
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_gid, getegid());
}

TEST_F(OutputFileTest, RefusesASymlinkAndLeavesItsTargetAlone) {
  std::string target = path("target");
  { std::ofstream(target) << "secret\n"; }
  chmod(target.c_str(), 0600);
  std::string link = path("link");
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  EXPECT_NE(refusal(link).find("refusing to write through a symlink"), std::string::npos) << refusal(link);
  OutputFileOptions trunc;
  trunc.truncate = true;
  EXPECT_NE(refusal(link, trunc).find("refusing to write through a symlink"), std::string::npos);
  EXPECT_EQ(read(target), "secret\n");
  // A dangling symlink (the target does not exist yet) is refused too, and nothing is created.
  std::string dangling = path("dangling");
  ASSERT_EQ(symlink(path("nowhere").c_str(), dangling.c_str()), 0);
  EXPECT_NE(refusal(dangling).find("refusing to write through a symlink"), std::string::npos);
  EXPECT_FALSE(fs::exists(path("nowhere")));
}

TEST_F(OutputFileTest, RefusesAWorldWritableDirectoryWithoutStickyBit) {
  std::string open_dir = path("shared");
  ASSERT_EQ(mkdir(open_dir.c_str(), 0700), 0);
  ASSERT_EQ(chmod(open_dir.c_str(), 0777), 0);
  std::string msg = refusal(open_dir + "/out.jsonl");
  EXPECT_NE(msg.find("writable by everyone and not sticky"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(open_dir + "/out.jsonl"));
}

// Not only the parent: any directory on the way that another user could rename things in.
TEST_F(OutputFileTest, RefusesAnUnsafeDirectoryHigherUpThePath) {
  std::string open_dir = path("shared");
  ASSERT_EQ(mkdir(open_dir.c_str(), 0700), 0);
  ASSERT_EQ(chmod(open_dir.c_str(), 0777), 0);
  std::string safe = open_dir + "/ours";
  ASSERT_EQ(mkdir(safe.c_str(), 0700), 0);
  std::string msg = refusal(safe + "/out.jsonl");
  EXPECT_NE(msg.find("directory " + open_dir + " is writable by everyone and not sticky"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(safe + "/out.jsonl"));
  // A relative path is walked from the working directory.
  std::string cwd = fs::current_path().string();
  ASSERT_EQ(chdir(dir.c_str()), 0);
  msg = refusal("shared/ours/out.jsonl");
  std::string ok_msg = refusal("rel.jsonl");
  ASSERT_EQ(chdir(cwd.c_str()), 0);
  EXPECT_NE(msg.find("directory ./shared is writable by everyone and not sticky"), std::string::npos) << msg;
  EXPECT_EQ(ok_msg, "");
  EXPECT_EQ(mode_of(path("rel.jsonl")), 0600u);
}

TEST_F(OutputFileTest, AcceptsAStickyWorldWritableDirectoryLikeTmp) {
  std::string sticky = path("tmp");
  ASSERT_EQ(mkdir(sticky.c_str(), 0700), 0);
  ASSERT_EQ(chmod(sticky.c_str(), 01777), 0);
  std::string p = sticky + "/out.jsonl";
  OutputFile f(p);
  f.write_line("x");
  EXPECT_EQ(mode_of(p), 0600u);
  EXPECT_EQ(read(p), "x\n");
}

TEST_F(OutputFileTest, TightensAnExistingWiderFileWithoutLosingItsContent) {
  std::string p = path("old.jsonl");
  { std::ofstream(p) << "kept\n"; }
  ASSERT_EQ(chmod(p.c_str(), 0644), 0);
  OutputFile f(p);
  f.write_line("added");
  EXPECT_EQ(mode_of(p), 0600u);
  EXPECT_EQ(read(p), "kept\nadded\n");
}

TEST_F(OutputFileTest, TruncateEmptiesOnlyAfterTheChecks) {
  std::string p = path("trace.pftrace");
  { std::ofstream(p) << "old trace\n"; }
  OutputFileOptions o;
  o.truncate = true;
  auto fd = open_output_file(p, o);
  EXPECT_EQ(fs::file_size(p), 0u);
  EXPECT_FALSE(fcntl(fd.get(), F_GETFL) & O_APPEND);

  // A second hard link: writing would change the other path too. Refused, and not truncated.
  std::string other = path("other");
  { std::ofstream(other) << "precious\n"; }
  std::string hard = path("hard");
  ASSERT_EQ(link(other.c_str(), hard.c_str()), 0);
  std::string msg = refusal(hard, o);
  EXPECT_NE(msg.find("hard links"), std::string::npos) << msg;
  EXPECT_EQ(read(other), "precious\n");
}

TEST_F(OutputFileTest, RefusesWhatIsNotARegularFile) {
  std::string msg = refusal(dir + "/");
  EXPECT_NE(msg.find("not a file name"), std::string::npos) << msg;
  std::string sub = path("sub");
  ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
  msg = refusal(sub);
  EXPECT_NE(msg.find("not a regular file"), std::string::npos) << msg;
  std::string fifo = path("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  msg = refusal(fifo); // no reader: must not block
  EXPECT_NE(msg.find("FIFO"), std::string::npos) << msg;
  int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  msg = refusal(fifo); // with a reader: opened, then refused on its fd
  close(reader);
  EXPECT_NE(msg.find("a FIFO, not a regular file"), std::string::npos) << msg;
  msg = refusal(path("missing-dir/out"));
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
}

TEST_F(OutputFileTest, ReopenFollowsTheRenameLikeLogrotate) {
  std::string p = path("watch.jsonl");
  OutputFile f(p);
  f.write_line("start");
  ASSERT_EQ(rename(p.c_str(), (p + ".1").c_str()), 0);
  f.reopen();
  f.write_line("verdict");
  EXPECT_EQ(read(p + ".1"), "start\n");
  EXPECT_EQ(read(p), "verdict\n");
  EXPECT_EQ(mode_of(p), 0600u);
  // A reopen that is refused keeps the old file in use.
  ASSERT_EQ(rename(p.c_str(), (p + ".2").c_str()), 0);
  ASSERT_EQ(symlink((p + ".1").c_str(), p.c_str()), 0);
  EXPECT_THROW(f.reopen(), Error);
  f.write_line("still here");
  EXPECT_EQ(read(p + ".2"), "verdict\nstill here\n");
  EXPECT_EQ(read(p + ".1"), "start\n");
}

TEST_F(OutputFileTest, GroupNamesAndNumbers) {
  EXPECT_EQ(why502::base::group_id("0"), 0u);
  EXPECT_EQ(why502::base::group_id("root"), 0u);
  EXPECT_THROW(why502::base::group_id("no-such-group-why502"), Error);
}

} // namespace

// --rotate-size: whole lines only, the newest in PATH, then PATH.1 .. PATH.keep, nothing older, and
// every line of the last keep+1 files present once, in order.
TEST_F(OutputFileTest, RotationKeepsWholeLinesInOrderAndDropsOnlyTheOldestFiles) {
  OutputFileOptions o;
  o.rotate_size = 100;
  o.rotate_keep = 2;
  const std::string p = path("verdicts.jsonl");
  OutputFile f(p, o);
  uint64_t expected_rotations = 0, in_file = 0;
  for (int i = 0; i < 40; ++i) {
    const std::string line = "line " + std::to_string(i) + " xxxxxxxxxxxxxxxx"; // 24-25 bytes + '\n'
    f.write_line(line);
    in_file += line.size() + 1;
    if (in_file >= o.rotate_size) { // the file rotates after the line that reaches the size
      ++expected_rotations;
      in_file = 0;
    }
  }
  EXPECT_EQ(f.rotations(), expected_rotations);
  EXPECT_GE(expected_rotations, 8u);
  EXPECT_EQ(f.rotation_failures(), 0u);
  EXPECT_FALSE(fs::exists(p + ".3"));
  std::string all = read(p + ".2") + read(p + ".1") + read(p);
  std::vector<int> seen;
  std::istringstream in(all);
  for (std::string l; std::getline(in, l);) {
    ASSERT_EQ(l.rfind("line ", 0), 0u) << "a torn line: " << l;
    seen.push_back(std::stoi(l.substr(5)));
  }
  ASSERT_FALSE(seen.empty());
  for (size_t i = 1; i < seen.size(); ++i)
    EXPECT_EQ(seen[i], seen[i - 1] + 1);
  EXPECT_EQ(seen.back(), 39);
  EXPECT_EQ(mode_of(p), 0600u);
  EXPECT_EQ(mode_of(p + ".1"), 0600u);
}

TEST_F(OutputFileTest, AFailedRotationIsCountedAndLosesNothing) {
  OutputFileOptions o;
  o.rotate_size = 100;
  o.rotate_keep = 1;
  const std::string p = path("verdicts.jsonl");
  fs::create_directories(p + ".1/occupied"); // PATH.1 cannot be removed: every rotation fails
  OutputFile f(p, o);
  for (int i = 0; i < 20; ++i)
    f.write_line("line " + std::to_string(i) + " xxxxxxxxxxxxxxxx");
  EXPECT_EQ(f.rotations(), 0u);
  EXPECT_GE(f.rotation_failures(), 1u);
  EXPECT_LE(f.rotation_failures(), 5u) << "retried at every line instead of every rotate_size bytes";
  std::istringstream in(read(p));
  int n = 0;
  for (std::string l; std::getline(in, l);)
    ++n;
  EXPECT_EQ(n, 20);
}
