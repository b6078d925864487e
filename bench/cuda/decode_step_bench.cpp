// A Qwen2.5-VL-7B-shaped decode step on random FP8 weights, captured in one CUDA graph: embedding gather,
// M-RoPE angles, 28 × [RMSNorm+E4M3 quant, qkv (+bias), rotary, FP8 paged KV write, paged GQA decode
// attention, E4M3 quant, o, residual+RMSNorm+quant, gate_up, SwiGLU+quant, down], final residual+RMSNorm,
// BF16 lm_head, argmax on the device (its output is the next step's input ids). Batch B <= 8 uses the GEMV,
// larger B cuBLASLt FP8 (BF16 out) and BF16 lm_head. Each sequence has `ctx` cached tokens (FP8 KV).
// Reports tokens/s = B / step time and the fraction of the copy bandwidth measured in the same run, with
// bytes = all weights read once per step (28 layers' linears + lm_head) + KV read.
// Usage: cuda_decode_step_bench [ctx=128] [batches=1,8,64,256]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vlq/cuda/attention.h"
#include "vlq/cuda/elementwise.h"
#include "vlq/cuda/gemm.h"
#include "vlq/cuda/gemv.h"
#include "vlq/ops/rotary.h"

using namespace vlq;
using namespace vlq::cuda;
using namespace vlq::cuda::bench;

namespace {
constexpr int kHidden = 3584, kInter = 18944, kLayers = 28, kHeads = 28, kKvHeads = 4, kHeadDim = 128;
constexpr int kVocab = 152064, kQkv = (kHeads + 2 * kKvHeads) * kHeadDim, kBlock = 16;

struct Layer {
  std::uint8_t *qkv, *o, *gu, *down;
  float* qkv_bias;
  float *ln_in, *ln_post;
};
}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (device_count() == 0) {
    std::printf("no CUDA device: benchmark skipped\n");
    return 0;
  }
  const int ctx = argc > 1 ? std::atoi(argv[1]) : 128;
  std::vector<int> batches = {1, 8, 64, 256};
  if (argc > 2) {
    batches.clear();
    std::stringstream ss(argv[2]);
    for (std::string t; std::getline(ss, t, ',');) batches.push_back(std::stoi(t));
  }
  std::printf("device: %s\n", device_description().c_str());
  Stream st;
  const cudaStream_t s = st.get();
  const double copy_gbs = copy_bandwidth_gbs(s);
  std::printf("copy D2D: %.0f GB/s\n", copy_gbs);

  // ---- weights -------------------------------------------------------------------------------------
  const std::size_t per_layer = std::size_t{kQkv} * kHidden + std::size_t{kHidden} * kHidden + std::size_t{2} * kInter * kHidden +
                                std::size_t{kHidden} * kInter;
  const std::size_t lm_bytes = std::size_t{kVocab} * kHidden * 2;
  DeviceArena arena(per_layer * kLayers + 2 * lm_bytes + (64u << 20));
  std::vector<Layer> layers(kLayers);
  std::vector<float> ones(kHidden, 1.0f), bias(kQkv, 0.01f);
  for (auto& L : layers) {
    L.qkv = static_cast<std::uint8_t*>(arena.allocate(std::size_t{kQkv} * kHidden));
    L.o = static_cast<std::uint8_t*>(arena.allocate(std::size_t{kHidden} * kHidden));
    L.gu = static_cast<std::uint8_t*>(arena.allocate(std::size_t{2} * kInter * kHidden));
    L.down = static_cast<std::uint8_t*>(arena.allocate(std::size_t{kHidden} * kInter));
    L.qkv_bias = static_cast<float*>(arena.upload(bias.data(), bias.size() * 4));
    L.ln_in = static_cast<float*>(arena.upload(ones.data(), kHidden * 4));
    L.ln_post = static_cast<float*>(arena.upload(ones.data(), kHidden * 4));
  }
  for (int l = 0; l < kLayers; ++l) {
    fill_random(layers[l].qkv, std::size_t{kQkv} * kHidden, DType::F8_E4M3, 100 + l);
    fill_random(layers[l].o, std::size_t{kHidden} * kHidden, DType::F8_E4M3, 200 + l);
    fill_random(layers[l].gu, std::size_t{2} * kInter * kHidden, DType::F8_E4M3, 300 + l);
    fill_random(layers[l].down, std::size_t{kHidden} * kInter, DType::F8_E4M3, 400 + l);
  }
  void* embed = arena.allocate(lm_bytes);
  void* lm_head = arena.allocate(lm_bytes);
  fill_random(embed, lm_bytes, DType::BF16, 8);
  fill_random(lm_head, lm_bytes, DType::BF16, 9);
  float* ln_final = static_cast<float*>(arena.upload(ones.data(), kHidden * 4));
  const float s_in = 0.05f, s_w = 0.002f;  // static scales (random weights: only the data flow matters)
  std::vector<float> scales(128, s_in);
  scales[64] = s_w;  // two 256-byte aligned scale slots (d_scales, d_scales + 64)
  float* d_scales = static_cast<float*>(arena.upload(scales.data(), scales.size() * 4));
  const auto inv = ops::rope_inv_freq(1e6, kHeadDim);
  float* d_inv = static_cast<float*>(arena.upload(inv.data(), inv.size() * 4));
  const int sections[3] = {16, 24, 24};
  const double weight_bytes = static_cast<double>(per_layer) * kLayers + static_cast<double>(lm_bytes);
  std::printf("weights: %.3f GB linears + %.3f GB lm_head (BF16)\n", per_layer * kLayers / 1e9, lm_bytes / 1e9);

  GemmContext gemm;
  std::vector<std::string> table;
  for (int B : batches) {
    // ---- KV cache and per-step buffers -------------------------------------------------------------
    const int blocks_per_seq = (ctx + kBlock - 1) / kBlock;
    const int nblocks = B * blocks_per_seq;
    const std::size_t side = std::size_t{static_cast<unsigned>(nblocks)} * kBlock * kKvHeads * kHeadDim;
    DeviceBuffer kv(side * 2 * kLayers);
    fill_random(kv.data(), kv.bytes(), DType::F8_E4M3, 10);
    std::vector<PagedKvLayer> cache(kLayers);
    for (int l = 0; l < kLayers; ++l)
      cache[l] = {kv.as<std::uint8_t>() + side * 2 * l, kv.as<std::uint8_t>() + side * (2 * l + 1), DType::F8_E4M3, nblocks, kBlock,
                  kKvHeads, kHeadDim, 0.05f, 0.05f};
    std::vector<int> tables(static_cast<std::size_t>(B) * blocks_per_seq), qseq(B), qpos(B, ctx - 1), slots(B), ids(B);
    for (int b = 0; b < B; ++b) {
      for (int j = 0; j < blocks_per_seq; ++j) tables[b * blocks_per_seq + j] = b * blocks_per_seq + j;
      qseq[b] = b;
      slots[b] = tables[b * blocks_per_seq + (ctx - 1) / kBlock] * kBlock + (ctx - 1) % kBlock;
      ids[b] = (b * 7919) % kVocab;
    }
    std::vector<int> pos(3 * B, ctx - 1);
    auto up = [](const std::vector<int>& v) {
      DeviceBuffer d(v.size() * 4);
      d.upload(v.data(), v.size() * 4);
      return d;
    };
    DeviceBuffer d_tables = up(tables), d_qseq = up(qseq), d_qpos = up(qpos), d_slots = up(slots), d_ids = up(ids), d_pos = up(pos);
    const bool small = B <= kGemvMaxM;
    const DType act = small ? DType::F32 : DType::BF16;  // GEMM outputs
    const std::size_t ab = dtype_size(act);
    DeviceBuffer x(std::size_t(B) * kHidden * 4), xq(std::size_t(B) * kInter), qkv(std::size_t(B) * kQkv * ab),
        attn(std::size_t(B) * kHidden * 4), o(std::size_t(B) * kHidden * ab), gu(std::size_t(B) * 2 * kInter * ab),
        down(std::size_t(B) * kHidden * ab), xb(std::size_t(B) * kHidden * 2), logits(std::size_t(B) * kVocab * 4),
        angles(std::size_t(B) * kHeadDim / 2 * 4);
    const Tensor t_x = Tensor::contiguous(x.data(), DType::F32, {B, kHidden});
    auto linear = [&](const Tensor& in, std::uint8_t* w, int n, int k, const float* b, const Tensor& out) {
      const Tensor tw = Tensor::contiguous(w, DType::F8_E4M3, {n, k});
      if (small) gemv(in, tw, s_in * s_w, b, out, s);
      else gemm_fp8(gemm, in, tw, d_scales, d_scales + 64, nullptr, out, s);  // (qkv bias: separate add not modelled here)
    };
    auto step = [&] {
      embedding(Tensor::contiguous(d_ids.data(), DType::I32, {B}), Tensor::contiguous(embed, DType::BF16, {kVocab, kHidden}), t_x, s);
      mrope_angles(Tensor::contiguous(d_pos.data(), DType::I32, {3, B}), d_inv, sections,
                   Tensor::contiguous(angles.data(), DType::F32, {B, kHeadDim / 2}), s);
      const Tensor t_down = Tensor::contiguous(down.data(), act, {B, kHidden});
      for (int l = 0; l < kLayers; ++l) {
        const Layer& L = layers[l];
        const Tensor t_xq = Tensor::contiguous(xq.data(), DType::F8_E4M3, {B, kHidden});
        rms_norm(t_x, l ? &t_down : nullptr, L.ln_in, 1e-6f, t_xq, s_in, s);
        const Tensor t_qkv = Tensor::contiguous(qkv.data(), act, {B, kQkv});
        linear(t_xq, L.qkv, kQkv, kHidden, L.qkv_bias, t_qkv);
        Tensor qk = Tensor::contiguous(qkv.data(), act, {B, kHeads + kKvHeads, kHeadDim});
        qk.stride[0] = kQkv;
        rotary_inplace(qk, Tensor::contiguous(angles.data(), DType::F32, {B, kHeadDim / 2}), s);
        Tensor tk = Tensor::contiguous(static_cast<char*>(qkv.data()) + kHeads * kHeadDim * ab, act, {B, kKvHeads, kHeadDim});
        Tensor tv = Tensor::contiguous(static_cast<char*>(qkv.data()) + (kHeads + kKvHeads) * kHeadDim * ab, act, {B, kKvHeads, kHeadDim});
        tk.stride[0] = tv.stride[0] = kQkv;
        kv_cache_write(tk, tv, Tensor::contiguous(d_slots.data(), DType::I32, {B}), cache[l], s);
        Tensor tq = Tensor::contiguous(qkv.data(), act, {B, kHeads, kHeadDim});
        tq.stride[0] = kQkv;
        const Tensor t_attn = Tensor::contiguous(attn.data(), DType::F32, {B, kHeads, kHeadDim});
        paged_attention(tq, cache[l], Tensor::contiguous(d_tables.data(), DType::I32, {B, blocks_per_seq}),
                        Tensor::contiguous(d_qseq.data(), DType::I32, {B}), Tensor::contiguous(d_qpos.data(), DType::I32, {B}),
                        1.0f / std::sqrt(float(kHeadDim)), t_attn, s, nullptr, 0.0f,
                        /*prior_keys_cached=*/true);  // one row per sequence, as the model's decode step
        quantize_e4m3(t_attn, s_in, t_xq, s);
        const Tensor t_o = Tensor::contiguous(o.data(), act, {B, kHidden});
        linear(t_xq, L.o, kHidden, kHidden, nullptr, t_o);
        rms_norm(t_x, &t_o, L.ln_post, 1e-6f, t_xq, s_in, s);
        const Tensor t_gu = Tensor::contiguous(gu.data(), act, {B, 2 * kInter});
        linear(t_xq, L.gu, 2 * kInter, kHidden, nullptr, t_gu);
        const Tensor t_h = Tensor::contiguous(xq.data(), DType::F8_E4M3, {B, kInter});
        swiglu(t_gu, t_h, s_in, s);
        linear(t_h, L.down, kHidden, kInter, nullptr, t_down);
      }
      const Tensor t_xb = Tensor::contiguous(xb.data(), DType::BF16, {B, kHidden});
      rms_norm(t_x, &t_down, ln_final, 1e-6f, t_xb, 0.0f, s);
      const Tensor t_logits = Tensor::contiguous(logits.data(), DType::F32, {B, kVocab});
      const Tensor t_lm = Tensor::contiguous(lm_head, DType::BF16, {kVocab, kHidden});
      if (small) gemv(t_xb, t_lm, 1.0f, nullptr, t_logits, s);
      else gemm_bf16(gemm, t_xb, t_lm, nullptr, t_logits, s);
      argmax(t_logits, Tensor::contiguous(d_ids.data(), DType::I32, {B}), s);
    };
    step();  // plans, smem attributes
    st.sync();
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    VLQ_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    step();
    VLQ_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    VLQ_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    const double ms = time_ms(s, 5, 30, [&] { VLQ_CUDA_CHECK(cudaGraphLaunch(exec, s)); });
    const double eager_ms = time_ms(s, 2, 5, step);
    std::vector<int> out(B);
    d_ids.download(out.data(), B * 4);
    const double kv_bytes = 2.0 * kLayers * B * ctx * kKvHeads * kHeadDim;
    const double bytes = weight_bytes + kv_bytes;
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    char line[256];
    std::snprintf(line, sizeof line, "decode B=%-3d ctx=%-4d %-7s graph %7.3f ms  %8.1f tok/s  %6.0f GB/s  %5.1f %% of copy  (eager %.3f ms)",
                  B, ctx, small ? "gemv" : "cublas", ms, B / (ms * 1e-3), gbs, 100 * gbs / copy_gbs, eager_ms);
    std::printf("%s  [ids[0]=%d]\n", line, out[0]);
    table.push_back(line);
    VLQ_CUDA_CHECK(cudaGraphExecDestroy(exec));
    VLQ_CUDA_CHECK(cudaGraphDestroy(graph));
  }
  std::printf("\n==== summary (%s; copy %.0f GB/s; bytes/step = %.3f GB weights + KV) ====\n", device_description().c_str(),
              copy_gbs, weight_bytes / 1e9);
  for (auto& l : table) std::printf("%s\n", l.c_str());
  return 0;
}
