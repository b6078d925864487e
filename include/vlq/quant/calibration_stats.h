// The statistics of a calibration pass (amax, and per Linear input a histogram of |x| for the mse /
// percentile activation scales of quantize --act-scale) and their JSON file (`vlq quantize
// --save-calib` / `--load-calib`), keyed by canonical module names (formats::canonical_name).
// Spec: ../shared/docs/fp8-checkpoint-formats.md §1 (amax → scale = amax / 448); ModelOpt `MaxCalibrator`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vlq::quant {

// Histogram of |x| over FIXED log2-spaced bins, so histograms of several samples (or runs) merge by adding
// counts: kBinsPerOctave bins per power of two, bin b = [2^(kMinLog2 + b/32), 2^(kMinLog2 + (b+1)/32)),
// b = 0 .. kBins-1. |x| < 2^kMinLog2 (zeros included) is counted in `zeros`; |x| >= 2^kMaxLog2, inf and NaN
// in the last bin. Bin boundaries are exact (the f32 mantissa compared with 2^(j/32) rounded to f32).
struct AbsHistogram {
  static constexpr int kBinsPerOctave = 32, kMinLog2 = -32, kMaxLog2 = 32;
  static constexpr int kBins = (kMaxLog2 - kMinLog2) * kBinsPerOctave;
  std::vector<std::uint64_t> counts;  // kBins entries once anything non-zero was added, else empty
  std::uint64_t zeros = 0;
  void add(const float* x, std::int64_t n);
  void merge(const AbsHistogram& other);
  std::uint64_t total() const;
  static int bin_of(float abs_x);        // -1 for abs_x < 2^kMinLog2
  static double lower_edge(int bin);     // 2^(kMinLog2 + bin/32); lower_edge(kBins) = 2^kMaxLog2
  // f32 mantissa bits where sub-bin j (0..31) of an octave starts: those of f32(2^(j/32)); 0 for j = 0.
  static std::uint32_t sub_bin_threshold(int j);
  bool operator==(const AbsHistogram&) const = default;
};

// amax statistics produced by calibration (max calibration: running maximum of |x| over every token of
// every calibration sample, in f32), keyed by CANONICAL names (formats::canonical_name).
struct CalibrationStats {
  // Linear module ("model.language_model.layers.0.self_attn.q_proj") → max |input| (f32, > 0).
  std::map<std::string, float> input_amax;
  // Attention module ("model.language_model.layers.0.self_attn", "model.visual.blocks.0.attn") →
  // max |K| after RoPE (what enters the KV cache / attention) and max |V|.
  std::map<std::string, float> k_amax;
  std::map<std::string, float> v_amax;
  // Linear module → histogram of |input| over every calibration token (empty in files written before
  // histograms existed; --act-scale mse/percentile then needs a recalibration).
  std::map<std::string, AbsHistogram> input_hist;
  std::int64_t samples = 0, text_tokens = 0, image_tokens = 0;
  bool operator==(const CalibrationStats&) const = default;
};

// JSON form (schema "vlq.calibration/1"):
//   {"schema": "vlq.calibration/1", "samples": n, "text_tokens": n, "image_tokens": n,
//    "input_amax": {module: amax}, "k_amax": {attention: amax}, "v_amax": {attention: amax},
//    "input_hist": {module: {"bins_per_octave": 32, "min_log2": -32, "zeros": n, "first": b, "counts": [n...]}}}
// `counts` holds bins first .. first+len-1 (the rest are 0). "input_hist" is optional (older files).
// Numbers are written with enough digits to round-trip every f32 exactly.
nlohmann::json calibration_stats_to_json(const CalibrationStats& s);
// Throws ConfigError naming `file` and the key: wrong schema, a value that is not a finite number ≥ 0,
// a missing map (an absent counter reads as 0), a histogram of another bin layout or out of range.
CalibrationStats calibration_stats_from_json(const nlohmann::json& j, const std::string& file = "calibration");
// File helpers (JSON text, indent 2). save: atomic (temporary file renamed into place), IoError.
// load: IoError (cannot read), FormatError (not JSON), ConfigError (as above).
void save_calibration_stats(const CalibrationStats& s, const std::filesystem::path& file);
CalibrationStats load_calibration_stats(const std::filesystem::path& file);

}  // namespace vlq::quant
