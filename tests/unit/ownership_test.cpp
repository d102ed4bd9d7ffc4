// Listener ownership from the kernel's listen_change records (Facts), with host samples as detail.
#include <gtest/gtest.h>

#include "correlate/rules.h"

using namespace why502;

namespace {

constexpr int64_t kSec = 1000000000;
constexpr int64_t kMs = 1000000;
constexpr int64_t kT = 1764522120 * kSec;

KernelEvent listen_change(int64_t wall_ns, uint32_t pid, const std::string &comm, const std::string &addr,
                          uint16_t port, bool listening, bool exiting = false, uint64_t cookie = 0) {
  ListenChange l;
  l.pid = l.tid = pid;
  l.comm = comm;
  l.local = {addr, port};
  l.family = 4;
  l.netns = 4026531840u;
  l.cookie = cookie ? cookie : pid;
  l.listening = listening;
  l.exiting = exiting;
  KernelEvent ev;
  ev.wall_ns = wall_ns;
  ev.boot_ns = uint64_t(wall_ns - 1000 * kSec);
  ev.host = true;
  ev.record = l;
  return ev;
}

HostSample sample(int64_t wall_ns, std::vector<Listener> listeners = {}) {
  HostSample s;
  s.wall_ns = wall_ns;
  s.listeners = std::move(listeners);
  return s;
}

} // namespace

TEST(Ownership, AListenerThatLived100msBetweenTwoSamplesOwnsThePort) {
  Facts f;
  f.add_sample(sample(kT));
  f.add_kernel(listen_change(kT + 200 * kMs, 555, "python3", "127.0.0.1", 8080, true));
  f.add_kernel(listen_change(kT + 300 * kMs, 555, "python3", "127.0.0.1", 8080, false, true));
  f.add_sample(sample(kT + kSec));

  auto owners = f.owners_of("127.0.0.1:8080", kT + 250 * kMs);
  ASSERT_EQ(owners.size(), 1u);
  EXPECT_EQ(owners.at(555), "python3");
  // After it closed it still owned the port (the death rule looks back from the failure).
  EXPECT_EQ(f.owners_of("127.0.0.1:8080", kT + 400 * kMs).size(), 1u);
  // Not another port or address.
  EXPECT_TRUE(f.owners_of("127.0.0.1:8081", kT + 250 * kMs).empty());
  EXPECT_TRUE(f.owners_of("10.0.0.1:8080", kT + 250 * kMs).empty());
  EXPECT_TRUE(f.owners_of("unix:/run/app.sock", kT + 250 * kMs).empty());

  auto l = f.listener_at("127.0.0.1:8080", kT + 250 * kMs);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->address, "127.0.0.1:8080");
  ASSERT_EQ(l->owners.size(), 1u);
  EXPECT_EQ(l->owners[0], (ProcessRef{555, "python3"}));
  // [start, end): nothing listens at the close, nor before the start.
  EXPECT_FALSE(f.listener_at("127.0.0.1:8080", kT + 300 * kMs));
  EXPECT_FALSE(f.listener_at("127.0.0.1:8080", kT + 100 * kMs));

  auto spans = f.listen_spans("127.0.0.1:8080", kT, kT + kSec);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].start_ns, kT + 200 * kMs);
  EXPECT_EQ(spans[0].end_ns, kT + 300 * kMs);
  EXPECT_TRUE(spans[0].ended_by_exit);
  ASSERT_TRUE(spans[0].closer);
  EXPECT_EQ(spans[0].closer->pid, 555u);
  // The samples never saw it; the kernel did.
  EXPECT_TRUE(f.listener_seen("127.0.0.1:8080", kT, kT + kSec));
  EXPECT_FALSE(f.listener_seen("127.0.0.1:8080", kT + 200 * kMs, kT + kSec)); // started at, not after, from
}

TEST(Ownership, AListenerStartedAfterTheFailureIsNotTheOwner) {
  Facts f;
  f.add_kernel(listen_change(kT + 500 * kMs, 600, "python3", "0.0.0.0", 8080, true));
  EXPECT_TRUE(f.owners_of("127.0.0.1:8080", kT + 400 * kMs).empty());
  EXPECT_FALSE(f.listener_at("127.0.0.1:8080", kT + 400 * kMs));
  // The wildcard listener serves the loopback upstream once it exists.
  EXPECT_EQ(f.owners_of("127.0.0.1:8080", kT + 500 * kMs).count(600), 1u);
  EXPECT_EQ(f.listener_at("127.0.0.1:8080", kT + 600 * kMs)->owners.front().pid, 600u);
}

TEST(Ownership, SamplesAddTheProcessesSharingTheSocket) {
  Facts f;
  f.add_kernel(listen_change(kT, 101, "gunicorn", "127.0.0.1", 8000, true));
  Listener l;
  l.address = "127.0.0.1:8000";
  l.depth = 3;
  l.max = 128;
  l.owners = {{100, "gunicorn"}, {101, "gunicorn"}, {102, "gunicorn"}};
  f.add_sample(sample(kT + kSec, {l}));
  auto at = f.listener_at("127.0.0.1:8000", kT + kSec + 10 * kMs);
  ASSERT_TRUE(at);
  // The kernel's owner (who called listen()) first, then the other holders; the queue from the sample.
  ASSERT_EQ(at->owners.size(), 3u);
  EXPECT_EQ(at->owners[0].pid, 101u);
  EXPECT_EQ(at->owners[1].pid, 100u);
  EXPECT_EQ(at->owners[2].pid, 102u);
  EXPECT_EQ(at->depth, 3u);
  EXPECT_EQ(f.owners_of("127.0.0.1:8000", kT + 2 * kSec).size(), 3u);
}

TEST(Ownership, TheServerThatInheritedTheSocketIsNamedNotTheLauncher) {
  // A launcher calls listen() and execs the server with the socket; the server's exit closes it.
  Facts f;
  f.add_kernel(listen_change(kT, 50, "launcher", "127.0.0.1", 8001, true, false, 7));
  f.add_kernel(listen_change(kT + 200 * kMs, 51, "server", "127.0.0.1", 8001, false, true, 7));
  auto at = f.listener_at("127.0.0.1:8001", kT + 100 * kMs);
  ASSERT_TRUE(at);
  ASSERT_EQ(at->owners.size(), 2u);
  EXPECT_EQ(at->owners[0], (ProcessRef{51, "server"}));
  EXPECT_EQ(at->owners[1], (ProcessRef{50, "launcher"}));
  auto owners = f.owners_of("127.0.0.1:8001", kT + 300 * kMs);
  EXPECT_EQ(owners.size(), 2u);
  // A sample while it served shows the holders: the launcher no longer holds it.
  Listener l;
  l.address = "127.0.0.1:8001";
  l.owners = {{51, "server"}};
  f.add_sample(sample(kT + 150 * kMs, {l}));
  at = f.listener_at("127.0.0.1:8001", kT + 100 * kMs);
  ASSERT_EQ(at->owners.size(), 1u);
  EXPECT_EQ(at->owners[0].pid, 51u);
}

TEST(Ownership, ASampleOfAnEarlierOwnerDoesNotLeakIntoALaterSpan) {
  Facts f;
  Listener old;
  old.address = "127.0.0.1:8080";
  old.owners = {{77, "python3"}};
  f.add_sample(sample(kT, {old}));
  f.add_kernel(listen_change(kT + 100 * kMs, 77, "python3", "127.0.0.1", 8080, false, true, 1));
  f.add_kernel(listen_change(kT + 200 * kMs, 78, "python3", "127.0.0.1", 8080, true, false, 2));
  auto at = f.listener_at("127.0.0.1:8080", kT + 250 * kMs);
  ASSERT_TRUE(at);
  ASSERT_EQ(at->owners.size(), 1u);
  EXPECT_EQ(at->owners[0].pid, 78u);
}

TEST(Ownership, AStopWithoutAStartNamesTheCloserAsOwner) {
  // Listening since before why502 started; its owner's exit closed it.
  Facts f;
  f.add_kernel(listen_change(kT, 42, "node", "::", 3000, false, true));
  auto owners = f.owners_of("[::1]:3000", kT + kSec);
  ASSERT_EQ(owners.size(), 1u);
  EXPECT_EQ(owners.at(42), "node");
  EXPECT_TRUE(f.listener_at("[::1]:3000", kT - kSec)); // it was listening before
  EXPECT_FALSE(f.listener_at("[::1]:3000", kT + kSec));
}

TEST(Ownership, StopsPairWithTheirStartBySocketCookie) {
  // Two SO_REUSEPORT listeners on one port; the older one closes.
  Facts f;
  f.add_kernel(listen_change(kT, 10, "app", "127.0.0.1", 9000, true, false, 1000));
  f.add_kernel(listen_change(kT + 10 * kMs, 11, "app", "127.0.0.1", 9000, true, false, 1001));
  f.add_kernel(listen_change(kT + 20 * kMs, 10, "app", "127.0.0.1", 9000, false, true, 1000));
  auto at = f.listener_at("127.0.0.1:9000", kT + 30 * kMs);
  ASSERT_TRUE(at);
  EXPECT_EQ(at->owners.front().pid, 11u);
  auto spans = f.listen_spans("127.0.0.1:9000", kT + 30 * kMs, kT + 30 * kMs);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].cookie, 1001u);
}

TEST(Ownership, HistoryIsBoundedAndEvictionsAreCounted) {
  Facts f;
  f.add_kernel(listen_change(kT, 1, "steady", "127.0.0.1", 80, true, false, 1));
  // A crash loop on another port: 9000 short-lived listeners.
  for (uint32_t i = 0; i < 9000; ++i) {
    f.add_kernel(listen_change(kT + i * kMs, 1000 + i, "loop", "127.0.0.1", 9000, true, false, 10 + i));
    f.add_kernel(listen_change(kT + i * kMs + 1, 1000 + i, "loop", "127.0.0.1", 9000, false, true, 10 + i));
  }
  EXPECT_EQ(f.ownership_evicted(), 9000u - 8192u);
  // The long-lived open listener is not pushed out by the churn.
  EXPECT_EQ(f.listener_at("127.0.0.1:80", kT + 10 * kSec)->owners.front().pid, 1u);
  // Expiry forgets ended spans, never a socket still listening, and is not an eviction.
  f.expire(kT + 20 * kSec);
  EXPECT_TRUE(f.listen_spans("127.0.0.1:9000", 0, INT64_MAX).empty());
  EXPECT_EQ(f.listen_spans("127.0.0.1:80", 0, INT64_MAX).size(), 1u);
  EXPECT_EQ(f.ownership_evicted(), 9000u - 8192u);
}

namespace {

KernelEvent unix_listener_exit(int64_t wall_ns, uint32_t pid, const std::string &comm, const std::string &address) {
  UnixListenerExit u;
  u.pid = pid;
  u.comm = comm;
  u.address = address;
  u.inode = 777;
  KernelEvent ev;
  ev.wall_ns = wall_ns;
  ev.boot_ns = uint64_t(wall_ns - 1000 * kSec);
  ev.host = true;
  ev.record = u;
  return ev;
}

KernelEvent sigkill_exit(int64_t wall_ns, uint32_t pid, const std::string &comm) {
  ProcessExit x;
  x.pid = pid;
  x.comm = comm;
  x.signal = 9;
  KernelEvent ev;
  ev.wall_ns = wall_ns;
  ev.boot_ns = uint64_t(wall_ns - 1000 * kSec);
  ev.host = true;
  ev.record = x;
  return ev;
}

} // namespace

// A unix upstream that lived between two samples: only the kernel's walk of its descriptors at its
// death names it, and the death rule finds that death.
TEST(Ownership, AUnixListenerHeldAtDeathOwnsThePathWithNoSample) {
  Facts f;
  f.add_sample(sample(kT));
  f.add_kernel(sigkill_exit(kT + 300 * kMs, 4321, "gunicorn"));
  f.add_kernel(unix_listener_exit(kT + 300 * kMs, 4321, "gunicorn", "unix:/run/app.sock"));
  f.add_sample(sample(kT + kSec));

  auto owners = f.owners_of("unix:/run/app.sock", kT + 400 * kMs);
  ASSERT_EQ(owners.size(), 1u);
  EXPECT_EQ(owners.at(4321), "gunicorn");
  EXPECT_TRUE(f.owners_of("unix:/run/other.sock", kT + 400 * kMs).empty());
  EXPECT_TRUE(f.owners_of("127.0.0.1:80", kT + 400 * kMs).empty());
  // Causality: before its death record came, nothing was known.
  EXPECT_TRUE(f.owners_of("unix:/run/app.sock", kT + 200 * kMs).empty());

  auto death = f.death_of(owners, kT, kT + 400 * kMs);
  ASSERT_TRUE(death);
  EXPECT_EQ(death->pid, 4321u);
}

// Two owners of one port died in turn (an OOM kill, then a SIGKILL of its successor): the failure
// after the second death is the second's, however telling the first record was.
TEST(Ownership, TheLatestDeathOfTheOwnersNamesTheFailure) {
  Facts f;
  OomVictim o;
  o.pid = 100;
  o.comm = "app";
  KernelEvent oom;
  oom.wall_ns = kT;
  oom.record = o;
  f.add_kernel(oom);
  f.add_kernel(sigkill_exit(kT + 10 * kMs, 100, "app"));
  f.add_kernel(sigkill_exit(kT + 5 * kSec, 200, "app"));
  auto death = f.death_of({{100, "app"}, {200, "app"}}, 0, kT + 6 * kSec);
  ASSERT_TRUE(death);
  EXPECT_EQ(death->pid, 200u);
  // Before the second death, the first (its OOM record, the most telling of that death) names it.
  death = f.death_of({{100, "app"}, {200, "app"}}, 0, kT + 1 * kSec);
  ASSERT_TRUE(death);
  EXPECT_EQ(death->pid, 100u);
  EXPECT_TRUE(std::holds_alternative<OomVictim>(death->cause->record));
}
