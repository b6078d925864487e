// CPU implementation of ops/linear.h: dense sgemm through OpenBLAS and the FP8 GEMM emulation.
#include "vlq/ops/linear.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"

namespace vlq::ops {

const char* linear_kind_name(LinearKind k) noexcept {
  switch (k) {
    case LinearKind::kDense: return "dense";
    case LinearKind::kFp8Static: return "fp8-static";
    case LinearKind::kFp8Dynamic: return "fp8-dynamic";
  }
  return "?";
}

void fake_quantize_e4m3(const float* x, std::int64_t n, float scale, float* out) {
#pragma omp parallel for schedule(static) if (n > (1 << 18))
  for (std::int64_t i = 0; i < n; ++i) out[i] = e4m3fn_to_f32(f32_to_e4m3fn_sat(x[i] / scale));
}

namespace {

// OpenBLAS threads only for GEMMs big enough to amortise a thread hand-off: on small models (and on a
// loaded machine) threaded small GEMMs are several times slower than one thread.
void set_blas_threads_for(std::int64_t macs) {
  static const int max_threads = openblas_get_num_threads();
  static thread_local int current = -1;
  const int want = macs >= (std::int64_t{1} << 22) ? max_threads : 1;
  if (want != current) {
    openblas_set_num_threads(want);
    current = want;
  }
}

void sgemm_xwt(const float* x, std::int64_t m, std::int64_t k, const float* w, std::int64_t n, float* y) {
  set_blas_threads_for(m * n * k);
  if (m == 1) {  // decode: a matrix-vector product streams W once without sgemm's packing
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(k), 1.0f, w, static_cast<int>(k), x, 1,
                0.0f, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              1.0f, x, static_cast<int>(k), w, static_cast<int>(k), 0.0f, y, static_cast<int>(n));
}

}  // namespace

void linear_forward(const LinearWeights& lin, const float* x, std::int64_t m, std::int64_t x_cols, float* y) {
  const std::int64_t n = lin.out_features, k = lin.in_features;
  if (x_cols != k)
    throw UsageError({lin.name, "linear input width mismatch", std::to_string(k), std::to_string(x_cols),
                      "this is a bug in the caller"});
  if (m == 0) return;
  if (lin.kind == LinearKind::kDense) {
    sgemm_xwt(x, m, k, lin.w.data(), n, y);
  } else {
    std::vector<float> xq(static_cast<std::size_t>(m * k));
    std::vector<float> row_scale(static_cast<std::size_t>(m));
    if (lin.kind == LinearKind::kFp8Static) {
      const float s = *lin.input_scale;
      fake_quantize_e4m3(x, m * k, s, xq.data());
      std::fill(row_scale.begin(), row_scale.end(), s);
    } else {
#pragma omp parallel for schedule(static) if (m * k > (1 << 18))
      for (std::int64_t r = 0; r < m; ++r) {
        float amax = 0.0f;
        for (std::int64_t c = 0; c < k; ++c) amax = std::max(amax, std::fabs(x[r * k + c]));
        const float s = std::max(amax / 448.0f, kDynamicScaleFloor);
        row_scale[r] = s;
        for (std::int64_t c = 0; c < k; ++c) xq[r * k + c] = e4m3fn_to_f32(f32_to_e4m3fn_sat(x[r * k + c] / s));
      }
    }
    sgemm_xwt(xq.data(), m, k, lin.w.data(), n, y);
    const bool per_channel = lin.weight_scale.size() > 1;
#pragma omp parallel for schedule(static) if (m * n > (1 << 18))
    for (std::int64_t r = 0; r < m; ++r) {
      float* yr = y + r * n;
      for (std::int64_t c = 0; c < n; ++c)
        yr[c] *= row_scale[r] * (per_channel ? lin.weight_scale[c] : lin.weight_scale[0]);
    }
  }
  if (!lin.bias.empty()) {
#pragma omp parallel for schedule(static) if (m * n > (1 << 18))
    for (std::int64_t r = 0; r < m; ++r)
      for (std::int64_t c = 0; c < n; ++c) y[r * n + c] += lin.bias[c];
  }
}

void quantize_linear_fp8_static(LinearWeights& lin, float input_amax, const Fp8WeightRecipe& recipe, DType source_dtype) {
  if (lin.kind != LinearKind::kDense)
    throw UsageError({lin.name, "layer is already quantized", "dense", linear_kind_name(lin.kind), ""});
  if (!(std::isfinite(input_amax) && input_amax > 0.0f))
    throw UsageError({lin.name, "input amax must be finite and > 0", "> 0", std::to_string(input_amax),
                      "the calibration data never reached this module"});
  const Fp8Weight q = quantize_weight_fp8(std::as_bytes(std::span<const float>(lin.w)), DType::F32, source_dtype, recipe,
                                          lin.name + ".weight");
  for (std::size_t i = 0; i < q.codes.size(); ++i) lin.w[i] = e4m3fn_to_f32(q.codes[i]);
  lin.kind = LinearKind::kFp8Static;
  lin.weight_scale = {q.scale};
  lin.input_scale = input_amax / 448.0f;
}

}  // namespace vlq::ops
