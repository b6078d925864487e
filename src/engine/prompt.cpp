// Prompt building: template → image-pad expansion → tokens, images → pixel_values (see vlq/engine/prompt.h).
#include "vlq/engine/prompt.h"

#include "vlq/core/error.h"

namespace vlq::engine {

Prompt PromptBuilder::build(const nlohmann::ordered_json& messages, std::span<const image::RgbImage> images,
                            bool add_generation_prompt, bool defer_pixels) const {
  Prompt p;
  text::ChatTemplateOptions opt;
  opt.add_generation_prompt = add_generation_prompt;
  p.text = chat_template->render(messages, opt);
  const std::int64_t image_id = config->tokens.image_token_id;
  const auto pad = tokenizer->id_to_token(static_cast<std::int32_t>(image_id));
  if (!pad)
    throw ConfigError({tokenizer->origin(), "tokenizer has no token for image_token_id", "a token with id " +
                       std::to_string(image_id), "none", "tokenizer.json and config.json do not belong together"});
  const std::string pad_tok(*pad);
  std::vector<std::size_t> at;
  for (std::size_t pos = p.text.find(pad_tok); pos != std::string::npos; pos = p.text.find(pad_tok, pos + pad_tok.size()))
    at.push_back(pos);
  if (at.size() != images.size())
    throw UsageError({"messages", "number of images differs from the image placeholders in the prompt",
                      std::to_string(images.size()) + " (images given)", std::to_string(at.size()) + " placeholder(s)",
                      "give one image per {\"type\": \"image\"} part"});
  if (!images.empty() && defer_pixels) {  // the same checks and grid as preprocess_images, no pixel rows
    const image::RawImages raw = image::plan_images(images, image_params);
    p.images.grid_thw = raw.grid_thw;
    p.images.n_patches = raw.n_patches;
    p.images.patch_dim = raw.patch_dim;
    for (const auto& plan : raw.plans) p.images.resized.push_back({plan.out_height, plan.out_width});
    p.raw_images.assign(images.begin(), images.end());
    p.image_params = image_params;
  } else if (!images.empty()) {
    p.images = image::preprocess_images(images, image_params);
  }
  std::string expanded;
  std::size_t prev = 0;
  for (std::size_t i = 0; i < at.size(); ++i) {
    expanded.append(p.text, prev, at[i] - prev);
    const std::int64_t n = image::image_token_count(p.images.grid_thw[i], image_params.merge_size);
    for (std::int64_t k = 0; k < n; ++k) expanded += pad_tok;
    p.image_tokens += n;
    prev = at[i] + pad_tok.size();
  }
  expanded.append(p.text, prev, std::string::npos);
  p.ids = tokenizer->encode(expanded, true);
  return p;
}

Prompt PromptBuilder::build_raw(const std::string& text) const {
  Prompt p;
  p.text = text;
  p.ids = tokenizer->encode(text, true);
  return p;
}

}  // namespace vlq::engine
