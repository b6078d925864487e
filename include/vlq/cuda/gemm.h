// GEMMs through cuBLASLt for prefill / large-batch decode: y[M, N] = x[M, K] · W[N, K]ᵀ (· scales) (+ bias).
//   FP8:  x, W F8_E4M3 codes; y = (xq · Wqᵀ) · (x_scale · w_scale) + bias — the static per-tensor FP8 Linear
//         of vlq::ops::linear_forward (kFp8Static), f32 accumulation on the tensor cores. Scales are device
//         pointers to one f32 each, 16-byte aligned (cuBLASLt A/B scale pointers; CUDA-graph friendly).
//   BF16: x, W BF16; y = x · Wᵀ + bias, f32 accumulation.
// Row-major operands map to cuBLASLt's column-major TN form (A = W, op T; B = x, op N; D = yᵀ), which FP8
// requires; FP8 also needs K % 16 == 0 and 16-byte aligned pointers/leading dims (checked, vlq::UsageError).
// y: [M, N] BF16 or F32 (row stride allowed, 16-byte aligned); bias: null or device [N], BF16 for
// gemm_fp8 (cuBLASLt has no FP8 kernel with an F32 bias; seen on H200, CUDA 13.0), y's dtype for gemm_bf16.
// Precision: Hopper FP8 tensor cores add the products inside one MMA with reduced precision; the F32
// output of gemm_fp8 is ~1e-4 relative from the exact f32 emulation (measured), BF16 output is BF16-rounded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "vlq/cuda/device.h"

namespace vlq::cuda {

// One cuBLASLt handle + workspace (32 MiB) + cached algorithm choices per shape. Not thread-safe; one per
// stream/thread. The workspace is what makes cublasLtMatmul capturable into a CUDA graph.
class GemmContext {
 public:
  GemmContext();
  ~GemmContext();
  GemmContext(const GemmContext&) = delete;
  GemmContext& operator=(const GemmContext&) = delete;
  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

void gemm_fp8(GemmContext& ctx, const Tensor& x, const Tensor& w, const float* x_scale, const float* w_scale,
              const void* bias, const Tensor& y, cudaStream_t stream);
void gemm_bf16(GemmContext& ctx, const Tensor& x, const Tensor& w, const void* bias, const Tensor& y, cudaStream_t stream);

}  // namespace vlq::cuda
