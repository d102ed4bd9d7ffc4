// Minimal protobuf wire-format encoder for the Perfetto sink.
//
// Hand-written on purpose: the trace writer needs only varints, fixed64 and
// length-delimited fields, and linking libprotobuf (plus generated code) into
// a tracer that runs as root on production hosts is a heavy dependency for
// ~100 lines of encoding. Field numbers live in perfetto_fields.h; the .proto
// in proto/ exists only so tests can prove wire compatibility with protoc.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace why502::perfetto::proto {

enum class WireType : uint8_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// Appends v as a base-128 varint (1..10 bytes).
void append_varint(std::string &out, uint64_t v);
// Number of bytes append_varint would produce for v.
size_t varint_size(uint64_t v);
// ZigZag mapping used by sint32/sint64 fields: 0,-1,1,-2 -> 0,1,2,3.
constexpr uint64_t zigzag64(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
constexpr int64_t unzigzag64(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

// Appends values to a growing buffer. Nested messages are opened with
// begin_nested() and closed with end_nested(): the length is reserved as a
// 4-byte varint and compacted to its minimal size when the message closes, so
// the output is canonical (byte-identical to what libprotobuf emits).
class Encoder {
public:
  explicit Encoder(std::string &out) : out_(out) {}

  void tag(uint32_t field, WireType type) {
    append_varint(out_, (static_cast<uint64_t>(field) << 3) | static_cast<uint8_t>(type));
  }
  void uint(uint32_t field, uint64_t v) {
    tag(field, WireType::kVarint);
    append_varint(out_, v);
  }
  // int32/int64/enum: negative values are sign-extended to 10 bytes, as protobuf does.
  void int64(uint32_t field, int64_t v) { uint(field, static_cast<uint64_t>(v)); }
  void sint64(uint32_t field, int64_t v) { uint(field, zigzag64(v)); }
  void boolean(uint32_t field, bool v) { uint(field, v ? 1 : 0); }
  void fixed64(uint32_t field, uint64_t v) {
    tag(field, WireType::kFixed64);
    char b[8];
    for (int i = 0; i < 8; ++i)
      b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    out_.append(b, 8);
  }
  void dbl(uint32_t field, double v) {
    uint64_t bits;
    static_assert(sizeof bits == sizeof v);
    std::memcpy(&bits, &v, sizeof bits);
    fixed64(field, bits);
  }
  void bytes(uint32_t field, std::string_view v) {
    tag(field, WireType::kLengthDelimited);
    append_varint(out_, v.size());
    out_.append(v);
  }

  // Returns a token for end_nested(). Nesting must be strictly LIFO.
  size_t begin_nested(uint32_t field);
  void end_nested(size_t token);

  std::string &buffer() { return out_; }

private:
  std::string &out_;
};

// RAII helper: closes the nested message when it goes out of scope.
class Nested {
public:
  Nested(Encoder &e, uint32_t field) : e_(e), token_(e.begin_nested(field)) {}
  ~Nested() { e_.end_nested(token_); }
  Nested(const Nested &) = delete;
  Nested &operator=(const Nested &) = delete;

private:
  Encoder &e_;
  size_t token_;
};

} // namespace why502::perfetto::proto
