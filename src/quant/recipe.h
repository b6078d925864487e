// Internal to src/quant: how one export is written — the ModelOpt / compressed-tensors conventions resolved
// from the options (scale dtypes and shapes, scale formulas, KV clamp of old ModelOpt releases), the
// quantization config blocks of both formats and the vlq_quantize.json provenance file. Used by plan.cpp
// (version checks) and export.cpp.
// Spec: ../shared/docs/fp8-checkpoint-formats.md §1.2–1.5 (ModelOpt tensors and both config files),
// §3.3–3.4 (compressed-tensors); tests/data/ref_exports/README.md (what each release wrote).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/core/dtype.h"
#include "vlq/ops/fp8_weight.h"
#include "vlq/quant/calibration_stats.h"
#include "vlq/quant/plan.h"

namespace vlq::io {
class Checkpoint;
}

namespace vlq::quant::detail {

// The ModelOpt release whose layout the default output reproduces.
inline constexpr int kModelOptDefaultMinor = 47;
// compressed-tensors release whose quantization_config schema the output reproduces.
inline constexpr const char* kCompressedTensorsVersion = "0.19.0";

// "0.35" / "0.35.1" → 35; -1 when not a ModelOpt 0.x version.
int modelopt_minor(const std::string& version);
// formats::canonical_name of a checkpoint module name.
std::string canonical_module_of(const std::string& checkpoint_module);

// The conventions of one export, resolved from QuantizeOptions.
struct ExportRecipe {
  bool modelopt = true;
  int mo_minor = kModelOptDefaultMinor;  // ModelOpt release reproduced (--modelopt-compat)
  bool clamp_kv = false;                 // KV scales clamped to >= 1.0 (ModelOpt <= 0.42)
  bool old_exclude = false;              // exclude_modules built the ModelOpt <= 0.37 way
  ops::Fp8WeightRecipe weights;          // the weight recipe (rounding; scale in the weight dtype for CT)
  // Throws UsageError for a --modelopt-compat version outside 0.31 ... 0.47.
  static ExportRecipe of(const QuantizeOptions& opt);
  // Scale tensors: ModelOpt F32 [], compressed-tensors the weight's dtype, [1].
  DType scale_dtype(DType weight_dtype) const { return modelopt ? DType::F32 : weight_dtype; }
  std::vector<std::int64_t> scale_shape() const { return modelopt ? std::vector<std::int64_t>{} : std::vector<std::int64_t>{1}; }
  // amax (sanitized, > 0) / 448: in f32 (ModelOpt), rounded to the weight's dtype (compressed-tensors).
  float scale_of(float amax, DType weight_dtype) const;
};

// A scalar/[1] tensor of `dt` (F32, BF16, F16) holding v (already representable in dt).
std::vector<std::byte> scalar_bytes(float v, DType dt);

// Writes the quantization declaration of the output: config.json's quantization_config (both formats) and
// for ModelOpt hf_quant_config.json (`hfq`), as the reproduced release writes them (key order, exclusions
// summarised like ModelOpt, `ignore` = every kept Linear for compressed-tensors). `kv`: FP8 KV cache.
void write_declaration(const QuantPlan& plan, const io::Checkpoint& ck, const ExportRecipe& recipe, bool kv,
                       nlohmann::json& config, std::optional<nlohmann::ordered_json>& hfq);

// vlq_quantize.json: how the export was made (options, calibration counts, what was kept).
std::string provenance_json(const QuantizeOptions& opt, const CalibrationStats& stats, const ExportRecipe& recipe, bool kv,
                            int quantized, const std::vector<std::string>& kept_linears);

// Checkpoint names of the Linears kept in the source dtype, model order.
std::vector<std::string> kept_linears(const QuantPlan& plan);

}  // namespace vlq::quant::detail
