// Helpers of the CUDA benchmarks: event timing (median of repeats), random device fills, D2D copy bandwidth.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "vlq/core/numerics.h"
#include "vlq/cuda/device.h"

namespace vlq::cuda::bench {

// Median time in ms of `reps` runs of f (each timed with events on `s`), after `warm` untimed runs.
inline double time_ms(cudaStream_t s, int warm, int reps, const std::function<void()>& f) {
  for (int i = 0; i < warm; ++i) f();
  VLQ_CUDA_CHECK(cudaStreamSynchronize(s));
  cudaEvent_t a, b;
  VLQ_CUDA_CHECK(cudaEventCreate(&a));
  VLQ_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    VLQ_CUDA_CHECK(cudaEventRecord(a, s));
    f();
    VLQ_CUDA_CHECK(cudaEventRecord(b, s));
    VLQ_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    VLQ_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  VLQ_CUDA_CHECK(cudaEventDestroy(a));
  VLQ_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Fills `bytes` of device memory at p with random data of the dtype: E4M3 codes (no NaN codes, |v| <= 448
// scaled by 1/16 in magnitude spread), BF16 N(0, 0.02), F32 N(0,1). Uploads a 32 MiB random chunk repeatedly.
inline void fill_random(void* p, std::size_t bytes, DType dt, std::uint32_t seed) {
  std::mt19937 g(seed);
  const std::size_t chunk = std::min<std::size_t>(bytes, 32u << 20);
  std::vector<std::uint8_t> h(chunk);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  if (dt == DType::F8_E4M3) {
    for (auto& c : h) c = f32_to_e4m3fn_sat(nd(g) * 30.0f);
  } else if (dt == DType::BF16) {
    for (std::size_t i = 0; i + 1 < chunk; i += 2) {
      const std::uint16_t b = f32_to_bf16(nd(g) * 0.02f);
      h[i] = static_cast<std::uint8_t>(b & 0xff);
      h[i + 1] = static_cast<std::uint8_t>(b >> 8);
    }
  } else {
    for (std::size_t i = 0; i + 3 < chunk; i += 4) {
      const float f = nd(g);
      std::memcpy(&h[i], &f, 4);
    }
  }
  for (std::size_t off = 0; off < bytes; off += chunk)
    VLQ_CUDA_CHECK(cudaMemcpy(static_cast<char*>(p) + off, h.data(), std::min(chunk, bytes - off), cudaMemcpyHostToDevice));
}

// Device-to-device copy bandwidth in GB/s (bytes read + written), 2 GiB buffers, median of 20.
inline double copy_bandwidth_gbs(cudaStream_t s) {
  const std::size_t n = std::size_t{2} << 30;
  DeviceBuffer a(n), b(n);
  VLQ_CUDA_CHECK(cudaMemset(a.data(), 1, n));
  const double ms = time_ms(s, 3, 20, [&] { VLQ_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), n, cudaMemcpyDeviceToDevice, s)); });
  return 2.0 * n / (ms * 1e-3) / 1e9;
}

}  // namespace vlq::cuda::bench
