// The one FP8 (E4M3) weight recipe of vlq: per-tensor weight_scale = max|W| / 448 and the E4M3 codes of
// W / weight_scale. Used by the export (`vlq quantize`, quant/export) and by the runtime's in-memory
// quantization of a Linear (ops::quantize_linear_fp8_static), so that both produce the same bytes.
//
// Rounding of the quotient W / s before the saturating E4M3 encode (round to nearest even, clamp ±448):
//   kSingle (default): one rounding, the quotient in f32: E4M3(f32(W) / s). The most accurate.
//   kDouble: the quotient first rounded to the weight's source dtype, E4M3(BF16(W / s)) for BF16 (F16 alike;
//     F32 = kSingle): what PyTorch on the CPU computes for `(weight / weight_scale).to(float8_e4m3fn)` with
//     a BF16 weight and a 0-dim f32 scale, i.e. what ModelOpt 0.35–0.47 and llm-compressor 0.14 wrote
//     (tests/data/ref_exports/README.md). About 3 % of the codes differ from kSingle, each by one E4M3 step.
//     `vlq quantize --layout exact`.
//   kDoubleBf16Scale: as kDouble with the scale also rounded to BF16 before dividing (PyTorch CUDA; ModelOpt
//     exporting on a GPU). BF16 weights only differ from kDouble; the stored scale is the f32 one.
// Scale: f32(amax) / 448 in f32 (ModelOpt); with scale_in_source_dtype that quotient rounded to the source
// dtype (compressed-tensors stores the scale in the weight's dtype). amax 0 (a zero weight) → 448 (scale
// 1.0, with a warning), amax below FLT_MIN → FLT_MIN (ModelOpt 0.47 `_sanitize_export_amax` + clamp).
//
// Spec: ../shared/docs/fp8-checkpoint-formats.md §1.2 (ModelOpt weight_scale), §3.3 (compressed-tensors);
// vlq/core/numerics.h (E4M3 encode bit-exact with PyTorch; Bf16Quotient documents the PyTorch roundings).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vlq/core/dtype.h"

namespace vlq::ops {

enum class Fp8Rounding { kSingle, kDouble, kDoubleBf16Scale };
// "single", "double", "double-bf16-scale" (as vlq_quantize.json records it).
const char* fp8_rounding_name(Fp8Rounding r) noexcept;

struct Fp8WeightRecipe {
  Fp8Rounding rounding = Fp8Rounding::kSingle;
  bool scale_in_source_dtype = false;  // compressed-tensors: weight_scale rounded to the weight's dtype
};

// An amax made usable as a scale numerator: `value` > 0; `warning` set when 0 was replaced by 448.
struct Fp8Amax {
  float value = 0;
  std::string warning;
};
// Validates `amax` (what: "weight amax", "input amax", "K amax", ...; name: the module) and applies the
// ModelOpt 0.47 export sanitising above. Throws ConfigError naming `name` when amax is NaN, ±Inf or negative
// (a broken calibration must not be hidden by a substitute).
Fp8Amax sanitize_fp8_amax(float amax, const std::string& what, const std::string& name);

// A quantized weight.
struct Fp8Weight {
  std::vector<std::uint8_t> codes;  // [numel] E4M3FN codes, the weight's row-major order ([N, K] for a Linear)
  float amax = 0;                   // max |W| as read (before sanitising)
  float scale = 0;                  // weight_scale as stored (f32, or rounded to the source dtype)
  std::uint64_t saturated = 0;      // elements with |W / s| > 464 (clipped beyond rounding; 0 unless the scale was forced)
  std::string warning;              // a zero amax replaced (sanitize_fp8_amax)
};

// Quantizes a weight tensor by the recipe. `data`: little-endian elements of `dtype` (BF16, F16 or F32);
// `source_dtype`: the dtype the values have in their checkpoint (what kDouble and scale_in_source_dtype round
// to): `dtype` for a checkpoint tensor, the original dtype for f32 values decoded from it (in-memory
// quantization). `name` names the tensor in errors. Memory: the codes plus a fixed-size decode buffer.
// Throws UnsupportedError (dtype or source_dtype not BF16/F16/F32; a NaN or Inf element, naming its index),
// UsageError (data size not a multiple of the element size).
Fp8Weight quantize_weight_fp8(std::span<const std::byte> data, DType dtype, DType source_dtype,
                              const Fp8WeightRecipe& recipe, const std::string& name);

}  // namespace vlq::ops
