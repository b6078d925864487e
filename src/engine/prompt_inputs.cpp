// PromptInputs: embeddings and M-RoPE positions of a serving sequence's tokens (see vlq/engine/prompt_inputs.h).
#include "vlq/engine/prompt_inputs.h"

#include <algorithm>

#include "vlq/core/error.h"
#include "vlq/model/rope_index.h"
#include "vlq/model/vision_tower.h"

namespace vlq::engine {

PromptInputs PromptInputs::make(const model::Qwen2_5_VL& model, const Sequence& seq) {
  PromptInputs in;
  const auto& cfg = model.config();
  std::vector<model::GridThw> grid;
  if (seq.images()) grid = seq.images()->images.grid_thw;
  const std::span<const std::int32_t> prompt(seq.tokens().data(), static_cast<std::size_t>(seq.prompt_len()));
  model::RopeIndex ri = model::get_rope_index(prompt, grid, cfg.tokens.image_token_id, cfg.tokens.video_token_id,
                                              cfg.vision.spatial_merge_size);
  in.rope_positions = std::move(ri.positions);
  in.rope_deltas = ri.rope_deltas;
  if (seq.images()) in.features.resize(seq.images()->spans.size());
  return in;
}

bool touches_images(const Sequence& seq, std::int64_t start, std::int64_t n) {
  if (!seq.images()) return false;
  for (const ImageSpan& s : seq.images()->spans)
    if (std::max(start, s.token_offset) < std::min(start + n, s.token_offset + s.token_count)) return true;
  return false;
}

ops::Matrix PromptInputs::embed(const model::Qwen2_5_VL& model_, const Sequence& seq, ImageCache& image_cache_,
                                std::int64_t start, std::int64_t n, const model::VisionEncoder* vision) {
  const auto& cfg = model_.config();
  const std::int64_t H = cfg.text.hidden_size;
  const auto& emb = model_.weights().lm.embedding();
  ops::Matrix e(n, H);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t id = seq.tokens()[static_cast<std::size_t>(start + i)];
    if (id < 0 || id >= cfg.text.vocab_size)
      throw UsageError({"input_ids", "token id outside the embedding", "0.." + std::to_string(cfg.text.vocab_size - 1),
                        std::to_string(id), "tokenizer and checkpoint do not belong together"});
    std::copy(emb.begin() + id * H, emb.begin() + (id + 1) * H, e.row(i));
  }
  for (const ImageRows& r : image_rows(model_, seq, image_cache_, start, n, vision))
    std::copy(r.data, r.data + r.rows * H, e.row(r.row));
  return e;
}

const ops::Matrix& PromptInputs::features_of(std::size_t k, const model::Qwen2_5_VL& model_, const Sequence& seq,
                                             ImageCache& image_cache_, const model::VisionEncoder* vision) {
  if (features[k]) return *features[k];
  const auto& cfg = model_.config();
  const PromptImages& pi = *seq.images();
  const ImageSpan& s = pi.spans[k];
  features[k] = image_cache_.get(s.digest);
  if (!features[k]) {
    const float* px = pi.images.pixel_values.data() + s.patch_offset * pi.images.patch_dim;
    auto f = std::make_shared<ops::Matrix>(
        vision ? (*vision)(px, s.n_patches, pi.images.patch_dim, {s.grid})
               : model::vision_forward(model_.weights().vision, cfg.vision, px, s.n_patches, pi.images.patch_dim,
                                       {s.grid}));
    if (f->rows != s.token_count || f->cols != cfg.text.hidden_size)
      throw UsageError({"image", "vision features do not match the image's <|image_pad|> run",
                        std::to_string(s.token_count) + "x" + std::to_string(cfg.text.hidden_size),
                        std::to_string(f->rows) + "x" + std::to_string(f->cols), "this is a bug"});
    image_cache_.put(s.digest, f);
    features[k] = std::move(f);
  }
  return *features[k];
}

std::vector<PromptInputs::ImageRows> PromptInputs::image_rows(const model::Qwen2_5_VL& model_, const Sequence& seq,
                                                              ImageCache& image_cache_, std::int64_t start, std::int64_t n,
                                                              const model::VisionEncoder* vision) {
  std::vector<ImageRows> out;
  if (!seq.images()) return out;
  const PromptImages& pi = *seq.images();
  for (std::size_t k = 0; k < pi.spans.size(); ++k) {
    const ImageSpan& s = pi.spans[k];
    const std::int64_t lo = std::max(start, s.token_offset), hi = std::min(start + n, s.token_offset + s.token_count);
    if (lo >= hi) continue;
    const ops::Matrix& f = features_of(k, model_, seq, image_cache_, vision);
    out.push_back({lo - start, hi - lo, f.row(lo - s.token_offset)});
  }
  return out;
}

std::vector<std::int64_t> PromptInputs::positions(const Sequence& seq, std::int64_t start, std::int64_t n) const {
  std::vector<std::int64_t> pos(static_cast<std::size_t>(3 * n));
  const std::int64_t P = seq.prompt_len();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t t = start + i;
    for (std::int64_t r = 0; r < 3; ++r)
      pos[static_cast<std::size_t>(r * n + i)] = t < P ? rope_positions[static_cast<std::size_t>(r * P + t)]
                                                       : t + rope_deltas;
  }
  return pos;
}

}  // namespace vlq::engine
