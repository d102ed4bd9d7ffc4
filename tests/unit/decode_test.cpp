// The ring-buffer decoder and the JSON capture format, on hand-built records.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "base/time.h"
#include "why502/events.h"
#include "why502/kernel_event.h"

using namespace why502;

namespace {

template <typename T> std::span<const uint8_t> bytes(const T &rec) {
  return {reinterpret_cast<const uint8_t *>(&rec), sizeof(rec)};
}

why502_conn_fail sample_conn_fail() {
  why502_conn_fail r = {};
  r.hdr.kind = WHY502_EV_CONN_FAIL;
  r.hdr.ts_ns = 5000;
  r.hdr.cpu = 1;
  r.tuple.family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", r.tuple.saddr);
  inet_pton(AF_INET, "10.1.2.3", r.tuple.daddr);
  r.tuple.sport = 40000;
  r.tuple.dport = 8080;
  r.pid = 1234;
  r.tid = 1235;
  strcpy(r.comm, "nginx");
  r.failure = WHY502_FAIL_RST_IN_SYN_SENT;
  r.sk_err = ECONNREFUSED;
  r.last_state = 2;
  r.ts_syn_sent = 1000;
  r.ts_reset = 2000;
  r.ts_close = 2100;
  return r;
}

} // namespace

TEST(Decode, ConnFailIPv4) {
  auto raw = sample_conn_fail();
  auto ev = decode_record(bytes(raw));
  ASSERT_TRUE(ev) << ev.error();
  EXPECT_EQ(ev->boot_ns, 5000u);
  EXPECT_EQ(ev->cpu, 1u);
  EXPECT_FALSE(ev->host);
  const auto &c = std::get<ConnFail>(ev->record);
  EXPECT_EQ(c.failure, ConnFailure::RstInSynSent);
  EXPECT_EQ(c.pid, 1234u);
  EXPECT_EQ(c.tid, 1235u);
  EXPECT_EQ(c.comm, "nginx");
  EXPECT_EQ(c.local.str(), "127.0.0.1:40000");
  EXPECT_EQ(c.remote.str(), "10.1.2.3:8080");
  EXPECT_EQ(c.family, 4);
  EXPECT_EQ(c.sk_err, ECONNREFUSED);
  EXPECT_EQ(c.last_state, "SYN_SENT");
  EXPECT_EQ(c.ts_reset, 2000u);
}

TEST(Decode, ConnFailIPv6AndMappedIPv4) {
  auto raw = sample_conn_fail();
  raw.tuple.family = AF_INET6;
  inet_pton(AF_INET6, "::1", raw.tuple.saddr);
  inet_pton(AF_INET6, "::ffff:192.168.0.9", raw.tuple.daddr);
  auto ev = decode_record(bytes(raw));
  ASSERT_TRUE(ev) << ev.error();
  const auto &c = std::get<ConnFail>(ev->record);
  EXPECT_EQ(c.family, 6);
  EXPECT_EQ(c.local.str(), "[::1]:40000");
  EXPECT_EQ(c.remote.str(), "192.168.0.9:8080");
}

TEST(Decode, SyscallErrUnixPathAndAbstract) {
  why502_syscall_err r = {};
  r.hdr.kind = WHY502_EV_SYSCALL_ERR;
  r.pid = 7;
  r.syscall = WHY502_SYS_CONNECT;
  r.err = EAGAIN;
  r.family = AF_UNIX;
  strcpy(r.unix_path, "/run/php/php8.2-fpm.sock");
  auto ev = decode_record(bytes(r));
  ASSERT_TRUE(ev) << ev.error();
  const auto &s = std::get<SyscallErr>(ev->record);
  EXPECT_EQ(s.target, "unix:/run/php/php8.2-fpm.sock");
  EXPECT_EQ(s.err, EAGAIN);
  EXPECT_EQ(s.syscall, Syscall::Connect);

  // A path that fills sun_path exactly has no terminator: never read past it.
  memset(r.unix_path, 'a', sizeof(r.unix_path));
  ev = decode_record(bytes(r));
  ASSERT_TRUE(ev);
  EXPECT_EQ(std::get<SyscallErr>(ev->record).target.size(), 5 + sizeof(r.unix_path));
}

TEST(Decode, ExitStatusSplitsCodeAndSignal) {
  why502_exit r = {};
  r.hdr.kind = WHY502_EV_EXIT;
  r.hdr.flags = WHY502_FLAG_HOST;
  r.pid = 99;
  strcpy(r.comm, "gunicorn");
  r.exit_code = 9; // killed by SIGKILL
  auto ev = decode_record(bytes(r));
  ASSERT_TRUE(ev);
  EXPECT_TRUE(ev->host);
  auto x = std::get<ProcessExit>(ev->record);
  EXPECT_EQ(x.signal, 9);
  EXPECT_EQ(x.exit_code, 0);
  r.exit_code = 3 << 8; // exit(3)
  x = std::get<ProcessExit>(decode_record(bytes(r))->record);
  EXPECT_EQ(x.signal, 0);
  EXPECT_EQ(x.exit_code, 3);
  r.exit_code = 0x80 | 11; // SIGSEGV with core
  x = std::get<ProcessExit>(decode_record(bytes(r))->record);
  EXPECT_EQ(x.signal, 11);
  EXPECT_TRUE(x.core_dumped);
}

TEST(Decode, OomPagesBecomeKilobytes) {
  why502_oom_victim r = {};
  r.hdr.kind = WHY502_EV_OOM_VICTIM;
  r.pid = 4321;
  strcpy(r.comm, "gunicorn");
  r.anon_rss_pages = 1000;
  auto ev = decode_record(bytes(r));
  ASSERT_TRUE(ev);
  EXPECT_EQ(std::get<OomVictim>(ev->record).anon_rss_kb, 4000u);
}

TEST(Decode, RejectsTruncatedAndUnknownRecords) {
  auto raw = sample_conn_fail();
  auto short_one = decode_record(bytes(raw).first(sizeof(raw) - 1));
  EXPECT_FALSE(short_one);
  EXPECT_NE(short_one.error().find("truncated"), std::string::npos);
  EXPECT_FALSE(decode_record(bytes(raw).first(4)));
  raw.hdr.kind = 77;
  auto unknown = decode_record(bytes(raw));
  EXPECT_FALSE(unknown);
  EXPECT_NE(unknown.error().find("unknown record kind 77"), std::string::npos);
  raw.hdr.kind = WHY502_EV_CONN_FAIL;
  raw.failure = 42;
  EXPECT_FALSE(decode_record(bytes(raw)));
}

TEST(Decode, JsonRoundTripKeepsEveryField) {
  std::vector<std::vector<uint8_t>> records;
  auto add = [&](const auto &r) {
    auto b = bytes(r);
    records.emplace_back(b.begin(), b.end());
  };
  add(sample_conn_fail());
  why502_signal sig = {};
  sig.hdr.kind = WHY502_EV_SIGNAL;
  sig.hdr.flags = WHY502_FLAG_HOST;
  sig.sig = 15;
  sig.target_pid = 50;
  strcpy(sig.target_comm, "php-fpm8.2");
  sig.sender_pid = 1;
  strcpy(sig.sender_comm, "systemd");
  add(sig);
  why502_drop drop = {};
  drop.hdr.kind = WHY502_EV_DROP;
  drop.tuple.family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", drop.tuple.saddr);
  inet_pton(AF_INET, "127.0.0.1", drop.tuple.daddr);
  drop.tuple.sport = 1;
  drop.tuple.dport = 2;
  drop.reason = 12;
  drop.reason_code = WHY502_DROP_NETFILTER_DROP;
  add(drop);
  why502_listen_change lc = {};
  lc.hdr.kind = WHY502_EV_LISTEN_CHANGE;
  lc.hdr.flags = WHY502_FLAG_HOST;
  lc.pid = 77;
  lc.tid = 78;
  strcpy(lc.comm, "gunicorn");
  lc.family = AF_INET6;
  lc.port = 8000;
  lc.netns = 4026531840u;
  lc.cookie = 123456789012ull;
  lc.exiting = 1;
  add(lc);
  for (const auto &rec : records) {
    auto ev = decode_record(rec);
    ASSERT_TRUE(ev) << ev.error();
    ev->wall_ns = 1764522121123456000; // 2025-11-30T17:02:01.123456Z
    auto j = to_json(*ev);
    EXPECT_EQ(j["time"], "2025-11-30T17:02:01.123456Z");
    EXPECT_EQ(j["type"], "event");
    auto back = event_from_json(nlohmann::json::parse(j.dump()));
    ASSERT_TRUE(back) << back.error() << " in " << j.dump();
    EXPECT_EQ(to_json(*back), j);
  }
}

TEST(Decode, ListenChangeStartAndStop) {
  why502_listen_change r = {};
  r.hdr.kind = WHY502_EV_LISTEN_CHANGE;
  r.hdr.flags = WHY502_FLAG_HOST;
  r.hdr.ts_ns = 900;
  r.pid = 4242;
  r.tid = 4243;
  strcpy(r.comm, "python3");
  r.family = AF_INET;
  r.port = 9000;
  inet_pton(AF_INET, "127.0.0.1", r.addr);
  r.netns = 4026531840u;
  r.cookie = 99;
  r.listening = 1;
  auto ev = decode_record(bytes(r));
  ASSERT_TRUE(ev) << ev.error();
  EXPECT_TRUE(ev->host);
  EXPECT_EQ(event_name(ev->record), "listen_change");
  auto l = std::get<ListenChange>(ev->record);
  EXPECT_EQ(l.pid, 4242u);
  EXPECT_EQ(l.tid, 4243u);
  EXPECT_EQ(l.comm, "python3");
  EXPECT_EQ(l.family, 4);
  EXPECT_EQ(l.local.str(), "127.0.0.1:9000");
  EXPECT_EQ(l.netns, 4026531840u);
  EXPECT_EQ(l.cookie, 99u);
  EXPECT_TRUE(l.listening);
  EXPECT_FALSE(l.exiting);
  // The wildcard IPv6 listener, stopped by its owner's exit.
  r.family = AF_INET6;
  std::memset(r.addr, 0, sizeof(r.addr));
  r.listening = 0;
  r.exiting = 1;
  l = std::get<ListenChange>(decode_record(bytes(r))->record);
  EXPECT_EQ(l.family, 6);
  EXPECT_EQ(l.local.str(), "[::]:9000");
  EXPECT_FALSE(l.listening);
  EXPECT_TRUE(l.exiting);
  // Truncated, or a family the program never sends: refused and counted by the caller.
  auto truncated = decode_record(bytes(r).first(sizeof(r) - 8));
  EXPECT_FALSE(truncated);
  EXPECT_NE(truncated.error().find("truncated listen_change"), std::string::npos);
  r.family = AF_UNIX;
  EXPECT_FALSE(decode_record(bytes(r)));
}

TEST(Decode, JsonRejectsMalformedObjects) {
  EXPECT_FALSE(event_from_json(nlohmann::json::parse(R"({"event":"conn_fail"})")));
  auto bogus = event_from_json(nlohmann::json::parse(R"({"event":"bogus","boot_ns":1,"time":"2026-01-01T00:00:00Z"})"));
  EXPECT_FALSE(bogus);
  EXPECT_NE(bogus.error().find("bogus"), std::string::npos);
  EXPECT_FALSE(event_from_json(nlohmann::json::parse(R"({"event":"watch","boot_ns":1,"time":"yesterday"})")));
}

TEST(Decode, WallTimeParsesWhatItFormats) {
  int64_t t = 1764522121000001000;
  auto s = base::format_wall_time(t);
  EXPECT_EQ(s, "2025-11-30T17:02:01.000001Z");
  EXPECT_EQ(base::parse_wall_time(s), t);
  EXPECT_FALSE(base::parse_wall_time("2025-11-30 17:02:01"));
}

TEST(Decode, NamesForHumans) {
  EXPECT_EQ(errno_name(ECONNREFUSED), "ECONNREFUSED");
  EXPECT_EQ(errno_name(EADDRNOTAVAIL), "EADDRNOTAVAIL");
  EXPECT_EQ(signal_name(9), "SIGKILL");
  EXPECT_EQ(signal_name(15), "SIGTERM");
  EXPECT_EQ(tcp_state_name(1), "ESTABLISHED");
  EXPECT_EQ(tcp_state_name(99), "STATE_99");
}

// A task name is any bytes its process chose (prctl PR_SET_NAME): the decoder makes it valid
// UTF-8, so the JSON writer never meets an invalid byte (issue 8: one such comm stopped `events`).
TEST(Decode, NonUtf8CommBecomesReplacementCharacters) {
  auto raw = sample_conn_fail();
  std::memset(raw.comm, 0, sizeof(raw.comm));
  std::memcpy(raw.comm, "\xff\xfe\x1b[2J", 6);
  auto ev = decode_record(bytes(raw));
  ASSERT_TRUE(ev) << ev.error();
  EXPECT_EQ(std::get<ConnFail>(ev->record).comm, "\xEF\xBF\xBD\xEF\xBF\xBD\x1b[2J");
  // valid UTF-8 now, so a plain dump() works; the ESC is JSON-escaped
  EXPECT_EQ(to_json(*ev).at("comm").dump(), "\"\xEF\xBF\xBD\xEF\xBF\xBD\\u001b[2J\"");
}

TEST(Decode, UnixListenerExitPathAbstractNameAndJson) {
  why502_unix_listener_exit r = {};
  r.hdr.kind = WHY502_EV_UNIX_LISTENER_EXIT;
  r.hdr.flags = WHY502_FLAG_HOST;
  r.hdr.ts_ns = 700;
  r.pid = 5150;
  r.fd = 3;
  strcpy(r.comm, "php-fpm");
  r.inode = 81234;
  r.netns = 4026531840u;
  const char path[] = "/run/php/fpm.sock";
  memcpy(r.path, path, sizeof(path));
  r.path_len = sizeof(path); // the kernel's length may count the NUL: it stops at the first
  auto ev = decode_record(bytes(r));
  ASSERT_TRUE(ev) << ev.error();
  EXPECT_TRUE(ev->host);
  EXPECT_EQ(event_name(ev->record), "unix_listener_exit");
  auto u = std::get<UnixListenerExit>(ev->record);
  EXPECT_EQ(u.pid, 5150u);
  EXPECT_EQ(u.fd, 3u);
  EXPECT_EQ(u.comm, "php-fpm");
  EXPECT_EQ(u.address, "unix:/run/php/fpm.sock");
  EXPECT_EQ(u.inode, 81234u);
  EXPECT_EQ(u.netns, 4026531840u);
  // JSON out and back: every field.
  auto back = event_from_json(to_json(*ev));
  ASSERT_TRUE(back) << back.error();
  auto u2 = std::get<UnixListenerExit>(back->record);
  EXPECT_EQ(u2.address, u.address);
  EXPECT_EQ(u2.inode, u.inode);
  EXPECT_EQ(u2.fd, u.fd);
  EXPECT_EQ(u2.netns, u.netns);
  // An abstract name: a leading NUL, then exactly path_len - 1 bytes (NULs inside are bytes too).
  std::memset(r.path, 0, sizeof(r.path));
  memcpy(r.path + 1, "app", 3);
  r.path_len = 4;
  EXPECT_EQ(std::get<UnixListenerExit>(decode_record(bytes(r))->record).address, "unix:@app");
  // A path_len past the buffer is clamped, never read beyond it.
  r.path_len = 60000;
  EXPECT_TRUE(decode_record(bytes(r)));
  auto truncated = decode_record(bytes(r).first(sizeof(r) - 8));
  EXPECT_FALSE(truncated);
  EXPECT_NE(truncated.error().find("truncated unix_listener_exit"), std::string::npos);
}
