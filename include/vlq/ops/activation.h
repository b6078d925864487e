// Elementwise activations of Qwen2.5-VL: SiLU (MLPs), exact erf GELU (vision patch merger) and the
// SwiGLU product silu(gate) ⊙ up. Spec: ../shared/docs/qwen2_5_vl.md §3.2 steps 7–8, §4.3.
#pragma once

#include <cstdint>

namespace vlq::ops {

// silu(x) = x / (1 + exp(-x)), in place over n values.
void silu_inplace(float* x, std::int64_t n);
// gelu(x) = 0.5·x·(1 + erf(x/√2)) (torch nn.GELU() default, not the tanh approximation), in place.
void gelu_erf_inplace(float* x, std::int64_t n);
// gate[i] = silu(gate[i]) · up[i] for i < n (gate overwritten).
void swiglu_inplace(float* gate, const float* up, std::int64_t n);

}  // namespace vlq::ops
