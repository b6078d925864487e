// TensorParallelQwen2_5_VL: one Qwen2_5_VLCuda shard per GPU, one thread per rank per call, NCCL
// communicators from ncclCommInitAll (see vlq/model_cuda/tensor_parallel.h).
#include "vlq/model_cuda/tensor_parallel.h"

#include <cstdlib>
#include <exception>
#include <thread>

#include "vlq/core/error.h"
#include "vlq/cuda/device.h"
#ifdef VLQ_HAVE_NCCL
#include <nccl.h>
#endif

namespace vlq::model_cuda {

TensorParallelQwen2_5_VL::TensorParallelQwen2_5_VL(const model::Qwen2_5_VL& cpu, int n, const CudaOptions& options)
    : cpu_(cpu) {
  if (n < 1) throw UsageError({"--tensor-parallel", "must be at least 1", ">= 1", std::to_string(n), ""});
  if (cuda::device_count() == 0)
    throw CudaError({"--device cuda", "no CUDA device", "a CUDA GPU", "0 devices (cudaGetDeviceCount)",
                     "run with --device cpu"});
  if (cuda::device_count() < n)
    throw CudaError({"--tensor-parallel", "not enough CUDA devices", std::to_string(n) + " devices",
                     std::to_string(cuda::device_count()), "lower --tensor-parallel"});
  comms_.assign(static_cast<std::size_t>(n), nullptr);
  if (n > 1) {
#ifdef VLQ_HAVE_NCCL
    setenv("NCCL_NVLS_ENABLE", "0", 1);  // NVLink multicast stays off on the shared machines
    std::vector<ncclComm_t> comms(static_cast<std::size_t>(n));
    std::vector<int> devs(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) devs[i] = i;
    const ncclResult_t r = ncclCommInitAll(comms.data(), n, devs.data());
    if (r != ncclSuccess)
      throw CudaError({"ncclCommInitAll", "NCCL communicator setup failed", "ncclSuccess", ncclGetErrorString(r),
                       "NCCL_DEBUG=INFO says why"});
    for (int i = 0; i < n; ++i) comms_[i] = comms[i];
#else
    throw UnsupportedError({"--tensor-parallel", "this vlq was built without NCCL", "a build with NCCL", "none",
                            "use --tensor-parallel 1"});
#endif
  }
  for (int i = 0; i < n; ++i) {
    CudaOptions o = options;
    o.device = i;
    o.tp_rank = i;
    o.tp_size = n;
    o.nccl_comm = comms_[i];
    ranks_.push_back(std::make_unique<Qwen2_5_VLCuda>(cpu, o));  // sets device i while uploading
  }
}

TensorParallelQwen2_5_VL::~TensorParallelQwen2_5_VL() {
  ranks_.clear();
#ifdef VLQ_HAVE_NCCL
  for (void* c : comms_)
    if (c) ncclCommDestroy(static_cast<ncclComm_t>(c));
#endif
}

// Runs f(rank) on every rank concurrently (collectives need all ranks in flight), each thread bound to its
// device; returns rank 0's result; rethrows the first exception.
template <class R, class F> R TensorParallelQwen2_5_VL::on_all_ranks(F&& f) {
  const int n = size();
  if (n == 1) {
    VLQ_CUDA_CHECK(cudaSetDevice(0));
    return f(0);
  }
  std::vector<R> results(static_cast<std::size_t>(n));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      try {
        VLQ_CUDA_CHECK(cudaSetDevice(i));
        results[i] = f(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return std::move(results[0]);
}

bool TensorParallelQwen2_5_VL::reserve(CudaSequence& s, std::int64_t positions) {
  // Every rank's pool hands out the same ids in the same order; reserve on each with its own copy.
  std::vector<std::int32_t> before = s.blocks;
  bool ok = true;
  for (int i = 0; i < size(); ++i) {
    CudaSequence c = s;
    c.blocks = before;
    ok = ranks_[i]->reserve(c, positions) && ok;
    if (i == 0) s.blocks = c.blocks;
    else if (c.blocks != s.blocks)
      throw UsageError({"TensorParallelQwen2_5_VL", "block pools of the ranks diverged", "identical block ids",
                        "different ids on rank " + std::to_string(i), "a bug"});
  }
  return ok;
}

void TensorParallelQwen2_5_VL::release(CudaSequence& s) {
  for (int i = 0; i < size(); ++i) {
    CudaSequence c = s;
    ranks_[i]->release(c);
  }
  s.blocks.clear();
  s.length = 0;
  s.rope_deltas = 0;
}

ops::Matrix TensorParallelQwen2_5_VL::forward(const Batch& b) {
  return on_all_ranks<ops::Matrix>([&](int r) { return ranks_[r]->forward(b); });
}

std::vector<std::int32_t> TensorParallelQwen2_5_VL::forward_greedy(const Batch& b, const RowPenalties* penalties) {
  return on_all_ranks<std::vector<std::int32_t>>([&](int r) { return ranks_[r]->forward_greedy(b, penalties); });
}

template <class Images>
ops::Matrix TensorParallelQwen2_5_VL::prefill_ranks(CudaSequence& s, std::span<const std::int32_t> ids, const Images& images,
                                                    std::int64_t capacity, std::int64_t logits_last_k) {
  if (!reserve(s, std::max<std::int64_t>(capacity, static_cast<std::int64_t>(ids.size()))))
    throw UsageError({"KV cache", "not enough free KV blocks", "enough for " + std::to_string(capacity) + " positions",
                      "", "raise the KV cache budget"});
  std::vector<CudaSequence> copies(static_cast<std::size_t>(size()), s);
  ops::Matrix out = on_all_ranks<ops::Matrix>(
      [&](int r) { return ranks_[r]->prefill(copies[r], ids, images, capacity, logits_last_k); });
  s.length = copies[0].length;
  s.rope_deltas = copies[0].rope_deltas;
  return out;
}

ops::Matrix TensorParallelQwen2_5_VL::prefill(CudaSequence& s, std::span<const std::int32_t> ids,
                                              const image::ProcessedImages* images, std::int64_t capacity,
                                              std::int64_t logits_last_k) {
  return prefill_ranks(s, ids, images, capacity, logits_last_k);
}

ops::Matrix TensorParallelQwen2_5_VL::prefill(CudaSequence& s, std::span<const std::int32_t> ids, const image::RawImages& images,
                                              std::int64_t capacity, std::int64_t logits_last_k) {
  return prefill_ranks(s, ids, images, capacity, logits_last_k);
}

ops::Matrix TensorParallelQwen2_5_VL::decode(CudaSequence& s, std::int32_t id) {
  if (!reserve(s, s.length + 1)) throw UsageError({"decode", "KV cache full", "a free block", "0 free", ""});
  std::vector<CudaSequence> copies(static_cast<std::size_t>(size()), s);
  ops::Matrix out = on_all_ranks<ops::Matrix>([&](int r) { return ranks_[r]->decode(copies[r], id); });
  s.length = copies[0].length;
  return out;
}

}  // namespace vlq::model_cuda
