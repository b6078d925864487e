// Private state of Qwen2_5_VLCuda shared by its .cpp files: device Linears and layers, the KV block pool,
// grow-only workspace buffers. Not part of the public API (vlq/model_cuda/qwen2_5_vl_cuda.h).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <tuple>
#include <string>
#include <vector>

#include "vlq/cuda/attention.h"
#include "vlq/cuda/device.h"
#include "vlq/cuda/gemm.h"
#include "vlq/cuda/reduce.h"
#include "vlq/model_cuda/qwen2_5_vl_cuda.h"

namespace vlq::model_cuda {

// One Linear on the device in its stored dtype. FP8: W E4M3 codes [N, K], scales[0] = input_scale,
// scales[4] = weight_scale (two 16-byte aligned f32 for cuBLASLt's scale pointers). Dense: W BF16 [N, K].
struct DevLinear {
  std::string name;
  std::int64_t n = 0, k = 0;
  std::int64_t kp = 0;  // row length of W on the device: k, or k rounded up to 8 with zero columns (dense
                        // Linears whose K is not a multiple of 8 (the ViT's down_proj 3420 arrives padded to
                        // 3424 by upload_vision instead, vision_cuda.cpp): cuBLASLt
                        // needs 16-byte rows). Inputs then have kp columns, the last kp - k zero.
  bool fp8 = false;
  void* w = nullptr;
  float* scales = nullptr;
  float input_scale = 1.0f, weight_scale = 1.0f;
  float* bias_f32 = nullptr;   // [N] or null
  void* bias_bf16 = nullptr;   // [N] BF16 (cuBLASLt FP8 epilogue) or null
  float* row_alpha = nullptr;  // [N] f32 or null: per-row input_scale · weight_scale of Linears stacked by rows
                               // (fused q|k|v, GEMV only); input_scale / weight_scale are then unused
  // FP8 weights with dynamic per-token activation scales (compressed-tensors "token", FP8_DYNAMIC): fp8 is false
  // (the input arrives as F32, see InputForm), w holds E4M3 codes, and run_linear quantizes each row itself
  // (cuda::quantize_e4m3_per_token) before the GEMM and applies the scales after it (cuda::scale_rows_cols).
  bool dynamic = false;
  float* col_scale = nullptr;  // [N] f32 or null: per-channel weight scales (compressed-tensors "channel"); the
                               // GEMM then runs with unit scales and scale_rows_cols applies them (and the bias)
};

// What a Linear's input must look like: E4M3 codes of x / input_scale, or BF16. Linears with equal
// forms share one producer output (q/k/v, gate/up).
struct InputForm {
  bool fp8 = false;
  float scale = 1.0f;
  bool f32 = false;  // F32 (a dynamic FP8 Linear quantizes it per row), else BF16 when not fp8
  bool operator==(const InputForm&) const = default;
};
inline InputForm form_of(const DevLinear& l) { return {l.fp8, l.fp8 ? l.input_scale : 1.0f, l.dynamic}; }
inline DType input_dtype(const InputForm& f) { return f.fp8 ? DType::F8_E4M3 : f.f32 ? DType::F32 : DType::BF16; }

struct DevLayer {
  float* input_norm = nullptr;  // [H] f32
  float* post_norm = nullptr;   // [H] f32
  DevLinear q, k, v, o, gate, up, down;
  DevLinear gate_up;  // w != null: gate and up as one FP8 [2I, K] block, weight scale 1 (gate.w / up.w point
                      // into it; SwiGLU applies gate.weight_scale / up.weight_scale), weights_cuda.cpp
  DevLinear qkv;      // w != null: q, k, v as one FP8 [(heads + 2·kv_heads)·hd, K] block with row_alpha and the
                      // stacked biases (q.w / k.w / v.w point into it), for the decode GEMV (M <= kFp8GemvMaxM)
  float k_scale = 1.0f, v_scale = 1.0f;
};

// Which part of a Linear this rank holds: all of it, output rows [r·N/n, (r+1)·N/n) (column-parallel), or
// input columns [r·K/n, (r+1)·K/n) (row-parallel; the bias, if any, stays on rank 0 only).
enum class Split { kNone, kRows, kCols };

// weights_cuda.cpp: arena sizing and upload helpers (also used by the vision tower, vision_cuda.cpp).
constexpr std::size_t kAlign = 256;
std::size_t aligned(std::size_t bytes);
std::size_t linear_bytes(const ops::LinearWeights& l, int div = 1);  // arena bytes of one (shard of a) Linear
void* upload_bf16(cuda::DeviceArena& arena, const std::vector<float>& v);
// l with `cols` >= in_features input columns, the new ones zero (K padding: DevLinear::kp, the ViT MLP width).
ops::LinearWeights pad_in_cols(const ops::LinearWeights& l, std::int64_t cols);
float* upload_f32(cuda::DeviceArena& arena, const std::vector<float>& v);
// Throws UnsupportedError for Linears the CUDA path does not run (see Qwen2_5_VLCuda's constructor).
DevLinear upload_linear(cuda::DeviceArena& arena, const ops::LinearWeights& full, Split split = Split::kNone,
                        int rank = 0, int n = 1);

// Device workspace of the Linears with per-token / per-channel scales (run_linear): the per-token E4M3 codes and
// scales, the unscaled f32 GEMM output.
struct LinearScratch;

// forward_cuda.cpp: y[M, N] (F32, row stride allowed) = L(x), x in L's input form ([M, K] E4M3 codes, BF16, or
// F32 for a dynamic Linear): the GEMV for M <= 8, cuBLASLt otherwise. `ls` is needed (UsageError otherwise) for
// Linears with dynamic or per-channel scales.
void run_linear(cuda::GemmContext& gemm, cudaStream_t stream, const DevLinear& L, const cuda::Tensor& x,
                const cuda::Tensor& y, LinearScratch* ls = nullptr);


// Calibration taps (layer-sequential calibration, layerwise_cuda.cpp): when an Impl / DevVision has taps, its
// forward records max |x| (and the |x| histogram) of every Linear input and of K (after RoPE) and V into
// device slots. Slot of a decoder layer: the LmTap kind (one layer resident at a time). Slot of the vision
// tower: VisionTap::kPatch / kMerger0 / kMerger2, or kBlocks + block · kLmTaps + LmTap kind.
enum LmTap { kTapQkvIn, kTapOIn, kTapGateUpIn, kTapDownIn, kTapK, kTapV, kLmTaps };
enum VisionTap { kTapPatch, kTapMerger0, kTapMerger2, kTapBlocks };
struct Taps {
  float* amax = nullptr;               // [slots] device f32
  unsigned long long* hist = nullptr;  // [slots, layout.bins() + 1] device, or null (amax only)
  cuda::AbsHistLayout layout;
  void record(int slot, const cuda::Tensor& x, cudaStream_t st) const {
    cuda::abs_max_histogram(x, amax + slot, hist ? hist + static_cast<std::size_t>(slot) * (layout.bins() + 1) : nullptr,
                            &layout, st);
  }
};

// Bumped whenever a Scratch reallocates: captured CUDA graphs hold workspace addresses, so a graph captured
// under an older generation is stale and is re-captured.
inline std::atomic<std::uint64_t> g_scratch_generation{0};

// Grow-only device buffer for per-forward workspace.
struct Scratch {
  cuda::DeviceBuffer buf;
  void* get(std::size_t bytes) {
    if (buf.bytes() < bytes) {
      buf = cuda::DeviceBuffer(bytes);
      ++g_scratch_generation;
    }
    return buf.data();
  }
};
struct LinearScratch {
  Scratch codes, scales, acc;
};

// A captured decode step (forward_cuda.cpp): its graph, the workspace generation it was captured under, and
// its own integer-input buffer (token ids, positions, slots, block tables) that each replay refills.
struct DecodeGraph {
  cudaGraphExec_t exec = nullptr;
  std::uint64_t generation = 0;
  bool seen = false;  // ran eagerly once (sizes the workspaces); the next sighting captures
  cuda::DeviceBuffer ints;
  DecodeGraph() = default;
  DecodeGraph(const DecodeGraph&) = delete;
  DecodeGraph& operator=(const DecodeGraph&) = delete;
  ~DecodeGraph() {
    if (exec) cudaGraphExecDestroy(exec);
  }
};

// The vision tower on the device (vision_cuda.cpp).
struct DevVisionBlock {
  float* norm1 = nullptr;
  float* norm2 = nullptr;
  DevLinear qkv, proj, gate, up, down;
  DevLinear gate_up;  // w != null: dense gate and up stacked as one [2·Ivp, K] block (gate.w / up.w point into it)
  bool full = false;  // full attention (fullatt_block_indexes) rather than window attention
};
struct DevVision {
  formats::VisionConfig cfg;
  std::int64_t Dv = 0, heads = 0, hd = 0, Iv = 0, out = 0, unit = 4;
  std::int64_t Ivp = 0;  // Iv rounded up to 16: the MLP's width on the device (zero-padded, vision_cuda.cpp)
  std::unique_ptr<cuda::DeviceArena> arena;
  DevLinear patch, merger0, merger2;
  float* ln_q = nullptr;
  std::vector<DevVisionBlock> blocks;
  const Taps* taps = nullptr;  // calibration (see Taps)
  Scratch px, x0, x, hin[2], qkv, q, k, v, att, att_in, o, gu, act, d, m0, m0a, m2, fin, ang, ints;
  cuda::PinnedBuffer staging;  // pixels (BF16 rows or raw RGB + taps) on their way to the device (vision_cuda.cpp)
  Scratch raw, resized[2];      // raw RGB + taps + tables; the resize passes' outputs
  // The plan (window permutation, tiles, rotary angles) now in `ints` / `ang`, for this grid: a request with
  // the same image sizes reuses it. Valid while those buffers are the ones it was written to.
  std::vector<model::GridThw> plan_grid;
  const void* plan_ints = nullptr;
  const void* plan_ang = nullptr;
  std::int64_t plan_n_perm = 0, plan_n_inv = 0, plan_n_cw = 0, plan_n_cf = 0;
};

struct Qwen2_5_VLCuda::Impl {
  CudaOptions opt;
  std::int64_t H = 0, heads = 0, kvh = 0, hd = 0, inter = 0, vocab = 0, layers_n = 0, max_pos = 0;
  float eps = 1e-6f;
  int sections[3] = {0, 0, 0};

  cuda::Stream stream;
  cuda::GemmContext gemm;
  std::unique_ptr<cuda::DeviceArena> arena;
  void* embed = nullptr;     // [V, H] BF16
  float* final_norm = nullptr;
  float* inv_freq = nullptr; // [hd/2]
  DevLinear lm_head;
  std::vector<DevLayer> layers;

  bool kv_fp8 = false;
  cuda::DeviceBuffer kv_pool;
  std::vector<cuda::PagedKvLayer> kv;   // per layer, views into kv_pool
  std::vector<std::int32_t> free_blocks;

  std::unique_ptr<DevVision> vision;  // null when the checkpoint has no vision tower
  const Taps* taps = nullptr;         // calibration (see Taps): records every decoder layer's inputs

  // Workspace (grow-only), named for what they hold.
  LinearScratch lin_scratch;  // run_linear's workspace for dynamic / per-channel FP8 Linears (LM and vision tower)
  Scratch h, h_alt, xin[3], qkv, attn, attn_in, a, gate_up, act, act_in, d, angles, ints, gathered, gathered_in, logits, argmax, pen_ints, pen_vals;
  // Decode-step CUDA graphs keyed by (rows T, logits rows R, block-table width); at most kMaxGraphs kept.
  static constexpr std::size_t kMaxGraphs = 256;
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::unique_ptr<DecodeGraph>> graphs;
};

// forward_cuda.cpp: the batch's integer inputs on the device (upload_ints) and one decoder layer over them;
// also driven layer by layer by the calibration forward (layerwise_cuda.cpp).
struct BatchInts {
  cuda::Tensor ids, positions, q_seq, q_pos, slots, rows, tables;
  cuda::Tensor tiles;    // [n_tiles, 2] query tiles of the flash prefill kernel (when prefill)
  cuda::Tensor single;   // [n] rows attended by the decode kernel in a prefill step (one-row tiles)
  bool prefill = false;  // some sequence has more than one row: tensor-core flash attention, else decode kernel
  bool single_decode = true;  // every row of `single` is its sequence's only row (cuda::paged_attention's prior_keys_cached)
};
// Uploads the batch's integer inputs into `target` (null: im.ints), block tables padded to `width` columns
// (>= the widest block table). Synchronizes the stream (the host staging vector dies at return).
BatchInts upload_ints(Qwen2_5_VLCuda::Impl& im, const Batch& b, std::int64_t width, cuda::DeviceBuffer* target = nullptr);
// Decoder layer `li` over the T rows of h [T, H] f32 (updated in place: h += resid first, when given, then
// the attention output); its MLP output goes to d_out [T, H] f32. angles: [T, hd/2] f32.
void decoder_layer(Qwen2_5_VLCuda::Impl& im, int li, const cuda::Tensor& h, const cuda::Tensor* resid, const BatchInts& in,
                   const cuda::Tensor& angles, const cuda::Tensor& d_out);

// forward_cuda.cpp: whether prefill-sized gate|up (and the ViT's q|k|v) GEMMs write BF16 (VLQ_CUDA_GATE_UP_BF16).
bool gate_up_bf16();
// vision_cuda.cpp: the vision tower of `v` over pixel_values (Qwen2_5_VLCuda::encode_images' contract), on
// im's stream and GEMM context.
ops::Matrix encode_images(Qwen2_5_VLCuda::Impl& im, DevVision& v, const float* pixel_values, std::int64_t n,
                          std::int64_t patch_dim, const std::vector<model::GridThw>& grid_thw);
// The same, leaving the features on the device: [n / merge², out_hidden_size] F32 in v's scratch (valid until
// the next call on v), queued on im's stream (which is synchronized before return: the host inputs die).
cuda::Tensor encode_images_device(Qwen2_5_VLCuda::Impl& im, DevVision& v, const float* pixel_values, std::int64_t n,
                                  std::int64_t patch_dim, const std::vector<model::GridThw>& grid_thw);
// The same from raw RGB images preprocessed on the device (image::plan_images; bit-identical pixels).
cuda::Tensor encode_images_device(Qwen2_5_VLCuda::Impl& im, DevVision& v, const image::RawImages& images);
// vision_cuda.cpp: uploads decoded vision weights (own arena); null when there is no vision tower.
std::unique_ptr<DevVision> upload_vision(const model::VisionWeights& w, const formats::VisionConfig& cfg);

// weights_cuda.cpp: uploads the language model of `cpu` into impl.arena (sizes the arena first).
void upload_language_model(const model::Qwen2_5_VL& cpu, Qwen2_5_VLCuda::Impl& impl);
// vision_cuda.cpp: uploads the vision tower (own arena); null when `cpu` has none.
std::unique_ptr<DevVision> upload_vision(const model::Qwen2_5_VL& cpu);


}  // namespace vlq::model_cuda
