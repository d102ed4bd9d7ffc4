// Ownership from the kernel: a TCP socket's start and end of LISTEN, reported in the
// context of its owner, including an owner that exits or is killed 100 ms after listen().
// Root, real kernel, real BPF programs.
#include <gtest/gtest.h>

#include <sys/prctl.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "loopback_listener.h"
#include "harness.h"

using namespace why502;
using namespace why502::testing;

namespace {

std::string dump(const Capture &cap) {
  std::string out;
  for (const auto &ev : cap.events)
    out += to_json(ev).dump() + "\n";
  return out;
}

// listen() on 127.0.0.1:port; the fd is left open on purpose (the owner's exit closes it).
int listen_on(uint16_t port) {
  int fd = why502::testing::listen_on_loopback(port, 16);
  if (fd < 0)
    _exit(93);
  return fd;
}

struct Change {
  ListenChange rec;
  uint64_t boot_ns;
};

// The listen changes of `pid` on `port`, in order.
std::vector<Change> changes(const Capture &cap, uint32_t pid, uint16_t port) {
  std::vector<Change> out;
  for (const auto &ev : cap.events)
    if (const auto *l = std::get_if<ListenChange>(&ev.record); l && l->pid == pid && l->local.port == port)
      out.push_back({*l, ev.boot_ns});
  return out;
}

uint32_t own_netns() {
  struct stat st = {};
  return stat("/proc/self/ns/net", &st) == 0 ? uint32_t(st.st_ino) : 0;
}

void expect_start(const Change &c, uint32_t pid, uint16_t port) {
  EXPECT_TRUE(c.rec.listening);
  EXPECT_FALSE(c.rec.exiting);
  EXPECT_EQ(c.rec.pid, pid);
  EXPECT_EQ(c.rec.comm, "w502-owner");
  EXPECT_EQ(c.rec.family, 4);
  EXPECT_EQ(c.rec.local.str(), "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(c.rec.netns, own_netns());
  EXPECT_NE(c.rec.cookie, 0u);
}

} // namespace

TEST(ListenChange, OwnerThatExitsAfter100msIsReportedWithExitingSet) {
  const uint16_t port = closed_port(), closed = closed_port();
  auto cap = run_watched([&] {
    prctl(PR_SET_NAME, "w502-owner");
    // One listener closed by the owner itself (not exiting), one left for its exit to close.
    close(listen_on(closed));
    listen_on(port);
    sleep_s(0.1);
  });
  auto by_exit = changes(cap, cap.pid, port);
  ASSERT_EQ(by_exit.size(), 2u) << dump(cap);
  expect_start(by_exit[0], cap.pid, port);
  EXPECT_FALSE(by_exit[1].rec.listening);
  EXPECT_TRUE(by_exit[1].rec.exiting) << dump(cap);
  EXPECT_EQ(by_exit[1].rec.local, by_exit[0].rec.local);
  EXPECT_EQ(by_exit[1].rec.cookie, by_exit[0].rec.cookie);
  EXPECT_GE(by_exit[1].boot_ns - by_exit[0].boot_ns, 100000000u);
  EXPECT_LT(by_exit[1].boot_ns - by_exit[0].boot_ns, 2000000000u);

  auto by_close = changes(cap, cap.pid, closed);
  ASSERT_EQ(by_close.size(), 2u) << dump(cap);
  expect_start(by_close[0], cap.pid, closed);
  EXPECT_FALSE(by_close[1].rec.listening);
  EXPECT_FALSE(by_close[1].rec.exiting) << "close() is not an exit: " << dump(cap);
  EXPECT_EQ(by_close[1].rec.cookie, by_close[0].rec.cookie);
  EXPECT_NE(by_close[0].rec.cookie, by_exit[0].rec.cookie);
}

TEST(ListenChange, OwnerKilledBySigkillIsReportedInItsOwnContext) {
  const uint16_t port = closed_port();
  auto cap = run_watched([&] {
    prctl(PR_SET_NAME, "w502-owner");
    pid_t self = getpid();
    int fd = listen_on(port);
    pid_t killer = fork();
    if (killer == 0) {
      // A forked child shares the listener: the socket closes with its last holder, so drop ours.
      close(fd);
      sleep_s(0.1);
      kill(self, SIGKILL);
      _exit(0);
    }
    sleep_s(5);
  });
  auto c = changes(cap, cap.pid, port);
  ASSERT_EQ(c.size(), 2u) << dump(cap);
  expect_start(c[0], cap.pid, port);
  EXPECT_FALSE(c[1].rec.listening);
  EXPECT_TRUE(c[1].rec.exiting) << dump(cap);
  EXPECT_EQ(c[1].rec.comm, "w502-owner");
  EXPECT_EQ(c[1].rec.cookie, c[0].rec.cookie);
  EXPECT_LT(c[1].boot_ns - c[0].boot_ns, 2000000000u);
  // The close follows the kill, and (files close after sched_process_exit) the exit record too.
  uint64_t exit_ns = 0;
  for (const auto &ev : cap.events)
    if (const auto *x = std::get_if<ProcessExit>(&ev.record); x && x->pid == uint32_t(cap.pid))
      exit_ns = ev.boot_ns;
  ASSERT_NE(exit_ns, 0u) << dump(cap);
  EXPECT_GE(c[1].boot_ns, exit_ns);
}
