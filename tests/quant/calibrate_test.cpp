// Calibration fidelity: vlq's max calibration (CPU runtime, f32) on the exact calibration inputs that the
// committed ModelOpt exports were calibrated on (tests/data/ref_exports/calib) gives the amax ModelOpt
// recorded for every input quantizer and K/V bmm quantizer (provenance.json), within the difference
// between a BF16 forward (ModelOpt's) and vlq's f32 forward. Also: the AmaxObserver and calibrate()'s
// errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"
#include "vlq/formats/names.h"
#include "vlq/image/image.h"
#include "vlq/image/image_processor.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/quant/calibrate.h"

namespace fs = std::filesystem;
using namespace vlq;

namespace {

const fs::path kRef = fs::path(VLQ_SOURCE_DIR) / "tests/data/ref_exports";

nlohmann::json read_json(const fs::path& p) {
  nlohmann::json j;
  std::ifstream(p) >> j;
  return j;
}

// Runs the calibration samples of calib.json (ids given; pixel_values from the PNGs) through base-bf16.
quant::CalibrationStats run_calib(bool images, bool texts) {
  const model::Qwen2_5_VL m = model::Qwen2_5_VL::load(kRef / "base-bf16");
  const auto calib = read_json(kRef / "calib/calib.json");
  quant::AmaxObserver obs;
  const auto params = image::image_processor_params_from_config(*m.files().preprocessor);
  if (images)
    for (const auto& s : calib["image_samples"]) {
      const std::vector<std::int32_t> ids = s["input_ids"].get<std::vector<std::int32_t>>();
      const auto img = image::load_image(kRef / "calib" / s["image"].get<std::string>());
      const auto pv = image::preprocess_image(img, params);
      EXPECT_EQ(pv.grid_thw[0][1], s["image_grid_thw"][1].get<std::int64_t>());
      model::Session sess = m.new_session(static_cast<std::int64_t>(ids.size()));
      m.prefill(sess, ids, &pv, 0, &obs);
    }
  if (texts)
    for (const auto& s : calib["text_samples"]) {
      const std::vector<std::int32_t> ids = s.get<std::vector<std::int32_t>>();
      model::Session sess = m.new_session(static_cast<std::int64_t>(ids.size()));
      m.prefill(sess, ids, nullptr, 0, &obs);
    }
  return obs.stats;
}

struct Compared {
  int n = 0;
  double worst = 0;
  std::string worst_name;
};

// ModelOpt names: "<module>.input_quantizer", "<attention>.k_bmm_quantizer" / ".v_bmm_quantizer".
Compared compare(const quant::CalibrationStats& st, const nlohmann::json& log, double tol, bool skip_patch_embed) {
  Compared c;
  for (const auto& e : log["enabled_quantizers_with_amax"]) {
    const std::string q = e[0].get<std::string>();
    const double want = e[1].get<double>();
    const auto dot = q.rfind('.');
    const std::string module = formats::canonical_name(q.substr(0, dot)), kind = q.substr(dot + 1);
    const std::map<std::string, float>* map = nullptr;
    if (kind == "input_quantizer") map = &st.input_amax;
    else if (kind == "k_bmm_quantizer") map = &st.k_amax;
    else if (kind == "v_bmm_quantizer") map = &st.v_amax;
    else continue;  // weight quantizers: amax of the weight, checked by the export tests
    if (skip_patch_embed && module == "model.visual.patch_embed.proj") continue;
    auto it = map->find(module);
    EXPECT_NE(it, map->end()) << "vlq calibration has no amax for " << q;
    if (it == map->end()) continue;
    const double rel = std::fabs(it->second - want) / want;
    EXPECT_LE(rel, tol) << q << ": vlq " << it->second << " vs ModelOpt " << want;
    if (rel > c.worst) {
      c.worst = rel;
      c.worst_name = q;
    }
    ++c.n;
  }
  return c;
}

// ModelOpt ran the BF16 model (activations rounded to BF16 after every op, amax itself a BF16 value);
// vlq runs f32. Both see the same inputs; 2 % covers BF16's 2^-8 relative step compounded over the
// tiny model's layers (observed worst case 1.1 %, printed).
constexpr double kTol = 0.02;

TEST(QuantCalibrate, MatchesModelOpt035WholeVlmImageCalibration) {
  const auto st = run_calib(true, false);
  const auto prov = read_json(kRef / "modelopt-vlm-fp8-kv/provenance.json");
  const Compared c = compare(st, prov["log"], kTol, false);
  EXPECT_GT(c.n, 30);
  std::cout << "[ModelOpt 0.35 VLM] " << c.n << " amax compared, worst relative difference " << c.worst << " ("
            << c.worst_name << ")\n";
  EXPECT_EQ(st.samples, 0);  // the observer alone does not count samples
}

TEST(QuantCalibrate, MatchesModelOpt047LanguageModelTextCalibration) {
  const auto st = run_calib(false, true);
  const auto prov = read_json(kRef / "modelopt047-lm-fp8-kv/provenance.json");
  const Compared c = compare(st, prov["log"], kTol, true);
  EXPECT_GT(c.n, 10);
  std::cout << "[ModelOpt 0.47 LM] " << c.n << " amax compared, worst relative difference " << c.worst << " ("
            << c.worst_name << ")\n";
}

TEST(QuantCalibrate, EmptySampleListIsAnError) {
  const model::Qwen2_5_VL m = model::Qwen2_5_VL::load(kRef / "base-bf16");
  engine::PromptBuilder pb;
  EXPECT_THROW(quant::calibrate(m, pb, {}), UsageError);
}

TEST(QuantCalibrate, ObserverKeepsRunningMaximum) {
  quant::AmaxObserver o;
  const float a[3] = {1, -5, 2}, b[2] = {-3, 4};
  o.on_linear_input("m", a, 1, 3);
  o.on_linear_input("m", b, 1, 2);
  EXPECT_EQ(o.stats.input_amax["m"], 5.0f);
  o.on_kv("att", a, b, 1, 2);
  EXPECT_EQ(o.stats.k_amax["att"], 5.0f);
  EXPECT_EQ(o.stats.v_amax["att"], 4.0f);
}

}  // namespace
