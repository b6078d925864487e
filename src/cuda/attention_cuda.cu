// CUDA kernels of vlq/cuda/attention.h: the paged KV cache write and the per-row segment attention (the ViT's
// reference form). One CTA (4 warps) per (query row, head): warp w takes keys w, w+4, ...; each lane holds
// head_dim/32 consecutive elements of q, a key's score is a warp reduction; online softmax per warp (running
// max m, sum l, accumulator), merged across the 4 warps in shared memory. Decode attention over the paged
// cache: decode_attention_cuda.cu; prefill and the ViT's tiled form: flash_attention_cuda.cu.
#include "vlq/cuda/attention.h"

#include <string>

#include "common.cuh"

namespace vlq::cuda {
namespace {
using namespace detail;

constexpr int kAttnWarps = 4;
constexpr int kMaxPerLane = 8;  // head_dim <= 256

template <class T> __device__ __forceinline__ void load_vec(const T* p, int e, float* f) {
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i)
    if (i < e) f[i] = to_f32(p[i]);
}

// Key source: contiguous [N, heads, D] rows.
template <class C> struct DenseSrc {
  const C* k;
  const C* v;
  int row_elems, head_off;
  float ks, vs;
  __device__ const C* key(int j) const { return k + static_cast<std::int64_t>(j) * row_elems + head_off; }
  __device__ const C* val(int j) const { return v + static_cast<std::int64_t>(j) * row_elems + head_off; }
};

// Attends q (this lane's e elements, already times softmax scale) over keys [j0, j1) of src; writes out.
// e: elements per lane slot (ceil(d / 32)); cnt: how many of them this lane holds (d - lane·e clamped to
// [0, e]: head_dim need not be a multiple of 32, e.g. the ViT's 80).
template <class Src, class O>
__device__ void attend(const float* qf, int e, int cnt, int d, int j0, int j1, const Src& src, O* out) {
  __shared__ float sm[kAttnWarps], sl[kAttnWarps];
  __shared__ float sacc[kAttnWarps][kMaxPerLane * 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float m = -INFINITY, l = 0.0f, acc[kMaxPerLane];
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) acc[i] = 0.0f;
  for (int j = j0 + warp; j < j1; j += kAttnWarps) {
    float kf[kMaxPerLane], vf[kMaxPerLane];
    load_vec(src.key(j) + lane * e, cnt, kf);
    load_vec(src.val(j) + lane * e, cnt, vf);
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i)
      if (i < cnt) s = fmaf(qf[i], kf[i], s);
    s = warp_sum(s) * src.ks;
    const float mn = fmaxf(m, s);
    const float corr = expf(m - mn), p = expf(s - mn);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i)
      if (i < cnt) acc[i] = acc[i] * corr + p * vf[i];
    m = mn;
  }
  if (lane == 0) {
    sm[warp] = m;
    sl[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i)
    if (i < cnt) sacc[warp][lane * e + i] = acc[i];
  __syncthreads();
  float M = -INFINITY;
#pragma unroll
  for (int w = 0; w < kAttnWarps; ++w) M = fmaxf(M, sm[w]);
  float L = 0.0f;
#pragma unroll
  for (int w = 0; w < kAttnWarps; ++w) L += sm[w] == -INFINITY ? 0.0f : sl[w] * expf(sm[w] - M);
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float a = 0.0f;
#pragma unroll
    for (int w = 0; w < kAttnWarps; ++w) a += sm[w] == -INFINITY ? 0.0f : sacc[w][i] * expf(sm[w] - M);
    out[i] = from_f32<O>(L > 0.0f ? a / L * src.vs : 0.0f);
  }
}

template <class T, class O>
__global__ void __launch_bounds__(kAttnWarps * 32) segment_attention_kernel(const T* q, const T* k, const T* v, int n,
                                                                          int heads, int d, const int* cu, int nseg,
                                                                          float scale, O* out) {
  const int t = blockIdx.x / heads, h = blockIdx.x % heads;
  const int e = (d + 31) / 32, lane = threadIdx.x % 32, cnt = max(0, min(e, d - lane * e));
  // segment of t: last s with cu[s] <= t
  int lo = 0, hi = nseg;  // cu[lo] <= t < cu[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (cu[mid] <= t) lo = mid; else hi = mid;
  }
  float qf[kMaxPerLane] = {};
  const std::int64_t row = static_cast<std::int64_t>(heads) * d;
  load_vec(q + t * row + static_cast<std::int64_t>(h) * d + lane * e, cnt, qf);
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) qf[i] *= scale;
  DenseSrc<T> src{k, v, heads * d, h * d, 1.0f, 1.0f};
  attend(qf, e, cnt, d, cu[lo], cu[lo + 1], src, out + (static_cast<std::int64_t>(t) * heads + h) * d);
}

template <class TK, class C>
__global__ void kv_write_kernel(const TK* k, std::int64_t ldk, const TK* v, std::int64_t ldv, const int* slots, int t_rows,
                                int width, C* kc, C* vc, float ks, float vs) {
  const std::int64_t n = static_cast<std::int64_t>(t_rows) * width;
  for (std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int t = static_cast<int>(idx / width), i = static_cast<int>(idx % width);
    const int slot = slots[t];
    if (slot < 0) continue;
    const float kv = to_f32(k[t * ldk + i]), vv = to_f32(v[t * ldv + i]);
    const std::int64_t o = static_cast<std::int64_t>(slot) * width + i;
    if constexpr (std::is_same_v<C, std::uint8_t>) {
      kc[o] = f32_to_e4m3_sat(__fdiv_rn(kv, ks));
      vc[o] = f32_to_e4m3_sat(__fdiv_rn(vv, vs));
    } else {
      kc[o] = from_f32<C>(kv);
      vc[o] = from_f32<C>(vv);
    }
  }
}

// rotary_kv_cache_write: index space [T rows] × ((heads + kv_heads) · D/2 rotary pairs + kv_heads · D values of v).
// Pairs rotate in place (q and k heads); a k head's rotated pair and each v value also go to the cache slot.
template <class C>
__global__ void rotary_kv_write_kernel(float* qk, std::int64_t ldqk, int heads, int kvh, int half, const float* v,
                                       std::int64_t ldv, const float* angles, const int* slots, int t_rows, C* kc, C* vc,
                                       float ks, float vs) {
  pdl_trigger();
  pdl_wait();  // launched with PDL (common.cuh)
  const int pairs = (heads + kvh) * half, width = kvh * 2 * half, per_row = pairs + width;
  const std::int64_t n = static_cast<std::int64_t>(t_rows) * per_row;
  auto put = [&](C* c, std::int64_t o, float x, float sc) {
    if constexpr (std::is_same_v<C, std::uint8_t>) c[o] = f32_to_e4m3_sat(__fdiv_rn(x, sc));
    else c[o] = from_f32<C>(x);
  };
  for (std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int t = static_cast<int>(idx / per_row), i = static_cast<int>(idx % per_row);
    const int slot = slots[t];
    if (i < pairs) {
      const int h = i / half, j = i % half;
      float* x = qk + t * ldqk + static_cast<std::int64_t>(h) * 2 * half;
      float p = x[j], q = x[j + half];
      rotate_pair(p, q, angles[static_cast<std::int64_t>(t) * half + j]);
      x[j] = p;
      x[j + half] = q;
      if (h >= heads && slot >= 0) {
        const std::int64_t o = static_cast<std::int64_t>(slot) * width + static_cast<std::int64_t>(h - heads) * 2 * half + j;
        put(kc, o, p, ks);
        put(kc, o + half, q, ks);
      }
    } else if (slot >= 0) {
      const int e = i - pairs;
      put(vc, static_cast<std::int64_t>(slot) * width + e, v[t * ldv + e], vs);
    }
  }
}

}  // namespace

namespace detail {
void check_paged_cache(const char* op, const PagedKvLayer& c) {
  if (!c.k || !c.v || c.head_dim % 32 || c.head_dim > 256 || c.head_dim <= 0 || c.kv_heads <= 0 || c.block_size <= 0 ||
      !(c.dtype == DType::F32 || c.dtype == DType::BF16 || c.dtype == DType::F8_E4M3) || !(c.k_scale > 0) || !(c.v_scale > 0))
    usage_error(op, "invalid paged KV cache layer", "non-null k/v, head_dim % 32 == 0 and <= 256, F32|BF16|F8_E4M3, scales > 0",
                "head_dim " + std::to_string(c.head_dim) + ", kv_heads " + std::to_string(c.kv_heads) + ", " +
                    std::string(dtype_name(c.dtype)));
}

void check_paged_query(const char* op, const Tensor& q, const PagedKvLayer& cache, const Tensor& block_tables,
                       const Tensor& q_seq, const Tensor& q_pos, const Tensor& out, bool e4m3_out) {
  check_paged_cache(op, cache);
  expect_tensor(op, "q", q, {DType::F32, DType::BF16}, {-1, -1, cache.head_dim});
  const std::int64_t t = q.shape[0], heads = q.shape[1];
  if (heads % cache.kv_heads || q.stride[1] != cache.head_dim)
    usage_error(op, "heads must be a multiple of kv_heads, heads contiguous", "multiple of " + std::to_string(cache.kv_heads),
                q.describe());
  expect_tensor(op, "block_tables", block_tables, {DType::I32}, {-1, -1});
  expect_tensor(op, "q_seq", q_seq, {DType::I32}, {t});
  expect_tensor(op, "q_pos", q_pos, {DType::I32}, {t});
  if (e4m3_out) expect_tensor(op, "out", out, {DType::F32, DType::BF16, DType::F8_E4M3}, {t, heads, cache.head_dim});
  else expect_tensor(op, "out", out, {DType::F32, DType::BF16}, {t, heads, cache.head_dim});
}
}  // namespace detail

void kv_cache_write(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, const PagedKvLayer& cache,
                    cudaStream_t stream) {
  check_paged_cache("cuda::kv_cache_write", cache);
  expect_tensor("cuda::kv_cache_write", "k", k, {DType::F32, DType::BF16}, {-1, cache.kv_heads, cache.head_dim});
  const std::int64_t t = k.shape[0];
  expect_tensor("cuda::kv_cache_write", "v", v, {k.dtype}, {t, cache.kv_heads, cache.head_dim});
  expect_tensor("cuda::kv_cache_write", "slot_mapping", slot_mapping, {DType::I32}, {t});
  if (k.stride[1] != cache.head_dim || v.stride[1] != cache.head_dim)
    usage_error("cuda::kv_cache_write", "kv heads must be contiguous", "stride[1] == head_dim", k.describe());
  if (!t) return;
  const int width = cache.kv_heads * cache.head_dim;
  const unsigned grid = std::max(1u, std::min<unsigned>(ceil_div(t * width, 256), 132u * 8u));
  with_act(k.dtype, [&](auto ta) {
    using TK = decltype(ta);
    with_cache_type(cache.dtype, [&](auto tc) {
      using C = decltype(tc);
      kv_write_kernel<TK, C><<<grid, 256, 0, stream>>>(static_cast<const TK*>(k.data), k.stride[0],
                                                       static_cast<const TK*>(v.data), v.stride[0],
                                                       static_cast<const int*>(slot_mapping.data), static_cast<int>(t), width,
                                                       static_cast<C*>(cache.k), static_cast<C*>(cache.v), cache.k_scale,
                                                       cache.v_scale);
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("kv_write_kernel");
}

void rotary_kv_cache_write(const Tensor& qk, const Tensor& v, const Tensor& angles, const Tensor& slot_mapping,
                           const PagedKvLayer& cache, cudaStream_t stream) {
  const char* op = "cuda::rotary_kv_cache_write";
  check_paged_cache(op, cache);
  expect_tensor(op, "qk", qk, {DType::F32}, {-1, -1, cache.head_dim});
  const std::int64_t t = qk.shape[0], heads = qk.shape[1] - cache.kv_heads;
  if (heads < 1 || qk.stride[1] != cache.head_dim)
    usage_error(op, "qk must hold the q heads then kv_heads k heads, heads contiguous",
                "[T, heads + " + std::to_string(cache.kv_heads) + ", D]", qk.describe());
  expect_tensor(op, "v", v, {DType::F32}, {t, cache.kv_heads, cache.head_dim});
  if (v.stride[1] != cache.head_dim) usage_error(op, "v heads must be contiguous", "stride[1] == head_dim", v.describe());
  expect_tensor(op, "angles", angles, {DType::F32}, {t, cache.head_dim / 2});
  expect_tensor(op, "slot_mapping", slot_mapping, {DType::I32}, {t});
  if (!t) return;
  const std::int64_t per_row = (heads + cache.kv_heads) * (cache.head_dim / 2) + cache.kv_heads * cache.head_dim;
  const unsigned grid = std::max(1u, std::min<unsigned>(ceil_div(t * per_row, 256), 132u * 8u));
  with_cache_type(cache.dtype, [&](auto tc) {
    using C = decltype(tc);
    launch_pdl(rotary_kv_write_kernel<C>, dim3(grid), dim3(256), 0, stream, static_cast<float*>(qk.data), qk.stride[0],
               static_cast<int>(heads), cache.kv_heads, cache.head_dim / 2, static_cast<const float*>(v.data), v.stride[0],
               static_cast<const float*>(angles.data), static_cast<const int*>(slot_mapping.data), static_cast<int>(t),
               static_cast<C*>(cache.k), static_cast<C*>(cache.v), cache.k_scale, cache.v_scale);
  });
  VLQ_CUDA_CHECK_LAUNCH("rotary_kv_write_kernel");
}

void attention_segments(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens, float scale,
                        const Tensor& out, cudaStream_t stream) {
  expect_tensor("cuda::attention_segments", "q", q, {DType::F32, DType::BF16}, {-1, -1, -1});
  const std::int64_t n = q.shape[0], heads = q.shape[1], d = q.shape[2];
  if (d <= 0 || d > 256 || q.stride[0] != heads * d)
    usage_error("cuda::attention_segments", "head_dim must be in 1..256, rows contiguous", "0 < D <= 256", q.describe());
  expect_tensor("cuda::attention_segments", "k", k, {q.dtype}, {n, heads, d});
  expect_tensor("cuda::attention_segments", "v", v, {q.dtype}, {n, heads, d});
  expect_tensor("cuda::attention_segments", "cu_seqlens", cu_seqlens, {DType::I32}, {-1});
  expect_tensor("cuda::attention_segments", "out", out, {DType::F32, DType::BF16}, {n, heads, d});
  if (cu_seqlens.shape[0] < 2) usage_error("cuda::attention_segments", "cu_seqlens needs >= 2 entries", ">= 2", cu_seqlens.describe());
  if (!n) return;
  with_act(q.dtype, [&](auto tq) {
    using T = decltype(tq);
    with_act(out.dtype, [&](auto to) {
      using O = decltype(to);
      segment_attention_kernel<T, O><<<static_cast<unsigned>(n * heads), kAttnWarps * 32, 0, stream>>>(
          static_cast<const T*>(q.data), static_cast<const T*>(k.data), static_cast<const T*>(v.data), static_cast<int>(n),
          static_cast<int>(heads), static_cast<int>(d), static_cast<const int*>(cu_seqlens.data),
          static_cast<int>(cu_seqlens.shape[0] - 1), scale, static_cast<O*>(out.data));
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("segment_attention_kernel");
}

}  // namespace vlq::cuda
