// CPU implementation of ops/activation.h (SiLU, erf GELU, SwiGLU).
#include "vlq/ops/activation.h"

#include <cmath>

namespace vlq::ops {

void silu_inplace(float* x, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 18))
  for (std::int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void gelu_erf_inplace(float* x, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 18))
  for (std::int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752440f));
}

void swiglu_inplace(float* gate, const float* up, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 18))
  for (std::int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace vlq::ops
