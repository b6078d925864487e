// Tensor-core flash attention for prefill (vlq/cuda/attention.h: paged_attention_prefill, attention_segments_tiled):
// one CTA of 4 warps per (tile of up to 64 query rows, head); key tiles of 64 rows are staged in shared memory
// as BF16 (FP8 cache codes are exact in BF16: their k_scale / v_scale multiply the scores / the output in f32),
// S = Q·Kᵀ and O += P·V on the BF16 tensor cores (WMMA 16×16×16, f32 accumulation), online softmax per row in
// f32 (FlashAttention-2, Dao 2023). Causal masking by each query row's absolute position (paged) or a key range
// (segments). Q and P are rounded to BF16; the CPU references are ops::attention_causal_cached /
// attention_segments.
#include <mma.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "vlq/cuda/attention.h"

namespace vlq::cuda {
namespace {
using namespace detail;
using namespace nvcuda;

constexpr int kBM = 64, kBN = 64, kWarps = 4;

// 8 consecutive elements → 8 BF16 in shared memory (dst 16-byte aligned). One 16-byte load for BF16, one 8-byte
// load for E4M3 codes (exact in BF16), two 16-byte loads for f32; scalar when the source is not aligned.
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
__device__ __forceinline__ void load8_bf16(const std::uint8_t* p, bf16* dst) {
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

struct Smem {  // offsets (bytes) into the dynamic shared memory, for head_dim D
  int ldh, ldf, q, k, v, s, p, o, stats, total;
  __host__ __device__ Smem(int D) {
    ldh = D + 8;   // BF16 rows (multiple of 8 elements)
    ldf = D + 4;   // f32 rows of O
    q = 0;
    k = q + kBM * ldh * 2;
    v = k + kBN * ldh * 2;
    s = v + kBN * ldh * 2;
    p = s + kBM * (kBN + 4) * 4;
    o = p + kBM * (kBN + 8) * 2;
    stats = o + kBM * ldf * 4;
    total = stats + 3 * kBM * 4;
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

// The attention of one tile: rows [row0, row0 + rows) of q (stride ldq, head h), keys [j0, j1); causal: row r
// attends keys <= qpos[r] (null: no mask beyond j1). ks / vs scale the scores / the output.
template <class TQ, class Keys, class O>
__device__ void flash_tile(const TQ* q, std::int64_t ldq, int heads, int D, int h, int row0, int rows, const int* qpos,
                           int j0, int j1, const Keys& keys, float ks, float vs, float scale, O* out) {
  extern __shared__ __align__(128) unsigned char smem[];
  const Smem L(D);
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem + L.q);
  __nv_bfloat16* sk = reinterpret_cast<__nv_bfloat16*>(smem + L.k);
  __nv_bfloat16* sv = reinterpret_cast<__nv_bfloat16*>(smem + L.v);
  float* ss = reinterpret_cast<float*>(smem + L.s);
  __nv_bfloat16* sp = reinterpret_cast<__nv_bfloat16*>(smem + L.p);
  float* so = reinterpret_cast<float*>(smem + L.o);
  float* sm = reinterpret_cast<float*>(smem + L.stats);
  float* sl = sm + kBM;
  int* spos = reinterpret_cast<int*>(sl + kBM);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int lds = kBN + 4, ldp = kBN + 8;

  const int c8 = D / 8;  // 8-element chunks per row
  for (int i = tid; i < kBM * c8; i += blockDim.x) {
    const int r = i / c8, d = (i % c8) * 8;
    if (r < rows) load8_bf16(q + (row0 + r) * ldq + static_cast<std::int64_t>(h) * D + d, sq + r * L.ldh + d);
    else zero8(sq + r * L.ldh + d);
  }
  for (int i = tid; i < kBM * D; i += blockDim.x) so[(i / D) * L.ldf + i % D] = 0.0f;
  for (int r = tid; r < kBM; r += blockDim.x) {
    sm[r] = -INFINITY;
    sl[r] = 0.0f;
    spos[r] = r < rows ? (qpos ? qpos[row0 + r] : j1 - 1) : -1;
  }
  __syncthreads();
  int jmax = j1;  // causal: keys beyond the tile's last position are never needed
  if (qpos) {
    int mx = 0;
    for (int r = 0; r < rows; ++r) mx = max(mx, spos[r]);
    jmax = min(j1, mx + 1);
  }
  const float sscale = scale * ks;
  for (int jt = j0; jt < jmax; jt += kBN) {
    const int nk = min(kBN, jmax - jt);
    for (int i = tid; i < kBN * c8; i += blockDim.x) {
      const int j = i / c8, d = (i % c8) * 8;
      if (j < nk) {
        const std::int64_t b = keys.base(jt + j) + d;
        load8_bf16(keys.k + b, sk + j * L.ldh + d);
        load8_bf16(keys.v + b, sv + j * L.ldh + d);
      } else {
        zero8(sk + j * L.ldh + d);
        zero8(sv + j * L.ldh + d);
      }
    }
    __syncthreads();
    // S[16 rows of this warp, 64 keys] = Q·Kᵀ
    {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kBN / 16];
#pragma unroll
      for (int c = 0; c < kBN / 16; ++c) wmma::fill_fragment(acc[c], 0.0f);
      for (int kk = 0; kk < D; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::load_matrix_sync(a, sq + warp * 16 * L.ldh + kk, L.ldh);
#pragma unroll
        for (int c = 0; c < kBN / 16; ++c) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
          wmma::load_matrix_sync(b, sk + c * 16 * L.ldh + kk, L.ldh);
          wmma::mma_sync(acc[c], a, b, acc[c]);
        }
      }
#pragma unroll
      for (int c = 0; c < kBN / 16; ++c)
        wmma::store_matrix_sync(ss + warp * 16 * lds + c * 16, acc[c], lds, wmma::mem_row_major);
    }
    __syncwarp();
    // Online softmax: lanes 2r and 2r + 1 of the warp own row r of its 16 rows, 32 keys each; the key order is
    // rotated by the row so that the 16 rows' reads of S fall into different shared-memory banks.
    {
      const int rr = lane >> 1, half = lane & 1;
      const int r = warp * 16 + rr;
      const int pos = spos[r];
      const float* srow = ss + r * lds + half * 32;
      float x[32];
      float mt = -INFINITY;
#pragma unroll
      for (int k = 0; k < 32; ++k) {
        const int jj = (k + rr) & 31, j = half * 32 + jj;
        x[k] = (j < nk && jt + j <= pos) ? srow[jj] * sscale : -INFINITY;
        mt = fmaxf(mt, x[k]);
      }
      mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
      const float mo = sm[r], mn = fmaxf(mo, mt);
      const float corr = mo == -INFINITY ? 0.0f : expf(mo - mn);
      float lt = 0.0f;
      __nv_bfloat16* prow = sp + r * ldp + half * 32;
#pragma unroll
      for (int k = 0; k < 32; ++k) {
        const float pk = mn == -INFINITY ? 0.0f : expf(x[k] - mn);
        lt += pk;
        prow[(k + rr) & 31] = __float2bfloat16_rn(pk);
      }
      lt += __shfl_xor_sync(0xffffffffu, lt, 1);
      __syncwarp();  // both lanes of the pair have read sm[r]
      if (half == 0) {
        sm[r] = mn;
        sl[r] = sl[r] * corr + lt;
      }
      float* orow = so + r * L.ldf;
      for (int d = half; d < D; d += 2) orow[d] *= corr;
    }
    __syncwarp();
    // O[16 rows, D] += P·V
    for (int c = 0; c < D; c += 16) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
      wmma::load_matrix_sync(o, so + warp * 16 * L.ldf + c, L.ldf, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kBN; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
        wmma::load_matrix_sync(a, sp + warp * 16 * ldp + kk, ldp);
        wmma::load_matrix_sync(b, sv + kk * L.ldh + c, L.ldh);
        wmma::mma_sync(o, a, b, o);
      }
      wmma::store_matrix_sync(so + warp * 16 * L.ldf + c, o, L.ldf, wmma::mem_row_major);
    }
    __syncthreads();  // before the next key tile overwrites sk / sv
  }
  for (int i = tid; i < rows * D; i += blockDim.x) {
    const int r = i / D, d = i % D;
    const float l = sl[r];
    out[(static_cast<std::int64_t>(row0 + r) * heads + h) * D + d] = from_f32<O>(l > 0.0f ? so[r * L.ldf + d] / l * vs : 0.0f);
  }
}

// tiles: [n, 2] (row0, rows) per tile; every row of a tile belongs to the same sequence.
template <class TQ, class C, class O>
__global__ void __launch_bounds__(kWarps * 32) flash_paged_kernel(const TQ* q, std::int64_t ldq, int heads, int D,
                                                                   const C* kc, const C* vc, int block_size, int kv_heads,
                                                                   float ks, float vs, const int* tables, int max_blocks,
                                                                   const int* q_seq, const int* q_pos, const int* tiles,
                                                                   float scale, O* out) {
  const int t = blockIdx.x, h = blockIdx.y;
  const int row0 = tiles[2 * t], rows = tiles[2 * t + 1];
  const int g = h / (heads / kv_heads);
  const PagedKeys<C> keys{kc, vc, tables + static_cast<std::int64_t>(q_seq[row0]) * max_blocks, block_size, kv_heads * D, g * D};
  flash_tile(q, ldq, heads, D, h, row0, rows, q_pos, 0, 1 << 30, keys, ks, vs, scale, out);
}

// tiles: [n, 4] (row0, rows, j0, j1): query rows of one segment and the segment's key range.
template <class T, class O>
__global__ void __launch_bounds__(kWarps * 32) flash_segments_kernel(const T* q, const T* k, const T* v, int heads, int D,
                                                                      const int* tiles, float scale, O* out) {
  const int t = blockIdx.x, h = blockIdx.y;
  const int* tl = tiles + 4 * t;
  const DenseKeys<T> keys{k, v, heads * D, h * D};
  flash_tile(q, static_cast<std::int64_t>(heads) * D, heads, D, h, tl[0], tl[1], nullptr, tl[2], tl[3], keys, 1.0f, 1.0f,
             scale, out);
}


template <class K> void set_smem(K kernel, int bytes) {
  VLQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

void check_d(const char* op, int d) {
  if (d % 16 || d <= 0 || d > 256)
    usage_error(op, "head_dim must be a multiple of 16, at most 256 (WMMA tiles)", "D % 16 == 0", std::to_string(d));
}

}  // namespace

void paged_attention_prefill(const Tensor& q, const PagedKvLayer& cache, const Tensor& block_tables, const Tensor& q_seq,
                             const Tensor& q_pos, const Tensor& tiles, float scale, const Tensor& out, cudaStream_t stream) {
  expect_tensor("cuda::paged_attention_prefill", "q", q, {DType::F32, DType::BF16}, {-1, -1, cache.head_dim});
  const std::int64_t t = q.shape[0], heads = q.shape[1];
  check_d("cuda::paged_attention_prefill", cache.head_dim);
  if (heads % cache.kv_heads || q.stride[1] != cache.head_dim)
    usage_error("cuda::paged_attention_prefill", "heads must be a multiple of kv_heads, heads contiguous",
                "multiple of " + std::to_string(cache.kv_heads), q.describe());
  expect_tensor("cuda::paged_attention_prefill", "block_tables", block_tables, {DType::I32}, {-1, -1});
  expect_tensor("cuda::paged_attention_prefill", "q_seq", q_seq, {DType::I32}, {t});
  expect_tensor("cuda::paged_attention_prefill", "q_pos", q_pos, {DType::I32}, {t});
  expect_tensor("cuda::paged_attention_prefill", "tiles", tiles, {DType::I32}, {-1, 2});
  expect_tensor("cuda::paged_attention_prefill", "out", out, {DType::F32, DType::BF16}, {t, heads, cache.head_dim});
  if (!t || !tiles.shape[0]) return;
  const int D = cache.head_dim;
  const int bytes = Smem(D).total;
  const dim3 grid(static_cast<unsigned>(tiles.shape[0]), static_cast<unsigned>(heads));
  with_act(q.dtype, [&](auto tq) {
    using TQ = decltype(tq);
    with_cache_type(cache.dtype, [&](auto tc) {
      using C = decltype(tc);
      with_act(out.dtype, [&](auto to) {
        using O = decltype(to);
        set_smem(flash_paged_kernel<TQ, C, O>, bytes);
        flash_paged_kernel<TQ, C, O><<<grid, kWarps * 32, bytes, stream>>>(
            static_cast<const TQ*>(q.data), q.stride[0], static_cast<int>(heads), D, static_cast<const C*>(cache.k),
            static_cast<const C*>(cache.v), cache.block_size, cache.kv_heads,
            cache.dtype == DType::F8_E4M3 ? cache.k_scale : 1.0f, cache.dtype == DType::F8_E4M3 ? cache.v_scale : 1.0f,
            static_cast<const int*>(block_tables.data), static_cast<int>(block_tables.stride[0]),
            static_cast<const int*>(q_seq.data), static_cast<const int*>(q_pos.data), static_cast<const int*>(tiles.data),
            scale, static_cast<O*>(out.data));
      });
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("flash_paged_kernel");
}

void attention_segments_tiled(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& tiles, float scale,
                              const Tensor& out, cudaStream_t stream) {
  expect_tensor("cuda::attention_segments_tiled", "q", q, {DType::F32, DType::BF16}, {-1, -1, -1});
  const std::int64_t n = q.shape[0], heads = q.shape[1], d = q.shape[2];
  check_d("cuda::attention_segments_tiled", static_cast<int>(d));
  if (q.stride[0] != heads * d) usage_error("cuda::attention_segments_tiled", "q rows must be contiguous", "contiguous", q.describe());
  expect_tensor("cuda::attention_segments_tiled", "k", k, {q.dtype}, {n, heads, d});
  expect_tensor("cuda::attention_segments_tiled", "v", v, {q.dtype}, {n, heads, d});
  expect_tensor("cuda::attention_segments_tiled", "tiles", tiles, {DType::I32}, {-1, 4});
  expect_tensor("cuda::attention_segments_tiled", "out", out, {DType::F32, DType::BF16}, {n, heads, d});
  if (!n || !tiles.shape[0]) return;
  const int bytes = Smem(static_cast<int>(d)).total;
  const dim3 grid(static_cast<unsigned>(tiles.shape[0]), static_cast<unsigned>(heads));
  with_act(q.dtype, [&](auto tq) {
    using T = decltype(tq);
    with_act(out.dtype, [&](auto to) {
      using O = decltype(to);
      set_smem(flash_segments_kernel<T, O>, bytes);
      flash_segments_kernel<T, O><<<grid, kWarps * 32, bytes, stream>>>(
          static_cast<const T*>(q.data), static_cast<const T*>(k.data), static_cast<const T*>(v.data),
          static_cast<int>(heads), static_cast<int>(d), static_cast<const int*>(tiles.data), scale,
          static_cast<O*>(out.data));
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("flash_segments_kernel");
}

std::vector<std::int32_t> prefill_tiles(const std::vector<std::int32_t>& seq_of_row) {
  std::vector<std::int32_t> t;
  const int n = static_cast<int>(seq_of_row.size());
  for (int r = 0; r < n;) {
    int e = r + 1;
    while (e < n && e - r < kBM && seq_of_row[e] == seq_of_row[r]) ++e;
    t.push_back(r);
    t.push_back(e - r);
    r = e;
  }
  return t;
}

std::vector<std::int32_t> segment_tiles(const std::vector<std::int32_t>& cu_seqlens) {
  std::vector<std::int32_t> t;
  for (std::size_t s = 0; s + 1 < cu_seqlens.size(); ++s)
    for (int r = cu_seqlens[s]; r < cu_seqlens[s + 1]; r += kBM) {
      t.push_back(r);
      t.push_back(std::min(kBM, cu_seqlens[s + 1] - r));
      t.push_back(cu_seqlens[s]);
      t.push_back(cu_seqlens[s + 1]);
    }
  return t;
}

}  // namespace vlq::cuda
