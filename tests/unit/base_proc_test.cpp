// base/proc: the one /proc reader (stat, cmdline, comm, pid lists) every layer uses.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/proc.h"

using namespace why502::base;
namespace fs = std::filesystem;

TEST(ProcStat, CommWithSpacesAndParensEndsAtTheLastParen) {
  auto s = parse_proc_stat("4321 (a) b (c)) S 17 4321 4321 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->comm, "a) b (c)");
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->ppid, 17);
  EXPECT_EQ(s->start_time, 987654u);
}

TEST(ProcStat, MalformedIsNullopt) {
  EXPECT_FALSE(parse_proc_stat(""));
  EXPECT_FALSE(parse_proc_stat("12 (no close paren S 1"));
  EXPECT_FALSE(parse_proc_stat("12 (x)"));
  EXPECT_FALSE(parse_proc_stat("12 (x) S notanumber"));
}

TEST(ProcStat, NonUtf8CommComesBackValid) {
  auto s = parse_proc_stat("5 (\xff\xfe) R 1 5 5");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->comm, "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(ProcFiles, ThisProcessReadsBack) {
  auto st = read_proc_stat(getpid());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->ppid, getppid());
  EXPECT_FALSE(read_proc_cmdline(getpid()).empty());
  EXPECT_EQ(read_proc_comm(getpid()), st->comm);
  auto pids = list_pids();
  EXPECT_NE(std::find(pids.begin(), pids.end(), getpid()), pids.end());
}

TEST(ProcFiles, AnotherRootAndCapsAreHonoured) {
  fs::path root = fs::temp_directory_path() / ("why502-proc-" + std::to_string(getpid()));
  fs::create_directories(root / "77");
  fs::create_directories(root / "self");
  std::ofstream(root / "77" / "cmdline", std::ios::binary) << std::string("nginx: worker process\0\0", 23);
  std::ofstream(root / "77" / "comm") << "nginx\n";
  EXPECT_EQ(read_proc_cmdline(77, root.string()), std::vector<std::string>{"nginx: worker process"});
  EXPECT_EQ(read_proc_comm(77, root.string()), "nginx");
  EXPECT_EQ(list_pids(root.string()), std::vector<pid_t>{77});
  EXPECT_EQ(read_small_file((root / "77" / "comm").string(), 3), "ngi");
  EXPECT_FALSE(read_small_file((root / "missing").string()));
  EXPECT_TRUE(read_proc_cmdline(78, root.string()).empty());
  fs::remove_all(root);
}

TEST(PidNamespace, OnlyTheInitialNamespacesInodeCounts) {
  // A proc root whose self/ns/pid is any other file: not the host's namespace; none: unknown.
  const fs::path root = fs::temp_directory_path() / ("why502-pidns-" + std::to_string(getpid()));
  fs::create_directories(root / "self" / "ns");
  EXPECT_EQ(in_initial_pid_namespace(root.string()), std::nullopt);
  std::ofstream(root / "self" / "ns" / "pid") << "";
  EXPECT_EQ(in_initial_pid_namespace(root.string()), false);
  fs::remove_all(root);
}
