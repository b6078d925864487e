// Decode GEMV / small-M GEMM on CUDA cores for M = 1..8 tokens: y = alpha · (x · Wᵀ) (+ bias).
// The weight matrix is streamed once with 16-byte non-L1-allocating loads (several in flight per lane);
// x is staged in shared memory in its own encoding. This is the batch-1..8 decode path; larger M goes
// through cuBLASLt (gemm.h).
//
// Math (CPU reference vlq::ops::linear_forward, kFp8Static): y[m, n] = alpha · Σ_k x[m, k] · W[n, k] + bias[n],
// products and accumulation in f32 (E4M3 and BF16 values and their products are exact in f32; only the
// summation order differs from the CPU sgemm). For static FP8, alpha = input_scale · weight_scale.
#pragma once

#include "vlq/cuda/device.h"

namespace vlq::cuda {

// Largest M the GEMV takes.
inline constexpr int kGemvMaxM = 8;

// x: [M, K] F8_E4M3 (codes of x / input_scale) with w: [N, K] F8_E4M3, or x: [M, K] BF16 with w: [N, K] BF16;
// both contiguous, 1 <= M <= 8, K % 16 == 0 (FP8) / K % 8 == 0 (BF16), 16-byte aligned rows, and M·K·elem
// bytes <= 200 KiB (x lives in shared memory). bias: null or device [N] F32. y: [M, N] F32|BF16 (row stride
// allowed). row_alpha: null or device [N] F32, per-output-row factors of alpha (y[m, n] = (alpha·row_alpha[n])
// · Σ + bias[n]): one GEMV over several FP8 Linears stacked by rows, each with its own weight scale (fused
// q|k|v). Throws vlq::UsageError otherwise (use gemm_fp8 / gemm_bf16 for larger M).
void gemv(const Tensor& x, const Tensor& w, float alpha, const float* bias, const Tensor& y, cudaStream_t stream,
          const float* row_alpha = nullptr);

}  // namespace vlq::cuda
