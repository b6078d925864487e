// M-RoPE position ids of a prompt (transformers' get_rope_index for images): text runs get equal
// positions in the t/h/w rows, each image block gets (t, h, w) coordinates of its merged grid offset by
// the running maximum; and rope_deltas for decoding. Spec: ../shared/docs/qwen2_5_vl.md §4.5–4.6.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vlq/model/vision_tower.h"

namespace vlq::model {

struct RopeIndex {
  std::vector<std::int64_t> positions;  // [3, S] row-major (rows t, h, w)
  std::int64_t rope_deltas = 0;         // max position + 1 − S; decode position of cache index c = c + rope_deltas
};

// input_ids [S]; grid_thw of the images in order of appearance. Each image is the run of image_token_id
// following a vision_start token. Throws UsageError when the number of image-pad tokens differs from
// Σ t·h·w / merge², or video tokens are present (videos are not supported yet: UnsupportedError).
RopeIndex get_rope_index(std::span<const std::int32_t> input_ids, const std::vector<GridThw>& grid_thw,
                         std::int64_t image_token_id, std::int64_t video_token_id, std::int64_t merge_size);

}  // namespace vlq::model
