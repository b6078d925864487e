// Qwen2.5-VL language model on CPU (see vlq/model/language_model.h; qwen2_5_vl.md §4.3–4.4).
#include "vlq/model/language_model.h"

#include <cmath>
#include <string>

#include "vlq/core/error.h"
#include "vlq/ops/activation.h"
#include "vlq/ops/linear.h"
#include "vlq/ops/norm.h"
#include "vlq/ops/rotary.h"

namespace vlq::model {

namespace {
void run_linear(const ops::LinearWeights& lin, const float* x, std::int64_t rows, std::int64_t cols, ops::Matrix& y,
                ForwardObserver* obs) {
  if (obs) obs->on_linear_input(lin.name, x, rows, cols);
  y = ops::Matrix(rows, lin.out_features);
  ops::linear_forward(lin, x, rows, cols, y.data.data());
}
}  // namespace

std::vector<ops::KvCacheLayer> make_kv_cache(const LanguageWeights& w, const formats::TextConfig& cfg, std::int64_t capacity,
                                             KvCacheMode mode) {
  bool all_scaled = !w.layers.empty();
  for (const auto& l : w.layers) all_scaled = all_scaled && l.k_scale && l.v_scale;
  const bool fp8 = mode == KvCacheMode::kFp8 || (mode == KvCacheMode::kAuto && all_scaled);
  std::vector<ops::KvCacheLayer> cache;
  cache.reserve(w.layers.size());
  for (const auto& l : w.layers)
    cache.emplace_back(capacity, cfg.num_key_value_heads, cfg.head_dim, fp8, l.k_scale.value_or(1.0f),
                       l.v_scale.value_or(1.0f));
  return cache;
}

ops::Matrix lm_forward(const LanguageWeights& w, const formats::TextConfig& cfg, const ops::Matrix& embeds,
                       const std::vector<std::int64_t>& positions, std::vector<ops::KvCacheLayer>& cache,
                       std::int64_t logits_from, ForwardObserver* obs) {
  const std::int64_t S = embeds.rows, H = cfg.hidden_size, hd = cfg.head_dim;
  const std::int64_t heads = cfg.num_attention_heads, kvh = cfg.num_key_value_heads;
  if (embeds.cols != H || static_cast<std::int64_t>(positions.size()) != 3 * S ||
      cache.size() != w.layers.size())
    throw UsageError({"lm_forward", "inputs do not match the model", "embeds [S, H], positions [3, S]",
                      std::to_string(embeds.rows) + "x" + std::to_string(embeds.cols), "this is a bug in the caller"});
  const bool dump = obs && obs->wants_tensors();
  const float eps = static_cast<float>(cfg.rms_norm_eps);
  const std::vector<float> ang = ops::mrope_angles(positions, S, cfg.mrope_section, hd, cfg.rope_theta);
  ops::Matrix x = embeds;
  if (dump) obs->on_tensor("lm.embeds", x.data.data(), x.rows, x.cols);
  ops::Matrix h(S, H), q, k, v, attn(S, heads * hd), o, g, u, d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (std::size_t li = 0; li < w.layers.size(); ++li) {
    const DecoderLayerWeights& L = w.layers[li];
    ops::rms_norm(x.data.data(), L.input_norm.data(), S, H, eps, h.data.data());
    run_linear(L.q, h.data.data(), S, H, q, obs);
    run_linear(L.k, h.data.data(), S, H, k, obs);
    run_linear(L.v, h.data.data(), S, H, v, obs);
    ops::apply_rotary_inplace(q.data.data(), S, heads, hd, ang.data());
    ops::apply_rotary_inplace(k.data.data(), S, kvh, hd, ang.data());
    if (obs) obs->on_kv(w.layers[li].q.name.substr(0, w.layers[li].q.name.rfind('.')), k.data.data(), v.data.data(), S,
                        kvh * hd);
    cache[li].append(k.data.data(), v.data.data(), S);
    ops::attention_causal_cached(q.data.data(), S, heads, hd, cache[li], scale, attn.data.data());
    run_linear(L.o, attn.data.data(), S, heads * hd, o, obs);
    for (std::int64_t i = 0; i < S * H; ++i) x.data[i] += o.data[i];
    ops::rms_norm(x.data.data(), L.post_norm.data(), S, H, eps, h.data.data());
    run_linear(L.gate, h.data.data(), S, H, g, obs);
    run_linear(L.up, h.data.data(), S, H, u, obs);
    ops::swiglu_inplace(g.data.data(), u.data.data(), g.numel());
    run_linear(L.down, g.data.data(), S, g.cols, d, obs);
    for (std::int64_t i = 0; i < S * H; ++i) x.data[i] += d.data[i];
    if (dump) obs->on_tensor("lm.layer." + std::to_string(li), x.data.data(), x.rows, x.cols);
  }
  const std::int64_t from = std::max<std::int64_t>(0, std::min(logits_from, S));
  const std::int64_t rows = S - from;
  if (dump) {
    ops::rms_norm(x.data.data(), w.norm.data(), S, H, eps, h.data.data());
    obs->on_tensor("lm.norm", h.data.data(), S, H);
  }
  if (rows == 0) return ops::Matrix(0, w.lm_head.out_features);
  ops::Matrix hn(rows, H);
  ops::rms_norm(x.row(from), w.norm.data(), rows, H, eps, hn.data.data());
  ops::Matrix logits;
  run_linear(w.lm_head, hn.data.data(), rows, H, logits, obs);
  return logits;
}

}  // namespace vlq::model
