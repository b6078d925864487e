// `vlq quantize` after calibration: the quantization plan (which Linears become FP8 and why not) and the
// streaming export of a BF16/F16/F32 Qwen2.5-VL checkpoint into the ModelOpt or compressed-tensors FP8
// layout the real tools write: byte for byte with QuantizeOptions::weight_rounding kDouble (their double
// rounding), with one rounding of W / weight_scale by default (more accurate; the layout is the same).
//
// Spec: ../shared/docs/fp8-checkpoint-formats.md §1.1–1.5 (ModelOpt tensors, KV scales, both config
// files), §3.3–3.4 (compressed-tensors tensors and config), §6 (profiles A/B/C), §7.1 (exporter rules);
// tests/data/ref_exports/README.md (what ModelOpt 0.35/0.47 and llm-compressor 0.14 actually wrote,
// including the double rounding E4M3(BF16(W/s))). Fidelity tests: tests/quant/export_test.cpp.
//
// How the CLI (`src/cli/cmd_quantize.cpp`) uses this header:
//
//   QuantizeOptions opt = ...from flags...;            // --scope lm|vlm, --exclude P (repeatable), --format
//                                                        // modelopt|compressed-tensors, --kv-cache fp8|none,
//                                                        // --vision-kv none|modelopt, --modelopt-compat 0.35,
//                                                        // --check TARGET (repeatable), --force
//   io::Checkpoint ck = io::Checkpoint::open(model_dir);
//   formats::ModelConfig cfg = formats::load_model_config(model_dir / "config.json");
//   QuantPlan plan = plan_quantization(ck, cfg, opt);   // cheap (headers only); throws on bad --exclude /
//                                                        // scope before any calibration is spent
//   CalibrationStats stats = --load-calib F ? load_calibration_stats(F) : <the lead's calibration pass,
//                             fed with plan.modules[i].canonical_module where quantize, and
//                             plan.attention_modules_with_kv>;
//   if (--save-calib F) save_calibration_stats(stats, F);
//   ExportReport rep = export_quantized(model_dir, out_dir, plan, stats, opt);
//   std::cout << format_summary(plan, rep);
//
// Conventions: module names are given in two namings. `checkpoint_module` is the name as stored in the
// input (legacy `model.layers.*` / `visual.*` or transformers-4.52 `model.language_model.*` /
// `model.visual.*`); `canonical_module` is formats::canonical_name of it. Calibration statistics are
// keyed by canonical names. The output keeps the input's naming generation (tensor names, KV-scale
// names and exclude/ignore entries all in checkpoint naming, as ModelOpt ≥ 0.39 and compressed-tensors
// 0.19 write them).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/core/numerics.h"
#include "vlq/formats/check.h"
#include "vlq/ops/fp8_weight.h"

namespace vlq::io {
class Checkpoint;
}
namespace vlq::model {
struct ModelConfig;
}

namespace vlq::quant {

// ---- calibration statistics ------------------------------------------------------------------------

// amax statistics produced by calibration (max calibration: running maximum of |x| over every token of
// every calibration sample, in f32), keyed by CANONICAL names (formats::canonical_name).
struct CalibrationStats {
  // Linear module ("model.language_model.layers.0.self_attn.q_proj") → max |input| (f32, > 0).
  std::map<std::string, float> input_amax;
  // Attention module ("model.language_model.layers.0.self_attn", "model.visual.blocks.0.attn") →
  // max |K| after RoPE (what enters the KV cache / attention) and max |V|.
  std::map<std::string, float> k_amax;
  std::map<std::string, float> v_amax;
  std::int64_t samples = 0, text_tokens = 0, image_tokens = 0;
  bool operator==(const CalibrationStats&) const = default;
};

// JSON form (schema "vlq.calibration/1"):
//   {"schema": "vlq.calibration/1", "samples": n, "text_tokens": n, "image_tokens": n,
//    "input_amax": {module: amax}, "k_amax": {attention: amax}, "v_amax": {attention: amax}}
// Numbers are written with enough digits to round-trip every f32 exactly.
nlohmann::json calibration_stats_to_json(const CalibrationStats& s);
// Throws ConfigError naming `file` and the key: wrong schema, a value that is not a finite number ≥ 0,
// a missing map (an absent counter reads as 0).
CalibrationStats calibration_stats_from_json(const nlohmann::json& j, const std::string& file = "calibration");
// File helpers (JSON text, indent 2). save: atomic (temporary file renamed into place), IoError.
// load: IoError (cannot read), FormatError (not JSON), ConfigError (as above).
void save_calibration_stats(const CalibrationStats& s, const std::filesystem::path& file);
CalibrationStats load_calibration_stats(const std::filesystem::path& file);

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
  // `pad` throws UnsupportedError (see plan_quantization).
  bool pad = false;
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
//     nothing left to quantize.
//   UnsupportedError — `pad` (see QuantizeOptions::pad); a source weight dtype other than BF16/F16/F32.
//   ConfigError — a `re:` entry that does not compile.
QuantPlan plan_quantization(const io::Checkpoint& ckpt, const formats::ModelConfig& cfg, const QuantizeOptions& opt);

// ---- the export ------------------------------------------------------------------------------------

// One quantized Linear in the report.
struct ModuleExport {
  std::string checkpoint_module;
  float weight_amax = 0, weight_scale = 0;  // weight_scale as written (BF16-rounded for compressed-tensors)
  float input_amax = 0, input_scale = 0;
  std::uint64_t saturated = 0;  // |W/s| > 464 elements clipped to ±448 beyond rounding (0 unless the amax was overridden)
};
struct ScaleRange {
  float min = 0, max = 0;
  int count = 0;
  void add(float v);
};
struct ExportReport {
  std::filesystem::path out;
  int quantized = 0, kept = 0;              // Linears quantized / kept in the source dtype
  int kv_scales = 0, vision_kv_scales = 0;  // tensors written
  std::uint64_t tensors_in = 0, tensors_out = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;  // tensor bytes
  std::vector<ModuleExport> modules;          // plan order
  ScaleRange weight_amax, weight_scale, input_amax, input_scale, k_scale, v_scale;
  std::vector<std::string> warnings;          // zero amax replaced, KV scales clamped, ...
  std::vector<formats::Report> checks;        // one per QuantizeOptions::check_targets
  double seconds_prepare = 0, seconds_write = 0, seconds_check = 0, seconds_commit = 0;
};

// Streams `model_dir` (BF16, F16 or F32 Linears) into `out_dir` following `plan`:
//  Weights: ops::quantize_weight_fp8 with opt.weight_rounding (round_q below: none for kSingle, the source
//    dtype's rounding for kDouble).
//  ModelOpt (quant_algo FP8, §1.2): P.weight F8_E4M3 = E4M3_sat(round_q(W / s)) with s = f32(max|W|)/448;
//    P.weight_scale F32 [];
//    P.input_scale F32 [] = input_amax/448; KV: <attn>.k_proj.k_scale / .v_proj.v_scale F32 [] = amax/448
//    (clamped ≥ 1 with modelopt_version_compat < 0.43); hf_quant_config.json (indent 4, ModelOpt key order)
//    and config.json quantization_config (config_groups, ignore, kv_cache_scheme, producer).
//  compressed-tensors (preset FP8, static, §3.3): P.weight F8_E4M3 = E4M3_sat(round_q(W / s)) with
//    s = src_dtype(f32(max|W|)/448); P.weight_scale and P.input_scale [1] in the weight's dtype;
//    KV: <attn>.k_scale / .v_scale [1] in the weight's dtype; config.json quantization_config exactly as
//    compressed-tensors 0.19 writes it ("ignore": every kept Linear, checkpoint names, model order).
//  Zero amax: ModelOpt 0.47 substitutes amax = 448 (scale 1.0, with a warning) — vlq does the same for
//    both formats and reports it; an amax below FLT_MIN is raised to FLT_MIN (ModelOpt's clamp).
//  Everything else is copied unchanged (biases, norms, embeddings, the Conv3d, excluded Linears), as are
//  the non-tensor files (generation/preprocessor/tokenizer configs, chat templates; not an old
//  hf_quant_config.json). A provenance file `vlq_quantize.json` (options, calibration counts) is added.
// Before renaming into place the output is checked with formats::check for each opt.check_targets.
// Throws: UsageError (OUT exists without force; OUT inside the input; plan from another checkpoint),
//   ConfigError (missing amax for a quantized Linear or KV attention — named; amax NaN/Inf/negative;
//   a check target predicts a failure — names target and findings), FormatError/IoError (read/write),
//   UnsupportedError (a weight with NaN/Inf). The input is never modified; on error OUT is untouched.
ExportReport export_quantized(const std::filesystem::path& model_dir, const std::filesystem::path& out_dir,
                              const QuantPlan& plan, const CalibrationStats& stats, const QuantizeOptions& opt);

// Human-readable summary for the CLI: counts, a table of what was quantized / kept and why (grouped),
// amax and scale ranges, KV scales, check verdicts, bytes and time per phase.
std::string format_summary(const QuantPlan& plan, const ExportReport& report);

}  // namespace vlq::quant
