// Paged causal GQA attention for one-row queries (decode; vlq/cuda/attention.h: paged_attention): one CTA of
// 128 threads per (query row, KV head, group of <= 8 query heads), so each K/V row of the cache is read once
// for all query heads that share it. Keys go in chunks of 128, one key per thread for the scores (the
// thread reads the whole K row and dots it with the group's q vectors from shared memory), then online
// softmax per head in f32 (max and sum reduced over the CTA per chunk), then P·V with warp w taking keys
// w, w+4, ... and each lane head_dim/32 consecutive output elements. FP8 codes are decoded exactly, k_scale
// folds into the scores and v_scale into the output. CPU reference: ops::attention_causal_cached.
#include <string>

#include "common.cuh"
#include "vlq/cuda/attention.h"

namespace vlq::cuda {
namespace {
using namespace detail;

constexpr int kThreads = 128, kWarps = kThreads / 32, kChunk = kThreads, kGroup = 8, kMaxD = 256;

// 8 consecutive cache elements → f32.
__device__ __forceinline__ void load8(const float* p, float* f) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
__device__ __forceinline__ void load8(const bf16* p, float* f) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const bf16* h = reinterpret_cast<const bf16*>(&u);
#pragma unroll
  for (int i = 0; i < 8; ++i) f[i] = __bfloat162float(h[i]);
}
__device__ __forceinline__ void load8(const std::uint8_t* p, float* f) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const std::uint16_t* c = reinterpret_cast<const std::uint16_t*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = e4m3x2_to_f32x2(c[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}
template <class C> __device__ __forceinline__ float load1(const C* p) { return to_f32(*p); }
template <> __device__ __forceinline__ float load1<std::uint8_t>(const std::uint8_t* p) { return e4m3_to_f32(*p); }

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_add(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Grid (rows, kv_heads, ceil(G / 8)), G = heads / kv_heads. d % 32 == 0, <= 256 (PagedKvLayer's rule: cache
// rows are 16-byte aligned for every dtype).
template <class TQ, class C, class O>
__global__ void __launch_bounds__(kThreads) paged_decode_kernel(const TQ* q, std::int64_t ldq, int heads, int d, const C* kc,
                                                                const C* vc, int block_size, int kv_heads, float ks, float vs,
                                                                const int* tables, int max_blocks, const int* q_seq,
                                                                const int* q_pos, float scale, O* out, const int* rows) {
  __shared__ __align__(16) float sq[kGroup][kMaxD];  // q · scale · k_scale · log2(e)
  __shared__ float sp[kGroup][kChunk];                // scores, then probabilities, of the chunk
  __shared__ float sred[2][kGroup][kWarps];           // per-warp max / sum
  __shared__ __align__(16) float sacc[kWarps][kGroup][kMaxD];
  const int t = rows ? rows[blockIdx.x] : static_cast<int>(blockIdx.x);
  const int G = heads / kv_heads, kvh = blockIdx.y;
  const int h0 = kvh * G + static_cast<int>(blockIdx.z) * kGroup, ng = min(kGroup, kvh * G + G - h0);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, e = d / 32;
  const float qs = scale * ks * 1.4426950408889634f;
  for (int i = tid; i < kGroup * d; i += kThreads) {
    const int g = i / d, c = i % d;
    sq[g][c] = g < ng ? to_f32(q[t * ldq + static_cast<std::int64_t>(h0 + g) * d + c]) * qs : 0.0f;
  }
  const int len = q_pos[t] + 1;
  const int* table = tables + static_cast<std::int64_t>(q_seq[t]) * max_blocks;
  const int row_elems = kv_heads * d;
  auto base = [&](int j) {
    return (static_cast<std::int64_t>(table[j / block_size]) * block_size + j % block_size) * row_elems +
           static_cast<std::int64_t>(kvh) * d;
  };
  float m[kGroup], l[kGroup], acc[kGroup][kMaxD / 32];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxD / 32; ++i) acc[g][i] = 0.0f;
  }
  __syncthreads();
  for (int c0 = 0; c0 < len; c0 += kChunk) {
    const int nk = min(kChunk, len - c0);
    // scores of key c0 + tid for the group's heads
    float s[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) s[g] = tid < nk ? 0.0f : -INFINITY;
    if (tid < nk) {
      const C* kr = kc + base(c0 + tid);
#pragma unroll 2
      for (int c = 0; c < d; c += 8) {
        float kf[8];
        load8(kr + c, kf);
#pragma unroll
        for (int g = 0; g < kGroup; ++g) {
          if (g < ng) {
            const float4 a = *reinterpret_cast<const float4*>(&sq[g][c]), b = *reinterpret_cast<const float4*>(&sq[g][c + 4]);
            s[g] = fmaf(a.x, kf[0], fmaf(a.y, kf[1], fmaf(a.z, kf[2], fmaf(a.w, kf[3], s[g]))));
            s[g] = fmaf(b.x, kf[4], fmaf(b.y, kf[5], fmaf(b.z, kf[6], fmaf(b.w, kf[7], s[g]))));
          }
        }
      }
    }
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      const float w = warp_max(s[g]);
      if (lane == 0) sred[0][g][warp] = w;
    }
    __syncthreads();
    float mn[kGroup], corr[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      float cm = sred[0][g][0];
#pragma unroll
      for (int w = 1; w < kWarps; ++w) cm = fmaxf(cm, sred[0][g][w]);
      mn[g] = fmaxf(m[g], cm);
      corr[g] = m[g] == -INFINITY ? 0.0f : exp2f(m[g] - mn[g]);
      const float p = s[g] == -INFINITY ? 0.0f : exp2f(s[g] - mn[g]);
      sp[g][tid] = p;
      const float w = warp_add(p);
      if (lane == 0) sred[1][g][warp] = w;
      m[g] = mn[g];
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      float cs = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) cs += sred[1][g][w];
      l[g] = l[g] * corr[g] + cs;
#pragma unroll
      for (int i = 0; i < kMaxD / 32; ++i) acc[g][i] *= corr[g];
    }
    // P·V: warp w takes keys w, w + 4, ...; lane holds elements [lane·e, lane·e + e)
    for (int jj = warp; jj < nk; jj += kWarps) {
      const C* vr = vc + base(c0 + jj) + lane * e;
      float vf[kMaxD / 32];
#pragma unroll
      for (int i = 0; i < kMaxD / 32; ++i) vf[i] = i < e ? load1(vr + i) : 0.0f;
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        if (g < ng) {
          const float p = sp[g][jj];
#pragma unroll
          for (int i = 0; i < kMaxD / 32; ++i) acc[g][i] = fmaf(p, vf[i], acc[g][i]);
        }
      }
    }
    __syncthreads();  // sp / sred are rewritten by the next chunk
  }
#pragma unroll
  for (int g = 0; g < kGroup; ++g)
#pragma unroll
    for (int i = 0; i < kMaxD / 32; ++i)
      if (g < ng && i < e) sacc[warp][g][lane * e + i] = acc[g][i];
  __syncthreads();
  for (int i = tid; i < ng * d; i += kThreads) {
    const int g = i / d, c = i % d;
    float a = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) a += sacc[w][g][c];
    float lg = 0.0f;
#pragma unroll
    for (int k = 0; k < kGroup; ++k)
      if (k == g) lg = l[k];
    out[(static_cast<std::int64_t>(t) * heads + h0 + g) * d + c] = from_f32<O>(lg > 0.0f ? a / lg * vs : 0.0f);
  }
}

}  // namespace

void paged_attention(const Tensor& q, const PagedKvLayer& cache, const Tensor& block_tables, const Tensor& q_seq,
                     const Tensor& q_pos, float scale, const Tensor& out, cudaStream_t stream, const Tensor* rows) {
  check_paged_cache("cuda::paged_attention", cache);
  expect_tensor("cuda::paged_attention", "q", q, {DType::F32, DType::BF16}, {-1, -1, cache.head_dim});
  const std::int64_t t = q.shape[0], heads = q.shape[1];
  if (heads % cache.kv_heads || q.stride[1] != cache.head_dim)
    usage_error("cuda::paged_attention", "heads must be a multiple of kv_heads, heads contiguous",
                "multiple of " + std::to_string(cache.kv_heads), q.describe());
  expect_tensor("cuda::paged_attention", "block_tables", block_tables, {DType::I32}, {-1, -1});
  expect_tensor("cuda::paged_attention", "q_seq", q_seq, {DType::I32}, {t});
  expect_tensor("cuda::paged_attention", "q_pos", q_pos, {DType::I32}, {t});
  expect_tensor("cuda::paged_attention", "out", out, {DType::F32, DType::BF16}, {t, heads, cache.head_dim});
  if (rows) expect_tensor("cuda::paged_attention", "rows", *rows, {DType::I32}, {-1});
  const std::int64_t n = rows ? rows->shape[0] : t;
  if (!t || !n) return;
  const std::int64_t G = heads / cache.kv_heads;
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(cache.kv_heads), static_cast<unsigned>((G + kGroup - 1) / kGroup));
  with_act(q.dtype, [&](auto tq) {
    using TQ = decltype(tq);
    with_cache_type(cache.dtype, [&](auto tc) {
      using C = decltype(tc);
      with_act(out.dtype, [&](auto to) {
        using O = decltype(to);
        paged_decode_kernel<TQ, C, O><<<grid, kThreads, 0, stream>>>(
            static_cast<const TQ*>(q.data), q.stride[0], static_cast<int>(heads), cache.head_dim,
            static_cast<const C*>(cache.k), static_cast<const C*>(cache.v), cache.block_size, cache.kv_heads,
            cache.dtype == DType::F8_E4M3 ? cache.k_scale : 1.0f, cache.dtype == DType::F8_E4M3 ? cache.v_scale : 1.0f,
            static_cast<const int*>(block_tables.data), static_cast<int>(block_tables.stride[0]),
            static_cast<const int*>(q_seq.data), static_cast<const int*>(q_pos.data), scale, static_cast<O*>(out.data),
            rows ? static_cast<const int*>(rows->data) : nullptr);
      });
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("paged_decode_kernel");
}

}  // namespace vlq::cuda
