// Uploads the Qwen2.5-VL language model from the CPU runtime's weights into one device arena, in the
// stored dtype: FP8 Linears as their E4M3 codes (re-encoded from the exact decoded values, so the bytes
// equal the checkpoint's), dense Linears / embedding as BF16 (exact for BF16 checkpoints), norms as f32.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "impl.h"
#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/ops/bulk_convert.h"
#include "vlq/ops/rotary.h"

namespace vlq::model_cuda {

std::size_t aligned(std::size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

std::size_t linear_bytes(const ops::LinearWeights& l, int div) {
  const std::size_t nk = static_cast<std::size_t>(l.out_features * l.in_features) / static_cast<std::size_t>(div);
  const std::size_t nkp = static_cast<std::size_t>(l.out_features * ((l.in_features + 7) / 8 * 8)) / static_cast<std::size_t>(div);
  const std::size_t w = l.kind == ops::LinearKind::kDense ? 2 * nkp : nk;
  const std::size_t col_scale = l.weight_scale.size() > 1 ? aligned(l.weight_scale.size() * 4) : 0;  // per-channel
  return aligned(w) + aligned(32) + 2 * aligned(static_cast<std::size_t>(l.out_features) * 4) + col_scale;
}

void* upload_bf16(cuda::DeviceArena& arena, const std::vector<float>& v) {
  std::vector<std::uint16_t> b = ops::large_vector<std::uint16_t>(v.size());  // converted on every core
  ops::f32_to_bf16_parallel(std::span<const float>(v), std::span<std::uint16_t>(b));
  return arena.upload(b.data(), b.size() * 2);
}

float* upload_f32(cuda::DeviceArena& arena, const std::vector<float>& v) {
  return static_cast<float*>(arena.upload(v.data(), v.size() * 4));
}

ops::LinearWeights pad_in_cols(const ops::LinearWeights& l, std::int64_t cols) {
  ops::LinearWeights p = l;
  p.in_features = cols;
  p.w.assign(static_cast<std::size_t>(l.out_features * cols), 0.0f);
  for (std::int64_t r = 0; r < l.out_features; ++r)
    std::copy(l.w.begin() + r * l.in_features, l.w.begin() + (r + 1) * l.in_features, p.w.begin() + r * cols);
  return p;
}

void check_supported(const ops::LinearWeights& l) {
  auto unsupported = [&](const std::string& what, const std::string& found) {
    throw UnsupportedError({l.name, what, "dense (BF16/F16/F32) or FP8 with per-tensor or per-channel weight scales (static or dynamic per-token inputs)",
                            found, "run this checkpoint with --device cpu, or re-export it with vlq quantize"});
  };
  if (l.kind == ops::LinearKind::kFp8Static || l.kind == ops::LinearKind::kFp8Dynamic) {
    if (l.weight_scale.size() != 1 && l.weight_scale.size() != static_cast<std::size_t>(l.out_features))
      unsupported("FP8 weight scales must be one per tensor or one per output channel",
                  std::to_string(l.weight_scale.size()) + " weight scales for " + std::to_string(l.out_features) + " rows");
    if (l.kind == ops::LinearKind::kFp8Static && !l.input_scale) unsupported("FP8 Linear without input_scale", "no input_scale");
    if (l.in_features % 16 != 0) unsupported("FP8 GEMMs need in_features % 16 == 0", std::to_string(l.in_features));
  }
}

namespace {
ops::LinearWeights shard(const ops::LinearWeights& l, Split split, int rank, int n) {
  if (split == Split::kNone || n == 1) return l;
  ops::LinearWeights s = l;
  if (split == Split::kRows) {
    const std::int64_t rows = l.out_features / n, r0 = rows * rank;
    s.out_features = rows;
    s.w.assign(l.w.begin() + r0 * l.in_features, l.w.begin() + (r0 + rows) * l.in_features);
    if (!l.bias.empty()) s.bias.assign(l.bias.begin() + r0, l.bias.begin() + r0 + rows);
    if (l.weight_scale.size() > 1) s.weight_scale.assign(l.weight_scale.begin() + r0, l.weight_scale.begin() + r0 + rows);
  } else {
    const std::int64_t cols = l.in_features / n, c0 = cols * rank;
    s.in_features = cols;
    s.w.resize(static_cast<std::size_t>(l.out_features * cols));
    for (std::int64_t r = 0; r < l.out_features; ++r)
      std::copy(l.w.begin() + r * l.in_features + c0, l.w.begin() + r * l.in_features + c0 + cols, s.w.begin() + r * cols);
    if (rank != 0) s.bias.clear();
  }
  return s;
}

// This rank's part of `full`: `full` itself for one rank or no split, else a shard kept alive in `keep`.
const ops::LinearWeights& rank_part(const ops::LinearWeights& full, Split split, int rank, int n,
                                    std::optional<ops::LinearWeights>& keep) {
  if (split == Split::kNone || n == 1) return full;
  keep = shard(full, split, rank, n);
  return *keep;
}

// The description of an FP8 Linear whose E4M3 codes are at `w` on the device: shape from `l` (out rows `rows`),
// its input_scale and `weight_scale`, and the two device scales cuBLASLt reads.
DevLinear fp8_linear(cuda::DeviceArena& arena, const ops::LinearWeights& l, void* w, std::int64_t rows, float weight_scale) {
  DevLinear d;
  d.name = l.name;
  d.n = rows;
  d.k = d.kp = l.in_features;
  d.fp8 = true;
  d.w = w;
  d.input_scale = *l.input_scale;
  d.weight_scale = weight_scale;
  const float s[8] = {d.input_scale, 0, 0, 0, d.weight_scale, 0, 0, 0};
  d.scales = static_cast<float*>(arena.upload(s, sizeof s));
  return d;
}

std::vector<std::uint8_t> e4m3_codes(const ops::LinearWeights& l) {
  std::vector<std::uint8_t> codes = ops::large_vector<std::uint8_t>(l.w.size());
  ops::f32_to_e4m3fn_parallel(std::span<const float>(l.w), std::span<std::uint8_t>(codes));  // exact: w holds E4M3 values
  return codes;
}
}  // namespace

DevLinear upload_linear(cuda::DeviceArena& arena, const ops::LinearWeights& full, Split split, int rank, int n) {
  if (full.kind == ops::LinearKind::kFp8Dynamic && split == Split::kCols && n > 1)
    throw UnsupportedError({full.name, "dynamic per-token FP8 in a row-parallel (input-split) Linear under tensor "
                            "parallelism: each rank would scale its tokens by the amax of its own slice",
                            "--tensor-parallel 1, or a checkpoint with static input scales", "FP8 dynamic, --tensor-parallel " +
                            std::to_string(n), "run with --tensor-parallel 1"});
  std::optional<ops::LinearWeights> keep;
  const ops::LinearWeights& l = rank_part(full, split, rank, n, keep);
  check_supported(l);
  DevLinear d;
  if (l.kind == ops::LinearKind::kFp8Static && l.weight_scale.size() == 1) {
    const std::vector<std::uint8_t> codes = e4m3_codes(l);
    d = fp8_linear(arena, l, arena.upload(codes.data(), codes.size()), l.out_features, l.weight_scale[0]);
  } else if (l.kind == ops::LinearKind::kFp8Static || l.kind == ops::LinearKind::kFp8Dynamic) {
    // Per-channel weight scales and / or dynamic per-token activations: the codes, unit scales for cuBLASLt
    // (the GEMM gives Σ codes·codes; run_linear's scale_rows_cols applies the scales and the bias after it).
    const std::vector<std::uint8_t> codes = e4m3_codes(l);
    d.name = l.name;
    d.n = l.out_features;
    d.k = d.kp = l.in_features;
    d.w = arena.upload(codes.data(), codes.size());
    d.dynamic = l.kind == ops::LinearKind::kFp8Dynamic;
    d.fp8 = !d.dynamic;  // static: the input arrives as E4M3 codes of x / input_scale
    d.input_scale = d.dynamic ? 1.0f : *l.input_scale;
    d.weight_scale = l.weight_scale.size() == 1 ? l.weight_scale[0] : 1.0f;
    if (l.weight_scale.size() > 1) d.col_scale = upload_f32(arena, l.weight_scale);
    const float unit[8] = {1, 0, 0, 0, 1, 0, 0, 0};
    d.scales = static_cast<float*>(arena.upload(unit, sizeof unit));
  } else {
    d.name = l.name;
    d.n = l.out_features;
    d.k = l.in_features;
    d.kp = l.in_features % 8 ? (l.in_features + 7) / 8 * 8 : l.in_features;
    if (d.kp != d.k) {
      d.w = upload_bf16(arena, pad_in_cols(l, d.kp).w);
    } else {
      d.w = upload_bf16(arena, l.w);
    }
  }
  if (!l.bias.empty()) {
    d.bias_f32 = upload_f32(arena, l.bias);
    d.bias_bf16 = upload_bf16(arena, l.bias);
  }
  return d;
}

namespace {
// gate and up both FP8 static per-tensor with the same input_scale, the same shape and no bias: stored as one
// [2I, K] block of codes (gate rows, then up rows) so that one GEMM writes the whole gate|up row; their weight
// scales are applied by SwiGLU instead (forward_cuda.cpp). VLQ_CUDA_FUSE_GATE_UP=0 keeps them apart.
bool fusable(const ops::LinearWeights& g, const ops::LinearWeights& u) {
  static const bool on = cuda::env_switch("VLQ_CUDA_FUSE_GATE_UP", true);
  return on && g.kind == ops::LinearKind::kFp8Static && u.kind == ops::LinearKind::kFp8Static &&
         g.weight_scale.size() == 1 && u.weight_scale.size() == 1 && g.input_scale && u.input_scale &&
         *g.input_scale == *u.input_scale && g.bias.empty() && u.bias.empty() && g.in_features == u.in_features &&
         g.out_features == u.out_features && g.in_features % 16 == 0;
}

// Uploads gate and up of one rank as one block; dg / du describe the two halves (each with its own scales).
DevLinear upload_gate_up(cuda::DeviceArena& arena, const ops::LinearWeights& gate_full, const ops::LinearWeights& up_full,
                         int rank, int n, DevLinear& dg, DevLinear& du) {
  std::optional<ops::LinearWeights> keep_g, keep_u;
  const ops::LinearWeights& g = rank_part(gate_full, Split::kRows, rank, n, keep_g);
  const ops::LinearWeights& u = rank_part(up_full, Split::kRows, rank, n, keep_u);
  check_supported(g);
  check_supported(u);
  std::vector<std::uint8_t> codes = e4m3_codes(g);
  const std::size_t half = codes.size();
  const std::vector<std::uint8_t> up_codes = e4m3_codes(u);
  codes.insert(codes.end(), up_codes.begin(), up_codes.end());
  auto* w = static_cast<std::uint8_t*>(arena.upload(codes.data(), codes.size()));
  DevLinear f = fp8_linear(arena, g, w, 2 * g.out_features, 1.0f);
  f.name = g.name + " + " + u.name;
  dg = fp8_linear(arena, g, w, g.out_features, g.weight_scale[0]);
  du = fp8_linear(arena, u, w + half, u.out_features, u.weight_scale[0]);
  return f;
}

// q, k and v all FP8 static per-tensor with one input_scale and K % 16 == 0: uploaded as one block of codes
// (q rows, k rows, v rows) for a single decode GEMV; on by default, VLQ_CUDA_FUSE_QKV=0 keeps them apart.
bool fusable_qkv(const ops::LinearWeights& q, const ops::LinearWeights& k, const ops::LinearWeights& v) {
  // on by default since run 13 (with the decode fusions: batch-1 decode 243.4 → 261.2 tok/s, H100); =0 for A/B
  static const bool on = cuda::env_switch("VLQ_CUDA_FUSE_QKV", true);
  if (!on) return false;
  for (const auto* l : {&q, &k, &v})
    if (l->kind != ops::LinearKind::kFp8Static || l->weight_scale.size() != 1 || !l->input_scale ||
        *l->input_scale != *q.input_scale || l->in_features != q.in_features || l->in_features % 16 != 0)
      return false;
  return true;
}

// Uploads q, k, v of one rank as one block; dq / dk / dv describe its three parts (each with its own scales and
// bias, for cuBLASLt at M > kFp8GemvMaxM); the returned Linear carries row_alpha and the stacked biases.
DevLinear upload_qkv(cuda::DeviceArena& arena, const model::DecoderLayerWeights& L, int rank, int n, DevLinear& dq,
                     DevLinear& dk, DevLinear& dv) {
  std::optional<ops::LinearWeights> keep[3];
  const ops::LinearWeights* parts[3] = {&rank_part(L.q, Split::kRows, rank, n, keep[0]),
                                        &rank_part(L.k, Split::kRows, rank, n, keep[1]),
                                        &rank_part(L.v, Split::kRows, rank, n, keep[2])};
  std::vector<std::uint8_t> codes;
  std::vector<float> alpha, bias;
  bool any_bias = false;
  for (const auto* l : parts) {
    check_supported(*l);
    const std::vector<std::uint8_t> c = e4m3_codes(*l);
    codes.insert(codes.end(), c.begin(), c.end());
    alpha.insert(alpha.end(), static_cast<std::size_t>(l->out_features), *l->input_scale * l->weight_scale[0]);
    any_bias = any_bias || !l->bias.empty();
    if (l->bias.empty()) bias.insert(bias.end(), static_cast<std::size_t>(l->out_features), 0.0f);
    else bias.insert(bias.end(), l->bias.begin(), l->bias.end());
  }
  auto* w = static_cast<std::uint8_t*>(arena.upload(codes.data(), codes.size()));
  const std::int64_t rows = static_cast<std::int64_t>(alpha.size());
  DevLinear f = fp8_linear(arena, *parts[0], w, rows, 1.0f);
  f.name = parts[0]->name + " + " + parts[1]->name + " + " + parts[2]->name;
  f.row_alpha = upload_f32(arena, alpha);
  if (any_bias) f.bias_f32 = upload_f32(arena, bias);
  DevLinear* out[3] = {&dq, &dk, &dv};
  std::uint8_t* at = w;
  for (int i = 0; i < 3; ++i) {
    const ops::LinearWeights& l = *parts[i];
    *out[i] = fp8_linear(arena, l, at, l.out_features, l.weight_scale[0]);
    if (!l.bias.empty()) {
      out[i]->bias_f32 = upload_f32(arena, l.bias);
      out[i]->bias_bf16 = upload_bf16(arena, l.bias);
    }
    at += static_cast<std::size_t>(l.out_features * l.in_features);
  }
  return f;
}

std::size_t arena_bytes(const model::LanguageWeights& w, int tp) {
  std::size_t b = aligned(w.embedding().size() * 2) + aligned(w.norm.size() * 4) + linear_bytes(w.lm_head) + aligned(4096);
  for (const auto& L : w.layers) {
    b += aligned(L.input_norm.size() * 4) + aligned(L.post_norm.size() * 4);
    for (const auto* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) b += linear_bytes(*l, tp);
    const std::size_t n_qkv = static_cast<std::size_t>(L.q.out_features + L.k.out_features + L.v.out_features) / tp;
    if (fusable_qkv(L.q, L.k, L.v)) b += 2 * aligned(n_qkv * 4) + aligned(32);  // its row_alpha, stacked bias, scales
  }
  return b;
}

}  // namespace

void upload_language_model(const model::Qwen2_5_VL& cpu, Qwen2_5_VLCuda::Impl& im) {
  const auto& tc = cpu.config().text;
  const auto& w = cpu.weights().lm;
  im.H = tc.hidden_size;
  const int tp = im.opt.tp_size, rank = im.opt.tp_rank;
  if (tp < 1 || rank < 0 || rank >= tp || tc.num_attention_heads % tp != 0 || tc.num_key_value_heads % tp != 0 ||
      tc.intermediate_size % tp != 0)
    throw UnsupportedError({"--tensor-parallel", "the model does not split over this many ranks",
                            "a divisor of num_attention_heads, num_key_value_heads and intermediate_size (" +
                                std::to_string(tc.num_attention_heads) + ", " + std::to_string(tc.num_key_value_heads) + ", " +
                                std::to_string(tc.intermediate_size) + ")",
                            std::to_string(tp), "choose a tensor-parallel size that divides them"});
  im.heads = tc.num_attention_heads / tp;  // per rank
  im.kvh = tc.num_key_value_heads / tp;
  im.hd = tc.head_dim;
  im.inter = tc.intermediate_size / tp;
  im.vocab = tc.vocab_size;
  im.layers_n = tc.num_hidden_layers;
  im.max_pos = tc.max_position_embeddings;
  im.eps = static_cast<float>(tc.rms_norm_eps);
  if (tc.mrope_section.size() != 3)
    throw UnsupportedError({"config.json", "mrope_section must have 3 entries on the CUDA path", "[t, h, w]",
                            std::to_string(tc.mrope_section.size()) + " entries", ""});
  for (int i = 0; i < 3; ++i) im.sections[i] = static_cast<int>(tc.mrope_section[i]);
  if (im.hd % 32 != 0 || im.hd > 256)
    throw UnsupportedError({"config.json", "head_dim not supported by the CUDA attention kernels",
                            "a multiple of 32, at most 256", std::to_string(im.hd), "use --device cpu"});

  im.arena = std::make_unique<cuda::DeviceArena>(arena_bytes(w, tp));
  im.embed = upload_bf16(*im.arena, w.embedding());
  im.final_norm = upload_f32(*im.arena, w.norm);
  im.lm_head = upload_linear(*im.arena, w.lm_head);
  im.inv_freq = upload_f32(*im.arena, ops::rope_inv_freq(tc.rope_theta, im.hd));
  im.layers.reserve(w.layers.size());
  for (const auto& L : w.layers) {
    DevLayer d;
    d.input_norm = upload_f32(*im.arena, L.input_norm);
    d.post_norm = upload_f32(*im.arena, L.post_norm);
    if (fusable_qkv(L.q, L.k, L.v)) {
      d.qkv = upload_qkv(*im.arena, L, rank, tp, d.q, d.k, d.v);
    } else {
      d.q = upload_linear(*im.arena, L.q, Split::kRows, rank, tp);
      d.k = upload_linear(*im.arena, L.k, Split::kRows, rank, tp);
      d.v = upload_linear(*im.arena, L.v, Split::kRows, rank, tp);
    }
    d.o = upload_linear(*im.arena, L.o, Split::kCols, rank, tp);
    if (fusable(L.gate, L.up)) {
      d.gate_up = upload_gate_up(*im.arena, L.gate, L.up, rank, tp, d.gate, d.up);
    } else {
      d.gate = upload_linear(*im.arena, L.gate, Split::kRows, rank, tp);
      d.up = upload_linear(*im.arena, L.up, Split::kRows, rank, tp);
    }
    d.down = upload_linear(*im.arena, L.down, Split::kCols, rank, tp);
    d.k_scale = L.k_scale.value_or(1.0f);
    d.v_scale = L.v_scale.value_or(1.0f);
    im.layers.push_back(std::move(d));
  }
}

}  // namespace vlq::model_cuda
