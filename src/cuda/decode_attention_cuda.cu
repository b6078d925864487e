// Paged causal GQA attention for one-row queries (decode; vlq/cuda/attention.h: paged_attention): one CTA of
// 128 threads per (query row, KV head, group of <= 8 query heads), so each K/V row of the cache is read once for
// all query heads that share it (fewer heads per CTA when the batch is too small to fill the GPU). Keys go in
// chunks of 128: scores, online softmax per head in f32 (max and sum over the chunk), then P·V. FP8 codes are
// decoded exactly, k_scale folds into the scores and v_scale into the output. Two kernels: head_dim 128 (every
// Qwen2.5-VL language model; loads laid out for memory-level parallelism) and any head_dim % 32 == 0 (one key
// per thread). CPU reference: ops::attention_causal_cached.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <cstdlib>
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

// 4 consecutive cache elements → f32, one vector load (rows are 16-byte aligned, lane offsets multiples of 4).
__device__ __forceinline__ void load4(const std::uint8_t* p, float* f) {
  const std::uint32_t u = *reinterpret_cast<const std::uint32_t*>(p);
  const float2 a = e4m3x2_to_f32x2(static_cast<std::uint16_t>(u)), b = e4m3x2_to_f32x2(static_cast<std::uint16_t>(u >> 16));
  f[0] = a.x, f[1] = a.y, f[2] = b.x, f[3] = b.y;
}
__device__ __forceinline__ void load4(const bf16* p, float* f) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const bf16* h = reinterpret_cast<const bf16*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) f[i] = __bfloat162float(h[i]);
}
__device__ __forceinline__ void load4(const float* p, float* f) {
  const float4 a = *reinterpret_cast<const float4*>(p);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
}

// Any head_dim: grid (rows, kv_heads, ceil(G / gs)), G = heads / kv_heads, gs <= 8 query heads per CTA. d % 32 == 0,
// <= 256 (PagedKvLayer's rule: cache rows are 16-byte aligned for every dtype). Key c0 + tid's score is thread tid's;
// P·V: warp w takes keys w, w + 4, ..., lane holds elements [lane·e, lane·e + e).
template <class TQ, class C, class O>
__global__ void __launch_bounds__(kThreads) paged_decode_kernel(const TQ* q, std::int64_t ldq, int heads, int d, const C* kc,
                                                                const C* vc, int block_size, int kv_heads, float ks, float vs,
                                                                const int* tables, int max_blocks, const int* q_seq,
                                                                const int* q_pos, float scale, OutWriter<O> out, const int* rows, int gs) {
  constexpr int DM = kMaxD, EM = DM / 32;
  __shared__ __align__(16) float sq[kGroup][DM];  // q · scale · k_scale · log2(e)
  __shared__ float sp[kGroup][kChunk];            // scores, then probabilities, of the chunk
  __shared__ float sred[2][kGroup][kWarps];       // per-warp max / sum
  __shared__ __align__(16) float sacc[kWarps][kGroup][DM];
  pdl_trigger();
  pdl_wait();  // launched with PDL (common.cuh)
  const int t = rows ? rows[blockIdx.x] : static_cast<int>(blockIdx.x);
  const int G = heads / kv_heads, kvh = blockIdx.y;
  const int h0 = kvh * G + static_cast<int>(blockIdx.z) * gs, ng = min(gs, kvh * G + G - h0);
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
  float m[kGroup], l[kGroup], acc[kGroup][EM];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < EM; ++i) acc[g][i] = 0.0f;
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
      for (int c0k = 0; c0k < d; c0k += 8) {
        float kf[8];
        load8(kr + c0k, kf);
#pragma unroll
        for (int c = 0; c < 8; c += 4) {
#pragma unroll
          for (int g = 0; g < kGroup; ++g) {
            if (g < ng) {
              const float4 a = *reinterpret_cast<const float4*>(&sq[g][c0k + c]);
              s[g] = fmaf(a.x, kf[c], fmaf(a.y, kf[c + 1], fmaf(a.z, kf[c + 2], fmaf(a.w, kf[c + 3], s[g]))));
            }
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
    float corr[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      float cm = sred[0][g][0];
#pragma unroll
      for (int w = 1; w < kWarps; ++w) cm = fmaxf(cm, sred[0][g][w]);
      const float mn = fmaxf(m[g], cm);
      corr[g] = m[g] == -INFINITY ? 0.0f : exp2f(m[g] - mn);
      const float p = s[g] == -INFINITY ? 0.0f : exp2f(s[g] - mn);
      sp[g][tid] = p;
      const float w = warp_sum(p);
      if (lane == 0) sred[1][g][warp] = w;
      m[g] = mn;
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      float cs = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) cs += sred[1][g][w];
      l[g] = l[g] * corr[g] + cs;
#pragma unroll
      for (int i = 0; i < EM; ++i) acc[g][i] *= corr[g];
    }
    // P·V, VB V rows loaded per round (keys past the chunk read its last key with probability 0)
    constexpr int VB = 2;
    for (int j0 = warp; j0 < nk; j0 += kWarps * VB) {
      float vf[VB][EM];
#pragma unroll
      for (int u = 0; u < VB; ++u) {
        const C* vr = vc + base(c0 + min(j0 + u * kWarps, nk - 1)) + lane * e;
#pragma unroll
        for (int i = 0; i < EM; ++i) vf[u][i] = i < e ? load1(vr + i) : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < VB; ++u) {
#pragma unroll
        for (int g = 0; g < kGroup; ++g) {
          if (g < ng) {
            const float p = sp[g][j0 + u * kWarps];
#pragma unroll
            for (int i = 0; i < EM; ++i) acc[g][i] = fmaf(p, vf[u][i], acc[g][i]);
          }
        }
      }
    }
    __syncthreads();  // sp / sred are rewritten by the next chunk
  }
#pragma unroll
  for (int g = 0; g < kGroup; ++g)
#pragma unroll
    for (int i = 0; i < EM; ++i)
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
    out.put((static_cast<std::int64_t>(t) * heads + h0 + g) * d + c, lg > 0.0f ? a / lg * vs : 0.0f);
  }
}

// head_dim 128 (every Qwen2.5-VL language model): the same CTA shape, with the loads laid out for memory-level
// parallelism. Per 128-key chunk the cache slots go to shared memory once (no block-table load per key and
// thread); scores: warp w takes keys 32w..32w+31, 8 at a time, 4 lanes per key each dotting a quarter of the
// row (one warp load covers 8 whole rows), a quad reduction per head; softmax: warp w owns heads w and w + 4;
// P·V: warp w takes keys w, w + 4, ..., 16 V rows in flight per lane.
template <class C> struct RowQuarter {  // 32 consecutive elements of a cache row, as 16-byte vectors
  static constexpr int kVecs = 32 * static_cast<int>(sizeof(C)) / 16;
  uint4 v[kVecs];
  __device__ __forceinline__ void load(const C* p) {
#pragma unroll
    for (int i = 0; i < kVecs; ++i) v[i] = reinterpret_cast<const uint4*>(p)[i];
  }
  __device__ __forceinline__ void to_f32(float* f) const {
    if constexpr (sizeof(C) == 1) {
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const std::uint16_t* c = reinterpret_cast<const std::uint16_t*>(&v[i]);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float2 x = e4m3x2_to_f32x2(c[k]);
          f[16 * i + 2 * k] = x.x;
          f[16 * i + 2 * k + 1] = x.y;
        }
      }
    } else if constexpr (sizeof(C) == 2) {
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const bf16* h = reinterpret_cast<const bf16*>(&v[i]);
#pragma unroll
        for (int k = 0; k < 8; ++k) f[8 * i + k] = __bfloat162float(h[k]);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const float* x = reinterpret_cast<const float*>(&v[i]);
#pragma unroll
        for (int k = 0; k < 4; ++k) f[4 * i + k] = x[k];
      }
    }
  }
};

// kG: the CTA's query heads (gs) rounded up to 1, 2, 4 or 8, so that the loops over the group compile to kG
// iterations (with a fixed 8, a one-head CTA — batch 1 of the 7B model — issued 7 predicated-off copies of every
// score and P·V instruction: 4,370 instructions per warp, 14 us per layer in run 14's profile).
// early != 0 (caller's promise: every key before a row's own position was in the cache before the forward's
// first kernel, as in a decode step): the first chunk's K rows (FP8/BF16 caches) and V codes (FP8, kG <= 2) of
// those keys are fetched before pdl_wait, overlapping the kernel that writes q and the row's own key.
__device__ __forceinline__ void codes4_to_f32(std::uint32_t u, float* f) {
  const float2 a = e4m3x2_to_f32x2(static_cast<std::uint16_t>(u)), b = e4m3x2_to_f32x2(static_cast<std::uint16_t>(u >> 16));
  f[0] = a.x, f[1] = a.y, f[2] = b.x, f[3] = b.y;
}

template <int kG, class TQ, class C, class O>
__global__ void __launch_bounds__(kThreads) paged_decode_d128_kernel(const TQ* q, std::int64_t ldq, int heads, int, const C* kc,
                                                                     const C* vc, int block_size, int kv_heads, float ks, float vs,
                                                                     const int* tables, int max_blocks, const int* q_seq,
                                                                     const int* q_pos, float scale, OutWriter<O> out, const int* rows,
                                                                     int gs, int early) {
  constexpr int D = 128, QP = 36;  // q quarters padded: the 4 quarters' LDS.128 fall into different banks
  constexpr int kInFlight = sizeof(C) == 4 ? 1 : 4;  // key rounds whose loads are issued together
  constexpr bool kPreK = sizeof(C) <= 2, kPreV = sizeof(C) == 1 && kG <= 2;  // kG 4: 20 bytes of spill
  constexpr int VB = 16, kVKeys = kChunk / kWarps;  // P·V: 32 keys per warp, 16 V rows in flight per lane
  __shared__ __align__(16) float sq[kG][4][QP];
  __shared__ float sp[kG][kChunk];
  __shared__ int sslot[kChunk];
  __shared__ float scorr[kG], sl[kG];
  __shared__ __align__(16) float sacc[kWarps][kG][D];
  pdl_trigger();
  // early: before pdl_wait, the step's inputs (rows, positions, block tables: uploaded by a synchronous copy
  // before the forward's first kernel) and the cache rows of keys < len - 1; else nothing before pdl_wait.
  const bool pre = early != 0;
  if (!pre) pdl_wait();
  const int t = rows ? rows[blockIdx.x] : static_cast<int>(blockIdx.x);
  const int G = heads / kv_heads, kvh = blockIdx.y;
  const int h0 = kvh * G + static_cast<int>(blockIdx.z) * gs, ng = min(gs, kvh * G + G - h0);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, qd = lane & 3;
  const int len = q_pos[t] + 1;
  const int* table = tables + static_cast<std::int64_t>(q_seq[t]) * max_blocks;
  const std::int64_t row_elems = static_cast<std::int64_t>(kv_heads) * D, head_off = static_cast<std::int64_t>(kvh) * D;
  auto fill_slots = [&](int c0, int nk) {
    if (tid < nk) {
      const int j = c0 + tid;
      sslot[tid] = table[j / block_size] * block_size + j % block_size;
    }
  };
  fill_slots(0, min(kChunk, len));
  __syncthreads();
  RowQuarter<C> kq[4];
  std::uint32_t vpre[kPreV ? kVKeys : 1];
  if constexpr (kPreK) {
    if (pre) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int key = warp * 32 + r * 8 + (lane >> 2);
        if (key < len - 1) kq[r].load(kc + static_cast<std::int64_t>(sslot[key]) * row_elems + head_off + qd * 32);
      }
    }
  }
  if constexpr (kPreV) {
    if (pre) {
#pragma unroll
      for (int u = 0; u < kVKeys; ++u) {
        const int key = warp + 4 * u;
        if (key < len - 1)
          vpre[u] = *reinterpret_cast<const std::uint32_t*>(vc + static_cast<std::int64_t>(sslot[key]) * row_elems + head_off + lane * 4);
      }
    }
  }
  if (pre) pdl_wait();  // launched with PDL (common.cuh): q and the row's own key are written by the kernels before
  const float qs = scale * ks * 1.4426950408889634f;
  for (int i = tid; i < kG * D; i += kThreads) {
    const int g = i / D, c = i % D;
    sq[g][c / 32][c % 32] = g < ng ? to_f32(q[t * ldq + static_cast<std::int64_t>(h0 + g) * D + c]) * qs : 0.0f;
  }
  float mo[2] = {-INFINITY, -INFINITY}, lo[2] = {0.0f, 0.0f};  // running max / sum of heads warp, warp + 4
  float acc[kG][4];
#pragma unroll
  for (int g = 0; g < kG; ++g) acc[g][0] = acc[g][1] = acc[g][2] = acc[g][3] = 0.0f;
  for (int c0 = 0; c0 < len; c0 += kChunk) {
    const int nk = min(kChunk, len - c0);
    const bool first = c0 == 0 && pre;  // registers hold this chunk's keys < len - 1
    if (c0 > 0) fill_slots(c0, nk);
    __syncthreads();  // sq and sslot ready; the previous chunk's readers of sp are done
    // scores
#pragma unroll
    for (int r0 = 0; r0 < 4; r0 += kInFlight) {
#pragma unroll
      for (int r = 0; r < kInFlight; ++r) {
        const int key = warp * 32 + (r0 + r) * 8 + (lane >> 2);
        if (!(kPreK && first && key < len - 1))
          kq[r0 + r].load(kc + static_cast<std::int64_t>(sslot[min(key, nk - 1)]) * row_elems + head_off + qd * 32);
      }
#pragma unroll
      for (int r = 0; r < kInFlight; ++r) {
        const int key = warp * 32 + (r0 + r) * 8 + (lane >> 2);
        float kf[32];
        kq[r0 + r].to_f32(kf);
#pragma unroll
        for (int g = 0; g < kG; ++g) {
          if (g < ng) {
            float sc = 0.0f;
#pragma unroll
            for (int c = 0; c < 32; c += 4) {
              const float4 a = *reinterpret_cast<const float4*>(&sq[g][qd][c]);
              sc = fmaf(a.x, kf[c], fmaf(a.y, kf[c + 1], fmaf(a.z, kf[c + 2], fmaf(a.w, kf[c + 3], sc))));
            }
            sc += __shfl_xor_sync(0xffffffffu, sc, 1);
            sc += __shfl_xor_sync(0xffffffffu, sc, 2);
            if (qd == 0) sp[g][key] = key < nk ? sc : -INFINITY;
          }
        }
      }
    }
    __syncthreads();
    // online softmax: warp w owns heads w and w + 4
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int g = warp + 4 * hh;
      if (g < kG && g < ng) {
        float v[kChunk / 32], mx = -INFINITY;
#pragma unroll
        for (int i = 0; i < kChunk / 32; ++i) mx = fmaxf(mx, v[i] = sp[g][lane + 32 * i]);
        mx = warp_max(mx);
        const float mn = fmaxf(mo[hh], mx);
        const float corr = mo[hh] == -INFINITY ? 0.0f : exp2f(mo[hh] - mn);
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < kChunk / 32; ++i) {
          const float p = v[i] == -INFINITY ? 0.0f : exp2f(v[i] - mn);
          sp[g][lane + 32 * i] = p;
          sum += p;
        }
        sum = warp_sum(sum);
        lo[hh] = lo[hh] * corr + sum;
        mo[hh] = mn;
        if (lane == 0) scorr[g] = corr;
      }
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      if (g < ng) {
        const float c = scorr[g];
        acc[g][0] *= c, acc[g][1] *= c, acc[g][2] *= c, acc[g][3] *= c;
      }
    }
    // P·V: keys warp + 4u, lane's 4 elements [4·lane, 4·lane + 4)
#pragma unroll
    for (int u0 = 0; u0 < kVKeys; u0 += VB) {
      if (warp + 4 * u0 < nk) {
        float vf[VB][4];
#pragma unroll
        for (int u = 0; u < VB; ++u) {
          const int key = warp + 4 * (u0 + u);  // the same for the whole warp
          if constexpr (kPreV) {
            if (first && key < len - 1) {
              codes4_to_f32(vpre[u0 + u], vf[u]);
              continue;
            }
          }
          load4(vc + static_cast<std::int64_t>(sslot[min(key, nk - 1)]) * row_elems + head_off + lane * 4, vf[u]);
        }
#pragma unroll
        for (int u = 0; u < VB; ++u) {
#pragma unroll
          for (int g = 0; g < kG; ++g) {
            if (g < ng) {
              const float p = sp[g][warp + 4 * (u0 + u)];
#pragma unroll
              for (int i = 0; i < 4; ++i) acc[g][i] = fmaf(p, vf[u][i], acc[g][i]);
            }
          }
        }
      }
    }
    __syncthreads();  // sp / sslot are rewritten by the next chunk
  }
#pragma unroll
  for (int hh = 0; hh < 2; ++hh)
    if (lane == 0 && warp + 4 * hh < kG && warp + 4 * hh < ng) sl[warp + 4 * hh] = lo[hh];
#pragma unroll
  for (int g = 0; g < kG; ++g)
    if (g < ng) *reinterpret_cast<float4*>(&sacc[warp][g][lane * 4]) = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
  __syncthreads();
  for (int i = tid; i < ng * D; i += kThreads) {
    const int g = i / D, c = i % D;
    const float a = sacc[0][g][c] + sacc[1][g][c] + sacc[2][g][c] + sacc[3][g][c];
    const float l = sl[g];
    out.put((static_cast<std::int64_t>(t) * heads + h0 + g) * D + c, l > 0.0f ? a / l * vs : 0.0f);
  }
}

// Query heads per CTA: all of the group (up to 8) when rows · kv_heads CTAs fill the GPU twice over, else fewer
// (more CTAs, each K/V row read by several of them) — batch 1 of the 7B model runs 28 CTAs instead of 4.
int heads_per_cta(std::int64_t rows, int kv_heads, int G) {
  constexpr std::int64_t kTarget = 264;  // 2 CTAs per SM of an H100
  const std::int64_t groups = std::min<std::int64_t>(G, std::max<std::int64_t>(1, (kTarget + rows * kv_heads - 1) / (rows * kv_heads)));
  const int gs = static_cast<int>((G + groups - 1) / groups);
  return std::min(gs, kGroup);
}

}  // namespace

void paged_attention(const Tensor& q, const PagedKvLayer& cache, const Tensor& block_tables, const Tensor& q_seq,
                     const Tensor& q_pos, float scale, const Tensor& out, cudaStream_t stream, const Tensor* rows,
                     float out_scale, bool prior_keys_cached) {
  check_paged_query("cuda::paged_attention", q, cache, block_tables, q_seq, q_pos, out, true);
  if (out.dtype == DType::F8_E4M3 && !(std::isfinite(out_scale) && out_scale > 0.0f))
    usage_error("cuda::paged_attention", "an E4M3 output needs a finite out_scale > 0 (the next Linear's input_scale)",
                "> 0", std::to_string(out_scale));
  const std::int64_t t = q.shape[0], heads = q.shape[1];
  if (rows) expect_tensor("cuda::paged_attention", "rows", *rows, {DType::I32}, {-1});
  const std::int64_t n = rows ? rows->shape[0] : t;
  if (!t || !n) return;
  const int G = static_cast<int>(heads / cache.kv_heads);
  const int gs = heads_per_cta(n, cache.kv_heads, G);
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(cache.kv_heads), static_cast<unsigned>((G + gs - 1) / gs));
  with_act(q.dtype, [&](auto tq) {
    with_cache_type(cache.dtype, [&](auto tc) {
      with_cache_type(out.dtype, [&](auto to) {  // F32 | BF16 | E4M3 codes
        using TQ = decltype(tq);
        using C = decltype(tc);
        using O = decltype(to);
        OutWriter<O> w{static_cast<O*>(out.data)};
        if constexpr (std::is_same_v<O, std::uint8_t>) w.scale = out_scale;
        auto launch = [&](auto kernel, auto... extra) {
          launch_pdl(kernel, grid, dim3(kThreads), 0, stream,
              static_cast<const TQ*>(q.data), q.stride[0], static_cast<int>(heads), cache.head_dim,
              static_cast<const C*>(cache.k), static_cast<const C*>(cache.v), cache.block_size, cache.kv_heads,
              cache.dtype == DType::F8_E4M3 ? cache.k_scale : 1.0f, cache.dtype == DType::F8_E4M3 ? cache.v_scale : 1.0f,
              static_cast<const int*>(block_tables.data), static_cast<int>(block_tables.stride[0]),
              static_cast<const int*>(q_seq.data), static_cast<const int*>(q_pos.data), scale, w,
              rows ? static_cast<const int*>(rows->data) : nullptr, gs, extra...);
        };
        static const bool d128 = env_switch("VLQ_DECODE_D128", true);  // =0: the generic kernel (A/B); read once, as the other switches
        // Early fetch of the first chunk before pdl_wait: +1.4 % at batch 1 in run 15 (H100), model tests pass with it
        // (run 16): on by default; VLQ_DECODE_EARLY=0 for A/B.
        static const bool early_on = env_switch("VLQ_DECODE_EARLY", true);
        const int early = prior_keys_cached && early_on ? 1 : 0;
        if (cache.head_dim == 128 && d128) {
          if (gs <= 1) launch(paged_decode_d128_kernel<1, TQ, C, O>, early);
          else if (gs <= 2) launch(paged_decode_d128_kernel<2, TQ, C, O>, early);
          else if (gs <= 4) launch(paged_decode_d128_kernel<4, TQ, C, O>, early);
          else launch(paged_decode_d128_kernel<8, TQ, C, O>, early);
        } else launch(paged_decode_kernel<TQ, C, O>);
      });
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("paged_decode_kernel");
}

}  // namespace vlq::cuda
