// The Qwen2.5-VL vision tower on CPU: patch embedding (a Linear over 1176-wide patches), 2-D rotary,
// window attention with full-attention blocks (fullatt_block_indexes), the window reorder and its
// inverse, and the patch merger. Spec: ../shared/docs/qwen2_5_vl.md §3.2 (every step numbered there);
// transformers modeling_qwen2_5_vl.py (Qwen2_5_VisionTransformerPretrainedModel.get_window_index, forward).
#pragma once

#include <array>
#include <functional>
#include <cstdint>
#include <vector>

#include "vlq/formats/hf_config.h"
#include "vlq/model/observer.h"
#include "vlq/model/qwen2_5_vl_weights.h"
#include "vlq/ops/tensor.h"

namespace vlq::model {

using GridThw = std::array<std::int64_t, 3>;  // [grid_t, grid_h, grid_w] in patch units

// A vision tower implementation with vision_forward's contract (pixel_values [n, patch_dim] f32 host, the
// images' grids) returning the merged features [n / merge², out_hidden_size] f32: the CPU one below, or
// the CUDA one (model_cuda::Qwen2_5_VLCuda::encode_images) plugged into embed_prompt / the serving engine.
using VisionEncoder = std::function<ops::Matrix(const float* pixel_values, std::int64_t n, std::int64_t patch_dim,
                                                const std::vector<GridThw>& grid_thw)>;

// Window partition of the merged-token grid (§3.2 step 4–6), over all items in order.
struct WindowIndex {
  std::vector<std::int64_t> window_index;       // [N/unit] merged indices in window order (+ item offsets)
  std::vector<std::int64_t> cu_window_seqlens;  // patch units, starts at 0, duplicates removed
  std::vector<std::int64_t> cu_seqlens;         // per temporal frame (full-attention blocks), patch units
};
// Row (h) and column (w) of every patch in the processor's order (t, bh, bw, mh, mw; items concatenated),
// the inputs of the 2-D vision rotary (HF Qwen2_5_VisionTransformer.rot_pos_emb). Both [Σ t·h·w].
struct PatchPositions {
  std::vector<std::int64_t> h, w;
};
PatchPositions vision_patch_positions(const std::vector<GridThw>& grid_thw, std::int64_t merge_size);

// window_size in pixels (config), patch_size in pixels, merge_size = spatial_merge_size. Throws
// ConfigError when window_size is not a multiple of patch_size·merge_size, UsageError when a grid side
// is not a multiple of merge_size.
WindowIndex vision_window_index(const std::vector<GridThw>& grid_thw, std::int64_t window_size,
                                std::int64_t patch_size, std::int64_t merge_size);

// pixel_values [N, C·tps·ps·ps] f32 (processor order) with grid_thw (Σ t·h·w = N) → image features
// [N / merge², out_hidden_size] f32 in raster order of each item's merged grid, items concatenated.
// Named intermediates (observer): vision.patch_embed [N, Dv] (processor order), vision.block.{i}
// [N, Dv] (window order), vision.merger [N/4, D]. Throws UsageError on inconsistent sizes.
ops::Matrix vision_forward(const VisionWeights& w, const formats::VisionConfig& cfg, const float* pixel_values,
                           std::int64_t n_patches, std::int64_t patch_dim, const std::vector<GridThw>& grid_thw,
                           ForwardObserver* obs = nullptr);

}  // namespace vlq::model
