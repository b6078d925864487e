// Bulk dtype conversions of whole tensors on every core (OpenMP): checkpoint decode to f32 and the re-encodes of
// the CUDA upload (f32 → E4M3 codes, f32 → BF16). Element for element the serial conversions of
// vlq/core/numerics.h (decode_to_f32, f32_to_e4m3fn, f32_to_bf16), so the results are bit-identical; only the work
// is split, in chunks of kBulkChunk elements. Source: the formats of vlq/core/dtype.h (safetensors dtypes).
// A 7B checkpoint's 8.3 G parameters took 18–27 s to decode on one core of the CUDA bench's 16-core host (run 16).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vlq/core/dtype.h"

namespace vlq::ops {

inline constexpr std::size_t kBulkChunk = std::size_t{1} << 22;  // elements per task (4 Mi)

// out[i] = the value of element i of `bytes` (dtype `dtype`: F64, F32, F16, BF16, F8_E4M3, F8_E5M2) as f32.
// bytes.size() must be out.size() · dtype_size(dtype). Throws vlq::UsageError (before any work) otherwise or for
// a non-float dtype.
void decode_to_f32_parallel(DType dtype, std::span<const std::byte> bytes, std::span<float> out);

// out[i] = f32_to_e4m3fn(in[i]) (saturating, round to nearest even). Sizes must match (vlq::UsageError).
void f32_to_e4m3fn_parallel(std::span<const float> in, std::span<std::uint8_t> out);

// out[i] = f32_to_bf16(in[i]) (round to nearest even). Sizes must match (vlq::UsageError).
void f32_to_bf16_parallel(std::span<const float> in, std::span<std::uint16_t> out);

// A vector of n zero floats for a large tensor: its memory is advised as transparent huge pages before the
// first touch (madvise MADV_HUGEPAGE; THP "madvise" mode is the common default), so filling it faults once per
// 2 MiB instead of once per 4 KiB. Loading a 7B-shaped checkpoint (4 layers, 10.8 GB of f32) spent 12.5 s of its
// 14 s in the kernel, 2.66 M page faults (2026-12-08, 2-core dev machine). Small n: a plain vector. VLQ_THP=0
// turns the advice off (A/B).
// large_vector<T>: the same for T = float, std::uint8_t (E4M3 codes), std::uint16_t (BF16).
template <class T>
std::vector<T> large_vector(std::size_t n);
inline std::vector<float> large_f32_vector(std::size_t n) { return large_vector<float>(n); }

}  // namespace vlq::ops
