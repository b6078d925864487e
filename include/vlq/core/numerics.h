// Bit-exact conversions between f32 and the checkpoint float formats (BF16, F16, FP8 E4M3FN/E5M2),
// scalar (inline) and bulk over spans, plus the E4M3 quantize/dequantize kernels of the FP8 writer.
//
// Reference semantics: PyTorch (torch 2.15 CPU, `Tensor.to(dtype)`; c10/util/BFloat16.h, Half.h,
// Float8_e4m3fn.h, Float8_e5m2.h). Formats follow the OCP 8-bit Floating Point Specification
// (OFP8) rev 1.0 and IEEE 754-2008 binary16. Every function here matches PyTorch bit for bit on every
// input that does not produce a NaN; NaN outputs are documented per function (PyTorch's own NaN bits
// differ between its scalar and vectorized CPU loops, see tests/data/golden/numerics/README.md).
// Golden data: tools/make_numerics_golden.py -> tests/data/golden/numerics/*.bin.
//
// Storage conventions: a BF16 or F16 element is its IEEE bit pattern in a uint16_t, an FP8 element
// (F8_E4M3 = float8_e4m3fn, F8_E5M2 = float8_e5m2) is its bit pattern in a uint8_t, all host order.
// Rounding is round-to-nearest, ties-to-even everywhere. The encoders assume the default floating-point
// environment (round-to-nearest); FTZ/DAZ do not change any result.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

#include "vlq/core/dtype.h"

namespace vlq {

// ---- format constants ------------------------------------------------------------------------------
// Largest finite E4M3FN magnitude (code 0x7e). Smallest subnormal is 2^-9 (code 0x01).
inline constexpr float kE4M3Max = 448.0f;
// Largest finite E5M2 magnitude (code 0x7b). Smallest subnormal is 2^-16 (code 0x01).
inline constexpr float kE5M2Max = 57344.0f;
// Canonical NaN codes written by the encoders (OR 0x80 for a negative NaN input).
inline constexpr uint8_t kE4M3NaN = 0x7f;
inline constexpr uint8_t kE5M2NaN = 0x7f;
inline constexpr uint16_t kBF16NaN = 0x7fc0;

namespace numerics_detail {
constexpr uint32_t bits(float f) noexcept { return std::bit_cast<uint32_t>(f); }
constexpr float from_bits(uint32_t u) noexcept { return std::bit_cast<float>(u); }

// f32 bits of E4M3FN code c, computed like c10::detail::fp8e4m3fn_to_fp32_value. NaN codes
// (0x7f/0xff) decode to 0x7ff00000 / 0xfff00000, exactly what PyTorch returns.
constexpr uint32_t e4m3fn_bits_to_f32_bits(uint8_t c) noexcept {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24;
  const uint32_t e = (c >> 3) & 0xfu, m = c & 0x7u;
  if (e == 0xf && m == 0x7) return sign | 0x7ff00000u;
  if (e != 0) return sign | ((e + 120u) << 23) | (m << 20);
  if (m == 0) return sign;
  // subnormal: m * 2^-9, normalize the 3-bit mantissa
  uint32_t shift = 0;
  while ((m << shift & 0x4u) == 0) ++shift;  // shift the leading 1 to bit 2
  const uint32_t mn = (m << (shift + 1)) & 0x7u;
  return sign | ((120u - shift) << 23) | (mn << 20);
}
// f32 bits of F16 pattern h: exact for numbers; NaN is quieted with sign and payload kept
// (x86 F16C VCVTPH2PS semantics, what PyTorch's vectorized CPU loop returns).
constexpr uint32_t f16_bits_to_f32_bits(uint16_t h) noexcept {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  const uint32_t normal = ((e + 112u) << 23) | (m << 13);
  const uint32_t subnormal = bits(static_cast<float>(m) * 0x1p-24f);  // exact: m * 2^-24
  const uint32_t inf_nan = m ? (0x7fc00000u | (m << 13)) : 0x7f800000u;
  return sign | (e == 0x1f ? inf_nan : (e != 0 ? normal : subnormal));
}
// Decoded E4M3FN / E5M2 values of all 256 codes (f32 bit patterns), built at compile time.
struct Fp8Tables {
  uint32_t e4m3fn[256];
  uint32_t e5m2[256];
};
constexpr Fp8Tables make_fp8_tables() noexcept {
  Fp8Tables t{};
  for (uint32_t c = 0; c < 256; ++c) {
    t.e4m3fn[c] = e4m3fn_bits_to_f32_bits(static_cast<uint8_t>(c));
    t.e5m2[c] = f16_bits_to_f32_bits(static_cast<uint16_t>(c << 8));
  }
  return t;
}
inline constexpr Fp8Tables kFp8Tables = make_fp8_tables();
}  // namespace numerics_detail

// ---- BF16 ------------------------------------------------------------------------------------------
// BF16 bits -> f32. Exact (a 16-bit left shift); NaN payloads and signaling NaNs are kept as they are,
// as in PyTorch.
inline float bf16_to_f32(uint16_t b) noexcept {
  return numerics_detail::from_bits(static_cast<uint32_t>(b) << 16);
}
// f32 -> BF16 bits, round to nearest even (c10::detail::round_to_nearest_even). Overflow rounds to
// ±inf; any NaN becomes 0x7fc0 (positive quiet NaN, the c10 scalar result; PyTorch's AVX2/AVX-512
// CPU loops give 0xffff and CUDA 0x7fff: all three are NaN).
inline uint16_t f32_to_bf16(float f) noexcept {
  const uint32_t u = numerics_detail::bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return kBF16NaN;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// ---- F16 (IEEE binary16) ---------------------------------------------------------------------------
// F16 bits -> f32. Exact for numbers (subnormals included). NaN: quiet, sign and payload kept
// (sign | 0x7fc00000 | mantissa << 13), as PyTorch's vectorized CPU loop and x86 F16C return.
inline float f16_to_f32(uint16_t h) noexcept {
  return numerics_detail::from_bits(numerics_detail::f16_bits_to_f32_bits(h));
}
// f32 -> F16 bits, round to nearest even with gradual underflow; |x| >= 65520 (the tie above 65504)
// and ±inf give ±inf. NaN: sign | 0x7e00 | (f32 mantissa >> 13), i.e. quiet with the top payload bits
// kept (x86 F16C VCVTPS2PH, what PyTorch returns on x86).
inline uint16_t f32_to_f16(float f) noexcept {
  using namespace numerics_detail;
  const uint32_t u = bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  uint32_t r;
  if (a > 0x7f800000u) {
    r = 0x7e00u | ((a >> 13) & 0x3ffu);
  } else if (a >= 0x477ff000u) {  // 65520 rounds up to inf (65504 has an odd mantissa)
    r = 0x7c00u;
  } else if (a >= 0x38800000u) {  // >= 2^-14: normal binary16
    r = (a - (112u << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
  } else {  // subnormal or zero: the FPU rounds |x| + 0.5 at 2^-24 granularity
    r = bits(from_bits(a) + 0.5f) - 0x3f000000u;
  }
  return static_cast<uint16_t>(r | sign);
}

// ---- FP8 E4M3FN ------------------------------------------------------------------------------------
// E4M3FN bits -> f32. Exact; codes 0x7f/0xff (NaN) decode to the f32 NaN 0x7ff00000/0xfff00000 as in
// c10::detail::fp8e4m3fn_to_fp32_value. E4M3FN has no infinities.
inline float e4m3fn_to_f32(uint8_t c) noexcept {
  return numerics_detail::from_bits(numerics_detail::kFp8Tables.e4m3fn[c]);
}
// Saturating f32 -> E4M3FN: clamp to [-448, 448], then round to nearest even. Equals PyTorch's
// `torch.clamp(x, -448, 448).to(torch.float8_e4m3fn)`: ±inf -> ±448 (0x7e/0xfe), NaN -> 0x7f with the
// input's sign bit (0xff for a negative NaN), ±0 kept, |x| <= 2^-10 -> ±0 (the 2^-10 tie goes to even 0).
// This is the encode the FP8 writer uses.
inline uint8_t f32_to_e4m3fn_sat(float f) noexcept {
  using namespace numerics_detail;
  const uint32_t u = bits(f);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7fffffffu;
  const uint32_t c = a < 0x43e00000u ? a : 0x43e00000u;  // |x| clamped to 448 (NaN fixed below)
  // normal range (>= 2^-6): rebias exponent 127 -> 7 and round the mantissa to 3 bits, ties to even
  const uint32_t norm = (c - (120u << 23) + 0x7ffffu + ((c >> 20) & 1u)) >> 20;
  // subnormal range: adding 2^14 makes the FPU round |x| to a multiple of 2^-9 (ties to even)
  const uint32_t sub = bits(from_bits(c) + 16384.0f) - (141u << 23);
  uint32_t r = c < (121u << 23) ? sub : norm;
  r = a > 0x7f800000u ? uint32_t{kE4M3NaN} : r;
  return static_cast<uint8_t>(r | sign);
}
// f32 -> E4M3FN exactly as PyTorch's `x.to(torch.float8_e4m3fn)` in torch 2.15 (checked; the change
// is pytorch PR #178817, 2026-04): finite values that round beyond 448 and ±inf saturate to ±448;
// NaN -> 0x7f | sign. This is identical to f32_to_e4m3fn_sat for every input (a separate name so call
// sites say which contract they rely on). torch 2.11 (checked, CPU and CUDA) and older, and
// ml_dtypes, give NaN instead: see f32_to_e4m3fn_nonsat.
inline uint8_t f32_to_e4m3fn(float f) noexcept { return f32_to_e4m3fn_sat(f); }
// OCP non-saturating f32 -> E4M3FN (ml_dtypes.float8_e4m3fn, and PyTorch <= 2.11): as
// above, except that |x| > 464 (everything that rounds above 448) and ±inf give NaN (0x7f | sign).
// 464 itself is the tie between 448 and the NaN code and rounds to even 448.
inline uint8_t f32_to_e4m3fn_nonsat(float f) noexcept {
  const uint32_t a = numerics_detail::bits(f) & 0x7fffffffu;
  const uint8_t r = f32_to_e4m3fn_sat(f);
  return a > 0x43e80000u ? static_cast<uint8_t>(r | kE4M3NaN) : r;
}

// ---- FP8 E5M2 --------------------------------------------------------------------------------------
// E5M2 bits -> f32. Exact; 0x7c/0xfc are ±inf; NaN codes decode like F16 NaNs (the E5M2 code is the
// upper byte of an F16 pattern): quiet, sign and payload kept, as PyTorch returns.
inline float e5m2_to_f32(uint8_t c) noexcept {
  return numerics_detail::from_bits(numerics_detail::kFp8Tables.e5m2[c]);
}
// f32 -> E5M2 exactly as PyTorch's `x.to(torch.float8_e5m2)`: round to nearest even; |x| >= 61440
// (the tie above 57344) and ±inf give ±inf (0x7c/0xfc); NaN -> 0x7f | sign (payload dropped);
// |x| <= 2^-17 -> ±0.
inline uint8_t f32_to_e5m2(float f) noexcept {
  using namespace numerics_detail;
  const uint32_t u = bits(f);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7fffffffu;
  const uint32_t c = a < 0x47800000u ? a : 0x47800000u;  // >= 65536 -> inf below
  const uint32_t norm = (c - (112u << 23) + 0xfffffu + ((c >> 21) & 1u)) >> 21;
  const uint32_t sub = bits(from_bits(c) + 128.0f) - (134u << 23);
  uint32_t r = c < (113u << 23) ? sub : norm;  // 2^-14 is the smallest normal
  r = c == 0x47800000u ? 0x7cu : r;
  r = a > 0x7f800000u ? uint32_t{kE5M2NaN} : r;
  return static_cast<uint8_t>(r | sign);
}

// ---- BF16 -> FP8 (through f32, which is exact) -----------------------------------------------------
// Same results as PyTorch's `x_bf16.to(torch.float8_e4m3fn / float8_e5m2)`.
inline uint8_t bf16_to_e4m3fn(uint16_t b) noexcept { return f32_to_e4m3fn(bf16_to_f32(b)); }
inline uint8_t bf16_to_e4m3fn_sat(uint16_t b) noexcept { return f32_to_e4m3fn_sat(bf16_to_f32(b)); }
inline uint8_t bf16_to_e5m2(uint16_t b) noexcept { return f32_to_e5m2(bf16_to_f32(b)); }

// ---- bulk conversions ------------------------------------------------------------------------------
// Each converts in[i] -> out[i] for i in [0, N) with the scalar function of the same name; results are
// identical to the scalar ones. Shapes: in [N], out [N] (flat element spans; any tensor shape, row
// major). in and out must not overlap. Throws vlq::UsageError when in.size() != out.size().
// Vectorized with AVX2 where the CPU has it (same results, checked by tests).
void bf16_to_f32(std::span<const uint16_t> in, std::span<float> out);
void f32_to_bf16(std::span<const float> in, std::span<uint16_t> out);
void f16_to_f32(std::span<const uint16_t> in, std::span<float> out);
void f32_to_f16(std::span<const float> in, std::span<uint16_t> out);
void e4m3fn_to_f32(std::span<const uint8_t> in, std::span<float> out);
void f32_to_e4m3fn(std::span<const float> in, std::span<uint8_t> out);
void f32_to_e4m3fn_sat(std::span<const float> in, std::span<uint8_t> out);
void e5m2_to_f32(std::span<const uint8_t> in, std::span<float> out);
void f32_to_e5m2(std::span<const float> in, std::span<uint8_t> out);
void bf16_to_e4m3fn(std::span<const uint16_t> in, std::span<uint8_t> out);
void bf16_to_e5m2(std::span<const uint16_t> in, std::span<uint8_t> out);

// ---- E4M3 quantize / dequantize (per-tensor scale) -------------------------------------------------
// Per-tensor FP8 quantization: out[i] = f32_to_e4m3fn_sat(x[i] / scale), x [N] f32, out [N] E4M3FN
// codes. `scale` is the weight_scale / input_scale (real units per E4M3 unit, normally amax / 448);
// the division is an IEEE f32 division (not a multiply by 1/scale), as PyTorch's CPU `x / scale`.
// Equals `torch.clamp(x / scale, -448, 448).to(torch.float8_e4m3fn)` for f32 x and a float32 scale.
// Throws vlq::UsageError when x.size() != out.size() or when scale is not finite and > 0.
void quantize_e4m3_sat(std::span<const float> x, float scale, std::span<uint8_t> out);

// How the quotient of a BF16 tensor by an f32 scale is rounded before the E4M3 encode.
enum class Bf16Quotient {
  // q = f32(x) / scale in f32, then encode (one rounding): PyTorch `x.float() / scale`, or a
  // 1-element float32 scale tensor (type promotion gives f32).
  kF32,
  // q = bf16(f32(x) / scale) then encode (two roundings): PyTorch CPU `x_bf16 / scale` with a 0-dim
  // float32 scale tensor, whose result dtype is BF16 (0-dim tensors do not promote). This is what
  // ModelOpt's export `(weight / weight_scale).to(torch.float8_e4m3fn)` computes on CPU.
  kBf16,
  // q = bf16(f32(x) / f32(bf16(scale))) then encode: PyTorch CUDA `x_bf16 / scale` with a 0-dim
  // float32 scale tensor on the GPU, which casts the scale to the common dtype BF16 before dividing
  // (checked on torch 2.11 / H200). ModelOpt's export run on the GPU computes this.
  kBf16WithBf16Scale,
};
// quantize_e4m3_sat for BF16 input x [N] (bit patterns): out[i] = f32_to_e4m3fn_sat(q_i) with q_i as
// chosen by `rounding`. Throws vlq::UsageError like quantize_e4m3_sat.
void quantize_bf16_e4m3_sat(std::span<const uint16_t> x, float scale, std::span<uint8_t> out,
                            Bf16Quotient rounding = Bf16Quotient::kF32);

// Dequantization: out[i] = e4m3fn_to_f32(q[i]) * scale (one f32 multiply, exact unless it under- or
// overflows), q [N] E4M3FN codes, out [N] f32. Equals PyTorch `q.to(torch.float32) * scale`.
// NaN codes give NaN. Throws vlq::UsageError when q.size() != out.size() or scale is not finite.
void dequantize_e4m3(std::span<const uint8_t> q, float scale, std::span<float> out);

// ---- whole tensors --------------------------------------------------------------------------------
// Decodes out.size() little-endian elements of a float dtype (F64, F32, F16, BF16, F8_E4M3, F8_E5M2) to
// f32, each exactly as the scalar conversion above (F64 is rounded to nearest). The one decoder behind the
// runtime's weight loader, the exporter and the converter. Throws vlq::UsageError when bytes.size() !=
// out.size() x dtype size, or the dtype is not a float dtype (callers that accept fewer dtypes check first).
void decode_to_f32(DType dtype, std::span<const std::byte> bytes, std::span<float> out);

}  // namespace vlq
