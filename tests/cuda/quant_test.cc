// E4M3 quantize / dequantize on the GPU vs vlq::numerics (bit-exact with torch.float8_e4m3fn), and the
// device layer's errors.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "cuda_test_util.h"
#include "vlq/cuda/elementwise.h"

namespace vlq::cuda::test {
namespace {

TEST(CudaDevice, ErrorsNameTheCall) {
  VLQ_REQUIRE_GPU();
  try {
    DeviceBuffer huge(std::size_t{1} << 50);
    FAIL() << "1 PiB cudaMalloc succeeded";
  } catch (const CudaError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cudaMalloc"), std::string::npos) << m;
    EXPECT_NE(m.find("device.cpp:"), std::string::npos) << m;
    EXPECT_NE(m.find("cudaErrorMemoryAllocation"), std::string::npos) << m;
  }
  (void)cudaGetLastError();
}

TEST(CudaDevice, ShapeErrorsAreUsageErrors) {
  // No GPU needed: validation happens before any launch.
  std::uint8_t dummy[16];
  float fdummy[16];
  const Tensor x = Tensor::contiguous(fdummy, DType::F32, {16});
  const Tensor q = Tensor::contiguous(dummy, DType::F8_E4M3, {8});
  EXPECT_THROW(quantize_e4m3(x, 1.0f, q, nullptr), UsageError);
  const Tensor q16 = Tensor::contiguous(dummy, DType::F8_E4M3, {16});
  EXPECT_THROW(quantize_e4m3(x, 0.0f, q16, nullptr), UsageError);
  DeviceArena arena_guard_unused{0};
  EXPECT_THROW(arena_guard_unused.allocate(1), UsageError);
}

TEST(CudaQuant, E4M3BitExactWithNumerics) {
  VLQ_REQUIRE_GPU();
  const auto seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  // Random bit patterns (every exponent, NaN/inf, subnormals) + scaled normals + special values + ties.
  std::vector<float> x;
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < (1 << 20); ++i) {
    std::uint32_t u = bits(g);
    float f;
    std::memcpy(&f, &u, 4);
    x.push_back(f);
  }
  for (float f : randn(1 << 18, g, 100.0f)) x.push_back(f);
  for (float f : randn(1 << 16, g, 0.01f)) x.push_back(f);
  const float specials[] = {0.0f, -0.0f, 448.0f, -448.0f, 464.0f, 465.0f, 1e9f, -1e9f,
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                            0x1p-10f, 0x1p-9f, 0x3p-10f, 0x1p-6f, 0x1.1p-6f, 0x1.08p0f, 0x1.18p0f};
  for (float f : specials) x.push_back(f);
  // Every midpoint between consecutive E4M3 values (ties go to even).
  for (int c = 0; c < 126; ++c) x.push_back(0.5f * (e4m3fn_to_f32(c) + e4m3fn_to_f32(c + 1)));
  for (float scale : {1.0f, 0.0371f, 3.5f}) {
    std::vector<std::uint8_t> ref(x.size());
    vlq::quantize_e4m3_sat(x, scale, ref);
    auto dx = to_device(x);
    auto dq = poisoned<std::uint8_t>(x.size());
    const auto n = static_cast<std::int64_t>(x.size());
    quantize_e4m3(Tensor::contiguous(dx.data(), DType::F32, {n}), scale, Tensor::contiguous(dq.data(), DType::F8_E4M3, {n}),
                  nullptr);
    const auto got = to_host<std::uint8_t>(dq, x.size());
    // NaN inputs: the GPU's x / scale returns the canonical NaN (sign dropped), so a negative NaN gives
    // 0x7f where the CPU (sign-preserving division) gives 0xff; both are the E4M3 NaN. Every other input: exact.
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const bool nan_ok = std::isnan(x[i]) && (got[i] & 0x7f) == 0x7f;
      if (got[i] != ref[i] && !nan_ok && bad++ == 0) first = i;
    }
    EXPECT_EQ(bad, 0u) << "scale " << scale << ": first mismatch x=" << x[first] << " got " << int(got[first]) << " want "
                       << int(ref[first]);
  }
  // BF16 input: vlq::quantize_bf16_e4m3_sat (kF32 quotient).
  std::vector<std::uint16_t> xb(1 << 16);
  for (std::size_t i = 0; i < xb.size(); ++i) xb[i] = static_cast<std::uint16_t>(i);
  std::vector<std::uint8_t> refb(xb.size());
  quantize_bf16_e4m3_sat(xb, 0.25f, refb, Bf16Quotient::kF32);
  auto dxb = to_device(xb);
  auto dqb = poisoned<std::uint8_t>(xb.size());
  quantize_e4m3(Tensor::contiguous(dxb.data(), DType::BF16, {65536}), 0.25f,
                Tensor::contiguous(dqb.data(), DType::F8_E4M3, {65536}), nullptr);
  const auto gotb = to_host<std::uint8_t>(dqb, xb.size());
  for (std::size_t i = 0; i < xb.size(); ++i) {
    if (std::isnan(bf16_to_f32(xb[i]))) ASSERT_EQ(gotb[i] & 0x7f, 0x7f) << i;
    else ASSERT_EQ(gotb[i], refb[i]) << "bf16 bits " << xb[i];
  }
}

TEST(CudaQuant, DequantizeAllCodes) {
  VLQ_REQUIRE_GPU();
  std::vector<std::uint8_t> q(256 * 4);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<std::uint8_t>(i);
  for (float scale : {1.0f, 0.0123f}) {
    std::vector<float> ref(q.size());
    vlq::dequantize_e4m3(q, scale, ref);
    auto dq = to_device(q);
    auto dout = poisoned<float>(q.size());
    dequantize_e4m3(Tensor::contiguous(dq.data(), DType::F8_E4M3, {1024}), scale,
                    Tensor::contiguous(dout.data(), DType::F32, {1024}), nullptr);
    const auto got = to_host<float>(dout, q.size());
    for (std::size_t i = 0; i < q.size(); ++i) {
      if (std::isnan(ref[i])) {
        EXPECT_TRUE(std::isnan(got[i])) << i;
      } else {
        EXPECT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(ref[i])) << "code " << int(q[i]);
      }
    }
  }
}

}  // namespace
}  // namespace vlq::cuda::test
