// why502::Address: one formatter, one parser, IPv4-mapped addresses folded once.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include "why502/address.h"
#include "why502/host.h"

using why502::Address;

TEST(Address, TextRoundTrips) {
  for (const char *s : {"127.0.0.1:8080", "[::1]:80", "0.0.0.0:0", "[::]:443", "unix:/run/php/php-fpm.sock",
                        "unix:@abstract", "[2001:db8::1]:65535"}) {
    auto a = Address::parse(s);
    ASSERT_TRUE(a) << s;
    EXPECT_EQ(a->str(), s);
  }
}

TEST(Address, MappedIpv4IsIpv4FromTextAndFromKernelBytes) {
  auto text = Address::parse("[::ffff:10.1.2.3]:80");
  ASSERT_TRUE(text);
  EXPECT_EQ(text->kind, Address::Kind::Inet4);
  EXPECT_EQ(text->str(), "10.1.2.3:80");
  uint8_t bytes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
  EXPECT_EQ(Address::inet(AF_INET6, bytes, 80), *text);
  EXPECT_EQ(*text, Address("10.1.2.3", 80));
}

TEST(Address, WhatIsNotAnAddressIsNullopt) {
  for (const char *s : {"", "127.0.0.1", "localhost:80", "::1:80", "[::1]80", "1.2.3.4:65536", "1.2.3.4:8a",
                        "1.2.3.4:", "unix:", "backend", "[::1]:123456"})
    EXPECT_FALSE(Address::parse(s)) << s;
  EXPECT_THROW(Address("example.org", 80), std::invalid_argument);
}

TEST(Address, ListenersServeTheirAddressAndWildcards) {
  auto a = [](const char *s) { return *Address::parse(s); };
  EXPECT_TRUE(a("0.0.0.0:80").serves(a("127.0.0.1:80")));
  EXPECT_TRUE(a("[::]:80").serves(a("127.0.0.1:80"))); // dual stack
  EXPECT_TRUE(a("[::]:80").serves(a("[::1]:80")));
  EXPECT_FALSE(a("0.0.0.0:80").serves(a("[::1]:80")));
  EXPECT_FALSE(a("127.0.0.1:80").serves(a("127.0.0.1:81")));
  EXPECT_FALSE(a("127.0.0.2:80").serves(a("127.0.0.1:80")));
  EXPECT_TRUE(a("[::ffff:127.0.0.1]:80").serves(a("127.0.0.1:80")));
  EXPECT_TRUE(a("127.0.0.1:80").serves(a("[::ffff:127.0.0.1]:80")));
  EXPECT_TRUE(a("unix:/run/a.sock").serves(a("unix:/run/a.sock")));
  EXPECT_FALSE(a("unix:/run/a.sock").serves(a("unix:/run/b.sock")));
  EXPECT_FALSE(a("unix:/run/a.sock").serves(a("127.0.0.1:80")));
  // listener_serves: addresses through Address; an upstream{} name only equals itself.
  EXPECT_TRUE(why502::listener_serves("[::]:8080", "127.0.0.1:8080"));
  EXPECT_TRUE(why502::listener_serves("backend", "backend"));
  EXPECT_FALSE(why502::listener_serves("0.0.0.0:8080", "backend"));
}
