// Tensor parallelism over the GPUs of one host: N shards of Qwen2_5_VLCuda (one per device, Megatron split,
// see CudaOptions::tp_size) driven by one thread per GPU, NCCL all-reduce after the attention output and
// MLP down projections (ncclCommInitAll; NCCL_NVLS_ENABLE=0 is forced before the communicators are made:
// NVLink multicast must stay off on the shared machines). Every rank runs the same Batch with the same
// block ids (their block pools are allocated identically); logits come from rank 0. With N = 1 it is the
// single-GPU path with no NCCL call. Spec: Megatron-LM (Shoeybi et al. 2019) §3; vLLM's
// ColumnParallelLinear / RowParallelLinear.
#pragma once

#include <memory>
#include <vector>

#include "vlq/model_cuda/qwen2_5_vl_cuda.h"

namespace vlq::model_cuda {

class TensorParallelQwen2_5_VL {
 public:
  // Shards `cpu` over devices 0..n-1. Throws UsageError (n < 1), CudaError (fewer than n devices; NCCL
  // failures), UnsupportedError (heads / KV heads / intermediate size not divisible by n; no NCCL).
  TensorParallelQwen2_5_VL(const model::Qwen2_5_VL& cpu, int n, const CudaOptions& options = {});
  ~TensorParallelQwen2_5_VL();
  TensorParallelQwen2_5_VL(const TensorParallelQwen2_5_VL&) = delete;
  TensorParallelQwen2_5_VL& operator=(const TensorParallelQwen2_5_VL&) = delete;

  int size() const { return static_cast<int>(ranks_.size()); }
  Qwen2_5_VLCuda& rank(int r) { return *ranks_[static_cast<std::size_t>(r)]; }
  bool reserve(CudaSequence& s, std::int64_t positions);
  void release(CudaSequence& s);
  ops::Matrix forward(const Batch& batch);
  std::vector<std::int32_t> forward_greedy(const Batch& batch, const RowPenalties* penalties = nullptr);
  ops::Matrix prefill(CudaSequence& s, std::span<const std::int32_t> ids, const image::ProcessedImages* images,
                      std::int64_t capacity, std::int64_t logits_last_k = 1);
  // The same with raw images preprocessed on the device (Qwen2_5_VLCuda::prefill with RawImages).
  ops::Matrix prefill(CudaSequence& s, std::span<const std::int32_t> ids, const image::RawImages& images,
                      std::int64_t capacity, std::int64_t logits_last_k = 1);
  ops::Matrix decode(CudaSequence& s, std::int32_t id);
  // Rank 0's vision tower (replicated on every rank), or an empty function when there is none.
  model::VisionEncoder vision_encoder() { return ranks_[0]->has_vision() ? ranks_[0]->vision_encoder() : nullptr; }

 private:
  template <class R, class F> R on_all_ranks(F&& f);
  // Both prefill overloads: reserve, prefill a copy of `s` on every rank, keep rank 0's length and rope_deltas.
  template <class Images>
  ops::Matrix prefill_ranks(CudaSequence& s, std::span<const std::int32_t> ids, const Images& images, std::int64_t capacity,
                            std::int64_t logits_last_k);
  const model::Qwen2_5_VL& cpu_;
  std::vector<void*> comms_;  // ncclComm_t per rank
  std::vector<std::unique_ptr<Qwen2_5_VLCuda>> ranks_;
};

}  // namespace vlq::model_cuda
