// A loaded Qwen2.5-VL model on CPU: config + weights, and the two calls a generation loop needs —
// prefill (prompt ids + images → logits, fills the KV cache, computes M-RoPE positions and rope_deltas)
// and decode (one token → logits). Spec: ../shared/docs/qwen2_5_vl.md §4.2 (embedding merge at
// <|image_pad|> positions), §4.5–4.6 (positions, rope_deltas for decode).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <vector>

#include "vlq/io/safetensors.h"
#include "vlq/formats/hf_config.h"
#include "vlq/image/image_processor.h"
#include "vlq/model/language_model.h"
#include "vlq/model/observer.h"
#include "vlq/model/qwen2_5_vl_weights.h"
#include "vlq/model/vision_tower.h"
#include "vlq/ops/tensor.h"

namespace vlq::model {

struct LoadOptions {
  KvCacheMode kv_cache = KvCacheMode::kAuto;
  // Which tensors to decode into the f32 structures (empty = all; see load_qwen2_5_vl_weights). A model
  // loaded with a filter has empty weight vectors outside it and must not run prefill/decode: it serves
  // as config + checked tensor inventory (+ the decoded part) for layer-sequential GPU calibration.
  WeightFilter decode_weights;
};

// The state of one sequence: its KV cache, length and rope_deltas.
struct Session {
  std::vector<ops::KvCacheLayer> cache;
  std::int64_t length = 0;       // tokens in the cache
  std::int64_t rope_deltas = 0;  // from the prompt's get_rope_index
  std::int64_t capacity() const { return cache.empty() ? 0 : cache.front().capacity(); }
};

class Qwen2_5_VL {
 public:
  // Loads DIR (config.json + safetensors; other metadata files when present). Throws ConfigError /
  // FormatError / IoError from the readers and the weight loader (one error listing all tensor problems).
  static Qwen2_5_VL load(const std::filesystem::path& dir, const LoadOptions& options = {});
  // Builds from parts already in memory (tests, in-memory quantization for eval).
  Qwen2_5_VL(formats::HfModelFiles files, Qwen2_5_VLWeights weights, LoadOptions options);

  const formats::ModelConfig& config() const { return *files_.config; }
  const formats::HfModelFiles& files() const { return files_; }
  const Qwen2_5_VLWeights& weights() const { return weights_; }
  Qwen2_5_VLWeights& mutable_weights() { return weights_; }
  // Whether sessions get an FP8 KV cache (after resolving kAuto against the checkpoint's scales).
  bool fp8_kv_cache() const;
  void set_kv_cache_mode(KvCacheMode m) { options_.kv_cache = m; }

  // A session whose KV cache holds `capacity` positions. Throws UsageError when capacity exceeds
  // max_position_embeddings ("prompt longer than the context").
  Session new_session(std::int64_t capacity) const;

  // Token embeddings of `ids` only: out [ids.size(), hidden_size] f32 rows. Throws UsageError for an id outside
  // the embedding.
  void embed_tokens(std::span<const std::int32_t> ids, float* out) const;
  // Token embeddings of `ids` with the image features (vision tower over `images`) placed at the
  // image-pad positions in order. Throws UsageError when the pad count differs from the features.
  // `vision`: another implementation of vision_forward (e.g. the CUDA tower); null = the CPU tower.
  ops::Matrix embed_prompt(std::span<const std::int32_t> ids, const image::ProcessedImages* images,
                           ForwardObserver* obs = nullptr, const VisionEncoder* vision = nullptr) const;

  // Runs the prompt: returns logits [K, V] of the last K = logits_last_k positions (K clamped to S).
  ops::Matrix prefill(Session& s, std::span<const std::int32_t> ids, const image::ProcessedImages* images,
                      std::int64_t logits_last_k = 1, ForwardObserver* obs = nullptr) const;
  // One decode step: logits [1, V] of `id` at position s.length + rope_deltas.
  ops::Matrix decode(Session& s, std::int32_t id, ForwardObserver* obs = nullptr) const;

 private:
  formats::HfModelFiles files_;
  Qwen2_5_VLWeights weights_;
  LoadOptions options_;
};

}  // namespace vlq::model
