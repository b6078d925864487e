// Shared helpers of the CUDA tests: GPU-or-skip, fresh random inputs (seed printed on failure), device
// upload/download of std::vectors, relative error.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "vlq/core/numerics.h"
#include "vlq/cuda/device.h"

namespace vlq::cuda::test {

// Skips the test (with a message) when there is no CUDA device, e.g. in CI (nvcc, no GPU).
#define VLQ_REQUIRE_GPU()                                                                        \
  do {                                                                                           \
    if (::vlq::cuda::device_count() == 0)                                                        \
      GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount returned 0): CUDA kernel test skipped"; \
  } while (0)

// Fresh seed per call (std::random_device); SCOPED_TRACE it so a failure names the seed.
inline std::uint32_t fresh_seed() {
  static std::random_device rd;
  return rd();
}

inline std::vector<float> randn(std::size_t n, std::mt19937& g, float sd = 1.0f) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

template <class T> DeviceBuffer to_device(const std::vector<T>& v) {
  DeviceBuffer b(v.size() * sizeof(T));
  if (!v.empty()) b.upload(v.data(), v.size() * sizeof(T));
  return b;
}
// An output buffer of n elements, poisoned with 0xff bytes (NaN for F32/BF16/E4M3, -1 for I32).
template <class T> DeviceBuffer poisoned(std::size_t n) {
  DeviceBuffer b(n * sizeof(T));
  b.fill_bytes(0xff);
  return b;
}
template <class T> std::vector<T> to_host(const DeviceBuffer& b, std::size_t n) {
  VLQ_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> v(n);
  if (n) b.download(v.data(), n * sizeof(T));
  return v;
}

inline std::vector<std::uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<std::uint16_t> o(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
  return o;
}
inline std::vector<float> from_bf16(const std::vector<std::uint16_t>& v) {
  std::vector<float> o(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) o[i] = bf16_to_f32(v[i]);
  return o;
}

// ‖out − ref‖₂ / ‖ref‖₂ (infinite when any out is NaN, so unwritten poisoned outputs fail).
inline double rel_err(const std::vector<float>& out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}
inline double rel_err(const std::vector<float>& out, const std::vector<float>& ref) {
  return rel_err(out, std::vector<double>(ref.begin(), ref.end()));
}

}  // namespace vlq::cuda::test
