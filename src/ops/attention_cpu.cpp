// CPU implementation of ops/attention.h: segment (vision) attention, causal GQA attention over an f32 or
// FP8 KV cache. One query row at a time: scores → f32 softmax → weighted sum of values.
#include "vlq/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"

namespace vlq::ops {

namespace {

// out[d] = softmax_j(scale · q·k_j) · v_j over j in [0, n_keys); key/value rows found through functors.
template <class KeyAt, class ValAt>
void attend_row(const float* q, std::int64_t head_dim, std::int64_t n_keys, float scale, KeyAt key_at, ValAt val_at,
                std::vector<float>& scores, float* out) {
  scores.resize(static_cast<std::size_t>(n_keys));
  float mx = -INFINITY;
  for (std::int64_t j = 0; j < n_keys; ++j) {
    const float* kj = key_at(j);
    float s = 0.0f;
    for (std::int64_t d = 0; d < head_dim; ++d) s += q[d] * kj[d];
    s *= scale;
    scores[j] = s;
    mx = std::max(mx, s);
  }
  float sum = 0.0f;
  for (std::int64_t j = 0; j < n_keys; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  const float inv = 1.0f / sum;
  std::fill(out, out + head_dim, 0.0f);
  for (std::int64_t j = 0; j < n_keys; ++j) {
    const float p = scores[j] * inv;
    const float* vj = val_at(j);
    for (std::int64_t d = 0; d < head_dim; ++d) out[d] += p * vj[d];
  }
}

}  // namespace

void attention_segments(const float* q, const float* k, const float* v, std::int64_t n, std::int64_t heads,
                        std::int64_t head_dim, const std::vector<std::int64_t>& cu_seqlens, float scale, float* out) {
  if (cu_seqlens.size() < 2 || cu_seqlens.front() != 0 || cu_seqlens.back() != n)
    throw UsageError({"attention_segments", "cu_seqlens must start at 0 and end at N", std::to_string(n),
                      cu_seqlens.empty() ? "empty" : std::to_string(cu_seqlens.back()), ""});
  for (std::size_t i = 1; i < cu_seqlens.size(); ++i)
    if (cu_seqlens[i] < cu_seqlens[i - 1])
      throw UsageError({"attention_segments", "cu_seqlens not ascending", "", std::to_string(cu_seqlens[i]), ""});
  const std::int64_t stride = heads * head_dim;
  const std::int64_t nseg = static_cast<std::int64_t>(cu_seqlens.size()) - 1;
  // Threads only when there is enough work: a barrier costs more than a tiny model's whole attention.
  const bool par = n * heads * head_dim * (n / std::max<std::int64_t>(nseg, 1)) > (1 << 20);
#pragma omp parallel if (par)
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic) collapse(2)
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t h = 0; h < heads; ++h) {
        // segment of row i
        const auto it = std::upper_bound(cu_seqlens.begin(), cu_seqlens.begin() + nseg + 1, i);
        const std::int64_t s0 = *(it - 1), s1 = *it;
        attend_row(
            q + i * stride + h * head_dim, head_dim, s1 - s0, scale,
            [&](std::int64_t j) { return k + (s0 + j) * stride + h * head_dim; },
            [&](std::int64_t j) { return v + (s0 + j) * stride + h * head_dim; }, scores, out + i * stride + h * head_dim);
      }
    }
  }
}

KvCacheLayer::KvCacheLayer(std::int64_t capacity, std::int64_t kv_heads, std::int64_t head_dim, bool fp8,
                           float k_scale, float v_scale)
    : capacity_(capacity), kv_heads_(kv_heads), head_dim_(head_dim), fp8_(fp8), k_scale_(k_scale), v_scale_(v_scale) {
  const auto sz = static_cast<std::size_t>(capacity * kv_heads * head_dim);
  kf_.assign(sz, 0.0f);
  vf_.assign(sz, 0.0f);
  if (fp8) {
    if (!(k_scale > 0 && v_scale > 0 && std::isfinite(k_scale) && std::isfinite(v_scale)))
      throw UsageError({"KV cache", "FP8 KV cache scales must be finite and > 0", "> 0",
                        std::to_string(k_scale) + ", " + std::to_string(v_scale), ""});
    k8_.assign(sz, 0);
    v8_.assign(sz, 0);
  }
}

void KvCacheLayer::append(const float* k, const float* v, std::int64_t n) {
  if (length_ + n > capacity_)
    throw UsageError({"KV cache", "sequence longer than the KV cache", "<= " + std::to_string(capacity_) + " positions",
                      std::to_string(length_ + n), "raise the context limit or shorten the prompt"});
  const std::int64_t w = kv_heads_ * head_dim_;
  const std::int64_t off = length_ * w;
  for (std::int64_t i = 0; i < n * w; ++i) {
    if (fp8_) {
      // What an FP8 cache holds (vLLM reshape_and_cache_flash with kv_cache_dtype fp8): E4M3(k / k_scale),
      // dequantized in attention as code · k_scale.
      const std::uint8_t ck = f32_to_e4m3fn_sat(k[i] / k_scale_), cv = f32_to_e4m3fn_sat(v[i] / v_scale_);
      k8_[off + i] = ck;
      v8_[off + i] = cv;
      kf_[off + i] = e4m3fn_to_f32(ck) * k_scale_;
      vf_[off + i] = e4m3fn_to_f32(cv) * v_scale_;
    } else {
      kf_[off + i] = k[i];
      vf_[off + i] = v[i];
    }
  }
  length_ += n;
}

void attention_causal_cached(const float* q, std::int64_t n_new, std::int64_t heads, std::int64_t head_dim,
                             const KvCacheLayer& cache, float scale, float* out) {
  const std::int64_t kvh = cache.kv_heads_;
  if (kvh <= 0 || heads % kvh != 0 || head_dim != cache.head_dim_ || n_new > cache.length_)
    throw UsageError({"attention_causal_cached", "query/cache shapes disagree",
                      "heads multiple of kv_heads, same head_dim", std::to_string(heads) + "/" + std::to_string(kvh), ""});
  const std::int64_t group = heads / kvh;
  const std::int64_t past = cache.length_ - n_new;
  const std::int64_t kv_stride = kvh * head_dim;
  const float* K = cache.kf_.data();
  const float* V = cache.vf_.data();
  const bool par = n_new * heads * head_dim * cache.length_ > (1 << 20);
#pragma omp parallel if (par)
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic) collapse(2)
    for (std::int64_t i = 0; i < n_new; ++i) {
      for (std::int64_t h = 0; h < heads; ++h) {
        const std::int64_t g = h / group;
        attend_row(
            q + (i * heads + h) * head_dim, head_dim, past + i + 1, scale,
            [&](std::int64_t j) { return K + j * kv_stride + g * head_dim; },
            [&](std::int64_t j) { return V + j * kv_stride + g * head_dim; }, scores, out + (i * heads + h) * head_dim);
      }
    }
  }
}

}  // namespace vlq::ops
