// vlq/cuda/gemm.h through cuBLASLt (host code only).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <string>
#include <tuple>

#include "vlq/cuda/gemm.h"

namespace vlq::cuda {

namespace {
using Key = std::tuple<int, int, int, int, int, std::int64_t, bool>;  // in dtype, out dtype, m, n, k, ldd, bias
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo[8]{};
  int n_algo = 0, chosen = 0;
};
}  // namespace

struct GemmContext::Impl {
  cublasLtHandle_t handle = nullptr;
  DeviceBuffer workspace{32u << 20};
  std::map<Key, Plan> plans;
  ~Impl() {
    for (auto& [k, p] : plans) {
      cublasLtMatmulDescDestroy(p.op);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.d);
    }
    if (handle) cublasLtDestroy(handle);
  }
};

GemmContext::GemmContext() : impl_(std::make_unique<Impl>()) { VLQ_CUBLAS_CHECK(cublasLtCreate(&impl_->handle)); }
GemmContext::~GemmContext() = default;

namespace {

void run_gemm(GemmContext& ctx, const char* op, bool fp8, const Tensor& x, const Tensor& w, const float* x_scale,
              const float* w_scale, const void* bias, const Tensor& y, cudaStream_t stream) {
  const DType in = fp8 ? DType::F8_E4M3 : DType::BF16;
  expect_tensor(op, "w", w, {in}, {-1, -1});
  const std::int64_t n = w.shape[0], k = w.shape[1];
  expect_tensor(op, "x", x, {in}, {-1, k});
  const std::int64_t m = x.shape[0];
  expect_tensor(op, "y", y, {DType::BF16, DType::F32}, {m, n});
  const std::int64_t align = fp8 ? 16 : 8;
  if (k % align || x.stride[0] % align || w.stride[0] % align || reinterpret_cast<std::uintptr_t>(x.data) % 16 ||
      reinterpret_cast<std::uintptr_t>(w.data) % 16 || reinterpret_cast<std::uintptr_t>(y.data) % 16)
    usage_error(op, "cuBLASLt needs K and leading dims multiple of " + std::to_string(align) + " and 16-byte aligned pointers",
                "K % " + std::to_string(align) + " == 0", "K = " + std::to_string(k));
  if (fp8 && (!x_scale || !w_scale || reinterpret_cast<std::uintptr_t>(x_scale) % 16 || reinterpret_cast<std::uintptr_t>(w_scale) % 16))
    usage_error(op, "FP8 GEMM needs 16-byte aligned device scale pointers (cuBLASLt returned NOT_SUPPORTED for a 4-byte offset one)",
                "non-null, 16-byte aligned", x_scale && w_scale ? "misaligned" : "null");
  if (m == 0 || n == 0) return;
  auto& im = ctx.impl();
  const cudaDataType_t dt = y.dtype == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F;
  const Key key{static_cast<int>(in), static_cast<int>(y.dtype), static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), y.stride[0] * 1000003 + x.stride[0] * 7 + w.stride[0], bias != nullptr};
  auto it = im.plans.find(key);
  if (it == im.plans.end()) {
    Plan p;
    const cudaDataType_t ab = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    VLQ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
    VLQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA));
    VLQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB));
    if (bias) {
      const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
      VLQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
      const cudaDataType_t bt = fp8 ? CUDA_R_16BF : dt;  // FP8 kernels take a BF16 bias only
      VLQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    // A = W as column-major [K, N] (ld = w.stride[0]), op T; B = x as column-major [K, M]; D = yᵀ [N, M].
    VLQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, ab, k, n, w.stride[0]));
    VLQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, ab, k, m, x.stride[0]));
    VLQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, dt, n, m, y.stride[0]));
    // Scale pointers must be set before the heuristic query for FP8.
    if (fp8) {
      VLQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scale, sizeof w_scale));
      VLQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scale, sizeof x_scale));
    }
    if (bias) VLQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    cublasLtMatmulPreference_t pref = nullptr;
    VLQ_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const std::size_t ws = im.workspace.bytes();
    VLQ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t res[8]{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(im.handle, p.op, p.a, p.b, p.d, p.d, pref, 8, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      cublasLtMatmulDescDestroy(p.op);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.d);
      throw UnsupportedError({op, "cuBLASLt found no algorithm for this GEMM", "a supported dtype/shape combination",
                              "M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k) + " out " +
                                  std::string(dtype_name(y.dtype)) + (bias ? " +bias" : "") + ", status " + std::to_string(st),
                              "FP8 needs sm_89+; try BF16 output"});
    }
    for (int i = 0; i < found; ++i) p.algo[i] = res[i].algo;
    p.n_algo = found;
    it = im.plans.emplace(key, p).first;
  }
  Plan& p = it->second;
  if (fp8) {
    VLQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scale, sizeof w_scale));
    VLQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scale, sizeof x_scale));
  }
  if (bias) VLQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  const float one = 1.0f, zero = 0.0f;
  // The heuristic's first choice can answer NOT_SUPPORTED at run time (seen for FP8 at 8192³ on H100):
  // fall through the other candidates and remember the first that runs.
  cublasStatus_t st = CUBLAS_STATUS_NOT_SUPPORTED;
  for (; p.chosen < p.n_algo; ++p.chosen) {
    st = cublasLtMatmul(im.handle, p.op, &one, w.data, p.a, x.data, p.b, &zero, y.data, p.d, y.data, p.d, &p.algo[p.chosen],
                        im.workspace.data(), im.workspace.bytes(), stream);
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) break;
  }
  if (p.chosen == p.n_algo) p.chosen = 0;
  VLQ_CUBLAS_CHECK(st);
}

}  // namespace

void gemm_fp8(GemmContext& ctx, const Tensor& x, const Tensor& w, const float* x_scale, const float* w_scale,
              const void* bias, const Tensor& y, cudaStream_t stream) {
  run_gemm(ctx, "cuda::gemm_fp8", true, x, w, x_scale, w_scale, bias, y, stream);
}
void gemm_bf16(GemmContext& ctx, const Tensor& x, const Tensor& w, const void* bias, const Tensor& y, cudaStream_t stream) {
  run_gemm(ctx, "cuda::gemm_bf16", false, x, w, nullptr, nullptr, bias, y, stream);
}

}  // namespace vlq::cuda
