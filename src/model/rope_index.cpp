// get_rope_index for image prompts (see vlq/model/rope_index.h; qwen2_5_vl.md §4.5).
#include "vlq/model/rope_index.h"

#include <algorithm>
#include <string>

#include "vlq/core/error.h"

namespace vlq::model {

RopeIndex get_rope_index(std::span<const std::int32_t> ids, const std::vector<GridThw>& grid_thw,
                         std::int64_t image_token_id, std::int64_t video_token_id, std::int64_t merge_size) {
  const std::int64_t S = static_cast<std::int64_t>(ids.size());
  RopeIndex r;
  r.positions.assign(static_cast<std::size_t>(3 * S), 0);
  for (std::int32_t id : ids)
    if (id == video_token_id)
      throw UnsupportedError({"input_ids", "video inputs are not supported yet", "images and text",
                              "a <|video_pad|> token", "pass frames as images"});
  std::int64_t s = 0, next_pos = 0;
  std::size_t item = 0;
  auto put = [&](std::int64_t i, std::int64_t t, std::int64_t h, std::int64_t w) {
    r.positions[i] = t;
    r.positions[S + i] = h;
    r.positions[2 * S + i] = w;
  };
  while (s < S) {
    if (ids[s] != image_token_id) {
      put(s, next_pos, next_pos, next_pos);
      ++next_pos;
      ++s;
      continue;
    }
    if (item >= grid_thw.size())
      throw UsageError({"input_ids", "more image blocks than images", std::to_string(grid_thw.size()) + " image(s)",
                        "another run of <|image_pad|>", "each image needs its own <|vision_start|><|image_pad|>... block"});
    const GridThw& g = grid_thw[item++];
    const std::int64_t T = g[0], Hm = g[1] / merge_size, Wm = g[2] / merge_size;
    const std::int64_t count = T * Hm * Wm;
    if (s + count > S || std::any_of(ids.begin() + s, ids.begin() + s + count,
                                     [&](std::int32_t id) { return id != image_token_id; }))
      throw UsageError({"input_ids", "image-pad run shorter than the image's token count",
                        std::to_string(count) + " tokens", "fewer", "expand <|image_pad|> to t·h·w/4 copies"});
    const std::int64_t base = next_pos;
    std::int64_t mx = base - 1;
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t y = 0; y < Hm; ++y)
        for (std::int64_t x = 0; x < Wm; ++x) {
          put(s, base + 0, base + y, base + x);  // images: tidx(t) = 0
          mx = std::max({mx, base + y, base + x});
          ++s;
        }
    next_pos = mx + 1;
  }
  if (item != grid_thw.size())
    throw UsageError({"input_ids", "fewer image-pad runs than images", std::to_string(grid_thw.size()),
                      std::to_string(item), "each image needs <|vision_start|><|image_pad|><|vision_end|> in the prompt"});
  r.rope_deltas = next_pos - S;
  return r;
}

}  // namespace vlq::model
