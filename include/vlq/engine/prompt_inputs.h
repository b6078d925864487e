// What a model runner feeds the decoder for tokens [start, start + n) of a serving sequence, whatever the
// device: their embeddings (token rows + the vision tower's features at <|image_pad|> runs, through the
// ImageCache) and their M-RoPE positions (the prompt's get_rope_index, then position + rope_deltas).
// Shared by CpuModelRunner and CudaModelRunner. Spec: ../shared/docs/qwen2_5_vl.md §4.2 (embedding merge),
// §4.5–4.6 (positions, rope_deltas).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "vlq/engine/image_cache.h"
#include "vlq/engine/sequence.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/ops/tensor.h"

namespace vlq::engine {

struct PromptInputs {
  std::vector<std::int64_t> rope_positions;  // [3, prompt_len] row-major (t, h, w)
  std::int64_t rope_deltas = 0;
  std::vector<std::shared_ptr<const ops::Matrix>> features;  // per image span [tokens, H], null until needed

  // get_rope_index over the sequence's prompt. Throws UsageError (image-pad count vs grid_thw).
  static PromptInputs make(const model::Qwen2_5_VL& model, const Sequence& seq);
  // [n, H] f32 embeddings of tokens [start, start + n). Throws UsageError for ids outside the vocabulary.
  // `vision`: the tower to run on a cache miss (null = the CPU one).
  ops::Matrix embed(const model::Qwen2_5_VL& model, const Sequence& seq, ImageCache& cache, std::int64_t start,
                    std::int64_t n, const model::VisionEncoder* vision = nullptr);
  // The image rows among tokens [start, start + n): one entry per image span overlapping them, `row` its first
  // row within the chunk (0 = token start), `rows` how many, `data` its features' rows ([rows, H] f32 host, owned
  // by `features` / the cache: valid while this object lives). What a device runner copies over the rows of its
  // own token embedding (the text rows never go through the host). Same encode-on-miss and cache as embed.
  struct ImageRows {
    std::int64_t row = 0, rows = 0;
    const float* data = nullptr;
  };
  std::vector<ImageRows> image_rows(const model::Qwen2_5_VL& model, const Sequence& seq, ImageCache& cache,
                                    std::int64_t start, std::int64_t n, const model::VisionEncoder* vision = nullptr);
  // [3, n] positions of tokens [start, start + n) (row-major: the t row, then h, then w).
  std::vector<std::int64_t> positions(const Sequence& seq, std::int64_t start, std::int64_t n) const;

 private:
  // features[k], encoded (or taken from the cache) on first use.
  const ops::Matrix& features_of(std::size_t k, const model::Qwen2_5_VL& model, const Sequence& seq, ImageCache& cache,
                                 const model::VisionEncoder* vision);
};

// Whether tokens [start, start + n) include an <|image_pad|> run of the sequence's images.
bool touches_images(const Sequence& seq, std::int64_t start, std::int64_t n);

}  // namespace vlq::engine
