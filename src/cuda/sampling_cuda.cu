// Device repetition penalty (see vlq/cuda/sampling.h): a gather pass then a scatter pass, so duplicate ids in
// a row's history are penalized once.
#include "vlq/cuda/sampling.h"

#include "common.cuh"

namespace vlq::cuda {
namespace {

__global__ void gather_kernel(const float* logits, std::int64_t vocab, const std::int32_t* offsets, const std::int32_t* ids,
                              float* vals) {
  const int r = blockIdx.x;
  for (int j = offsets[r] + threadIdx.x; j < offsets[r + 1]; j += blockDim.x) {
    const std::int32_t id = ids[j];
    vals[j] = id >= 0 && id < vocab ? logits[r * vocab + id] : 0.0f;
  }
}

__global__ void scatter_kernel(float* logits, std::int64_t vocab, const std::int32_t* offsets, const std::int32_t* ids,
                               const float* vals, const float* penalty) {
  const int r = blockIdx.x;
  const float p = penalty[r];
  if (p == 1.0f) return;
  for (int j = offsets[r] + threadIdx.x; j < offsets[r + 1]; j += blockDim.x) {
    const std::int32_t id = ids[j];
    if (id < 0 || id >= vocab) continue;
    const float x = vals[j];
    logits[r * vocab + id] = x > 0 ? __fdiv_rn(x, p) : __fmul_rn(x, p);
  }
}

}  // namespace

void repetition_penalty(const Tensor& logits, const Tensor& offsets, const Tensor& history, const Tensor& penalty,
                        float* scratch, cudaStream_t stream) {
  const char* op = "repetition_penalty";
  expect_tensor(op, "logits", logits, {DType::F32}, {-1, -1});
  const std::int64_t R = logits.dim(0), V = logits.dim(1);
  expect_tensor(op, "offsets", offsets, {DType::I32}, {R + 1});
  expect_tensor(op, "history", history, {DType::I32}, {-1});
  expect_tensor(op, "penalty", penalty, {DType::F32}, {R});
  if (logits.stride[0] != V) usage_error(op, "logits layout", "contiguous [R, vocab]", logits.describe());
  if (R == 0 || history.dim(0) == 0) return;
  if (!scratch) usage_error(op, "scratch", "a device f32 [N] buffer", "null");
  gather_kernel<<<static_cast<unsigned>(R), 256, 0, stream>>>(logits.as<const float>(), V, offsets.as<const std::int32_t>(),
                                                              history.as<const std::int32_t>(), scratch);
  VLQ_CUDA_CHECK_LAUNCH("repetition_penalty gather");
  scatter_kernel<<<static_cast<unsigned>(R), 256, 0, stream>>>(logits.as<float>(), V, offsets.as<const std::int32_t>(),
                                                               history.as<const std::int32_t>(), scratch, penalty.as<const float>());
  VLQ_CUDA_CHECK_LAUNCH("repetition_penalty scatter");
}

}  // namespace vlq::cuda
