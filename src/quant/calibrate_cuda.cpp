// Layer-sequential max calibration on the CUDA runtime (see vlq/quant/calibrate_cuda.h): prompts built on
// host threads, images batched through the device vision tower, then model_cuda::LayerwiseCalibrator over
// the language model; its taps become CalibrationStats keyed by canonical names.
#include "vlq/quant/calibrate_cuda.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <thread>

#include "vlq/core/error.h"
#include "vlq/formats/names.h"
#include "vlq/model/rope_index.h"
#ifdef VLQ_HAVE_CUDA
#include "vlq/model_cuda/layerwise.h"
#endif

namespace vlq::quant {

model::WeightFilter calibrate_cuda_weight_filter() {
  const std::string v = std::string(formats::kCanonicalVisionRoot) + ".";
  return [v](const std::string& canonical) { return canonical.rfind(v, 0) == 0; };
}

#ifndef VLQ_HAVE_CUDA
CalibrationStats calibrate_cuda(const model::Qwen2_5_VL&, const io::Checkpoint&, const engine::PromptBuilder&,
                                const std::vector<CalibSample>&, const CalibrateOptions&, int, CudaCalibrateReport*) {
  throw UnsupportedError({"--device cuda", "this vlq was built without the CUDA runtime", "a build with VLQ_CUDA=ON",
                          "CPU-only build", "rebuild with nvcc installed (scripts/build), or use --device cpu"});
}
#else

namespace {

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// calib_prompt over all samples on host threads; the first failing sample (in sample order) is rethrown.
std::vector<engine::Prompt> build_prompts(const engine::PromptBuilder& pb, const std::vector<CalibSample>& samples,
                                          std::int64_t seq_len) {
  std::vector<engine::Prompt> out(samples.size());
  std::vector<std::exception_ptr> errors(samples.size());
  std::atomic<std::size_t> next{0};
  const unsigned n = std::clamp(std::thread::hardware_concurrency(), 1u, 16u);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < n; ++t)
    pool.emplace_back([&] {
      for (std::size_t i; (i = next++) < samples.size();) {
        try {
          out[i] = calib_prompt(pb, samples[i], seq_len);
        } catch (...) {
          errors[i] = std::current_exception();
        }
      }
    });
  for (auto& th : pool) th.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out;
}

constexpr std::int64_t kVisionBatchPatches = 32768;  // patches per vision-tower call

}  // namespace

CalibrationStats calibrate_cuda(const model::Qwen2_5_VL& model, const io::Checkpoint& ckpt,
                                const engine::PromptBuilder& prompts, const std::vector<CalibSample>& samples,
                                const CalibrateOptions& options, int device, CudaCalibrateReport* report) {
  if (samples.empty())
    throw UsageError({"calibration", "no calibration samples", "at least one", "0",
                      "pass --calib-text FILE and/or --calib-images DIR"});
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<engine::Prompt> ps = build_prompts(prompts, samples, options.seq_len);
  ps.erase(std::remove_if(ps.begin(), ps.end(), [](const engine::Prompt& p) { return p.ids.empty(); }), ps.end());
  if (ps.empty())
    throw UsageError({"calibration", "every calibration sample tokenized to nothing", "at least one token", "0", ""});
  const double prompt_s = since(t0);

  model_cuda::LayerwiseOptions lo;
  lo.device = device;
  lo.lm_head_input = options.lm_head;
  static_assert(AbsHistogram::kBinsPerOctave == cuda::AbsHistLayout::kBinsPerOctave);
  lo.hist_layout.min_log2 = AbsHistogram::kMinLog2;
  lo.hist_layout.max_log2 = AbsHistogram::kMaxLog2;
  for (int j = 0; j < AbsHistogram::kBinsPerOctave; ++j) lo.hist_layout.sub_bin_thresholds[j] = AbsHistogram::sub_bin_threshold(j);
  if (options.progress)
    lo.progress = [&](int done, int total, double) { options.progress(static_cast<std::size_t>(done), static_cast<std::size_t>(total)); };
  model_cuda::LayerwiseCalibrator cal(ckpt, model, lo);

  // Images: batches of whole prompts' pixels through the vision tower; features stay on the host per prompt.
  const auto& cfg = model.config();
  const std::int64_t unit = cfg.vision.spatial_merge_size * cfg.vision.spatial_merge_size;
  std::vector<ops::Matrix> features(ps.size());
  for (std::size_t i = 0; i < ps.size();) {
    if (ps[i].images.n_patches == 0) { ++i; continue; }
    std::vector<std::size_t> group;
    std::int64_t patches = 0;
    for (std::size_t j = i; j < ps.size() && (group.empty() || patches + ps[j].images.n_patches <= kVisionBatchPatches); ++j) {
      if (ps[j].images.n_patches == 0) continue;
      group.push_back(j);
      patches += ps[j].images.n_patches;
      i = j + 1;
    }
    const std::int64_t pd = ps[group[0]].images.patch_dim;
    std::vector<float> px;
    px.reserve(static_cast<std::size_t>(patches * pd));
    std::vector<model::GridThw> grid;
    for (std::size_t j : group) {
      px.insert(px.end(), ps[j].images.pixel_values.begin(), ps[j].images.pixel_values.end());
      grid.insert(grid.end(), ps[j].images.grid_thw.begin(), ps[j].images.grid_thw.end());
    }
    const ops::Matrix out = cal.encode_images(px.data(), patches, pd, grid);
    std::int64_t row = 0;
    for (std::size_t j : group) {
      const std::int64_t r = ps[j].images.n_patches / unit;
      features[j] = ops::Matrix(r, out.cols);
      std::copy(out.row(row), out.row(row) + r * out.cols, features[j].data.begin());
      row += r;
    }
  }

  // Language model: every prompt as one sequence with its M-RoPE positions.
  std::vector<model_cuda::LayerwiseSequence> seqs(ps.size());
  CalibrationStats stats;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    const engine::Prompt& p = ps[i];
    const std::vector<model::GridThw> grid(p.images.grid_thw.begin(), p.images.grid_thw.end());
    const model::RopeIndex ri = model::get_rope_index(p.ids, grid, cfg.tokens.image_token_id, cfg.tokens.video_token_id,
                                                      cfg.vision.spatial_merge_size);
    seqs[i].ids = p.ids;
    seqs[i].positions.assign(ri.positions.begin(), ri.positions.end());
    if (p.images.n_patches) {
      seqs[i].image_features = features[i].data.data();
      seqs[i].image_rows = features[i].rows;
    }
    const std::int64_t S = static_cast<std::int64_t>(p.ids.size());
    stats.samples += 1;
    stats.image_tokens += p.image_tokens;
    stats.text_tokens += S - p.image_tokens;
  }
  cal.run_language_model(seqs);

  for (const auto& [name, t] : cal.linear_inputs()) {
    stats.input_amax[name] = t.amax;
    AbsHistogram h;
    h.counts = t.counts;
    h.zeros = t.below;
    if (!h.counts.empty()) stats.input_hist[name] = std::move(h);
  }
  stats.k_amax = cal.k_amax();
  stats.v_amax = cal.v_amax();
  if (report) {
    const model_cuda::LayerwiseReport r = cal.report();
    report->peak_device_bytes = r.peak_device_bytes;
    report->residual_bytes = r.residual_bytes;
    report->residual_on_host = r.residual_on_host;
    report->rows = r.rows;
    report->chunks = r.chunks;
    report->prompt_seconds = prompt_s;
    report->vision_seconds = r.vision_seconds;
    report->lm_seconds = r.lm_seconds;
    report->weight_read_seconds = r.weight_read_seconds;
  }
  return stats;
}

#endif  // VLQ_HAVE_CUDA

}  // namespace vlq::quant
