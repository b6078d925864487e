// Rotary position embeddings of Qwen2.5-VL: the vision tower's 2-D rotary (h, w halves, θ = 10000) and
// the language model's M-RoPE (t/h/w sections of the frequency index, θ = rope_theta), both applied in
// the half-split ("NeoX") convention: x' = x·cos + rotate_half(x)·sin, rotate_half(u) = [−u₂, u₁].
// Spec: ../shared/docs/qwen2_5_vl.md §3.2 step 3, §4.4; transformers modeling_qwen2_5_vl.py
// (VisionRotaryEmbedding, apply_rotary_pos_emb_vision, apply_multimodal_rotary_pos_emb).
#pragma once

#include <cstdint>
#include <vector>

namespace vlq::ops {

// inv_freq[j] = 1 / theta^(2j/dim), j < dim/2, in f32 as torch computes it (int arange → float / dim,
// then pow in f32). dim must be even.
std::vector<float> rope_inv_freq(double theta, std::int64_t dim);

// Angles for the vision tower: for each patch p with (h_pos[p], w_pos[p]) the head_dim/2-wide vector
// [h·inv_freq (head_dim/4), w·inv_freq (head_dim/4)], inv_freq = rope_inv_freq(theta, head_dim/2).
// Returns [n_patches, head_dim/2] f32.
std::vector<float> vision_rotary_angles(const std::vector<std::int64_t>& h_pos, const std::vector<std::int64_t>& w_pos,
                                        std::int64_t head_dim, double theta);

// M-RoPE angles for the language model: positions [3, S] (rows t, h, w); section sizes mrope_section
// (sum = head_dim/2). Angle k of token s = pos[row(k)][s] · inv_freq[k], row(k) = the section k falls in.
// Returns [S, head_dim/2] f32.
std::vector<float> mrope_angles(const std::vector<std::int64_t>& positions, std::int64_t seq,
                                const std::vector<std::int64_t>& mrope_section, std::int64_t head_dim, double theta);

// Applies the rotation in place to x [rows, heads, head_dim] with angles [rows, head_dim/2]; dims k and
// k + head_dim/2 share angle k. cos/sin computed in f32.
void apply_rotary_inplace(float* x, std::int64_t rows, std::int64_t heads, std::int64_t head_dim, const float* angles);

}  // namespace vlq::ops
