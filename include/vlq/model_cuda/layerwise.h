// Layer-sequential calibration forward of Qwen2.5-VL on one CUDA device (vlq quantize --device cuda, issue
// #13): the residual stream of every calibration token stays on the device (f32; in pinned host memory when it
// does not fit, said in report()), ONE decoder layer at a time is read from the checkpoint (BF16) into device
// memory, every calibration sequence runs through it in chunks, and the max |x| and |x| histogram of each
// Linear input and of K (after M-RoPE) / V are recorded on the device; then the layer is freed. GPU memory ≈
// residual stream + one layer + one chunk's workspace; host memory ≈ the vision tower (f32, decoded by the
// caller's model) + one tensor. The vision tower (~0.7 B parameters at every Qwen2.5-VL size) is resident
// while images are encoded.
//
// Numerics: the CUDA runtime's (qwen2_5_vl_cuda.h): BF16 GEMM inputs with f32 accumulation, f32 residual
// stream and K/V; Linear-input statistics are of the BF16-rounded values the GEMMs consume (amax within 0.4 %
// of the f32 value by rounding alone). CPU reference: quant::calibrate (model::Qwen2_5_VL::prefill with
// quant::AmaxObserver); tests/cuda/calibrate_cuda_test.cc compares the two.
// Spec: ModelOpt MaxCalibrator (per-tensor amax over all calibration tokens); ../shared/docs/qwen2_5_vl.md §4.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "vlq/cuda/reduce.h"
#include "vlq/io/safetensors.h"
#include "vlq/model/qwen2_5_vl.h"

namespace vlq::model_cuda {

// What one tap recorded: max |x| and, when histograms are on, counts per bin of the layout and the number
// of |x| below 2^min_log2 (quant::AbsHistogram's counts / zeros).
struct TapStats {
  float amax = 0.0f;
  std::vector<std::uint64_t> counts;
  std::uint64_t below = 0;
};

// One calibration sequence: ids [S], M-RoPE positions [3, S] (model::get_rope_index), and, when it holds
// images, the features of its image-pad tokens in order ([image_rows, hidden_size] host f32, encode_images'
// output rows of its images).
struct LayerwiseSequence {
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> positions;
  const float* image_features = nullptr;
  std::int64_t image_rows = 0;
};

struct LayerwiseOptions {
  int device = 0;
  std::int64_t chunk_tokens = 16384;   // rows per pass through a layer (whole sequences; a longer one runs alone)
  bool histograms = true;              // also the |x| histograms (layout below)
  cuda::AbsHistLayout hist_layout;
  bool lm_head_input = false;          // also record lm_head's input (the final RMSNorm output) over every row
  std::size_t residual_budget_bytes = 0;  // residual stream kept on the device if it fits (0: free memory − 8 GiB)
  // After each decoder layer: layers done, layers in all, seconds since run_language_model started.
  std::function<void(int done, int total, double seconds)> progress;
};

struct LayerwiseReport {
  std::size_t peak_device_bytes = 0;  // max (total − free) device memory seen (includes other processes' use)
  std::size_t residual_bytes = 0;     // the residual stream (rows × hidden × 4)
  bool residual_on_host = false;      // spilled to pinned host memory (did not fit the budget)
  std::int64_t rows = 0, chunks = 0;
  double vision_seconds = 0, lm_seconds = 0, weight_read_seconds = 0;
};

class LayerwiseCalibrator {
 public:
  // `ckpt` is the checkpoint folder `model` was loaded from; `model` needs only the vision tower decoded
  // (engine::BundleOptions::decode_weights); both must outlive this object. Throws CudaError (no device,
  // out of memory), UnsupportedError (an FP8 or otherwise non-float Linear: calibration needs a BF16/F16/F32
  // checkpoint; head_dim the kernels do not support).
  LayerwiseCalibrator(const io::Checkpoint& ckpt, const model::Qwen2_5_VL& model, const LayerwiseOptions& options);
  ~LayerwiseCalibrator();
  LayerwiseCalibrator(const LayerwiseCalibrator&) = delete;
  LayerwiseCalibrator& operator=(const LayerwiseCalibrator&) = delete;

  // Vision features of the images (Qwen2_5_VLCuda::encode_images' contract: pixel_values [n, patch_dim] f32
  // host of one or more images, their grids; returns [n / merge², out_hidden_size] f32 host), recording the
  // vision tower's taps. UsageError when the model has no vision tower or the sizes disagree.
  ops::Matrix encode_images(const float* pixel_values, std::int64_t n, std::int64_t patch_dim,
                            const std::vector<model::GridThw>& grid_thw);
  // Runs every sequence through the language model, layer by layer, recording its taps. Call once.
  // UsageError for an empty list, ids outside the vocabulary, image rows that do not match the image-pad tokens.
  void run_language_model(const std::vector<LayerwiseSequence>& sequences);

  // Statistics by canonical module name (formats/names.h): Linear → its input; attention module
  // ("...layers.0.self_attn", "model.visual.blocks.0.attn") → K and V.
  const std::map<std::string, TapStats>& linear_inputs();
  const std::map<std::string, float>& k_amax();
  const std::map<std::string, float>& v_amax();
  LayerwiseReport report() const;

  struct State;

 private:
  void collect_vision();  // folds the vision taps (accumulated over encode_images calls) into the maps
  std::unique_ptr<State> s_;
};

}  // namespace vlq::model_cuda
