// Linear layer y = x·Wᵀ + b on CPU: dense f32 (OpenBLAS sgemm; BF16/F16 weights converted once at load)
// and an exact emulation of FP8 (E4M3) tensor-core GEMMs for quantized modules.
//
// FP8 emulation (what cuBLASLt/CUTLASS FP8 GEMMs compute, and what vLLM's Fp8LinearMethod does):
//   static per-tensor:  xq = E4M3_sat_rne(x / input_scale); y = (xq·Wqᵀ) · (input_scale · weight_scale) + b
//   dynamic per-token:  s_t = max(|x_t|) / 448 per row (floored at kDynamicScaleFloor), same with s_t;
//   per-channel weight: weight_scale is a vector [out_features] applied per output column.
// Wq holds the stored E4M3 codes decoded to f32 (exact); products of two E4M3 values are exact in f32
// and accumulation is f32 (sgemm), as on FP8 tensor cores (which accumulate in ≥ f32 precision). The
// bias is added after scaling (vLLM `apply_fp8_linear`). Spec: ../shared/docs/fp8-checkpoint-formats.md
// §1.2 (ModelOpt weight/input scales), §3 (compressed-tensors strategies).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vlq/core/dtype.h"
#include "vlq/ops/fp8_weight.h"

namespace vlq::ops {

enum class LinearKind {
  kDense,        // f32 weights (converted from BF16/F16/F32)
  kFp8Static,    // E4M3 weights, static per-tensor activation scale (input_scale)
  kFp8Dynamic,   // E4M3 weights, dynamic per-token activation scale (FP8_DYNAMIC)
};
const char* linear_kind_name(LinearKind k) noexcept;

// Smallest dynamic per-token scale (avoids division by zero on all-zero rows); vLLM uses 1/(448·512).
inline constexpr float kDynamicScaleFloor = 1.0f / (448.0f * 512.0f);

struct LinearWeights {
  std::string name;              // canonical module name, for errors and observers
  std::int64_t out_features = 0; // N
  std::int64_t in_features = 0;  // K
  LinearKind kind = LinearKind::kDense;
  std::vector<float> w;          // [N, K] f32: dense values, or decoded E4M3 codes for FP8 kinds
  std::vector<float> bias;       // [N] or empty
  std::vector<float> weight_scale;    // FP8 only: [1] per-tensor or [N] per-channel
  std::optional<float> input_scale;   // kFp8Static only
};

// y[M, N] = linear(x[M, K]). x and y must not overlap. Throws vlq::UsageError on size mismatch
// (x_cols != in_features). Multi-threaded through OpenBLAS / OpenMP.
void linear_forward(const LinearWeights& lin, const float* x, std::int64_t m, std::int64_t x_cols, float* y);

// Quantizes x[M, K] to E4M3 codes decoded back to f32 (the value the FP8 GEMM multiplies), i.e.
// xq = E4M3_sat_rne(x / scale) for one per-tensor scale (exact emulation of a static FP8 activation
// quantizer). Out may alias x.
void fake_quantize_e4m3(const float* x, std::int64_t n, float scale, float* out);

// Converts a dense LinearWeights to the FP8 static per-tensor form in memory with the one FP8 weight recipe
// of the export (ops::quantize_weight_fp8, vlq/ops/fp8_weight.h): weight_scale = amax(W)/448, w = the
// decoded E4M3 codes, input_scale = input_amax/448 — the same values `vlq quantize` writes for the same
// recipe. `source_dtype`: the checkpoint dtype the f32 weights were decoded from (what Fp8Rounding::kDouble
// rounds the quotient to; F32: none). Throws vlq::UsageError when input_amax is not finite and > 0 or the
// layer is not dense, and what quantize_weight_fp8 throws.
void quantize_linear_fp8_static(LinearWeights& lin, float input_amax, const Fp8WeightRecipe& recipe = {},
                                DType source_dtype = DType::F32);

}  // namespace vlq::ops
