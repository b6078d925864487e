// CUDA kernels of vlq/cuda/elementwise.h (RMSNorm [+residual, +E4M3], SwiGLU [+E4M3], add, embedding,
// M-RoPE angles, rotary, E4M3 quantize/dequantize, argmax).
#include "vlq/cuda/elementwise.h"

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <type_traits>
#include <string>

#include "common.cuh"

namespace vlq::cuda {
namespace {
using namespace detail;


template <class T> const T* cptr(const Tensor& t) { return static_cast<const T*>(t.data); }
template <class T> T* mptr(const Tensor& t) { return static_cast<T*>(t.data); }

// Block-wide sum over the CTA's blockDim.x threads (a multiple of 32, <= 1024; result broadcast to all).
__device__ float block_sum(float v, float* sh) {
  v = warp_sum(v);
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  if (l == 0) sh[w] = v;
  __syncthreads();
  float t = l < static_cast<int>(blockDim.x / 32) ? sh[l] : 0.0f;
  t = warp_sum(t);
  __syncthreads();
  return t;
}

// ---- RMSNorm -------------------------------------------------------------------------------------
// One CTA per row, rms_norm_threads(dim) threads: about 4 elements per thread, so that one row of batch-1 decode
// is spread over up to 32 warps (256 threads with 14 elements each spent 7.5 us per norm in this session's first
// profile, ~10 cycles per instruction with 2 warps per scheduler). Rows of up to blockDim.x · kRowRegs elements
// (every Qwen2.5-VL hidden size) are held in registers: all loads of the row are issued before any use, the norm
// weight (constant) before pdl_wait, x is written back once and never re-read. Longer rows take the loop. Same
// element order and reduction either way, so the two give identical bits.
// (rms_norm_threads is in common.cuh: the batch-1 norm-folded GEMV, gemv_cuda.cu, reproduces this kernel's sum
// order with it; both write the square sum as explicit fmaf so that nvcc's contraction cannot differ.)
constexpr int kRowRegs = 8, kRowMaxThreads = detail::kRmsNormMaxThreads;
template <class TX, class TR, class O>
__global__ void __launch_bounds__(kRowMaxThreads) rms_norm_kernel(TX* x, std::int64_t ldx, const TR* res, std::int64_t ldr,
                                                                  const float* w, int dim, float eps, OutWriter<O> out,
                                                                  std::int64_t ldo) {
  __shared__ float sh[32];
  pdl_trigger();
  const int nt = static_cast<int>(blockDim.x);
  const bool in_regs = dim <= nt * kRowRegs;
  float wv[kRowRegs];
  if (in_regs) {
#pragma unroll
    for (int j = 0; j < kRowRegs; ++j) {
      const int i = threadIdx.x + j * nt;
      wv[j] = i < dim ? w[i] : 0.0f;  // the weight is constant: fetched while the previous kernel finishes
    }
  }
  pdl_wait();  // launched with PDL (common.cuh): nothing the previous kernels write is touched before this
  const std::int64_t r = blockIdx.x;
  TX* xr = x + r * ldx;
  float ss = 0.0f;
  if (in_regs) {
    float h[kRowRegs];
#pragma unroll
    for (int j = 0; j < kRowRegs; ++j) {
      const int i = threadIdx.x + j * nt;
      h[j] = i < dim ? to_f32(xr[i]) : 0.0f;
    }
    if (res) {
      float rv[kRowRegs];
#pragma unroll
      for (int j = 0; j < kRowRegs; ++j) {
        const int i = threadIdx.x + j * nt;
        rv[j] = i < dim ? to_f32(res[r * ldr + i]) : 0.0f;
      }
#pragma unroll
      for (int j = 0; j < kRowRegs; ++j) {
        const int i = threadIdx.x + j * nt;
        if (i < dim) {
          const TX hx = from_f32<TX>(h[j] + rv[j]);
          xr[i] = hx;
          h[j] = to_f32(hx);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kRowRegs; ++j) ss = fmaf(h[j], h[j], ss);
    ss = block_sum(ss, sh);
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(dim) + eps);
#pragma unroll
    for (int j = 0; j < kRowRegs; ++j) {
      const int i = threadIdx.x + j * nt;
      if (i < dim) out.put(r * ldo + i, wv[j] * (h[j] * inv));
    }
    return;
  }
  for (int i = threadIdx.x; i < dim; i += nt) {
    float h = to_f32(xr[i]);
    if (res) {
      h += to_f32(res[r * ldr + i]);
      xr[i] = from_f32<TX>(h);
      h = to_f32(xr[i]);
    }
    ss = fmaf(h, h, ss);
  }
  ss = block_sum(ss, sh);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += nt) out.put(r * ldo + i, w[i] * (to_f32(xr[i]) * inv));
}

template <class O> OutWriter<O> writer(const Tensor& t, float scale);
template <> OutWriter<float> writer<float>(const Tensor& t, float) { return {mptr<float>(t)}; }
template <> OutWriter<bf16> writer<bf16>(const Tensor& t, float) { return {mptr<bf16>(t)}; }
template <> OutWriter<std::uint8_t> writer<std::uint8_t>(const Tensor& t, float s) { return {mptr<std::uint8_t>(t), s}; }

// Calls f(OutWriter<O>) for the output dtype of `out`.
template <class F> void with_writer(const Tensor& out, float scale, F&& f) {
  switch (out.dtype) {
    case DType::F32: f(writer<float>(out, scale)); break;
    case DType::BF16: f(writer<bf16>(out, scale)); break;
    default: f(writer<std::uint8_t>(out, scale)); break;
  }
}
// Calls f(T{}) for an F32 or BF16 input dtype.
template <class F> void with_input(DType d, F&& f) {
  if (d == DType::F32) f(float{}); else f(bf16{});
}

void check_scale(const char* op, const Tensor& out, float s) {
  if (out.dtype == DType::F8_E4M3 && !(s > 0.0f && s < FLT_MAX))
    usage_error(op, "E4M3 output needs a finite out_scale > 0", "> 0", std::to_string(s));
}

}  // namespace

void rms_norm(const Tensor& x, const Tensor* residual, const float* weight, float eps, const Tensor& out,
              float out_scale, cudaStream_t stream) {
  if (residual) expect_tensor("cuda::rms_norm", "x", x, {DType::F32}, {-1, -1});
  else expect_tensor("cuda::rms_norm", "x", x, {DType::F32, DType::BF16}, {-1, -1});
  const std::int64_t rows = x.shape[0], dim = x.shape[1];
  if (residual) expect_tensor("cuda::rms_norm", "residual", *residual, {DType::F32, DType::BF16}, {rows, dim});
  expect_tensor("cuda::rms_norm", "out", out, {DType::F32, DType::BF16, DType::F8_E4M3}, {rows, dim});
  if (!weight) usage_error("cuda::rms_norm", "weight is null", "device [dim] F32", "null");
  check_scale("cuda::rms_norm", out, out_scale);
  if (rows == 0) return;
  with_writer(out, out_scale, [&](auto w) {
    using O = std::remove_pointer_t<decltype(w.p)>;
    with_input(x.dtype, [&](auto tx) {
      using TX = decltype(tx);
      if (residual) {
        with_input(residual->dtype, [&](auto tr) {
          using TR = decltype(tr);
          launch_pdl(rms_norm_kernel<TX, TR, O>, dim3(static_cast<unsigned>(rows)), dim3(rms_norm_threads(dim)), 0, stream, mptr<TX>(x),
                     x.stride[0], cptr<TR>(*residual), residual->stride[0], weight, static_cast<int>(dim), eps, w, out.stride[0]);
        });
      } else {
        launch_pdl(rms_norm_kernel<TX, float, O>, dim3(static_cast<unsigned>(rows)), dim3(rms_norm_threads(dim)), 0, stream, mptr<TX>(x),
                   x.stride[0], static_cast<const float*>(nullptr), std::int64_t{0}, weight, static_cast<int>(dim), eps, w,
                   out.stride[0]);
      }
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("rms_norm_kernel");
}

// ---- SwiGLU --------------------------------------------------------------------------------------
namespace {
// Grid (column blocks, rows): no integer division per element; V consecutive elements per thread (V = 4 when
// the row stride and the pointers allow 4-element vectors, else 1).
template <int V, class T, class O>
__global__ void swiglu_kernel(const T* gu, std::int64_t ld, int inter, OutWriter<O> out, std::int64_t ldo, float gm, float um) {
  pdl_trigger();
  pdl_wait();  // launched with PDL (common.cuh)
  const std::int64_t r = blockIdx.y;
  const int i0 = (blockIdx.x * blockDim.x + threadIdx.x) * V;
  if (i0 >= inter) return;
  const T* g = gu + r * ld + i0;
  const T* u = g + inter;
  float gf[V], uf[V];
  if constexpr (V == 4 && std::is_same_v<T, float>) {
    const float4 a = *reinterpret_cast<const float4*>(g), b = *reinterpret_cast<const float4*>(u);
    gf[0] = a.x, gf[1] = a.y, gf[2] = a.z, gf[3] = a.w, uf[0] = b.x, uf[1] = b.y, uf[2] = b.z, uf[3] = b.w;
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) gf[k] = to_f32(g[k]), uf[k] = to_f32(u[k]);
  }
#pragma unroll
  for (int k = 0; k < V; ++k) {
    const float x = gf[k] * gm, y = uf[k] * um;
    out.put(r * ldo + i0 + k, x / (1.0f + expf(-x)) * y);
  }
}
}  // namespace

void swiglu(const Tensor& gate_up, const Tensor& out, float out_scale, cudaStream_t stream, float gate_mul, float up_mul) {
  expect_tensor("cuda::swiglu", "gate_up", gate_up, {DType::F32, DType::BF16}, {-1, -1});
  if (gate_up.shape[1] % 2) usage_error("cuda::swiglu", "gate_up width must be even (gate | up)", "2I", std::to_string(gate_up.shape[1]));
  const std::int64_t rows = gate_up.shape[0], inter = gate_up.shape[1] / 2;
  expect_tensor("cuda::swiglu", "out", out, {DType::F32, DType::BF16, DType::F8_E4M3}, {rows, inter});
  check_scale("cuda::swiglu", out, out_scale);
  if (rows * inter == 0) return;
  const bool vec = gate_up.dtype == DType::F32 && inter % 4 == 0 && gate_up.stride[0] % 4 == 0 &&
                   reinterpret_cast<std::uintptr_t>(gate_up.data) % 16 == 0;
  with_writer(out, out_scale, [&](auto w) {
    using O = std::remove_pointer_t<decltype(w.p)>;
    with_input(gate_up.dtype, [&](auto t) {
      using T = decltype(t);
      auto launch = [&](auto kernel, int v) {
        for (std::int64_t r0 = 0; r0 < rows; r0 += 65535) {  // grid.y <= 65535 rows per launch
          auto wr = w;
          wr.p += r0 * out.stride[0];
          const dim3 grid(ceil_div(ceil_div(inter, v), 256), static_cast<unsigned>(std::min<std::int64_t>(65535, rows - r0)));
          launch_pdl(kernel, grid, dim3(256), 0, stream, cptr<T>(gate_up) + r0 * gate_up.stride[0], gate_up.stride[0],
                     static_cast<int>(inter), wr, out.stride[0], gate_mul, up_mul);
        }
      };
      if (vec) launch(swiglu_kernel<4, T, O>, 4);
      else launch(swiglu_kernel<1, T, O>, 1);
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("swiglu_kernel");
}

// ---- GELU (erf) ---------------------------------------------------------------------------------
namespace {
template <class T, class O>
__global__ void gelu_erf_kernel(const T* x, std::int64_t ld, std::int64_t cols, std::int64_t rows, OutWriter<O> out,
                                std::int64_t ldo) {
  const std::int64_t n = rows * cols;
  for (std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = idx / cols, i = idx % cols;
    const float v = to_f32(x[r * ld + i]);
    out.put(r * ldo + i, 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
  }
}
}  // namespace

void gelu_erf(const Tensor& x, const Tensor& out, float out_scale, cudaStream_t stream) {
  expect_tensor("cuda::gelu_erf", "x", x, {DType::F32, DType::BF16}, {-1, -1});
  const std::int64_t rows = x.shape[0], cols = x.shape[1];
  expect_tensor("cuda::gelu_erf", "out", out, {DType::F32, DType::BF16, DType::F8_E4M3}, {rows, cols});
  check_scale("cuda::gelu_erf", out, out_scale);
  if (rows * cols == 0) return;
  const unsigned blocks = std::min<unsigned>(ceil_div(rows * cols, 256), 132u * 16u);
  with_writer(out, out_scale, [&](auto w) {
    using O = std::remove_pointer_t<decltype(w.p)>;
    with_input(x.dtype, [&](auto t) {
      using T = decltype(t);
      gelu_erf_kernel<T, O><<<blocks, 256, 0, stream>>>(cptr<T>(x), x.stride[0], cols, rows, w, out.stride[0]);
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("gelu_erf_kernel");
}

// ---- add, embedding, quantize, dequantize --------------------------------------------------------
namespace {
template <class T>
__global__ void add_kernel(float* x, const T* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    x[i] += to_f32(y[i]);
}
template <class T, class O>
__global__ void embedding_kernel(const int* __restrict__ ids, const T* __restrict__ table, std::int64_t vocab, int dim,
                                 O* __restrict__ out) {
  // 8 loads in flight per thread before the stores (the plain loop made one memory round trip per blockDim.x
  // elements: 8.5 us for one 3584-wide row at batch 1 in run 13's profile).
  constexpr int kU = 8;
  const std::int64_t r = blockIdx.x;
  const int id = ids[r];
  const bool ok = id >= 0 && id < vocab;
  const T* row = table + static_cast<std::int64_t>(ok ? id : 0) * dim;
  const int nt = static_cast<int>(blockDim.x);
  for (int i0 = threadIdx.x; i0 < dim; i0 += kU * nt) {
    float v[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int i = i0 + u * nt;
      v[u] = ok && i < dim ? to_f32(row[i]) : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int i = i0 + u * nt;
      if (i < dim) out[r * dim + i] = from_f32<O>(v[u]);
    }
  }
}
template <class T>
__global__ void quantize_kernel(const T* x, float scale, std::uint8_t* out, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    out[i] = f32_to_e4m3_sat(__fdiv_rn(to_f32(x[i]), scale));
}
// One CTA per row: the row's max |x| (fmaxf: NaNs never win, as std::max in ops::linear_forward), its scale
// max(amax / 448, floor), then the E4M3 codes of x / scale (IEEE division).
template <class T>
__global__ void quantize_per_token_kernel(const T* x, std::int64_t ldx, int cols, std::uint8_t* codes, float* scales,
                                          float floor) {
  __shared__ float sh[32];
  const std::int64_t r = blockIdx.x;
  const T* xr = x + r * ldx;
  float m = 0.0f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, fabsf(to_f32(xr[i])));
  m = warp_max(m);
  if (threadIdx.x % 32 == 0) sh[threadIdx.x / 32] = m;
  __syncthreads();
  m = threadIdx.x < blockDim.x / 32 ? sh[threadIdx.x] : 0.0f;
  if (threadIdx.x < 32) m = warp_max(m);
  if (threadIdx.x == 0) sh[0] = fmaxf(__fdiv_rn(m, 448.0f), floor);
  __syncthreads();
  const float s = sh[0];
  if (threadIdx.x == 0) scales[r] = s;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) codes[r * cols + i] = f32_to_e4m3_sat(__fdiv_rn(to_f32(xr[i]), s));
}
// y = acc · (row scale · col scale) (+ bias), the two products and the add rounded separately as on the CPU.
template <class O>
__global__ void scale_rows_cols_kernel(const float* acc, int cols, const float* rs, float r0, const float* cs, float c0,
                                       const float* bias, O* y, std::int64_t ldy) {
  const std::int64_t r = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const float a = __fmul_rn(rs ? rs[r] : r0, cs ? cs[c] : c0);
  float v = __fmul_rn(acc[r * cols + c], a);
  if (bias) v = __fadd_rn(v, bias[c]);
  y[r * ldy + c] = from_f32<O>(v);
}
template <class O>
__global__ void dequantize_kernel(const std::uint8_t* q, float scale, O* out, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    out[i] = from_f32<O>(__fmul_rn(e4m3_to_f32(q[i]), scale));
}
template <class T, class O>
__global__ void cast_kernel(const T* x, std::int64_t ldx, int cols, O* out, std::int64_t ldo) {
  const std::int64_t r = blockIdx.x;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) out[r * ldo + i] = from_f32<O>(to_f32(x[r * ldx + i]));
}
unsigned grid_for(std::int64_t n) { return std::max(1u, std::min<unsigned>(ceil_div(n, 256), 132u * 16u)); }
bool is_contiguous(const Tensor& t) {
  std::int64_t s = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    if (t.stride[i] != s) return false;
    s *= t.shape[i];
  }
  return t.data != nullptr;
}
void expect_flat(const char* op, const char* arg, const Tensor& t, std::initializer_list<DType> dt, std::int64_t n) {
  bool ok = false;
  for (auto d : dt) ok |= d == t.dtype;
  if (!ok || !is_contiguous(t) || (n >= 0 && t.numel() != n))
    usage_error(op, std::string("argument ") + arg + " has the wrong dtype, size or layout",
                "contiguous" + (n >= 0 ? ", " + std::to_string(n) + " elements" : std::string()), t.describe());
}
}  // namespace

void add_inplace(const Tensor& x, const Tensor& y, cudaStream_t stream) {
  expect_flat("cuda::add_inplace", "x", x, {DType::F32}, -1);
  expect_flat("cuda::add_inplace", "y", y, {DType::F32, DType::BF16}, x.numel());
  const std::int64_t n = x.numel();
  if (!n) return;
  with_input(y.dtype, [&](auto t) {
    using T = decltype(t);
    add_kernel<T><<<grid_for(n), 256, 0, stream>>>(mptr<float>(x), cptr<T>(y), n);
  });
  VLQ_CUDA_CHECK_LAUNCH("add_kernel");
}

void cast(const Tensor& x, const Tensor& out, cudaStream_t stream) {
  expect_tensor("cuda::cast", "x", x, {DType::F32, DType::BF16}, {-1, -1});
  expect_tensor("cuda::cast", "out", out, {DType::F32, DType::BF16}, {x.shape[0], x.shape[1]});
  if (x.stride[1] != 1 || out.stride[1] != 1)
    usage_error("cuda::cast", "columns must be contiguous", "stride[1] == 1", x.describe() + " -> " + out.describe());
  if (!x.shape[0] || !x.shape[1]) return;
  with_input(x.dtype, [&](auto tx) {
    using T = decltype(tx);
    with_input(out.dtype, [&](auto to) {
      using O = decltype(to);
      cast_kernel<T, O><<<static_cast<unsigned>(x.shape[0]), 256, 0, stream>>>(cptr<T>(x), x.stride[0], static_cast<int>(x.shape[1]),
                                                                              mptr<O>(out), out.stride[0]);
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("cast_kernel");
}

void embedding(const Tensor& ids, const Tensor& table, const Tensor& out, cudaStream_t stream) {
  expect_tensor("cuda::embedding", "ids", ids, {DType::I32}, {-1});
  expect_tensor("cuda::embedding", "table", table, {DType::BF16, DType::F32}, {-1, -1});
  expect_tensor("cuda::embedding", "out", out, {DType::F32, DType::BF16}, {ids.shape[0], table.shape[1]});
  if (!is_contiguous(out) || !is_contiguous(table)) usage_error("cuda::embedding", "table/out must be contiguous", "contiguous", out.describe());
  if (!ids.shape[0]) return;
  with_input(table.dtype, [&](auto tt) {
    using T = decltype(tt);
    with_input(out.dtype, [&](auto to) {
      using O = decltype(to);
      embedding_kernel<T, O><<<static_cast<unsigned>(ids.shape[0]), 256, 0, stream>>>(
          cptr<int>(ids), cptr<T>(table), table.shape[0], static_cast<int>(table.shape[1]), mptr<O>(out));
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("embedding_kernel");
}

void quantize_e4m3(const Tensor& x, float scale, const Tensor& out, cudaStream_t stream) {
  expect_flat("cuda::quantize_e4m3", "x", x, {DType::F32, DType::BF16}, -1);
  expect_flat("cuda::quantize_e4m3", "out", out, {DType::F8_E4M3}, x.numel());
  check_scale("cuda::quantize_e4m3", out, scale);
  const std::int64_t n = x.numel();
  if (!n) return;
  with_input(x.dtype, [&](auto t) {
    using T = decltype(t);
    quantize_kernel<T><<<grid_for(n), 256, 0, stream>>>(cptr<T>(x), scale, mptr<std::uint8_t>(out), n);
  });
  VLQ_CUDA_CHECK_LAUNCH("quantize_kernel");
}

void quantize_e4m3_per_token(const Tensor& x, const Tensor& codes, float* scales, float floor, cudaStream_t stream) {
  expect_tensor("cuda::quantize_e4m3_per_token", "x", x, {DType::F32, DType::BF16}, {-1, -1});
  const std::int64_t rows = x.shape[0], cols = x.shape[1];
  expect_tensor("cuda::quantize_e4m3_per_token", "codes", codes, {DType::F8_E4M3}, {rows, cols});
  if (codes.stride[0] != cols)
    usage_error("cuda::quantize_e4m3_per_token", "codes must be contiguous", "row stride " + std::to_string(cols),
                std::to_string(codes.stride[0]));
  if (!scales) usage_error("cuda::quantize_e4m3_per_token", "scales is null", "device [rows] F32", "null");
  if (!(floor > 0.0f)) usage_error("cuda::quantize_e4m3_per_token", "floor must be > 0", "> 0", std::to_string(floor));
  if (rows == 0 || cols == 0) return;
  with_input(x.dtype, [&](auto t) {
    using T = decltype(t);
    for (std::int64_t r0 = 0; r0 < rows; r0 += 65535)  // grid.x <= 2^31 - 1 anyway; chunks keep offsets simple
      quantize_per_token_kernel<T><<<static_cast<unsigned>(std::min<std::int64_t>(65535, rows - r0)), 256, 0, stream>>>(
          cptr<T>(x) + r0 * x.stride[0], x.stride[0], static_cast<int>(cols), mptr<std::uint8_t>(codes) + r0 * cols,
          scales + r0, floor);
  });
  VLQ_CUDA_CHECK_LAUNCH("quantize_per_token_kernel");
}

void scale_rows_cols(const Tensor& acc, const float* row_scales, float row_scale, const float* col_scales, float col_scale,
                     const float* bias, const Tensor& y, cudaStream_t stream) {
  expect_tensor("cuda::scale_rows_cols", "acc", acc, {DType::F32}, {-1, -1});
  const std::int64_t rows = acc.shape[0], cols = acc.shape[1];
  if (acc.stride[0] != cols)
    usage_error("cuda::scale_rows_cols", "acc must be contiguous", "row stride " + std::to_string(cols), std::to_string(acc.stride[0]));
  expect_tensor("cuda::scale_rows_cols", "y", y, {DType::F32, DType::BF16}, {rows, cols});
  if (rows == 0 || cols == 0) return;
  with_input(y.dtype, [&](auto t) {
    using O = decltype(t);
    for (std::int64_t r0 = 0; r0 < rows; r0 += 65535) {
      const dim3 grid(ceil_div(cols, 256), static_cast<unsigned>(std::min<std::int64_t>(65535, rows - r0)));
      scale_rows_cols_kernel<O><<<grid, 256, 0, stream>>>(cptr<float>(acc) + r0 * cols, static_cast<int>(cols),
                                                          row_scales ? row_scales + r0 : nullptr, row_scale, col_scales,
                                                          col_scale, bias, mptr<O>(y) + r0 * y.stride[0], y.stride[0]);
    }
  });
  VLQ_CUDA_CHECK_LAUNCH("scale_rows_cols_kernel");
}

void dequantize_e4m3(const Tensor& q, float scale, const Tensor& out, cudaStream_t stream) {
  expect_flat("cuda::dequantize_e4m3", "q", q, {DType::F8_E4M3}, -1);
  expect_flat("cuda::dequantize_e4m3", "out", out, {DType::F32, DType::BF16}, q.numel());
  const std::int64_t n = q.numel();
  if (!n) return;
  with_input(out.dtype, [&](auto t) {
    using O = decltype(t);
    dequantize_kernel<O><<<grid_for(n), 256, 0, stream>>>(cptr<std::uint8_t>(q), scale, mptr<O>(out), n);
  });
  VLQ_CUDA_CHECK_LAUNCH("dequantize_kernel");
}

// ---- rotary --------------------------------------------------------------------------------------
namespace {
__global__ void mrope_angles_kernel(const int* pos, std::int64_t seq, const float* inv_freq, int half, int s0, int s1,
                                    float* angles) {
  const std::int64_t n = seq * half;
  for (std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t s = idx / half;
    const int j = static_cast<int>(idx % half);
    const int row = j < s0 ? 0 : (j < s0 + s1 ? 1 : 2);
    angles[idx] = __fmul_rn(static_cast<float>(pos[row * seq + s]), inv_freq[j]);
  }
}
template <class T>
__global__ void rotary_kernel(T* x, std::int64_t ld, int heads, int half, std::int64_t rows, const float* angles) {
  const std::int64_t n = rows * heads * half;
  for (std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(idx % half);
    const std::int64_t rh = idx / half;
    const int h = static_cast<int>(rh % heads);
    const std::int64_t r = rh / heads;
    T* v = x + r * ld + static_cast<std::int64_t>(h) * 2 * half;
    float p = to_f32(v[j]), q = to_f32(v[j + half]);
    rotate_pair(p, q, angles[r * half + j]);
    v[j] = from_f32<T>(p);
    v[j + half] = from_f32<T>(q);
  }
}
}  // namespace

void mrope_angles(const Tensor& positions, const float* inv_freq, const int sections[3], const Tensor& angles,
                  cudaStream_t stream) {
  expect_tensor("cuda::mrope_angles", "positions", positions, {DType::I32}, {3, -1});
  const std::int64_t seq = positions.shape[1];
  expect_tensor("cuda::mrope_angles", "angles", angles, {DType::F32}, {seq, -1});
  const int half = static_cast<int>(angles.shape[1]);
  if (sections[0] + sections[1] + sections[2] != half || !inv_freq)
    usage_error("cuda::mrope_angles", "mrope sections must sum to head_dim/2 (and inv_freq non-null)", std::to_string(half),
                std::to_string(sections[0] + sections[1] + sections[2]));
  if (!seq) return;
  mrope_angles_kernel<<<grid_for(seq * half), 256, 0, stream>>>(cptr<int>(positions), seq, inv_freq, half, sections[0],
                                                                sections[1], mptr<float>(angles));
  VLQ_CUDA_CHECK_LAUNCH("mrope_angles_kernel");
}

void rotary_inplace(const Tensor& x, const Tensor& angles, cudaStream_t stream) {
  expect_tensor("cuda::rotary_inplace", "x", x, {DType::F32, DType::BF16}, {-1, -1, -1});
  const std::int64_t rows = x.shape[0], heads = x.shape[1], d = x.shape[2];
  if (d % 2 || x.stride[1] != d) usage_error("cuda::rotary_inplace", "head_dim must be even with heads contiguous", "stride[1] == D", x.describe());
  expect_tensor("cuda::rotary_inplace", "angles", angles, {DType::F32}, {rows, d / 2});
  if (!rows) return;
  with_input(x.dtype, [&](auto t) {
    using T = decltype(t);
    rotary_kernel<T><<<grid_for(rows * heads * d / 2), 256, 0, stream>>>(mptr<T>(x), x.stride[0], static_cast<int>(heads),
                                                                         static_cast<int>(d / 2), rows, cptr<float>(angles));
  });
  VLQ_CUDA_CHECK_LAUNCH("rotary_kernel");
}

// ---- ViT q/k/v: rotary + split + cast ---------------------------------------------------------------------
namespace {
// One CTA per row: cos/sin of the row's D/2 angles into shared memory, then q and k rotated and v copied.
template <class I, class O>
__global__ void rotary_split_qkv_kernel(const I* qkv, std::int64_t ld, int heads, int half, const float* angles,
                                        O* q, O* k, O* v) {
  extern __shared__ float cs[];  // [2][half]: cos, sin
  const std::int64_t r = blockIdx.x;
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const float a = angles[r * half + j];
    cs[j] = cosf(a);
    cs[half + j] = sinf(a);
  }
  __syncthreads();
  const int d = 2 * half, hd = heads * d;
  const I* row = qkv + r * ld;
  for (int idx = threadIdx.x; idx < 2 * heads * half; idx += blockDim.x) {
    const int which = idx / (heads * half), rem = idx % (heads * half), h = rem / half, j = rem % half;
    const I* src = row + which * hd + h * d;
    float p = to_f32(src[j]), pq = to_f32(src[j + half]);
    rotate_pair_cs(p, pq, cs[j], cs[half + j]);
    O* dst = (which ? k : q) + r * hd + h * d;
    dst[j] = from_f32<O>(p);
    dst[j + half] = from_f32<O>(pq);
  }
  for (int i = threadIdx.x; i < hd; i += blockDim.x) v[r * hd + i] = from_f32<O>(to_f32(row[2 * hd + i]));
}
}  // namespace

void rotary_split_qkv(const Tensor& qkv, const Tensor& angles, const Tensor& q, const Tensor& k, const Tensor& v,
                      cudaStream_t stream) {
  const char* op = "cuda::rotary_split_qkv";
  expect_tensor(op, "q", q, {DType::F32, DType::BF16}, {-1, -1, -1});
  const std::int64_t rows = q.shape[0], heads = q.shape[1], d = q.shape[2];
  if (d % 2 || !is_contiguous(q)) usage_error(op, "q must be contiguous [rows, heads, D] with D even", "contiguous, D even", q.describe());
  expect_tensor(op, "k", k, {q.dtype}, {rows, heads, d});
  expect_tensor(op, "v", v, {q.dtype}, {rows, heads, d});
  if (!is_contiguous(k) || !is_contiguous(v)) usage_error(op, "k and v must be contiguous", "contiguous", k.describe() + ", " + v.describe());
  expect_tensor(op, "qkv", qkv, {DType::F32, DType::BF16}, {rows, 3 * heads * d});
  if (qkv.stride[1] != 1 || qkv.stride[0] < 3 * heads * d)
    usage_error(op, "qkv rows must be contiguous columns, at least 3·heads·D apart", "stride[1] == 1, stride[0] >= 3·heads·D", qkv.describe());
  expect_tensor(op, "angles", angles, {DType::F32}, {rows, d / 2});
  if (!is_contiguous(angles)) usage_error(op, "angles must be contiguous", "contiguous", angles.describe());
  if (!rows) return;
  const std::size_t smem = static_cast<std::size_t>(d) * sizeof(float);
  with_input(qkv.dtype, [&](auto ti) {
    using I = decltype(ti);
    with_input(q.dtype, [&](auto to) {
      using O = decltype(to);
      rotary_split_qkv_kernel<I, O><<<static_cast<unsigned>(rows), 256, smem, stream>>>(
          cptr<I>(qkv), qkv.stride[0], static_cast<int>(heads), static_cast<int>(d / 2), cptr<float>(angles), mptr<O>(q),
          mptr<O>(k), mptr<O>(v));
    });
  });
  VLQ_CUDA_CHECK_LAUNCH("rotary_split_qkv_kernel");
}

// ---- argmax --------------------------------------------------------------------------------------
namespace {
template <class T>
__global__ void __launch_bounds__(1024) argmax_kernel(const T* x, std::int64_t ld, int vocab, int* out) {
  __shared__ float sv[32];
  __shared__ int si[32];
  pdl_trigger();
  pdl_wait();  // launched with PDL (common.cuh)
  const T* xr = x + blockIdx.x * ld;
  float best = -INFINITY;
  int bi = 0x7fffffff;
  auto take = [&](float v, int i) {
    if (v > best) { best = v; bi = i; }  // i increases within a thread: keeps the first max of this thread
  };
  int i0 = 0;
  if constexpr (std::is_same_v<T, float>) {
    // 16-byte loads, 4 in flight per thread (one block scans the whole row: at batch 1 the plain loop was one
    // memory round trip per 1024 logits, 61 us for 152k in run 13's profile). Rows need 16-byte alignment.
    if ((reinterpret_cast<std::uintptr_t>(xr) & 15) == 0) {
      const int nv = vocab / 4;
      const float4* xv = reinterpret_cast<const float4*>(xr);
      constexpr int kU = 4;
      for (int b = threadIdx.x; b < nv; b += kU * blockDim.x) {
        float4 f[kU];
#pragma unroll
        for (int u = 0; u < kU; ++u) f[u] = b + u * blockDim.x < nv ? xv[b + u * blockDim.x] : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int e = 4 * (b + u * blockDim.x);
          take(f[u].x, e), take(f[u].y, e + 1), take(f[u].z, e + 2), take(f[u].w, e + 3);
        }
      }
      i0 = nv * 4;
    }
  }
  for (int i = i0 + static_cast<int>(threadIdx.x); i < vocab; i += blockDim.x) take(to_f32(xr[i]), i);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
  }
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  if (l == 0) { sv[w] = best; si[w] = bi; }
  __syncthreads();
  if (w == 0) {
    const int nw = blockDim.x / 32;
    best = l < nw ? sv[l] : -INFINITY;
    bi = l < nw ? si[l] : 0x7fffffff;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
    }
    if (l == 0) out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
  }
}
}  // namespace

void argmax(const Tensor& logits, const Tensor& out, cudaStream_t stream) {
  expect_tensor("cuda::argmax", "logits", logits, {DType::F32, DType::BF16}, {-1, -1});
  expect_tensor("cuda::argmax", "out", out, {DType::I32}, {logits.shape[0]});
  if (!logits.shape[0]) return;
  with_input(logits.dtype, [&](auto t) {
    using T = decltype(t);
    launch_pdl(argmax_kernel<T>, dim3(static_cast<unsigned>(logits.shape[0])), dim3(1024), 0, stream, cptr<T>(logits),
               logits.stride[0], static_cast<int>(logits.shape[1]), mptr<int>(out));
  });
  VLQ_CUDA_CHECK_LAUNCH("argmax_kernel");
}

}  // namespace vlq::cuda
