// Flash-attention benchmarks at Qwen2.5-VL-7B shapes: (a) the LM's causal GQA prefill over the paged cache
// (28 query / 4 KV heads, head_dim 128, one sequence of N = 1326 (the TTFT prompt) and 8192 tokens), FP8 and BF16
// caches, 64- and 128-row tiles (VLQ_FLASH_WIDE_WARPS=1: 128 as 4 warps of 32 rows); (b) the ViT's segment attention of a 1280×720 image (4784 patches, 16 heads,
// head_dim 80, BF16): full attention over one segment (64- and 128-row tiles) and window attention over 64-patch windows. TFLOP/s count
// the multiply-adds actually needed (causal: half the score matrix). Usage: cuda_attention_bench. Prints a table.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vlq/cuda/attention.h"

using namespace vlq;
using namespace vlq::cuda;
using namespace vlq::cuda::bench;

namespace {

DeviceBuffer upload(const std::vector<int>& v) {
  DeviceBuffer d(v.size() * 4);
  d.upload(v.data(), v.size() * 4);
  return d;
}

// Causal prefill of one sequence of n tokens whose keys are all in the cache.
void lm_prefill(cudaStream_t s, int n, DType cache_dtype, int tile_rows) {
  constexpr int kHeads = 28, kKv = 4, kD = 128, kBlock = 16;
  const int blocks = (n + kBlock - 1) / kBlock;
  const std::size_t side = static_cast<std::size_t>(blocks) * kBlock * kKv * kD * dtype_size(cache_dtype);
  DeviceBuffer k(side), v(side), q(static_cast<std::size_t>(n) * kHeads * kD * 4), out(static_cast<std::size_t>(n) * kHeads * kD * 4);
  fill_random(k.data(), side, cache_dtype, 1);
  fill_random(v.data(), side, cache_dtype, 2);
  fill_random(q.data(), q.bytes(), DType::F32, 3);
  const float ks = cache_dtype == DType::F8_E4M3 ? 0.05f : 1.0f;
  const PagedKvLayer cache{k.data(), v.data(), cache_dtype, blocks, kBlock, kKv, kD, ks, ks};
  std::vector<int> table(blocks), seq(n, 0), pos(n);
  for (int i = 0; i < blocks; ++i) table[i] = i;
  for (int i = 0; i < n; ++i) pos[i] = i;
  const std::vector<int> tiles = prefill_tiles(seq, tile_rows);
  DeviceBuffer d_table = upload(table), d_seq = upload(seq), d_pos = upload(pos), d_tiles = upload(tiles);
  const Tensor tq = Tensor::contiguous(q.data(), DType::F32, {n, kHeads, kD});
  const Tensor to = Tensor::contiguous(out.data(), DType::F32, {n, kHeads, kD});
  const double ms = time_ms(s, 3, 20, [&] {
    paged_attention_prefill(tq, cache, Tensor::contiguous(d_table.data(), DType::I32, {1, blocks}),
                            Tensor::contiguous(d_seq.data(), DType::I32, {n}), Tensor::contiguous(d_pos.data(), DType::I32, {n}),
                            Tensor::contiguous(d_tiles.data(), DType::I32, {static_cast<std::int64_t>(tiles.size() / 2), 2}),
                            tile_rows, 1.0f / std::sqrt(float(kD)), to, s);
  });
  const double flop = 2.0 * kHeads * kD * static_cast<double>(n) * n;  // QK + PV over the causal half
  std::printf("lm prefill N=%-5d cache %-4s rows %3d: %8.1f us  %6.1f TFLOP/s\n", n, std::string(dtype_name(cache_dtype)).c_str(), tile_rows,
              ms * 1e3, flop / (ms * 1e-3) / 1e12);
}

// ViT segment attention over n patches cut into segments of `seg` patches (seg = n: full attention).
void vit_segments(cudaStream_t s, int n, int seg, const char* what, int tile_rows = 64) {
  constexpr int kHeads = 16, kD = 80;
  const std::size_t bytes = static_cast<std::size_t>(n) * kHeads * kD * 2;
  DeviceBuffer q(bytes), k(bytes), v(bytes), out(bytes);
  fill_random(q.data(), bytes, DType::BF16, 4);
  fill_random(k.data(), bytes, DType::BF16, 5);
  fill_random(v.data(), bytes, DType::BF16, 6);
  std::vector<int> cu{0};
  double flop = 0;
  while (cu.back() < n) {
    const int len = std::min(seg, n - cu.back());
    cu.push_back(cu.back() + len);
    flop += 4.0 * kHeads * kD * static_cast<double>(len) * len;
  }
  const std::vector<int> tiles = segment_tiles(cu, tile_rows);
  DeviceBuffer d_tiles = upload(tiles);
  auto t = [&](DeviceBuffer& b) { return Tensor::contiguous(b.data(), DType::BF16, {n, kHeads, kD}); };
  const double ms = time_ms(s, 3, 20, [&] {
    attention_segments_tiled(t(q), t(k), t(v),
                             Tensor::contiguous(d_tiles.data(), DType::I32, {static_cast<std::int64_t>(tiles.size() / 4), 4}),
                             1.0f / std::sqrt(float(kD)), t(out), s, tile_rows);
  });
  std::printf("vit %-6s N=%-5d seg %-5d rows %3d: %8.1f us  %6.1f TFLOP/s\n", what, n, seg, tile_rows, ms * 1e3, flop / (ms * 1e-3) / 1e12);
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (device_count() == 0) {
    std::printf("no CUDA device: benchmark skipped\n");
    return 0;
  }
  std::printf("device: %s\n", device_description().c_str());
  const char* ww = std::getenv("VLQ_FLASH_WIDE_WARPS");
  const char* d80 = std::getenv("VLQ_FLASH_D80");
  std::printf("128-row LM tiles as %s; ViT head_dim 80 with %s register arrays\n",
              ww && std::string(ww) != "0" ? "4 warps of 32 rows" : "8 warps of 16 rows",
              d80 && std::string(d80) != "0" ? "80-wide" : "128-wide");
  Stream st;
  const cudaStream_t s = st.get();
  for (const int n : {1326, 8192})
    for (const DType dt : {DType::F8_E4M3, DType::BF16})
      for (const int rows : {128, 64}) lm_prefill(s, n, dt, rows);
  vit_segments(s, 4784, 4784, "full");
  vit_segments(s, 4784, 4784, "full", 128);
  vit_segments(s, 4784, 64, "window");
  return 0;
}
