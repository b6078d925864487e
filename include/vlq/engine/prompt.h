// From chat messages and decoded images to what the model consumes: the prompt rendered with the model's
// chat template, each <|image_pad|> expanded to grid_t·grid_h·grid_w / merge² copies, tokenized (special
// tokens recognised), and the images preprocessed into pixel_values / image_grid_thw.
// Spec: ../shared/docs/qwen2_5_vl.md §2.5 (token count), §5 (template), transformers
// processing_qwen2_5_vl.py (Qwen2_5_VLProcessor.__call__ expansion).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/text/chat_template.h"
#include "vlq/formats/hf_config.h"
#include "vlq/image/image.h"
#include "vlq/image/image_processor.h"
#include "vlq/text/tokenizer.h"

namespace vlq::engine {

struct Prompt {
  std::string text;                    // rendered template, before expansion
  std::vector<std::int32_t> ids;       // [S] after expansion and tokenization
  image::ProcessedImages images;       // pixel_values [N, 1176], grid_thw [n_images, 3]
  std::int64_t image_tokens = 0;       // Σ image token counts
  // Set instead of images.pixel_values when the prompt was built with defer_pixels (for a device that
  // preprocesses images itself): the decoded images and the processor parameters; `images` then holds
  // grid_thw / n_patches / patch_dim only. engine::generate hands them to DeviceModel::prefill_raw, or
  // preprocesses them on the CPU for a model that cannot (same pixels either way).
  std::vector<image::RgbImage> raw_images;
  image::ImageProcessorParams image_params;
  bool deferred_pixels() const { return !raw_images.empty(); }
};

// Everything besides weights that turns messages into a Prompt.
struct PromptBuilder {
  const formats::ModelConfig* config = nullptr;
  const text::ChatTemplate* chat_template = nullptr;
  const text::Tokenizer* tokenizer = nullptr;
  image::ImageProcessorParams image_params;

  // messages: HF chat format ([{"role", "content": string | [{"type":"image"}, {"type":"text","text"}]}]);
  // images: the decoded images of the image parts, in order. Throws UsageError when the number of
  // image placeholders in the rendered prompt differs from images.size(), ConfigError when the tokenizer
  // lacks the image-pad token, and what the template / image processor throw.
  // defer_pixels: keep the images (Prompt::raw_images) instead of preprocessing them here.
  Prompt build(const nlohmann::ordered_json& messages, std::span<const image::RgbImage> images,
               bool add_generation_prompt = true, bool defer_pixels = false) const;
  // Raw text (no template), tokenized with special tokens recognised; no images.
  Prompt build_raw(const std::string& text) const;
};

}  // namespace vlq::engine
