#include "base/text.h"

#include <cstdint>
#include <cstdio>

namespace why502::base {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD"; // U+FFFD

// Length of the well-formed sequence at s[i], or 0 when it is ill-formed. On 0, `bad` is the
// length of the maximal subpart to replace by one U+FFFD (at least 1).
// Table 3-7 of the Unicode standard ("Well-Formed UTF-8 Byte Sequences").
size_t sequence_at(std::string_view s, size_t i, size_t &bad, char32_t &cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  bad = 1;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  size_t need;           // continuation bytes
  unsigned char lo = 0x80, hi = 0xBF; // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    cp = b0 & 0x0F;
    if (b0 == 0xE0)
      lo = 0xA0; // below: overlong
    else if (b0 == 0xED)
      hi = 0x9F; // above: surrogates U+D800–U+DFFF
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    cp = b0 & 0x07;
    if (b0 == 0xF0)
      lo = 0x90; // below: overlong
    else if (b0 == 0xF4)
      hi = 0x8F; // above: beyond U+10FFFF
  } else {
    return 0; // 0x80–0xBF (lone continuation), 0xC0/0xC1 (overlong), 0xF5–0xFF
  }
  for (size_t k = 1; k <= need; ++k) {
    // Truncated at the end of the input, or a byte out of range: the k bytes so far were a valid
    // prefix, and they become one U+FFFD.
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (i + k >= s.size() || static_cast<unsigned char>(s[i + k]) < l ||
        static_cast<unsigned char>(s[i + k]) > h) {
      bad = k;
      return 0;
    }
    const auto b = static_cast<unsigned char>(s[i + k]);
    cp = (cp << 6) | (b & 0x3F);
  }
  return need + 1;
}

bool bidi_control(char32_t cp) {
  return cp == 0x061C || cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

std::string escape(std::string_view s, bool keep_newlines) {
  std::string out;
  out.reserve(s.size());
  size_t bad;
  char32_t cp;
  char buf[12];
  for (size_t i = 0; i < s.size();) {
    size_t n = sequence_at(s, i, bad, cp);
    if (n == 0) {
      out += kReplacement;
      i += bad;
      continue;
    }
    if (cp == '\n' && keep_newlines) {
      out += '\n';
    } else if (cp < 0x20 || cp == 0x7F) {
      snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(cp));
      out += buf;
    } else if ((cp >= 0x80 && cp <= 0x9F) || bidi_control(cp)) {
      snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      out += buf;
    } else {
      out.append(s.data() + i, n);
    }
    i += n;
  }
  return out;
}

} // namespace

bool is_valid_utf8(std::string_view s) {
  size_t bad;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    size_t n = sequence_at(s, i, bad, cp);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t bad;
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    size_t n = sequence_at(s, i, bad, cp);
    if (n == 0) {
      out += kReplacement;
      i += bad;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

void make_valid_utf8(std::string &s) {
  if (!is_valid_utf8(s))
    s = valid_utf8(s);
}

std::string escape_terminal(std::string_view s) { return escape(s, false); }

std::string escape_terminal_lines(std::string_view s) { return escape(s, true); }

std::string json_line(const nlohmann::json &j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace why502::base
