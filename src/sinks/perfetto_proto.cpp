#include "sinks/perfetto_proto.h"

#include <stdexcept>

namespace why502::perfetto::proto {

namespace {
// Room reserved for a nested message's length: 4 varint bytes = up to 256 MiB.
constexpr size_t kLengthReserve = 4;
constexpr size_t kMaxNestedSize = (size_t{1} << (7 * kLengthReserve)) - 1;
} // namespace

void append_varint(std::string &out, uint64_t v) {
  char buf[10];
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out.append(buf, n);
}

size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

size_t Encoder::begin_nested(uint32_t field) {
  tag(field, WireType::kLengthDelimited);
  size_t token = out_.size();
  out_.append(kLengthReserve, '\0');
  return token;
}

void Encoder::end_nested(size_t token) {
  const size_t body_start = token + kLengthReserve;
  const size_t len = out_.size() - body_start;
  if (len > kMaxNestedSize)
    throw std::length_error("perfetto: nested message larger than 256 MiB");
  const size_t n = varint_size(len);
  // Shift the body down over the unused part of the reservation, then write
  // the minimal varint: canonical output, no redundant length bytes.
  if (n < kLengthReserve) {
    char *p = out_.data();
    std::memmove(p + token + n, p + body_start, len);
    out_.resize(token + n + len);
  }
  uint64_t v = len;
  for (size_t i = 0; i < n; ++i) {
    out_[token + i] = static_cast<char>((v & 0x7f) | (i + 1 < n ? 0x80 : 0));
    v >>= 7;
  }
}

} // namespace why502::perfetto::proto
