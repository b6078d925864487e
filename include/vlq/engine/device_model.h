// Where a model runs: the `--device cpu|cuda|auto` choice and DeviceModel, one loaded model on one device
// that runs one sequence at a time (prefill, then decode), reused across prompts by `vlq generate` and
// `vlq eval`. CPU: model::Qwen2_5_VL (the exact reference path). CUDA: model_cuda::Qwen2_5_VLCuda (weights
// in stored dtype on the GPU, paged KV cache); present only when vlq was built with VLQ_CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "vlq/image/image_processor.h"
#include "vlq/model/observer.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/ops/tensor.h"

namespace vlq::engine {

enum class Device { kCpu, kCuda };
const char* device_name(Device d) noexcept;  // "cpu" | "cuda"

// True when this build has the CUDA runtime and a CUDA device is visible (never throws).
bool cuda_device_available() noexcept;

// Parses a --device value: "cpu", "cuda", or "auto" (cuda when cuda_device_available(), else cpu).
// Throws UsageError naming `flag` for other values, UnsupportedError for "cuda" in a build without CUDA
// (hint: rebuild with nvcc / -DVLQ_CUDA=ON, or --device cpu) or where no CUDA device is visible (hint: --device
// cpu or auto), so that every command refuses an impossible --device cuda before any work.
Device parse_device(std::string_view value, const std::string& flag = "--device");

class DeviceModel {
 public:
  // `model` must outlive the DeviceModel (the CUDA path embeds prompts and runs the vision tower through
  // it). Throws UnsupportedError (CUDA not built; a Linear the CUDA path cannot run, named) and CudaError.
  // tensor_parallel > 1 (CUDA only): the model is sharded over GPUs 0..N-1 (model_cuda/tensor_parallel.h);
  // UsageError on the CPU or for N < 1.
  static std::unique_ptr<DeviceModel> create(const model::Qwen2_5_VL& model, Device device, int tensor_parallel = 1);
  virtual ~DeviceModel() = default;

  virtual Device device() const = 0;
  // Starts a new sequence with room for `capacity` positions (prompt + new tokens), dropping the last one.
  virtual void begin(std::int64_t capacity) = 0;
  // Prompt ids [S] (+ images) → logits [K, V] of the last K positions. `obs` is honoured on the CPU only.
  virtual ops::Matrix prefill(std::span<const std::int32_t> ids, const image::ProcessedImages* images,
                              std::int64_t logits_last_k, model::ForwardObserver* obs = nullptr) = 0;
  // Whether prefill_raw preprocesses raw images on the device (the CUDA model); false: engine::generate
  // preprocesses a deferred prompt's images on the CPU and calls prefill.
  virtual bool preprocesses_images() const { return false; }
  // prefill with raw images (image::plan_images) preprocessed by the device. UnsupportedError where
  // preprocesses_images() is false.
  virtual ops::Matrix prefill_raw(std::span<const std::int32_t> ids, const image::RawImages& images,
                                  std::int64_t logits_last_k);
  // One token → logits [1, V].
  virtual ops::Matrix decode(std::int32_t id, model::ForwardObserver* obs = nullptr) = 0;
};

}  // namespace vlq::engine
