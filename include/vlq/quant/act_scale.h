// Activation (Linear input) scales from the calibration histograms: `vlq quantize --act-scale
// max|mse|percentile[:P]`. max (default) = ModelOpt's max calibration (input_scale = amax / 448, every
// value representable); mse = the amax whose E4M3 quantize-dequantize (saturation included) has the least
// expected squared error over the histogram of |x|; percentile:P = the P-th percentile of |x| as amax.
// KV-cache and weight scales always stay max. Spec: ModelOpt `HistogramCalibrator` (method "mse" /
// "percentile"; ModelOpt searches INT8 grids, vlq the E4M3 grid), ../shared/docs/fp8-checkpoint-formats.md §1.
#pragma once

#include <string>
#include <vector>

#include "vlq/quant/calibration_stats.h"

namespace vlq::quant {

enum class ActScaleMethod { kMax, kMse, kPercentile };

struct ActScale {
  ActScaleMethod method = ActScaleMethod::kMax;
  double percentile = 99.99;  // kPercentile: 50 <= P <= 100
  // "max", "mse", "percentile:99.99" (what the provenance records).
  std::string name() const;
};

// "max" | "mse" | "percentile" (P = 99.99) | "percentile:P". UsageError naming the valid choices otherwise
// (`flag` names the option in the message).
ActScale parse_act_scale(const std::string& text, const std::string& flag = "--act-scale");

// Expected squared error Σ count·(x − s·E4M3_sat(x/s))² / total, s = amax / 448, over the histogram:
// each bin's mass is spread over 8 points evenly spaced in log2 across the bin (the top bin cut at
// `max_abs` when given > 0, so no mass lies beyond the observed max); `zeros` add no error.
double histogram_fp8_mse(const AbsHistogram& h, float amax, float max_abs = 0);
// The mse amax: minimum of histogram_fp8_mse over amax = max_abs · 2^(-k/32), k = 0 .. 256 (ties keep the
// larger amax, so a histogram that gains nothing from clipping keeps max_abs exactly).
float mse_amax(const AbsHistogram& h, float max_abs);
// Upper edge of the bin holding the P-th percentile of |x| (zeros counted), capped at max_abs.
float percentile_amax(const AbsHistogram& h, double percentile, float max_abs);
// Fraction of the histogram's values with |x| > amax (they saturate at ±448·s), bins split log-linearly
// (the top bin cut at max_abs when given > 0: clipped_fraction(h, max, max) = 0).
double clipped_fraction(const AbsHistogram& h, float amax, float max_abs = 0);

// One Linear's activation scale decision.
struct ActScaleChoice {
  std::string module;       // canonical name
  float max_amax = 0;       // calibrated max |x|
  float amax = 0;           // chosen (input_scale = amax / 448)
  double clipped = 0;       // clipped_fraction under the chosen amax (0 without a histogram)
};

// `stats` with every input_amax replaced by the method's choice (k_amax / v_amax untouched; kMax returns
// the amax unchanged). `choices`, when given, receives one entry per input_amax (map order).
// Throws ConfigError when a method other than max finds a Linear without a histogram (statistics saved
// before histograms existed: recalibrate).
CalibrationStats apply_act_scale(const CalibrationStats& stats, const ActScale& method,
                                 std::vector<ActScaleChoice>* choices = nullptr);

}  // namespace vlq::quant
