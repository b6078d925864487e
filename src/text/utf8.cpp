// UTF-8 helpers (see utf8.h): validation, lossy decoding, stream prefixes, NFC via utf8proc.
#include "vlq/text/utf8.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

namespace vlq::text::utf8 {

std::size_t sequence_length(std::string_view s, std::size_t i, bool* truncated, std::size_t* bad) {
  if (truncated) *truncated = false;
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
    need = 2;
  } else if (b0 == 0xED) {
    need = 2, hi = 0x9F;
  } else if (b0 == 0xF0) {
    need = 3, lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    need = 3;
  } else if (b0 == 0xF4) {
    need = 3, hi = 0x8F;
  } else {
    if (bad) *bad = 1;
    return 0;
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) {
      if (truncated) *truncated = true;
      if (bad) *bad = k;
      return 0;
    }
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      if (bad) *bad = k;
      return 0;
    }
  }
  return need + 1;
}

bool is_valid(std::string_view s, std::size_t* bad_offset) {
  std::size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t n = sequence_length(s, i);
    if (n == 0) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += n;
  }
  return true;
}

std::string lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t bad = 0;
    const std::size_t n = sequence_length(s, i, nullptr, &bad);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

std::size_t complete_prefix(std::string_view s) {
  // Only the last 3 bytes can start a truncated sequence.
  const std::size_t from = s.size() > 3 ? s.size() - 3 : 0;
  for (std::size_t i = from; i < s.size(); ++i) {
    bool truncated = false;
    if (sequence_length(s, i, &truncated) == 0 && truncated) return i;  // lead byte cut by the end
  }
  return s.size();
}

char32_t next(std::string_view s, std::size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int n = b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : 1;
  char32_t cp = b0 & (0x3F >> n);
  for (int k = 1; k <= n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n + 1;
  return cp;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::size_t length(std::string_view s) {
  std::size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

namespace {
// Ranges [lo, hi) of nfc_quick_safe code points above U+02FF (derived from the Unicode 14 data in Python's
// unicodedata: ccc 0, NFC-stable, not the second character of any canonical composition, no Hangul jamo).
constexpr char32_t kNfcSafe[][2] = {
    {0x0388, 0x0483}, {0x048A, 0x0530}, {0x05D0, 0x05EB},  {0x0671, 0x06D4},  {0x0E01, 0x0E31},
    {0x1E00, 0x1F00}, {0x2002, 0x20D0}, {0x212C, 0x2329},  {0x232B, 0x2ADC},  {0x2E00, 0x302A},
    {0x3030, 0x3099}, {0x309B, 0xA66F}, {0xAC00, 0xD7A4},  {0xE000, 0xF900},  {0xFF00, 0xFFF0},
    {0x1F000, 0x1FB00}, {0x20000, 0x2A6E0}};
}  // namespace

bool nfc_quick_safe(char32_t cp) {
  if (cp < 0x300) return true;
  for (const auto& r : kNfcSafe) {
    if (cp < r[0]) return false;
    if (cp < r[1]) return true;
  }
  return false;
}

std::string nfc(std::string_view s) {
  std::string out;
  if (!nfc_if_needed(s, out)) return std::string(s);
  return out;
}

bool nfc_if_needed(std::string_view s, std::string& out) {
  std::size_t i = 0;
  while (i < s.size() && static_cast<unsigned char>(s[i]) < 0x80) ++i;  // ASCII prefix
  bool safe = true;
  while (i < s.size()) {
    if (!nfc_quick_safe(next(s, i))) {
      safe = false;
      break;
    }
  }
  if (safe) return false;
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                   &dst, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return false;  // only on invalid input, which callers have rejected already
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(dst, &std::free);
  out.assign(reinterpret_cast<const char*>(dst), static_cast<std::size_t>(n));
  return true;
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_py_space(char32_t c) { return is_space(c) || (c >= 0x1C && c <= 0x1F); }

bool is_alnum(char32_t cp) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
         (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

char32_t to_upper(char32_t cp) { return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(cp))); }
char32_t to_lower(char32_t cp) { return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))); }

}  // namespace vlq::text::utf8
