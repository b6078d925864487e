// Elementwise and row-wise CUDA ops of the Qwen2 / Qwen2.5-VL forward: RMSNorm (optionally with the residual
// add and static FP8 quantization fused), SwiGLU (optionally FP8-quantized), residual add, embedding gather,
// half-split rotary with M-RoPE angles, E4M3 quantize/dequantize, argmax. CPU references: vlq/ops/norm.h,
// activation.h, rotary.h, sampling.h, vlq/core/numerics.h (E4M3, bit-exact). Conventions: device.h.
//
// "E4M3 output with out_scale" always means code = E4M3_sat_rne(y / out_scale) with an IEEE f32 division,
// bit-exact with vlq::quantize_e4m3_sat / torch.clamp(y / s, -448, 448).to(torch.float8_e4m3fn) for the same y,
// except that a NaN y always gives 0x7f (GPU division returns the canonical, positive NaN; the CPU keeps the
// sign and writes 0xff for a negative NaN; both codes are NaN).
#pragma once

#include <cstdint>

#include "vlq/cuda/device.h"

namespace vlq::cuda {

// RMSNorm (Qwen2RMSNorm in f32): out = weight ⊙ (h · rsqrt(mean(h²) + eps)) per row, where h = x, or, when
// `residual` is given, h = x + residual written back into x (the pre-norm residual stream update).
//   x: [rows, dim] F32 (BF16 allowed only without residual); residual: null or [rows, dim] F32|BF16;
//   weight: device [dim] F32; out: [rows, dim] F32 | BF16 | F8_E4M3 (then out_scale > 0 is the static
//   input_scale of the next Linear). One CTA per row.
void rms_norm(const Tensor& x, const Tensor* residual, const float* weight, float eps, const Tensor& out,
              float out_scale, cudaStream_t stream);

// SwiGLU: out[r, i] = silu(g · gate_mul) · (u · up_mul), g = gate_up[r, i], u = gate_up[r, I + i] (gate = first
// half of the fused gate_up row; the multipliers carry the FP8 weight scales of a fused gate|up GEMM run with
// its weight scale 1, and are exact no-ops at 1). gate_up: [rows, 2I] F32|BF16 (row stride allowed);
// out: [rows, I] F32 | BF16 | F8_E4M3 (out_scale).
void swiglu(const Tensor& gate_up, const Tensor& out, float out_scale, cudaStream_t stream, float gate_mul = 1.0f,
            float up_mul = 1.0f);

// GELU with erf (torch.nn.GELU(), the merger MLP of the Qwen2.5-VL vision tower; CPU: ops::gelu_erf_inplace):
// out[r, i] = 0.5·x·(1 + erf(x/√2)). x: [rows, cols] F32|BF16 (row stride allowed); out: [rows, cols] F32 | BF16
// | F8_E4M3 (codes of value / out_scale, out_scale > 0 then).
void gelu_erf(const Tensor& x, const Tensor& out, float out_scale, cudaStream_t stream);

// x += y elementwise. x: [n] (any rank, contiguous) F32; y: same numel F32|BF16.
void add_inplace(const Tensor& x, const Tensor& y, cudaStream_t stream);

// out[r, c] = x[r, c] converted (F32 → BF16 round to nearest even, as vlq::f32_to_bf16; BF16 → F32 exact; same
// dtype: a copy). x, out: [rows, cols] F32|BF16, columns contiguous, row strides any (e.g. the q, k or v columns
// of a fused qkv row into contiguous [rows, heads·D]).
void cast(const Tensor& x, const Tensor& out, cudaStream_t stream);

// out[i, :] = table[ids[i], :]. ids: [n] I32 device (each in [0, vocab); out-of-range rows are written as
// zeros, the caller validates ids on the host); table: [vocab, dim] BF16|F32; out: [n, dim] F32|BF16.
void embedding(const Tensor& ids, const Tensor& table, const Tensor& out, cudaStream_t stream);

// M-RoPE angles (vlq::ops::mrope_angles): angles[s, j] = f32(positions[row(j), s]) · inv_freq[j], row(j) the
// section (t, h, w) that frequency j falls in. positions: [3, S] I32 device; inv_freq: device [head_dim/2]
// F32 (vlq::ops::rope_inv_freq(theta, head_dim), uploaded); sections t+h+w = head_dim/2; angles: [S, head_dim/2] F32.
void mrope_angles(const Tensor& positions, const float* inv_freq, const int sections[3], const Tensor& angles,
                  cudaStream_t stream);

// Half-split rotary in place (vlq::ops::apply_rotary_inplace): for each row r and head h,
// x' = x·cos(a) + rotate_half(x)·sin(a), dims j and j + D/2 share angle a = angles[r, j].
//   x: 3-D [rows, heads, D] F32|BF16, stride[1] == D (heads contiguous), stride[0] any (e.g. q and k heads
//   of a fused qkv row: heads = H + KVH, stride[0] = (H + 2·KVH)·D); angles: [rows, D/2] F32.
void rotary_inplace(const Tensor& x, const Tensor& angles, cudaStream_t stream);

// The ViT's q/k/v hand-off in one pass (rotary_inplace on the q and k heads, then cast of q, k and v into
// contiguous tensors; the same values as those three steps): q = rotary(qkv[:, 0:HD]), k = rotary(qkv[:, HD:2HD]),
// v = qkv[:, 2HD:3HD], converted to the outputs' dtype (F32 → BF16 round to nearest even). cos/sin of each angle
// are computed once per row and shared by all heads.
//   qkv: [rows, 3·heads·D] F32|BF16 (read as f32), columns contiguous, stride[0] any; angles: [rows, D/2] F32;
//   q, k, v: contiguous [rows, heads, D] F32|BF16 (all three the same dtype), not overlapping each other or qkv. D even.
// Throws UsageError on shapes, dtypes or layouts.
void rotary_split_qkv(const Tensor& qkv, const Tensor& angles, const Tensor& q, const Tensor& k, const Tensor& v,
                      cudaStream_t stream);

// E4M3 quantize (vlq::quantize_e4m3_sat, bit-exact): out[i] = E4M3_sat_rne(x[i] / scale).
//   x: [n] F32|BF16 (any rank, contiguous); out: same numel F8_E4M3; scale finite > 0.
void quantize_e4m3(const Tensor& x, float scale, const Tensor& out, cudaStream_t stream);
// Dynamic per-token E4M3 quantization (compressed-tensors strategy "token", llm-compressor's FP8_DYNAMIC; the CPU
// reference is ops::linear_forward for LinearKind::kFp8Dynamic, bit-exact with it): per row r, scales[r] =
// max(max_c |x[r, c]| / 448, floor) (NaNs ignored) and codes[r, c] = E4M3 of x[r, c] / scales[r] (IEEE division,
// saturating). x: [rows, cols] F32|BF16 (row stride allowed); codes: [rows, cols] F8_E4M3, contiguous; scales:
// device [rows] F32; floor > 0 (ops::kDynamicScaleFloor). Throws vlq::UsageError for bad shapes.
void quantize_e4m3_per_token(const Tensor& x, const Tensor& codes, float* scales, float floor, cudaStream_t stream);

// The epilogue of an FP8 GEMM with per-row (per-token) and/or per-column (per-channel) scales, as
// ops::linear_forward applies them: y[r, c] = acc[r, c] · (rs[r] · cs[c]) + bias[c], each product and the add
// rounded separately. row_scales: device [rows] F32, or null for the scalar row_scale; col_scales: device [cols]
// F32, or null for col_scale; bias: device [cols] F32 or null. acc: [rows, cols] F32 contiguous; y: [rows, cols]
// F32|BF16 (row stride allowed; may be acc itself). Throws vlq::UsageError for bad shapes.
void scale_rows_cols(const Tensor& acc, const float* row_scales, float row_scale, const float* col_scales, float col_scale,
                     const float* bias, const Tensor& y, cudaStream_t stream);

// Dequantize (vlq::dequantize_e4m3, bit-exact): out[i] = f32(q[i]) · scale. q F8_E4M3; out F32|BF16.
void dequantize_e4m3(const Tensor& q, float scale, const Tensor& out, cudaStream_t stream);

// Greedy argmax per row (vlq::ops::argmax: the first index of the maximum; NaNs never win).
//   logits: [rows, vocab] F32|BF16; out: [rows] I32.
void argmax(const Tensor& logits, const Tensor& out, cudaStream_t stream);

}  // namespace vlq::cuda
