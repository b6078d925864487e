// Tests for the UTF-8 helpers under the tokenizer: lossy decoding (maximal-subpart rule, as Python's and
// Rust's replacement decoders), stream prefixes, and the NFC quick-check table against utf8proc.
#include <gtest/gtest.h>

#include <utf8proc.h>

#include <cstdlib>
#include <string>

#include "vlq/text/utf8.h"

namespace u = vlq::text::utf8;

namespace {

const std::string kFFFD = "\xEF\xBF\xBD";

TEST(Utf8, LossyUsesMaximalSubparts) {
  // Expected values: Python bytes.decode("utf-8", "replace").
  EXPECT_EQ(u::lossy("\xE0\x80"), kFFFD + kFFFD);
  EXPECT_EQ(u::lossy("\xF0\x9F\x98"), kFFFD);
  EXPECT_EQ(u::lossy("\xED\xA0\x80"), kFFFD + kFFFD + kFFFD);  // surrogate
  EXPECT_EQ(u::lossy("\xC0\xAF"), kFFFD + kFFFD);              // overlong
  EXPECT_EQ(u::lossy("\xF4\x90\x80\x80"), kFFFD + kFFFD + kFFFD + kFFFD);
  EXPECT_EQ(u::lossy("a\xF0\x9F\x98" "b"), "a" + kFFFD + "b");
  EXPECT_EQ(u::lossy("\xE4\xB8\xAD\xE4"), "\xE4\xB8\xAD" + kFFFD);
  EXPECT_EQ(u::lossy("\xFF\xFE"), kFFFD + kFFFD);
  EXPECT_EQ(u::lossy("ok \xF0\x9F\x98\x80"), "ok \xF0\x9F\x98\x80");
}

TEST(Utf8, CompletePrefixHoldsBackOnlyTruncatedSequences) {
  EXPECT_EQ(u::complete_prefix("abc"), 3u);
  EXPECT_EQ(u::complete_prefix("a\xF0\x9F\x98"), 1u);
  EXPECT_EQ(u::complete_prefix("a\xF0\x9F"), 1u);
  EXPECT_EQ(u::complete_prefix("a\xF0"), 1u);
  EXPECT_EQ(u::complete_prefix("a\xF0\x9F\x98\x80"), 5u);
  EXPECT_EQ(u::complete_prefix("\xE4\xB8\xAD\xE4\xB8"), 3u);
  EXPECT_EQ(u::complete_prefix("a\xFF"), 2u);       // invalid, not truncated: not held back
  EXPECT_EQ(u::complete_prefix("a\xE0\x80"), 3u);   // E0 80 can never become valid
  EXPECT_EQ(u::complete_prefix("\x80\x80\x80"), 3u);
}

TEST(Utf8, Validation) {
  std::size_t bad = 99;
  EXPECT_TRUE(u::is_valid("h\xC3\xA9llo \xF0\x9F\x98\x80"));
  EXPECT_FALSE(u::is_valid("ab\xC3", &bad));
  EXPECT_EQ(bad, 2u);
  EXPECT_FALSE(u::is_valid(std::string("a\xED\xA0\x80", 4), &bad));
  EXPECT_EQ(bad, 1u);
  EXPECT_TRUE(u::is_valid(std::string("nul\0inside", 10)));
}

TEST(Utf8, NfcKeepsNulAndComposes) {
  EXPECT_EQ(u::nfc(std::string("e\xCC\x81\0x", 5)), std::string("\xC3\xA9\0x", 4));
  std::string out;
  EXPECT_FALSE(u::nfc_if_needed("plain ascii 中文 한국어 😀", out));
  EXPECT_TRUE(u::nfc_if_needed("cafe\xCC\x81", out));
  EXPECT_EQ(out, "caf\xC3\xA9");
}

// Every code point the quick check calls safe must be NFC-stable with combining class 0, and no
// canonical decomposition of any character may end in a safe code point (else it could compose).
TEST(Utf8, NfcQuickSafeTableAgreesWithUtf8proc) {
  int checked = 0;
  for (char32_t cp = 0; cp < 0x110000; ++cp) {
    if (cp >= 0xD800 && cp < 0xE000) continue;
    utf8proc_int32_t buf[32];
    int boundclass = 0;
    const auto n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), buf, 32, UTF8PROC_DECOMPOSE, &boundclass);
    ASSERT_GT(n, 0);
    if (n >= 2) ASSERT_FALSE(u::nfc_quick_safe(static_cast<char32_t>(buf[n - 1])))
        << std::hex << "U+" << static_cast<unsigned>(buf[n - 1]) << " ends the decomposition of U+" << static_cast<unsigned>(cp);
    if (!u::nfc_quick_safe(cp)) continue;
    ++checked;
    ASSERT_EQ(utf8proc_get_property(static_cast<utf8proc_int32_t>(cp))->combining_class, 0) << std::hex << static_cast<unsigned>(cp);
    if (cp >= 0x80) {
      std::string s;
      u::append(s, cp);
      utf8proc_uint8_t* dst = nullptr;
      const auto m = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                                  &dst, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      const std::string got(reinterpret_cast<const char*>(dst), m > 0 ? static_cast<std::size_t>(m) : 0);
      std::free(dst);
      ASSERT_EQ(got, s) << std::hex << "U+" << static_cast<unsigned>(cp) << " changes under NFC";
    }
  }
  EXPECT_GT(checked, 90000);
}

}  // namespace
