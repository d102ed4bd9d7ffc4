// Parsers of /proc/net/{tcp,tcp6,unix,netstat}, on lines captured from a real host
// (tests/fixtures/host/README.md says what was listening).
#include <fstream>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sstream>

#include "host/owners.h"
#include "host/proc_parse.h"

using namespace why502::host;

namespace {

std::string fixture(const std::string &name) {
  std::ifstream in(std::string(WHY502_FIXTURES) + "/host/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string &s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

} // namespace

TEST(HostProcTcp, ListenRowWithFullAcceptQueue) {
  auto row = parse_proc_net_tcp_line(
      "   0: 0100007F:46A1 00000000:0000 0A 00000000:00000004 00:00000000 00000000     0        0 42976 5 "
      "00000000b117192b 100 0 0 10 0                     ");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->local, "127.0.0.1:18081");
  EXPECT_EQ(row->state, 0x0A);
  EXPECT_EQ(row->rx_queue, 4u);
  EXPECT_EQ(row->tx_queue, 0u);
  EXPECT_EQ(row->inode, 42976u);
}

TEST(HostProcTcp, EstablishedAndTimeWaitRows) {
  auto est = parse_proc_net_tcp_line("   9: 0100007F:C928 0100007F:46A1 02 00000001:00000000 01:00000032 00000001     "
                                     "0        0 42982 2 00000000f4f6ba8f 100 0 0 1 -1                     ");
  ASSERT_TRUE(est);
  EXPECT_EQ(est->local, "127.0.0.1:51496");
  EXPECT_EQ(est->state, 0x02); // SYN_SENT: the client the full queue left waiting
  EXPECT_EQ(est->tx_queue, 1u);
  // TIME_WAIT rows are shorter and carry inode 0.
  auto tw = parse_proc_net_tcp_line("  11: 020200C0:C522 507100CB:0050 06 00000000:00000000 03:0000113E 00000000     "
                                    "0        0 0 3 00000000684f165d                                      ");
  ASSERT_TRUE(tw);
  EXPECT_EQ(tw->local, "192.0.2.2:50466");
  EXPECT_EQ(tw->inode, 0u);
}

TEST(HostProcTcp, Ipv6AnyListener) {
  auto row = parse_proc_net_tcp_line(
      "   0: 00000000000000000000000000000000:46A2 00000000000000000000000000000000:0000 0A 00000000:00000000 "
      "00:00000000 00000000     0        0 42977 1 00000000311b2be2 100 0 0 10 0");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->local, "[::]:18082");
  EXPECT_EQ(row->inode, 42977u);
}

TEST(HostProcTcp, Ipv6LoopbackWordOrder) {
  // ::1 as the kernel prints it on little endian: each 32-bit word %08X of its memory value.
  auto row = parse_proc_net_tcp_line("   0: 00000000000000000000000001000000:1F90 "
                                     "00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 "
                                     "00000000     0        0 7 1 0000000000000000 100 0 0 10 0");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->local, "[::1]:8080");
}

TEST(HostProcTcp, WholeFixtureFiles) {
  int listen = 0, parsed = 0;
  for (const auto &l : lines_of(fixture("proc_net_tcp.txt"))) {
    auto r = parse_proc_net_tcp_line(l);
    if (!r)
      continue;
    ++parsed;
    if (r->state == 0x0A)
      ++listen;
  }
  EXPECT_EQ(parsed, 12); // every row but the header
  EXPECT_EQ(listen, 2);
  auto v6 = lines_of(fixture("proc_net_tcp6.txt"));
  ASSERT_EQ(v6.size(), 2u);
  EXPECT_FALSE(parse_proc_net_tcp_line(v6[0])); // header
  EXPECT_TRUE(parse_proc_net_tcp_line(v6[1]));
}

TEST(HostProcTcp, RejectsMalformed) {
  EXPECT_FALSE(parse_proc_net_tcp_line(""));
  EXPECT_FALSE(parse_proc_net_tcp_line(
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"));
  EXPECT_FALSE(parse_proc_net_tcp_line("   0: 0100007F:46A1 00000000:0000 0A"));
  EXPECT_FALSE(parse_proc_net_tcp_line("   0: 0100ZZ7F:46A1 00000000:0000 0A 00000000:00000004 00:00000000 "
                                       "00000000     0        0 42976 5"));
  EXPECT_FALSE(parse_proc_net_tcp_line("   0: 0100007F:46A1 00000000:0000 0A 0000000000000004 00:00000000 "
                                       "00000000     0        0 42976 5"));
  EXPECT_FALSE(parse_proc_net_tcp_line("   0: 0100007F:46A1 00000000:0000 0A 00000000:00000004 00:00000000 "
                                       "00000000     0        0 -1 5"));
}

TEST(HostProcUnix, ListenerPathAndAbstract) {
  auto path = parse_proc_net_unix_line(
      "00000000c12c839c: 00000002 00000000 00010000 0001 01 42983 /tmp/why502-fixture.sock");
  ASSERT_TRUE(path);
  EXPECT_TRUE(path->listening());
  EXPECT_EQ(path->type, 1);
  EXPECT_EQ(path->state, 1);
  EXPECT_EQ(path->inode, 42983u);
  EXPECT_EQ(path->path, "/tmp/why502-fixture.sock");
  auto abs = parse_proc_net_unix_line("00000000582da2eb: 00000002 00000000 00010000 0001 01 42984 @why502-abstract");
  ASSERT_TRUE(abs);
  EXPECT_TRUE(abs->listening());
  EXPECT_EQ(abs->path, "@why502-abstract");
}

TEST(HostProcUnix, ConnectedAndUnnamed) {
  auto client = parse_proc_net_unix_line(
      "00000000fc574e08: 00000003 00000000 00000000 0001 02     0 /tmp/why502-fixture.sock");
  ASSERT_TRUE(client);
  EXPECT_FALSE(client->listening());
  EXPECT_EQ(client->state, 2);
  auto unnamed = parse_proc_net_unix_line("000000005549d3a8: 00000003 00000000 00000000 0001 03  1080");
  ASSERT_TRUE(unnamed);
  EXPECT_EQ(unnamed->inode, 1080u);
  EXPECT_EQ(unnamed->path, "");
  // A path with a space is kept whole.
  auto spaced = parse_proc_net_unix_line("0000000000000001: 00000002 00000000 00010000 0001 01 5 /run/my app.sock\n");
  ASSERT_TRUE(spaced);
  EXPECT_EQ(spaced->path, "/run/my app.sock");
}

TEST(HostProcUnix, WholeFixture) {
  int listeners = 0;
  std::vector<std::string> paths;
  for (const auto &l : lines_of(fixture("proc_net_unix.txt")))
    if (auto r = parse_proc_net_unix_line(l); r && r->listening()) {
      ++listeners;
      paths.push_back(r->path);
    }
  EXPECT_EQ(listeners, 2);
  EXPECT_EQ(paths, (std::vector<std::string>{"/tmp/why502-fixture.sock", "@why502-abstract"}));
  EXPECT_FALSE(parse_proc_net_unix_line("Num       RefCount Protocol Flags    Type St Inode Path"));
  EXPECT_FALSE(parse_proc_net_unix_line("00000000c12c839c: 00000002 00000000 00010000 0001"));
}

TEST(HostNetstat, FixtureCounters) {
  auto c = parse_proc_net_netstat(fixture("proc_net_netstat.txt"));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->listen_overflows, 21u);
  EXPECT_EQ(c->listen_drops, 21u);
}

TEST(HostNetstat, FindsColumnsByName) {
  auto c = parse_proc_net_netstat("IpExt: InNoRoutes\nIpExt: 5\n"
                                  "TcpExt: SyncookiesSent ListenDrops Foo ListenOverflows\n"
                                  "TcpExt: 1 9 2 7\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->listen_overflows, 7u);
  EXPECT_EQ(c->listen_drops, 9u);
}

TEST(HostNetstat, RejectsMalformed) {
  EXPECT_FALSE(parse_proc_net_netstat(""));
  EXPECT_FALSE(parse_proc_net_netstat("TcpExt: ListenOverflows ListenDrops\n"));              // no values
  EXPECT_FALSE(parse_proc_net_netstat("TcpExt: ListenOverflows ListenDrops\nTcpExt: 1\n"));   // short
  EXPECT_FALSE(parse_proc_net_netstat("TcpExt: ListenOverflows ListenDrops\nTcpExt: 1 x\n")); // not a number
  EXPECT_FALSE(parse_proc_net_netstat("TcpExt: ListenOverflows\nTcpExt: 1\n"));               // no ListenDrops
}

TEST(HostFormat, InetAndUnix) {
  unsigned char any6[16] = {};
  EXPECT_EQ(format_inet(AF_INET6, any6, 80), "[::]:80");
  unsigned char lo4[4] = {127, 0, 0, 1};
  EXPECT_EQ(format_inet(AF_INET, lo4, 8080), "127.0.0.1:8080");
  EXPECT_EQ(format_unix("/run/php.sock"), "unix:/run/php.sock");
  EXPECT_EQ(format_unix(std::string_view("\0gunicorn\0x", 11)), "unix:@gunicorn@x");
}

TEST(HostOwners, SocketLinkInode) {
  EXPECT_EQ(socket_inode_of_link("socket:[42976]"), 42976u);
  EXPECT_EQ(socket_inode_of_link("socket:[]"), 0u);
  EXPECT_EQ(socket_inode_of_link("socket:[12"), 0u);
  EXPECT_EQ(socket_inode_of_link("pipe:[42976]"), 0u);
  EXPECT_EQ(socket_inode_of_link("/dev/null"), 0u);
}
