// The amax statistics of a calibration pass (max calibration) and their JSON file (`vlq quantize
// --save-calib` / `--load-calib`), keyed by canonical module names (formats::canonical_name).
// Spec: ../shared/docs/fp8-checkpoint-formats.md §1 (amax → scale = amax / 448); ModelOpt `MaxCalibrator`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace vlq::quant {

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

}  // namespace vlq::quant
