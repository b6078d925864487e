// DeviceModel on the CPU (model::Qwen2_5_VL sessions) and, in CUDA builds, on the GPU
// (model_cuda::Qwen2_5_VLCuda); the --device parser. See vlq/engine/device_model.h.
#include "vlq/engine/device_model.h"

#include "vlq/core/error.h"
#ifdef VLQ_HAVE_CUDA
#include "vlq/cuda/device.h"
#include "vlq/model_cuda/qwen2_5_vl_cuda.h"
#include "vlq/model_cuda/tensor_parallel.h"
#endif

namespace vlq::engine {

const char* device_name(Device d) noexcept { return d == Device::kCuda ? "cuda" : "cpu"; }

bool cuda_device_available() noexcept {
#ifdef VLQ_HAVE_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

Device parse_device(std::string_view v, const std::string& flag) {
  if (v == "cpu") return Device::kCpu;
  if (v == "auto") return cuda_device_available() ? Device::kCuda : Device::kCpu;
  if (v == "cuda") {
#ifndef VLQ_HAVE_CUDA
    throw UnsupportedError({flag, "this vlq was built without the CUDA runtime", "a build with VLQ_CUDA=ON (nvcc found)",
                            "a build without it",
                            "use --device cpu, or rebuild where nvcc is installed (remove build/ first if it was "
                            "configured with -DVLQ_CUDA=OFF, then scripts/build)"});
#endif
    if (!cuda_device_available())
      throw UnsupportedError({flag + " cuda", "no CUDA device is visible", "a GPU", "none",
                              "run with --device cpu (or --device auto), or on a machine with a GPU"});
    return Device::kCuda;
  }
  throw UsageError({flag, "unknown device", "cpu, cuda or auto", std::string(v), "e.g. --device cpu"});
}

ops::Matrix DeviceModel::prefill_raw(std::span<const std::int32_t>, const image::RawImages&, std::int64_t) {
  throw UnsupportedError({"prefill_raw", "this device does not preprocess images itself", "--device cuda",
                          device_name(device()), "preprocess on the CPU (image::preprocess_images) and call prefill"});
}

namespace {

class CpuModel final : public DeviceModel {
 public:
  explicit CpuModel(const model::Qwen2_5_VL& m) : m_(m) {}
  Device device() const override { return Device::kCpu; }
  void begin(std::int64_t capacity) override { s_ = m_.new_session(capacity); }
  ops::Matrix prefill(std::span<const std::int32_t> ids, const image::ProcessedImages* images, std::int64_t k,
                      model::ForwardObserver* obs) override {
    return m_.prefill(s_, ids, images, k, obs);
  }
  ops::Matrix decode(std::int32_t id, model::ForwardObserver* obs) override { return m_.decode(s_, id, obs); }

 private:
  const model::Qwen2_5_VL& m_;
  model::Session s_;
};

#ifdef VLQ_HAVE_CUDA
class CudaModel final : public DeviceModel {
 public:
  CudaModel(const model::Qwen2_5_VL& m, int tp) : gpu_(m, tp) {}
  Device device() const override { return Device::kCuda; }
  void begin(std::int64_t capacity) override {
    gpu_.release(seq_);
    capacity_ = capacity;
  }
  ops::Matrix prefill(std::span<const std::int32_t> ids, const image::ProcessedImages* images, std::int64_t k,
                      model::ForwardObserver*) override {
    return gpu_.prefill(seq_, ids, images, capacity_, k);
  }
  bool preprocesses_images() const override { return true; }
  ops::Matrix prefill_raw(std::span<const std::int32_t> ids, const image::RawImages& images, std::int64_t k) override {
    return gpu_.prefill(seq_, ids, images, capacity_, k);
  }
  ops::Matrix decode(std::int32_t id, model::ForwardObserver*) override { return gpu_.decode(seq_, id); }

 private:
  model_cuda::TensorParallelQwen2_5_VL gpu_;  // one rank = the single-GPU path
  model_cuda::CudaSequence seq_;
  std::int64_t capacity_ = 0;
};
#endif

}  // namespace

std::unique_ptr<DeviceModel> DeviceModel::create(const model::Qwen2_5_VL& model, Device device, int tensor_parallel) {
  if (tensor_parallel < 1)
    throw UsageError({"--tensor-parallel", "must be at least 1", ">= 1", std::to_string(tensor_parallel), ""});
  if (device == Device::kCpu) {
    if (tensor_parallel != 1)
      throw UsageError({"--tensor-parallel", "tensor parallelism needs --device cuda", "1 on the CPU",
                        std::to_string(tensor_parallel), "use --device cuda, or drop --tensor-parallel"});
    return std::make_unique<CpuModel>(model);
  }
#ifdef VLQ_HAVE_CUDA
  return std::make_unique<CudaModel>(model, tensor_parallel);
#else
  throw UnsupportedError({"--device cuda", "this vlq was built without the CUDA runtime", "a VLQ_CUDA build", "CPU-only build",
                          "use --device cpu"});
#endif
}

}  // namespace vlq::engine
