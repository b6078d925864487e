// End-to-end CUDA benchmark of a real checkpoint through model_cuda::Qwen2_5_VLCuda (the path `--device
// cuda` runs): load time, device memory (weights + KV pool) vs the checkpoint's bytes, prefill of P text
// tokens (TFLOP/s over the Linear + attention FLOPs), and greedy decode at several batch sizes (output
// tokens/s; for batch 1 also the fraction of the device-to-device copy bandwidth measured in the same run,
// bytes = the decoder's weights + lm_head read once per step), and TTFT of one 1280×720 image + 128 text
// tokens (CPU preprocessing + the device vision tower + prefill + the first greedy token; also the vision
// tower alone), also with the image preprocessed on the device (raw RGB through prefill). No CUDA graph yet: the host launches every kernel of every step (the launch overhead is part
// of the figure).
// Usage: cuda_model_bench MODEL_DIR [prefill=8192] [batches=1,8,64,256] [ctx=128] [steps=32]
#include <nvtx3/nvToolsExt.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vlq/image/image.h"
#include "vlq/image/image_processor.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/model_cuda/qwen2_5_vl_cuda.h"

using namespace vlq;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) v.push_back(std::atoi(x.c_str()));
  return v;
}

std::size_t checkpoint_bytes(const fs::path& dir) {
  std::size_t b = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") b += e.file_size();
  return b;
}

// A text-only batch: `rows` new tokens for each sequence, starting at its current length.
model_cuda::Batch text_batch(std::vector<model_cuda::CudaSequence>& seqs, int rows, std::mt19937& g, std::int64_t vocab) {
  model_cuda::Batch b;
  std::uniform_int_distribution<int> tok(100, static_cast<int>(std::min<std::int64_t>(vocab, 150000)) - 1);
  std::vector<std::int32_t> pos;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    b.sequences.push_back(&seqs[i]);
    for (int r = 0; r < rows; ++r) {
      b.token_ids.push_back(tok(g));
      pos.push_back(static_cast<std::int32_t>(seqs[i].length + r));
      b.seq_of_row.push_back(static_cast<std::int32_t>(i));
      b.cache_pos.push_back(static_cast<std::int32_t>(seqs[i].length + r));
    }
    b.logits_rows.push_back(static_cast<std::int32_t>(b.token_ids.size() - 1));
  }
  for (int k = 0; k < 3; ++k) b.positions.insert(b.positions.end(), pos.begin(), pos.end());
  return b;
}
}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2) {
    std::fprintf(stderr, "usage: cuda_model_bench MODEL_DIR [prefill=8192] [batches=1,8,64,256] [ctx=128] [steps=32]\n");
    return 64;
  }
  if (cuda::device_count() == 0) {
    std::printf("no CUDA device: skipped\n");
    return 0;
  }
  const fs::path dir = argv[1];
  const int prefill = argc > 2 ? std::atoi(argv[2]) : 8192;
  const std::vector<int> batches = parse_list(argc > 3 ? argv[3] : "1,8,64,256");
  const int ctx = argc > 4 ? std::atoi(argv[4]) : 128;
  const int steps = argc > 5 ? std::atoi(argv[5]) : 32;
  std::printf("device: %s\n", cuda::device_description().c_str());
  {
    cuda::Stream s;
    std::printf("copy bandwidth: %.0f GB/s\n", cuda::bench::copy_bandwidth_gbs(s.get()));
  }
  auto t0 = Clock::now();
  const model::Qwen2_5_VL cpu = model::Qwen2_5_VL::load(dir);
  const double t_cpu = seconds_since(t0);
  model_cuda::CudaOptions opt;
  opt.kv_cache_bytes = std::size_t{16} << 30;
  opt.max_batch_tokens = std::max(prefill, 8192);
  t0 = Clock::now();
  model_cuda::Qwen2_5_VLCuda gpu(cpu, opt);
  const double t_up = seconds_since(t0);
  const auto& tc = cpu.config().text;
  const std::size_t ck = checkpoint_bytes(dir);
  std::printf("load: %.1f s (checkpoint → CPU f32 structures) + %.1f s (upload); checkpoint %.2f GB; device weights %.2f GB "
              "(language model) + %.2f GB (vision tower); KV pool %.2f GB (%s, %d blocks of %d)\n",
              t_cpu, t_up, ck / 1e9, gpu.weight_bytes() / 1e9, gpu.vision_weight_bytes() / 1e9, gpu.kv_cache_bytes() / 1e9,
              gpu.fp8_kv_cache() ? "FP8" : "BF16", gpu.free_blocks(), gpu.block_size());
  std::mt19937 g(1);

  // Prefill: one sequence of `prefill` tokens (logits of the last row only).
  if (prefill > 0) {
    std::vector<model_cuda::CudaSequence> one(1);
    gpu.reserve(one[0], prefill);
    const model_cuda::Batch b = text_batch(one, prefill, g, tc.vocab_size);
    gpu.forward_greedy(b);  // warm-up (cuBLASLt heuristics, workspace)
    nvtxRangePushA("prefill");  // NVTX ranges: `ncu --nvtx --nvtx-include prefill/` profiles one section
    t0 = Clock::now();
    gpu.forward_greedy(b);
    const double s = seconds_since(t0);
    nvtxRangePop();
    const double H = tc.hidden_size, I = tc.intermediate_size, L = tc.num_hidden_layers, hd = tc.head_dim;
    const double qkv = (tc.num_attention_heads + 2.0 * tc.num_key_value_heads) * hd;
    const double linear = 2.0 * prefill * L * (H * qkv + tc.num_attention_heads * hd * H + 3.0 * H * I);
    const double attn = 2.0 * L * tc.num_attention_heads * hd * static_cast<double>(prefill) * prefill;  // causal QK + PV
    std::printf("prefill %d tokens: %.1f ms, %.0f TFLOP/s (linear %.1f + attention %.1f TFLOP)\n", prefill, s * 1e3,
                (linear + attn) / s / 1e12, linear / 1e12, attn / 1e12);
    gpu.release(one[0]);
  }

  // TTFT: one random 1280×720 image + 128 random text tokens, from raw RGB to the first token.
  if (gpu.has_vision()) {
    const auto params = image::image_processor_params_from_config(*cpu.files().preprocessor);
    image::RgbImage img{1280, 720, std::vector<std::uint8_t>(1280 * 720 * 3)};
    for (auto& p : img.pixels) p = static_cast<std::uint8_t>(g() & 0xff);
    const auto& tok = cpu.config().tokens;
    double best = 1e9, best_vis = 1e9, best_pre = 1e9, best_raw = 1e9, best_raw_vis = 1e9;
    std::int64_t prompt_len = 0;
    for (int it = 0; it < 4; ++it) {
      if (it == 3) nvtxRangePushA("ttft");
      const auto t_start = Clock::now();
      const image::ProcessedImages px = image::preprocess_image(img, params);
      const double t_pre = seconds_since(t_start);
      std::int64_t n_pad = 0;
      for (const auto& gr : px.grid_thw) n_pad += gr[0] * gr[1] * gr[2] / 4;
      std::vector<std::int32_t> ids = {static_cast<std::int32_t>(tok.vision_start_token_id)};
      ids.insert(ids.end(), static_cast<std::size_t>(n_pad), static_cast<std::int32_t>(tok.image_token_id));
      ids.push_back(static_cast<std::int32_t>(tok.vision_end_token_id));
      std::uniform_int_distribution<int> d(100, 20000);
      for (int i = 0; i < 128; ++i) ids.push_back(d(g));
      model_cuda::CudaSequence q;
      const ops::Matrix l = gpu.prefill(q, ids, &px, static_cast<std::int64_t>(ids.size()) + 1, 1);
      volatile float sink = l.data[0];
      (void)sink;
      const double ttft = seconds_since(t_start);
      gpu.release(q);
      const auto tv = Clock::now();
      gpu.encode_images(px.pixel_values.data(), px.n_patches, px.patch_dim, px.grid_thw);
      const double vis = seconds_since(tv);
      if (it == 3) nvtxRangePop();
      // The same prompt with the image preprocessed on the device (raw RGB in, no f32 pixel rows on the host).
      if (it == 3) nvtxRangePushA("ttft_raw");
      const auto t_raw = Clock::now();
      const image::RawImages raw = image::plan_images(std::span<const image::RgbImage>(&img, 1), params);
      model_cuda::CudaSequence q2;
      const ops::Matrix l2 = gpu.prefill(q2, ids, raw, static_cast<std::int64_t>(ids.size()) + 1, 1);
      sink = l2.data[0];
      const double ttft_raw = seconds_since(t_raw);
      gpu.release(q2);
      if (it == 3) nvtxRangePop();
      const auto tv2 = Clock::now();
      gpu.encode_images(raw);
      const double vis_raw = seconds_since(tv2);
      prompt_len = static_cast<std::int64_t>(ids.size());
      if (it > 0) {
        best = std::min(best, ttft), best_vis = std::min(best_vis, vis), best_pre = std::min(best_pre, t_pre);
        best_raw = std::min(best_raw, ttft_raw), best_raw_vis = std::min(best_raw_vis, vis_raw);
      }
    }
    std::printf("TTFT 1280x720 image + 128 text tokens (%lld prompt tokens): %.1f ms (preprocess %.1f ms on the CPU; "
                "vision tower alone %.1f ms; best of 3 after a warm-up)\n",
                static_cast<long long>(prompt_len), best * 1e3, best_pre * 1e3, best_vis * 1e3);
    std::printf("TTFT 1280x720 image + 128 text tokens, image preprocessed on the device: %.1f ms (vision tower "
                "incl. preprocessing %.1f ms; best of 3 after a warm-up)\n",
                best_raw * 1e3, best_raw_vis * 1e3);
  }

  // Decode: B sequences with `ctx` cached tokens, `steps` greedy steps of all B rows per forward.
  for (int B : batches) {
    std::vector<model_cuda::CudaSequence> seqs(static_cast<std::size_t>(B));
    bool ok = true;
    for (auto& s : seqs) ok = ok && gpu.reserve(s, ctx + steps + 1);
    if (!ok) {
      std::printf("decode batch %d: KV pool too small, skipped\n", B);
      for (auto& s : seqs) gpu.release(s);
      continue;
    }
    for (std::size_t i = 0; i < seqs.size(); i += 16) {  // fill the caches, 16 sequences per forward
      model_cuda::Batch b;
      std::vector<std::int32_t> pos;
      for (std::size_t j = i; j < std::min(seqs.size(), i + 16); ++j) {
        b.sequences.push_back(&seqs[j]);
        for (int r = 0; r < ctx; ++r) {
          b.token_ids.push_back(1000 + r);
          pos.push_back(r);
          b.seq_of_row.push_back(static_cast<std::int32_t>(b.sequences.size() - 1));
          b.cache_pos.push_back(r);
        }
      }
      for (int k = 0; k < 3; ++k) b.positions.insert(b.positions.end(), pos.begin(), pos.end());
      gpu.forward_greedy(b);
      for (std::size_t j = i; j < std::min(seqs.size(), i + 16); ++j) seqs[j].length = ctx;
    }
    double total = 0;
    const std::string range = "decode_b" + std::to_string(B);
    for (int s = 0; s < steps + 2; ++s) {
      const model_cuda::Batch b = text_batch(seqs, 1, g, tc.vocab_size);
      if (s == 2) nvtxRangePushA(range.c_str());
      const auto t = Clock::now();
      gpu.forward_greedy(b);
      if (s >= 2) total += seconds_since(t);  // two warm-up steps
      for (auto& q : seqs) q.length += 1;
    }
    nvtxRangePop();
    const double step = total / steps;
    std::printf("decode batch %d (ctx %d): %.3f ms/step, %.1f output tok/s", B, ctx, step * 1e3, B / step);
    if (B == 1) {
      cuda::Stream st;
      const double bw = cuda::bench::copy_bandwidth_gbs(st.get());
      const double bytes = static_cast<double>(gpu.weight_bytes()) - static_cast<double>(tc.vocab_size * tc.hidden_size * 2);
      std::printf(", %.0f GB/s of weights = %.1f%% of the copy bandwidth (%.0f GB/s)", bytes / step / 1e9,
                  100.0 * bytes / step / 1e9 / bw, bw);
    }
    std::printf("\n");
    for (auto& s : seqs) gpu.release(s);
  }
  return 0;
}
