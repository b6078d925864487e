// Qwen2.5-VL model on CPU: loading, embedding merge, prefill and decode (see vlq/model/qwen2_5_vl.h).
#include "vlq/model/qwen2_5_vl.h"

#include <algorithm>
#include <string>

#include "vlq/core/error.h"
#include "vlq/model/rope_index.h"
#include "vlq/model/vision_tower.h"

namespace vlq::model {

Qwen2_5_VL Qwen2_5_VL::load(const std::filesystem::path& dir, const LoadOptions& options) {
  formats::HfModelFiles files = formats::load_hf_model_files(dir);
  if (!files.config)
    throw IoError({(dir / "config.json").string(), "model folder has no config.json", "config.json", "none",
                   "point --model at a Hugging Face checkpoint folder"});
  const io::Checkpoint ckpt = io::Checkpoint::open(dir);
  Qwen2_5_VLWeights w = load_qwen2_5_vl_weights(ckpt, *files.config, options.decode_weights);
  return Qwen2_5_VL(std::move(files), std::move(w), options);
}

Qwen2_5_VL::Qwen2_5_VL(formats::HfModelFiles files, Qwen2_5_VLWeights weights, LoadOptions options)
    : files_(std::move(files)), weights_(std::move(weights)), options_(options) {}

bool Qwen2_5_VL::fp8_kv_cache() const {
  if (options_.kv_cache == KvCacheMode::kFp8) return true;
  if (options_.kv_cache == KvCacheMode::kF32) return false;
  bool all = !weights_.lm.layers.empty();
  for (const auto& l : weights_.lm.layers) all = all && l.k_scale && l.v_scale;
  return all;
}

Session Qwen2_5_VL::new_session(std::int64_t capacity) const {
  const auto& tc = config().text;
  if (capacity > tc.max_position_embeddings)
    throw UsageError({"prompt", "prompt plus new tokens exceed the model's context",
                      "<= " + std::to_string(tc.max_position_embeddings) + " positions (max_position_embeddings)",
                      std::to_string(capacity), "shorten the prompt, use fewer/smaller images or fewer new tokens"});
  Session s;
  s.cache = make_kv_cache(weights_.lm, tc, capacity, options_.kv_cache);
  return s;
}

void Qwen2_5_VL::embed_tokens(std::span<const std::int32_t> ids, float* out) const {
  const auto& tc = config().text;
  const std::int64_t H = tc.hidden_size;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int32_t id = ids[i];
    if (id < 0 || id >= tc.vocab_size)
      throw UsageError({"input_ids", "token id outside the embedding", "0.." + std::to_string(tc.vocab_size - 1),
                        std::to_string(id), "tokenizer and checkpoint do not belong together"});
    std::copy(weights_.lm.embedding().begin() + id * H, weights_.lm.embedding().begin() + (id + 1) * H,
              out + static_cast<std::int64_t>(i) * H);
  }
}

ops::Matrix Qwen2_5_VL::embed_prompt(std::span<const std::int32_t> ids, const image::ProcessedImages* images,
                                     ForwardObserver* obs, const VisionEncoder* vision) const {
  const auto& tc = config().text;
  const std::int64_t S = static_cast<std::int64_t>(ids.size()), H = tc.hidden_size;
  ops::Matrix e(S, H);
  embed_tokens(ids, e.data.data());
  const std::int64_t image_id = config().tokens.image_token_id;
  const std::int64_t n_pad = std::count(ids.begin(), ids.end(), static_cast<std::int32_t>(image_id));
  std::int64_t n_feat = 0;
  if (images && images->n_patches > 0) {
    const ops::Matrix feats =
        vision ? (*vision)(images->pixel_values.data(), images->n_patches, images->patch_dim, images->grid_thw)
               : vision_forward(weights_.vision, config().vision, images->pixel_values.data(), images->n_patches,
                                images->patch_dim, images->grid_thw, obs);
    n_feat = feats.rows;
    if (n_feat != n_pad)
      throw UsageError({"input_ids", "number of <|image_pad|> tokens differs from the image features",
                        std::to_string(n_feat), std::to_string(n_pad),
                        "expand each <|image_pad|> to grid_t·grid_h·grid_w/4 copies"});
    std::int64_t r = 0;
    for (std::int64_t i = 0; i < S; ++i)
      if (ids[i] == image_id) {
        std::copy(feats.row(r), feats.row(r) + H, e.row(i));
        ++r;
      }
  } else if (n_pad != 0) {
    throw UsageError({"input_ids", "prompt has <|image_pad|> tokens but no image was given", "0",
                      std::to_string(n_pad), "pass the image(s) or remove the image parts"});
  }
  return e;
}

ops::Matrix Qwen2_5_VL::prefill(Session& s, std::span<const std::int32_t> ids, const image::ProcessedImages* images,
                                std::int64_t logits_last_k, ForwardObserver* obs) const {
  if (s.length != 0)
    throw UsageError({"prefill", "session already holds a prompt", "an empty session", std::to_string(s.length), ""});
  if (ids.empty()) throw UsageError({"prompt", "empty prompt", "at least one token", "0", ""});
  const std::int64_t S = static_cast<std::int64_t>(ids.size());
  if (S > s.capacity())
    throw UsageError({"prompt", "prompt longer than the context", "<= " + std::to_string(s.capacity()) + " tokens",
                      std::to_string(S) + " tokens", "shorten the prompt or use smaller images (max_pixels)"});
  std::vector<GridThw> grid;
  if (images) grid = images->grid_thw;
  const auto& cfg = config();
  const RopeIndex ri = get_rope_index(ids, grid, cfg.tokens.image_token_id, cfg.tokens.video_token_id,
                                      cfg.vision.spatial_merge_size);
  const ops::Matrix e = embed_prompt(ids, images, obs);
  const std::int64_t k = std::clamp<std::int64_t>(logits_last_k, 0, S);
  ops::Matrix logits = lm_forward(weights_.lm, cfg.text, e, ri.positions, s.cache, S - k, obs);
  s.length = S;
  s.rope_deltas = ri.rope_deltas;
  return logits;
}

ops::Matrix Qwen2_5_VL::decode(Session& s, std::int32_t id, ForwardObserver* obs) const {
  if (s.length >= s.capacity())
    throw UsageError({"decode", "KV cache full", "<= " + std::to_string(s.capacity()) + " positions",
                      std::to_string(s.length + 1), "raise --max-new-tokens capacity or shorten the prompt"});
  const auto& tc = config().text;
  if (id < 0 || id >= tc.vocab_size)
    throw UsageError({"decode", "token id outside the embedding", "0.." + std::to_string(tc.vocab_size - 1),
                      std::to_string(id), ""});
  ops::Matrix e(1, tc.hidden_size);
  std::copy(weights_.lm.embedding().begin() + static_cast<std::int64_t>(id) * tc.hidden_size,
            weights_.lm.embedding().begin() + (static_cast<std::int64_t>(id) + 1) * tc.hidden_size, e.row(0));
  const std::int64_t p = s.length + s.rope_deltas;
  const std::vector<std::int64_t> pos{p, p, p};
  ops::Matrix logits = lm_forward(weights_.lm, config().text, e, pos, s.cache, 0, obs);
  s.length += 1;
  return logits;
}

}  // namespace vlq::model
