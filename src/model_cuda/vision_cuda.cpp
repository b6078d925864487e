// The Qwen2.5-VL vision tower on the device (Qwen2_5_VLCuda::encode_images): patch embedding (the Conv3d as a
// GEMM), window reorder, 32 blocks of RMSNorm → qkv → 2-D rotary → window/full segment attention → proj →
// RMSNorm(+residual) → SwiGLU MLP, the merger (RMSNorm, 4-patch MLP with erf GELU) and the inverse reorder.
// Mirrors model::vision_forward (src/model/vision_tower.cpp) step by step; FP8 Linears of a whole-VLM export
// run on the FP8 tensor cores with their static input_scale. Host work per call: the window index and the
// rotary angles (as the CPU path computes them), uploaded with the pixels.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>

#include "impl.h"
#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/cuda/attention.h"
#include "vlq/cuda/elementwise.h"
#include "vlq/cuda/image.h"
#include "vlq/image/image_processor.h"
#include "vlq/model/vision_tower.h"
#include "vlq/ops/rotary.h"

namespace vlq::model_cuda {

using cuda::Tensor;

namespace {
constexpr float kVisionEps = 1e-6f;  // hard-coded in HF for norm1/norm2/ln_q

Tensor scratch_view(Scratch& s, DType dt, std::int64_t rows, std::int64_t cols) {
  return Tensor::contiguous(s.get(static_cast<std::size_t>(rows * cols) * dtype_size(dt) + 256), dt, {rows, cols});
}
// The input of Linear l for `rows` rows: [rows, k] E4M3 or BF16; for a K-padded Linear a view of k columns of
// [rows, kp] rows whose pad columns are zeroed here (stream-ordered before the producer writes).
Tensor input_of(Scratch& s, const DevLinear& l, std::int64_t rows, cudaStream_t st = nullptr) {
  const DType dt = input_dtype(form_of(l));  // E4M3 codes, BF16, or F32 for a dynamic FP8 Linear
  if (l.kp == l.k || l.kp == 0) return scratch_view(s, dt, rows, l.k);
  const Tensor full = scratch_view(s, dt, rows, l.kp);
  VLQ_CUDA_CHECK(cudaMemsetAsync(full.data, 0, static_cast<std::size_t>(rows * l.kp) * dtype_size(dt), st));
  return Tensor::strided2d(full.data, dt, rows, l.k, l.kp);
}
float scale_of(const DevLinear& l) { return l.fp8 ? l.input_scale : 0.0f; }

// Dense (BF16) gate and up of one ViT block with the same shape and K % 8 == 0, both with or both without a bias:
// uploaded as one [2·Ivp, K] block (Ivp: the width padded to 16, see pad_out_rows) so that one GEMM writes the
// gate|up row SwiGLU reads. Besides one launch fewer, the separate GEMMs wrote N = 3420 columns each (the second
// at an offset; before the padding), for which cuBLASLt picked an sm_80 kernel at 229 TFLOP/s (run 13's profile:
// 2 × 183 us per block and image). VLQ_CUDA_FUSE_VIT_GATE_UP=0 keeps them apart (A/B).
bool vit_gate_up_fusable(const ops::LinearWeights& g, const ops::LinearWeights& u) {
  static const bool on = cuda::env_switch("VLQ_CUDA_FUSE_VIT_GATE_UP", true);
  return on && g.kind == ops::LinearKind::kDense && u.kind == ops::LinearKind::kDense && g.in_features == u.in_features &&
         g.out_features == u.out_features && g.in_features % 8 == 0 && g.bias.empty() == u.bias.empty();
}

// The stacked block; dg / du describe its halves (the GEMV and the unfused path use them).
DevLinear upload_vit_gate_up(cuda::DeviceArena& arena, const ops::LinearWeights& g, const ops::LinearWeights& u,
                             DevLinear& dg, DevLinear& du) {
  ops::LinearWeights s;
  s.name = g.name + " + " + u.name;
  s.out_features = 2 * g.out_features;
  s.in_features = g.in_features;
  s.w.reserve(g.w.size() + u.w.size());
  s.w.insert(s.w.end(), g.w.begin(), g.w.end());
  s.w.insert(s.w.end(), u.w.begin(), u.w.end());
  s.bias.insert(s.bias.end(), g.bias.begin(), g.bias.end());
  s.bias.insert(s.bias.end(), u.bias.begin(), u.bias.end());
  DevLinear f = upload_linear(arena, s);
  const std::int64_t i = g.out_features;
  dg = f;
  dg.name = g.name;
  dg.n = i;
  du = dg;
  du.name = u.name;
  du.w = static_cast<std::uint16_t*>(f.w) + i * (f.kp > 0 ? f.kp : f.k);
  if (f.bias_f32) du.bias_f32 = f.bias_f32 + i;
  if (f.bias_bf16) du.bias_bf16 = static_cast<std::uint16_t*>(f.bias_bf16) + i;
  return f;
}
// The ViT MLP with its intermediate width I padded to Ip (a multiple of 16; Qwen2.5-VL: 3420 → 3424): gate and
// up get Ip - I zero rows (and zero bias), down Ip - I zero input columns. The pad columns of gate|up are then 0,
// SwiGLU writes silu(0)·0 = 0 there and down adds 0·0: the result is the unpadded MLP's. cuBLASLt's FP8 GEMMs
// need K % 16 == 0 (down's K), so this is what lets `vlq quantize --unaligned fp8` exports (FP8 vision MLPs) run
// on the tensor cores; for BF16 it gives 16-byte aligned rows (it replaces the K padding to 8 of DevLinear::kp).
// A Linear's `w` holds decoded values (E4M3 values for FP8), so a zero is the E4M3 code 0 and the scales stay.
ops::LinearWeights pad_out_rows(const ops::LinearWeights& l, std::int64_t rows) {
  ops::LinearWeights p = l;
  p.out_features = rows;
  p.w.resize(static_cast<std::size_t>(rows * l.in_features), 0.0f);
  if (!l.bias.empty()) p.bias.resize(static_cast<std::size_t>(rows), 0.0f);
  if (l.weight_scale.size() > 1) p.weight_scale.resize(static_cast<std::size_t>(rows), 1.0f);  // per-channel: any > 0
  return p;
}
// A Linear with l's kind and the given shape, no data: what linear_bytes needs to size the arena.
ops::LinearWeights shape_of(const ops::LinearWeights& l, std::int64_t out, std::int64_t in) {
  ops::LinearWeights s;
  s.kind = l.kind;
  s.out_features = out;
  s.in_features = in;
  if (l.weight_scale.size() > 1) s.weight_scale.assign(static_cast<std::size_t>(out), 1.0f);  // per-channel scales' bytes
  return s;
}
}  // namespace

std::unique_ptr<DevVision> upload_vision(const model::Qwen2_5_VL& cpu) {
  return upload_vision(cpu.weights().vision, cpu.config().vision);
}

std::unique_ptr<DevVision> upload_vision(const model::VisionWeights& w, const formats::VisionConfig& cfg) {
  if (w.blocks.empty() || w.patch_embed.out_features == 0) return nullptr;
  auto v = std::make_unique<DevVision>();
  v->cfg = cfg;
  v->Dv = v->cfg.hidden_size;
  v->heads = v->cfg.num_heads;
  v->hd = v->Dv / v->heads;
  v->Iv = w.blocks.front().gate.out_features;  // the weights' width (the CPU path's), checked per block below
  v->Ivp = (v->Iv + 15) / 16 * 16;
  v->out = v->cfg.out_hidden_size;
  v->unit = v->cfg.spatial_merge_size * v->cfg.spatial_merge_size;
  if (w.patch_embed.kind != ops::LinearKind::kDense)
    throw UnsupportedError({w.patch_embed.name, "an FP8 patch embedding is not on the CUDA path", "BF16 patch embedding",
                            "FP8", "re-export with vlq quantize (it keeps the patch embedding BF16)"});
  std::size_t bytes = linear_bytes(w.patch_embed) + linear_bytes(w.merger0) + linear_bytes(w.merger2) +
                      aligned(w.ln_q.size() * 4) + kAlign;
  for (const auto& b : w.blocks) {
    if (b.gate.out_features != v->Iv || b.up.out_features != v->Iv || b.down.in_features != v->Iv)
      throw UnsupportedError({b.gate.name, "vision MLP widths differ between blocks or between gate, up and down",
                              "gate/up out_features = down in_features = " + std::to_string(v->Iv),
                              std::to_string(b.gate.out_features) + "/" + std::to_string(b.up.out_features) + "/" +
                                  std::to_string(b.down.in_features),
                              "run this checkpoint with --device cpu"});
    bytes += aligned(b.norm1.size() * 4) + aligned(b.norm2.size() * 4);
    for (const auto* l : {&b.qkv, &b.proj}) bytes += linear_bytes(*l);
    bytes += linear_bytes(shape_of(b.gate, v->Ivp, b.gate.in_features)) + linear_bytes(shape_of(b.up, v->Ivp, b.up.in_features)) +
             linear_bytes(shape_of(b.down, b.down.out_features, v->Ivp));
  }
  v->arena = std::make_unique<cuda::DeviceArena>(bytes);
  v->patch = upload_linear(*v->arena, w.patch_embed);
  v->merger0 = upload_linear(*v->arena, w.merger0);
  v->merger2 = upload_linear(*v->arena, w.merger2);
  v->ln_q = upload_f32(*v->arena, w.ln_q);
  for (std::size_t i = 0; i < w.blocks.size(); ++i) {
    const auto& b = w.blocks[i];
    DevVisionBlock d;
    d.norm1 = upload_f32(*v->arena, b.norm1);
    d.norm2 = upload_f32(*v->arena, b.norm2);
    d.qkv = upload_linear(*v->arena, b.qkv);
    d.proj = upload_linear(*v->arena, b.proj);
    std::optional<ops::LinearWeights> pg, pu, pd;  // the padded copies (one block's at a time), see pad_out_rows
    if (v->Ivp != v->Iv) pg = pad_out_rows(b.gate, v->Ivp), pu = pad_out_rows(b.up, v->Ivp), pd = pad_in_cols(b.down, v->Ivp);
    const ops::LinearWeights& g = pg ? *pg : b.gate;
    const ops::LinearWeights& u = pu ? *pu : b.up;
    if (vit_gate_up_fusable(g, u)) {
      d.gate_up = upload_vit_gate_up(*v->arena, g, u, d.gate, d.up);
    } else {
      d.gate = upload_linear(*v->arena, g);
      d.up = upload_linear(*v->arena, u);
    }
    d.down = upload_linear(*v->arena, pd ? *pd : b.down);
    const auto& fb = v->cfg.fullatt_block_indexes;
    d.full = std::find(fb.begin(), fb.end(), static_cast<std::int64_t>(i)) != fb.end();
    v->blocks.push_back(std::move(d));
  }
  return v;
}

namespace {

// Host-side inputs of one call: window order of the patch rows, rotary angles in that order, the inverse
// order of the merged rows, cu_seqlens of the windows and of the whole images.
struct VisionPlan {
  // perm [n] | inverse [n/unit] | window tiles [Tw, 4] | full-attention tiles [Tf, 4] (attention_segments_tiled)
  std::vector<std::int32_t> ints;
  std::int64_t n_perm = 0, n_inv = 0, n_cw = 0, n_cf = 0;  // n_cw / n_cf: tile counts
  std::vector<float> angles;       // [n, hd/2] in window order
};

// Query rows per tile of the full-attention blocks' segment attention: 64, or 128 with VLQ_VIT_FULL_ROWS=128
// (4 warps of 32 rows: each K / V fragment feeds two row blocks; A/B: run 16 measured 856.4 vs 846.1 us with the
// head_dim-80 bound, within noise, so 64 stays). Window
// attention keeps 64-row tiles (its windows are 64 patches).
int vit_full_tile_rows(std::int64_t head_dim) {
  static const int rows = cuda::env_choice("VLQ_VIT_FULL_ROWS", 64, 128);
  return head_dim <= 128 ? rows : 64;
}

VisionPlan plan_vision(const DevVision& v, std::int64_t n, const std::vector<model::GridThw>& grid) {
  const std::int64_t ms = v.cfg.spatial_merge_size, unit = v.unit, half = v.hd / 2;
  const model::PatchPositions pp = model::vision_patch_positions(grid, ms);  // the CPU tower's own positions
  const std::vector<float> ang0 = ops::vision_rotary_angles(pp.h, pp.w, v.hd, 10000.0);
  const model::WindowIndex wi = model::vision_window_index(grid, v.cfg.window_size, v.cfg.patch_size, ms);
  VisionPlan p;
  p.n_perm = n;
  p.n_inv = n / unit;
  const std::vector<std::int32_t> tw = cuda::segment_tiles(std::vector<std::int32_t>(wi.cu_window_seqlens.begin(), wi.cu_window_seqlens.end()));
  const std::vector<std::int32_t> tf =
      cuda::segment_tiles(std::vector<std::int32_t>(wi.cu_seqlens.begin(), wi.cu_seqlens.end()), vit_full_tile_rows(v.hd));
  p.n_cw = static_cast<std::int64_t>(tw.size() / 4);
  p.n_cf = static_cast<std::int64_t>(tf.size() / 4);
  p.ints.resize(static_cast<std::size_t>(p.n_perm + p.n_inv) + tw.size() + tf.size());
  p.angles.resize(static_cast<std::size_t>(n * half));
  std::int32_t* perm = p.ints.data();
  std::int32_t* inv = perm + p.n_perm;
  for (std::size_t k = 0; k < wi.window_index.size(); ++k) {
    const std::int64_t src = wi.window_index[k];
    inv[src] = static_cast<std::int32_t>(k);
    for (std::int64_t u = 0; u < unit; ++u) {
      const std::int64_t dst = static_cast<std::int64_t>(k) * unit + u;
      perm[dst] = static_cast<std::int32_t>(src * unit + u);
      std::copy(ang0.begin() + (src * unit + u) * half, ang0.begin() + (src * unit + u + 1) * half,
                p.angles.begin() + dst * half);
    }
  }
  std::copy(tw.begin(), tw.end(), inv + p.n_inv);
  std::copy(tf.begin(), tf.end(), inv + p.n_inv + tw.size());
  return p;
}

// One vision block over x [n, Dv] (f32, updated in place). `resid`: the previous block's MLP output, added
// to x by this block's first RMSNorm (null for block 0). Writes this block's MLP output to d_out.
void vision_block(Qwen2_5_VLCuda::Impl& im, DevVision& v, int bi, const Tensor& x, const Tensor* resid,
                  const Tensor& cu, const Tensor& ang, const Tensor& d_out) {
  const DevVisionBlock& B = v.blocks[static_cast<std::size_t>(bi)];
  cudaStream_t st = im.stream.get();
  const int tap = kTapBlocks + bi * kLmTaps;  // calibration slots of this block (v.taps)
  auto record = [&](int kind, const Tensor& t) {
    if (v.taps && t.dtype != DType::F8_E4M3) v.taps->record(tap + kind, t, st);
  };
  const std::int64_t n = x.dim(0), Dv = v.Dv, W = 3 * Dv;
  const Tensor hin = input_of(v.hin[0], B.qkv, n);
  cuda::rms_norm(x, resid, B.norm1, kVisionEps, hin, scale_of(B.qkv), st);
  record(kTapQkvIn, hin);
  // q|k|v and gate|up leave their GEMMs in BF16 (HF's precision; half the bytes of rotary_split_qkv's and
  // SwiGLU's reads) with VLQ_CUDA_GATE_UP_BF16=1 (opt-in until GPU-tested), else and for calibration f32.
  const DType gdt = !v.taps && gate_up_bf16() ? DType::BF16 : DType::F32;
  void* qkv = v.qkv.get(static_cast<std::size_t>(n * W) * 4);
  run_linear(im.gemm, st, B.qkv, hin, Tensor::contiguous(qkv, gdt, {n, W}), &im.lin_scratch);
  // rotary on q and k, then q, k, v contiguous [n, heads, hd] for the segment attention, in one kernel: BF16 (what
  // the tensor-core kernel rounds them to anyway, so the result is the same; its key tiles then arrive by
  // cp.async), or f32 while calibrating (taps).
  Scratch* parts[3] = {&v.q, &v.k, &v.v};
  Tensor qkv3[3];
  const DType adt = v.taps ? DType::F32 : DType::BF16;
  for (int i = 0; i < 3; ++i)
    qkv3[i] = Tensor::contiguous(parts[i]->get(static_cast<std::size_t>(n * Dv) * dtype_size(adt)), adt, {n, v.heads, v.hd});
  cuda::rotary_split_qkv(Tensor::contiguous(qkv, gdt, {n, W}), ang, qkv3[0], qkv3[1], qkv3[2], st);
  record(kTapK, qkv3[1]);
  record(kTapV, qkv3[2]);
  const float scale = 1.0f / std::sqrt(static_cast<float>(v.hd));
  const int tile_rows = v.blocks[bi].full ? vit_full_tile_rows(v.hd) : 64;  // as plan_vision cut `cu`
  Tensor o_in;
  if (B.proj.fp8 || B.proj.dynamic) {
    const Tensor att = Tensor::contiguous(v.att.get(static_cast<std::size_t>(n * Dv) * 4), DType::F32, {n, v.heads, v.hd});
    cuda::attention_segments_tiled(qkv3[0], qkv3[1], qkv3[2], cu, scale, att, st, tile_rows);
    record(kTapOIn, Tensor::contiguous(att.data, DType::F32, {n, Dv}));
    if (B.proj.dynamic) {  // f32, quantized per token by run_linear
      o_in = Tensor::contiguous(att.data, DType::F32, {n, Dv});
    } else {
      o_in = scratch_view(v.att_in, DType::F8_E4M3, n, Dv);
      cuda::quantize_e4m3(att, B.proj.input_scale, o_in, st);
    }
  } else {
    const Tensor att = Tensor::contiguous(v.att_in.get(static_cast<std::size_t>(n * Dv) * 2), DType::BF16, {n, v.heads, v.hd});
    cuda::attention_segments_tiled(qkv3[0], qkv3[1], qkv3[2], cu, scale, att, st, tile_rows);
    o_in = Tensor::contiguous(att.data, DType::BF16, {n, Dv});
    record(kTapOIn, o_in);
  }
  const Tensor o = scratch_view(v.o, DType::F32, n, Dv);
  run_linear(im.gemm, st, B.proj, o_in, o, &im.lin_scratch);
  // MLP: x += o, RMSNorm into gate/up's input form(s), gate | up into one [n, 2·Ivp] row, SwiGLU, down (the
  // intermediate width padded to 16 with zero weights, see pad_out_rows: the pad columns are 0 throughout).
  const std::int64_t I = v.Ivp;
  // Separate gate and up GEMMs write the two halves of one row: the up half must start 16-byte aligned.
  const DType udt = B.gate_up.w || I % 8 == 0 ? gdt : DType::F32;
  char* gu = static_cast<char*>(v.gu.get(static_cast<std::size_t>(n * 2 * I) * 4));
  const std::size_t half = static_cast<std::size_t>(I) * dtype_size(udt);
  const Tensor h_gate = input_of(v.hin[0], B.gate, n);
  cuda::rms_norm(x, &o, B.norm2, kVisionEps, h_gate, scale_of(B.gate), st);
  Tensor h_up = h_gate;
  if (form_of(B.up) != form_of(B.gate)) {
    h_up = input_of(v.hin[1], B.up, n);
    cuda::rms_norm(x, nullptr, B.norm2, kVisionEps, h_up, scale_of(B.up), st);
  }
  record(kTapGateUpIn, h_gate);
  if (B.gate_up.w) {
    run_linear(im.gemm, st, B.gate_up, h_gate, Tensor::contiguous(gu, udt, {n, 2 * I}), &im.lin_scratch);
  } else {
    run_linear(im.gemm, st, B.gate, h_gate, Tensor::strided2d(gu, udt, n, I, 2 * I), &im.lin_scratch);
    run_linear(im.gemm, st, B.up, h_up, Tensor::strided2d(gu + half, udt, n, I, 2 * I), &im.lin_scratch);
  }
  const Tensor act = input_of(v.act, B.down, n, st);
  cuda::swiglu(Tensor::contiguous(gu, udt, {n, 2 * I}), act, scale_of(B.down), st);
  record(kTapDownIn, I == v.Iv ? act : Tensor::strided2d(act.data, act.dtype, n, v.Iv, act.stride[0]));  // no pad columns
  run_linear(im.gemm, st, B.down, act, d_out, &im.lin_scratch);
}

}  // namespace

ops::Matrix Qwen2_5_VLCuda::encode_images(const float* pixel_values, std::int64_t n, std::int64_t patch_dim,
                                          const std::vector<model::GridThw>& grid_thw) {
  Impl& im = *impl_;
  if (!im.vision)
    throw UsageError({"image", "this checkpoint has no vision tower", "visual.* weights", "none",
                      "send text-only prompts to this model"});
  return model_cuda::encode_images(im, *im.vision, pixel_values, n, patch_dim, grid_thw);
}

namespace {

// Stages one call's pixels into px (v.px as BF16 [n, patch_dim]), enqueued on the stream.
using StagePixels = std::function<void(const Tensor& px)>;

// Pixels from host f32 rows (preprocess_image's pixel_values): converted to BF16 by all cores into pinned memory
// in four pieces, each copied while the next is converted.
void stage_f32_pixels(DevVision& v, const float* pixel_values, const Tensor& px, cudaStream_t st) {
  const std::size_t n_px = static_cast<std::size_t>(px.dim(0) * px.dim(1));
  auto* stage = static_cast<std::uint16_t*>(v.staging.get(n_px * 2));
  constexpr int kPieces = 4;
  constexpr std::int64_t kChunk = 1 << 16;
  for (int piece = 0; piece < kPieces; ++piece) {
    const std::size_t b = n_px * piece / kPieces, e = n_px * (piece + 1) / kPieces;
    const std::int64_t chunks = static_cast<std::int64_t>((e - b + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::size_t c0 = b + static_cast<std::size_t>(c * kChunk), c1 = std::min(e, c0 + kChunk);
      f32_to_bf16(std::span<const float>(pixel_values + c0, c1 - c0), std::span<std::uint16_t>(stage + c0, c1 - c0));
    }
    if (e > b)
      VLQ_CUDA_CHECK(cudaMemcpyAsync(static_cast<std::uint16_t*>(px.data) + b, stage + b, (e - b) * 2,
                                     cudaMemcpyHostToDevice, st));
  }
}

std::size_t align16(std::size_t b) { return (b + 15) / 16 * 16; }
std::size_t taps_bytes(const image::ResizeTaps& t) { return align16(t.bounds.size() * 4) + align16(t.kk.size() * 4); }

// Raw RGB images preprocessed on the device (image::plan_preprocess's steps, same bits as preprocess_image +
// f32_to_bf16): each image's bytes, taps and BF16 value table go up in one pinned copy; the resize passes and
// the patchify run as kernels.
void stage_raw_pixels(DevVision& v, const image::RawImages& raw, const Tensor& px, cudaStream_t st) {
  std::size_t total = 0;
  for (std::size_t i = 0; i < raw.plans.size(); ++i)
    total += align16(raw.images[i]->pixels.size()) + taps_bytes(raw.plans[i].horizontal) +
             taps_bytes(raw.plans[i].vertical) + align16(3 * 256 * 2);
  auto* host = static_cast<std::uint8_t*>(v.staging.get(total));
  auto* dev = static_cast<std::uint8_t*>(v.raw.get(total));
  struct Offsets { std::size_t rgb, hb, hk, vb, vk, lut; };
  std::vector<Offsets> off(raw.plans.size());
  std::size_t o = 0;
  auto put = [&](const void* src, std::size_t bytes) {
    const std::size_t at = o;
    if (bytes) std::memcpy(host + at, src, bytes);
    o += align16(bytes);
    return at;
  };
  for (std::size_t i = 0; i < raw.plans.size(); ++i) {
    const image::PreprocessPlan& p = raw.plans[i];
    off[i].rgb = put(raw.images[i]->pixels.data(), raw.images[i]->pixels.size());
    off[i].hb = put(p.horizontal.bounds.data(), p.horizontal.bounds.size() * 4);
    off[i].hk = put(p.horizontal.kk.data(), p.horizontal.kk.size() * 4);
    off[i].vb = put(p.vertical.bounds.data(), p.vertical.bounds.size() * 4);
    off[i].vk = put(p.vertical.kk.data(), p.vertical.kk.size() * 4);
    std::uint16_t lut[3 * 256];
    for (int c = 0; c < 3; ++c) f32_to_bf16(std::span<const float>(p.value[c]), std::span<std::uint16_t>(lut + c * 256, 256));
    off[i].lut = put(lut, sizeof lut);
  }
  VLQ_CUDA_CHECK(cudaMemcpyAsync(dev, host, o, cudaMemcpyHostToDevice, st));
  std::int64_t row = 0;
  for (std::size_t i = 0; i < raw.plans.size(); ++i) {
    const image::PreprocessPlan& p = raw.plans[i];
    const auto* I = reinterpret_cast<const std::int32_t*>(dev);
    Tensor cur = Tensor::contiguous(dev + off[i].rgb, DType::U8, {p.in_height, p.in_width, 3});
    auto pass = [&](bool horizontal, Scratch& buf) {
      const image::ResizeTaps& t = horizontal ? p.horizontal : p.vertical;
      if (t.ksize == 0) return;
      const std::int64_t h = horizontal ? cur.dim(0) : p.out_height, w = horizontal ? p.out_width : cur.dim(1);
      const Tensor next = Tensor::contiguous(buf.get(static_cast<std::size_t>(h * w * 3)), DType::U8, {h, w, 3});
      cuda::resize_pass_u8(cur, next, horizontal, I + (horizontal ? off[i].hb : off[i].vb) / 4,
                           I + (horizontal ? off[i].hk : off[i].vk) / 4, t.ksize, t.precision, st);
      cur = next;
    };
    pass(!p.vertical_first, v.resized[0]);
    pass(p.vertical_first, v.resized[1]);
    const std::int64_t np = p.n_patches();
    const Tensor rows = Tensor::strided2d(static_cast<std::uint16_t*>(px.data) + row * px.stride[0], DType::BF16, np,
                                          px.dim(1), px.stride[0]);
    cuda::patchify_bf16(cur, reinterpret_cast<const std::uint16_t*>(dev + off[i].lut), static_cast<int>(p.patch_size),
                        static_cast<int>(p.merge_size), static_cast<int>(p.temporal_patch_size), rows, st);
    row += np;
  }
}

Tensor encode_staged(Qwen2_5_VLCuda::Impl& im, DevVision& v, std::int64_t n, std::int64_t patch_dim,
                     const std::vector<model::GridThw>& grid_thw, const StagePixels& stage_pixels) {
  VLQ_CUDA_CHECK(cudaSetDevice(im.opt.device));
  std::int64_t total = 0;
  for (const auto& g : grid_thw) total += g[0] * g[1] * g[2];
  if (total != n || patch_dim != v.patch.k || n % v.unit != 0 || n == 0)
    throw UsageError({"pixel_values", "pixel_values do not match image_grid_thw / the patch embedding",
                      std::to_string(total) + " x " + std::to_string(v.patch.k),
                      std::to_string(n) + " x " + std::to_string(patch_dim), "this is a bug in the caller"});
  cudaStream_t st = im.stream.get();
  static const bool profile = cuda::env_switch("VLQ_VISION_PROFILE", false);
  const auto t_begin = std::chrono::steady_clock::now();
  auto ms_since = [&] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_begin).count(); };
  // The plan (window permutation, tiles, angles): computed and uploaded once per image-size combination.
  const bool cached = !v.plan_grid.empty() && v.plan_grid == grid_thw && v.plan_ints == v.ints.buf.data() &&
                      v.plan_ang == v.ang.buf.data();
  VisionPlan plan;
  if (!cached) {
    plan = plan_vision(v, n, grid_thw);
    v.plan_grid.clear();  // invalid until the upload below has been enqueued
    v.plan_n_perm = plan.n_perm, v.plan_n_inv = plan.n_inv, v.plan_n_cw = plan.n_cw, v.plan_n_cf = plan.n_cf;
  }
  const std::size_t n_ints = static_cast<std::size_t>(v.plan_n_perm + v.plan_n_inv + 4 * (v.plan_n_cw + v.plan_n_cf));
  auto* ints = static_cast<std::int32_t*>(v.ints.get(n_ints * 4));
  const Tensor ang = scratch_view(v.ang, DType::F32, n, v.hd / 2);
  if (!cached) {  // pageable sources: the stream sync at the end keeps them alive long enough
    VLQ_CUDA_CHECK(cudaMemcpyAsync(ints, plan.ints.data(), plan.ints.size() * 4, cudaMemcpyHostToDevice, st));
    VLQ_CUDA_CHECK(cudaMemcpyAsync(ang.data, plan.angles.data(), plan.angles.size() * 4, cudaMemcpyHostToDevice, st));
    v.plan_grid = grid_thw, v.plan_ints = v.ints.buf.data(), v.plan_ang = v.ang.buf.data();
  }
  const double t_plan = ms_since();
  const Tensor px = scratch_view(v.px, DType::BF16, n, patch_dim);
  stage_pixels(px);
  const double t_px = ms_since();
  cudaEvent_t ev[2] = {nullptr, nullptr};
  if (profile) {
    for (auto& e : ev) VLQ_CUDA_CHECK(cudaEventCreate(&e));
    VLQ_CUDA_CHECK(cudaEventRecord(ev[0], st));
  }
  const Tensor perm = Tensor::contiguous(ints, DType::I32, {v.plan_n_perm});
  const Tensor inv = Tensor::contiguous(ints + v.plan_n_perm, DType::I32, {v.plan_n_inv});
  const Tensor cu_window = Tensor::contiguous(ints + v.plan_n_perm + v.plan_n_inv, DType::I32, {v.plan_n_cw, 4});
  const Tensor cu_full =
      Tensor::contiguous(ints + v.plan_n_perm + v.plan_n_inv + 4 * v.plan_n_cw, DType::I32, {v.plan_n_cf, 4});

  // 2. patch embedding, 4–5. window reorder (a row gather)
  const Tensor x0 = scratch_view(v.x0, DType::F32, n, v.Dv);
  if (v.taps) v.taps->record(kTapPatch, px, st);
  run_linear(im.gemm, st, v.patch, px, x0, &im.lin_scratch);
  const Tensor x = scratch_view(v.x, DType::F32, n, v.Dv);
  cuda::embedding(perm, x0, x, st);
  // 7. blocks; two MLP-output buffers alternate as in the language model
  const Tensor d2 = scratch_view(v.d, DType::F32, 2 * n, v.Dv);
  const Tensor dl[2] = {Tensor::contiguous(d2.data, DType::F32, {n, v.Dv}),
                        Tensor::contiguous(d2.as<float>() + n * v.Dv, DType::F32, {n, v.Dv})};
  for (std::size_t bi = 0; bi < v.blocks.size(); ++bi)
    vision_block(im, v, static_cast<int>(bi), x, bi == 0 ? nullptr : &dl[(bi - 1) % 2], v.blocks[bi].full ? cu_full : cu_window,
                 ang, dl[bi % 2]);
  cuda::add_inplace(x, dl[(v.blocks.size() - 1) % 2], st);
  // 8. merger: ln_q per patch row, rows grouped by `unit` → [n/unit, unit·Dv], Linear, GELU, Linear
  const std::int64_t m = n / v.unit;
  const Tensor lnq = input_of(v.hin[0], v.merger0, m);  // [m, unit·Dv] == [n, Dv] in memory
  cuda::rms_norm(x, nullptr, v.ln_q, kVisionEps, Tensor::contiguous(lnq.data, lnq.dtype, {n, v.Dv}), scale_of(v.merger0), st);
  if (v.taps && lnq.dtype == DType::BF16) v.taps->record(kTapMerger0, lnq, st);
  const Tensor m0 = scratch_view(v.m0, DType::F32, m, v.merger0.n);
  run_linear(im.gemm, st, v.merger0, lnq, m0, &im.lin_scratch);
  const Tensor m0a = input_of(v.m0a, v.merger2, m);
  cuda::gelu_erf(m0, m0a, scale_of(v.merger2), st);
  if (v.taps && m0a.dtype == DType::BF16) v.taps->record(kTapMerger2, m0a, st);
  const Tensor m2 = scratch_view(v.m2, DType::F32, m, v.out);
  run_linear(im.gemm, st, v.merger2, m0a, m2, &im.lin_scratch);
  // 9. undo the window permutation: final[window_index[k]] = out[k], i.e. final[j] = out[inverse[j]]
  const Tensor fin = scratch_view(v.fin, DType::F32, m, v.out);
  cuda::embedding(inv, m2, fin, st);
  if (profile) VLQ_CUDA_CHECK(cudaEventRecord(ev[1], st));
  const double t_enq = ms_since();
  im.stream.sync();  // the staging buffer and the plan's host vectors are read until here
  if (profile) {
    float gpu_ms = 0;
    VLQ_CUDA_CHECK(cudaEventElapsedTime(&gpu_ms, ev[0], ev[1]));
    for (auto& e : ev) cudaEventDestroy(e);
    std::fprintf(stderr,
                 "vision: %lld patches: plan %.2f ms (%s), pixels to BF16 + upload enqueued %.2f ms, kernels enqueued "
                 "%.2f ms, GPU (patch embed .. merger) %.2f ms, total %.2f ms\n",
                 static_cast<long long>(n), t_plan, cached ? "cached" : "computed", t_px - t_plan, t_enq - t_px, gpu_ms,
                 ms_since());
  }
  return fin;
}

}  // namespace

Tensor encode_images_device(Qwen2_5_VLCuda::Impl& im, DevVision& v, const float* pixel_values, std::int64_t n,
                            std::int64_t patch_dim, const std::vector<model::GridThw>& grid_thw) {
  return encode_staged(im, v, n, patch_dim, grid_thw,
                       [&](const Tensor& px) { stage_f32_pixels(v, pixel_values, px, im.stream.get()); });
}

Tensor encode_images_device(Qwen2_5_VLCuda::Impl& im, DevVision& v, const image::RawImages& raw) {
  if (raw.images.size() != raw.plans.size() || raw.images.empty())
    throw UsageError({"images", "raw images and their plans differ in number", std::to_string(raw.plans.size()),
                      std::to_string(raw.images.size()), "build them with image::plan_images"});
  std::vector<model::GridThw> grid(raw.grid_thw.begin(), raw.grid_thw.end());
  return encode_staged(im, v, raw.n_patches, raw.patch_dim, grid,
                       [&](const Tensor& px) { stage_raw_pixels(v, raw, px, im.stream.get()); });
}

namespace {
// The tower's features [m, out] F32 copied to the host.
ops::Matrix download_features(Qwen2_5_VLCuda::Impl& im, const Tensor& fin) {
  ops::Matrix out(fin.dim(0), fin.dim(1));
  VLQ_CUDA_CHECK(cudaMemcpyAsync(out.data.data(), fin.data, out.data.size() * 4, cudaMemcpyDeviceToHost, im.stream.get()));
  im.stream.sync();
  return out;
}
}  // namespace

ops::Matrix encode_images(Qwen2_5_VLCuda::Impl& im, DevVision& v, const float* pixel_values, std::int64_t n,
                          std::int64_t patch_dim, const std::vector<model::GridThw>& grid_thw) {
  return download_features(im, encode_images_device(im, v, pixel_values, n, patch_dim, grid_thw));
}

ops::Matrix Qwen2_5_VLCuda::encode_images(const image::RawImages& images) {
  Impl& im = *impl_;
  if (!im.vision)
    throw UsageError({"image", "this checkpoint has no vision tower", "visual.* weights", "none",
                      "send text-only prompts to this model"});
  return download_features(im, encode_images_device(im, *im.vision, images));
}

model::VisionEncoder Qwen2_5_VLCuda::vision_encoder() {
  return [this](const float* px, std::int64_t n, std::int64_t patch_dim, const std::vector<model::GridThw>& grid) {
    return encode_images(px, n, patch_dim, grid);
  };
}
bool Qwen2_5_VLCuda::has_vision() const { return impl_->vision != nullptr; }
std::size_t Qwen2_5_VLCuda::vision_weight_bytes() const {
  return impl_->vision && impl_->vision->arena ? impl_->vision->arena->used() : 0;
}

}  // namespace vlq::model_cuda
