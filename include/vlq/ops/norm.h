// RMSNorm as Qwen2/Qwen2.5-VL compute it: y = weight ⊙ (x · rsqrt(mean(x²) + eps)), normalisation in f32.
// Spec: ../shared/docs/qwen2_5_vl.md §3.2 step 7 and §4.3 (Qwen2RMSNorm; in f32 runs the cast to the
// input dtype is a no-op).
#pragma once

#include <cstdint>

namespace vlq::ops {

// x, y: [rows, dim] f32 (may alias); weight: [dim]. eps in the same units as mean(x²).
void rms_norm(const float* x, const float* weight, std::int64_t rows, std::int64_t dim, float eps, float* y);

}  // namespace vlq::ops
