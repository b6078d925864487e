// ops/bulk_convert.h: the parallel conversions give the serial conversions' bits (sizes across several
// kBulkChunk chunks with a ragged tail, every input dtype, NaN/Inf/subnormal/saturating values), large_vector
// gives zeros of the asked size (with and without the huge-page advice), and bad sizes are usage errors.
#include "vlq/ops/bulk_convert.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"

namespace vlq::ops {
namespace {

std::vector<float> inputs(std::size_t n) {
  std::mt19937 g(7);
  std::normal_distribution<float> d(0.0f, 300.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), 1e-40f, -1e-9f, 448.0f, 464.0f, 1e30f};
  for (std::size_t i = 0; i < std::size(specials); ++i) v[i * (n / std::size(specials))] = specials[i];
  return v;
}

template <class T>
std::vector<std::byte> as_bytes(const std::vector<T>& v) {
  std::vector<std::byte> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(BulkConvert, ParallelEqualsSerialForEveryDtype) {
  const std::size_t n = 2 * kBulkChunk + 12345;
  const std::vector<float> x = inputs(n);
  std::vector<std::uint16_t> bf(n), bf_p(n);
  f32_to_bf16(x, bf);
  f32_to_bf16_parallel(x, bf_p);
  EXPECT_EQ(bf, bf_p);
  std::vector<std::uint8_t> e(n), e_p(n);
  f32_to_e4m3fn(x, e);
  f32_to_e4m3fn_parallel(x, e_p);
  EXPECT_EQ(e, e_p);
  std::vector<std::uint16_t> h(n);
  for (std::size_t i = 0; i < n; ++i) h[i] = f32_to_f16(x[i]);
  const std::pair<DType, std::vector<std::byte>> cases[] = {
      {DType::F32, as_bytes(x)}, {DType::BF16, as_bytes(bf)}, {DType::F16, as_bytes(h)}, {DType::F8_E4M3, as_bytes(e)}};
  for (const auto& [dt, bytes] : cases) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    std::vector<float> s(n), p = large_f32_vector(n);
    decode_to_f32(dt, bytes, s);
    decode_to_f32_parallel(dt, bytes, p);
    EXPECT_TRUE(same_bits(s, p));
  }
  // Small tensors take the one-call path.
  std::vector<float> s(100), p(100);
  decode_to_f32(DType::BF16, std::span<const std::byte>(as_bytes(bf)).first(200), s);
  decode_to_f32_parallel(DType::BF16, std::span<const std::byte>(as_bytes(bf)).first(200), p);
  EXPECT_TRUE(same_bits(s, p));
}

TEST(BulkConvert, LargeVectorIsZeroedAndBadSizesAreUsageErrors) {
  for (std::size_t n : {std::size_t{0}, std::size_t{10}, std::size_t{3} << 20, (std::size_t{5} << 20) + 7}) {
    const auto v = large_vector<float>(n);
    ASSERT_EQ(v.size(), n);
    for (std::size_t i = 0; i < n; i += 4093) ASSERT_EQ(v[i], 0.0f);
    if (n) EXPECT_EQ(v.back(), 0.0f);
    const auto c = large_vector<std::uint8_t>(n);
    ASSERT_EQ(c.size(), n);
    if (n) EXPECT_EQ(c.back(), 0);
  }
  std::vector<float> out(10);
  std::vector<std::byte> bytes(19);
  EXPECT_THROW(decode_to_f32_parallel(DType::BF16, bytes, out), UsageError);
  std::vector<std::byte> ints(40);
  EXPECT_THROW(decode_to_f32_parallel(DType::I32, ints, out), UsageError);
  std::vector<std::uint8_t> e(9);
  EXPECT_THROW(f32_to_e4m3fn_parallel(out, e), UsageError);
  std::vector<std::uint16_t> b(11);
  EXPECT_THROW(f32_to_bf16_parallel(out, b), UsageError);
}

}  // namespace
}  // namespace vlq::ops
