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
// q|k|v). m_scale: null or device [M] F32, per-input-row factors too (the dynamic per-token scales of
// cuda::quantize_e4m3_per_token): y[m, n] = (alpha·row_alpha[n]·m_scale[m]) · Σ + bias[n]. Throws
// vlq::UsageError otherwise (use gemm_fp8 / gemm_bf16 for larger M).
void gemv(const Tensor& x, const Tensor& w, float alpha, const float* bias, const Tensor& y, cudaStream_t stream,
          const float* row_alpha = nullptr, const float* m_scale = nullptr);

// Batch-1 decode: cuda::rms_norm(h, residual, norm_w, eps, x E4M3, in_scale) then cuda::gemv(x, w, alpha, bias, y,
// row_alpha), fused into one kernel with the same bits (each CTA normalizes the row itself in rms_norm's sum
// order; gemv_cuda.cu), except that v = h + residual goes to h_out instead of back into h: h_out must be another
// buffer (the other CTAs still read h), so a caller alternates two residual-stream buffers. Source: the
// Qwen2RMSNorm of HF transformers (weight · (x · rsqrt(mean(x²) + eps))) and vlq::ops::linear_forward (kFp8Static).
// h: [1, K] F32; residual: null or [1, K] F32; norm_w: device [K] F32; in_scale: the Linear's input_scale (> 0);
// h_out: [1, K] F32 (not h, not residual); w: [N, K] F8_E4M3, K % 16 == 0, K <= kNormGemvMaxK, 16-byte aligned rows;
// bias: null or device [N] F32; y: [1, N] F32|BF16; row_alpha: as for gemv. Throws vlq::UsageError otherwise.
inline constexpr int kNormGemvMaxK = 8192;  // every Qwen2.5-VL hidden size (72B: 8192)
void rms_norm_gemv(const Tensor& h, const Tensor* residual, const float* norm_w, float eps, float in_scale,
                   const Tensor& h_out, const Tensor& w, float alpha, const float* bias, const Tensor& y,
                   cudaStream_t stream, const float* row_alpha = nullptr);

}  // namespace vlq::cuda
