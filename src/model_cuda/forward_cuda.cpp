// The batch-first forward of Qwen2_5_VLCuda: embedding gather (+ uploaded prompt embeddings), per layer
// RMSNorm → q/k/v → M-RoPE → paged KV write → paged causal GQA attention → o → RMSNorm(+residual) →
// gate/up → SwiGLU → down, final norm and lm_head on the requested rows. Mirrors model::lm_forward.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "impl.h"
#include "vlq/core/error.h"
#include "vlq/cuda/elementwise.h"
#include "vlq/cuda/gemv.h"
#include "vlq/cuda/sampling.h"
#include "vlq/ops/linear.h"
#ifdef VLQ_HAVE_NCCL
#include <nccl.h>
#endif

namespace vlq::model_cuda {

using cuda::Tensor;

namespace {
constexpr std::size_t kGemvSharedBytes = 200 * 1024;
// FP8 weights: the GEMV decodes E4M3 of x and W on CUDA cores, ALU-bound past a few rows (run 5: M = 8 at
// 23–38 % of the copy bandwidth, a 7B decode step of batch 8 took 9.4 ms vs 5.9 ms for batch 64 through
// cuBLASLt in run 11); cuBLASLt's FP8 tensor cores take M > 4. BF16 weights keep the GEMV up to kGemvMaxM.
constexpr std::int64_t kFp8GemvMaxM = 4;

// The decode fusions (rotary + KV write in one kernel; the decode attention writing an FP8 o_proj's E4M3 input):
// on by default since run 13 (with fused q|k|v: batch-1 decode 243.4 → 261.2 tok/s, H100); VLQ_CUDA_FUSE_DECODE=0
// runs the unfused kernels, which give the same values (A/B).
constexpr bool kFuseDecodeDefault = true;
bool fuse_decode() {
  static const bool on = cuda::env_switch("VLQ_CUDA_FUSE_DECODE", kFuseDecodeDefault);
  return on;
}

// Batch 1: the layer's two RMSNorms run inside the q|k|v and gate|up GEMVs (cuda::rms_norm_gemv: the same bits,
// two kernels and two kernel boundaries fewer per layer; the residual stream alternates between h and h_alt
// within the layer and is back in h at its end). Opt-in (VLQ_CUDA_FUSE_NORM_GEMV=1) until vlq_cuda_tests has
// passed with it on a GPU and the bench has measured it (written 2026-12-08 without a device).
bool H_fits_fold(std::int64_t H) { return H % 16 == 0 && H <= cuda::kNormGemvMaxK; }  // rms_norm_gemv's K limits
bool fuse_norm_gemv() {
  static const bool on = cuda::env_switch("VLQ_CUDA_FUSE_NORM_GEMV", false);
  return on;
}

}  // namespace

// gate|up (LM) and q|k|v, gate|up (ViT) GEMM outputs in BF16 outside calibration (prefill, the vision tower):
// opt-in (VLQ_CUDA_GATE_UP_BF16=1) until vlq_cuda_tests has passed with it on a GPU and the bench has measured it
// (compiled and CPU-suite-tested only, 2026-12-07); off keeps them f32.
bool gate_up_bf16() {
  static const bool on = cuda::env_switch("VLQ_CUDA_GATE_UP_BF16", false);
  return on;
}

namespace {
// A Linear with dynamic per-token and / or per-channel scales (DevLinear::dynamic, col_scale): E4M3 codes of x per
// row (dynamic; a static one gets codes of x / input_scale from its producer), Σ codes·codes by the GEMV or
// cuBLASLt with unit scales into an f32 workspace, then y = Σ · (row scale · column scale) + bias as
// ops::linear_forward applies them.
void run_scaled_linear(cuda::GemmContext& gemm, cudaStream_t stream, const DevLinear& L, const Tensor& x, const Tensor& y,
                       LinearScratch* ls) {
  if (!ls)
    throw UsageError({L.name, "a Linear with per-token or per-channel scales needs run_linear's workspace",
                      "a LinearScratch", "null", "a bug in the caller"});
  const std::int64_t m = x.dim(0);
  const bool gemv = m <= kFp8GemvMaxM && static_cast<std::size_t>(m * L.k) <= kGemvSharedBytes;  // E4M3 x: 1 byte
  const Tensor w = Tensor::contiguous(L.w, DType::F8_E4M3, {L.n, L.k});
  if (!L.dynamic && gemv) {
    // per-channel weights, static input (decode): the GEMV's row_alpha is the column scale, alpha the input
    // scale, y = (input_scale · cs[n]) · Σ + bias in one pass (one fused rounding instead of the CPU's three)
    cuda::gemv(x, w, L.input_scale, L.bias_f32, y, stream, L.col_scale);
    return;
  }
  Tensor codes = x;
  const float* row_scales = nullptr;
  float row_scale = L.input_scale;
  if (L.dynamic) {
    codes = Tensor::contiguous(ls->codes.get(static_cast<std::size_t>(m * L.k) + 256), DType::F8_E4M3, {m, L.k});
    float* sc = static_cast<float*>(ls->scales.get(static_cast<std::size_t>(m) * 4 + 256));
    cuda::quantize_e4m3_per_token(x, codes, sc, ops::kDynamicScaleFloor, stream);
    row_scales = sc;
    row_scale = 0.0f;
    if (gemv) {
      // decode: the GEMV applies the per-token and the weight scales and the bias itself, y = (ws · s_m) · Σ + bias
      cuda::gemv(codes, w, L.col_scale ? 1.0f : L.weight_scale, L.bias_f32, y, stream, L.col_scale, sc);
      return;
    }
  }
  const Tensor acc = Tensor::contiguous(ls->acc.get(static_cast<std::size_t>(m * L.n) * 4 + 256), DType::F32, {m, L.n});
  cuda::gemm_fp8(gemm, codes, w, L.scales, L.scales + 4, nullptr, acc, stream);  // (GEMV sizes returned above)
  cuda::scale_rows_cols(acc, row_scales, row_scale, L.col_scale, L.weight_scale, L.bias_f32, y, stream);
}
}  // namespace

void run_linear(cuda::GemmContext& gemm, cudaStream_t stream, const DevLinear& L, const Tensor& x, const Tensor& y,
                LinearScratch* ls) {
  if (L.dynamic || L.col_scale) {
    run_scaled_linear(gemm, stream, L, x, y, ls);
    return;
  }
  const std::int64_t m = x.dim(0);
  const std::int64_t kp = L.kp > 0 ? L.kp : L.k;
  const Tensor w = Tensor::contiguous(L.w, L.fp8 ? DType::F8_E4M3 : DType::BF16, {L.n, kp});
  if (kp != L.k) {  // zero-padded K: the input's row holds kp columns (see DevLinear::kp)
    if (x.dim(1) != L.k || x.stride[0] != kp)
      throw UsageError({L.name, "input of a K-padded Linear must have a row stride of the padded K",
                        "stride " + std::to_string(kp), x.describe(), "a bug in the caller"});
    const Tensor xp = Tensor::strided2d(x.data, x.dtype, m, kp, kp);
    if (L.fp8) throw UsageError({L.name, "K-padded FP8 Linear", "dense", "FP8", "a bug"});
    if (m <= cuda::kGemvMaxM && static_cast<std::size_t>(m * kp) * 2 <= kGemvSharedBytes)
      cuda::gemv(xp, w, 1.0f, L.bias_f32, y, stream);
    else
      cuda::gemm_bf16(gemm, xp, w, y.dtype == DType::BF16 ? L.bias_bf16 : L.bias_f32, y, stream);  // bias in y's dtype
    return;
  }
  const std::size_t x_bytes = static_cast<std::size_t>(m * L.k) * (L.fp8 ? 1 : 2);
  const bool gemv = m <= (L.fp8 ? kFp8GemvMaxM : cuda::kGemvMaxM) && x_bytes <= kGemvSharedBytes;
  if (L.fp8) {
    if (gemv) cuda::gemv(x, w, L.row_alpha ? 1.0f : L.input_scale * L.weight_scale, L.bias_f32, y, stream, L.row_alpha);
    else if (L.row_alpha)
      throw UsageError({L.name, "a row-stacked Linear (fused q|k|v) runs only through the GEMV",
                        "M <= " + std::to_string(kFp8GemvMaxM), "M = " + std::to_string(m), "a bug in the caller"});
    else cuda::gemm_fp8(gemm, x, w, L.scales, L.scales + 4, L.bias_bf16, y, stream);
  } else {
    if (gemv) cuda::gemv(x, w, 1.0f, L.bias_f32, y, stream);
    else cuda::gemm_bf16(gemm, x, w, y.dtype == DType::BF16 ? L.bias_bf16 : L.bias_f32, y, stream);
  }
}

namespace {

void run_linear(Qwen2_5_VLCuda::Impl& im, const DevLinear& L, const Tensor& x, const Tensor& y) {
  run_linear(im.gemm, im.stream.get(), L, x, y, &im.lin_scratch);
}

// A view [rows, cols] of scratch `s` in form `f`.
Tensor input_view(Scratch& s, const InputForm& f, std::int64_t rows, std::int64_t cols) {
  const DType dt = input_dtype(f);
  return Tensor::contiguous(s.get(static_cast<std::size_t>(rows * cols) * dtype_size(dt) + 256), dt, {rows, cols});
}

// RMSNorm of h (after h += residual when given) into the input form of each Linear in `group`, then runs
// each Linear into its output view. Linears with the same input form share one normalized copy.
// With calibration taps, the first (BF16) normalized copy is recorded in slot `tap`.
void norm_then_linears(Qwen2_5_VLCuda::Impl& im, const Tensor& h, const Tensor* residual, const float* norm_w,
                       std::initializer_list<std::pair<const DevLinear*, Tensor>> group, int tap = -1) {
  InputForm forms[3];
  Tensor views[3];
  int n_forms = 0;
  const std::int64_t rows = h.dim(0), cols = h.dim(1);
  for (const auto& [lin, out] : group) {
    const InputForm f = form_of(*lin);
    int idx = -1;
    for (int i = 0; i < n_forms; ++i)
      if (forms[i] == f) idx = i;
    if (idx < 0) {
      if (n_forms == 3) throw UsageError({"norm_then_linears", "more than three input forms", "<= 3", "4", "a bug"});
      idx = n_forms++;
      forms[idx] = f;
      views[idx] = input_view(im.xin[idx], f, rows, cols);
      // Only the first normalization applies the residual (it updates h in place).
      cuda::rms_norm(h, idx == 0 ? residual : nullptr, norm_w, im.eps, views[idx], f.fp8 ? f.scale : 0.0f,
                     im.stream.get());
    }
    run_linear(im, *lin, views[idx], out);
  }
  if (im.taps && tap >= 0 && n_forms > 0 && !forms[0].fp8) im.taps->record(tap, views[0], im.stream.get());
}

Tensor f32_view(Scratch& s, std::int64_t rows, std::int64_t cols) {
  return Tensor::contiguous(s.get(static_cast<std::size_t>(rows * cols) * 4), DType::F32, {rows, cols});
}

void validate(const Qwen2_5_VLCuda::Impl& im, const Batch& b) {
  const std::int64_t T = static_cast<std::int64_t>(b.token_ids.size());
  auto bad = [](const std::string& what, const std::string& exp, const std::string& found) {
    throw UsageError({"Qwen2_5_VLCuda::forward", what, exp, found, "the batch was built wrongly (a bug in the caller)"});
  };
  if (T == 0) bad("empty batch", ">= 1 token", "0");
  if (T > im.opt.max_batch_tokens) bad("too many tokens in one batch", "<= " + std::to_string(im.opt.max_batch_tokens), std::to_string(T));
  if (b.positions.size() != static_cast<std::size_t>(3 * T) || b.seq_of_row.size() != static_cast<std::size_t>(T) ||
      b.cache_pos.size() != static_cast<std::size_t>(T))
    bad("positions / seq_of_row / cache_pos sizes", "[3, T] / [T] / [T] with T = " + std::to_string(T),
        std::to_string(b.positions.size()) + " / " + std::to_string(b.seq_of_row.size()) + " / " + std::to_string(b.cache_pos.size()));
  if (b.sequences.empty() || static_cast<int>(b.sequences.size()) > im.opt.max_sequences)
    bad("number of sequences", "1.." + std::to_string(im.opt.max_sequences), std::to_string(b.sequences.size()));
  for (std::int64_t t = 0; t < T; ++t) {
    if (b.token_ids[t] < 0 || b.token_ids[t] >= im.vocab)
      bad("token id outside the embedding", "0.." + std::to_string(im.vocab - 1), std::to_string(b.token_ids[t]));
    const int s = b.seq_of_row[t];
    if (s < 0 || s >= static_cast<int>(b.sequences.size())) bad("seq_of_row out of range", "< B", std::to_string(s));
    const std::int64_t cap = static_cast<std::int64_t>(b.sequences[s]->blocks.size()) * im.opt.block_size;
    if (b.cache_pos[t] < 0 || b.cache_pos[t] >= cap)
      bad("cache position outside the sequence's blocks", "< " + std::to_string(cap), std::to_string(b.cache_pos[t]));
  }
  for (const auto r : b.logits_rows)
    if (r < 0 || r >= T) bad("logits row out of range", "< T", std::to_string(r));
  for (const auto& e : b.embeds)
    if (e.row < 0 || e.rows < 0 || e.row + e.rows > T || !e.data) bad("embedding rows out of range", "within [0, T)", std::to_string(e.row));
}

// upload_ints packs the batch's integer inputs into one device buffer: ids [T], positions [3, T], q_seq [T],
// q_pos [T], slots [T], logits_rows [R], block_tables [B, max_blocks], tiles, single rows (BatchInts, impl.h).
std::int64_t table_width(const Batch& b) {
  std::int64_t w = 1;
  for (const auto* s : b.sequences) w = std::max<std::int64_t>(w, static_cast<std::int64_t>(s->blocks.size()));
  return w;
}
}  // namespace

BatchInts upload_ints(Qwen2_5_VLCuda::Impl& im, const Batch& b, std::int64_t width, cuda::DeviceBuffer* target) {
  const std::int64_t T = static_cast<std::int64_t>(b.token_ids.size());
  const std::int64_t R = static_cast<std::int64_t>(b.logits_rows.size());
  const std::int64_t B = static_cast<std::int64_t>(b.sequences.size());
  const std::int64_t max_blocks = width;
  std::vector<std::int32_t> host;
  host.reserve(static_cast<std::size_t>(9 * T + R + B * max_blocks));
  auto put = [&](const std::vector<std::int32_t>& v) { host.insert(host.end(), v.begin(), v.end()); };
  put(b.token_ids);
  put(b.positions);
  put(b.seq_of_row);
  put(b.cache_pos);
  for (std::int64_t t = 0; t < T; ++t) {
    const auto& blocks = b.sequences[b.seq_of_row[t]]->blocks;
    const std::int32_t p = b.cache_pos[t];
    host.push_back(blocks[p / im.opt.block_size] * im.opt.block_size + p % im.opt.block_size);
  }
  put(b.logits_rows);
  for (const auto* s : b.sequences) {
    put(s->blocks);
    host.insert(host.end(), static_cast<std::size_t>(max_blocks) - s->blocks.size(), 0);
  }
  // prefill: some sequence has more than one row (T > B alone would also count a batch with a row-less sequence)
  std::vector<std::int32_t> rows_of(static_cast<std::size_t>(B), 0);
  for (const auto s : b.seq_of_row) ++rows_of[s];
  const bool prefill = std::any_of(rows_of.begin(), rows_of.end(), [](std::int32_t n) { return n > 1; });
  // Mixed steps: tiles of several rows go to the flash kernel, one-row tiles (decode tokens, a chunk's last
  // odd row) to the decode kernel through a row list.
  std::vector<std::int32_t> tiles, single;
  if (prefill) {
    const std::vector<std::int32_t> all = cuda::prefill_tiles(b.seq_of_row, cuda::prefill_tile_rows(static_cast<int>(im.hd)));
    for (std::size_t i = 0; i < all.size(); i += 2) {
      if (all[i + 1] == 1) single.push_back(all[i]);
      else tiles.insert(tiles.end(), {all[i], all[i + 1]});
    }
  }
  const std::size_t tiles_at = host.size();
  put(tiles);
  const std::size_t single_at = host.size();
  put(single);
  if (target && target->bytes() < host.size() * 4) *target = cuda::DeviceBuffer(host.size() * 4);
  auto* d = static_cast<std::int32_t*>(target ? target->data() : im.ints.get(host.size() * 4));
  VLQ_CUDA_CHECK(cudaMemcpyAsync(d, host.data(), host.size() * 4, cudaMemcpyHostToDevice, im.stream.get()));
  VLQ_CUDA_CHECK(cudaStreamSynchronize(im.stream.get()));  // `host` dies at return
  BatchInts v;
  v.ids = Tensor::contiguous(d, DType::I32, {T});
  v.positions = Tensor::contiguous(d + T, DType::I32, {3, T});
  v.q_seq = Tensor::contiguous(d + 4 * T, DType::I32, {T});
  v.q_pos = Tensor::contiguous(d + 5 * T, DType::I32, {T});
  v.slots = Tensor::contiguous(d + 6 * T, DType::I32, {T});
  v.rows = Tensor::contiguous(d + 7 * T, DType::I32, {std::max<std::int64_t>(R, 1)});
  v.tables = Tensor::contiguous(d + 7 * T + R, DType::I32, {B, max_blocks});
  v.prefill = prefill;
  v.tiles = Tensor::contiguous(d + tiles_at, DType::I32, {static_cast<std::int64_t>(tiles.size() / 2), 2});
  v.single = Tensor::contiguous(d + single_at, DType::I32, {static_cast<std::int64_t>(single.size())});
  // The one-row tiles may include a prefilling sequence's last odd row, whose earlier keys this step writes.
  v.single_decode = std::all_of(single.begin(), single.end(), [&](std::int32_t r) { return rows_of[b.seq_of_row[r]] == 1; });
  return v;
}

namespace {

// Tensor parallel: x (contiguous F32) ← Σ over ranks, in place, on the compute stream. No-op for one rank.
void all_reduce_sum(Qwen2_5_VLCuda::Impl& im, const Tensor& x) {
  if (im.opt.tp_size == 1) return;
#ifdef VLQ_HAVE_NCCL
  const ncclResult_t r = ncclAllReduce(x.data, x.data, static_cast<std::size_t>(x.numel()), ncclFloat, ncclSum,
                                       static_cast<ncclComm_t>(im.opt.nccl_comm), im.stream.get());
  if (r != ncclSuccess)
    throw CudaError({"ncclAllReduce", "NCCL all-reduce failed", "ncclSuccess", ncclGetErrorString(r),
                     "check NCCL_DEBUG=INFO output; every rank must run the same batch"});
#else
  throw UnsupportedError({"--tensor-parallel", "this vlq was built without NCCL", "a build with NCCL", "none",
                          "use --tensor-parallel 1"});
#endif
}

// Paged causal attention of the batch's rows: when some sequence prefills (more than one row), the tensor-core
// flash kernel over its multi-row tiles and the one-CTA-per-row decode kernel over the one-row tiles (the
// decode tokens of a mixed step); the decode kernel alone otherwise.
void attention(Qwen2_5_VLCuda::Impl& im, int li, const Tensor& q, const BatchInts& in, float scale, const Tensor& out) {
  if (in.prefill) {
    if (in.tiles.dim(0) > 0)
      cuda::paged_attention_prefill(q, im.kv[li], in.tables, in.q_seq, in.q_pos, in.tiles,
                                    cuda::prefill_tile_rows(static_cast<int>(im.hd)), scale, out, im.stream.get());
    if (in.single.dim(0) > 0)
      cuda::paged_attention(q, im.kv[li], in.tables, in.q_seq, in.q_pos, scale, out, im.stream.get(), &in.single, 0.0f,
                            in.single_decode);  // only decode rows: their earlier keys were cached by earlier steps
  } else
    cuda::paged_attention(q, im.kv[li], in.tables, in.q_seq, in.q_pos, scale, out, im.stream.get(), nullptr, 0.0f, true);
}

}  // namespace

// One decoder layer over T rows. `resid` is the previous layer's MLP output (null for layer 0), added to h
// by this layer's first RMSNorm; returns (through d) this layer's MLP output.
void decoder_layer(Qwen2_5_VLCuda::Impl& im, int li, const Tensor& h, const Tensor* resid, const BatchInts& in,
                   const Tensor& angles, const Tensor& d_out) {
  const DevLayer& L = im.layers[li];
  const std::int64_t T = h.dim(0), hd = im.hd, W = (im.heads + 2 * im.kvh) * hd;
  cudaStream_t st = im.stream.get();
  float* qkv = static_cast<float*>(im.qkv.get(static_cast<std::size_t>(T * W) * 4));
  auto cols = [&](std::int64_t off, std::int64_t n) { return Tensor::strided2d(qkv + off, DType::F32, T, n, W); };
  const std::int64_t I = im.inter;
  // Batch 1 with both norms folded into their GEMVs (fuse_norm_gemv): h + resid goes to h_alt here and back to
  // h at the MLP norm; nothing between the two reads the residual stream.
  const bool fold = T == 1 && fuse_norm_gemv() && !im.taps && im.opt.tp_size == 1 && L.qkv.w && L.qkv.fp8 &&
                    L.gate_up.w && L.gate_up.fp8 && !L.gate_up.row_alpha && H_fits_fold(im.H);
  const Tensor h_alt = fold ? f32_view(im.h_alt, T, im.H) : Tensor{};
  if (fold)
    cuda::rms_norm_gemv(h, resid, L.input_norm, im.eps, L.qkv.input_scale, h_alt,
                        Tensor::contiguous(L.qkv.w, DType::F8_E4M3, {L.qkv.n, L.qkv.k}),
                        L.qkv.row_alpha ? 1.0f : L.qkv.input_scale * L.qkv.weight_scale, L.qkv.bias_f32, cols(0, W), st,
                        L.qkv.row_alpha);
  else if (L.qkv.w && T <= kFp8GemvMaxM)  // decode: one GEMV over the fused q|k|v block
    norm_then_linears(im, h, resid, L.input_norm, {{&L.qkv, cols(0, W)}}, kTapQkvIn);
  else
    norm_then_linears(im, h, resid, L.input_norm,
                      {{&L.q, cols(0, im.heads * hd)}, {&L.k, cols(im.heads * hd, im.kvh * hd)},
                       {&L.v, cols((im.heads + im.kvh) * hd, im.kvh * hd)}},
                      kTapQkvIn);
  Tensor qk{qkv, DType::F32, 3, {T, im.heads + im.kvh, hd}, {W, hd, 1}};
  Tensor q{qkv, DType::F32, 3, {T, im.heads, hd}, {W, hd, 1}};
  Tensor k{qkv + im.heads * hd, DType::F32, 3, {T, im.kvh, hd}, {W, hd, 1}};
  Tensor v{qkv + (im.heads + im.kvh) * hd, DType::F32, 3, {T, im.kvh, hd}, {W, hd, 1}};
  if (im.taps || !fuse_decode()) {  // calibration: K after M-RoPE and V recorded before they reach the cache
    cuda::rotary_inplace(qk, angles, st);
    if (im.taps) {
      im.taps->record(kTapK, k, st);
      im.taps->record(kTapV, v, st);
    }
    cuda::kv_cache_write(k, v, in.slots, im.kv[li], st);
  } else {
    cuda::rotary_kv_cache_write(qk, v, angles, in.slots, im.kv[li], st);
  }
  // Attention output in o_proj's input form: BF16 for a dense o, else f32 then E4M3.
  const std::int64_t A = im.heads * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Tensor o_in;
  if (L.o.fp8 && !in.prefill && !im.taps && fuse_decode()) {  // decode: the attention kernel writes o_proj's E4M3 input itself
    o_in = Tensor::contiguous(im.attn_in.get(static_cast<std::size_t>(T * A)), DType::F8_E4M3, {T, A});
    cuda::paged_attention(q, im.kv[li], in.tables, in.q_seq, in.q_pos, scale,
                          Tensor::contiguous(o_in.data, DType::F8_E4M3, {T, im.heads, hd}), st, nullptr, L.o.input_scale,
                          true);
  } else if (L.o.fp8) {
    Tensor att = Tensor::contiguous(im.attn.get(static_cast<std::size_t>(T * A) * 4), DType::F32, {T, im.heads, hd});
    attention(im, li, q, in, scale, att);
    if (im.taps) im.taps->record(kTapOIn, Tensor::contiguous(att.data, DType::F32, {T, A}), st);
    o_in = Tensor::contiguous(im.attn_in.get(static_cast<std::size_t>(T * A)), DType::F8_E4M3, {T, A});
    cuda::quantize_e4m3(att, L.o.input_scale, o_in, st);
  } else if (L.o.dynamic) {  // f32, quantized per token by run_linear
    Tensor att = Tensor::contiguous(im.attn.get(static_cast<std::size_t>(T * A) * 4), DType::F32, {T, im.heads, hd});
    attention(im, li, q, in, scale, att);
    o_in = Tensor::contiguous(att.data, DType::F32, {T, A});
    if (im.taps) im.taps->record(kTapOIn, o_in, st);
  } else {
    Tensor att = Tensor::contiguous(im.attn_in.get(static_cast<std::size_t>(T * A) * 2), DType::BF16, {T, im.heads, hd});
    attention(im, li, q, in, scale, att);
    o_in = Tensor::contiguous(att.data, DType::BF16, {T, A});
    if (im.taps) im.taps->record(kTapOIn, o_in, st);
  }
  const Tensor a = f32_view(im.a, T, im.H);
  run_linear(im, L.o, o_in, a);
  all_reduce_sum(im, a);  // tensor parallel: sum the row-parallel partial outputs
  // MLP: post norm (h += a), gate/up into one [T, 2I] row, SwiGLU in down's input form, down.
  // gate|up in BF16 when it comes from a GEMM (prefill; HF's precision, half the bytes SwiGLU reads: 1.2 GB per
  // layer of an 8k prefill in f32); f32 from the decode GEMVs and for calibration. Opt-in: VLQ_CUDA_GATE_UP_BF16=1.
  const bool fused = L.gate_up.w != nullptr;  // one GEMM for gate|up, weight scales applied by SwiGLU
  // (separate gate and up GEMMs write the two halves of one row: the up half must start 16-byte aligned)
  const bool gu16 = !im.taps && T > cuda::kGemvMaxM && gate_up_bf16() && (fused || I % 8 == 0);
  const DType gdt = gu16 ? DType::BF16 : DType::F32;
  char* gu = static_cast<char*>(im.gate_up.get(static_cast<std::size_t>(T * 2 * I) * 4));
  const std::size_t half = static_cast<std::size_t>(I) * dtype_size(gdt);
  if (fold)
    cuda::rms_norm_gemv(h_alt, &a, L.post_norm, im.eps, L.gate_up.input_scale, h,
                        Tensor::contiguous(L.gate_up.w, DType::F8_E4M3, {L.gate_up.n, L.gate_up.k}),
                        L.gate_up.input_scale * L.gate_up.weight_scale, L.gate_up.bias_f32,
                        Tensor::contiguous(gu, gdt, {T, 2 * I}), st);
  else if (fused)
    norm_then_linears(im, h, &a, L.post_norm, {{&L.gate_up, Tensor::contiguous(gu, gdt, {T, 2 * I})}}, kTapGateUpIn);
  else
    norm_then_linears(im, h, &a, L.post_norm,
                      {{&L.gate, Tensor::strided2d(gu, gdt, T, I, 2 * I)},
                       {&L.up, Tensor::strided2d(gu + half, gdt, T, I, 2 * I)}},
                      kTapGateUpIn);
  const InputForm f = form_of(L.down);
  const Tensor act = input_view(im.act_in, f, T, I);
  cuda::swiglu(Tensor::contiguous(gu, gdt, {T, 2 * I}), act, f.fp8 ? f.scale : 0.0f, st,
               fused ? L.gate.weight_scale : 1.0f, fused ? L.up.weight_scale : 1.0f);
  if (im.taps && !f.fp8) im.taps->record(kTapDownIn, act, st);
  run_linear(im, L.down, act, d_out);
  all_reduce_sum(im, d_out);
}

namespace {

// Everything after the integer upload: only device work on `im.stream` (no host synchronisation, no
// allocation once the workspaces have their size), so that a decode step can be captured as a CUDA graph.
cuda::Tensor run_body(Qwen2_5_VLCuda::Impl& im, const Batch& b, const BatchInts& in) {
  const std::int64_t T = static_cast<std::int64_t>(b.token_ids.size());
  const std::int64_t R = static_cast<std::int64_t>(b.logits_rows.size());
  cudaStream_t st = im.stream.get();

  const Tensor h = f32_view(im.h, T, im.H);
  cuda::embedding(in.ids, Tensor::contiguous(im.embed, DType::BF16, {im.vocab, im.H}), h, st);
  for (const auto& e : b.embeds)
    VLQ_CUDA_CHECK(cudaMemcpyAsync(h.as<float>() + e.row * im.H, e.data, static_cast<std::size_t>(e.rows * im.H) * 4,
                                   e.on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice, st));
  const Tensor angles = f32_view(im.angles, T, im.hd / 2);
  cuda::mrope_angles(in.positions, im.inv_freq, im.sections, angles, st);

  // Two MLP-output buffers alternate: layer l reads d[l-1] as its residual and writes d[l].
  const Tensor d0 = f32_view(im.d, 2 * T, im.H);
  const Tensor dl[2] = {Tensor::contiguous(d0.data, DType::F32, {T, im.H}),
                        Tensor::contiguous(d0.as<float>() + T * im.H, DType::F32, {T, im.H})};
  for (int li = 0; li < static_cast<int>(im.layers.size()); ++li)
    decoder_layer(im, li, h, li == 0 ? nullptr : &dl[(li - 1) % 2], in, angles, dl[li % 2]);
  if (!im.layers.empty()) cuda::add_inplace(h, dl[(im.layers.size() - 1) % 2], st);
  if (R == 0) return Tensor::contiguous(nullptr, DType::F32, {0, im.vocab});

  const Tensor g = f32_view(im.gathered, R, im.H);
  cuda::embedding(in.rows, h, g, st);  // gather the rows whose logits are wanted
  const InputForm f = form_of(im.lm_head);
  const Tensor gin = input_view(im.gathered_in, f, R, im.H);
  cuda::rms_norm(g, nullptr, im.final_norm, im.eps, gin, f.fp8 ? f.scale : 0.0f, st);
  const Tensor out = f32_view(im.logits, R, im.vocab);
  run_linear(im, im.lm_head, gin, out);
  return out;
}

bool graphs_enabled(const Qwen2_5_VLCuda::Impl& im) {
  static const bool env_on = cuda::env_switch("VLQ_CUDA_GRAPHS", true);
  return im.opt.cuda_graphs && env_on && im.opt.tp_size == 1;
}

// Runs the batch; returns the device logits [R, V] f32 (in impl.logits) without synchronizing. Decode steps
// replay a captured CUDA graph (see CudaOptions::cuda_graphs).
cuda::Tensor run_batch(Qwen2_5_VLCuda::Impl& im, const Batch& b) {
  validate(im, b);
  const std::int64_t T = static_cast<std::int64_t>(b.token_ids.size());
  const std::int64_t R = static_cast<std::int64_t>(b.logits_rows.size());
  const std::int64_t B = static_cast<std::int64_t>(b.sequences.size());
  if (!graphs_enabled(im) || T != B || T == 0 || !b.embeds.empty()) return run_body(im, b, upload_ints(im, b, table_width(b)));
  std::int64_t width = 8;  // rounded up to a power of two: a sequence's graph changes every 8·2^k blocks, not every block
  while (width < table_width(b)) width *= 2;
  if (im.graphs.size() >= Qwen2_5_VLCuda::Impl::kMaxGraphs) im.graphs.clear();
  auto& slot = im.graphs[{T, R, width}];
  if (!slot) slot = std::make_unique<DecodeGraph>();
  DecodeGraph& g = *slot;
  if (g.exec && g.generation != g_scratch_generation.load()) {
    cudaGraphExecDestroy(g.exec);
    g.exec = nullptr;
  }
  const BatchInts in = upload_ints(im, b, width, &g.ints);
  cudaStream_t st = im.stream.get();
  if (!g.exec && !g.seen) {  // first sighting: eager (sizes every workspace for this shape)
    g.seen = true;
    return run_body(im, b, in);
  }
  if (!g.exec) {
    const std::uint64_t gen = g_scratch_generation.load();
    VLQ_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed));
    cudaGraph_t graph = nullptr;
    try {
      run_body(im, b, in);
    } catch (...) {
      (void)cudaStreamEndCapture(st, &graph);
      if (graph) cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      throw;
    }
    VLQ_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
    const bool stale = gen != g_scratch_generation.load();  // a workspace moved while capturing
    if (!stale) {
      const cudaError_t e = cudaGraphInstantiate(&g.exec, graph, 0);
      if (e != cudaSuccess) {
        cudaGraphDestroy(graph);
        g.exec = nullptr;
        VLQ_CUDA_CHECK(e);
      }
    }
    cudaGraphDestroy(graph);
    if (stale) return run_body(im, b, in);
    g.generation = gen;
  }
  VLQ_CUDA_CHECK(cudaGraphLaunch(g.exec, st));
  return f32_view(im.logits, R, im.vocab);
}

}  // namespace

ops::Matrix Qwen2_5_VLCuda::forward(const Batch& b) {
  Impl& im = *impl_;
  const Tensor out = run_batch(im, b);
  ops::Matrix logits(out.dim(0), im.vocab);
  if (out.dim(0) > 0)
    VLQ_CUDA_CHECK(cudaMemcpyAsync(logits.data.data(), out.data, static_cast<std::size_t>(out.numel()) * 4,
                                   cudaMemcpyDeviceToHost, im.stream.get()));
  im.stream.sync();
  return logits;
}

std::vector<std::int32_t> Qwen2_5_VLCuda::forward_greedy(const Batch& b, const RowPenalties* pen) {
  Impl& im = *impl_;
  const std::size_t R = b.logits_rows.size();
  if (pen && (pen->penalty.size() != R || pen->offsets.size() != R + 1 || pen->offsets[0] != 0 ||
              pen->offsets[R] != static_cast<std::int32_t>(pen->history.size())))
    throw UsageError({"forward_greedy", "repetition penalties do not match the logits rows",
                      std::to_string(R) + " penalties, " + std::to_string(R + 1) + " offsets ending at the history size",
                      std::to_string(pen->penalty.size()) + " penalties, " + std::to_string(pen->offsets.size()) + " offsets",
                      "a bug in the caller"});
  const Tensor out = run_batch(im, b);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(out.dim(0)));
  if (!ids.empty() && pen && !pen->history.empty()) {
    cudaStream_t st = im.stream.get();
    const std::size_t n = pen->offsets.size() + pen->history.size();
    auto* d = static_cast<std::int32_t*>(im.pen_ints.get((n + R) * 4));
    VLQ_CUDA_CHECK(cudaMemcpyAsync(d, pen->offsets.data(), pen->offsets.size() * 4, cudaMemcpyHostToDevice, st));
    VLQ_CUDA_CHECK(cudaMemcpyAsync(d + pen->offsets.size(), pen->history.data(), pen->history.size() * 4, cudaMemcpyHostToDevice, st));
    float* pf = reinterpret_cast<float*>(d + n);
    VLQ_CUDA_CHECK(cudaMemcpyAsync(pf, pen->penalty.data(), R * 4, cudaMemcpyHostToDevice, st));
    cuda::repetition_penalty(out, Tensor::contiguous(d, DType::I32, {static_cast<std::int64_t>(R + 1)}),
                             Tensor::contiguous(d + pen->offsets.size(), DType::I32, {static_cast<std::int64_t>(pen->history.size())}),
                             Tensor::contiguous(pf, DType::F32, {static_cast<std::int64_t>(R)}),
                             static_cast<float*>(im.pen_vals.get(pen->history.size() * 4)), st);
  }
  if (!ids.empty()) {
    const Tensor am = Tensor::contiguous(im.argmax.get(ids.size() * 4), DType::I32, {out.dim(0)});
    cuda::argmax(out, am, im.stream.get());
    VLQ_CUDA_CHECK(cudaMemcpyAsync(ids.data(), am.data, ids.size() * 4, cudaMemcpyDeviceToHost, im.stream.get()));
  }
  im.stream.sync();
  return ids;
}

}  // namespace vlq::model_cuda
