// Automatic per-layer precision (`vlq quantize --auto-precision --max-kl X [--max-size-ratio R]`): from a
// whole-model FP8 candidate, measure each module group's sensitivity (the reference with only that group
// in FP8, as `vlq eval --per-layer`), then keep the most sensitive groups in BF16, greedily, re-measuring
// the whole model's mean KL after each, until KL <= X (and tensor bytes <= R x BF16 when R is given).
// The result is a list of --exclude entries (canonical module prefixes; the plan turns them into each
// format's exclusions: ModelOpt exclude_modules, compressed-tensors ignore) and whether the KV cache stays
// BF16 (--kv-cache none).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/eval/evaluate.h"
#include "vlq/quant/calib_data.h"

namespace vlq::eval {

struct AutoPrecisionOptions {
  double max_kl = 0;                     // target mean KL(P_ref || P_model), nats (> 0)
  std::optional<double> max_size_ratio;  // tensor bytes / the reference's (0 < R <= 1)
  EvalOptions eval;                      // data selection; generation is never run
  std::function<void(const std::string&)> log;  // one line per measurement
};

struct AutoPrecisionStep {
  std::string kept_bf16;      // the group moved to BF16 at this step ("" for the all-FP8 start)
  double kl_mean = 0, kl_max = 0, top1 = 0;
  std::uint64_t tensor_bytes = 0;
};

struct AutoPrecisionResult {
  std::vector<GroupScore> sensitivity;  // each group alone, model order
  std::vector<AutoPrecisionStep> steps; // steps[0] = all FP8; then one per group kept in BF16
  std::vector<std::string> kept_bf16;   // chosen groups in the order they were chosen
  std::vector<std::string> exclude;     // --exclude entries for the Linear groups (canonical module prefixes)
  // The same modules in the reference checkpoint's naming (e.g. "model.layers.0.self_attn" for a 4.x-named
  // checkpoint whose canonical name is "model.language_model.layers.0.self_attn"): what the written
  // exclude_modules / ignore lists name. JSON: "exclude" (canonical), "exclude_naming": "canonical",
  // "exclude_checkpoint" (this list).
  std::vector<std::string> exclude_checkpoint;
  bool kv_cache_bf16 = false;           // lm.kv_cache chosen: export with --kv-cache none
  double kl_mean = 0;                   // of the final choice
  std::uint64_t tensor_bytes = 0, reference_bytes = 0;  // predicted bytes of the final export; the reference's
  std::size_t tokens = 0;               // scored positions per measurement
  double size_ratio() const { return reference_bytes ? double(tensor_bytes) / double(reference_bytes) : 0; }
  nlohmann::ordered_json to_json(const AutoPrecisionOptions& o) const;
};

// "lm.layers.3.mlp" → "model.language_model.layers.3.mlp", "lm.layers.3.attn" → "...layers.3.self_attn",
// "vision.blocks.2" → "model.visual.blocks.2", "vision.merger" → "model.visual.merger", "lm_head" →
// "lm_head"; "" for lm.kv_cache (not a module). UsageError for an unknown group.
std::string group_module(const std::string& group);

// The checkpoint-naming spelling of each canonical module prefix: from the first tensor of `m` under it
// (its stored name minus the canonical suffix); a prefix with no tensor is returned unchanged.
std::vector<std::string> checkpoint_module_names(const EvalModel& m, const std::vector<std::string>& canonical);

// Tensor bytes the export gains when `group` is kept in BF16 instead of FP8, from the two checkpoints'
// headers: the reference's tensors under the group's module minus the candidate's (FP8 weights and their
// scales); for lm.kv_cache minus the candidate's k_scale / v_scale tensors.
std::int64_t group_bf16_extra_bytes(const EvalModel& reference, const EvalModel& candidate, const std::string& group);

// Runs the search on `candidate` (the whole-model FP8 export of `reference`). Throws UsageError when the
// budgets cannot hold together: the all-FP8 candidate is already over --max-size-ratio; keeping the next
// group in BF16 would exceed it while KL > max_kl; or every Linear group would have to stay BF16.
AutoPrecisionResult choose_precision(const EvalModel& reference, const EvalModel& candidate,
                                     const std::vector<EvalItem>& items, const std::vector<std::string>& texts,
                                     const AutoPrecisionOptions& options);

// The sensitivity data of `vlq quantize --auto-precision` when no other is given: the calibration samples,
// image+caption pairs as task items (the calibration chat, the caption as the teacher-forced answer), texts
// as plain text.
void sensitivity_data_of(const std::vector<quant::CalibSample>& samples, std::vector<EvalItem>& items,
                         std::vector<std::string>& texts);

}  // namespace vlq::eval
