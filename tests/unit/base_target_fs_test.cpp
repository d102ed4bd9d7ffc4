// TargetFs: another process's files as it sees them. Absolute symlinks, "..", and /proc magic links
// must not lead out of its root; nothing is created there.
#include "base/target_fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using namespace why502::base;
namespace fs = std::filesystem;

namespace {

class TargetFsTest : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/why502-tfs-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ + "/etc/nginx/conf.d");
    std::ofstream(root_ + "/etc/nginx/nginx.conf") << "events {}\n";
    std::ofstream(root_ + "/etc/nginx/conf.d/b.conf") << "b";
    std::ofstream(root_ + "/etc/nginx/conf.d/a.conf") << "a";
    std::ofstream(root_ + "/etc/nginx/conf.d/.hidden.conf") << "h";
    std::ofstream(root_ + "/etc/nginx/conf.d/c.txt") << "c";
    std::ofstream(root_ + "/etc/hostname") << "inside\n";
  }
  void TearDown() override { fs::remove_all(root_); }
  TargetFs target() { return TargetFs::of_directory(root_, FsCreds{geteuid(), getegid(), {}}); }
  std::string root_;
};

TEST_F(TargetFsTest, ReadsInsideTheRoot) {
  auto t = target();
  ASSERT_TRUE(t.valid()) << t.error();
  auto f = t.read_file("/etc/nginx/nginx.conf", 1024);
  ASSERT_TRUE(f.ok()) << f.error;
  EXPECT_EQ(f.text, "events {}\n");
  EXPECT_FALSE(f.truncated);
  auto cut = t.read_file("/etc/nginx/nginx.conf", 4);
  EXPECT_EQ(cut.text, "even");
  EXPECT_TRUE(cut.truncated);
}

TEST_F(TargetFsTest, AbsoluteSymlinkStaysInsideTheRoot) {
  // In a container, /etc/nginx/x -> /etc/hostname means the container's /etc/hostname.
  fs::create_symlink("/etc/hostname", root_ + "/etc/nginx/link.conf");
  fs::create_symlink("../../../../../../etc/hostname", root_ + "/etc/nginx/dotdot.conf");
  auto t = target();
  EXPECT_EQ(t.read_file("/etc/nginx/link.conf", 1024).text, "inside\n");
  EXPECT_EQ(t.read_file("/etc/nginx/dotdot.conf", 1024).text, "inside\n");
  EXPECT_EQ(t.read_file("/../../etc/hostname", 1024).text, "inside\n");
}

TEST_F(TargetFsTest, MagicLinksAndSpecialFilesAreRefused) {
  // The official nginx image links its logs to /dev/stdout -> /proc/self/fd/1: never ours.
  fs::create_directories(root_ + "/proc/self/fd");
  fs::create_symlink("/proc/self/fd/1", root_ + "/stdout");
  auto t = target();
  EXPECT_FALSE(t.read_file("/stdout", 1024).ok());
  // A host path to a magic link is refused too (RESOLVE_NO_MAGICLINKS), as is a FIFO.
  ASSERT_EQ(mkfifo((root_ + "/fifo").c_str(), 0600), 0);
  auto fifo = t.read_file("/fifo", 1024);
  EXPECT_FALSE(fifo.ok());
  EXPECT_EQ(fifo.error, "not a regular file");
  EXPECT_FALSE(t.read_file("/etc/nginx", 1024).ok());
}

TEST_F(TargetFsTest, NeverCreates) {
  auto t = target();
  EXPECT_LT(t.open("/etc/new.conf", O_WRONLY | O_CREAT), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_FALSE(fs::exists(root_ + "/etc/new.conf"));
}

TEST_F(TargetFsTest, GlobIsSortedSkipsDotFilesAndStaysInside) {
  auto t = target();
  EXPECT_EQ(t.glob("/etc/nginx/conf.d/*.conf", 100),
            (std::vector<std::string>{"/etc/nginx/conf.d/a.conf", "/etc/nginx/conf.d/b.conf"}));
  EXPECT_EQ(t.glob("/etc/*/conf.d/?.conf", 100).size(), 2u);
  EXPECT_EQ(t.glob("/etc/nginx/conf.d/*.conf", 1).size(), 1u); // bounded
  EXPECT_TRUE(t.glob("/nowhere/*.conf", 100).empty());
  fs::create_symlink("/etc", root_ + "/etc/nginx/conf.d/up");
  auto via_link = t.glob("/etc/nginx/conf.d/up/nginx/conf.d/*.conf", 100);
  EXPECT_EQ(via_link.size(), 2u); // the link resolved inside the root
}

TEST(FsCreds, ParsesTheFilesystemIds) {
  auto c = parse_fs_creds("Name:\tnginx\nUid:\t0\t33\t33\t33\nGid:\t0\t33\t33\t34\nGroups:\t4 33 \n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->uid, 33u);
  EXPECT_EQ(c->gid, 34u);
  EXPECT_EQ(c->groups, (std::vector<gid_t>{4, 33}));
  EXPECT_FALSE(parse_fs_creds("Name:\tx\n"));
}

} // namespace
