// Loads the tensors of a Qwen2.5-VL checkpoint into the CPU runtime's f32 structures, locating every
// tensor through the name-normalisation table that `vlq check` uses (formats/names.h canonical_name:
// both naming generations, every KV-scale spelling) and checking names in both directions before any
// compute: every expected tensor present with the right shape and dtype, every checkpoint tensor used or
// explicitly ignored (vision K/V scales: the ViT has no KV cache). All problems go into one error.
// Accepts BF16/F16/F32 and FP8 (E4M3 weight + weight_scale [+ input_scale]) Linears in any mix
// (LM-only or whole-VLM FP8, ModelOpt or compressed-tensors layouts).
// Spec: ../shared/docs/qwen2_5_vl.md §3.1 (vision tensors), §4.1 (language-model tensors);
// fp8-checkpoint-formats.md §1.2–1.3, §3 (scale tensors and shapes).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vlq/io/safetensors.h"
#include "vlq/formats/hf_config.h"
#include "vlq/ops/linear.h"

namespace vlq::model {

struct VisionBlockWeights {
  std::vector<float> norm1, norm2;               // [Dv]
  ops::LinearWeights qkv, proj, gate, up, down;  // qkv [3·Dv, Dv]; proj [Dv, Dv]; gate/up [Iv, Dv]; down [Dv, Iv]
};
struct VisionWeights {
  ops::LinearWeights patch_embed;   // [Dv, C·tps·ps·ps] (the Conv3d kernel flattened over (c, t, ky, kx)), no bias
  std::vector<VisionBlockWeights> blocks;
  std::vector<float> ln_q;          // [Dv]
  ops::LinearWeights merger0;       // [4·Dv, 4·Dv] + bias
  ops::LinearWeights merger2;       // [D, 4·Dv] + bias
};
struct DecoderLayerWeights {
  std::vector<float> input_norm, post_norm;      // [H]
  ops::LinearWeights q, k, v, o, gate, up, down; // q [heads·hd, H]+b; k/v [kv·hd, H]+b; o [H, heads·hd]; gate/up [I, H]; down [H, I]
  std::optional<float> k_scale, v_scale;         // FP8 KV-cache scales from the checkpoint (any spelling)
};
struct LanguageWeights {
  std::vector<float> embed;         // [V, H]; empty when tie_word_embeddings (then lm_head.w holds it)
  std::vector<DecoderLayerWeights> layers;
  std::vector<float> norm;          // [H]
  ops::LinearWeights lm_head;       // [V, H]; with tie_word_embeddings the one copy of the embedding
  // The token embedding table [V, H] (embed, or lm_head.w when tied).
  const std::vector<float>& embedding() const { return embed.empty() ? lm_head.w : embed; }
};

// What the loader found (for `vlq generate -v`, inspect-like summaries and tests).
struct LoadReport {
  std::int64_t tensors = 0;
  std::int64_t fp8_linears = 0, dense_linears = 0;
  std::int64_t kv_scale_layers = 0;
  std::vector<std::string> ignored;  // checkpoint tensors deliberately not used, with the reason
  std::string naming;                // naming generation of the checkpoint
};

struct Qwen2_5_VLWeights {
  VisionWeights vision;
  LanguageWeights lm;
  LoadReport report;
};

// Which tensors the loader decodes (canonical tensor name → true). Every tensor is still checked (name in
// both directions, shape, dtype, FP8 scales); a tensor not decoded is left empty (its Linear keeps name,
// out_features, in_features and kind). Empty filter = decode everything. Used by layer-sequential GPU
// calibration (quant/calibrate_cuda.h), which decodes only the vision tower on the host and streams the
// decoder layers from the checkpoint one at a time.
using WeightFilter = std::function<bool(const std::string& canonical_tensor)>;

// Reads all weights (those `decode` selects). Throws FormatError listing every problem at once (missing tensors, wrong shape or
// dtype, unexpected tensors, FP8 weight without weight_scale, scale of the wrong shape), each naming the
// tensor with expected vs found; IoError from the reader.
Qwen2_5_VLWeights load_qwen2_5_vl_weights(const io::Checkpoint& ckpt, const formats::ModelConfig& cfg,
                                          const WeightFilter& decode = {});

}  // namespace vlq::model
