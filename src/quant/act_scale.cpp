// Activation scales from the calibration histograms: max, mse, percentile (see vlq/quant/act_scale.h).
#include "vlq/quant/act_scale.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"

namespace vlq::quant {

namespace {
constexpr int kPointsPerBin = 8;
constexpr int kCandidates = 256;  // amax = max · 2^(-k/32), k = 0..256: down to max / 256
const char* kChoices = "max, mse, percentile or percentile:P (50 <= P <= 100, e.g. percentile:99.99)";

// The bin range [lo, hi) of bin b, hi cut at max_abs.
std::pair<double, double> bin_range(int b, float max_abs) {
  double lo = AbsHistogram::lower_edge(b), hi = AbsHistogram::lower_edge(b + 1);
  if (max_abs > 0) hi = std::min(hi, static_cast<double>(max_abs));
  return {lo, std::max(lo, hi)};
}
}  // namespace

std::string ActScale::name() const {
  switch (method) {
    case ActScaleMethod::kMax: return "max";
    case ActScaleMethod::kMse: return "mse";
    case ActScaleMethod::kPercentile: return fmt::format("percentile:{}", percentile);
  }
  return "max";
}

ActScale parse_act_scale(const std::string& text, const std::string& flag) {
  ActScale a;
  if (text == "max") return a;
  if (text == "mse") {
    a.method = ActScaleMethod::kMse;
    return a;
  }
  if (text == "percentile" || text.rfind("percentile:", 0) == 0) {
    a.method = ActScaleMethod::kPercentile;
    if (text == "percentile") return a;
    const std::string p = text.substr(11);
    char* end = nullptr;
    const double v = p.empty() ? NAN : std::strtod(p.c_str(), &end);
    if (p.empty() || end != p.c_str() + p.size())
      throw UsageError({flag, "the percentile is not a number", "percentile:P with 50 <= P <= 100 (e.g. percentile:99.99)",
                        text, ""});
    // Below the median the scale clips most of every activation (percentile:0.001 gave input_scale ~3e-11 and
    // 0 % accuracy on the bundled model): refuse rather than write a broken checkpoint.
    if (!(v >= 50 && v <= 100))
      throw UsageError({flag, "percentile out of range", "percentile:P with 50 <= P <= 100 (e.g. percentile:99.99)", text,
                        "activation amax is a high percentile of |x|; 99.9-99.999 are the usual choices"});
    a.percentile = v;
    return a;
  }
  throw UsageError({flag, "unknown activation-scale method", kChoices, text, ""});
}

namespace {
// The histogram as weighted points: kPointsPerBin per non-empty bin, evenly spaced in log2 across it.
struct Points {
  std::vector<float> x;
  std::vector<double> w;
  std::uint64_t total = 0;
};
Points points_of(const AbsHistogram& h, float max_abs) {
  Points p;
  p.total = h.zeros;
  for (int b = 0; b < AbsHistogram::kBins; ++b) {
    const std::uint64_t c = h.counts[b];
    if (!c) continue;
    p.total += c;
    const auto [lo, hi] = bin_range(b, max_abs);
    const double r = std::log2(hi / lo);
    for (int k = 0; k < kPointsPerBin; ++k) {
      p.x.push_back(static_cast<float>(lo * std::exp2(r * (k + 0.5) / kPointsPerBin)));
      p.w.push_back(static_cast<double>(c) / kPointsPerBin);
    }
  }
  return p;
}
double mse_of(const Points& p, float amax) {
  const float s = amax / kE4M3Max;
  double err = 0;
  for (std::size_t i = 0; i < p.x.size(); ++i) {
    const float d = p.x[i] - e4m3fn_to_f32(f32_to_e4m3fn_sat(p.x[i] / s)) * s;
    err += p.w[i] * static_cast<double>(d) * d;
  }
  return p.total ? err / static_cast<double>(p.total) : 0;
}
}  // namespace

double histogram_fp8_mse(const AbsHistogram& h, float amax, float max_abs) {
  if (h.counts.empty() || !(amax > 0)) return 0;
  return mse_of(points_of(h, max_abs), amax);
}

float mse_amax(const AbsHistogram& h, float max_abs) {
  if (h.counts.empty() || !(max_abs > 0) || !std::isfinite(max_abs)) return max_abs;
  const Points p = points_of(h, max_abs);
  float best = max_abs;
  double best_err = mse_of(p, max_abs);
  for (int k = 1; k <= kCandidates; ++k) {
    const float a = static_cast<float>(max_abs * std::exp2(-k / double(AbsHistogram::kBinsPerOctave)));
    const double e = mse_of(p, a);
    if (e < best_err) {
      best_err = e;
      best = a;
    }
  }
  return best;
}

float percentile_amax(const AbsHistogram& h, double percentile, float max_abs) {
  const std::uint64_t total = h.total();
  if (!total || h.counts.empty()) return max_abs;
  const double want = percentile / 100.0 * static_cast<double>(total);
  double cum = static_cast<double>(h.zeros);
  if (cum >= want) return max_abs;  // degenerate: the percentile is a zero
  for (int b = 0; b < AbsHistogram::kBins; ++b) {
    cum += static_cast<double>(h.counts[b]);
    if (cum >= want) return std::min(max_abs, static_cast<float>(AbsHistogram::lower_edge(b + 1)));
  }
  return max_abs;
}

double clipped_fraction(const AbsHistogram& h, float amax, float max_abs) {
  const std::uint64_t total = h.total();
  if (!total || h.counts.empty()) return 0;
  double above = 0;
  for (int b = 0; b < AbsHistogram::kBins; ++b) {
    if (!h.counts[b]) continue;
    const auto [lo, hi] = bin_range(b, max_abs);
    if (hi <= amax) continue;
    if (lo >= amax) above += static_cast<double>(h.counts[b]);
    else if (hi > amax) above += static_cast<double>(h.counts[b]) * std::log2(hi / amax) / std::log2(hi / lo);
  }
  return above / static_cast<double>(total);
}

CalibrationStats apply_act_scale(const CalibrationStats& stats, const ActScale& method, std::vector<ActScaleChoice>* choices) {
  CalibrationStats out = stats;
  for (auto& [module, amax] : out.input_amax) {
    const auto it = stats.input_hist.find(module);
    const AbsHistogram* h = it == stats.input_hist.end() ? nullptr : &it->second;
    ActScaleChoice c{module, amax, amax, 0};
    if (method.method != ActScaleMethod::kMax) {
      if (!h || h->counts.empty())
        throw ConfigError({module, "no |x| histogram for this Linear's input", "input_hist in the calibration statistics",
                           "amax only (statistics saved before histograms existed?)",
                           "recalibrate (drop --load-calib) or use --act-scale max"});
      c.amax = method.method == ActScaleMethod::kMse ? mse_amax(*h, amax) : percentile_amax(*h, method.percentile, amax);
      // Never 0: a Linear whose input is all zeros keeps its amax (sanitized by the export).
      if (!(c.amax > 0)) c.amax = amax;
    }
    if (h) c.clipped = clipped_fraction(*h, c.amax, amax);
    amax = c.amax;
    if (choices) choices->push_back(c);
  }
  return out;
}

}  // namespace vlq::quant
