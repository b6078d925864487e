// The Qwen2.5-VL language model on one CUDA device: weights in their stored dtype (E4M3 codes one byte,
// BF16 two) in a device arena, a paged KV cache (BF16, or FP8 E4M3 codes with the checkpoint's
// k_scale/v_scale), and a batch-first forward over ragged sequences (prefill chunks and decode tokens of
// many sequences in one call), built from the kernels of vlq/cuda/*.h, and the vision tower on the device
// (encode_images). The CPU model (vlq/model/qwen2_5_vl.h) is its oracle and holds the weights it uploads;
// prompt rows that carry image features are placed on the host and uploaded, token rows are gathered on
// the device.
//
// Numerics vs the CPU reference (lm_forward): FP8 Linears are the same static per-tensor recipe
// (xq = E4M3_sat(x / input_scale), y = (xq·Wqᵀ)·input_scale·weight_scale + b), with f32 accumulation on the
// tensor cores (cuBLASLt, M > 8) or CUDA cores (GEMV, M ≤ 8); dense Linears take BF16 activations (the CPU
// keeps f32), the residual stream stays f32. Expected agreement: logits within ~1e-2 relative.
// Spec: ../shared/docs/qwen2_5_vl.md §4.2–4.6; transformers modeling_qwen2_5_vl.py (Qwen2_5_VLTextModel);
// vLLM's paged KV layout (block_table, slot_mapping).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "vlq/model/qwen2_5_vl.h"
#include "vlq/ops/tensor.h"

namespace vlq::model_cuda {

struct CudaOptions {
  int device = 0;
  // KV cache: block pool size and block length (positions per block). 0 blocks = derive from kv_cache_bytes.
  int block_size = 16;
  int num_blocks = 0;
  std::size_t kv_cache_bytes = std::size_t{1} << 30;  // used when num_blocks == 0
  int max_batch_tokens = 8192;                         // T per forward (prefill chunk + decode rows)
  int max_sequences = 256;                             // B per forward
  bool vision = true;                                  // upload the vision tower (encode_images) when there is one
  // Decode steps (every sequence one row, no image rows, one rank) replay a CUDA graph captured per (rows,
  // logits rows, block-table width rounded up to a power of two) on its second sighting: ~400 kernel launches
  // become one. Same kernels, same results as eager; off = every step eager (VLQ_CUDA_GRAPHS=0 also turns it off).
  bool cuda_graphs = true;
  // Tensor parallelism (Megatron split, vlq/model_cuda/tensor_parallel.h drives it): this object holds
  // shard tp_rank of tp_size — q/k/v/gate/up split by output rows (whole heads), o/down by input columns,
  // per-tensor FP8 scales shared (so each shard computes exactly its part), KV heads split (heads and KV
  // heads must divide by tp_size), norms, embedding and lm_head replicated. nccl_comm: an ncclComm_t of
  // this rank (null when tp_size == 1); the partial o/down outputs are summed by ncclAllReduce.
  int tp_rank = 0, tp_size = 1;
  void* nccl_comm = nullptr;
};

// One sequence's place in the paged cache: the blocks it owns (in order) and how many positions are filled.
struct CudaSequence {
  std::vector<std::int32_t> blocks;
  std::int64_t length = 0;       // positions in the cache
  std::int64_t rope_deltas = 0;  // from the prompt's get_rope_index (decode position = length + rope_deltas)
};

// Rows that replace the embedding of rows [row, row + rows) of a batch (prefill with images).
struct EmbedRows {
  std::int64_t row = 0, rows = 0;
  const float* data = nullptr;  // [rows, H] f32, host memory (or device memory when `on_device`)
  bool on_device = false;       // data is a device pointer (the device vision tower's features): copied D2D
};

// One forward over T tokens of B sequences, rows grouped by sequence (any order of sequences).
struct Batch {
  std::vector<std::int32_t> token_ids;   // [T] (also for rows given by `embeds`: then only validated)
  std::vector<EmbedRows> embeds;         // optional host embeddings overriding the gathered rows
  std::vector<std::int32_t> positions;   // [3, T] M-RoPE position ids (rows t, h, w)
  std::vector<std::int32_t> seq_of_row;  // [T] index into `sequences`
  std::vector<std::int32_t> cache_pos;   // [T] the row's position in its sequence's cache (its K/V slot)
  std::vector<const CudaSequence*> sequences;  // [B] block tables (blocks must cover every cache_pos)
  std::vector<std::int32_t> logits_rows; // [R] rows whose logits are returned, in this order
};

// The repetition penalty of each logits row, applied on the device before forward_greedy's argmax (the
// CPU path's ops::apply_repetition_penalty): penalty [R] (1 = none) and, per row r, the token ids
// history[offsets[r] .. offsets[r+1]) whose logits are penalized (the sequence's prompt + generated tokens).
struct RowPenalties {
  std::vector<float> penalty;
  std::vector<std::int32_t> offsets;  // [R + 1], offsets[0] = 0
  std::vector<std::int32_t> history;
};

class Qwen2_5_VLCuda {
 public:
  // Uploads the language model of `cpu` (which must outlive this object: prompts are embedded through it).
  // FP8 Linears: static per-tensor or per-channel weight scales with static per-tensor or dynamic per-token
  // activation scales (ModelOpt FP8, compressed-tensors tensor / channel / token, llm-compressor FP8_DYNAMIC).
  // Throws UnsupportedError for Linears the CUDA path does not run (FP8 Linears with K % 16 != 0 outside the
  // vision MLP, whose width is padded; an FP8 patch embedding; dynamic row-parallel Linears under tensor
  // parallelism), naming the module; CudaError when there is no device or memory runs out.
  Qwen2_5_VLCuda(const model::Qwen2_5_VL& cpu, const CudaOptions& options = {});
  ~Qwen2_5_VLCuda();
  Qwen2_5_VLCuda(const Qwen2_5_VLCuda&) = delete;
  Qwen2_5_VLCuda& operator=(const Qwen2_5_VLCuda&) = delete;

  const model::Qwen2_5_VL& cpu() const { return cpu_; }
  bool fp8_kv_cache() const;
  // Device bytes of the weights and of the KV block pool; blocks free now.
  std::size_t weight_bytes() const;
  std::size_t kv_cache_bytes() const;
  int free_blocks() const;
  int block_size() const;

  // Grows `s` so that it holds `positions` positions (allocating blocks from the pool); false when the
  // pool has too few free blocks (nothing allocated then). release() returns its blocks.
  bool reserve(CudaSequence& s, std::int64_t positions);
  void release(CudaSequence& s);

  // The batch-first forward: writes the batch's K/V into the cache, returns logits [R, V] f32 of
  // logits_rows. Throws UsageError when the batch is inconsistent (sizes, ids out of the vocabulary,
  // cache positions outside the sequence's blocks, T > max_batch_tokens).
  ops::Matrix forward(const Batch& batch);
  // The same forward, returning only the greedy token (argmax on the device) of each logits row: what
  // decode loops and benchmarks use (no [R, V] download).
  // penalties: null, or one entry per logits row (UsageError when the sizes disagree).
  std::vector<std::int32_t> forward_greedy(const Batch& batch, const RowPenalties* penalties = nullptr);

  // The vision tower on the device (model::vision_forward's contract: pixel_values [n, patch_dim] f32 host,
  // grids; returns features [n / merge², out_hidden_size] f32 host). FP8 vision Linears of a whole-VLM export
  // run on the FP8 tensor cores. Throws UsageError when the checkpoint has no vision tower or the sizes
  // disagree. vision_encoder(): the same as a model::VisionEncoder for embed_prompt / PromptInputs.
  ops::Matrix encode_images(const float* pixel_values, std::int64_t n, std::int64_t patch_dim,
                            const std::vector<model::GridThw>& grid_thw);
  // The same from raw RGB images that the device preprocesses itself (image::plan_images: resize, normalise,
  // patchify on the GPU, bit-identical with image::preprocess_images + BF16): no f32 pixel rows on the host.
  ops::Matrix encode_images(const image::RawImages& images);
  model::VisionEncoder vision_encoder();
  bool has_vision() const;
  std::size_t vision_weight_bytes() const;

  // Single-sequence API mirroring model::Qwen2_5_VL (the CPU path's prefill/decode), built on forward():
  // prefill embeds the prompt (text rows from the CPU model's embedding; with the device vision tower, the
  // image rows are its features copied on the device, never through the host; else embed_prompt's rows),
  // reserves `capacity` positions. UsageError when the <|image_pad|> count differs from the image features.
  ops::Matrix prefill(CudaSequence& s, std::span<const std::int32_t> ids, const image::ProcessedImages* images,
                      std::int64_t capacity, std::int64_t logits_last_k = 1);
  // prefill with raw images preprocessed on the device (TTFT without the CPU resize / normalise / f32 rows);
  // the RgbImages must outlive the call. UsageError as above, and when the checkpoint has no vision tower.
  ops::Matrix prefill(CudaSequence& s, std::span<const std::int32_t> ids, const image::RawImages& images,
                      std::int64_t capacity, std::int64_t logits_last_k = 1);
  ops::Matrix decode(CudaSequence& s, std::int32_t id);

  struct Impl;

 private:
  const model::Qwen2_5_VL& cpu_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vlq::model_cuda
