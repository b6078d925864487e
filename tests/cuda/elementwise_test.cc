// RMSNorm (+residual, +E4M3), SwiGLU (+E4M3), add, embedding, M-RoPE angles, rotary (+ the ViT's q/k/v split), argmax on the GPU vs the
// CPU reference ops (vlq/ops) on fresh random inputs, ragged shapes, poisoned outputs.
#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "vlq/cuda/elementwise.h"
#include "vlq/ops/activation.h"
#include "vlq/ops/norm.h"
#include "vlq/ops/rotary.h"
#include "vlq/ops/sampling.h"

namespace vlq::cuda::test {
namespace {

TEST(CudaElementwise, RmsNormMatchesCpuAndFusedQuantIsExact) {
  VLQ_REQUIRE_GPU();
  const auto seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  // 8200 > 1024 · 8: the loop path (rows of at most 8192 are held in registers); dim 64: a one-warp CTA
  for (auto [rows, dim] : {std::pair{1, 3584}, std::pair{7, 1000}, std::pair{33, 64}, std::pair{3, 8200}}) {
    const auto n = static_cast<std::size_t>(rows) * dim;
    auto x = randn(n, g, 3.0f), res = randn(n, g, 2.0f), w = randn(dim, g, 0.5f);
    const float eps = 1e-6f, in_scale = 0.013f;
    // CPU: h = x + res, y = rms_norm(h)
    std::vector<float> h(n), y(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = x[i] + res[i];
    ops::rms_norm(h.data(), w.data(), rows, dim, eps, y.data());
    auto dx = to_device(x), dres = to_device(res), dw = to_device(w);
    auto dy = poisoned<float>(n);
    auto dq = poisoned<std::uint8_t>(n);
    const Tensor tx = Tensor::contiguous(dx.data(), DType::F32, {rows, dim});
    const Tensor tres = Tensor::contiguous(dres.data(), DType::F32, {rows, dim});
    rms_norm(tx, &tres, dw.as<float>(), eps, Tensor::contiguous(dy.data(), DType::F32, {rows, dim}), 0.0f, nullptr);
    const auto xh = to_host<float>(dx, n);
    EXPECT_EQ(xh, h) << "residual stream x + res";
    const auto yh = to_host<float>(dy, n);
    EXPECT_LT(rel_err(yh, y), 2e-6);  // f32 summation order (dim 8200: 1.19e-6 measured, run 14)
    // Fused E4M3: the same y quantized (x already holds h, so no residual this time).
    rms_norm(tx, nullptr, dw.as<float>(), eps, Tensor::contiguous(dq.data(), DType::F8_E4M3, {rows, dim}), in_scale, nullptr);
    std::vector<std::uint8_t> qref(n);
    quantize_e4m3_sat(yh, in_scale, qref);
    EXPECT_EQ(to_host<std::uint8_t>(dq, n), qref);
    // BF16 output
    auto db = poisoned<std::uint16_t>(n);
    rms_norm(tx, nullptr, dw.as<float>(), eps, Tensor::contiguous(db.data(), DType::BF16, {rows, dim}), 0.0f, nullptr);
    EXPECT_EQ(to_host<std::uint16_t>(db, n), to_bf16(yh));
  }
}

TEST(CudaElementwise, SwiGluMatchesCpu) {
  VLQ_REQUIRE_GPU();
  const auto seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  for (auto [rows, inter] : {std::pair{1, 18944}, std::pair{5, 777}, std::pair{3, 1024}}) {  // 777: scalar path
    const auto n = static_cast<std::size_t>(rows) * inter;
    auto gu = randn(2 * n, g, 3.0f);
    std::vector<float> gate(n), up(n);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < inter; ++i) {
        gate[r * inter + i] = gu[r * 2 * inter + i];
        up[r * inter + i] = gu[r * 2 * inter + inter + i];
      }
    ops::swiglu_inplace(gate.data(), up.data(), static_cast<std::int64_t>(n));
    auto dgu = to_device(gu);
    auto dy = poisoned<float>(n);
    auto dq = poisoned<std::uint8_t>(n);
    const Tensor tgu = Tensor::contiguous(dgu.data(), DType::F32, {rows, 2 * inter});
    swiglu(tgu, Tensor::contiguous(dy.data(), DType::F32, {rows, inter}), 0.0f, nullptr);
    const auto yh = to_host<float>(dy, n);
    EXPECT_LT(rel_err(yh, gate), 1e-6);
    swiglu(tgu, Tensor::contiguous(dq.data(), DType::F8_E4M3, {rows, inter}), 0.02f, nullptr);
    std::vector<std::uint8_t> qref(n);
    quantize_e4m3_sat(yh, 0.02f, qref);
    EXPECT_EQ(to_host<std::uint8_t>(dq, n), qref);
    // BF16 gate_up input
    auto gub = to_bf16(gu);
    auto dgub = to_device(gub);
    swiglu(Tensor::contiguous(dgub.data(), DType::BF16, {rows, 2 * inter}), Tensor::contiguous(dy.data(), DType::F32, {rows, inter}),
           0.0f, nullptr);
    auto gf = from_bf16(gub);
    std::vector<float> g2(n), u2(n);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < inter; ++i) {
        g2[r * inter + i] = gf[r * 2 * inter + i];
        u2[r * inter + i] = gf[r * 2 * inter + inter + i];
      }
    ops::swiglu_inplace(g2.data(), u2.data(), static_cast<std::int64_t>(n));
    EXPECT_LT(rel_err(to_host<float>(dy, n), g2), 1e-6);
    // gate/up multipliers (the weight scales of a fused gate|up GEMM): silu(g·a)·(u·b), bit-exact vs the
    // unfused kernel on pre-multiplied inputs
    std::vector<float> gus(gu);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < inter; ++i) {
        gus[r * 2 * inter + i] *= 0.0137f;
        gus[r * 2 * inter + inter + i] *= 0.0211f;
      }
    auto dgus = to_device(gus);
    auto dq2 = poisoned<std::uint8_t>(n);
    swiglu(Tensor::contiguous(dgus.data(), DType::F32, {rows, 2 * inter}), Tensor::contiguous(dq.data(), DType::F8_E4M3, {rows, inter}),
           0.0005f, nullptr);
    swiglu(tgu, Tensor::contiguous(dq2.data(), DType::F8_E4M3, {rows, inter}), 0.0005f, nullptr, 0.0137f, 0.0211f);
    EXPECT_EQ(to_host<std::uint8_t>(dq2, n), to_host<std::uint8_t>(dq, n));
  }
}

TEST(CudaElementwise, AddEmbeddingCastArgmax) {
  VLQ_REQUIRE_GPU();
  const auto seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  // add
  auto a = randn(1001, g), b = randn(1001, g);
  auto da = to_device(a), db = to_device(to_bf16(b));
  add_inplace(Tensor::contiguous(da.data(), DType::F32, {1001}), Tensor::contiguous(db.data(), DType::BF16, {1001}), nullptr);
  auto bb = from_bf16(to_bf16(b));
  std::vector<float> s(1001);
  for (int i = 0; i < 1001; ++i) s[i] = a[i] + bb[i];
  EXPECT_EQ(to_host<float>(da, 1001), s);
  // embedding (BF16 table -> F32, exact)
  const int vocab = 517, dim = 96;
  auto table = to_bf16(randn(vocab * dim, g));
  std::vector<int> ids = {0, 516, 3, 3, 200, 77, 1};
  auto dt = to_device(table), di = to_device(ids);
  auto dout = poisoned<float>(ids.size() * dim);
  embedding(Tensor::contiguous(di.data(), DType::I32, {7}), Tensor::contiguous(dt.data(), DType::BF16, {vocab, dim}),
            Tensor::contiguous(dout.data(), DType::F32, {7, dim}), nullptr);
  const auto eo = to_host<float>(dout, ids.size() * dim);
  for (std::size_t r = 0; r < ids.size(); ++r)
    for (int i = 0; i < dim; ++i) ASSERT_EQ(eo[r * dim + i], bf16_to_f32(table[ids[r] * dim + i]));
  // cast: the k columns of a strided qkv row (F32) into contiguous BF16, bit-exact with f32_to_bf16 (RNE)
  {
    const int n = 37, w = 3 * 80, c0 = 80, cols = 80;
    auto qkv = randn(static_cast<std::size_t>(n) * w, g);
    auto dq = to_device(qkv);
    auto dc = poisoned<std::uint16_t>(static_cast<std::size_t>(n) * cols);
    cast(Tensor::strided2d(dq.as<float>() + c0, DType::F32, n, cols, w), Tensor::contiguous(dc.data(), DType::BF16, {n, cols}), nullptr);
    const auto got = to_host<std::uint16_t>(dc, static_cast<std::size_t>(n) * cols);
    std::vector<float> want_f(static_cast<std::size_t>(n) * cols);
    for (int r = 0; r < n; ++r)
      for (int i = 0; i < cols; ++i) want_f[static_cast<std::size_t>(r) * cols + i] = qkv[static_cast<std::size_t>(r) * w + c0 + i];
    EXPECT_EQ(got, to_bf16(want_f));
  }
  // argmax (ragged vocab, a duplicated max: first index wins)
  const int rows = 5, v = 152064 - 3;
  auto logits = randn(static_cast<std::size_t>(rows) * v, g);
  logits[2 * v + 100] = 50.0f;
  logits[2 * v + 9000] = 50.0f;
  auto dl = to_device(logits);
  auto dam = poisoned<int>(rows);
  argmax(Tensor::contiguous(dl.data(), DType::F32, {rows, v}), Tensor::contiguous(dam.data(), DType::I32, {rows}), nullptr);
  const auto am = to_host<int>(dam, rows);
  for (int r = 0; r < rows; ++r) EXPECT_EQ(am[r], ops::argmax(logits.data() + static_cast<std::size_t>(r) * v, v)) << r;
  // 16-byte aligned rows (the vector path, vocab % 4 == 0): ties inside one float4, across threads, the last element
  // (the scalar tail is covered above: v % 4 == 3, rows 0 and 4 aligned)
  {
    const int vv = 152064;
    auto l2 = randn(static_cast<std::size_t>(4) * vv, g);
    l2[0 * vv + 4001] = 60.0f, l2[0 * vv + 4002] = 60.0f;         // same float4, first wins
    l2[1 * vv + 70000] = 61.0f, l2[1 * vv + 1027] = 61.0f;        // different threads
    l2[2 * vv + vv - 1] = 62.0f;                                  // last element
    l2[3 * vv + 5] = -INFINITY;
    auto d2 = to_device(l2);
    auto dm2 = poisoned<int>(4);
    argmax(Tensor::contiguous(d2.data(), DType::F32, {4, vv}), Tensor::contiguous(dm2.data(), DType::I32, {4}), nullptr);
    const auto m2 = to_host<int>(dm2, 4);
    EXPECT_EQ(m2[0], 4001);
    EXPECT_EQ(m2[1], 1027);
    EXPECT_EQ(m2[2], vv - 1);
    EXPECT_EQ(m2[3], ops::argmax(l2.data() + 3 * static_cast<std::size_t>(vv), vv));
  }
}

// rotary_split_qkv equals rotary_inplace on the q and k heads followed by three casts, bit for bit (ViT shapes:
// 16 heads of 80), for BF16 and F32 outputs; angles from the vision rotary.
TEST(CudaElementwise, RotarySplitQkvEqualsRotaryThenCast) {
  VLQ_REQUIRE_GPU();
  const auto seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  const int n = 45, heads = 16, d = 80, half = d / 2, hd = heads * d, w = 3 * hd;
  auto qkv = randn(static_cast<std::size_t>(n) * w, g);
  std::vector<float> ang(static_cast<std::size_t>(n) * half);
  std::uniform_real_distribution<float> ad(0.0f, 60.0f);
  for (auto& a : ang) a = ad(g);
  auto dang = to_device(ang);
  const Tensor tang = Tensor::contiguous(dang.data(), DType::F32, {n, half});
  // reference: rotary in place on a copy, then the casts
  auto dref = to_device(qkv);
  rotary_inplace(Tensor{dref.data(), DType::F32, 3, {n, 2 * heads, d}, {w, d, 1}}, tang, nullptr);
  for (DType dt : {DType::BF16, DType::F32}) {
    SCOPED_TRACE(dt == DType::BF16 ? "BF16" : "F32");
    const std::size_t es = dt == DType::BF16 ? 2 : 4, bytes = static_cast<std::size_t>(n) * hd * es;
    auto dsrc = to_device(qkv);
    auto dq = poisoned<std::uint8_t>(bytes), dk = poisoned<std::uint8_t>(bytes), dv = poisoned<std::uint8_t>(bytes);
    rotary_split_qkv(Tensor::contiguous(dsrc.data(), DType::F32, {n, w}), tang, Tensor::contiguous(dq.data(), dt, {n, heads, d}),
                     Tensor::contiguous(dk.data(), dt, {n, heads, d}), Tensor::contiguous(dv.data(), dt, {n, heads, d}), nullptr);
    DeviceBuffer* outs[3] = {&dq, &dk, &dv};
    for (int i = 0; i < 3; ++i) {
      auto dc = poisoned<std::uint8_t>(bytes);
      cast(Tensor::strided2d(dref.as<float>() + i * hd, DType::F32, n, hd, w), Tensor::contiguous(dc.data(), dt, {n, hd}), nullptr);
      EXPECT_EQ(to_host<std::uint8_t>(*outs[i], bytes), to_host<std::uint8_t>(dc, bytes)) << "part " << i;
    }
    EXPECT_EQ(to_host<float>(dsrc, qkv.size()), qkv) << "input modified";
  }
  // BF16 q|k|v rows (the ViT GEMM's BF16 output): the same as the f32 path over the widened values.
  {
    const std::vector<std::uint16_t> q16 = to_bf16(qkv);
    const std::vector<float> widened = from_bf16(q16);
    auto d16 = to_device(q16), dw = to_device(widened);
    const std::size_t bytes = static_cast<std::size_t>(n) * hd * 2;
    for (int pass = 0; pass < 2; ++pass) {
      DeviceBuffer o[3] = {poisoned<std::uint8_t>(bytes), poisoned<std::uint8_t>(bytes), poisoned<std::uint8_t>(bytes)};
      const Tensor src = pass ? Tensor::contiguous(dw.data(), DType::F32, {n, w}) : Tensor::contiguous(d16.data(), DType::BF16, {n, w});
      rotary_split_qkv(src, tang, Tensor::contiguous(o[0].data(), DType::BF16, {n, heads, d}),
                       Tensor::contiguous(o[1].data(), DType::BF16, {n, heads, d}),
                       Tensor::contiguous(o[2].data(), DType::BF16, {n, heads, d}), nullptr);
      static std::vector<std::uint8_t> first[3];
      for (int i = 0; i < 3; ++i) {
        if (pass == 0) first[i] = to_host<std::uint8_t>(o[i], bytes);
        else EXPECT_EQ(to_host<std::uint8_t>(o[i], bytes), first[i]) << "BF16 input, part " << i;
      }
    }
  }
  EXPECT_THROW(rotary_split_qkv(Tensor::contiguous(dref.data(), DType::F32, {n, w}), tang,
                                Tensor::contiguous(dref.data(), DType::BF16, {n, heads, d}),
                                Tensor::contiguous(dref.data(), DType::F32, {n, heads, d}),
                                Tensor::contiguous(dref.data(), DType::BF16, {n, heads, d}), nullptr),
               UsageError);
}

TEST(CudaElementwise, MropeAnglesExactAndRotaryMatchesCpu) {
  VLQ_REQUIRE_GPU();
  const auto seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  const int seq = 37, head_dim = 128, half = 64, heads = 28 + 4, kvh = 4;
  const std::vector<std::int64_t> section = {16, 24, 24};
  std::vector<std::int64_t> pos(3 * seq);
  std::uniform_int_distribution<int> pd(0, 30000);
  for (auto& p : pos) p = pd(g);
  const auto ang = ops::mrope_angles(pos, seq, section, head_dim, 1e6);
  const auto inv = ops::rope_inv_freq(1e6, head_dim);
  std::vector<int> pos32(pos.begin(), pos.end());
  auto dpos = to_device(pos32), dinv = to_device(inv);
  auto dang = poisoned<float>(seq * half);
  const int sec[3] = {16, 24, 24};
  mrope_angles(Tensor::contiguous(dpos.data(), DType::I32, {3, seq}), dinv.as<float>(), sec,
               Tensor::contiguous(dang.data(), DType::F32, {seq, half}), nullptr);
  EXPECT_EQ(to_host<float>(dang, seq * half), ang);
  // rotary on the q|k heads of a fused qkv row [seq, (heads + kvh) * D], v part untouched
  const int row = (heads + kvh) * head_dim;
  auto qkv = randn(static_cast<std::size_t>(seq) * row, g);
  std::vector<float> ref(static_cast<std::size_t>(seq) * heads * head_dim);
  for (int s = 0; s < seq; ++s)
    std::copy_n(qkv.begin() + s * row, heads * head_dim, ref.begin() + s * heads * head_dim);
  ops::apply_rotary_inplace(ref.data(), seq, heads, head_dim, ang.data());
  auto dq = to_device(qkv);
  Tensor tx = Tensor::contiguous(dq.data(), DType::F32, {seq, heads, head_dim});
  tx.stride[0] = row;
  rotary_inplace(tx, Tensor::contiguous(dang.data(), DType::F32, {seq, half}), nullptr);
  const auto got = to_host<float>(dq, qkv.size());
  std::vector<float> gq(ref.size());
  for (int s = 0; s < seq; ++s) {
    std::copy_n(got.begin() + s * row, heads * head_dim, gq.begin() + s * heads * head_dim);
    for (int i = heads * head_dim; i < row; ++i) ASSERT_EQ(got[s * row + i], qkv[s * row + i]) << "v part modified";
  }
  EXPECT_LT(rel_err(gq, ref), 2e-6);
}

}  // namespace
}  // namespace vlq::cuda::test
