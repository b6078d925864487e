// CUDA kernel of vlq/cuda/gemv.h: small-M (1..8) GEMV over FP8 E4M3 or BF16 weights [N, K].
// Layout: CTA of 8, 4 or 2 warps (gemv_warps: the fewest CTAs whose spread over the SMs loses < 5 %); each warp owns R consecutive output rows and sweeps K with 16-byte loads (lane l
// takes chunks l, l+32, ...; U chunks per row in flight); x [M, K] is copied to shared memory once per CTA.
// Partial sums are reduced across the warp with shuffles; lane 0 applies alpha and bias and stores. Launched with
// PDL (common.cuh): the first weight chunks are fetched before waiting for the kernel that produces x.
#include "vlq/cuda/gemv.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "common.cuh"

namespace vlq::cuda {
namespace {
using namespace detail;

constexpr int kWarps = 8;  // most warps per CTA

// The current device's SM count (0 when it cannot be read), read once.
int sm_count() {
  static const int sms = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 0;
    return v;
  }();
  return sms;
}

// Warps per CTA for n rows of R per warp: 8 unless the CTAs would spread unevenly over the SMs (batch-1 o_proj
// and down, 3584 rows: 448 CTAs of 8 rows = 3.4 per SM of an H100, so a quarter of the SMs ran a 4th CTA after
// the others were done); then 4 or 2 (more CTAs, each a copy of x in shared memory). Which warp sums which row
// does not change the row's sum: same bits for any choice.
int gemv_warps(int n, int r, std::size_t smem) {
  const int sms = sm_count();
  if (sms <= 0) return kWarps;
  int best = kWarps;
  double best_eff = 0.0;
  for (int w : {kWarps, 4, 2}) {
    const long ctas = (n + static_cast<long>(w) * r - 1) / (static_cast<long>(w) * r);
    const long waves = (ctas + sms - 1) / sms;
    const double eff = static_cast<double>(ctas) / static_cast<double>(waves * sms);
    if (w != kWarps && static_cast<std::size_t>(waves) * smem > 160 * 1024) break;  // the CTAs must stay co-resident
    if (eff >= 0.95) return w;
    if (eff > best_eff + 1e-9) best = w, best_eff = eff;
  }
  return best;
}

// 16 bytes -> VEC floats.
template <bool kFp8>
__device__ __forceinline__ void decode16(const uint4& v, float* f) {
  const std::uint32_t w[4] = {v.x, v.y, v.z, v.w};
  if constexpr (kFp8) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 a = e4m3x2_to_f32x2(static_cast<std::uint16_t>(w[i] & 0xffffu));
      const float2 b = e4m3x2_to_f32x2(static_cast<std::uint16_t>(w[i] >> 16));
      f[4 * i + 0] = a.x;
      f[4 * i + 1] = a.y;
      f[4 * i + 2] = b.x;
      f[4 * i + 3] = b.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i + 0] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
}

template <bool kFp8, int M, int R, int U, class O>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const uint4* __restrict__ x, const std::uint8_t* __restrict__ w,
                                                           int n_rows, int k_chunks, float alpha,
                                                           const float* __restrict__ bias,
                                                           const float* __restrict__ row_alpha,
                                                           const float* __restrict__ m_scale, O* __restrict__ y,
                                                           std::int64_t ldy) {
  constexpr int VEC = kFp8 ? 16 : 8;
  extern __shared__ uint4 xs[];
  pdl_trigger();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row0 = (blockIdx.x * static_cast<int>(blockDim.x / 32) + warp) * R;
  const uint4* wr[R];
#pragma unroll
  for (int r = 0; r < R; ++r)
    wr[r] = reinterpret_cast<const uint4*>(w) + static_cast<std::int64_t>(min(row0 + r, n_rows - 1)) * k_chunks;
  // The first round of weight chunks is in flight before the wait for the previous kernel (weights are constant;
  // see pdl_wait): under PDL it overlaps that kernel's tail.
  uint4 wv[U][R];
  if (row0 < n_rows) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (lane + u * 32 < k_chunks) wv[u][r] = ld_stream16(wr[r] + lane + u * 32);
  }
  pdl_wait();
  const int total = M * k_chunks;
  for (int i = threadIdx.x; i < total; i += blockDim.x) xs[i] = __ldcg(x + i);  // not .nc: x is written by the PDL predecessor
  __syncthreads();
  if (row0 >= n_rows) return;

  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;

  for (int c0 = lane; c0 < k_chunks; c0 += 32 * U) {
    if (c0 != lane) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (c0 + u * 32 < k_chunks) wv[u][r] = ld_stream16(wr[r] + c0 + u * 32);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + u * 32;
      if (c < k_chunks) {
        float wf[R][VEC];
#pragma unroll
        for (int r = 0; r < R; ++r) decode16<kFp8>(wv[u][r], wf[r]);
#pragma unroll
        for (int m = 0; m < M; ++m) {
          float xf[VEC];
          decode16<kFp8>(xs[m * k_chunks + c], xf);
#pragma unroll
          for (int r = 0; r < R; ++r)
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[r][m] = fmaf(xf[e], wf[r][e], acc[r][m]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float s = warp_sum(acc[r][m]);
      const int row = row0 + r;
      if (lane == 0 && row < n_rows) {
        // one explicit fmaf: the same rounding whether the alpha comes from row_alpha or the argument (nvcc
        // may contract a * b + c differently in the two branches otherwise; CudaGemv.RowStackedEqualsSeparate)
        const float a0 = row_alpha ? alpha * row_alpha[row] : alpha;
        const float a = m_scale ? a0 * m_scale[m] : a0;  // per-token scale of input row m (dynamic FP8)
        const float v = fmaf(s, a, bias ? bias[row] : 0.0f);
        y[m * ldy + row] = from_f32<O>(v);
      }
    }
}

template <bool kFp8, int M, class O>
void launch(const Tensor& x, const Tensor& w, float alpha, const float* bias, const float* ra, const float* ms,
            const Tensor& y, cudaStream_t st) {
  constexpr int R = M <= 2 ? 1 : 2;
  // chunks in flight per lane: 8 at M = 1 (a 3584-wide FP8 row is 7 chunks per lane: one memory round trip
  // instead of two; batch-1 o_proj / q|k|v were latency-bound at ~1.6 TB/s in run 13's profile). The lane's chunk
  // order, hence the sum, does not depend on U.
  constexpr int U = M == 1 ? 8 : R == 1 ? 4 : 2;
  const int n = static_cast<int>(w.shape[0]);
  const int kc = static_cast<int>(w.shape[1] * (kFp8 ? 1 : 2) / 16);
  const std::size_t smem = static_cast<std::size_t>(M) * kc * 16;
  auto kern = gemv_kernel<kFp8, M, R, U, O>;
  if (smem > 48 * 1024) VLQ_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int warps = M <= 2 ? gemv_warps(n, R, smem) : kWarps;  // M > 2: x copies per CTA grow, keep 8 warps
  const unsigned grid = ceil_div(n, warps * R);
  launch_pdl(kern, dim3(grid), dim3(warps * 32), smem, st, static_cast<const uint4*>(x.data),
             static_cast<const std::uint8_t*>(w.data), n, kc, alpha, bias, ra, ms, static_cast<O*>(y.data), y.stride[0]);
  VLQ_CUDA_CHECK_LAUNCH("gemv_kernel");
}

template <bool kFp8, class O>
void dispatch_m(int m, const Tensor& x, const Tensor& w, float alpha, const float* bias, const float* ra, const float* ms,
                const Tensor& y, cudaStream_t st) {
  switch (m) {
    case 1: launch<kFp8, 1, O>(x, w, alpha, bias, ra, ms, y, st); break;
    case 2: launch<kFp8, 2, O>(x, w, alpha, bias, ra, ms, y, st); break;
    case 3: launch<kFp8, 3, O>(x, w, alpha, bias, ra, ms, y, st); break;
    case 4: launch<kFp8, 4, O>(x, w, alpha, bias, ra, ms, y, st); break;
    case 5: launch<kFp8, 5, O>(x, w, alpha, bias, ra, ms, y, st); break;
    case 6: launch<kFp8, 6, O>(x, w, alpha, bias, ra, ms, y, st); break;
    case 7: launch<kFp8, 7, O>(x, w, alpha, bias, ra, ms, y, st); break;
    default: launch<kFp8, 8, O>(x, w, alpha, bias, ra, ms, y, st); break;
  }
}

// ---- RMSNorm folded into the batch-1 FP8 GEMV (rms_norm_gemv) ----------------------------------------------
// Every CTA normalizes the one row itself: v = h (+ res), the square sum in cuda::rms_norm's order (its CTA of
// `norm_threads` threads replayed as virtual warps: virtual thread t sums elements t, t + norm_threads, ... with
// fmaf, each virtual warp is reduced by warp_sum, then the warp sums by one more warp_sum), the E4M3 codes of
// nw ⊙ (v · inv) / in_scale into shared memory (the bytes cuda::rms_norm writes), CTA 0 also writes v to h_out.
// Then each warp runs rows first, first + 8, ... (rows_per_warp of them) exactly as gemv_kernel<fp8, M = 1>
// does (same lane chunk order, same epilogue): the same bits as rms_norm + gemv, one launch and one kernel
// boundary fewer. The first row's weight chunks are fetched before pdl_wait, as in gemv_kernel.
template <int U, class O>
__global__ void __launch_bounds__(kWarps * 32) norm_gemv_kernel(const float* __restrict__ h, const float* __restrict__ res,
                                                                float* __restrict__ h_out, const float* __restrict__ nw,
                                                                int dim, float eps, float in_scale, int norm_threads,
                                                                const std::uint8_t* __restrict__ w, int n_rows,
                                                                int rows_per_warp, float alpha, const float* __restrict__ bias,
                                                                const float* __restrict__ row_alpha, O* __restrict__ y) {
  extern __shared__ uint4 xs[];  // dim E4M3 codes, then v = h + res as dim f32 (read from L2 once per CTA)
  __shared__ float ssw[32];
  float* vs = reinterpret_cast<float*>(reinterpret_cast<std::uint8_t*>(xs) + dim);
  pdl_trigger();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int k_chunks = dim / 16;
  const int first = blockIdx.x * kWarps * rows_per_warp + warp;
  uint4 wv[U];
  if (first < n_rows) {
    const uint4* wr = reinterpret_cast<const uint4*>(w) + static_cast<std::int64_t>(first) * k_chunks;
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (lane + u * 32 < k_chunks) wv[u] = ld_stream16(wr + lane + u * 32);
  }
  pdl_wait();
  const int vwarps = norm_threads / 32;
  for (int vw = warp; vw < vwarps; vw += kWarps) {
    float p = 0.0f;
    for (int i = vw * 32 + lane; i < dim; i += norm_threads) {
      const float v = res ? __ldcg(h + i) + __ldcg(res + i) : __ldcg(h + i);
      vs[i] = v;
      p = fmaf(v, v, p);
    }
    p = warp_sum(p);
    if (lane == 0) ssw[vw] = p;
  }
  __syncthreads();
  const float ss = warp_sum(lane < vwarps ? ssw[lane] : 0.0f);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(dim) + eps);
  std::uint8_t* xb = reinterpret_cast<std::uint8_t*>(xs);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = vs[i];  // written above, before the __syncthreads
    xb[i] = f32_to_e4m3_sat(__fdiv_rn(nw[i] * (v * inv), in_scale));
    if (h_out && blockIdx.x == 0) h_out[i] = v;
  }
  __syncthreads();
  for (int j = 0; j < rows_per_warp; ++j) {
    const int row = first + j * kWarps;
    if (row >= n_rows) break;
    const uint4* wr = reinterpret_cast<const uint4*>(w) + static_cast<std::int64_t>(row) * k_chunks;
    float acc = 0.0f;
    for (int c0 = lane; c0 < k_chunks; c0 += 32 * U) {
      if (c0 != lane || j > 0) {
#pragma unroll
        for (int u = 0; u < U; ++u)
          if (c0 + u * 32 < k_chunks) wv[u] = ld_stream16(wr + c0 + u * 32);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = c0 + u * 32;
        if (c < k_chunks) {
          float wf[16], xf[16];
          decode16<true>(wv[u], wf);
          decode16<true>(xs[c], xf);
#pragma unroll
          for (int e = 0; e < 16; ++e) acc = fmaf(xf[e], wf[e], acc);
        }
      }
    }
    const float sum = warp_sum(acc);
    if (lane == 0) {
      const float a = row_alpha ? alpha * row_alpha[row] : alpha;
      y[row] = from_f32<O>(fmaf(sum, a, bias ? bias[row] : 0.0f));
    }
  }
}

// Rows per warp of the norm-folded GEMV: enough that the grid is about two CTAs per SM (each CTA reads the
// row's 2 · dim · 4 bytes of h and residual from L2 once, keeping v in shared memory; one row per warp would read
// them ~N/8 times), at least one. VLQ_NORM_GEMV_RPW=R overrides it (A/B).
int norm_gemv_rows_per_warp(int n) {
  static const int forced = [] {
    const char* e = std::getenv("VLQ_NORM_GEMV_RPW");
    return e ? std::atoi(e) : 0;
  }();
  if (forced > 0) return forced;
  const int sms = sm_count() > 0 ? sm_count() : 132;
  return std::max(1, n / (kWarps * 2 * sms));
}

}  // namespace

void rms_norm_gemv(const Tensor& h, const Tensor* residual, const float* norm_w, float eps, float in_scale,
                   const Tensor& h_out, const Tensor& w, float alpha, const float* bias, const Tensor& y,
                   cudaStream_t stream, const float* row_alpha) {
  const char* op = "cuda::rms_norm_gemv";
  expect_tensor(op, "w", w, {DType::F8_E4M3}, {-1, -1});
  const std::int64_t n = w.shape[0], dim = w.shape[1];
  expect_tensor(op, "h", h, {DType::F32}, {1, dim});
  if (residual) expect_tensor(op, "residual", *residual, {DType::F32}, {1, dim});
  expect_tensor(op, "h_out", h_out, {DType::F32}, {1, dim});
  expect_tensor(op, "y", y, {DType::F32, DType::BF16}, {1, n});
  if (!norm_w) usage_error(op, "norm weight is null", "device [dim] F32", "null");
  if (dim % 16 || w.stride[0] != dim || reinterpret_cast<std::uintptr_t>(w.data) % 16)
    usage_error(op, "K must be a multiple of 16 with contiguous, 16-byte aligned weight rows", "K % 16 == 0",
                "K = " + std::to_string(dim));
  if (dim > kNormGemvMaxK)
    usage_error(op, "the row (f32 and its E4M3 codes, 5 bytes per element) must fit in the default 48 KiB of shared memory",
                "K <= " + std::to_string(kNormGemvMaxK), std::to_string(dim));
  if (!(in_scale > 0.0f && in_scale < 3.0e38f)) usage_error(op, "in_scale must be finite and > 0", "> 0", std::to_string(in_scale));
  if (h_out.data == h.data || (residual && h_out.data == residual->data))
    usage_error(op, "h_out must be another buffer than h and residual (other CTAs still read them)", "distinct buffers",
                "h_out aliases an input");
  if (n == 0) return;
  const int rpw = norm_gemv_rows_per_warp(static_cast<int>(n));
  const unsigned grid = ceil_div(n, static_cast<std::int64_t>(kWarps) * rpw);
  const std::size_t smem = static_cast<std::size_t>(dim) * 5;
  const float* res = residual ? static_cast<const float*>(residual->data) : nullptr;
  auto run = [&](auto kern, auto* yp) {
    launch_pdl(kern, dim3(grid), dim3(kWarps * 32), smem, stream, static_cast<const float*>(h.data), res,
               static_cast<float*>(h_out.data), norm_w, static_cast<int>(dim), eps, in_scale, rms_norm_threads(dim),
               static_cast<const std::uint8_t*>(w.data), static_cast<int>(n), rpw, alpha, bias, row_alpha, yp);
  };
  if (y.dtype == DType::F32) run(norm_gemv_kernel<8, float>, static_cast<float*>(y.data));
  else run(norm_gemv_kernel<8, bf16>, static_cast<bf16*>(y.data));
  VLQ_CUDA_CHECK_LAUNCH("norm_gemv_kernel");
}

void gemv(const Tensor& x, const Tensor& w, float alpha, const float* bias, const Tensor& y, cudaStream_t stream,
          const float* row_alpha, const float* m_scale) {
  expect_tensor("cuda::gemv", "w", w, {DType::F8_E4M3, DType::BF16}, {-1, -1});
  const std::int64_t n = w.shape[0], k = w.shape[1];
  expect_tensor("cuda::gemv", "x", x, {w.dtype}, {-1, k});
  const std::int64_t m = x.shape[0];
  expect_tensor("cuda::gemv", "y", y, {DType::F32, DType::BF16}, {m, n});
  const bool fp8 = w.dtype == DType::F8_E4M3;
  const std::int64_t eb = fp8 ? 1 : 2;
  if (m < 1 || m > kGemvMaxM) usage_error("cuda::gemv", "M out of range for the GEMV (use gemm_*)", "1..8", std::to_string(m));
  if ((k * eb) % 16 || x.stride[0] != k || w.stride[0] != k || reinterpret_cast<std::uintptr_t>(x.data) % 16 ||
      reinterpret_cast<std::uintptr_t>(w.data) % 16)
    usage_error("cuda::gemv", "K·elem bytes must be a multiple of 16 with contiguous, 16-byte aligned rows",
                "K % " + std::to_string(16 / eb) + " == 0", "K = " + std::to_string(k));
  if (m * k * eb > 200 * 1024)
    usage_error("cuda::gemv", "x does not fit in shared memory (use gemm_*)", "M·K·elem <= 200 KiB",
                std::to_string(m * k * eb) + " bytes");
  if (n == 0) return;
  const int mi = static_cast<int>(m);
  if (fp8) {
    if (y.dtype == DType::F32) dispatch_m<true, float>(mi, x, w, alpha, bias, row_alpha, m_scale, y, stream);
    else dispatch_m<true, bf16>(mi, x, w, alpha, bias, row_alpha, m_scale, y, stream);
  } else {
    if (y.dtype == DType::F32) dispatch_m<false, float>(mi, x, w, alpha, bias, row_alpha, m_scale, y, stream);
    else dispatch_m<false, bf16>(mi, x, w, alpha, bias, row_alpha, m_scale, y, stream);
  }
}

}  // namespace vlq::cuda
