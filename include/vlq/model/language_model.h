// The Qwen2.5-VL language model on CPU (a Qwen2 decoder): RMSNorm, GQA attention with q/k/v bias and
// M-RoPE, SwiGLU MLP, KV cache (f32 or FP8 E4M3 with the layer's k_scale/v_scale), final norm, lm_head.
// Spec: ../shared/docs/qwen2_5_vl.md §4.2–4.6; transformers modeling_qwen2_5_vl.py (Qwen2_5_VLTextModel).
#pragma once

#include <cstdint>
#include <vector>

#include "vlq/formats/hf_config.h"
#include "vlq/model/observer.h"
#include "vlq/model/qwen2_5_vl_weights.h"
#include "vlq/ops/attention.h"
#include "vlq/ops/tensor.h"

namespace vlq::model {

// How the KV cache stores K and V.
enum class KvCacheMode {
  kAuto,  // FP8 when every layer of the checkpoint carries k_scale/v_scale (a declared FP8 KV cache), else f32
  kF32,
  kFp8,   // FP8 E4M3; layers without scales use 1.0 (vLLM's default) — a warning is the caller's job
};

// One KV cache per decoder layer, capacity = max positions of the session.
std::vector<ops::KvCacheLayer> make_kv_cache(const LanguageWeights& w, const formats::TextConfig& cfg, std::int64_t capacity,
                                             KvCacheMode mode);

// Runs the decoder over S new tokens (embeds [S, H]) whose M-RoPE positions are [3, S], appending their
// K/V to `cache` (which holds the earlier tokens). Returns the logits [S − logits_from, V] of rows
// [logits_from, S) (logits_from = S → no logits). Named intermediates: lm.embeds, lm.layer.{l}, lm.norm.
ops::Matrix lm_forward(const LanguageWeights& w, const formats::TextConfig& cfg, const ops::Matrix& embeds,
                       const std::vector<std::int64_t>& positions, std::vector<ops::KvCacheLayer>& cache,
                       std::int64_t logits_from, ForwardObserver* obs = nullptr);

}  // namespace vlq::model
