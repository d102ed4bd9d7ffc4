// libFuzzer target: one error.log line.
#include "why502/nginx.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  std::string_view s(reinterpret_cast<const char *>(data), size);
  why502::nginx::ParseStats st;
  if (auto l = why502::nginx::parse_error_line(s, st)) {
    // touch the derived fields so ASan sees any bad view
    volatile std::size_t n = l->upstream_address.size() + l->text.size() + l->request.size() +
                             why502::nginx::to_string(l->failure).size();
    (void)n;
  }
  return 0;
}
