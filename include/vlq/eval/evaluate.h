// `vlq eval`: what quantization cost, measured by running a quantized model and its BF16 reference on the
// same inputs: per-token KL(P_ref ‖ P_quant) of the next-token distribution, top-1 agreement, perplexity
// of each on held-out targets (task answers teacher-forced, plain text), greedy-generation exact-match
// rate against the reference, task accuracy (data/README.md `exact_normalized`), and (per_layer) each
// module group's own contribution to the KL.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/eval/eval_metrics.h"
#include "vlq/engine/device_model.h"
#include "vlq/engine/model_bundle.h"
#include "vlq/model/qwen2_5_vl.h"

namespace vlq::eval {

// A model under evaluation: the loaded bundle (model, tokenizer, chat template, prompt builder, generation
// defaults) and what the tables show about it.
struct EvalModel {
  std::string label;                  // shown in tables ("reference", the folder name, ...)
  std::filesystem::path dir;
  engine::ModelBundle bundle;
  std::uint64_t tensor_bytes = 0;     // bytes of all safetensors data (the checkpoint's size)
  std::string quantization;           // short description: "BF16", "FP8 LM (ModelOpt)", ...
  // Where teacher-forced logits and generations run (null = the CPU path). Shared so EvalModel stays
  // copyable into tables; it refers to bundle.model(), whose address is stable across moves.
  std::shared_ptr<engine::DeviceModel> runner;
  const model::Qwen2_5_VL& model() const { return bundle.model(); }
  // Throws what engine::ModelBundle::load and engine::DeviceModel::create throw.
  static EvalModel load(const std::filesystem::path& dir, const std::string& label = "",
                        const engine::BundleOptions& options = {}, engine::Device device = engine::Device::kCpu,
                        int tensor_parallel = 1);
};

struct EvalOptions {
  bool tasks = true;                 // task items (image questions): teacher-forced KL/ppl + generation
  bool text = true;                  // plain text samples: KL/ppl over every next token
  bool generation = true;            // greedy generation per task item (accuracy, exact match)
  std::int64_t max_new_tokens = 48;
  std::int64_t seq_len = 256;        // text samples cut to this many tokens
  std::function<void(std::size_t done, std::size_t total)> progress;
};

struct ModelScore {
  std::string label;
  std::string quantization;
  std::uint64_t tensor_bytes = 0;
  LogitMetrics task_logits;          // teacher-forced answer tokens (+ <|im_end|>) of task items
  LogitMetrics text_logits;          // next tokens of plain text
  AccuracyTable accuracy;            // generation vs expected answers
  std::int64_t gen_exact = 0, gen_total = 0;  // generations identical to the reference's
  bool is_reference = false;
  nlohmann::ordered_json to_json() const;
};

// Evaluates `models` against `reference` on the items and texts. The reference's own row has KL 0 and
// exact match 1 by definition (its ppl and accuracy are the baseline). Throws UsageError when nothing is
// selected, or models do not share the reference's vocabulary size.
std::vector<ModelScore> evaluate(const EvalModel& reference, const std::vector<const EvalModel*>& models,
                                 const std::vector<EvalItem>& items, const std::vector<std::string>& texts,
                                 const EvalOptions& options);

// Per-layer attribution: for each module group that `quantized` holds in FP8 (vision blocks, the merger,
// each LM layer's attention and MLP, lm_head, the FP8 KV cache), the reference with only that group taken
// from `quantized` is scored against the reference (teacher-forced task answers and text, no generation).
struct GroupScore {
  std::string group;                 // "vision.blocks.3", "vision.merger", "lm.layers.5.attn", "lm.layers.5.mlp", "lm.kv_cache", "lm_head"
  int fp8_linears = 0;
  LogitMetrics logits;
};
// The reference with a chosen set of those groups taken from `quantized` (the rest BF16), scored against the
// reference on fixed inputs whose reference logits are computed once: what evaluate_per_layer does for each
// group alone and auto-precision does for the whole model minus the groups kept in BF16. Holds a private
// copy of the reference and of the quantized weights; not copyable.
class GroupProbe {
 public:
  GroupProbe(const EvalModel& reference, const EvalModel& quantized, const std::vector<EvalItem>& items,
             const std::vector<std::string>& texts, const EvalOptions& options);
  ~GroupProbe();
  GroupProbe(const GroupProbe&) = delete;
  GroupProbe& operator=(const GroupProbe&) = delete;
  // The FP8 groups of `quantized` in model order ("lm.kv_cache" last when it has an FP8 KV cache).
  const std::vector<std::string>& groups() const;
  int fp8_linears(const std::string& group) const;  // 0 for lm.kv_cache
  // Teacher-forced logits of the reference with exactly `fp8_groups` from `quantized` vs the reference's.
  // Throws UsageError for a name not in groups().
  LogitMetrics score(const std::set<std::string>& fp8_groups);
  std::size_t inputs() const;  // sequences scored per call

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::vector<GroupScore> evaluate_per_layer(const EvalModel& reference, const EvalModel& quantized,
                                           const std::vector<EvalItem>& items, const std::vector<std::string>& texts,
                                           const EvalOptions& options);

// Text table of scores (one row per model) and of group scores.
std::string format_scores(const std::vector<ModelScore>& scores);
std::string format_group_scores(const std::vector<GroupScore>& groups);

}  // namespace vlq::eval
