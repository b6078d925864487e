// Calibration reductions (see vlq/cuda/reduce.h): max |x| and the fixed-bin |x| histogram, one pass.
#include "vlq/cuda/reduce.h"

#include <algorithm>
#include <string>

#include "common.cuh"

namespace vlq::cuda {
namespace {

using detail::bf16;

struct HistParams {
  int min_log2, max_log2, bins;
  std::uint32_t t[AbsHistLayout::kBinsPerOctave];
};

// The bin of a = |x| (sign bit clear): quant::AbsHistogram::bin_of, with "below the range" as `bins`.
__device__ __forceinline__ int bin_of(float a, const HistParams& p) {
  const std::uint32_t u = __float_as_uint(a);
  if (u >= 0x7f800000u) return p.bins - 1;
  const int e = static_cast<int>(u >> 23) - 127;
  if (e < p.min_log2) return p.bins;
  if (e >= p.max_log2) return p.bins - 1;
  const std::uint32_t m = u & 0x7fffffu;
  int j = 0;  // the last threshold <= m (t[0] == 0)
#pragma unroll
  for (int step = 16; step > 0; step >>= 1)
    if (p.t[j + step] <= m) j += step;
  return (e - p.min_log2) * AbsHistLayout::kBinsPerOctave + j;
}

template <class T, bool kHist>
__global__ void amax_hist_kernel(const T* __restrict__ x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                 float* amax, unsigned long long* hist, HistParams p) {
  extern __shared__ unsigned int counts[];  // [bins + 1]
  if (kHist) {
    for (int b = threadIdx.x; b <= p.bins; b += blockDim.x) counts[b] = 0;
    __syncthreads();
  }
  float m = 0.0f;
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * ld;
    for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float a = fabsf(detail::to_f32(row[c]));
      m = fmaxf(m, a);  // fmaxf(m, NaN) = m
      if (kHist) atomicAdd(&counts[bin_of(a, p)], 1u);
    }
  }
  m = detail::warp_max(m);
  __shared__ float wmax[32];
  if ((threadIdx.x & 31) == 0) wmax[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    float b = 0.0f;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) b = fmaxf(b, wmax[w]);
    // |x| >= 0: the f32 order equals the signed-int order of the bits.
    atomicMax(reinterpret_cast<int*>(amax), __float_as_int(b));
  }
  if (kHist)
    for (int b = threadIdx.x; b <= p.bins; b += blockDim.x)
      if (counts[b]) atomicAdd(&hist[b], static_cast<unsigned long long>(counts[b]));
}

}  // namespace

void abs_max_histogram(const Tensor& x, float* amax, unsigned long long* hist, const AbsHistLayout* layout,
                       cudaStream_t stream) {
  const char* op = "abs_max_histogram";
  if (x.dtype != DType::F32 && x.dtype != DType::BF16)
    usage_error(op, "x dtype", "F32 or BF16", x.describe());
  std::int64_t rows = 0, cols = 0, ld = 0;
  if (x.ndim == 2 && x.stride[1] == 1) {
    rows = x.shape[0], cols = x.shape[1], ld = x.stride[0];
  } else if (x.ndim == 3 && x.stride[2] == 1 && x.stride[1] == x.shape[2]) {
    rows = x.shape[0], cols = x.shape[1] * x.shape[2], ld = x.stride[0];
  } else {
    usage_error(op, "x layout", "[rows, cols] with unit column stride or [rows, a, b] with contiguous (a, b)", x.describe());
  }
  if (!amax) usage_error(op, "amax", "a device f32 pointer", "null");
  if (hist && !layout) usage_error(op, "layout", "the histogram layout", "null");
  if (rows == 0 || cols == 0) return;
  HistParams p{};
  if (layout) {
    p.min_log2 = layout->min_log2;
    p.max_log2 = layout->max_log2;
    p.bins = layout->bins();
    if (p.bins <= 0 || layout->sub_bin_thresholds[0] != 0)
      usage_error(op, "layout", "max_log2 > min_log2 and sub_bin_thresholds[0] == 0", std::to_string(p.bins) + " bins");
    std::copy(layout->sub_bin_thresholds, layout->sub_bin_thresholds + AbsHistLayout::kBinsPerOctave, p.t);
  }
  const unsigned threads = 256;
  const unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>(rows, 132 * 8));
  const std::size_t smem = hist ? static_cast<std::size_t>(p.bins + 1) * 4 : 0;
  detail::with_act(x.dtype, [&](auto t) {
    using T = decltype(t);
    if (hist) {
      if (smem > 48 * 1024)
        VLQ_CUDA_CHECK(cudaFuncSetAttribute(amax_hist_kernel<T, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
      amax_hist_kernel<T, true><<<blocks, threads, smem, stream>>>(x.as<const T>(), rows, cols, ld, amax, hist, p);
    } else {
      amax_hist_kernel<T, false><<<blocks, threads, 0, stream>>>(x.as<const T>(), rows, cols, ld, amax, nullptr, p);
    }
  });
  VLQ_CUDA_CHECK_LAUNCH("abs_max_histogram");
}

}  // namespace vlq::cuda
