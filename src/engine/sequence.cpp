// Sequence state and token-level stop rules of the serving engine (see vlq/engine/sequence.h).
#include "vlq/engine/sequence.h"

#include <algorithm>

#include "vlq/core/error.h"

namespace vlq::engine {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kError: return "error";
    case FinishReason::kNone: break;
  }
  return "";
}

Sequence::Sequence(SeqId id, std::vector<std::int32_t> prompt_ids, std::shared_ptr<const PromptImages> images,
                   SequenceParams params, std::int64_t max_model_len)
    : id_(id),
      tokens_(std::move(prompt_ids)),
      prompt_len_(static_cast<std::int64_t>(tokens_.size())),
      images_(std::move(images)),
      params_(std::move(params)),
      max_model_len_(max_model_len),
      rng_(params_.seed) {
  if (tokens_.empty()) throw UsageError({"prompt", "empty prompt", "at least one token", "0 tokens", ""});
  if (params_.stop.max_tokens < 1)
    throw UsageError({"max_tokens", "max_tokens must be at least 1", ">= 1", std::to_string(params_.stop.max_tokens),
                      ""});
}

std::shared_ptr<const PromptImages> make_prompt_images(image::ProcessedImages images, std::span<const std::int32_t> ids,
                                                       std::int64_t image_token_id, std::int64_t merge_size,
                                                       std::vector<ImageDigest> digests) {
  auto out = std::make_shared<PromptImages>();
  const std::size_t n_images = images.grid_thw.size();
  if (digests.size() != n_images)
    throw UsageError({"images", "one digest per image", std::to_string(n_images), std::to_string(digests.size()),
                      "this is a bug in the caller"});
  std::vector<std::int64_t> pads;
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == image_token_id) pads.push_back(static_cast<std::int64_t>(i));
  std::size_t next = 0;
  std::int64_t patch = 0;
  for (std::size_t k = 0; k < n_images; ++k) {
    ImageSpan s;
    s.grid = images.grid_thw[k];
    s.n_patches = s.grid[0] * s.grid[1] * s.grid[2];
    s.token_count = image::image_token_count(s.grid, merge_size);
    s.patch_offset = patch;
    s.digest = digests[k];
    patch += s.n_patches;
    if (next + static_cast<std::size_t>(s.token_count) > pads.size())
      throw UsageError({"input_ids", "fewer <|image_pad|> tokens than the images need", "", std::to_string(pads.size()),
                        "expand each image placeholder (PromptBuilder::build)"});
    s.token_offset = pads[next];
    if (pads[next + static_cast<std::size_t>(s.token_count) - 1] != s.token_offset + s.token_count - 1)
      throw UsageError({"input_ids", "an image's <|image_pad|> tokens are not contiguous", "", "", ""});
    next += static_cast<std::size_t>(s.token_count);
    out->spans.push_back(s);
  }
  if (next != pads.size() || patch != images.n_patches)
    throw UsageError({"input_ids", "number of <|image_pad|> tokens differs from the images",
                      std::to_string(next), std::to_string(pads.size()), ""});
  out->images = std::move(images);
  return out;
}

FinishReason Sequence::append_token(std::int32_t id) {
  tokens_.push_back(id);
  const auto& st = params_.stop;
  auto in = [id](const std::vector<std::int32_t>& v) { return std::find(v.begin(), v.end(), id) != v.end(); };
  if (!st.ignore_eos && in(st.eos_ids)) return FinishReason::kStop;
  if (in(st.stop_token_ids)) return FinishReason::kStop;
  if (num_output_tokens() >= st.max_tokens || num_tokens() >= max_model_len_) return FinishReason::kLength;
  return FinishReason::kNone;
}

}  // namespace vlq::engine
