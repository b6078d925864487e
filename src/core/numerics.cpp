// Bulk (span) versions of the numeric conversions in vlq/core/numerics.h, and the E4M3
// quantize/dequantize kernels. Each loop calls the inline scalar function, so bulk == scalar by
// construction; the loops are branch-free so the compiler vectorizes them, and each kernel is built
// twice (baseline x86-64 and AVX2, picked at load time) through GCC/Clang target_clones.
#include "vlq/core/numerics.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "vlq/core/error.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(VLQ_NO_MULTIVERSION)
#define VLQ_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define VLQ_MULTIVERSION
#endif

namespace vlq {
namespace {

void check_sizes(const char* fn, std::size_t in, std::size_t out) {
  if (in == out) return;
  throw UsageError({std::string("vlq::") + fn, "input and output spans differ in length",
                    std::to_string(in) + " output elements", std::to_string(out),
                    "pass an output span with one element per input element"});
}

void check_scale(const char* fn, float scale, bool need_positive) {
  if (std::isfinite(scale) && (!need_positive || scale > 0.0f)) return;
  throw UsageError({std::string("vlq::") + fn, "invalid per-tensor scale",
                    need_positive ? "a finite scale > 0" : "a finite scale", std::to_string(scale),
                    "the scale is amax / 448; a zero amax (all-zero tensor) needs a positive "
                    "placeholder scale such as 1.0"});
}

// Runs k(in + i, out + i, len) over [0, n) in chunks on up to hardware_concurrency threads when n is large
// (whole-checkpoint conversions: a 7B model is ~8e9 elements); elementwise, so the result does not depend on
// the split. Small n runs inline.
template <class In, class Out, class K>
void par(const In* in, Out* out, std::size_t n, K k) {
  constexpr std::size_t kMin = std::size_t{1} << 22;
  const std::size_t threads = std::min<std::size_t>(std::max(1u, std::thread::hardware_concurrency()), n / kMin);
  if (threads <= 1) return k(in, out, n);
  std::vector<std::thread> pool;
  const std::size_t step = (n + threads - 1) / threads;
  for (std::size_t t = 1; t < threads; ++t) {
    const std::size_t b = t * step, e = std::min(n, b + step);
    if (b < e) pool.emplace_back([=] { k(in + b, out + b, e - b); });
  }
  k(in, out, std::min(n, step));
  for (auto& th : pool) th.join();
}

// Kernels: raw pointers + count, restrict, one clone per ISA.
VLQ_MULTIVERSION void k_bf16_to_f32(const uint16_t* __restrict in, float* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(in[i]);
}
VLQ_MULTIVERSION void k_f32_to_bf16(const float* __restrict in, uint16_t* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(in[i]);
}
VLQ_MULTIVERSION void k_f16_to_f32(const uint16_t* __restrict in, float* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f16_to_f32(in[i]);
}
VLQ_MULTIVERSION void k_f32_to_f16(const float* __restrict in, uint16_t* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_f16(in[i]);
}
void k_e4m3fn_to_f32(const uint8_t* __restrict in, float* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = e4m3fn_to_f32(in[i]);
}
VLQ_MULTIVERSION void k_f32_to_e4m3fn_sat(const float* __restrict in, uint8_t* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_e4m3fn_sat(in[i]);
}
void k_e5m2_to_f32(const uint8_t* __restrict in, float* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = e5m2_to_f32(in[i]);
}
VLQ_MULTIVERSION void k_f32_to_e5m2(const float* __restrict in, uint8_t* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_e5m2(in[i]);
}
VLQ_MULTIVERSION void k_bf16_to_e4m3fn(const uint16_t* __restrict in, uint8_t* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_e4m3fn(in[i]);
}
VLQ_MULTIVERSION void k_bf16_to_e5m2(const uint16_t* __restrict in, uint8_t* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_e5m2(in[i]);
}
VLQ_MULTIVERSION void k_quantize_f32(const float* __restrict x, float scale, uint8_t* __restrict out,
                                     std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_e4m3fn_sat(x[i] / scale);
}
VLQ_MULTIVERSION void k_quantize_bf16_f32q(const uint16_t* __restrict x, float scale,
                                           uint8_t* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_e4m3fn_sat(bf16_to_f32(x[i]) / scale);
}
VLQ_MULTIVERSION void k_quantize_bf16_bf16q(const uint16_t* __restrict x, float scale,
                                            uint8_t* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    out[i] = bf16_to_e4m3fn_sat(f32_to_bf16(bf16_to_f32(x[i]) / scale));
}
void k_dequantize(const uint8_t* __restrict q, float scale, float* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = e4m3fn_to_f32(q[i]) * scale;
}

}  // namespace

void bf16_to_f32(std::span<const uint16_t> in, std::span<float> out) {
  check_sizes("bf16_to_f32", in.size(), out.size());
  par(in.data(), out.data(), in.size(), [](auto a, auto b, auto c) { k_bf16_to_f32(a, b, c); });
}
void f32_to_bf16(std::span<const float> in, std::span<uint16_t> out) {
  check_sizes("f32_to_bf16", in.size(), out.size());
  par(in.data(), out.data(), in.size(), [](auto a, auto b, auto c) { k_f32_to_bf16(a, b, c); });
}
void f16_to_f32(std::span<const uint16_t> in, std::span<float> out) {
  check_sizes("f16_to_f32", in.size(), out.size());
  par(in.data(), out.data(), in.size(), [](auto a, auto b, auto c) { k_f16_to_f32(a, b, c); });
}
void f32_to_f16(std::span<const float> in, std::span<uint16_t> out) {
  check_sizes("f32_to_f16", in.size(), out.size());
  k_f32_to_f16(in.data(), out.data(), in.size());
}
void e4m3fn_to_f32(std::span<const uint8_t> in, std::span<float> out) {
  check_sizes("e4m3fn_to_f32", in.size(), out.size());
  par(in.data(), out.data(), in.size(), [](auto a, auto b, auto c) { k_e4m3fn_to_f32(a, b, c); });
}
void f32_to_e4m3fn(std::span<const float> in, std::span<uint8_t> out) {
  check_sizes("f32_to_e4m3fn", in.size(), out.size());
  par(in.data(), out.data(), in.size(), [](auto a, auto b, auto c) { k_f32_to_e4m3fn_sat(a, b, c); });  // same function, see the header
}
void f32_to_e4m3fn_sat(std::span<const float> in, std::span<uint8_t> out) {
  check_sizes("f32_to_e4m3fn_sat", in.size(), out.size());
  k_f32_to_e4m3fn_sat(in.data(), out.data(), in.size());
}
void e5m2_to_f32(std::span<const uint8_t> in, std::span<float> out) {
  check_sizes("e5m2_to_f32", in.size(), out.size());
  k_e5m2_to_f32(in.data(), out.data(), in.size());
}
void f32_to_e5m2(std::span<const float> in, std::span<uint8_t> out) {
  check_sizes("f32_to_e5m2", in.size(), out.size());
  k_f32_to_e5m2(in.data(), out.data(), in.size());
}
void bf16_to_e4m3fn(std::span<const uint16_t> in, std::span<uint8_t> out) {
  check_sizes("bf16_to_e4m3fn", in.size(), out.size());
  k_bf16_to_e4m3fn(in.data(), out.data(), in.size());
}
void bf16_to_e5m2(std::span<const uint16_t> in, std::span<uint8_t> out) {
  check_sizes("bf16_to_e5m2", in.size(), out.size());
  k_bf16_to_e5m2(in.data(), out.data(), in.size());
}

void quantize_e4m3_sat(std::span<const float> x, float scale, std::span<uint8_t> out) {
  check_sizes("quantize_e4m3_sat", x.size(), out.size());
  check_scale("quantize_e4m3_sat", scale, true);
  k_quantize_f32(x.data(), scale, out.data(), x.size());
}

void quantize_bf16_e4m3_sat(std::span<const uint16_t> x, float scale, std::span<uint8_t> out,
                            Bf16Quotient rounding) {
  check_sizes("quantize_bf16_e4m3_sat", x.size(), out.size());
  check_scale("quantize_bf16_e4m3_sat", scale, true);
  switch (rounding) {
    case Bf16Quotient::kF32:
      k_quantize_bf16_f32q(x.data(), scale, out.data(), x.size());
      return;
    case Bf16Quotient::kBf16:
      k_quantize_bf16_bf16q(x.data(), scale, out.data(), x.size());
      return;
    case Bf16Quotient::kBf16WithBf16Scale: {
      const float scale_bf16 = bf16_to_f32(f32_to_bf16(scale));
      check_scale("quantize_bf16_e4m3_sat (scale rounded to BF16)", scale_bf16, true);
      k_quantize_bf16_bf16q(x.data(), scale_bf16, out.data(), x.size());
      return;
    }
  }
  throw UsageError({"vlq::quantize_bf16_e4m3_sat", "unknown Bf16Quotient value", "kF32, kBf16 or "
                    "kBf16WithBf16Scale", std::to_string(static_cast<int>(rounding)), ""});
}

void dequantize_e4m3(std::span<const uint8_t> q, float scale, std::span<float> out) {
  check_sizes("dequantize_e4m3", q.size(), out.size());
  check_scale("dequantize_e4m3", scale, false);
  k_dequantize(q.data(), scale, out.data(), q.size());
}

void decode_to_f32(DType dtype, std::span<const std::byte> bytes, std::span<float> out) {
  const std::size_t n = out.size();
  if (bytes.size() != n * dtype_size(dtype))
    throw UsageError({"decode_to_f32", "byte count does not match the element count",
                      std::to_string(n * dtype_size(dtype)), std::to_string(bytes.size()), "this is a bug in the caller"});
  const void* p = bytes.data();
  switch (dtype) {
    case DType::F32: std::memcpy(out.data(), p, n * 4); return;
    case DType::F64:
      for (std::size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, static_cast<const std::byte*>(p) + i * 8, 8);
        out[i] = static_cast<float>(d);
      }
      return;
    case DType::BF16: bf16_to_f32(std::span<const uint16_t>(static_cast<const uint16_t*>(p), n), out); return;
    case DType::F16: f16_to_f32(std::span<const uint16_t>(static_cast<const uint16_t*>(p), n), out); return;
    case DType::F8_E4M3: e4m3fn_to_f32(std::span<const uint8_t>(static_cast<const uint8_t*>(p), n), out); return;
    case DType::F8_E5M2: e5m2_to_f32(std::span<const uint8_t>(static_cast<const uint8_t*>(p), n), out); return;
    default:
      throw UsageError({"decode_to_f32", "not a float dtype", "F64, F32, F16, BF16, F8_E4M3 or F8_E5M2",
                        std::string(dtype_name(dtype)), "this is a bug in the caller"});
  }
}

}  // namespace vlq
