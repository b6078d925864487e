// Attention on CUDA: a paged KV cache (vLLM layout), the cache write, paged causal GQA attention (decode and
// prefill: each query row attends keys [0, q_pos] of its sequence) and non-causal segment attention over
// cu_seqlens (the ViT). Softmax is online (running max / sum per warp, merged across warps) in f32.
// CPU references: vlq::ops::attention_causal_cached, attention_segments, KvCacheLayer (FP8: code =
// E4M3_sat(k / k_scale), read back as code · k_scale), spec ../shared/docs/qwen2_5_vl.md §4.3.
#pragma once

#include <cstdint>
#include <vector>

#include "vlq/cuda/device.h"

namespace vlq::cuda {

// One layer's paged cache: k and v each [num_blocks, block_size, kv_heads, head_dim] of `dtype`
// (F32 | BF16 | F8_E4M3 codes with per-tensor k_scale / v_scale; a BF16 cache's scales are normally 1, but
// paged_attention_prefill applies them whatever the dtype). Position p of a sequence lives in
// block block_table[p / block_size], row p % block_size. head_dim % 32 == 0 and <= 256.
struct PagedKvLayer {
  void* k = nullptr;
  void* v = nullptr;
  DType dtype = DType::F8_E4M3;
  int num_blocks = 0, block_size = 16, kv_heads = 0, head_dim = 0;
  float k_scale = 1.0f, v_scale = 1.0f;
  std::size_t bytes_per_side() const {
    return static_cast<std::size_t>(num_blocks) * block_size * kv_heads * head_dim * dtype_size(dtype);
  }
};

// Writes k, v rows into the cache: row t goes to slot slot_mapping[t] = block·block_size + offset
// (slot < 0: skipped, a padding token). k, v: 3-D [T, kv_heads, head_dim] F32|BF16 (stride[0] any, heads
// contiguous, e.g. the k / v parts of a fused qkv row); slot_mapping: [T] I32 device.
void kv_cache_write(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, const PagedKvLayer& cache,
                    cudaStream_t stream);
// rotary_inplace (vlq/cuda/elementwise.h) on the q and k heads, then kv_cache_write of the rotated k and of v, in
// one kernel (the same values as the two calls). qk: 3-D [T, heads + kv_heads, head_dim] F32 (q heads, then the
// k heads; stride[0] any, heads contiguous: a fused qkv row), rotated in place; v: [T, kv_heads, head_dim] F32;
// angles: [T, head_dim/2] F32 (mrope_angles); slot_mapping: [T] I32 device. Throws UsageError on shapes.
void rotary_kv_cache_write(const Tensor& qk, const Tensor& v, const Tensor& angles, const Tensor& slot_mapping,
                           const PagedKvLayer& cache, cudaStream_t stream);

// Paged causal GQA attention. q: 3-D [T, heads, head_dim] F32|BF16 (stride[0] any); heads % kv_heads == 0,
// query head h reads KV head h / (heads / kv_heads). block_tables: [B, max_blocks] I32; q_seq: [T] I32 (the
// sequence of each query row, < B); q_pos: [T] I32 (its absolute position; it attends cache positions
// [0, q_pos], which must have been written). Decode: T = B, q_seq = 0..B-1, q_pos = length - 1.
// out: [T, heads, head_dim] F32|BF16 contiguous. scale: softmax scale (1/sqrt(head_dim)).
// rows: null = every row; else [n] I32 device, the rows to attend (others of `out` are left as they are), so
// that a mixed step runs its one-row (decode) queries here and its prefill tiles in the flash kernel.
// out may also be F8_E4M3: codes of value / out_scale (IEEE division, as quantize_e4m3: the o_proj input of an
// FP8 o_proj written directly, bit-identical to F32 out then quantize_e4m3); out_scale finite > 0 then.
// prior_keys_cached: the caller promises that every cache position before each row's own q_pos was written
// before the first kernel of this step (one row per sequence, as in a decode step; not when several rows of
// one sequence are new): the head_dim-128 kernel then fetches those K/V rows before waiting on the previous
// kernel (programmatic dependent launch), so the fetch overlaps the kernel that writes q and the new key.
// Same results either way. Honoured only with VLQ_DECODE_EARLY=1 (opt-in until it has run on a GPU).
void paged_attention(const Tensor& q, const PagedKvLayer& cache, const Tensor& block_tables, const Tensor& q_seq,
                     const Tensor& q_pos, float scale, const Tensor& out, cudaStream_t stream,
                     const Tensor* rows = nullptr, float out_scale = 0.0f, bool prior_keys_cached = false);


// Tensor-core flash attention (src/cuda/flash_attention_cuda.cu; BF16 mma.sync, f32 softmax and accumulation,
// Q and P rounded to BF16, FP8 cache codes exact with k_scale/v_scale applied in f32; BF16 and E4M3 key tiles
// fetched with cp.async one tile ahead (VLQ_FLASH_ASYNC=0: synchronous loads, for A/B) when the cache sides are
// 16-byte aligned, else by synchronous loads): the prefill form of
// paged_attention (same arguments) plus `tiles` [n_tiles, 2] I32 device (row0, rows): runs of at most
// `tile_rows` consecutive rows of one sequence in ascending positions (prefill_tiles builds them from seq_of_row;
// tile_rows from prefill_tile_rows: 64, or 128 for head_dim <= 128 — one CTA of 4 warps, or for 128 rows 8 warps of
// 16 rows or (VLQ_FLASH_WIDE_WARPS=1) 4 warps of 32 rows, per tile and head).
// head_dim % 16 == 0, <= 256. Agrees with paged_attention within BF16 rounding (~1e-2 relative at worst).
// Throws UsageError on shapes, dtypes or tile_rows.
void paged_attention_prefill(const Tensor& q, const PagedKvLayer& cache, const Tensor& block_tables, const Tensor& q_seq,
                             const Tensor& q_pos, const Tensor& tiles, int tile_rows, float scale, const Tensor& out,
                             cudaStream_t stream);
// Rows per prefill tile for head_dim: 128 when head_dim <= 128 (VLQ_FLASH_ROWS=64: 64 rows, for A/B), else 64.
int prefill_tile_rows(int head_dim);
// The same for attention_segments: tiles [n_tiles, 4] I32 device (row0, rows, j0, j1): at most tile_rows query
// rows of one segment and the segment's key range [j0, j1) (segment_tiles builds them from cu_seqlens with the same
// tile_rows; a tile of more rows than tile_rows is clamped to tile_rows, its other rows left unwritten). tile_rows:
// 64, or 128 for head_dim <= 128 (one CTA of 4 warps of 16 or 32 rows per tile and head); else UsageError.
void attention_segments_tiled(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& tiles, float scale,
                              const Tensor& out, cudaStream_t stream, int tile_rows = 64);
// Host helpers: the tile lists of the two kernels above.
std::vector<std::int32_t> prefill_tiles(const std::vector<std::int32_t>& seq_of_row, int tile_rows);
std::vector<std::int32_t> segment_tiles(const std::vector<std::int32_t>& cu_seqlens, int tile_rows = 64);

// Segment attention: q, k, v [N, heads, head_dim] F32|BF16 contiguous (same dtype), head_dim 1..256 (any,
// e.g. the ViT's 80); cu_seqlens: [S+1] I32
// device, ascending from 0 to N; token i attends every token of its segment. out: [N, heads, head_dim]
// F32|BF16. cu_seqlens is not validated on the device: the caller checks it on the host (as the CPU op).
void attention_segments(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens, float scale,
                        const Tensor& out, cudaStream_t stream);

}  // namespace vlq::cuda
