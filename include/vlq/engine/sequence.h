// One request's generation state in the serving engine: its tokens (prompt, then output), how many of
// them are in the KV cache, its KV block table, sampling parameters, stop rules and timestamps.
// Spec: nano-vllm nanovllm/engine/sequence.py (the split by noun, see /work/shared/docs/style-anchors.md
// §5); vLLM v1's "num_computed_tokens" view, where prefill chunks and decode steps are the same thing:
// each step computes tokens [num_computed, num_computed + n) of the sequence.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "vlq/image/image_processor.h"
#include "vlq/ops/sampling.h"

namespace vlq::engine {

using SeqId = std::int64_t;
// SHA-256 of an image's encoded bytes (see image_cache.h).
using ImageDigest = std::array<std::uint8_t, 32>;

enum class SequenceStatus { kWaiting, kRunning, kFinished };

// Why a sequence stopped (OpenAI finish_reason: kStop → "stop", kLength → "length").
enum class FinishReason {
  kNone,
  kStop,    // an EOS id, a stop token id or a stop string
  kLength,  // max_tokens new tokens, or the sequence reached max_model_len
  kAbort,   // cancelled (client went away, server shutting down)
  kError,   // the model runner threw (message in Sequence::error)
};
const char* finish_reason_name(FinishReason r);  // "stop", "length", "abort", "error", "" for kNone

// Token-level stop rules of one sequence. Stop strings are matched on the text (detokenizer.h).
struct StopRules {
  std::vector<std::int32_t> eos_ids;        // generation_config eos_token_id; ignored when ignore_eos
  std::vector<std::int32_t> stop_token_ids; // extra stop ids (vLLM's stop_token_ids)
  std::vector<std::string> stop_strings;    // OpenAI `stop`; the matched string is not returned
  bool ignore_eos = false;
  std::int64_t max_tokens = 16;             // most new tokens (>= 1)
};

struct SequenceParams {
  ops::SamplingParams sampling;  // temperature 0 → greedy
  std::uint64_t seed = 0;
  StopRules stop;
};

// Where one image sits in the prompt: its run of <|image_pad|> tokens and its patches in pixel_values.
struct ImageSpan {
  std::int64_t token_offset = 0;  // first pad token's index in the prompt
  std::int64_t token_count = 0;   // grid_t·grid_h·grid_w / merge²
  std::int64_t patch_offset = 0;  // first row in ProcessedImages::pixel_values
  std::int64_t n_patches = 0;     // grid_t·grid_h·grid_w
  std::array<std::int64_t, 3> grid{};
  ImageDigest digest{};           // of the encoded image bytes: the image-cache and prefix-cache key
};

// The model inputs of a prompt besides its ids, shared (read-only) between the sequence and the runner.
struct PromptImages {
  image::ProcessedImages images;  // pixel_values [n_patches, patch_dim], grid_thw [n_images, 3]
  std::vector<ImageSpan> spans;   // one per image, in prompt order
};

// Builds the PromptImages of a prompt: `ids` are the expanded prompt ids, images their preprocessed
// images (grid_thw in prompt order), digests one per image (sha256 of its encoded bytes). The k-th image
// takes the next grid_t·grid_h·grid_w/merge² <|image_pad|> positions, which must be contiguous. Throws
// UsageError when the pad count, image count or digest count disagree.
std::shared_ptr<const PromptImages> make_prompt_images(image::ProcessedImages images, std::span<const std::int32_t> ids,
                                                       std::int64_t image_token_id, std::int64_t merge_size,
                                                       std::vector<ImageDigest> digests);

class Sequence {
 public:
  using Clock = std::chrono::steady_clock;
  // prompt_ids non-empty. images may be null (text-only). max_model_len bounds prompt + output.
  // Throws UsageError when the prompt is empty or max_tokens < 1.
  Sequence(SeqId id, std::vector<std::int32_t> prompt_ids, std::shared_ptr<const PromptImages> images,
           SequenceParams params, std::int64_t max_model_len);

  SeqId id() const { return id_; }
  SequenceStatus status = SequenceStatus::kWaiting;
  FinishReason finish_reason = FinishReason::kNone;
  std::string error;  // kError: the message

  // All tokens: prompt, then output. [num_tokens()]
  const std::vector<std::int32_t>& tokens() const { return tokens_; }
  std::int64_t num_tokens() const { return static_cast<std::int64_t>(tokens_.size()); }
  std::int64_t prompt_len() const { return prompt_len_; }
  std::int64_t num_output_tokens() const { return num_tokens() - prompt_len_; }
  const std::shared_ptr<const PromptImages>& images() const { return images_; }
  const SequenceParams& params() const { return params_; }
  std::int64_t max_model_len() const { return max_model_len_; }

  // Tokens whose K/V are in the cache; the next step computes from here. Reset to 0 on preemption.
  std::int64_t num_computed_tokens = 0;
  // Of those, how many came from the prefix cache at the last admission (statistic; runner restores them).
  std::int64_t num_cached_tokens = 0;
  // KV block ids, block i holding positions [i·block_size, (i+1)·block_size). Owned by the BlockManager.
  std::vector<std::int32_t> block_table;
  // Blocks at the start of block_table whose hash is registered (or that came from the prefix cache).
  std::int64_t num_hashed_blocks = 0;
  // uid of the last hashed block (0 = none): the parent key of the next one (block_manager.cpp).
  std::uint64_t last_block_uid = 0;
  std::int64_t num_preemptions = 0;

  // Tokens still to compute before the next token can be sampled: num_tokens − num_computed_tokens.
  std::int64_t num_pending_tokens() const { return num_tokens() - num_computed_tokens; }

  // Appends a sampled token and applies the token-level stop rules: kStop when it is an EOS id (unless
  // ignore_eos) or a stop token id; kLength when max_tokens outputs exist or num_tokens reaches
  // max_model_len; else kNone. Does not change status (the engine finishes the sequence).
  FinishReason append_token(std::int32_t id);

  std::mt19937_64& rng() { return rng_; }

  // Timestamps (steady clock) for TTFT / inter-token latency.
  Clock::time_point arrival_time = Clock::now();
  Clock::time_point first_token_time{};
  Clock::time_point last_token_time{};

 private:
  SeqId id_;
  std::vector<std::int32_t> tokens_;
  std::int64_t prompt_len_;
  std::shared_ptr<const PromptImages> images_;
  SequenceParams params_;
  std::int64_t max_model_len_;
  std::mt19937_64 rng_;
};

}  // namespace vlq::engine
