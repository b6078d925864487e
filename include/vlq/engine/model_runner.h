// The device side of the serving engine: one call per engine step runs a ragged batch — new prefill chunks
// and single decode tokens of different sequences, each with its block table — and returns the next token
// of every sequence whose chunk reached its last token. ModelRunner is the interface; CpuModelRunner runs
// the CPU reference model (model::Qwen2_5_VL) sequence by sequence.
//
// How the CPU runner keeps K/V (docs/serving.md, "KV cache"): attention reads one contiguous
// model::Session per sequence (ops::KvCacheLayer, f32 or FP8 E4M3), grown by doubling. The block tables
// from the BlockManager are the accounting; for prefix caching the runner also mirrors every full block of
// K/V into a pool indexed by block id ([num_blocks, layers, {K,V}, block_size, kv_heads·head_dim] f32,
// the dequantized values in FP8 mode) and, when a sequence is admitted with cached prefix blocks, fills its
// new Session from the pool instead of recomputing them. A CUDA runner will take the same Batch and run
// one forward over all sequences with paged attention over the block tables (no per-sequence Session).
//
// Image tokens: the vision tower runs per image when a chunk first touches the image's <|image_pad|> run;
// features come from / go to the ImageCache (keyed by the image bytes' SHA-256).
// Spec: nano-vllm nanovllm/engine/model_runner.py (run(seqs) → token ids); vLLM v1 GPU model runner
// (flattened ragged batch: per-sequence query lengths + block tables).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "vlq/engine/image_cache.h"
#include "vlq/engine/prompt_inputs.h"
#include "vlq/engine/scheduler.h"
#include "vlq/engine/sequence.h"
#include "vlq/model/qwen2_5_vl.h"

namespace vlq::engine {

// K/V storage per token, for sizing the block pool.
struct KvLayout {
  std::int64_t layers = 0, kv_heads = 0, head_dim = 0;
  std::int64_t elem_bytes = 4;  // 1 for FP8 E4M3, 2 for BF16, 4 for f32
  std::int64_t bytes_per_token() const { return layers * 2 * kv_heads * head_dim * elem_bytes; }
};

// One engine step: the scheduled sequences (tokens [num_computed_tokens, +num_new_tokens) of each).
struct Batch {
  std::vector<ScheduledSeq> seqs;
};

struct StepResult {
  // Per batch item: the sampled next token, or -1 when its chunk ended before the sequence's last token
  // (a prefill chunk in the middle of the prompt) or when it failed.
  std::vector<std::int32_t> tokens;
  // Per batch item: empty, or why it failed (the engine finishes that sequence with FinishReason::kError).
  std::vector<std::string> errors;
  // Seconds spent in the model's forward call (device work + its synchronisation), for the step-time log.
  double forward_s = 0;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  // Runs the step. The caller advances num_computed_tokens and appends the sampled tokens afterwards.
  virtual StepResult step(const Batch& batch) = 0;
  // Drops a sequence's device state (finished, aborted or preempted). Unknown ids are ignored.
  virtual void release(SeqId id) = 0;
  virtual KvLayout kv_layout() const = 0;
  virtual ImageCacheStats image_cache_stats() const = 0;
  // Sequences with device state (0 when idle: a leak check).
  virtual std::int64_t num_live_states() const = 0;
};

struct CpuRunnerOptions {
  std::int64_t num_blocks = 0;   // of the prefix-cache mirror pool; 0 = no mirror (prefix caching off)
  std::int64_t block_size = 16;  // must equal the BlockManager's
  std::size_t image_cache_bytes = std::size_t{256} << 20;
};

struct CudaRunnerOptions {
  std::int64_t num_blocks = 0;   // KV blocks on the GPU; must equal the BlockManager's (its ids index them)
  std::int64_t block_size = 16;  // must equal the BlockManager's
  std::int64_t max_num_batched_tokens = 8192;  // >= the scheduler's token budget
  std::int64_t max_num_seqs = 256;
  std::size_t image_cache_bytes = std::size_t{256} << 20;
  int tensor_parallel = 1;       // shard over GPUs 0..N-1 (model_cuda/tensor_parallel.h); 1 = one GPU
};

// Creates the CUDA runner: one model_cuda::Qwen2_5_VLCuda forward per step over every scheduled sequence,
// attention reading K/V through the BlockManager's block tables (prefix-cached blocks are shared as they
// are, no copies); BF16 KV, or FP8 E4M3 when the model's KV cache is FP8. Chunks that touch an image are
// embedded through the ImageCache, the images encoded by the device vision tower (the CPU one when the
// checkpoint's tower was not uploaded); other rows are gathered on the device. The KV pool has
// `num_blocks` blocks (vlq serve sizes it from free GPU memory, engine::cuda_free_memory_bytes). Throws UnsupportedError in a build without CUDA (and what the CUDA model throws).
std::unique_ptr<ModelRunner> make_cuda_model_runner(const model::Qwen2_5_VL& model, const CudaRunnerOptions& options);
// K/V layout the CUDA runner uses (for sizing the pool before creating it): BF16, or FP8 when the model's is.
KvLayout cuda_kv_layout(const model::Qwen2_5_VL& model);
// Free memory of CUDA device `device` in bytes (cudaMemGetInfo), for sizing the KV pool before the weights
// are uploaded; 0 in a build without CUDA or when the device cannot be queried.
std::int64_t cuda_free_memory_bytes(int device = 0) noexcept;

class CpuModelRunner : public ModelRunner {
 public:
  // `model` must outlive the runner. Throws UsageError for block_size < 1.
  CpuModelRunner(const model::Qwen2_5_VL& model, CpuRunnerOptions options);

  StepResult step(const Batch& batch) override;
  void release(SeqId id) override { states_.erase(id); }
  KvLayout kv_layout() const override;
  ImageCacheStats image_cache_stats() const override { return image_cache_.stats(); }
  std::int64_t num_live_states() const override { return static_cast<std::int64_t>(states_.size()); }

 private:
  struct SeqState {
    model::Session session;
    PromptInputs inputs;                       // M-RoPE positions, image features
    std::int64_t saved_blocks = 0;             // blocks [0, saved) are in the pool
  };
  SeqState& state_for(const Sequence& seq);
  void ensure_capacity(const Sequence& seq, SeqState& st, std::int64_t tokens) const;
  std::int32_t run_item(const ScheduledSeq& item);
  float* pool_block(std::int32_t block, std::int64_t layer, int kv);
  void save_blocks(const Sequence& seq, SeqState& st);
  void restore_blocks(const Sequence& seq, SeqState& st);

  const model::Qwen2_5_VL& model_;
  CpuRunnerOptions options_;
  std::int64_t row_floats_ = 0;  // kv_heads · head_dim
  std::vector<float> pool_;
  ImageCache image_cache_;
  std::unordered_map<SeqId, SeqState> states_;
};

}  // namespace vlq::engine
