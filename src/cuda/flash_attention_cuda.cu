// Tensor-core flash attention for prefill (vlq/cuda/attention.h: paged_attention_prefill, attention_segments_tiled):
// one CTA of 4 or 8 warps per (tile of up to 64 or 128 query rows, head), 16 or 32 rows per warp; key tiles of 64 rows
// are staged in shared memory as BF16 (FP8 cache codes are exact in BF16: their k_scale / v_scale multiply the
// scores / the output in f32). BF16 and E4M3 key tiles arrive by cp.async one tile ahead of the one computed
// (E4M3 codes land in a staging area and are widened in shared memory); f32 rows are loaded and converted.
// S = Q·Kᵀ and O += P·V on the BF16 tensor cores (mma.sync m16n8k16 with ldmatrix, f32 accumulation; S, P and O
// live in registers), online softmax per row in f32 (FlashAttention-2, Dao 2023). Causal masking by each query
// row's absolute position (paged) or a key range (segments). Q and P are rounded to BF16; the CPU references are
// ops::attention_causal_cached / attention_segments.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "vlq/cuda/attention.h"

namespace vlq::cuda {
namespace {
using namespace detail;

constexpr int kBM = 64, kBN = 64, kWarps = 4;

// 8 consecutive elements → 8 BF16 in shared memory (dst 16-byte aligned): one 16-byte load for BF16, one 8-byte
// load for E4M3 codes, two 16-byte loads for f32; scalar when the source is not aligned (the synchronous fetch).
__device__ __forceinline__ void load8_bf16(const bf16* p, bf16* dst) {
  if ((reinterpret_cast<std::uintptr_t>(p) & 15) == 0) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(p);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) dst[i] = p[i];
  }
}
__device__ __forceinline__ void load8_bf16(const float* p, bf16* dst) {
  alignas(16) bf16 t[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) t[i] = __float2bfloat16_rn(p[i]);
  *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(t);
}
__device__ __forceinline__ void load8_bf16(const std::uint8_t* p, bf16* dst) {  // E4M3 codes, exact in BF16
  alignas(8) std::uint8_t c[8];
  if ((reinterpret_cast<std::uintptr_t>(p) & 7) == 0) {
    *reinterpret_cast<uint2*>(c) = *reinterpret_cast<const uint2*>(p);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) c[i] = p[i];
  }
  alignas(16) bf16 t[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) t[i] = __float2bfloat16_rn(e4m3_to_f32(c[i]));
  *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(t);
}
__device__ __forceinline__ void zero8(bf16* dst) { *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0); }

// PTX wrappers: 16-byte cp.async (global → shared, bypassing registers and L1; src_bytes 0 zero-fills) and its
// group commit / wait (PTX ISA, "cp.async").
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  const auto s = static_cast<std::uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// How a key tile reaches the BF16 tiles the MMAs read: kSync loads, converts and stores through registers (any
// cache dtype and alignment: f32 rows, the ViT's dense inputs); kAsyncBf16 copies BF16 rows with cp.async
// straight into a double-buffered tile; kAsyncE4m3 copies the raw codes with cp.async into a double-buffered
// staging area and converts them in shared memory. The async modes fetch tile i+1 while tile i is computed.
enum class Fetch { kSync, kAsyncBf16, kAsyncE4m3 };

struct Smem {  // offsets (bytes) into the dynamic shared memory, for head_dim D and BM query rows
  int ldh, q, k, v, raw, pos, total, kv_stage;  // kv_stage: bytes from one K (or V) tile buffer to the next
  __host__ __device__ Smem(int D, int bm, Fetch f) {
    ldh = D + 8;  // BF16 rows padded by 16 bytes: the 8 row addresses of an ldmatrix hit 8 different bank groups
    const int tile = kBN * ldh * 2;
    const int stages = f == Fetch::kAsyncBf16 ? 2 : 1;
    kv_stage = tile;
    q = 0;
    k = q + bm * ldh * 2;
    v = k + stages * tile;
    raw = v + stages * tile;  // kAsyncE4m3: [2 stages][K, V][kBN][D] codes
    pos = raw + (f == Fetch::kAsyncE4m3 ? 2 * 2 * kBN * D : 0);
    total = pos + bm * 4;
  }
};

// Key source of the paged cache (one sequence, one KV head) or of dense [N, heads, D] rows.
template <class C> struct PagedKeys {
  const C* k;
  const C* v;
  const int* table;
  int block_size, row_elems, head_off;
  __device__ std::int64_t base(int j) const {
    return (static_cast<std::int64_t>(table[j / block_size]) * block_size + j % block_size) * row_elems + head_off;
  }
};
template <class C> struct DenseKeys {
  const C* k;
  const C* v;
  int row_elems, head_off;
  __device__ std::int64_t base(int j) const { return static_cast<std::int64_t>(j) * row_elems + head_off; }
};

// PTX wrappers: the BF16 tensor-core MMA m16n8k16 (f32 accumulate) and ldmatrix of four 8×8 BF16 matrices.
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16"): lane = 4·g + t; A holds rows g, g+8 and
// columns 2t, 2t+1, 2t+8, 2t+9; B holds k rows 2t, 2t+1, 2t+8, 2t+9 of column g; C rows g, g+8, columns 2t, 2t+1.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void ldsm_x4(std::uint32_t (&r)[4], const void* p) {
  const auto s = static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
__device__ __forceinline__ void ldsm_x4_trans(std::uint32_t (&r)[4], const void* p) {
  const auto s = static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
__device__ __forceinline__ std::uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const std::uint32_t*>(&h);
}

// One warp's running state over its 16 query rows: O (16 × D) as MMA accumulators, the running max m and this
// lane's partial row sums l for its two rows (g, g + 8).
template <int DMAX> struct RowState {
  float o[DMAX / 8][4];
  float m0, m1, l0, l1;
};

// One key tile [jt, jt + nk) against this warp's RB blocks of 16 rows: S = Q·Kᵀ (16 × 64 per block) in registers,
// online softmax in f32 (scores in log2 units), P converted from the S accumulators to A fragments in registers
// (FlashAttention-2's layout), O += P·V. Each K / V fragment read from shared memory feeds the MMAs of all RB
// blocks (RB = 2: half the shared-memory reads per MMA, FlashAttention-2's 32 rows per warp). `mask`: apply key
// bounds (nk) and causal positions pos0/pos1 (each block's two rows' last visible keys).
template <int DMAX, int RB>
__device__ __forceinline__ void attend(RowState<DMAX> (&st)[RB], const __nv_bfloat16* const (&qw)[RB],
                                       const __nv_bfloat16* sk, const __nv_bfloat16* sv, int ldh, int D, int jt, int nk,
                                       bool mask, const int (&pos0)[RB], const int (&pos1)[RB], float sl2, int lane) {
  const int t4 = lane & 3;
  float s[RB][kBN / 8][4];
#pragma unroll
  for (int r = 0; r < RB; ++r)
#pragma unroll
    for (int i = 0; i < kBN / 8; ++i) s[r][i][0] = s[r][i][1] = s[r][i][2] = s[r][i][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < DMAX / 16; ++kk) {
    if (kk * 16 < D) {
      std::uint32_t a[RB][4];
#pragma unroll
      for (int r = 0; r < RB; ++r) ldsm_x4(a[r], qw[r] + kk * 16);
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {
        std::uint32_t b[4];
        ldsm_x4(b, sk + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * ldh + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int r = 0; r < RB; ++r) {
          mma_bf16(s[r][2 * np], a[r], b[0], b[1]);
          mma_bf16(s[r][2 * np + 1], a[r], b[2], b[3]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < RB; ++r) {
    // Online softmax over this thread's two rows (g, g + 8) of block r; the 4 lanes of a quad share a row.
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kBN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[r][nt][e] * sl2;
        if (mask) {
          const int jl = nt * 8 + t4 * 2 + (e & 1);
          if (jl >= nk || jt + jl > (e < 2 ? pos0[r] : pos1[r])) x = -INFINITY;
        }
        s[r][nt][e] = x;
        if (e < 2) mx0 = fmaxf(mx0, x);
        else mx1 = fmaxf(mx1, x);
      }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float n0 = fmaxf(st[r].m0, mx0), n1 = fmaxf(st[r].m1, mx1);
    const float c0 = st[r].m0 == -INFINITY ? 0.0f : exp2f(st[r].m0 - n0);
    const float c1 = st[r].m1 == -INFINITY ? 0.0f : exp2f(st[r].m1 - n1);
    st[r].m0 = n0;
    st[r].m1 = n1;
    float t0 = 0.0f, t1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kBN / 8; ++nt) {
      s[r][nt][0] = n0 == -INFINITY ? 0.0f : exp2f(s[r][nt][0] - n0);
      s[r][nt][1] = n0 == -INFINITY ? 0.0f : exp2f(s[r][nt][1] - n0);
      s[r][nt][2] = n1 == -INFINITY ? 0.0f : exp2f(s[r][nt][2] - n1);
      s[r][nt][3] = n1 == -INFINITY ? 0.0f : exp2f(s[r][nt][3] - n1);
      t0 += s[r][nt][0] + s[r][nt][1];
      t1 += s[r][nt][2] + s[r][nt][3];
    }
    st[r].l0 = st[r].l0 * c0 + t0;  // this lane's partial sums; the quad is reduced at the end
    st[r].l1 = st[r].l1 * c1 + t1;
#pragma unroll
    for (int i = 0; i < DMAX / 8; ++i) {
      st[r].o[i][0] *= c0;
      st[r].o[i][1] *= c0;
      st[r].o[i][2] *= c1;
      st[r].o[i][3] *= c1;
    }
  }
  // O[16 rows, D] += P·V per block: P (BF16) from the S accumulators, V through ldmatrix.trans (shared by blocks)
#pragma unroll
  for (int kp = 0; kp < kBN / 16; ++kp) {
    std::uint32_t pa[RB][4];  // P of keys kp·16 .. kp·16 + 15 as A fragments
#pragma unroll
    for (int r = 0; r < RB; ++r) {
      pa[r][0] = pack_bf16(s[r][2 * kp][0], s[r][2 * kp][1]);
      pa[r][1] = pack_bf16(s[r][2 * kp][2], s[r][2 * kp][3]);
      pa[r][2] = pack_bf16(s[r][2 * kp + 1][0], s[r][2 * kp + 1][1]);
      pa[r][3] = pack_bf16(s[r][2 * kp + 1][2], s[r][2 * kp + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < DMAX / 16; ++dp) {
      if (dp * 16 < D) {
        std::uint32_t b[4];
        ldsm_x4_trans(b, sv + (kp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * ldh + dp * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int r = 0; r < RB; ++r) {
          mma_bf16(st[r].o[2 * dp], pa[r], b[0], b[1]);
          mma_bf16(st[r].o[2 * dp + 1], pa[r], b[2], b[3]);
        }
      }
    }
  }
}

// 16 E4M3 codes (16-byte aligned in shared memory) → 16 BF16 (exact) at dst (16-byte aligned).
__device__ __forceinline__ void e4m3x16_to_bf16(const std::uint8_t* src, __nv_bfloat16* dst) {
  const uint4 c = *reinterpret_cast<const uint4*>(src);
  const std::uint32_t w[4] = {c.x, c.y, c.z, c.w};
  alignas(16) std::uint32_t o[8];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 lo = e4m3x2_to_f32x2(static_cast<std::uint16_t>(w[i] & 0xffffu));
    const float2 hi = e4m3x2_to_f32x2(static_cast<std::uint16_t>(w[i] >> 16));
    o[2 * i] = pack_bf16(lo.x, lo.y);
    o[2 * i + 1] = pack_bf16(hi.x, hi.y);
  }
  reinterpret_cast<uint4*>(dst)[0] = *reinterpret_cast<const uint4*>(o);
  reinterpret_cast<uint4*>(dst)[1] = *reinterpret_cast<const uint4*>(o + 4);
}

// The attention of one tile: rows [row0, row0 + rows) of q (stride ldq, head h), keys [j0, j1); causal: row r
// attends keys <= qpos[r] (null: no mask beyond j1). ks / vs scale the scores / the output. WARPS warps of RB
// blocks of 16 rows: warp w owns query rows 16·RB·w .. 16·RB·(w+1) - 1 (BM = 16·RB·WARPS rows per tile); only Q, K
// and V pass through shared memory. DMAX: a compile-time bound on D (register arrays), D % 16 == 0. F: how key
// tiles are fetched (see Fetch).
template <int DMAX, int WARPS, int RB, Fetch F, class TQ, class Keys, class O>
__device__ void flash_tile(const TQ* q, std::int64_t ldq, int heads, int D, int h, int row0, int rows, const int* qpos,
                           int j0, int j1, const Keys& keys, float ks, float vs, float scale, O* out) {
  constexpr int BM = 16 * RB * WARPS, NT = 32 * WARPS;
  extern __shared__ __align__(128) unsigned char smem[];
  const Smem L(D, BM, F);
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem + L.q);
  __nv_bfloat16* sk0 = reinterpret_cast<__nv_bfloat16*>(smem + L.k);
  __nv_bfloat16* sv0 = reinterpret_cast<__nv_bfloat16*>(smem + L.v);
  std::uint8_t* raw = smem + L.raw;
  int* spos = reinterpret_cast<int*>(smem + L.pos);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2;

  for (int r = tid; r < BM; r += NT) spos[r] = r < rows ? (qpos ? qpos[row0 + r] : j1 - 1) : -1;
  __syncthreads();
  // causal: keys beyond the tile's last position are never needed; keys up to its first need no mask
  int jmax = j1, jfree = j1;
  if (qpos) {
    int mx = 0, mn = 1 << 30;
    for (int r = 0; r < rows; ++r) {
      mx = max(mx, spos[r]);
      mn = min(mn, spos[r]);
    }
    jmax = min(j1, mx + 1);
    jfree = min(j1, mn + 1);
  }
  // Key tile at jt into stage `stage` (async modes: cp.async, committed as one group; rows >= nk zero-filled).
  auto fetch = [&](int jt, int stage) {
    const int nk = min(kBN, jmax - jt);
    if constexpr (F == Fetch::kAsyncBf16) {
      const int cpr = D / 8;  // 16-byte chunks per row
      __nv_bfloat16* sk = sk0 + stage * (L.kv_stage / 2);
      __nv_bfloat16* sv = sv0 + stage * (L.kv_stage / 2);
      for (int i = tid; i < kBN * cpr; i += NT) {
        const int j = i / cpr, d = (i % cpr) * 8;
        const std::int64_t b = keys.base(jt + min(j, nk - 1)) + d;
        cp_async16(sk + j * L.ldh + d, keys.k + b, j < nk ? 16 : 0);
        cp_async16(sv + j * L.ldh + d, keys.v + b, j < nk ? 16 : 0);
      }
      cp_async_commit();
    } else if constexpr (F == Fetch::kAsyncE4m3) {
      const int cpr = D / 16;
      std::uint8_t* rk = raw + stage * 2 * kBN * D;
      std::uint8_t* rv = rk + kBN * D;
      for (int i = tid; i < kBN * cpr; i += NT) {
        const int j = i / cpr, d = (i % cpr) * 16;
        const std::int64_t b = keys.base(jt + min(j, nk - 1)) + d;
        cp_async16(rk + j * D + d, keys.k + b, j < nk ? 16 : 0);
        cp_async16(rv + j * D + d, keys.v + b, j < nk ? 16 : 0);
      }
      cp_async_commit();
    } else {
      const int c8 = D / 8;
      for (int i = tid; i < kBN * c8; i += NT) {
        const int j = i / c8, d = (i % c8) * 8;
        if (j < nk) {
          const std::int64_t b = keys.base(jt + j) + d;
          load8_bf16(keys.k + b, sk0 + j * L.ldh + d);
          load8_bf16(keys.v + b, sv0 + j * L.ldh + d);
        } else {
          zero8(sk0 + j * L.ldh + d);
          zero8(sv0 + j * L.ldh + d);
        }
      }
    }
  };

  if constexpr (F != Fetch::kSync) {
    if (j0 < jmax) fetch(j0, 0);  // the first key tile's copy overlaps the Q load below
  }
  const int c8 = D / 8;  // 8-element chunks per row
  for (int i = tid; i < BM * c8; i += NT) {
    const int r = i / c8, d = (i % c8) * 8;
    if (r < rows) load8_bf16(q + (row0 + r) * ldq + static_cast<std::int64_t>(h) * D + d, sq + r * L.ldh + d);
    else zero8(sq + r * L.ldh + d);
  }
  int pos0[RB], pos1[RB];
  const __nv_bfloat16* qw[RB];
  RowState<DMAX> st[RB];
#pragma unroll
  for (int r = 0; r < RB; ++r) {
    const int b = (warp * RB + r) * 16;  // this block's first row in the tile
    pos0[r] = spos[b + g];
    pos1[r] = spos[b + g + 8];
    qw[r] = sq + (b + (lane & 15)) * L.ldh + (lane >> 4) * 8;
#pragma unroll
    for (int i = 0; i < DMAX / 8; ++i) st[r].o[i][0] = st[r].o[i][1] = st[r].o[i][2] = st[r].o[i][3] = 0.0f;
    st[r].m0 = st[r].m1 = -INFINITY;
    st[r].l0 = st[r].l1 = 0.0f;
  }
  const float sl2 = scale * ks * 1.4426950408889634f;  // scores in log2 units: exp2f

  for (int jt = j0, it = 0; jt < jmax; jt += kBN, ++it) {
    const int nk = min(kBN, jmax - jt);
    const int stage = it & 1;
    const __nv_bfloat16* sk = sk0;
    const __nv_bfloat16* sv = sv0;
    if constexpr (F == Fetch::kSync) {
      fetch(jt, 0);
      __syncthreads();
    } else {
      cp_async_wait_all();  // this thread's copies of tile `it` landed
      __syncthreads();      // ... everyone's; and every warp is done with tile it-1 (its buffers may be refilled)
      if (jt + kBN < jmax) fetch(jt + kBN, stage ^ 1);
      if constexpr (F == Fetch::kAsyncBf16) {
        sk = sk0 + stage * (L.kv_stage / 2);
        sv = sv0 + stage * (L.kv_stage / 2);
      } else {
        const std::uint8_t* rk = raw + stage * 2 * kBN * D;
        auto widen = [&](auto cpr) {  // 16-code chunks per row; a compile-time 8 for D == 128: no integer division
          for (int i = tid; i < 2 * kBN * cpr; i += NT) {
            const int kv = i / (kBN * cpr), j = (i / cpr) % kBN, d = (i % cpr) * 16;
            e4m3x16_to_bf16(rk + (kv * kBN + j) * (cpr * 16) + d, (kv ? sv0 : sk0) + j * L.ldh + d);
          }
        };
        if (D == DMAX) widen(std::integral_constant<int, DMAX / 16>{});
        else widen(D / 16);
        __syncthreads();
      }
    }
    attend<DMAX, RB>(st, qw, sk, sv, L.ldh, D, jt, nk, nk < kBN || jt + kBN > jfree, pos0, pos1, sl2, lane);
    if constexpr (F == Fetch::kSync) __syncthreads();  // before the next key tile overwrites sk / sv
  }
  const int t4 = lane & 3;
#pragma unroll
  for (int rb = 0; rb < RB; ++rb) {
    float l0 = st[rb].l0, l1 = st[rb].l1;
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float f0 = l0 > 0.0f ? vs / l0 : 0.0f, f1 = l1 > 0.0f ? vs / l1 : 0.0f;
    const int r0 = (warp * RB + rb) * 16 + g, r1 = r0 + 8;
#pragma unroll
    for (int i = 0; i < DMAX / 8; ++i) {
      const int d = i * 8 + t4 * 2;
      if (d < D) {
        if (r0 < rows) {
          O* p = out + (static_cast<std::int64_t>(row0 + r0) * heads + h) * D + d;
          p[0] = from_f32<O>(st[rb].o[i][0] * f0);
          p[1] = from_f32<O>(st[rb].o[i][1] * f0);
        }
        if (r1 < rows) {
          O* p = out + (static_cast<std::int64_t>(row0 + r1) * heads + h) * D + d;
          p[0] = from_f32<O>(st[rb].o[i][2] * f1);
          p[1] = from_f32<O>(st[rb].o[i][3] * f1);
        }
      }
    }
  }
}

// tiles: [n, 2] (row0, rows) per tile; every row of a tile belongs to the same sequence. Grid (heads, tiles): the
// heads of one tile (which share KV heads) run side by side, and the last tiles (the longest key ranges of a
// causal prefill) start first, so that the short ones fill the tail.
// __launch_bounds__(_, 2): two CTAs per SM. The 8-warp tile used 146 registers (run 13's profile: one CTA, 8 warps
// per SM, 12.5 % occupancy, stalls on fixed-latency dependencies; 4.4 ms per layer of an 8k prefill); capped at
// 128 it fits twice beside its 103 KB of shared memory. RB = 2 (4 warps of 32 rows for the same 128-row tile):
// FlashAttention-2's shape, each K / V fragment read once for two row blocks, up to 255 registers.
template <int DMAX, int WARPS, int RB, Fetch F, class TQ, class C, class O>
__global__ void __launch_bounds__(WARPS * 32, 2) flash_paged_kernel(const TQ* q, std::int64_t ldq, int heads, int D,
                                                                  const C* kc, const C* vc, int block_size, int kv_heads,
                                                                  float ks, float vs, const int* tables, int max_blocks,
                                                                  const int* q_seq, const int* q_pos, const int* tiles,
                                                                  float scale, O* out) {
  const int t = gridDim.y - 1 - blockIdx.y, h = blockIdx.x;
  const int row0 = tiles[2 * t], rows = min(tiles[2 * t + 1], 16 * RB * WARPS);  // tiles from prefill_tiles(_, tile_rows)
  const int g = h / (heads / kv_heads);
  const PagedKeys<C> keys{kc, vc, tables + static_cast<std::int64_t>(q_seq[row0]) * max_blocks, block_size, kv_heads * D, g * D};
  flash_tile<DMAX, WARPS, RB, F>(q, ldq, heads, D, h, row0, rows, q_pos, 0, 1 << 30, keys, ks, vs, scale, out);
}

// tiles: [n, 4] (row0, rows, j0, j1): query rows of one segment and the segment's key range. Grid (heads, tiles).
// 4 warps of RB blocks of 16 rows: 64-row (RB = 1) or 128-row (RB = 2) tiles.
template <int DMAX, int RB, Fetch F, class T, class O>
__global__ void __launch_bounds__(kWarps * 32, 2) flash_segments_kernel(const T* q, const T* k, const T* v, int heads, int D,
                                                                      const int* tiles, float scale, O* out) {
  const int t = blockIdx.y, h = blockIdx.x;
  const int* tl = tiles + 4 * t;
  const DenseKeys<T> keys{k, v, heads * D, h * D};
  // tiles cut for more rows than this kernel's tile (a tile_rows mismatch) are clamped: memory-safe, never beyond
  const int rows = min(tl[1], 16 * RB * kWarps);
  flash_tile<DMAX, kWarps, RB, F>(q, static_cast<std::int64_t>(heads) * D, heads, D, h, tl[0], rows, nullptr, tl[2], tl[3],
                              keys, 1.0f, 1.0f, scale, out);
}

// The fetch mode of cache element type C: cp.async for BF16 and E4M3 rows (16-byte aligned), loads otherwise.
template <class C> constexpr Fetch fetch_of() {
  if constexpr (std::is_same_v<C, bf16>) return Fetch::kAsyncBf16;
  else if constexpr (std::is_same_v<C, std::uint8_t>) return Fetch::kAsyncE4m3;
  else return Fetch::kSync;
}
bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15) == 0; }
// cp.async key tiles: on by default since run 13 (8k prefill 257.7 → 235.5 ms with 128-row tiles, H100,
// docs/performance.md); VLQ_FLASH_ASYNC=0 sends every cache dtype through the synchronous fetch (A/B).
constexpr bool kAsyncFetchDefault = true;
bool async_fetch_enabled() {
  static const bool on = env_switch("VLQ_FLASH_ASYNC", kAsyncFetchDefault);
  return on;
}

// 128-row prefill tiles as 4 warps of 32 rows (RB = 2) instead of 8 warps of 16: VLQ_FLASH_WIDE_WARPS=1 (A/B).
// The same arithmetic per row either way: results are bit-identical. Measured slower in run 16 (H100, LM prefill
// attention over 8192 tokens 3000 → 3410 us, 1326 tokens 145 → 169 us): off.
constexpr bool kWideWarpsDefault = false;
bool wide_warps_enabled() {
  static const bool on = env_switch("VLQ_FLASH_WIDE_WARPS", kWideWarpsDefault);
  return on;
}

template <class K> void set_smem(K kernel, int bytes) {
  VLQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

void check_d(const char* op, int d) {
  if (d % 16 || d <= 0 || d > 256)
    usage_error(op, "head_dim must be a multiple of 16, at most 256 (MMA m16n8k16 tiles)", "D % 16 == 0", std::to_string(d));
}

// The register arrays' bound for head_dim d: 64, 128 or 256.
template <class F> void with_dmax(int d, F&& f) {
  if (d <= 64) f(std::integral_constant<int, 64>{});
  else if (d <= 128) f(std::integral_constant<int, 128>{});
  else f(std::integral_constant<int, 256>{});
}

// The same for the segment kernel, with an exact bound for the ViT's head_dim 80 (40 accumulators, not 64, and
// no predicated-off MMA steps): on by default since run 16 (H100, cuda_attention_bench: ViT full attention over
// 4784 patches 1163.6 → 856.4 us, window attention 60.9 → 54.4 us); VLQ_FLASH_D80=0 for the 128-wide arrays (A/B).
bool d80_enabled() {
  static const bool on = env_switch("VLQ_FLASH_D80", true);
  return on;
}
template <class F> void with_dmax_segments(int d, F&& f) {
  if (d == 80 && d80_enabled()) f(std::integral_constant<int, 80>{});
  else with_dmax(d, std::forward<F>(f));
}

}  // namespace

int prefill_tile_rows(int head_dim) {
  // 128-row tiles (8 warps of 16 rows, or 4 of 32 with VLQ_FLASH_WIDE_WARPS=1) by default since run 13, as kAsyncFetchDefault; VLQ_FLASH_ROWS=64 for the 64-row tiles (A/B).
  static const int env = env_choice("VLQ_FLASH_ROWS", 128, kBM);
  return head_dim <= 128 ? env : kBM;
}

void paged_attention_prefill(const Tensor& q, const PagedKvLayer& cache, const Tensor& block_tables, const Tensor& q_seq,
                             const Tensor& q_pos, const Tensor& tiles, int tile_rows, float scale, const Tensor& out,
                             cudaStream_t stream) {
  const char* op = "cuda::paged_attention_prefill";
  check_d(op, cache.head_dim);
  check_paged_query(op, q, cache, block_tables, q_seq, q_pos, out);
  const std::int64_t t = q.shape[0], heads = q.shape[1];
  expect_tensor(op, "tiles", tiles, {DType::I32}, {-1, 2});
  if (tile_rows != 64 && !(tile_rows == 128 && cache.head_dim <= 128))
    usage_error(op, "tile_rows must be 64, or 128 for head_dim <= 128 (prefill_tile_rows)", "64 | 128",
                std::to_string(tile_rows));
  const bool async = async_fetch_enabled() && aligned16(cache.k) && aligned16(cache.v);  // else synchronous loads
  if (!t || !tiles.shape[0]) return;
  const int D = cache.head_dim;
  const dim3 grid(static_cast<unsigned>(heads), static_cast<unsigned>(tiles.shape[0]));
  with_dmax(D, [&](auto dm) {
    constexpr int DM = decltype(dm)::value;
    with_paged_types(q.dtype, cache.dtype, out.dtype, [&](auto tq, auto tc, auto to) {
      using TQ = decltype(tq);
      using C = decltype(tc);
      using O = decltype(to);
      auto launch = [&](auto warps, auto rb, auto fetch) {
        constexpr int W = decltype(warps)::value, RB = decltype(rb)::value;
        constexpr Fetch F = decltype(fetch)::value;
        const int bytes = Smem(D, 16 * RB * W, F).total;
        set_smem(flash_paged_kernel<DM, W, RB, F, TQ, C, O>, bytes);
        flash_paged_kernel<DM, W, RB, F, TQ, C, O><<<grid, W * 32, bytes, stream>>>(
            static_cast<const TQ*>(q.data), q.stride[0], static_cast<int>(heads), D, static_cast<const C*>(cache.k),
            static_cast<const C*>(cache.v), cache.block_size, cache.kv_heads,
            cache.dtype == DType::F32 ? 1.0f : cache.k_scale, cache.dtype == DType::F32 ? 1.0f : cache.v_scale,  // BF16: 1, or a widened FP8 copy's
            static_cast<const int*>(block_tables.data), static_cast<int>(block_tables.stride[0]),
            static_cast<const int*>(q_seq.data), static_cast<const int*>(q_pos.data), static_cast<const int*>(tiles.data),
            scale, static_cast<O*>(out.data));
      };
      auto with_fetch = [&](auto warps, auto rb) {
        if (async) launch(warps, rb, std::integral_constant<Fetch, fetch_of<C>()>{});
        else launch(warps, rb, std::integral_constant<Fetch, Fetch::kSync>{});
      };
      using One = std::integral_constant<int, 1>;
      if constexpr (DM <= 128) {
        if (tile_rows == 128 && wide_warps_enabled()) with_fetch(std::integral_constant<int, kWarps>{}, std::integral_constant<int, 2>{});
        else if (tile_rows == 128) with_fetch(std::integral_constant<int, 8>{}, One{});
        else with_fetch(std::integral_constant<int, kWarps>{}, One{});
      } else {
        with_fetch(std::integral_constant<int, kWarps>{}, One{});
      }
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("flash_paged_kernel");
}

void attention_segments_tiled(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& tiles, float scale,
                              const Tensor& out, cudaStream_t stream, int tile_rows) {
  expect_tensor("cuda::attention_segments_tiled", "q", q, {DType::F32, DType::BF16}, {-1, -1, -1});
  const std::int64_t n = q.shape[0], heads = q.shape[1], d = q.shape[2];
  check_d("cuda::attention_segments_tiled", static_cast<int>(d));
  if (q.stride[0] != heads * d) usage_error("cuda::attention_segments_tiled", "q rows must be contiguous", "contiguous", q.describe());
  expect_tensor("cuda::attention_segments_tiled", "k", k, {q.dtype}, {n, heads, d});
  expect_tensor("cuda::attention_segments_tiled", "v", v, {q.dtype}, {n, heads, d});
  expect_tensor("cuda::attention_segments_tiled", "tiles", tiles, {DType::I32}, {-1, 4});
  expect_tensor("cuda::attention_segments_tiled", "out", out, {DType::F32, DType::BF16}, {n, heads, d});
  if (tile_rows != 64 && !(tile_rows == 128 && d <= 128))
    usage_error("cuda::attention_segments_tiled", "tile_rows must be 64, or 128 for head_dim <= 128 (as segment_tiles cut them)", "64 | 128",
                std::to_string(tile_rows));
  if (!n || !tiles.shape[0]) return;
  const dim3 grid(static_cast<unsigned>(heads), static_cast<unsigned>(tiles.shape[0]));
  const bool async_ok = async_fetch_enabled() && aligned16(k.data) && aligned16(v.data);
  with_dmax_segments(static_cast<int>(d), [&](auto dm) {
    constexpr int DM = decltype(dm)::value;
    with_act(q.dtype, [&](auto tq) {
      using T = decltype(tq);
      with_act(out.dtype, [&](auto to) {
        using O = decltype(to);
        auto launch_rb = [&](auto rb, auto fetch) {
          constexpr int RB = decltype(rb)::value;
          constexpr Fetch F = decltype(fetch)::value;
          const int bytes = Smem(static_cast<int>(d), 16 * RB * kWarps, F).total;
          set_smem(flash_segments_kernel<DM, RB, F, T, O>, bytes);
          flash_segments_kernel<DM, RB, F, T, O><<<grid, kWarps * 32, bytes, stream>>>(
              static_cast<const T*>(q.data), static_cast<const T*>(k.data), static_cast<const T*>(v.data),
              static_cast<int>(heads), static_cast<int>(d), static_cast<const int*>(tiles.data), scale,
              static_cast<O*>(out.data));
        };
        auto launch = [&](auto fetch) {
          if constexpr (DM <= 128) {
            if (tile_rows == 128) return launch_rb(std::integral_constant<int, 2>{}, fetch);
          }
          launch_rb(std::integral_constant<int, 1>{}, fetch);
        };
        if constexpr (std::is_same_v<T, bf16>) {
          if (async_ok) launch(std::integral_constant<Fetch, Fetch::kAsyncBf16>{});
          else launch(std::integral_constant<Fetch, Fetch::kSync>{});
        } else {
          launch(std::integral_constant<Fetch, Fetch::kSync>{});
        }
      });
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("flash_segments_kernel");
}

std::vector<std::int32_t> prefill_tiles(const std::vector<std::int32_t>& seq_of_row, int tile_rows) {
  std::vector<std::int32_t> t;
  const int n = static_cast<int>(seq_of_row.size());
  for (int r = 0; r < n;) {
    int e = r + 1;
    while (e < n && e - r < tile_rows && seq_of_row[e] == seq_of_row[r]) ++e;
    t.push_back(r);
    t.push_back(e - r);
    r = e;
  }
  return t;
}
std::vector<std::int32_t> segment_tiles(const std::vector<std::int32_t>& cu_seqlens, int tile_rows) {
  if (tile_rows != 64 && tile_rows != 128)
    usage_error("cuda::segment_tiles", "tile_rows must be 64 or 128 (attention_segments_tiled's tiles)", "64 | 128",
                std::to_string(tile_rows));
  std::vector<std::int32_t> t;
  for (std::size_t s = 0; s + 1 < cu_seqlens.size(); ++s)
    for (int r = cu_seqlens[s]; r < cu_seqlens[s + 1]; r += tile_rows) {
      t.push_back(r);
      t.push_back(std::min(tile_rows, cu_seqlens[s + 1] - r));
      t.push_back(cu_seqlens[s]);
      t.push_back(cu_seqlens[s + 1]);
    }
  return t;
}

}  // namespace vlq::cuda
