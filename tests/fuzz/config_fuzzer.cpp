// libFuzzer target: an `nginx -T` dump.
#include "why502/nginx.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  std::string dump(reinterpret_cast<const char *>(data), size);
  // Most inputs should exercise the tokenizer, not stop at the missing marker.
  if (dump.rfind("# configuration file ", 0) != 0)
    dump = "# configuration file /etc/nginx/nginx.conf:\n" + dump;
  why502::nginx::ConfigParseOptions o;
  o.default_error_log = "logs/error.log";
  o.default_access_log = "logs/access.log";
  auto c = why502::nginx::parse_config(dump, o);
  for (const auto &a : c.access_logs)
    (void)c.format_for(a);
  for (const auto &p : c.passes)
    if (p.upstream)
      (void)p.upstream->servers.size();
  return 0;
}
