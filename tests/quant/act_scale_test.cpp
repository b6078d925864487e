// Activation scales from the calibration histograms (vlq/quant/act_scale.h): the fixed-bin |x| histogram,
// its vlq.calibration/1 JSON (and old files without it), the mse search (a few outliers are clipped, the
// chosen amax lowers the real E4M3 error of the samples), the percentile, and --act-scale parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/quant/act_scale.h"
#include "vlq/quant/calibrate.h"
#include "vlq/quant/calibration_stats.h"

using namespace vlq;
using namespace vlq::quant;

namespace {

// Real squared error of E4M3 quantize-dequantize of the samples with scale amax/448 (the runtime's static
// activation quantization), mean over the samples.
double sample_mse(const std::vector<float>& x, float amax) {
  const float s = amax / kE4M3Max;
  double e = 0;
  for (float v : x) {
    const float d = v - e4m3fn_to_f32(f32_to_e4m3fn_sat(v / s)) * s;
    e += static_cast<double>(d) * d;
  }
  return e / static_cast<double>(x.size());
}

float max_abs(const std::vector<float>& x) {
  float m = 0;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m;
}

}  // namespace

TEST(AbsHistogram, FixedLog2Bins) {
  EXPECT_EQ(AbsHistogram::bin_of(1.0f), 32 * 32);                 // 2^0 starts octave 32 of 64
  EXPECT_EQ(AbsHistogram::bin_of(2.0f), 33 * 32);
  EXPECT_EQ(AbsHistogram::bin_of(std::nextafter(2.0f, 0.0f)), 33 * 32 - 1);
  EXPECT_EQ(AbsHistogram::bin_of(static_cast<float>(std::exp2(1.0 / 32))), 32 * 32 + 1);
  EXPECT_EQ(AbsHistogram::bin_of(std::nextafter(static_cast<float>(std::exp2(1.0 / 32)), 0.0f)), 32 * 32);
  EXPECT_EQ(AbsHistogram::bin_of(0.0f), -1);
  EXPECT_EQ(AbsHistogram::bin_of(1e-12f), -1);                    // below 2^-32
  EXPECT_EQ(AbsHistogram::bin_of(1e30f), AbsHistogram::kBins - 1);
  EXPECT_EQ(AbsHistogram::bin_of(INFINITY), AbsHistogram::kBins - 1);
  EXPECT_DOUBLE_EQ(AbsHistogram::lower_edge(32 * 32), 1.0);
  // Every bin holds what its edges say.
  for (float v : {3e-7f, 0.01f, 0.7f, 1.5f, 13.0f, 448.0f, 9e5f}) {
    const int b = AbsHistogram::bin_of(v);
    EXPECT_LE(AbsHistogram::lower_edge(b), v);
    EXPECT_GT(AbsHistogram::lower_edge(b + 1), v);
  }
  // Merging two halves = one histogram of everything.
  std::vector<float> x = {0.0f, -1.0f, 2.5f, 1e-3f, -7.0f, 3.0f};
  AbsHistogram all, a, b;
  all.add(x.data(), 6);
  a.add(x.data(), 3);
  b.add(x.data() + 3, 3);
  a.merge(b);
  EXPECT_EQ(a, all);
  EXPECT_EQ(all.total(), 6u);
  EXPECT_EQ(all.zeros, 1u);
}

TEST(AbsHistogram, ObserverFillsItAndJsonRoundTrips) {
  AmaxObserver obs;
  std::vector<float> x = {0.5f, -3.0f, 0.0f, 1e-4f, 2.0f, -2.0f};
  obs.on_linear_input("model.language_model.layers.0.mlp.up_proj", x.data(), 2, 3);
  obs.on_kv("model.language_model.layers.0.self_attn", x.data(), x.data(), 2, 3);
  const CalibrationStats& s = obs.stats;
  ASSERT_EQ(s.input_hist.size(), 1u);
  EXPECT_EQ(s.input_hist.begin()->second.total(), 6u);
  EXPECT_EQ(s.input_amax.begin()->second, 3.0f);
  const nlohmann::json j = calibration_stats_to_json(s);
  ASSERT_TRUE(j.contains("input_hist"));
  EXPECT_EQ(j["input_hist"]["model.language_model.layers.0.mlp.up_proj"]["counts"].size(),
            static_cast<std::size_t>(AbsHistogram::bin_of(3.0f) - AbsHistogram::bin_of(1e-4f) + 1));  // sparse: first..last
  EXPECT_EQ(calibration_stats_from_json(j), s);
  // An older file (no input_hist) still reads; a histogram of another layout does not.
  nlohmann::json old = j;
  old.erase("input_hist");
  EXPECT_TRUE(calibration_stats_from_json(old).input_hist.empty());
  nlohmann::json bad = j;
  bad["input_hist"]["model.language_model.layers.0.mlp.up_proj"]["bins_per_octave"] = 16;
  EXPECT_THROW(calibration_stats_from_json(bad), ConfigError);
  bad = j;
  bad["input_hist"]["model.language_model.layers.0.mlp.up_proj"]["first"] = 2047;
  EXPECT_THROW(calibration_stats_from_json(bad), ConfigError);
}

// E4M3 is a float format: in its normal range the relative rounding error does not depend on the scale, so
// clipping only pays when max puts the bulk of |x| into the subnormal range (|x/s| < 2^-6) and the outliers
// are rare enough that their clipping error is smaller than the bulk's subnormal error. A bulk of 10^14
// |N(0,1)| values (the histogram of 2·10^5 samples, counts scaled: no sample vector that large) with three
// values at 10^5: max gives the bulk |x/s| ~ 0.0045 (subnormal); mse clips the outliers.
static AbsHistogram scaled_normal_bulk(double stddev, std::uint64_t factor, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> n(0.0, stddev);
  std::vector<float> x(200000);
  for (auto& v : x) v = static_cast<float>(n(rng));
  AbsHistogram h;
  h.add(x.data(), static_cast<std::int64_t>(x.size()));
  for (auto& c : h.counts) c *= factor;
  h.zeros *= factor;
  return h;
}

TEST(ActScale, MseClipsAFewOutliers) {
  AbsHistogram h = scaled_normal_bulk(1.0, 500'000'000, 11);
  h.counts[AbsHistogram::bin_of(1e5f)] = 3;
  const float a = mse_amax(h, 1e5f);
  EXPECT_LT(a, 1e5f / 4) << "mse must clip the outliers";
  EXPECT_GT(a, 3.0f) << "but not the bulk";
  EXPECT_GT(clipped_fraction(h, a), 0.0);
  EXPECT_LT(clipped_fraction(h, a), 1e-13);
  EXPECT_LT(histogram_fp8_mse(h, a, 1e5f), 0.5 * histogram_fp8_mse(h, 1e5f, 1e5f));
  // Three outliers among only 2·10^5 values: clipping any would cost more than the bulk's error, so mse keeps
  // max exactly (the search starts at max and keeps it on ties) — and on the samples themselves max is the
  // better choice of the two.
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> x(200000);
  for (auto& v : x) v = n(rng);
  for (int i = 0; i < 3; ++i) x[i * 1000] = 1e5f;
  AbsHistogram few;
  few.add(x.data(), static_cast<std::int64_t>(x.size()));
  EXPECT_EQ(mse_amax(few, max_abs(x)), max_abs(x));
  EXPECT_LT(sample_mse(x, max_abs(x)), sample_mse(x, max_abs(x) / 4));
  // percentile clips them regardless of the cost.
  EXPECT_LT(percentile_amax(few, 99.99, max_abs(x)), 10.0f);
}

// Without outliers nothing is gained by clipping hard: mse stays within a few percent of max, and its
// real error is no worse than max's.
TEST(ActScale, MseKeepsCloseToMaxWithoutOutliers) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(100000);
  for (auto& v : x) v = u(rng);
  AbsHistogram h;
  h.add(x.data(), static_cast<std::int64_t>(x.size()));
  const float mx = max_abs(x);
  const float a = mse_amax(h, mx);
  EXPECT_GT(a, 0.85f * mx);
  EXPECT_LE(a, mx);
  EXPECT_LE(sample_mse(x, a), sample_mse(x, mx) * 1.001);
}

TEST(ActScale, Percentile) {
  std::vector<float> x(100000);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i + 1) / 1000.0f;  // uniform 0.001..100
  AbsHistogram h;
  h.add(x.data(), static_cast<std::int64_t>(x.size()));
  const float p99 = percentile_amax(h, 99.0, 100.0f);
  EXPECT_GE(p99, 99.0f);
  EXPECT_LE(p99, 99.0f * 1.022f);  // the upper edge of the percentile's bin (bins are 2^(1/32) = 2.2 % wide)
  EXPECT_EQ(percentile_amax(h, 100.0, 100.0f), 100.0f);  // capped at the observed max
  EXPECT_NEAR(clipped_fraction(h, 50.0f), 0.5, 0.01);
}

TEST(ActScale, ApplyReplacesOnlyInputAmax) {
  AmaxObserver obs;
  std::vector<float> x(10000, 1.0f);
  x[0] = 1e6f;
  obs.on_linear_input("m.q", x.data(), 100, 100);
  obs.on_kv("m", x.data(), x.data(), 100, 100);
  // the histogram's bulk made large enough for mse to clip (see MseClipsAFewOutliers)
  obs.stats.input_hist["m.q"] = scaled_normal_bulk(0.5, 500'000'000, 5);
  obs.stats.input_hist["m.q"].counts[AbsHistogram::bin_of(1e6f)] += 1;
  // max: the statistics unchanged (the export's bytes then are today's; see QuantExport.ActScaleMax*).
  std::vector<ActScaleChoice> ch;
  EXPECT_EQ(apply_act_scale(obs.stats, ActScale{}, &ch), obs.stats);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].amax, 1e6f);
  EXPECT_EQ(ch[0].clipped, 0.0);
  const CalibrationStats m = apply_act_scale(obs.stats, parse_act_scale("mse"));
  EXPECT_LT(m.input_amax.at("m.q"), 1e5f);
  EXPECT_EQ(m.k_amax, obs.stats.k_amax);  // KV scales stay max
  EXPECT_EQ(m.v_amax, obs.stats.v_amax);
  const CalibrationStats p = apply_act_scale(obs.stats, parse_act_scale("percentile:99.9"));
  EXPECT_LT(p.input_amax.at("m.q"), 2.0f);
  // Statistics without histograms (an old --save-calib file) cannot give mse/percentile.
  CalibrationStats old = obs.stats;
  old.input_hist.clear();
  EXPECT_THROW(apply_act_scale(old, parse_act_scale("mse")), ConfigError);
  EXPECT_EQ(apply_act_scale(old, ActScale{}).input_amax, old.input_amax);
}

TEST(ActScale, Parse) {
  EXPECT_EQ(parse_act_scale("max").method, ActScaleMethod::kMax);
  EXPECT_EQ(parse_act_scale("mse").name(), "mse");
  EXPECT_EQ(parse_act_scale("percentile").name(), "percentile:99.99");
  EXPECT_EQ(parse_act_scale("percentile:99.9").percentile, 99.9);
  EXPECT_EQ(parse_act_scale("percentile:100").name(), "percentile:100");
  for (const char* bad : {"foo", "", "MSE", "percentile:", "percentile:0", "percentile:101", "percentile:9x", "percentile:-1"})
    EXPECT_THROW(parse_act_scale(bad), UsageError) << bad;
  try {
    parse_act_scale("foo");
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("max, mse, percentile"), std::string::npos) << e.what();
  }
}
