// Paged KV cache write + paged causal GQA attention (decode and prefill, f32 / BF16 / FP8 cache) and segment
// attention on the GPU vs vlq::ops::attention_causal_cached / attention_segments (KvCacheLayer holds the
// same FP8 codes), scrambled block tables, ragged lengths, poisoned outputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "cuda_test_util.h"
#include "vlq/cuda/attention.h"
#include "vlq/cuda/elementwise.h"
#include "vlq/ops/attention.h"

namespace vlq::cuda::test {
namespace {

struct Params {
  int heads, kv_heads, head_dim;
  DType cache;
};

// Two sequences of lengths len0, len1 share one paged pool with shuffled blocks. Sequence s first gets
// prefill rows [0, len_s - n_new_s) written, then the last n_new_s rows are written and attended (prefill
// when n_new > 1, decode when 1), all sequences in one launch.
void run_case(std::mt19937& g, const Params& p, std::vector<int> lens, std::vector<int> n_new) {
  const int bs = 16, d = p.head_dim, kvw = p.kv_heads * d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const bool fp8 = p.cache == DType::F8_E4M3;
  const float ks = fp8 ? 0.021f : 1.0f, vs = fp8 ? 0.017f : 1.0f;
  const int nseq = static_cast<int>(lens.size());
  int max_blocks = 0, total_blocks = 0;
  for (int l : lens) {
    max_blocks = std::max(max_blocks, (l + bs - 1) / bs);
    total_blocks += (l + bs - 1) / bs;
  }
  total_blocks += 3;  // spare blocks never referenced
  std::vector<int> perm(total_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), g);
  std::vector<int> tables(static_cast<std::size_t>(nseq) * max_blocks, -1);
  int next = 0;
  for (int s = 0; s < nseq; ++s)
    for (int b = 0; b < (lens[s] + bs - 1) / bs; ++b) tables[s * max_blocks + b] = perm[next++];
  const std::size_t pool = static_cast<std::size_t>(total_blocks) * bs * kvw;
  DeviceBuffer kc(pool * dtype_size(p.cache)), vc(pool * dtype_size(p.cache));
  kc.fill_bytes(0xff);
  vc.fill_bytes(0xff);
  PagedKvLayer layer{kc.data(), vc.data(), p.cache, total_blocks, bs, p.kv_heads, d, ks, vs};
  auto dtab = to_device(tables);

  std::vector<ops::KvCacheLayer> cpu;
  std::vector<std::vector<float>> keys(nseq), vals(nseq);
  // write all rows (in two launches: the past, then the new rows with the queries)
  for (int phase = 0; phase < 2; ++phase) {
    std::vector<float> k, v;
    std::vector<int> slots;
    for (int s = 0; s < nseq; ++s) {
      const int b0 = phase == 0 ? 0 : lens[s] - n_new[s], b1 = phase == 0 ? lens[s] - n_new[s] : lens[s];
      if (phase == 0) {
        keys[s] = randn(static_cast<std::size_t>(lens[s]) * kvw, g, 1.5f);
        vals[s] = randn(static_cast<std::size_t>(lens[s]) * kvw, g);
        if (p.cache == DType::BF16) {  // the CPU cache holds what the BF16 cache can: round first
          keys[s] = from_bf16(to_bf16(keys[s]));
          vals[s] = from_bf16(to_bf16(vals[s]));
        }
      }
      for (int j = b0; j < b1; ++j) {
        k.insert(k.end(), keys[s].begin() + j * kvw, keys[s].begin() + (j + 1) * kvw);
        v.insert(v.end(), vals[s].begin() + j * kvw, vals[s].begin() + (j + 1) * kvw);
        slots.push_back(tables[s * max_blocks + j / bs] * bs + j % bs);
      }
    }
    slots.push_back(-1);  // a padding row: skipped
    k.resize(k.size() + kvw, 1e30f);
    v.resize(v.size() + kvw, 1e30f);
    const int t = static_cast<int>(slots.size());
    auto dk = to_device(k), dv = to_device(v), dsl = to_device(slots);
    kv_cache_write(Tensor::contiguous(dk.data(), DType::F32, {t, p.kv_heads, d}), Tensor::contiguous(dv.data(), DType::F32, {t, p.kv_heads, d}),
                   Tensor::contiguous(dsl.data(), DType::I32, {t}), layer, nullptr);
  }
  // queries
  std::vector<float> q;
  std::vector<int> qseq, qpos;
  std::vector<float> ref;
  for (int s = 0; s < nseq; ++s) {
    ops::KvCacheLayer c(lens[s], p.kv_heads, d, fp8, ks, vs);
    c.append(keys[s].data(), vals[s].data(), lens[s]);
    auto qs = randn(static_cast<std::size_t>(n_new[s]) * p.heads * d, g);
    std::vector<float> o(qs.size());
    ops::attention_causal_cached(qs.data(), n_new[s], p.heads, d, c, scale, o.data());
    q.insert(q.end(), qs.begin(), qs.end());
    ref.insert(ref.end(), o.begin(), o.end());
    for (int i = 0; i < n_new[s]; ++i) {
      qseq.push_back(s);
      qpos.push_back(lens[s] - n_new[s] + i);
    }
  }
  const int t = static_cast<int>(qseq.size());
  auto dq = to_device(q), dqs = to_device(qseq), dqp = to_device(qpos);
  auto dout = poisoned<float>(ref.size());
  paged_attention(Tensor::contiguous(dq.data(), DType::F32, {t, p.heads, d}), layer,
                  Tensor::contiguous(dtab.data(), DType::I32, {nseq, max_blocks}), Tensor::contiguous(dqs.data(), DType::I32, {t}),
                  Tensor::contiguous(dqp.data(), DType::I32, {t}), scale, Tensor::contiguous(dout.data(), DType::F32, {t, p.heads, d}),
                  nullptr);
  EXPECT_LT(rel_err(to_host<float>(dout, ref.size()), ref), 2e-6);
  // Decode (one new row per sequence): the earlier keys are cached, so the kernel may fetch them before waiting
  // on the previous kernel; the same bits either way.
  if (std::all_of(n_new.begin(), n_new.end(), [](int n) { return n == 1; })) {
    auto dout_early = poisoned<float>(ref.size());
    paged_attention(Tensor::contiguous(dq.data(), DType::F32, {t, p.heads, d}), layer,
                    Tensor::contiguous(dtab.data(), DType::I32, {nseq, max_blocks}), Tensor::contiguous(dqs.data(), DType::I32, {t}),
                    Tensor::contiguous(dqp.data(), DType::I32, {t}), scale,
                    Tensor::contiguous(dout_early.data(), DType::F32, {t, p.heads, d}), nullptr, nullptr, 0.0f, true);
    EXPECT_EQ(to_host<float>(dout_early, ref.size()), to_host<float>(dout, ref.size())) << "prior_keys_cached";
  }
  // E4M3 output (an FP8 o_proj's input written by the kernel): the codes of the F32 output / out_scale, exactly.
  {
    const float os = 0.01f;
    auto dq8 = poisoned<std::uint8_t>(ref.size());
    paged_attention(Tensor::contiguous(dq.data(), DType::F32, {t, p.heads, d}), layer,
                    Tensor::contiguous(dtab.data(), DType::I32, {nseq, max_blocks}), Tensor::contiguous(dqs.data(), DType::I32, {t}),
                    Tensor::contiguous(dqp.data(), DType::I32, {t}), scale,
                    Tensor::contiguous(dq8.data(), DType::F8_E4M3, {t, p.heads, d}), nullptr, nullptr, os);
    std::vector<std::uint8_t> want(ref.size());
    quantize_e4m3_sat(to_host<float>(dout, ref.size()), os, want);
    EXPECT_EQ(to_host<std::uint8_t>(dq8, ref.size()), want) << "E4M3 output";
  }
  // The tensor-core flash kernel on the same rows (tiles of <= 64 or 128 rows per sequence; decode rows are 1-row
  // tiles): BF16 rounding of q and of the probabilities, so a BF16-sized tolerance.
  // Both tile heights (64 rows: 4 warps; 128 rows: 8 warps, head_dim <= 128).
  for (int rows : {64, 128}) {
    if (d % 16 != 0 || (rows == 128 && d > 128)) continue;
    SCOPED_TRACE("flash tile rows " + std::to_string(rows));
    const std::vector<std::int32_t> tiles = prefill_tiles(qseq, rows);
    auto dtiles = to_device(tiles);
    // The flash kernel over `cache` with block table `tab` (device [nseq, max_blocks]) into `o`.
    auto prefill = [&](const PagedKvLayer& cache, const DeviceBuffer& tab, DeviceBuffer& o) {
      paged_attention_prefill(Tensor::contiguous(dq.data(), DType::F32, {t, p.heads, d}), cache,
                              Tensor::contiguous(tab.data(), DType::I32, {nseq, max_blocks}),
                              Tensor::contiguous(dqs.data(), DType::I32, {t}), Tensor::contiguous(dqp.data(), DType::I32, {t}),
                              Tensor::contiguous(dtiles.data(), DType::I32, {static_cast<std::int64_t>(tiles.size() / 2), 2}),
                              rows, scale, Tensor::contiguous(o.data(), DType::F32, {t, p.heads, d}), nullptr);
    };
    auto dout2 = poisoned<float>(ref.size());
    prefill(layer, dtab, dout2);
    EXPECT_LT(rel_err(to_host<float>(dout2, ref.size()), ref), 1.5e-2) << "flash prefill kernel";
  }
  // FP8 cache: the device holds exactly the CPU cache's codes.
  if (fp8) {
    const auto kh = to_host<std::uint8_t>(kc, pool);
    for (int s = 0; s < nseq; ++s)
      for (int j = 0; j < lens[s]; ++j)
        for (int i = 0; i < kvw; ++i)
          ASSERT_EQ(kh[(static_cast<std::size_t>(tables[s * max_blocks + j / bs]) * bs + j % bs) * kvw + i],
                    f32_to_e4m3fn_sat(keys[s][j * kvw + i] / ks));
  }
}

TEST(CudaAttention, PagedDecodeAndPrefillMatchCpu) {
  VLQ_REQUIRE_GPU();
  const auto seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  for (DType c : {DType::F8_E4M3, DType::F32, DType::BF16}) {
    SCOPED_TRACE(std::string(dtype_name(c)));
    run_case(g, {28, 4, 128, c}, {37, 16}, {1, 1});        // decode, 7B head layout, GQA 7
    run_case(g, {6, 2, 64, c}, {1, 50}, {1, 1});           // decode, length-1 sequence
    run_case(g, {14, 2, 128, c}, {45, 70}, {45, 13});      // prefill from scratch + chunked prefill
    run_case(g, {4, 4, 256, c}, {33}, {5});                // MHA, head_dim 256
    run_case(g, {28, 4, 128, c}, {200, 131}, {200, 67});   // flash: several 64-row tiles and key tiles, ragged
    run_case(g, {28, 4, 128, c}, {300, 129, 128}, {1, 1, 1});  // decode over several 128-key chunks (and exactly one)
    run_case(g, {32, 2, 64, c}, {90, 257}, {1, 1});        // decode, GQA 16: two groups of 8 query heads per KV head
    run_case(g, {64, 8, 128, c}, {75}, {1});               // decode, the 72B layout (GQA 8)
    run_case(g, {28, 4, 128, c}, {600, 300}, {600, 45});   // flash: 5 tiles of 128 rows, 10 key tiles, a chunk
    // Decode batches whose CTAs take 2, 4 and 7 query heads each (heads_per_cta: 264 CTAs wanted; 20 / 40 / 70
    // rows of 4 KV heads): the head_dim-128 kernel's group sizes 2, 4 and 8.
    for (int rows : {20, 40, 70}) {
      std::vector<int> lens(rows), ones(rows, 1);
      for (auto& l : lens) l = std::uniform_int_distribution<int>(1, 160)(g);
      run_case(g, {28, 4, 128, c}, lens, ones);
    }
  }
}

// The fused rotary + cache write equals rotary_inplace then kv_cache_write, bit for bit (q and k rotated in place,
// the cache codes), for each cache dtype, with a padding row (slot -1).
TEST(CudaAttention, RotaryKvCacheWriteEqualsTwoKernels) {
  VLQ_REQUIRE_GPU();
  const auto seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  const int t = 21, heads = 7, kvh = 2, d = 128, half = d / 2, w = (heads + 2 * kvh) * d, blocks = 4, bs = 16;
  const auto qkv = randn(static_cast<std::size_t>(t) * w, g, 3.0f);
  std::vector<float> ang(static_cast<std::size_t>(t) * half);
  for (auto& a : ang) a = std::uniform_real_distribution<float>(-300.0f, 300.0f)(g);
  std::vector<int> slots(t);
  std::iota(slots.begin(), slots.end(), 5);
  slots[7] = -1;
  auto dang = to_device(ang), dsl = to_device(slots);
  const Tensor angles = Tensor::contiguous(dang.data(), DType::F32, {t, half});
  const Tensor sl = Tensor::contiguous(dsl.data(), DType::I32, {t});
  for (DType c : {DType::F32, DType::BF16, DType::F8_E4M3}) {
    SCOPED_TRACE(std::string(dtype_name(c)));
    const std::size_t pool = static_cast<std::size_t>(blocks) * bs * kvh * d * dtype_size(c);
    std::vector<std::uint8_t> out[2][3];  // [path][qkv, k cache, v cache]
    for (int path = 0; path < 2; ++path) {
      auto dq = to_device(qkv);
      DeviceBuffer kc(pool), vc(pool);
      kc.fill_bytes(0xff);
      vc.fill_bytes(0xff);
      PagedKvLayer layer{kc.data(), vc.data(), c, blocks, bs, kvh, d, 0.03f, 0.05f};
      const Tensor qk{dq.data(), DType::F32, 3, {t, heads + kvh, d}, {w, d, 1}};
      const Tensor k{dq.as<float>() + heads * d, DType::F32, 3, {t, kvh, d}, {w, d, 1}};
      const Tensor v{dq.as<float>() + (heads + kvh) * d, DType::F32, 3, {t, kvh, d}, {w, d, 1}};
      if (path == 0) {
        rotary_inplace(qk, angles, nullptr);
        kv_cache_write(k, v, sl, layer, nullptr);
      } else {
        rotary_kv_cache_write(qk, v, angles, sl, layer, nullptr);
      }
      out[path][0] = to_host<std::uint8_t>(dq, qkv.size() * 4);
      out[path][1] = to_host<std::uint8_t>(kc, pool);
      out[path][2] = to_host<std::uint8_t>(vc, pool);
    }
    EXPECT_EQ(out[0][0], out[1][0]) << "rotated qkv rows";
    EXPECT_EQ(out[0][1], out[1][1]) << "k cache";
    EXPECT_EQ(out[0][2], out[1][2]) << "v cache";
  }
}

// head_dim 64 (multiple of 32) and 80 (the Qwen2.5-VL ViT: 1280 / 16 heads, lanes hold 3 elements, the last ones fewer).
class CudaAttentionSegments : public ::testing::TestWithParam<int> {};
TEST_P(CudaAttentionSegments, MatchCpu) {
  VLQ_REQUIRE_GPU();
  const auto seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  const int heads = 16, d = GetParam();
  const std::vector<std::int64_t> cu = {0, 64, 64, 100, 101, 245};
  const int n = 245;
  const auto sz = static_cast<std::size_t>(n) * heads * d;
  auto q = randn(sz, g), k = randn(sz, g), v = randn(sz, g);
  std::vector<float> ref(sz);
  ops::attention_segments(q.data(), k.data(), v.data(), n, heads, d, cu, 0.125f, ref.data());
  std::vector<int> cu32(cu.begin(), cu.end());
  auto dq = to_device(q), dk = to_device(k), dv = to_device(v), dcu = to_device(cu32);
  auto dout = poisoned<float>(sz);
  attention_segments(Tensor::contiguous(dq.data(), DType::F32, {n, heads, d}), Tensor::contiguous(dk.data(), DType::F32, {n, heads, d}),
                     Tensor::contiguous(dv.data(), DType::F32, {n, heads, d}), Tensor::contiguous(dcu.data(), DType::I32, {6}), 0.125f,
                     Tensor::contiguous(dout.data(), DType::F32, {n, heads, d}), nullptr);
  EXPECT_LT(rel_err(to_host<float>(dout, sz), ref), 2e-6);
  // BF16 inputs and output
  auto qb = to_bf16(q), kb = to_bf16(k), vb = to_bf16(v);
  auto qf = from_bf16(qb), kf = from_bf16(kb), vf = from_bf16(vb);
  ops::attention_segments(qf.data(), kf.data(), vf.data(), n, heads, d, cu, 0.125f, ref.data());
  auto dqb = to_device(qb), dkb = to_device(kb), dvb = to_device(vb);
  auto doutb = poisoned<std::uint16_t>(sz);
  attention_segments(Tensor::contiguous(dqb.data(), DType::BF16, {n, heads, d}), Tensor::contiguous(dkb.data(), DType::BF16, {n, heads, d}),
                     Tensor::contiguous(dvb.data(), DType::BF16, {n, heads, d}), Tensor::contiguous(dcu.data(), DType::I32, {6}), 0.125f,
                     Tensor::contiguous(doutb.data(), DType::BF16, {n, heads, d}), nullptr);
  EXPECT_LT(rel_err(from_bf16(to_host<std::uint16_t>(doutb, sz)), ref), 5e-3);
  // The tensor-core tiled kernel over the same segments (BF16 inputs: tiles of <= 64 rows within a segment).
  const std::vector<std::int32_t> tiles = segment_tiles(cu32);
  auto dtiles = to_device(tiles);
  auto doutt = poisoned<float>(sz);
  attention_segments_tiled(Tensor::contiguous(dqb.data(), DType::BF16, {n, heads, d}), Tensor::contiguous(dkb.data(), DType::BF16, {n, heads, d}),
                           Tensor::contiguous(dvb.data(), DType::BF16, {n, heads, d}),
                           Tensor::contiguous(dtiles.data(), DType::I32, {static_cast<std::int64_t>(tiles.size() / 4), 4}), 0.125f,
                           Tensor::contiguous(doutt.data(), DType::F32, {n, heads, d}), nullptr);
  EXPECT_LT(rel_err(to_host<float>(doutt, sz), ref), 1e-2) << "tiled tensor-core kernel";
  // 128-row tiles (4 warps of two 16-row blocks): the same arithmetic per row, so the same bits as 64-row tiles.
  const std::vector<std::int32_t> tiles128 = segment_tiles(cu32, 128);
  ASSERT_LT(tiles128.size(), tiles.size());
  auto dtiles128 = to_device(tiles128);
  auto dout128 = poisoned<float>(sz);
  attention_segments_tiled(Tensor::contiguous(dqb.data(), DType::BF16, {n, heads, d}), Tensor::contiguous(dkb.data(), DType::BF16, {n, heads, d}),
                           Tensor::contiguous(dvb.data(), DType::BF16, {n, heads, d}),
                           Tensor::contiguous(dtiles128.data(), DType::I32, {static_cast<std::int64_t>(tiles128.size() / 4), 4}), 0.125f,
                           Tensor::contiguous(dout128.data(), DType::F32, {n, heads, d}), nullptr, 128);
  const std::vector<float> o128 = to_host<float>(dout128, sz), o64 = to_host<float>(doutt, sz);
  std::size_t differ = 0, first = sz;
  for (std::size_t i = 0; i < sz; ++i)
    if (std::memcmp(&o128[i], &o64[i], 4) != 0 && differ++ == 0) first = i;
  EXPECT_EQ(differ, 0u) << "128-row tiles vs 64-row tiles differ in " << differ << " values, first at " << first;
}
INSTANTIATE_TEST_SUITE_P(HeadDim, CudaAttentionSegments, ::testing::Values(64, 80),
                         [](const auto& i) { return "d" + std::to_string(i.param); });

}  // namespace
}  // namespace vlq::cuda::test
