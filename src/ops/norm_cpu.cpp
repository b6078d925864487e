// CPU implementation of ops/norm.h (RMSNorm).
#include "vlq/ops/norm.h"

#include <cmath>

namespace vlq::ops {

void rms_norm(const float* x, const float* weight, std::int64_t rows, std::int64_t dim, float eps, float* y) {
#pragma omp parallel for schedule(static) if (rows * dim > (1 << 18))
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float ss = 0.0f;
    for (std::int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (std::int64_t i = 0; i < dim; ++i) yr[i] = weight[i] * (xr[i] * inv);
  }
}

}  // namespace vlq::ops
