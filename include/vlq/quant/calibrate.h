// Max calibration on the CPU runtime, exactly as ModelOpt's max calibrator: runs each calibration sample
// through the model and keeps, per Linear, the running max |input| over every token, and per attention
// layer the max |K| (after RoPE) and max |V| as they enter the KV cache / attention.
// Spec: ../shared/docs/fp8-checkpoint-formats.md §1 (amax → scale = amax / 448); ModelOpt
// `MaxCalibrator` (per-tensor amax = max over all calibration tokens).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "vlq/engine/prompt.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/quant/calib_data.h"
#include "vlq/quant/calibration_stats.h"

namespace vlq::quant {

struct CalibrateOptions {
  std::int64_t seq_len = 512;         // text samples are cut to this many tokens; image samples are kept whole
  bool lm_head = false;               // also observe lm_head's input over every position (only if quantized)
  std::function<void(std::size_t done, std::size_t total)> progress;  // CPU: after each sample; CUDA: each layer
};

// Runs `samples` (text: raw tokens without a chat template, as ModelOpt's text calibration does;
// image+caption: calib_sample_messages through the chat template with the image) and returns the amax
// statistics keyed by canonical module names. Throws UsageError for an empty sample list, and what the
// image reader / prompt builder throw (naming the sample's source).
CalibrationStats calibrate(const model::Qwen2_5_VL& model, const engine::PromptBuilder& prompts,
                           const std::vector<CalibSample>& samples, const CalibrateOptions& options = {});

// The prompt a calibration sample is fed as (see calibrate()): text → raw tokens cut to seq_len; image +
// caption → the chat template with the image. Errors as calibrate()'s, naming the sample's source.
// Shared by calibrate() and calibrate_cuda() (vlq/quant/calibrate_cuda.h).
engine::Prompt calib_prompt(const engine::PromptBuilder& prompts, const CalibSample& sample, std::int64_t seq_len);

// The same observer, usable with any forward pass (eval --per-layer, tests). Per Linear input it also adds
// every |x| to CalibrationStats::input_hist (histograms = false: amax only).
class AmaxObserver : public model::ForwardObserver {
 public:
  void on_linear_input(const std::string& module, const float* x, std::int64_t rows, std::int64_t cols) override;
  void on_kv(const std::string& attention, const float* k, const float* v, std::int64_t rows, std::int64_t width) override;
  CalibrationStats stats;
  bool histograms = true;
};

}  // namespace vlq::quant
