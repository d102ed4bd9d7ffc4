// Text that came from outside (logs, process names, configs, captures) on its way to a sink.
//
// Two rules, applied where the text enters and where it leaves:
//  - every string is valid UTF-8: parsers replace invalid bytes with U+FFFD (valid_utf8), and
//    json_line() replaces any that slipped through instead of throwing (nlohmann's default
//    aborts the whole run on one bad byte: type_error.316);
//  - text meant for a terminal shows control characters instead of obeying them
//    (escape_terminal): an ESC in a Referer must not recolour the screen or write the clipboard.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace why502::base {

// True when `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates U+D800–U+DFFF,
// nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

// `s` with each ill-formed sequence replaced by U+FFFD, one per "maximal subpart" (Unicode §3.9,
// the policy of the WHATWG decoder and Python's errors="replace"): a truncated but otherwise
// correct prefix ("\xe2\x82" then 'A') is one U+FFFD; a byte that can start nothing valid
// (0x80–0xC1, 0xF5–0xFF, the second byte of an overlong or surrogate form) is one U+FFFD each.
std::string valid_utf8(std::string_view s);
// The same in place; no allocation when `s` is already valid (the common case).
void make_valid_utf8(std::string &s);

// Text for a terminal: valid UTF-8 (as above) where every character a terminal would act on is
// written as visible text instead:
//  - C0 controls U+0000–U+001F (ESC included, and TAB: a tab inside one field of a report line
//    only misaligns columns and hides what was really sent) and DEL as "\xNN", the form nginx
//    itself uses in access logs, so both read the same;
//  - C1 controls U+0080–U+009F (0x9B is CSI on terminals that accept 8-bit controls) and the
//    bidirectional overrides/isolates (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069,
//    which reorder what is displayed) as "\uNNNN".
// Backslashes are kept as they are: paths and regexes stay readable.
// Callers add their own line structure ('\n') around escaped fields.
std::string escape_terminal(std::string_view s);
// The same for several lines of text: '\n' is kept, everything else as above. For messages built
// of lines (describe()) whose parts came from outside.
std::string escape_terminal_lines(std::string_view s);

// One JSON output line (no trailing newline): compact, UTF-8 kept as is, and invalid UTF-8
// replaced by U+FFFD rather than thrown on. The last line of defence: strings should already be
// valid when they get here.
std::string json_line(const nlohmann::json &j);

} // namespace why502::base
