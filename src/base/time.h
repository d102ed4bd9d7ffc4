// Clocks and wall-time text, for every layer: the kernel's records carry CLOCK_BOOTTIME, sinks and
// nginx's logs speak wall time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace why502::base {

int64_t wall_clock_ns(); // CLOCK_REALTIME
int64_t boot_clock_ns(); // CLOCK_BOOTTIME, the clock of every kernel record

// "2026-11-30T17:02:01.123456Z": the one wall-time format of every sink.
std::string format_wall_time(int64_t wall_ns);
// Reads that format back (fraction optional, any number of digits; "Z" or nothing after it).
std::optional<int64_t> parse_wall_time(std::string_view iso);

// This process's time zone at `wall_s` (seconds east of UTC, DST included): what nginx on this host
// writes into error.log times, which carry no zone.
int local_utc_offset_s(int64_t wall_s);
// An offset as "+09:00" / "-05:30"; and back (also "+0900", "Z"; within ±18 h).
std::string format_utc_offset(int offset_s);
std::optional<int> parse_utc_offset(std::string_view text);

} // namespace why502::base
