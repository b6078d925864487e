// Max calibration on the CUDA runtime, layer-sequential (vlq quantize --device cuda; issue #13): the same
// samples, prompts and statistics as quant::calibrate (calibrate.h), computed by model_cuda's
// LayerwiseCalibrator (vlq/model_cuda/layerwise.h): images through the resident vision tower, then every
// decoder layer streamed from the checkpoint once, all samples through it. GPU memory ≈ the residual stream of
// all calibration tokens (f32; pinned host memory if it does not fit) + one layer; host memory ≈ the vision
// tower + one tensor, so a 72B checkpoint calibrates on one 80 GB card.
// Agreement with the CPU calibration: amax within ~1 % (BF16 GEMM inputs); histograms of the BF16-rounded
// values. Spec: ModelOpt MaxCalibrator; ../shared/docs/fp8-checkpoint-formats.md §1.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vlq/engine/prompt.h"
#include "vlq/io/safetensors.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/quant/calibrate.h"

namespace vlq::quant {

// What the run used (for the log, --json and docs/performance.md).
struct CudaCalibrateReport {
  std::size_t peak_device_bytes = 0;   // max (total − free) device memory seen
  std::size_t residual_bytes = 0;      // the calibration tokens' residual stream
  bool residual_on_host = false;       // it did not fit on the device and lived in pinned host memory
  std::int64_t rows = 0, chunks = 0;   // calibration tokens; passes per layer
  double prompt_seconds = 0, vision_seconds = 0, lm_seconds = 0, weight_read_seconds = 0;
};

// The weights calibrate_cuda needs decoded on the host (engine::BundleOptions::decode_weights): the vision
// tower only (the decoder layers are read from the checkpoint one at a time).
model::WeightFilter calibrate_cuda_weight_filter();

// Calibrates `model` (loaded from `ckpt` with at least calibrate_cuda_weight_filter()'s tensors decoded) on
// GPU `device`. options.progress is called after each decoder layer (done, total layers). Throws what
// calibrate() throws for the samples, CudaError (no device, out of memory), UnsupportedError (a build
// without CUDA; a non-float input checkpoint).
CalibrationStats calibrate_cuda(const model::Qwen2_5_VL& model, const io::Checkpoint& ckpt,
                                const engine::PromptBuilder& prompts, const std::vector<CalibSample>& samples,
                                const CalibrateOptions& options = {}, int device = 0,
                                CudaCalibrateReport* report = nullptr);

}  // namespace vlq::quant
