// Wire-level tests of the hand-written protobuf encoder behind the Perfetto
// sink: known bytes from the protobuf encoding spec, and byte equality with
// what protoc itself encodes from the same message in text format.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "sinks/perfetto_fields.h"
#include "sinks/perfetto_proto.h"

namespace {

using why502::perfetto::proto::append_varint;
using why502::perfetto::proto::Encoder;
using why502::perfetto::proto::Nested;
using why502::perfetto::proto::unzigzag64;
using why502::perfetto::proto::varint_size;
using why502::perfetto::proto::zigzag64;

std::vector<uint8_t> bytes_of(const std::string &s) { return {s.begin(), s.end()}; }

std::vector<uint8_t> varint(uint64_t v) {
  std::string s;
  append_varint(s, v);
  EXPECT_EQ(s.size(), varint_size(v));
  return bytes_of(s);
}

TEST(PerfettoProto, VarintKnownBytes) {
  EXPECT_EQ(varint(0), (std::vector<uint8_t>{0x00}));
  EXPECT_EQ(varint(1), (std::vector<uint8_t>{0x01}));
  EXPECT_EQ(varint(127), (std::vector<uint8_t>{0x7f}));
  EXPECT_EQ(varint(128), (std::vector<uint8_t>{0x80, 0x01}));
  EXPECT_EQ(varint(150), (std::vector<uint8_t>{0x96, 0x01})); // the protobuf docs' example
  EXPECT_EQ(varint(300), (std::vector<uint8_t>{0xac, 0x02}));
  EXPECT_EQ(varint(16384), (std::vector<uint8_t>{0x80, 0x80, 0x01}));
  EXPECT_EQ(varint(UINT64_MAX), (std::vector<uint8_t>{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}));
}

TEST(PerfettoProto, ZigZag) {
  EXPECT_EQ(zigzag64(0), 0u);
  EXPECT_EQ(zigzag64(-1), 1u);
  EXPECT_EQ(zigzag64(1), 2u);
  EXPECT_EQ(zigzag64(-2), 3u);
  EXPECT_EQ(zigzag64(2147483647), 4294967294u);
  EXPECT_EQ(zigzag64(-2147483648LL), 4294967295u);
  EXPECT_EQ(zigzag64(INT64_MIN), UINT64_MAX);
  for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{12345}, INT64_MIN, INT64_MAX})
    EXPECT_EQ(unzigzag64(zigzag64(v)), v);
}

TEST(PerfettoProto, FieldEncodings) {
  std::string out;
  Encoder e(out);
  // clang-format off
  e.uint(1, 150);            // 08 96 01
  e.int64(2, -1);            // 10 + ten bytes
  e.sint64(3, -1);           // 18 01
  e.bytes(2, "testing");     // 12 07 74 65 73 74 69 6e 67
  e.fixed64(47, 0x0102030405060708ull); // tag 47<<3|1 = 377 = f9 02, little endian
  e.boolean(87, true);       // tag 87<<3 = 696 = b8 05, 01
  e.dbl(5, 1.0);             // 29 + 00 00 00 00 00 00 f0 3f
  const std::vector<uint8_t> want = {
      0x08, 0x96, 0x01,
      0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
      0x18, 0x01,
      0x12, 0x07, 't', 'e', 's', 't', 'i', 'n', 'g',
      0xf9, 0x02, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
      0xb8, 0x05, 0x01,
      0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f};
  // clang-format on
  EXPECT_EQ(bytes_of(out), want);
}

// Nested lengths are reserved as 4 bytes and compacted on close: check every
// varint length boundary, including nested-in-nested.
TEST(PerfettoProto, NestedLengthsAreMinimal) {
  for (size_t len : {size_t{0}, size_t{1}, size_t{127}, size_t{128}, size_t{16383}, size_t{16384}, size_t{2097152}}) {
    std::string out;
    Encoder e(out);
    {
      Nested outer(e, 1);
      Nested inner(e, 2);
      out.append(len, 'x');
    }
    std::string want;
    std::string inner;
    Encoder ie(inner);
    ie.bytes(2, std::string(len, 'x'));
    Encoder we(want);
    we.bytes(1, inner);
    ASSERT_EQ(out.size(), want.size()) << "len " << len;
    EXPECT_TRUE(out == want) << "len " << len;
  }
}

// ---- byte equality with protoc --encode -------------------------------------

std::string find_protoc() {
  if (const char *env = std::getenv("WHY502_PROTOC"); env && *env)
    return env;
  std::stringstream path(std::getenv("PATH") ? std::getenv("PATH") : "");
  std::string dir;
  while (std::getline(path, dir, ':')) {
    auto p = std::filesystem::path(dir) / "protoc";
    if (::access(p.c_str(), X_OK) == 0)
      return p.string();
  }
  return {};
}

std::filesystem::path proto_dir() {
  return std::filesystem::path(WHY502_FIXTURES).parent_path().parent_path() / "proto";
}

TEST(PerfettoProto, MatchesProtocEncoding) {
  const std::string protoc = find_protoc();
  ASSERT_FALSE(protoc.empty()) << "protoc not found in PATH: install protobuf-compiler or set WHY502_PROTOC";
  namespace fl = why502::perfetto::fields;

  std::string pkt;
  Encoder e(pkt);
  e.uint(fl::packet::kTimestamp, 123456789012);
  e.uint(fl::packet::kTrustedPacketSequenceId, 7);
  {
    Nested te(e, fl::packet::kTrackEvent);
    {
      Nested d(e, fl::track_event::kDebugAnnotations);
      e.uint(fl::debug_annotation::kNameIid, 3);
      e.int64(fl::debug_annotation::kIntValue, -5);
    }
    e.uint(fl::track_event::kType, fl::track_event::kTypeInstant);
    e.uint(fl::track_event::kNameIid, 1);
    e.uint(fl::track_event::kTrackUuid, 42);
    e.fixed64(fl::track_event::kTerminatingFlowIds, 99);
  }
  {
    Nested id(e, fl::packet::kInternedData);
    Nested n(e, fl::interned_data::kEventNames);
    e.uint(fl::interned_data::kEntryIid, 1);
    e.bytes(fl::interned_data::kEntryName, "502 no_listener");
  }
  e.uint(fl::packet::kSequenceFlags, fl::packet::kSeqNeedsIncrementalState);

  const std::string text = R"(
timestamp: 123456789012
trusted_packet_sequence_id: 7
track_event {
  debug_annotations { name_iid: 3 int_value: -5 }
  type: TYPE_INSTANT
  name_iid: 1
  track_uuid: 42
  terminating_flow_ids: 99
}
interned_data { event_names { iid: 1 name: "502 no_listener" } }
sequence_flags: 2
)";
  const auto dir = std::filesystem::temp_directory_path() / ("why502_perfetto_proto_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  { std::ofstream(dir / "in.txt") << text; }
  const std::string cmd = "'" + protoc + "' --encode=perfetto.protos.TracePacket -I '" + proto_dir().string() + "' '" +
                          (proto_dir() / "perfetto_trace.proto").string() + "' < '" + (dir / "in.txt").string() +
                          "' > '" + (dir / "out.bin").string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(dir / "out.bin", std::ios::binary);
  const std::string want((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove_all(dir);
  EXPECT_EQ(bytes_of(pkt), bytes_of(want));
}

} // namespace
