// Qwen2.5-VL vision tower on CPU (see vlq/model/vision_tower.h; numbered steps follow qwen2_5_vl.md §3.2).
#include "vlq/model/vision_tower.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "vlq/core/error.h"
#include "vlq/ops/activation.h"
#include "vlq/ops/attention.h"
#include "vlq/ops/linear.h"
#include "vlq/ops/norm.h"
#include "vlq/ops/rotary.h"

namespace vlq::model {

namespace {
constexpr float kVisionEps = 1e-6f;  // hard-coded in HF for norm1/norm2/ln_q

void run_linear(const ops::LinearWeights& lin, const ops::Matrix& x, ops::Matrix& y, ForwardObserver* obs) {
  if (obs) obs->on_linear_input(lin.name, x.data.data(), x.rows, x.cols);
  y = ops::Matrix(x.rows, lin.out_features);
  ops::linear_forward(lin, x.data.data(), x.rows, x.cols, y.data.data());
}
}  // namespace

PatchPositions vision_patch_positions(const std::vector<GridThw>& grid_thw, std::int64_t ms) {
  PatchPositions p;
  for (const GridThw& g : grid_thw)
    for (std::int64_t t = 0; t < g[0]; ++t)
      for (std::int64_t bh = 0; bh < g[1] / ms; ++bh)
        for (std::int64_t bw = 0; bw < g[2] / ms; ++bw)
          for (std::int64_t mh = 0; mh < ms; ++mh)
            for (std::int64_t mw = 0; mw < ms; ++mw) {
              p.h.push_back(bh * ms + mh);
              p.w.push_back(bw * ms + mw);
            }
  return p;
}

WindowIndex vision_window_index(const std::vector<GridThw>& grid_thw, std::int64_t window_size,
                                std::int64_t patch_size, std::int64_t merge_size) {
  if (window_size % (patch_size * merge_size) != 0)
    throw ConfigError({"vision_config.window_size", "window size must be a multiple of patch_size × spatial_merge_size",
                       "multiple of " + std::to_string(patch_size * merge_size), std::to_string(window_size), ""});
  const std::int64_t vws = window_size / merge_size / patch_size;
  const std::int64_t unit = merge_size * merge_size;
  WindowIndex wi;
  wi.cu_window_seqlens.push_back(0);
  wi.cu_seqlens.push_back(0);
  std::int64_t offset = 0;
  for (const GridThw& g : grid_thw) {
    const std::int64_t t = g[0], h = g[1], w = g[2];
    if (h % merge_size || w % merge_size || t <= 0 || h <= 0 || w <= 0)
      throw UsageError({"image_grid_thw", "grid sides must be positive multiples of spatial_merge_size",
                        "multiple of " + std::to_string(merge_size),
                        std::to_string(t) + "x" + std::to_string(h) + "x" + std::to_string(w), ""});
    const std::int64_t lh = h / merge_size, lw = w / merge_size;
    const std::int64_t pad_h = vws - lh % vws, pad_w = vws - lw % vws;  // = vws when divisible (HF quirk)
    const std::int64_t nwh = (lh + pad_h) / vws, nww = (lw + pad_w) / vws;
    for (std::int64_t ti = 0; ti < t; ++ti) {
      for (std::int64_t wy = 0; wy < nwh; ++wy) {
        for (std::int64_t wx = 0; wx < nww; ++wx) {
          std::int64_t count = 0;
          for (std::int64_t y = wy * vws; y < (wy + 1) * vws; ++y)
            for (std::int64_t x = wx * vws; x < (wx + 1) * vws; ++x)
              if (y < lh && x < lw) {
                wi.window_index.push_back(offset + ti * lh * lw + y * lw + x);
                ++count;
              }
          const std::int64_t next = wi.cu_window_seqlens.back() + count * unit;
          if (next != wi.cu_window_seqlens.back()) wi.cu_window_seqlens.push_back(next);  // unique_consecutive
        }
      }
      wi.cu_seqlens.push_back(wi.cu_seqlens.back() + h * w);
    }
    offset += t * lh * lw;
  }
  return wi;
}

ops::Matrix vision_forward(const VisionWeights& w, const formats::VisionConfig& cfg, const float* pixel_values,
                           std::int64_t n, std::int64_t patch_dim, const std::vector<GridThw>& grid_thw,
                           ForwardObserver* obs) {
  const std::int64_t ms = cfg.spatial_merge_size, unit = ms * ms;
  const std::int64_t Dv = cfg.hidden_size, heads = cfg.num_heads, hd = Dv / heads;
  std::int64_t total = 0;
  for (const GridThw& g : grid_thw) total += g[0] * g[1] * g[2];
  if (total != n || patch_dim != w.patch_embed.in_features)
    throw UsageError({"pixel_values", "pixel_values do not match image_grid_thw / the patch embedding",
                      std::to_string(total) + " x " + std::to_string(w.patch_embed.in_features),
                      std::to_string(n) + " x " + std::to_string(patch_dim), ""});
  const bool dump = obs && obs->wants_tensors();
  // 2. patch embedding
  ops::Matrix px(n, patch_dim);
  std::copy(pixel_values, pixel_values + n * patch_dim, px.data.begin());
  ops::Matrix x;
  run_linear(w.patch_embed, px, x, obs);
  if (dump) obs->on_tensor("vision.patch_embed", x.data.data(), x.rows, x.cols);
  // 3. rotary angles per patch (processor order: t, bh, bw, mh, mw)
  const PatchPositions pp = vision_patch_positions(grid_thw, ms);
  const std::vector<float> ang0 = ops::vision_rotary_angles(pp.h, pp.w, hd, 10000.0);
  // 4–5. window index and reorder (groups of `unit` rows)
  const WindowIndex wi = vision_window_index(grid_thw, cfg.window_size, cfg.patch_size, ms);
  const std::int64_t half = hd / 2;
  ops::Matrix xr(n, Dv);
  std::vector<float> ang(static_cast<std::size_t>(n * half));
  for (std::size_t k = 0; k < wi.window_index.size(); ++k) {
    const std::int64_t src = wi.window_index[k];
    for (std::int64_t u = 0; u < unit; ++u) {
      std::copy(x.row(src * unit + u), x.row(src * unit + u) + Dv, xr.row(static_cast<std::int64_t>(k) * unit + u));
      std::copy(ang0.begin() + (src * unit + u) * half, ang0.begin() + (src * unit + u + 1) * half,
                ang.begin() + (static_cast<std::int64_t>(k) * unit + u) * half);
    }
  }
  x = std::move(xr);
  // 7. blocks
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  ops::Matrix h(n, Dv), qkv, attn(n, Dv), o, g, u, d;
  std::vector<float> q(static_cast<std::size_t>(n * Dv)), k(q.size()), v(q.size());
  for (std::size_t bi = 0; bi < w.blocks.size(); ++bi) {
    const VisionBlockWeights& b = w.blocks[bi];
    const std::string prefix = "model.visual.blocks." + std::to_string(bi);
    const bool full = std::find(cfg.fullatt_block_indexes.begin(), cfg.fullatt_block_indexes.end(),
                                static_cast<std::int64_t>(bi)) != cfg.fullatt_block_indexes.end();
    ops::rms_norm(x.data.data(), b.norm1.data(), n, Dv, kVisionEps, h.data.data());
    run_linear(b.qkv, h, qkv, obs);
    for (std::int64_t r = 0; r < n; ++r) {
      std::copy(qkv.row(r), qkv.row(r) + Dv, q.begin() + r * Dv);
      std::copy(qkv.row(r) + Dv, qkv.row(r) + 2 * Dv, k.begin() + r * Dv);
      std::copy(qkv.row(r) + 2 * Dv, qkv.row(r) + 3 * Dv, v.begin() + r * Dv);
    }
    ops::apply_rotary_inplace(q.data(), n, heads, hd, ang.data());
    ops::apply_rotary_inplace(k.data(), n, heads, hd, ang.data());
    if (obs) obs->on_kv(prefix + ".attn", k.data(), v.data(), n, Dv);
    ops::attention_segments(q.data(), k.data(), v.data(), n, heads, hd, full ? wi.cu_seqlens : wi.cu_window_seqlens,
                            scale, attn.data.data());
    run_linear(b.proj, attn, o, obs);
    for (std::int64_t i = 0; i < n * Dv; ++i) x.data[i] += o.data[i];
    ops::rms_norm(x.data.data(), b.norm2.data(), n, Dv, kVisionEps, h.data.data());
    run_linear(b.gate, h, g, obs);
    run_linear(b.up, h, u, obs);
    ops::swiglu_inplace(g.data.data(), u.data.data(), g.numel());
    run_linear(b.down, g, d, obs);
    for (std::int64_t i = 0; i < n * Dv; ++i) x.data[i] += d.data[i];
    if (dump) obs->on_tensor("vision.block." + std::to_string(bi), x.data.data(), x.rows, x.cols);
  }
  // 8. merger: ln_q per patch row, groups of `unit` rows → [N/unit, unit·Dv], MLP with erf GELU
  ops::rms_norm(x.data.data(), w.ln_q.data(), n, Dv, kVisionEps, h.data.data());
  h.rows = n / unit;
  h.cols = unit * Dv;
  ops::Matrix m0, m2;
  run_linear(w.merger0, h, m0, obs);
  ops::gelu_erf_inplace(m0.data.data(), m0.numel());
  run_linear(w.merger2, m0, m2, obs);
  // 9. undo the window permutation: final[window_index[k]] = out[k]
  ops::Matrix out(m2.rows, m2.cols);
  for (std::size_t kk = 0; kk < wi.window_index.size(); ++kk)
    std::copy(m2.row(static_cast<std::int64_t>(kk)), m2.row(static_cast<std::int64_t>(kk)) + m2.cols,
              out.row(wi.window_index[kk]));
  if (dump) obs->on_tensor("vision.merger", out.data.data(), out.rows, out.cols);
  return out;
}

}  // namespace vlq::model
