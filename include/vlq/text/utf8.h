// UTF-8 helpers shared by the tokenizer and the Jinja interpreter: validation, lossy decoding with the
// Unicode "maximal subpart" replacement rule (what Rust's String::from_utf8_lossy does), the longest
// complete prefix of a byte stream, code-point iteration, NFC through utf8proc, and character classes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vlq::text::utf8 {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is invalid; when the input ends in
// the middle of a sequence that could still become valid, *truncated is set and the return value is 0.
// `bad` (optional) receives the length of the maximal invalid subpart (>= 1) when 0 is returned.
std::size_t sequence_length(std::string_view s, std::size_t i, bool* truncated = nullptr,
                            std::size_t* bad = nullptr);

// True when `s` is well-formed UTF-8 (no surrogates, no overlongs, <= U+10FFFF). On failure the byte
// offset of the first ill-formed sequence goes to *bad_offset.
bool is_valid(std::string_view s, std::size_t* bad_offset = nullptr);

// Converts bytes to valid UTF-8: each maximal ill-formed subpart becomes U+FFFD (as from_utf8_lossy).
std::string lossy(std::string_view s);

// Length of the longest prefix of `s` that does not end inside a truncated-but-so-far-valid sequence
// (at most 3 bytes are held back). Ill-formed bytes inside the prefix are left to lossy().
std::size_t complete_prefix(std::string_view s);

// Decodes the code point at s[i] (s must be valid UTF-8) and advances i.
char32_t next(std::string_view s, std::size_t& i);
// Appends the UTF-8 encoding of `cp`.
void append(std::string& out, char32_t cp);
// Number of code points of a valid UTF-8 string.
std::size_t length(std::string_view s);

// Unicode NFC of valid UTF-8 text (utf8proc, Unicode 15). NUL characters are kept.
std::string nfc(std::string_view s);
// NFC without copying when not needed: returns false when `s` is certainly NFC already (every code
// point passes nfc_quick_safe), else writes NFC(s) to `out` and returns true.
bool nfc_if_needed(std::string_view s, std::string& out);
// True for code points that are NFC-stable, have combining class 0 and never compose with a preceding
// character (ASCII, Latin-1, Greek, Cyrillic, CJK, kana, Hangul syllables, emoji blocks, ...). Checked
// exhaustively against utf8proc by tests/model/utf8_test.cpp.
bool nfc_quick_safe(char32_t cp);

// Unicode White_Space property (Rust char::is_whitespace, used by Hugging Face tokenizers).
bool is_space(char32_t cp);
// Python str.isspace for one character: White_Space plus U+001C..U+001F.
bool is_py_space(char32_t cp);
// Letter or number category (L*, N*), i.e. Python's str.isalnum for one character.
bool is_alnum(char32_t cp);
// Simple (1:1) case mappings from utf8proc.
char32_t to_upper(char32_t cp);
char32_t to_lower(char32_t cp);

}  // namespace vlq::text::utf8
