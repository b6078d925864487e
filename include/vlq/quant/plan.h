// The quantization plan of `vlq quantize`: the options (scope, exclusions, format, KV cache, rounding,
// check targets) and, from the checkpoint's tensor headers alone, which Linears become FP8 and why the
// others do not — decided before any calibration is spent.
// Spec: ../shared/docs/fp8-checkpoint-formats.md §2.8 (vision FP8 per runtime), §7.1 (exporter rules);
// ModelOpt hf_ptq.py and llm-compressor defaults (lm_head and the vision tower excluded).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/formats/hf_config.h"
#include "vlq/formats/names.h"
#include "vlq/ops/fp8_weight.h"

namespace vlq::io {
class Checkpoint;
}

namespace vlq::quant {

// ---- options ---------------------------------------------------------------------------------------

// What is quantized. kLanguageModel = ModelOpt hf_ptq.py for VLMs / the llm-compressor Qwen2.5-VL example:
// decoder Linears only, vision tower kept BF16 and excluded. kVisionLanguage = whole model (ViT Linears
// and merger too), which needs image calibration; vLLM ≥ 2025-12 cannot load an FP8 ViT in ModelOpt
// format (fp8-checkpoint-formats.md §2.8), compressed-tensors can.
enum class Scope { kLanguageModel, kVisionLanguage };
enum class ExportFormat { kModelOpt, kCompressedTensors };
// Vision-attention K/V scales. kNone (default): never written — the ViT has no KV cache and no runtime
// has a parameter for them (vLLM ≤ 2026 dies with KeyError 'blocks.0.attn.k_proj.k_scale', §2.6), so the
// default is the layout that loads in the most runtimes. kModelOpt: write the orphans
// `<vision attention>.k_proj.k_scale` / `.v_proj.v_scale` exactly as ModelOpt does with FP8_KV_CFG on the
// whole model (needs Scope::kVisionLanguage and ExportFormat::kModelOpt; only for reproducing ModelOpt).
enum class VisionKvScales { kNone, kModelOpt };

struct QuantizeOptions {
  Scope scope = Scope::kLanguageModel;
  // Extra exclusions. Each entry is `re:<regex>` (Python re.match semantics: anchored at the start),
  // a shell wildcard (fnmatch: `*`, `?`, `[...]`), or a plain module name (that module and everything
  // under it). Matched against the canonical AND the checkpoint module name of every Linear (and of the
  // patch-embedding Conv3d). An entry that matches no module is a UsageError.
  std::vector<std::string> exclude;
  // Pad Linears whose dims do not fit the FP8 GEMM alignment instead of excluding them. Not supported:
  // a padded weight changes a tensor shape that no loader (transformers, vLLM, SGLang, vlq) accepts, so
  // `pad` is a UsageError (see plan_quantization).
  bool pad = false;
  // Quantize Linears whose K or N is not a multiple of 16 (the Qwen2.5-VL vision MLP: intermediate 3420) to FP8
  // in their own shape instead of keeping them in the source dtype. Off by default: vLLM's and TensorRT-LLM's FP8
  // GEMMs need 16-aligned K and N (field-bug-classes.md F19; `vlq check` predicts it per target); vlq's CPU
  // path runs any shape and its CUDA path zero-pads the vision MLP width to 16 on upload (model_cuda/
  // vision_cuda.cpp; other unaligned FP8 Linears are an UnsupportedError there). SGLang pads too (PR #10112).
  // `vlq quantize --unaligned fp8`.
  bool unaligned_fp8 = false;
  // FP8 KV cache with calibrated static per-tensor scales (k_scale = k_amax/448, v_scale = v_amax/448)
  // for every language-model attention layer; declared as kv_cache_quant_algo "FP8" / kv_cache_scheme.
  bool kv_cache_fp8 = true;
  ExportFormat format = ExportFormat::kModelOpt;
  VisionKvScales vision_kv = VisionKvScales::kNone;
  // Reproduce an older ModelOpt's on-disk quirks (ModelOpt format only). Accepted: "0.35" ... "0.42"
  // (any "0.N" / "0.N.x" with N < 43): KV scales clamped to ≥ 1.0 (MO ≤ 0.42 behaviour, removed by PR
  // #1012), and, for N ≤ 0.37, exclude_modules built the MO ≤ 0.37 way (in-memory names prefixed with
  // "model.layers.", then "lm_head" appended — e.g. "model.layers.visual*", which matches no tensor on
  // disk). producer.version becomes "0.N.0". nullopt (default): the layout of ModelOpt 0.47 (no clamp,
  // real checkpoint names, "model.embed_tokens" listed), producer.version "0.47.0".
  std::optional<std::string> modelopt_version_compat;
  // How W / weight_scale is rounded before the E4M3 encode (ops::Fp8Rounding, vlq/ops/fp8_weight.h, the one
  // recipe the runtime's in-memory quantization uses too). kSingle (default): one rounding, the quotient in
  // f32 — more accurate, ≈ 3 % of the codes differ from what the tools write. kDouble: E4M3(BF16(W/s))
  // (F16 alike), byte for byte what ModelOpt 0.35–0.47 and llm-compressor 0.14 write on a CPU (the committed
  // reference exports; `vlq quantize --layout exact`). kDoubleBf16Scale: ModelOpt exporting on a GPU.
  ops::Fp8Rounding weight_rounding = ops::Fp8Rounding::kSingle;
  // Runtime profiles (formats::find_profile ids: "vlq", "vllm-0.10", "vllm-latest", "sglang", ...) the
  // output is checked against before it is renamed into place. A verdict "fails"/"invalid" for any of
  // them is a ConfigError naming the target and its findings; nothing is written.
  std::vector<std::string> check_targets;
  // How the input_scale of each Linear was chosen (ActScale::name(): "max", "mse", "percentile:99.99"); the
  // statistics given to export_quantized already hold the chosen amax (quant::apply_act_scale). Only
  // recorded in the provenance file.
  std::string act_scale = "max";
  // Extra keys merged into the provenance file vlq_quantize.json (e.g. "auto_precision"); null = none.
  nlohmann::json provenance_extra;
  bool force = false;                              // replace an existing OUT
  std::uint64_t max_shard_bytes = 5'000'000'000;   // output shard size (transformers' default 5 GB)
  bool fsync = true;                               // tests turn it off
};

// ---- the plan --------------------------------------------------------------------------------------

// One Linear (2-D `.weight`, not the token embedding) or the patch-embedding Conv3d of the input.
struct ModulePlan {
  std::string checkpoint_module, canonical_module;
  bool quantize = false;
  // Why (not): "FP8 per-tensor static", "lm_head excluded by default", "--exclude 're:...'", "scope lm:
  // vision tower", "N=3420 not a multiple of 16 (FP8 GEMM alignment)", "Conv3d patch embedding ...".
  std::string reason;
  std::int64_t out_features = 0, in_features = 0;  // N, K (Conv3d: out channels, in·t·h·w)
  formats::Tower tower = formats::Tower::kOther;
  bool is_linear = true;  // false for the Conv3d
};

struct QuantPlan {
  std::vector<ModulePlan> modules;  // model (named_modules) order: vision tower, language model, lm_head
  // Attention modules (canonical names) that get k_scale / v_scale: every language-model self_attn when
  // kv_cache_fp8, plus the vision attentions with VisionKvScales::kModelOpt. The calibration pass must
  // produce k_amax / v_amax for exactly these.
  std::vector<std::string> attention_modules_with_kv;
  // attention canonical → checkpoint module name (for the KV-scale tensor names).
  std::map<std::string, std::string> attention_checkpoint_names;
  // For each --exclude entry, how many modules it matched (every count is ≥ 1, else plan_quantization threw).
  std::vector<std::pair<std::string, int>> exclude_matches;
  std::string naming;  // naming generation of the input ("legacy", "transformers-4.52")
  int quantized_count() const;
  const ModulePlan* find(std::string_view canonical_module) const;
};

// Builds the plan from the checkpoint's tensor headers (no tensor data is read) and its config.
// Rules, in order: non-Linears (Conv3d) → kept BF16; lm_head → excluded by default (ModelOpt and
// llm-compressor default); scope lm → vision tower excluded; --exclude entries; shape pre-flight: FP8
// GEMMs (cuBLASLt, CUTLASS) need K and N multiples of 16 → a Linear that does not fit is kept BF16 with
// the reason (the ModelOpt/llm-compressor exports would quantize it and leave the runtime to fail).
// Throws:
//   UsageError — an --exclude entry matches no module (names the entry and the closest module); scope vlm
//     on a checkpoint without vision-tower Linears; vision_kv kModelOpt without scope vlm, without
//     kv_cache_fp8 or with compressed-tensors; modelopt_version_compat with compressed-tensors or not a
//     version this knows; the input is already quantized (FP8 tensors or a quantization_config);
//     nothing left to quantize; `pad` (see QuantizeOptions::pad).
//   UnsupportedError — a source weight dtype other than BF16/F16/F32.
//   ConfigError — a `re:` entry that does not compile.
QuantPlan plan_quantization(const io::Checkpoint& ckpt, const formats::ModelConfig& cfg, const QuantizeOptions& opt);

}  // namespace vlq::quant
