// Max calibration over calibration samples on the CPU runtime (see vlq/quant/calibrate.h).
#include "vlq/quant/calibrate.h"

#include <algorithm>
#include <cmath>

#include "vlq/core/error.h"
#include "vlq/engine/messages.h"

namespace vlq::quant {

namespace {
float max_abs(const float* x, std::int64_t n) {
  float m = 0.0f;
#pragma omp parallel for reduction(max : m) schedule(static) if (n > (1 << 18))
  for (std::int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}
void update(std::map<std::string, float>& m, const std::string& k, float v) {
  auto [it, fresh] = m.emplace(k, v);
  if (!fresh) it->second = std::max(it->second, v);
}
}  // namespace

void AmaxObserver::on_linear_input(const std::string& module, const float* x, std::int64_t rows, std::int64_t cols) {
  update(stats.input_amax, module, max_abs(x, rows * cols));
  if (histograms) stats.input_hist[module].add(x, rows * cols);
}

void AmaxObserver::on_kv(const std::string& attention, const float* k, const float* v, std::int64_t rows,
                         std::int64_t width) {
  update(stats.k_amax, attention, max_abs(k, rows * width));
  update(stats.v_amax, attention, max_abs(v, rows * width));
}

engine::Prompt calib_prompt(const engine::PromptBuilder& prompts, const CalibSample& s, std::int64_t seq_len) {
  engine::Prompt p;
  try {
    if (s.kind == CalibKind::kText) {
      p = prompts.build_raw(s.text);
      if (static_cast<std::int64_t>(p.ids.size()) > seq_len) p.ids.resize(static_cast<std::size_t>(seq_len));
    } else {
      const image::RgbImage img = image::load_image(s.image_path);
      p = prompts.build(calib_sample_messages(s), std::span<const image::RgbImage>(&img, 1), false);
    }
  } catch (const Error& e) {
    // Same error type (exit code), with the sample's source in front unless the message already names it.
    auto info = e.info();
    const std::string ctx = s.kind == CalibKind::kImageCaption ? s.image_path.string() : s.source;
    if (info.where.find(ctx) == std::string::npos) info.where = ctx + ": " + info.where;
    if (dynamic_cast<const FormatError*>(&e)) throw FormatError(info);
    if (dynamic_cast<const IoError*>(&e)) throw IoError(info);
    if (dynamic_cast<const ConfigError*>(&e)) throw ConfigError(info);
    if (dynamic_cast<const UnsupportedError*>(&e)) throw UnsupportedError(info);
    throw UsageError(info);
  }
  return p;
}

CalibrationStats calibrate(const model::Qwen2_5_VL& model, const engine::PromptBuilder& prompts,
                           const std::vector<CalibSample>& samples, const CalibrateOptions& options) {
  if (samples.empty())
    throw UsageError({"calibration", "no calibration samples", "at least one", "0",
                      "pass --calib-text FILE and/or --calib-images DIR"});
  AmaxObserver obs;
  std::size_t done = 0;
  for (const CalibSample& s : samples) {
    const engine::Prompt p = calib_prompt(prompts, s, options.seq_len);
    if (p.ids.empty()) continue;
    const std::int64_t S = static_cast<std::int64_t>(p.ids.size());
    model::Session sess = model.new_session(S);
    model.prefill(sess, p.ids, p.images.n_patches ? &p.images : nullptr, options.lm_head ? S : 0, &obs);
    obs.stats.samples += 1;
    obs.stats.image_tokens += p.image_tokens;
    obs.stats.text_tokens += S - p.image_tokens;
    ++done;
    if (options.progress) options.progress(done, samples.size());
  }
  return obs.stats;
}

}  // namespace vlq::quant
