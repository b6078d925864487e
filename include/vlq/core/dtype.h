// Element types of checkpoint tensors, named as the safetensors format spells them
// (huggingface/safetensors, safetensors/src/tensor.rs `Dtype`).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace vlq {

enum class DType {
  F64, F32, F16, BF16,
  F8_E4M3,   // float8_e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa; no inf, NaN = 0x7f/0xff; max 448
  F8_E5M2,   // float8_e5m2: IEEE-like, bias 15, inf and NaN; max 57344
  F8_E8M0,   // exponent-only scale type (MX formats); 0xff = NaN
  I64, I32, I16, I8,
  U64, U32, U16, U8,
  BOOL,
};

// Size of one element in bytes (BOOL is 1 byte in safetensors).
std::size_t dtype_size(DType t) noexcept;
// The safetensors spelling, e.g. "BF16", "F8_E4M3".
std::string_view dtype_name(DType t) noexcept;
// Parses a safetensors dtype string; std::nullopt for unknown strings (callers name the string in
// their error). Exact, case-sensitive match as in the format.
std::optional<DType> parse_dtype(std::string_view s) noexcept;
// True for F8_E4M3, F8_E5M2 (the FP8 data types; F8_E8M0 is a scale type, not counted).
bool is_fp8(DType t) noexcept;
// True for F64/F32/F16/BF16/F8_*.
bool is_float(DType t) noexcept;

}  // namespace vlq
