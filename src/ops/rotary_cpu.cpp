// CPU implementation of ops/rotary.h (vision 2-D rotary, M-RoPE, half-split rotation).
#include "vlq/ops/rotary.h"

#include <cmath>

#include "vlq/core/error.h"

namespace vlq::ops {

std::vector<float> rope_inv_freq(double theta, std::int64_t dim) {
  std::vector<float> f(static_cast<std::size_t>(dim / 2));
  for (std::int64_t j = 0; j < dim / 2; ++j) {
    const float e = static_cast<float>(2 * j) / static_cast<float>(dim);
    f[j] = 1.0f / std::pow(static_cast<float>(theta), e);
  }
  return f;
}

std::vector<float> vision_rotary_angles(const std::vector<std::int64_t>& h_pos, const std::vector<std::int64_t>& w_pos,
                                        std::int64_t head_dim, double theta) {
  const std::int64_t half = head_dim / 2, quarter = head_dim / 4;
  const std::vector<float> inv = rope_inv_freq(theta, half);
  const std::int64_t n = static_cast<std::int64_t>(h_pos.size());
  std::vector<float> a(static_cast<std::size_t>(n * half));
  for (std::int64_t p = 0; p < n; ++p) {
    for (std::int64_t j = 0; j < quarter; ++j) {
      a[p * half + j] = static_cast<float>(h_pos[p]) * inv[j];
      a[p * half + quarter + j] = static_cast<float>(w_pos[p]) * inv[j];
    }
  }
  return a;
}

std::vector<float> mrope_angles(const std::vector<std::int64_t>& positions, std::int64_t seq,
                                const std::vector<std::int64_t>& mrope_section, std::int64_t head_dim, double theta) {
  const std::int64_t half = head_dim / 2;
  const std::vector<float> inv = rope_inv_freq(theta, head_dim);
  std::vector<int> row_of(static_cast<std::size_t>(half), 0);
  std::int64_t k = 0;
  for (std::size_t s = 0; s < mrope_section.size(); ++s)
    for (std::int64_t i = 0; i < mrope_section[s] && k < half; ++i) row_of[k++] = static_cast<int>(s % 3);
  if (k != half)
    throw UsageError({"mrope_section", "sections do not cover head_dim/2", std::to_string(half), std::to_string(k), ""});
  std::vector<float> a(static_cast<std::size_t>(seq * half));
  for (std::int64_t s = 0; s < seq; ++s)
    for (std::int64_t j = 0; j < half; ++j)
      a[s * half + j] = static_cast<float>(positions[row_of[j] * seq + s]) * inv[j];
  return a;
}

void apply_rotary_inplace(float* x, std::int64_t rows, std::int64_t heads, std::int64_t head_dim, const float* angles) {
  const std::int64_t half = head_dim / 2;
#pragma omp parallel for schedule(static) if (rows * heads * head_dim > (1 << 18))
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* ang = angles + r * half;
    std::vector<float> cs(static_cast<std::size_t>(2 * half));
    for (std::int64_t j = 0; j < half; ++j) {
      cs[2 * j] = std::cos(ang[j]);
      cs[2 * j + 1] = std::sin(ang[j]);
    }
    for (std::int64_t h = 0; h < heads; ++h) {
      float* v = x + (r * heads + h) * head_dim;
      for (std::int64_t j = 0; j < half; ++j) {
        const float c = cs[2 * j], s = cs[2 * j + 1];
        const float a = v[j], b = v[j + half];
        v[j] = a * c + (-b) * s;
        v[j + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace vlq::ops
