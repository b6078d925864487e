// Tests for vlq/core/numerics.h: bit-exact BF16/F16/FP8 conversions against PyTorch goldens
// (tests/data/golden/numerics, made by tools/make_numerics_golden.py), an independent
// nearest-value reference, hand-written special cases, bulk == scalar, and usage errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"

namespace {

using vlq::Bf16Quotient;

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }
float fbits(uint32_t u) { return std::bit_cast<float>(u); }

// Reads one golden column: "VLQG" | u32 version=1 | u32 elem_size | u32 count | data (little-endian).
// A missing or malformed file is a test failure and yields an empty vector (so count checks fail too).
template <typename T>
std::vector<T> golden(const std::string& name) {
  const std::string path = std::string(VLQ_SOURCE_DIR) + "/tests/data/golden/numerics/" + name + ".bin";
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    ADD_FAILURE() << "missing golden file " << path << " (run tools/make_numerics_golden.py)";
    return {};
  }
  std::vector<char> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  uint32_t hdr[3];
  if (buf.size() < 16 || std::memcmp(buf.data(), "VLQG", 4) != 0) {
    ADD_FAILURE() << path << ": bad header";
    return {};
  }
  std::memcpy(hdr, buf.data() + 4, 12);
  if (hdr[0] != 1 || hdr[1] != sizeof(T) || buf.size() != 16 + std::size_t{hdr[1]} * hdr[2]) {
    ADD_FAILURE() << path << ": version/elem_size/count mismatch (version " << hdr[0] << ", elem_size "
                  << hdr[1] << ", count " << hdr[2] << ", " << buf.size() << " bytes)";
    return {};
  }
  std::vector<T> out(hdr[2]);
  std::memcpy(out.data(), buf.data() + 16, out.size() * sizeof(T));
  return out;
}

std::vector<float> as_floats(const std::vector<uint32_t>& u) {
  std::vector<float> f(u.size());
  std::memcpy(f.data(), u.data(), u.size() * 4);
  return f;
}

bool e4m3_is_nan(uint8_t c) { return (c & 0x7f) == 0x7f; }
bool e5m2_is_nan(uint8_t c) { return (c & 0x7f) > 0x7c; }

// Compares `got` with `want` element-wise, prints the first few mismatches with their inputs, and
// returns the number of mismatches.
template <typename T, typename In>
std::size_t count_mismatches(const char* what, const std::vector<In>& in, const std::vector<T>& got,
                             const std::vector<T>& want) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < want.size() && i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (++bad <= 8)
      ADD_FAILURE() << what << " [" << i << "] input 0x" << std::hex << uint64_t{in[i]} << ": got 0x"
                    << uint64_t{got[i]} << ", torch 0x" << uint64_t{want[i]} << std::dec;
  }
  return bad;
}

constexpr std::size_t kMinF32Inputs = 60000;  // the generator writes ~66k; guards against a truncated set

// ---- FP8 code tables --------------------------------------------------------------------------------
TEST(Numerics, E4M3DecodeAllCodesMatchTorch) {
  auto want = golden<uint32_t>("e4m3fn_to_f32");
  ASSERT_EQ(want.size(), 256u);
  std::vector<uint8_t> codes(256);
  for (int c = 0; c < 256; ++c) codes[c] = static_cast<uint8_t>(c);
  std::vector<float> bulk(256);
  vlq::e4m3fn_to_f32(codes, bulk);
  int compared = 0;
  for (int c = 0; c < 256; ++c) {
    EXPECT_EQ(bits(vlq::e4m3fn_to_f32(static_cast<uint8_t>(c))), want[c]) << "code " << c;
    EXPECT_EQ(bits(bulk[c]), want[c]) << "code " << c;
    ++compared;
  }
  EXPECT_EQ(compared, 256);
  EXPECT_EQ(vlq::e4m3fn_to_f32(0x7e), 448.0f);
  EXPECT_EQ(vlq::e4m3fn_to_f32(0x01), 0x1p-9f);
  EXPECT_EQ(vlq::e4m3fn_to_f32(0x08), 0x1p-6f);
  EXPECT_TRUE(std::isnan(vlq::e4m3fn_to_f32(0x7f)));
  EXPECT_TRUE(std::signbit(vlq::e4m3fn_to_f32(0xff)));
}

TEST(Numerics, E5M2DecodeAllCodesMatchTorch) {
  auto want = golden<uint32_t>("e5m2_to_f32");
  ASSERT_EQ(want.size(), 256u);
  std::vector<uint8_t> codes(256);
  for (int c = 0; c < 256; ++c) codes[c] = static_cast<uint8_t>(c);
  std::vector<float> bulk(256);
  vlq::e5m2_to_f32(codes, bulk);
  for (int c = 0; c < 256; ++c) {
    EXPECT_EQ(bits(vlq::e5m2_to_f32(static_cast<uint8_t>(c))), want[c]) << "code " << c;
    EXPECT_EQ(bits(bulk[c]), want[c]) << "code " << c;
  }
  EXPECT_EQ(vlq::e5m2_to_f32(0x7b), 57344.0f);
  EXPECT_EQ(vlq::e5m2_to_f32(0x01), 0x1p-16f);
  EXPECT_EQ(vlq::e5m2_to_f32(0x7c), std::numeric_limits<float>::infinity());
  EXPECT_EQ(vlq::e5m2_to_f32(0xfc), -std::numeric_limits<float>::infinity());
}

TEST(Numerics, Fp8EncodeOfDecodeIsIdentityForEveryNonNaNCode) {
  int e4 = 0, e5 = 0;
  for (int i = 0; i < 256; ++i) {
    const auto c = static_cast<uint8_t>(i);
    if (!e4m3_is_nan(c)) {
      const float v = vlq::e4m3fn_to_f32(c);
      EXPECT_EQ(vlq::f32_to_e4m3fn(v), c) << "e4m3 code " << i;
      EXPECT_EQ(vlq::f32_to_e4m3fn_sat(v), c) << "e4m3 code " << i;
      EXPECT_EQ(vlq::f32_to_e4m3fn_nonsat(v), c) << "e4m3 code " << i;
      EXPECT_EQ(vlq::bf16_to_e4m3fn(vlq::f32_to_bf16(v)), c) << "e4m3 code " << i;  // exact in bf16
      ++e4;
    } else {
      EXPECT_EQ(vlq::f32_to_e4m3fn(vlq::e4m3fn_to_f32(c)), c);  // NaN sign survives
    }
    if (!e5m2_is_nan(c)) {
      EXPECT_EQ(vlq::f32_to_e5m2(vlq::e5m2_to_f32(c)), c) << "e5m2 code " << i;
      ++e5;
    } else {
      EXPECT_EQ(vlq::f32_to_e5m2(vlq::e5m2_to_f32(c)), c | 0x7f) << "e5m2 code " << i;
    }
  }
  EXPECT_EQ(e4, 254);  // 0x7f and 0xff are the only E4M3FN NaNs
  EXPECT_EQ(e5, 250);  // 0x7d-0x7f and 0xfd-0xff are the E5M2 NaNs
}

// ---- 16-bit formats: every pattern --------------------------------------------------------------
TEST(Numerics, Bf16AndF16DecodeAllPatternsMatchTorch) {
  auto want_bf = golden<uint32_t>("bf16_to_f32");
  auto want_h = golden<uint32_t>("f16_to_f32");
  ASSERT_EQ(want_bf.size(), 65536u);
  ASSERT_EQ(want_h.size(), 65536u);
  std::vector<uint16_t> pats(65536);
  for (uint32_t i = 0; i < 65536; ++i) pats[i] = static_cast<uint16_t>(i);
  std::vector<float> bf(65536), h(65536);
  vlq::bf16_to_f32(pats, bf);
  vlq::f16_to_f32(pats, h);
  std::size_t bad = 0;
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto p = static_cast<uint16_t>(i);
    bad += bits(vlq::bf16_to_f32(p)) != want_bf[i];
    bad += bits(bf[i]) != want_bf[i];
    bad += bits(vlq::f16_to_f32(p)) != want_h[i];
    if (bits(h[i]) != want_h[i] && ++bad <= 8)
      ADD_FAILURE() << "f16 0x" << std::hex << i << ": got 0x" << bits(h[i]) << " torch 0x" << want_h[i];
  }
  EXPECT_EQ(bad, 0u);
}

TEST(Numerics, F16AndBf16EncodeOfDecodeIsIdentityForEveryNonNaNPattern) {
  int h_count = 0, b_count = 0;
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto p = static_cast<uint16_t>(i);
    if ((p & 0x7fff) <= 0x7c00) {
      ASSERT_EQ(vlq::f32_to_f16(vlq::f16_to_f32(p)), p) << std::hex << i;
      ++h_count;
    }
    if ((p & 0x7fff) <= 0x7f80) {
      ASSERT_EQ(vlq::f32_to_bf16(vlq::bf16_to_f32(p)), p) << std::hex << i;
      ++b_count;
    }
  }
  EXPECT_EQ(h_count, 65536 - 2 * 1023);
  EXPECT_EQ(b_count, 65536 - 2 * 127);
}

TEST(Numerics, Bf16ToFp8AllPatternsMatchTorch) {
  auto want_e4 = golden<uint8_t>("bf16_to_e4m3fn");
  auto want_sat = golden<uint8_t>("bf16_to_e4m3fn_sat");
  auto want_e5 = golden<uint8_t>("bf16_to_e5m2");
  ASSERT_EQ(want_e4.size(), 65536u);
  ASSERT_EQ(want_sat.size(), 65536u);
  ASSERT_EQ(want_e5.size(), 65536u);
  std::vector<uint16_t> pats(65536);
  for (uint32_t i = 0; i < 65536; ++i) pats[i] = static_cast<uint16_t>(i);
  std::vector<uint8_t> e4(65536), e5(65536), s4(65536);
  vlq::bf16_to_e4m3fn(pats, e4);
  vlq::bf16_to_e5m2(pats, e5);
  for (uint32_t i = 0; i < 65536; ++i) s4[i] = vlq::bf16_to_e4m3fn_sat(pats[i]);
  EXPECT_EQ(count_mismatches("bf16->e4m3fn (bulk)", pats, e4, want_e4), 0u);
  EXPECT_EQ(count_mismatches("bf16->e4m3fn sat", pats, s4, want_sat), 0u);
  EXPECT_EQ(count_mismatches("bf16->e5m2 (bulk)", pats, e5, want_e5), 0u);
  for (uint32_t i = 0; i < 65536; ++i) {
    ASSERT_EQ(vlq::bf16_to_e4m3fn(pats[i]), e4[i]);
    ASSERT_EQ(vlq::bf16_to_e5m2(pats[i]), e5[i]);
  }
}

// ---- f32 input set (random bit patterns, ties at every binade, boundaries, specials) ------------
class NumericsF32Golden : public ::testing::Test {
 protected:
  void SetUp() override {
    in_bits = golden<uint32_t>("f32_inputs");
    in = as_floats(in_bits);
    ASSERT_GE(in.size(), kMinF32Inputs);
  }
  template <typename T>
  void check_column(const char* name, T (*scalar)(float), void (*bulk)(std::span<const float>, std::span<T>)) {
    auto want = golden<T>(name);
    ASSERT_EQ(want.size(), in.size()) << name;
    std::vector<T> s(in.size()), b(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) s[i] = scalar(in[i]);
    EXPECT_EQ(count_mismatches(name, in_bits, s, want), 0u) << name << " (scalar)";
    if (bulk) {
      bulk(in, b);
      EXPECT_EQ(count_mismatches(name, in_bits, b, want), 0u) << name << " (bulk)";
    }
  }
  std::vector<uint32_t> in_bits;
  std::vector<float> in;
};

TEST_F(NumericsF32Golden, ToE4M3fnMatchesTorch) {
  check_column<uint8_t>("f32_to_e4m3fn", vlq::f32_to_e4m3fn, vlq::f32_to_e4m3fn);
}
TEST_F(NumericsF32Golden, ToE4M3fnSatMatchesTorchClampThenCast) {
  check_column<uint8_t>("f32_to_e4m3fn_sat", vlq::f32_to_e4m3fn_sat, vlq::f32_to_e4m3fn_sat);
}
TEST_F(NumericsF32Golden, ToE4M3fnNonSatMatchesMlDtypes) {
  check_column<uint8_t>("f32_to_e4m3fn_mldtypes", vlq::f32_to_e4m3fn_nonsat, nullptr);
}
TEST_F(NumericsF32Golden, ToE5M2MatchesTorch) {
  check_column<uint8_t>("f32_to_e5m2", vlq::f32_to_e5m2, vlq::f32_to_e5m2);
}
TEST_F(NumericsF32Golden, ToBf16MatchesTorch) {
  check_column<uint16_t>("f32_to_bf16", vlq::f32_to_bf16, vlq::f32_to_bf16);
}
TEST_F(NumericsF32Golden, ToF16MatchesTorch) {
  check_column<uint16_t>("f32_to_f16", vlq::f32_to_f16, vlq::f32_to_f16);
}
TEST_F(NumericsF32Golden, InputSetCoversEveryClass) {
  std::size_t nan = 0, inf = 0, sub = 0, zero = 0, e4_ties = 0, over = 0;
  for (float f : in) {
    const uint32_t a = bits(f) & 0x7fffffffu;
    nan += a > 0x7f800000u;
    inf += a == 0x7f800000u;
    sub += a != 0 && a < 0x00800000u;
    zero += a == 0;
    over += a > 0x43e80000u && a < 0x7f800000u;
    if (std::isfinite(f) && std::fabs(f) <= 448.0f) {  // exact E4M3 ties
      const uint8_t lo = vlq::f32_to_e4m3fn(std::fabs(f));
      const float vlo = vlq::e4m3fn_to_f32(lo);
      const float vhi = vlq::e4m3fn_to_f32(static_cast<uint8_t>(lo + (vlo < std::fabs(f) ? 1 : -1)));
      e4_ties += (vlo + vhi) / 2 == std::fabs(f) && vlo != std::fabs(f);
    }
  }
  EXPECT_GE(nan, 100u);
  EXPECT_EQ(inf, 2u);
  EXPECT_GE(sub, 500u);
  EXPECT_EQ(zero, 2u);
  EXPECT_GE(over, 1000u);
  EXPECT_GE(e4_ties, 2u * 126u);  // every tie between adjacent E4M3 values, both signs
}

// ---- an independent reference: nearest representable value, ties to the even code -------------------
// For finite x: the code whose decoded value is nearest |x| (computed in double, exact here), ties to
// the even code. `vals` holds the decoded values of codes 0..n-1 (ascending).
uint8_t nearest_code(const std::vector<double>& vals, double ax) {
  const auto it = std::lower_bound(vals.begin(), vals.end(), ax);
  if (it == vals.begin()) return 0;
  if (it == vals.end()) return static_cast<uint8_t>(vals.size() - 1);
  const auto hi = static_cast<std::size_t>(it - vals.begin()), lo = hi - 1;
  const double dlo = ax - vals[lo], dhi = vals[hi] - ax;
  if (dlo < dhi) return static_cast<uint8_t>(lo);
  if (dhi < dlo) return static_cast<uint8_t>(hi);
  return static_cast<uint8_t>(lo % 2 == 0 ? lo : hi);
}

TEST(Numerics, EncodersAgreeWithNearestValueReferenceOnAStrideOfAllF32Patterns) {
  std::vector<double> e4, e5;
  for (int c = 0; c <= 0x7e; ++c) e4.push_back(vlq::e4m3fn_to_f32(static_cast<uint8_t>(c)));
  for (int c = 0; c <= 0x7b; ++c) e5.push_back(vlq::e5m2_to_f32(static_cast<uint8_t>(c)));
  e5.push_back(65536.0);  // the rounding step above 57344: reaching it means inf (code 0x7c)
  std::size_t checked = 0;
  for (uint64_t u = 0; u <= 0xffffffffull; u += 997) {
    const float f = fbits(static_cast<uint32_t>(u));
    const uint8_t sign = (u >> 31) ? 0x80 : 0;
    uint8_t e4_want, e4_nonsat_want, e5_want;
    uint16_t bf_want;
    if (std::isnan(f)) {
      e4_want = e4_nonsat_want = e5_want = 0x7f | sign;
      bf_want = 0x7fc0;
    } else {
      const double ax = std::fabs(static_cast<double>(f));
      e4_want = nearest_code(e4, std::min(ax, 448.0)) | sign;
      e4_nonsat_want = ax > 464.0 ? (0x7f | sign) : e4_want;
      e5_want = nearest_code(e5, ax) | sign;
      // bf16: candidates are the truncation and the next magnitude up
      const uint32_t lo = static_cast<uint32_t>(u) & 0xffff0000u, hi = lo + 0x10000u;
      const double vhi = (hi & 0x7fffffffu) == 0x7f800000u ? std::ldexp(1.0, 128)  // next step: inf
                                                             : std::fabs(double(fbits(hi)));
      const double dlo = ax - std::fabs(double(fbits(lo))), dhi = vhi - ax;
      const bool up = std::isinf(f) ? false : (dhi < dlo || (dhi == dlo && ((lo >> 16) & 1)));
      bf_want = static_cast<uint16_t>((up ? hi : lo) >> 16);
    }
    ASSERT_EQ(vlq::f32_to_e4m3fn_sat(f), e4_want) << std::hex << u;
    ASSERT_EQ(vlq::f32_to_e4m3fn(f), e4_want) << std::hex << u;
    ASSERT_EQ(vlq::f32_to_e4m3fn_nonsat(f), e4_nonsat_want) << std::hex << u;
    ASSERT_EQ(vlq::f32_to_e5m2(f), e5_want) << std::hex << u;
    ASSERT_EQ(vlq::f32_to_bf16(f), bf_want) << std::hex << u;
    ++checked;
  }
  EXPECT_GT(checked, 4'000'000u);
}

// ---- hand-written special cases (independent of the golden files) --------------------------------
TEST(Numerics, SpecialCases) {
  const float inf = std::numeric_limits<float>::infinity();
  const float qnan = std::numeric_limits<float>::quiet_NaN();
  // E4M3FN, PyTorch semantics: saturate finite overflow and inf, keep NaN (with sign).
  EXPECT_EQ(vlq::f32_to_e4m3fn(448.0f), 0x7e);
  EXPECT_EQ(vlq::f32_to_e4m3fn(464.0f), 0x7e);                        // tie -> even 448
  EXPECT_EQ(vlq::f32_to_e4m3fn(std::nextafter(464.0f, 1e9f)), 0x7e);  // saturates (ml_dtypes: NaN)
  EXPECT_EQ(vlq::f32_to_e4m3fn(480.0f), 0x7e);
  EXPECT_EQ(vlq::f32_to_e4m3fn(1e30f), 0x7e);
  EXPECT_EQ(vlq::f32_to_e4m3fn(-1e30f), 0xfe);
  EXPECT_EQ(vlq::f32_to_e4m3fn(inf), 0x7e);
  EXPECT_EQ(vlq::f32_to_e4m3fn(-inf), 0xfe);
  EXPECT_EQ(vlq::f32_to_e4m3fn(qnan), 0x7f);
  EXPECT_EQ(vlq::f32_to_e4m3fn(-qnan), 0xff);
  EXPECT_EQ(vlq::f32_to_e4m3fn(fbits(0x7f800001)), 0x7f);  // signaling NaN
  EXPECT_EQ(vlq::f32_to_e4m3fn(0.0f), 0x00);
  EXPECT_EQ(vlq::f32_to_e4m3fn(-0.0f), 0x80);
  EXPECT_EQ(vlq::f32_to_e4m3fn(0x1p-10f), 0x00);  // tie between 0 and 2^-9 -> even 0
  EXPECT_EQ(vlq::f32_to_e4m3fn(-0x1p-10f), 0x80);
  EXPECT_EQ(vlq::f32_to_e4m3fn(std::nextafter(0x1p-10f, 1.0f)), 0x01);
  EXPECT_EQ(vlq::f32_to_e4m3fn(3 * 0x1p-10f), 0x02);   // tie 1 vs 2 (x 2^-9) -> even 2
  EXPECT_EQ(vlq::f32_to_e4m3fn(5 * 0x1p-10f), 0x02);   // tie 2 vs 3 -> even 2
  EXPECT_EQ(vlq::f32_to_e4m3fn(15 * 0x1p-10f), 0x08);  // tie 7 (subnormal max) vs 8 (2^-6) -> 8
  EXPECT_EQ(vlq::f32_to_e4m3fn(1.0625f), 0x38);        // tie 1.0 vs 1.125 -> even (1.0)
  EXPECT_EQ(vlq::f32_to_e4m3fn(1.1875f), 0x3a);        // tie 1.125 vs 1.25 -> even (1.25)
  EXPECT_EQ(vlq::f32_to_e4m3fn(fbits(1)), 0x00);       // f32 denormal
  // Non-saturating (OCP / ml_dtypes / PyTorch before PR #178817).
  EXPECT_EQ(vlq::f32_to_e4m3fn_nonsat(464.0f), 0x7e);
  EXPECT_EQ(vlq::f32_to_e4m3fn_nonsat(std::nextafter(464.0f, 1e9f)), 0x7f);
  EXPECT_EQ(vlq::f32_to_e4m3fn_nonsat(-480.0f), 0xff);
  EXPECT_EQ(vlq::f32_to_e4m3fn_nonsat(inf), 0x7f);
  EXPECT_EQ(vlq::f32_to_e4m3fn_nonsat(-inf), 0xff);
  // E5M2: overflow to inf, tie at 61440 goes to inf (57344 has an odd mantissa).
  EXPECT_EQ(vlq::f32_to_e5m2(57344.0f), 0x7b);
  EXPECT_EQ(vlq::f32_to_e5m2(std::nextafter(61440.0f, 0.0f)), 0x7b);
  EXPECT_EQ(vlq::f32_to_e5m2(61440.0f), 0x7c);
  EXPECT_EQ(vlq::f32_to_e5m2(-1e30f), 0xfc);
  EXPECT_EQ(vlq::f32_to_e5m2(inf), 0x7c);
  EXPECT_EQ(vlq::f32_to_e5m2(qnan), 0x7f);
  EXPECT_EQ(vlq::f32_to_e5m2(-qnan), 0xff);
  EXPECT_EQ(vlq::f32_to_e5m2(0x1p-17f), 0x00);  // tie between 0 and 2^-16 -> 0
  EXPECT_EQ(vlq::f32_to_e5m2(3 * 0x1p-17f), 0x02);
  EXPECT_EQ(vlq::f32_to_e5m2(-0.0f), 0x80);
  // BF16: RNE, NaN -> 0x7fc0 (c10), overflow -> inf.
  EXPECT_EQ(vlq::f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(vlq::f32_to_bf16(fbits(0x3f808000)), 0x3f80);  // tie -> even
  EXPECT_EQ(vlq::f32_to_bf16(fbits(0x3f818000)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(vlq::f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(vlq::f32_to_bf16(-qnan), 0x7fc0);
  EXPECT_EQ(vlq::f32_to_bf16(fbits(0x7f800001)), 0x7fc0);
  EXPECT_EQ(vlq::f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(bits(vlq::bf16_to_f32(0x7f81)), 0x7f810000u);  // payload kept, not quieted
  // F16: RNE, gradual underflow, overflow to inf, NaN payload kept (quiet).
  EXPECT_EQ(vlq::f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(vlq::f32_to_f16(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(vlq::f32_to_f16(65520.0f), 0x7c00);
  EXPECT_EQ(vlq::f32_to_f16(0x1p-24f), 0x0001);
  EXPECT_EQ(vlq::f32_to_f16(0x1p-25f), 0x0000);
  EXPECT_EQ(vlq::f32_to_f16(std::nextafter(0x1p-25f, 1.0f)), 0x0001);
  EXPECT_EQ(vlq::f32_to_f16(3 * 0x1p-25f), 0x0002);
  EXPECT_EQ(vlq::f32_to_f16(fbits(0x7fa5a000)), 0x7f2d);
  EXPECT_EQ(vlq::f32_to_f16(fbits(0xff800001)), 0xfe00);
  EXPECT_EQ(bits(vlq::f16_to_f32(0x7c01)), 0x7fc02000u);  // quieted
  EXPECT_EQ(vlq::f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(vlq::f16_to_f32(0x03ff), 1023 * 0x1p-24f);
}

// ---- quantize / dequantize ---------------------------------------------------------------------------
TEST(Numerics, QuantizeAndDequantizeMatchTorch) {
  // Row s of the inputs (kRow values: weight-like randoms, specials, and values next to E4M3 ties
  // after division) is quantized with scale s.
  constexpr std::size_t kRow = 2048;
  const auto x = as_floats(golden<uint32_t>("quant_x_f32"));
  const auto xb = golden<uint16_t>("quant_x_bf16");
  const auto scales = as_floats(golden<uint32_t>("quant_scales"));
  const auto want_f = golden<uint8_t>("quant_f32_e4m3");
  const auto want_bf = golden<uint8_t>("quant_bf16_f32q_e4m3");
  const auto want_bb = golden<uint8_t>("quant_bf16_bf16q_e4m3");
  const auto want_bs = golden<uint8_t>("quant_bf16_bf16s_e4m3");
  const auto want_dq = golden<uint32_t>("dequant_e4m3");
  ASSERT_EQ(scales.size(), 8u);
  ASSERT_EQ(x.size(), scales.size() * kRow);
  ASSERT_EQ(xb.size(), x.size());
  ASSERT_EQ(want_f.size(), x.size());
  ASSERT_EQ(want_bf.size(), x.size());
  ASSERT_EQ(want_bb.size(), x.size());
  ASSERT_EQ(want_bs.size(), x.size());
  ASSERT_EQ(want_dq.size(), scales.size() * 256);
  std::vector<uint8_t> codes(256);
  for (int c = 0; c < 256; ++c) codes[c] = static_cast<uint8_t>(c);
  std::size_t compared = 0, saturated = 0, reciprocal_differs = 0;
  for (std::size_t s = 0; s < scales.size(); ++s) {
    const auto xs = std::span(x).subspan(s * kRow, kRow);
    const auto xbs = std::span(xb).subspan(s * kRow, kRow);
    std::vector<uint8_t> q(kRow), qf(kRow), qb(kRow), qs(kRow);
    vlq::quantize_e4m3_sat(xs, scales[s], q);
    vlq::quantize_bf16_e4m3_sat(xbs, scales[s], qf, Bf16Quotient::kF32);
    vlq::quantize_bf16_e4m3_sat(xbs, scales[s], qb, Bf16Quotient::kBf16);
    vlq::quantize_bf16_e4m3_sat(xbs, scales[s], qs, Bf16Quotient::kBf16WithBf16Scale);
    for (std::size_t i = 0; i < kRow; ++i) {
      const std::size_t k = s * kRow + i;
      ASSERT_EQ(q[i], want_f[k]) << "scale " << scales[s] << " x " << xs[i];
      ASSERT_EQ(q[i], vlq::f32_to_e4m3fn_sat(xs[i] / scales[s]));
      ASSERT_EQ(qf[i], want_bf[k]) << "scale " << scales[s] << " x_bf16 0x" << std::hex << xbs[i];
      ASSERT_EQ(qb[i], want_bb[k]) << "scale " << scales[s] << " x_bf16 0x" << std::hex << xbs[i];
      ASSERT_EQ(qs[i], want_bs[k]) << "scale " << scales[s] << " x_bf16 0x" << std::hex << xbs[i];
      saturated += (q[i] & 0x7f) == 0x7e;
      reciprocal_differs += vlq::f32_to_e4m3fn_sat(xs[i] * (1.0f / scales[s])) != want_f[k];
      ++compared;
    }
    std::vector<float> dq(256);
    vlq::dequantize_e4m3(codes, scales[s], dq);
    for (int c = 0; c < 256; ++c) {
      ASSERT_EQ(bits(dq[c]), want_dq[s * 256 + c]) << "scale " << scales[s] << " code " << c;
      compared++;
    }
  }
  EXPECT_EQ(compared, 8u * (kRow + 256u));
  EXPECT_GT(saturated, 64u);  // the data exercise the clamp
  // The data can tell x / scale from x * (1 / scale), and the three BF16 modes apart.
  EXPECT_GT(reciprocal_differs, 0u);
  EXPECT_NE(want_bf, want_bb);
  EXPECT_NE(want_bb, want_bs);
}

// ---- bulk == scalar on long, oddly sized and misaligned spans (vector bodies and tails) -------------
TEST(Numerics, BulkEqualsScalarOnMisalignedSpans) {
  std::mt19937_64 rng(7);
  const std::size_t n = 100003;
  std::vector<uint32_t> raw(n + 3);
  for (auto& r : raw) {
    const uint64_t v = rng();
    // half random bit patterns, half values in the FP8 range
    r = (v & 1) ? static_cast<uint32_t>(v >> 32)
                : bits(std::ldexp(static_cast<float>((v >> 8) % 2000000) / 1e6f - 1.0f,
                                  static_cast<int>((v >> 40) % 40) - 20));
  }
  std::vector<float> f = as_floats(raw);
  std::vector<uint16_t> h(n + 3);
  std::vector<uint8_t> c(n + 3);
  for (std::size_t i = 0; i < h.size(); ++i) {
    h[i] = static_cast<uint16_t>(raw[i] >> 16);
    c[i] = static_cast<uint8_t>(raw[i]);
  }
  for (std::size_t off : {0u, 1u, 3u}) {
    for (std::size_t len : {std::size_t{0}, std::size_t{1}, std::size_t{31}, n}) {
      std::span<const float> fi(f.data() + off, len);
      std::span<const uint16_t> hi(h.data() + off, len);
      std::span<const uint8_t> ci(c.data() + off, len);
      std::vector<uint8_t> o8(len + 1);
      std::vector<uint16_t> o16(len + 1);
      std::vector<float> o32(len + 1);
      auto o8s = std::span(o8).subspan(1, len);
      auto o16s = std::span(o16).subspan(1, len);
      auto o32s = std::span(o32).subspan(1, len);
      vlq::f32_to_e4m3fn_sat(fi, o8s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(o8s[i], vlq::f32_to_e4m3fn_sat(fi[i])) << i;
      vlq::f32_to_e4m3fn(fi, o8s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(o8s[i], vlq::f32_to_e4m3fn(fi[i])) << i;
      vlq::f32_to_e5m2(fi, o8s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(o8s[i], vlq::f32_to_e5m2(fi[i])) << i;
      vlq::bf16_to_e4m3fn(hi, o8s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(o8s[i], vlq::bf16_to_e4m3fn(hi[i])) << i;
      vlq::bf16_to_e5m2(hi, o8s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(o8s[i], vlq::bf16_to_e5m2(hi[i])) << i;
      vlq::quantize_e4m3_sat(fi, 0.0123f, o8s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(o8s[i], vlq::f32_to_e4m3fn_sat(fi[i] / 0.0123f)) << i;
      vlq::quantize_bf16_e4m3_sat(hi, 0.0123f, o8s, Bf16Quotient::kF32);
      for (std::size_t i = 0; i < len; ++i)
        ASSERT_EQ(o8s[i], vlq::f32_to_e4m3fn_sat(vlq::bf16_to_f32(hi[i]) / 0.0123f)) << i;
      vlq::quantize_bf16_e4m3_sat(hi, 0.0123f, o8s, Bf16Quotient::kBf16);
      for (std::size_t i = 0; i < len; ++i)
        ASSERT_EQ(o8s[i], vlq::bf16_to_e4m3fn_sat(vlq::f32_to_bf16(vlq::bf16_to_f32(hi[i]) / 0.0123f))) << i;
      vlq::quantize_bf16_e4m3_sat(hi, 0.0123f, o8s, Bf16Quotient::kBf16WithBf16Scale);
      const float s_bf16 = vlq::bf16_to_f32(vlq::f32_to_bf16(0.0123f));
      for (std::size_t i = 0; i < len; ++i)
        ASSERT_EQ(o8s[i], vlq::bf16_to_e4m3fn_sat(vlq::f32_to_bf16(vlq::bf16_to_f32(hi[i]) / s_bf16))) << i;
      vlq::f32_to_bf16(fi, o16s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(o16s[i], vlq::f32_to_bf16(fi[i])) << i;
      vlq::f32_to_f16(fi, o16s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(o16s[i], vlq::f32_to_f16(fi[i])) << i;
      vlq::bf16_to_f32(hi, o32s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(bits(o32s[i]), bits(vlq::bf16_to_f32(hi[i]))) << i;
      vlq::f16_to_f32(hi, o32s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(bits(o32s[i]), bits(vlq::f16_to_f32(hi[i]))) << i;
      vlq::e4m3fn_to_f32(ci, o32s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(bits(o32s[i]), bits(vlq::e4m3fn_to_f32(ci[i]))) << i;
      vlq::e5m2_to_f32(ci, o32s);
      for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(bits(o32s[i]), bits(vlq::e5m2_to_f32(ci[i]))) << i;
      vlq::dequantize_e4m3(ci, 3.5f, o32s);
      for (std::size_t i = 0; i < len; ++i)
        ASSERT_EQ(bits(o32s[i]), bits(vlq::e4m3fn_to_f32(ci[i]) * 3.5f)) << i;
      EXPECT_EQ(o8[0], 0);  // nothing written before the output span
      EXPECT_EQ(o16[0], 0);
      EXPECT_EQ(bits(o32[0]), 0u);
    }
  }
}

// ---- usage errors -------------------------------------------------------------------------------------
TEST(Numerics, MismatchedSpansAndBadScalesThrowUsageError) {
  std::vector<float> f(4);
  std::vector<uint16_t> h(3);
  std::vector<uint8_t> c(5);
  EXPECT_THROW(vlq::bf16_to_f32(h, f), vlq::UsageError);
  EXPECT_THROW(vlq::f32_to_bf16(f, h), vlq::UsageError);
  EXPECT_THROW(vlq::f32_to_e4m3fn_sat(f, c), vlq::UsageError);
  EXPECT_THROW(vlq::e4m3fn_to_f32(c, f), vlq::UsageError);
  EXPECT_THROW(vlq::quantize_e4m3_sat(f, 1.0f, c), vlq::UsageError);
  std::vector<uint8_t> c4(4);
  for (float bad : {0.0f, -1.0f, std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    EXPECT_THROW(vlq::quantize_e4m3_sat(f, bad, c4), vlq::UsageError) << bad;
    EXPECT_THROW(vlq::quantize_bf16_e4m3_sat(std::vector<uint16_t>(4), bad, c4), vlq::UsageError) << bad;
  }
  EXPECT_THROW(vlq::dequantize_e4m3(c4, std::numeric_limits<float>::quiet_NaN(), f), vlq::UsageError);
  // a positive f32 scale that rounds to 0 in BF16 (below 2^-133)
  EXPECT_THROW(vlq::quantize_bf16_e4m3_sat(std::vector<uint16_t>(4), fbits(1), c4,
                                           Bf16Quotient::kBf16WithBf16Scale), vlq::UsageError);
  EXPECT_NO_THROW(vlq::quantize_bf16_e4m3_sat(std::vector<uint16_t>(4), fbits(1), c4, Bf16Quotient::kBf16));
  EXPECT_NO_THROW(vlq::dequantize_e4m3(c4, -2.0f, f));
  try {
    vlq::f32_to_e5m2(f, c);
    FAIL() << "no throw";
  } catch (const vlq::UsageError& e) {
    EXPECT_EQ(e.info().where, "vlq::f32_to_e5m2");
    EXPECT_EQ(e.info().expected, "4 output elements");
    EXPECT_EQ(e.info().found, "5");
  }
}

}  // namespace

// decode_to_f32: the shared whole-tensor decoder equals the scalar conversions for every float dtype.
TEST(NumericsDecode, WholeTensorEqualsScalarConversions) {
  const std::vector<std::uint16_t> h{0x3f80, 0xc000, 0x7f80, 0x0001};
  std::vector<float> out(4);
  vlq::decode_to_f32(vlq::DType::BF16, std::as_bytes(std::span(h)), out);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(vlq::numerics_detail::bits(out[i]), vlq::numerics_detail::bits(vlq::bf16_to_f32(h[i])));
  vlq::decode_to_f32(vlq::DType::F16, std::as_bytes(std::span(h)), out);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(vlq::numerics_detail::bits(out[i]), vlq::numerics_detail::bits(vlq::f16_to_f32(h[i])));
  const std::vector<std::uint8_t> c{0x00, 0x7e, 0xfe, 0x01};
  vlq::decode_to_f32(vlq::DType::F8_E4M3, std::as_bytes(std::span(c)), out);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], vlq::e4m3fn_to_f32(c[i]));
  const std::vector<double> d{1.5, -2.25, 1e300, 0.1};
  vlq::decode_to_f32(vlq::DType::F64, std::as_bytes(std::span(d)), out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[3], 0.1f);
  EXPECT_TRUE(std::isinf(out[2]));
  EXPECT_THROW(vlq::decode_to_f32(vlq::DType::F32, std::as_bytes(std::span(h)), out), vlq::UsageError);  // 8 bytes for 4 floats
  EXPECT_THROW(vlq::decode_to_f32(vlq::DType::I64, std::as_bytes(std::span(d)), out), vlq::UsageError);
}
