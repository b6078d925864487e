// `vlq quantize` after calibration: the streaming export of a BF16/F16/F32 Qwen2.5-VL checkpoint into the
// ModelOpt or compressed-tensors FP8 layout the real tools write: byte for byte with QuantizeOptions::weight_rounding kDouble (their double
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
//                                                        // --vision-kv-scales none|modelopt, --modelopt-compat
//                                                        // 0.35, --layout portable|exact, --for TARGET
//                                                        // (repeatable), --force
//   io::Checkpoint ck = io::Checkpoint::open(model_dir);
//   formats::ModelConfig cfg = formats::load_model_config(model_dir / "config.json");
//   QuantPlan plan = plan_quantization(ck, cfg, opt);   // cheap (headers only); throws on bad --exclude /
//                                                        // scope before any calibration is spent
//   CalibrationStats stats = --load-calib F ? load_calibration_stats(F) : calibrate(...) (calibrate.h);
//   if (--save-calib F) save_calibration_stats(stats, F);
//   stats = apply_act_scale(stats, parse_act_scale(--act-scale));  // act_scale.h: max | mse | percentile[:P]
//   [--auto-precision: eval::choose_precision (vlq/eval/auto_precision.h) on an all-FP8 candidate → more
//    opt.exclude entries / kv_cache_fp8 = false → plan_quantization again]
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
#include <string>
#include <vector>

#include "vlq/formats/check.h"
#include "vlq/quant/calibration_stats.h"
#include "vlq/quant/plan.h"

namespace vlq::quant {

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
  std::vector<std::string> not_copied;        // input files left out (is_kept_model_file), sorted; folders end in '/'

  double seconds_prepare = 0, seconds_write = 0, seconds_check = 0, seconds_commit = 0;
};

// The files of the input folder a quantized checkpoint keeps besides its tensors and rewritten configs: what
// ModelOpt and llm-compressor write next to their exports (tokenizer: tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, added_tokens.json, vocab.json, merges.txt, tokenizer.model; processor:
// preprocessor_config.json, processor_config.json, video_preprocessor_config.json; chat_template.jinja /
// .json; generation_config.json), plus the model card README.md (under vlq's note, quantized_model_card in
// model_card.h: its figures are the source model's) and LICENSE* / NOTICE* files. Everything
// else (training logs, the BF16 model's eval results, other weight files such as pytorch_model.bin, remote
// code, sub-folders) would describe or duplicate the BF16 model: it is not copied, and named in
// ExportReport::not_copied, format_summary and vlq_quantize.json ("input_files_not_copied").
bool is_kept_model_file(const std::string& file_name);

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
