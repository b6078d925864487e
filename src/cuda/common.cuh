// Helpers shared by the vlq CUDA kernels: element conversions (F32/BF16/E4M3), the bit-exact saturating E4M3
// encoder, warp reductions, streaming 16-byte loads, and the host-side dtype dispatch and paged-attention argument
// checks of the attention launchers; programmatic dependent launch (PDL) for the decode-step kernels.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "vlq/core/dtype.h"
#include "vlq/cuda/device.h"

namespace vlq::cuda {
struct PagedKvLayer;
struct Tensor;
}
namespace vlq::cuda::detail {

// Host: throws UsageError unless `c` is a valid paged cache layer (attention_cuda.cu).
void check_paged_cache(const char* op, const PagedKvLayer& c);
// Host: the cache plus the arguments shared by paged_attention and paged_attention_prefill (q [T, heads, D] with
// heads % kv_heads == 0, block_tables [B, W], q_seq / q_pos [T] I32, out [T, heads, D] F32|BF16, or also
// F8_E4M3 when e4m3_out).
void check_paged_query(const char* op, const Tensor& q, const PagedKvLayer& cache, const Tensor& block_tables,
                       const Tensor& q_seq, const Tensor& q_pos, const Tensor& out, bool e4m3_out = false);

using bf16 = __nv_bfloat16;

// Host dispatch on a runtime dtype: f(T{}) with T = float | bf16 (activations) or float | bf16 | E4M3 codes
// (KV cache); shared by the attention launchers.
template <class F> void with_cache_type(DType d, F&& f) {
  if (d == DType::F32) f(float{});
  else if (d == DType::BF16) f(bf16{});
  else f(std::uint8_t{});
}
template <class F> void with_act(DType d, F&& f) {
  if (d == DType::F32) f(float{}); else f(bf16{});
}
// The three types of a paged attention launch: f(TQ{}, C{}, O{}) for q, the cache and out.
template <class F> void with_paged_types(DType q, DType cache, DType out, F&& f) {
  with_act(q, [&](auto tq) {
    with_cache_type(cache, [&](auto tc) { with_act(out, [&](auto to) { f(tq, tc, to); }); });
  });
}

// f32 -> E4M3FN saturating, round to nearest even: a device port of vlq::f32_to_e4m3fn_sat
// (include/vlq/core/numerics.h), same integer/float steps, so bit-exact with it (and with
// torch.clamp(x, -448, 448).to(torch.float8_e4m3fn)) for every input including NaN signs.
__device__ __forceinline__ std::uint8_t f32_to_e4m3_sat(float f) {
  const std::uint32_t u = __float_as_uint(f);
  const std::uint32_t sign = (u >> 24) & 0x80u;
  const std::uint32_t a = u & 0x7fffffffu;
  const std::uint32_t c = a < 0x43e00000u ? a : 0x43e00000u;
  const std::uint32_t norm = (c - (120u << 23) + 0x7ffffu + ((c >> 20) & 1u)) >> 20;
  const std::uint32_t sub = __float_as_uint(__fadd_rn(__uint_as_float(c), 16384.0f)) - (141u << 23);
  std::uint32_t r = c < (121u << 23) ? sub : norm;
  r = a > 0x7f800000u ? 0x7fu : r;
  return static_cast<std::uint8_t>(r | sign);
}
// E4M3FN code -> f32, exact (hardware cvt through f16, which holds every E4M3 value; NaN codes give NaN).
__device__ __forceinline__ float e4m3_to_f32(std::uint8_t c) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(c, __NV_E4M3);
  return __half2float(__half(h));
}
// Two E4M3 codes (low byte first) -> two f32.
__device__ __forceinline__ float2 e4m3x2_to_f32x2(std::uint16_t c2) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(c2, __NV_E4M3);
  return __half22float2(__half2(h));
}

template <class T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<bf16>(bf16 v) { return __bfloat162float(v); }

template <class T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }

// Output element that may be E4M3 (quantized with IEEE division by `scale`, as vlq::quantize_e4m3_sat).
struct E4M3Out {
  std::uint8_t* p;
  float scale;
};
template <class O> struct OutWriter;
template <> struct OutWriter<float> {
  float* p;
  __device__ __forceinline__ void put(std::int64_t i, float v) const { p[i] = v; }
};
template <> struct OutWriter<bf16> {
  bf16* p;
  __device__ __forceinline__ void put(std::int64_t i, float v) const { p[i] = __float2bfloat16_rn(v); }
};
template <> struct OutWriter<std::uint8_t> {
  std::uint8_t* p;
  float scale;
  __device__ __forceinline__ void put(std::int64_t i, float v) const { p[i] = f32_to_e4m3_sat(__fdiv_rn(v, scale)); }
};

// Half-split rotary of one pair (dims j and j + D/2 of a head, angle a): vlq::ops::apply_rotary_inplace's math.
__device__ __forceinline__ void rotate_pair_cs(float& p, float& q, float c, float s) {
  const float p0 = p, q0 = q;
  p = p0 * c + (-q0) * s;
  q = q0 * c + p0 * s;
}
__device__ __forceinline__ void rotate_pair(float& p, float& q, float a) { rotate_pair_cs(p, q, cosf(a), sinf(a)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// 16-byte global load that bypasses L1 (weights are read once per step).
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

inline unsigned ceil_div(std::int64_t a, std::int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

// Threads of cuda::rms_norm's CTA for a row of `dim` elements (about 4 per thread, a multiple of 32 in 32..1024):
// thread t sums the squares of elements t, t + threads, ... in that order, then the CTA reduces warp sums
// (elementwise_cuda.cu). The norm-folded GEMV (gemv_cuda.cu) replays the same order to give the same bits.
constexpr int kRmsNormMaxThreads = 1024;
inline int rms_norm_threads(std::int64_t dim) {
  const std::int64_t t = ((dim + 3) / 4 + 31) / 32 * 32;
  return static_cast<int>(t < 32 ? 32 : t > kRmsNormMaxThreads ? kRmsNormMaxThreads : t);
}

// ---- Programmatic dependent launch (CUDA C++ Programming Guide, "Programmatic Dependent Launch and
// Synchronization"; PTX griddepcontrol, sm_90). A kernel launched by launch_pdl may start while the kernel
// before it in the stream is still running. The rule every such kernel keeps: nothing it reads or writes that
// the previous kernels touch is accessed before pdl_wait() (which returns once the previous grid has completed
// and its memory is visible; it is a no-op for a normal launch); only constant data (weights) may be read
// before it — and, in the decode-attention kernel under its caller's prior_keys_cached promise, the step's
// inputs (uploaded by a synchronous copy before the forward) and cache rows written by earlier steps. pdl_trigger() lets the next kernel launch once every CTA of this one has started. In CUDA graphs
// the relation is captured as a programmatic edge. The decode-step kernels (GEMV, RMSNorm, SwiGLU, rotary + KV
// write, decode attention) use it, so that a kernel's launch, prologue and weight fetch overlap the tail of the
// one before (about 9 kernels per layer at batch 1). VLQ_CUDA_PDL=0 launches them normally (A/B).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
inline bool pdl_enabled() {
  static const bool on = env_switch("VLQ_CUDA_PDL", true);
  return on;
}
// kernel<<<grid, block, smem, stream>>>(args...) with the programmatic-serialization attribute when
// pdl_enabled(). Throws CudaError when the launch fails.
template <class... P, class... A>
void launch_pdl(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, A&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = pdl_enabled() ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  VLQ_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<P>(std::forward<A>(args))...));
}

}  // namespace vlq::cuda::detail
