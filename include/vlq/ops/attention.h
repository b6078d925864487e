// Scaled dot-product attention on CPU: (1) non-causal attention restricted to variable-length segments
// (the vision tower's window / per-frame full attention, cu_seqlens), (2) causal GQA attention of new
// queries over a KV cache (the language model's prefill and decode), f32 or FP8 (E4M3) cache.
// Softmax in f32 with max subtraction (HF eager path). Spec: ../shared/docs/qwen2_5_vl.md §3.2 step 7,
// §4.3; FP8 KV cache as vLLM stores it (fp8-checkpoint-formats.md §1.3, §2.4): code = E4M3_sat(k / k_scale),
// read back as code · k_scale.
#pragma once

#include <cstdint>
#include <vector>

namespace vlq::ops {

// q, k, v: [N, heads, head_dim]; out: [N, heads, head_dim]; cu_seqlens: ascending offsets starting at 0
// and ending at N (segment i = [cu[i], cu[i+1])). Each token attends to every token of its segment.
// Throws vlq::UsageError on inconsistent cu_seqlens.
void attention_segments(const float* q, const float* k, const float* v, std::int64_t n, std::int64_t heads,
                        std::int64_t head_dim, const std::vector<std::int64_t>& cu_seqlens, float scale, float* out);

// The KV cache of one attention layer: positions [0, length) filled, capacity fixed at creation.
// Layout [capacity, kv_heads, head_dim]. FP8 mode stores E4M3 codes with per-tensor k_scale / v_scale.
class KvCacheLayer {
 public:
  KvCacheLayer() = default;
  KvCacheLayer(std::int64_t capacity, std::int64_t kv_heads, std::int64_t head_dim, bool fp8, float k_scale,
               float v_scale);
  // Appends rows k, v [n, kv_heads, head_dim] at positions [length, length + n). Throws vlq::UsageError
  // when capacity would be exceeded.
  void append(const float* k, const float* v, std::int64_t n);
  // Key / value of position p, head h as f32 (dequantized in FP8 mode): [head_dim] into out.
  std::int64_t length() const { return length_; }
  std::int64_t capacity() const { return capacity_; }
  bool fp8() const { return fp8_; }
  float k_scale() const { return k_scale_; }
  float v_scale() const { return v_scale_; }
  void truncate(std::int64_t n) { if (n < length_) length_ = n; }
  std::int64_t kv_heads() const { return kv_heads_; }
  std::int64_t head_dim() const { return head_dim_; }
  const float* k_f32(std::int64_t p) const { return kf_.data() + p * kv_heads_ * head_dim_; }
  const float* v_f32(std::int64_t p) const { return vf_.data() + p * kv_heads_ * head_dim_; }
  std::size_t bytes() const { return kf_.size() * 4 + vf_.size() * 4 + k8_.size() + v8_.size(); }

 private:
  friend void attention_causal_cached(const float*, std::int64_t, std::int64_t, std::int64_t, const KvCacheLayer&,
                                      float, float*);
  std::int64_t capacity_ = 0, kv_heads_ = 0, head_dim_ = 0, length_ = 0;
  bool fp8_ = false;
  float k_scale_ = 1.0f, v_scale_ = 1.0f;
  std::vector<float> kf_, vf_;          // f32 mode; in FP8 mode the dequantized copy (exact code·scale)
  std::vector<std::uint8_t> k8_, v8_;   // FP8 mode: stored E4M3 codes
};

// q: [n_new, heads, head_dim] for absolute positions [cache.length() - n_new, cache.length()) (append
// first, then attend). Query i attends to cache positions [0, cache.length() - n_new + i]. GQA: query
// head h uses KV head h / (heads / kv_heads). out: [n_new, heads, head_dim].
void attention_causal_cached(const float* q, std::int64_t n_new, std::int64_t heads, std::int64_t head_dim,
                             const KvCacheLayer& cache, float scale, float* out);

}  // namespace vlq::ops
