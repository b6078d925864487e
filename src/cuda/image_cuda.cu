// CUDA kernels of vlq/cuda/image.h: the fixed-point resize passes and normalise + patchify to BF16.
#include "vlq/cuda/image.h"

#include <string>

#include "common.cuh"

namespace vlq::cuda {
namespace {
using namespace detail;

__device__ __forceinline__ std::uint8_t clip8(std::int32_t v, int precision) {
  const std::int32_t s = v >> precision;  // arithmetic shift, as the CPU pass
  return static_cast<std::uint8_t>(s < 0 ? 0 : s > 255 ? 255 : s);
}

// One thread per output pixel (3 channels), the taps summed in the CPU pass's order.
__global__ void resize_h_kernel(const std::uint8_t* __restrict__ in, int in_w, std::uint8_t* __restrict__ out,
                                int out_w, std::int64_t rows, const std::int32_t* __restrict__ bounds,
                                const std::int32_t* __restrict__ kk, int ksize, int precision) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * out_w) return;
  const std::int64_t y = i / out_w;
  const int x = static_cast<int>(i % out_w);
  const int xmin = bounds[2 * x], n = bounds[2 * x + 1];
  const std::int32_t* k = kk + static_cast<std::int64_t>(x) * ksize;
  const std::uint8_t* s = in + (y * in_w + xmin) * 3;
  const std::int32_t half = std::int32_t{1} << (precision - 1);
  std::int32_t s0 = half, s1 = half, s2 = half;
  for (int j = 0; j < n; ++j) {
    const std::int32_t w = k[j];
    s0 += static_cast<std::int32_t>(s[3 * j]) * w;
    s1 += static_cast<std::int32_t>(s[3 * j + 1]) * w;
    s2 += static_cast<std::int32_t>(s[3 * j + 2]) * w;
  }
  std::uint8_t* d = out + i * 3;
  d[0] = clip8(s0, precision);
  d[1] = clip8(s1, precision);
  d[2] = clip8(s2, precision);
}

// One thread per output byte of a row (w·3 bytes per row).
__global__ void resize_v_kernel(const std::uint8_t* __restrict__ in, std::int64_t stride, std::uint8_t* __restrict__ out,
                                int out_h, const std::int32_t* __restrict__ bounds, const std::int32_t* __restrict__ kk,
                                int ksize, int precision) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= stride * out_h) return;
  const int yy = static_cast<int>(i / stride);
  const std::int64_t col = i % stride;
  const int ymin = bounds[2 * yy], n = bounds[2 * yy + 1];
  const std::int32_t* k = kk + static_cast<std::int64_t>(yy) * ksize;
  std::int32_t acc = std::int32_t{1} << (precision - 1);
  for (int j = 0; j < n; ++j) acc += static_cast<std::int32_t>(in[(ymin + j) * stride + col]) * k[j];
  out[i] = clip8(acc, precision);
}

// One thread per output element; the three channel tables in shared memory.
__global__ void patchify_kernel(const std::uint8_t* __restrict__ img, int W, const std::uint16_t* __restrict__ table,
                                int P, int M, int T, int gw, std::int64_t n, std::uint16_t* __restrict__ out,
                                std::int64_t ldo) {
  __shared__ std::uint16_t lut[3 * 256];
  for (int t = threadIdx.x; t < 3 * 256; t += blockDim.x) lut[t] = table[t];
  __syncthreads();
  const int pd = 3 * T * P * P;
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * pd) return;
  const std::int64_t r = i / pd;
  const int k = static_cast<int>(i % pd);
  const std::int64_t unit = r / (M * M);
  const int within = static_cast<int>(r % (M * M));
  const std::int64_t bh = unit / gw, bw = unit % gw;
  const int mh = within / M, mw = within % M;
  const int c = k / (T * P * P), rem = k % (P * P);
  const int py = rem / P, px = rem % P;
  const std::int64_t y = (bh * M + mh) * P + py, x = (bw * M + mw) * P + px;
  out[r * ldo + k] = lut[c * 256 + img[(y * W + x) * 3 + c]];
}

}  // namespace

void resize_pass_u8(const Tensor& in, const Tensor& out, bool horizontal, const std::int32_t* bounds,
                    const std::int32_t* kk, int ksize, int precision, cudaStream_t stream) {
  expect_tensor("resize_pass_u8", "in", in, {DType::U8}, {-1, -1, 3});
  expect_tensor("resize_pass_u8", "out", out, {DType::U8}, {horizontal ? in.dim(0) : -1, horizontal ? -1 : in.dim(1), 3});
  if (in.stride[0] != in.dim(1) * 3 || out.stride[0] != out.dim(1) * 3)
    usage_error("resize_pass_u8", "images must be contiguous [h, w, 3]", "row stride w·3", in.describe() + " / " + out.describe());
  if (!bounds || !kk || ksize < 1 || precision < 1 || precision > 30)
    usage_error("resize_pass_u8", "taps missing or invalid", "bounds, kk, ksize >= 1, precision in [1, 30]",
                "ksize " + std::to_string(ksize) + ", precision " + std::to_string(precision));
  if (out.numel() == 0) return;
  constexpr int kThreads = 256;
  if (horizontal) {
    const std::int64_t total = out.dim(0) * out.dim(1);
    resize_h_kernel<<<ceil_div(total, kThreads), kThreads, 0, stream>>>(
        in.as<const std::uint8_t>(), static_cast<int>(in.dim(1)), out.as<std::uint8_t>(), static_cast<int>(out.dim(1)),
        out.dim(0), bounds, kk, ksize, precision);
  } else {
    const std::int64_t stride = in.dim(1) * 3;
    resize_v_kernel<<<ceil_div(stride * out.dim(0), kThreads), kThreads, 0, stream>>>(
        in.as<const std::uint8_t>(), stride, out.as<std::uint8_t>(), static_cast<int>(out.dim(0)), bounds, kk, ksize,
        precision);
  }
  VLQ_CUDA_CHECK_LAUNCH("resize_pass_u8");
}

void patchify_bf16(const Tensor& img, const std::uint16_t* value_bf16, int patch, int merge, int temporal,
                   const Tensor& out, cudaStream_t stream) {
  expect_tensor("patchify_bf16", "img", img, {DType::U8}, {-1, -1, 3});
  if (patch < 1 || merge < 1 || temporal < 1 || !value_bf16)
    usage_error("patchify_bf16", "invalid patch geometry or missing table", "patch, merge, temporal >= 1 and a table",
                std::to_string(patch) + ", " + std::to_string(merge) + ", " + std::to_string(temporal));
  const std::int64_t H = img.dim(0), W = img.dim(1), f = static_cast<std::int64_t>(patch) * merge;
  if (H % f != 0 || W % f != 0 || img.stride[0] != W * 3)
    usage_error("patchify_bf16", "image size must be a multiple of patch·merge, contiguous",
                "multiples of " + std::to_string(f), img.describe());
  const std::int64_t n = (H / patch) * (W / patch), pd = 3LL * temporal * patch * patch;
  expect_tensor("patchify_bf16", "out", out, {DType::BF16}, {n, pd});
  if (n == 0) return;
  constexpr int kThreads = 256;
  patchify_kernel<<<ceil_div(n * pd, kThreads), kThreads, 0, stream>>>(
      img.as<const std::uint8_t>(), static_cast<int>(W), value_bf16, patch, merge, temporal,
      static_cast<int>(W / f), n, out.as<std::uint16_t>(), out.stride[0]);
  VLQ_CUDA_CHECK_LAUNCH("patchify_bf16");
}

}  // namespace vlq::cuda
