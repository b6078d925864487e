// Unit tests of the CPU reference ops: FP8 GEMM emulation against a direct scalar computation, dynamic and
// per-channel schemes, FP8 KV cache round trip, segment and causal attention against naive loops, M-RoPE
// sections, RMSNorm, GELU, sampling.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/ops/activation.h"
#include "vlq/ops/attention.h"
#include "vlq/ops/linear.h"
#include "vlq/ops/norm.h"
#include "vlq/ops/rotary.h"
#include "vlq/ops/sampling.h"

using namespace vlq;
using namespace vlq::ops;

namespace {

std::vector<float> randn(std::size_t n, float std, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

LinearWeights dense(std::int64_t n, std::int64_t k, std::uint64_t seed, bool bias) {
  LinearWeights l;
  l.name = "test";
  l.out_features = n;
  l.in_features = k;
  l.w = randn(static_cast<std::size_t>(n * k), 0.1f, seed);
  if (bias) l.bias = randn(static_cast<std::size_t>(n), 0.5f, seed + 1);
  return l;
}

TEST(OpsLinear, DenseMatchesScalarLoop) {
  const auto l = dense(7, 33, 1, true);
  const auto x = randn(5 * 33, 1.0f, 2);
  std::vector<float> y(5 * 7);
  linear_forward(l, x.data(), 5, 33, y.data());
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c) {
      double s = l.bias[c];
      for (int k = 0; k < 33; ++k) s += double(x[r * 33 + k]) * l.w[c * 33 + k];
      EXPECT_NEAR(y[r * 7 + c], s, 1e-4);
    }
  EXPECT_THROW(linear_forward(l, x.data(), 5, 32, y.data()), UsageError);
}

// The FP8 GEMM: E4M3(x / s_in) · Wq (exact products) accumulated, times s_in · s_w, plus bias.
TEST(OpsLinear, Fp8StaticIsExactEmulation) {
  auto l = dense(16, 48, 3, true);
  const auto x = randn(4 * 48, 2.0f, 4);
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  const auto w_orig = l.w;
  quantize_linear_fp8_static(l, amax * 0.5f);  // half the amax: some activations saturate
  ASSERT_EQ(l.kind, LinearKind::kFp8Static);
  const float s_in = *l.input_scale, s_w = l.weight_scale[0];
  std::vector<float> y(4 * 16);
  linear_forward(l, x.data(), 4, 48, y.data());
  int saturated = 0;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 16; ++c) {
      double acc = 0;
      for (int k = 0; k < 48; ++k) {
        const float xq = e4m3fn_to_f32(f32_to_e4m3fn_sat(x[r * 48 + k] / s_in));
        saturated += std::fabs(x[r * 48 + k] / s_in) > 448.0f;
        const float wq = e4m3fn_to_f32(f32_to_e4m3fn_sat(w_orig[c * 48 + k] / s_w));
        ASSERT_EQ(wq, l.w[c * 48 + k]);
        acc += double(xq) * wq;  // exact products
      }
      const double want = acc * s_in * s_w + l.bias[c];
      EXPECT_NEAR(y[r * 16 + c], want, 1e-5 * std::max(1.0, std::fabs(want)));
    }
  EXPECT_GT(saturated, 0);
}

TEST(OpsLinear, Fp8DynamicPerTokenAndPerChannel) {
  auto l = dense(8, 32, 5, false);
  quantize_linear_fp8_static(l, 1.0f);
  l.kind = LinearKind::kFp8Dynamic;
  l.input_scale.reset();
  l.weight_scale.assign(8, l.weight_scale[0]);
  for (int c = 0; c < 8; ++c) l.weight_scale[c] *= 1.0f + 0.1f * c;  // per-channel
  auto x = randn(3 * 32, 1.0f, 6);
  for (int k = 0; k < 32; ++k) x[2 * 32 + k] *= 100.0f;  // one row 100x larger: its own scale
  std::vector<float> y(3 * 8);
  linear_forward(l, x.data(), 3, 32, y.data());
  for (int r = 0; r < 3; ++r) {
    float amax = 0;
    for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(x[r * 32 + k]));
    const float s = amax / 448.0f;
    for (int c = 0; c < 8; ++c) {
      double acc = 0;
      for (int k = 0; k < 32; ++k) acc += double(e4m3fn_to_f32(f32_to_e4m3fn_sat(x[r * 32 + k] / s))) * l.w[c * 32 + k];
      const double want = acc * s * l.weight_scale[c];
      EXPECT_NEAR(y[r * 8 + c], want, 1e-5 * std::max(1.0, std::fabs(want)));
    }
  }
}

TEST(OpsLinear, QuantizeRejectsBadAmax) {
  auto l = dense(4, 16, 7, false);
  EXPECT_THROW(quantize_linear_fp8_static(l, 0.0f), UsageError);
  EXPECT_THROW(quantize_linear_fp8_static(l, NAN), UsageError);
}

TEST(OpsKvCache, Fp8StoresE4M3CodesTimesScale) {
  KvCacheLayer c(4, 2, 8, true, 0.05f, 0.02f);
  const auto k = randn(2 * 2 * 8, 3.0f, 8), v = randn(2 * 2 * 8, 3.0f, 9);
  c.append(k.data(), v.data(), 2);
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(c.k_f32(0)[i], e4m3fn_to_f32(f32_to_e4m3fn_sat(k[i] / 0.05f)) * 0.05f);
    EXPECT_EQ(c.v_f32(0)[i], e4m3fn_to_f32(f32_to_e4m3fn_sat(v[i] / 0.02f)) * 0.02f);
  }
  EXPECT_THROW(c.append(k.data(), v.data(), 3), UsageError);  // capacity 4
  EXPECT_THROW(KvCacheLayer(4, 2, 8, true, 0.0f, 1.0f), UsageError);
}

// Naive softmax attention of one query over keys [0, n).
std::vector<float> naive(const float* q, const float* K, const float* V, int n, int stride, int hd, float scale) {
  std::vector<double> s(n);
  double mx = -1e300;
  for (int j = 0; j < n; ++j) {
    double d = 0;
    for (int t = 0; t < hd; ++t) d += double(q[t]) * K[j * stride + t];
    s[j] = d * scale;
    mx = std::max(mx, s[j]);
  }
  double sum = 0;
  for (auto& e : s) sum += e = std::exp(e - mx);
  std::vector<float> o(hd, 0.0f);
  for (int j = 0; j < n; ++j)
    for (int t = 0; t < hd; ++t) o[t] += float(s[j] / sum * V[j * stride + t]);
  return o;
}

TEST(OpsAttention, SegmentsAttendOnlyInsideTheirSegment) {
  const int n = 10, heads = 2, hd = 4, stride = heads * hd;
  const auto q = randn(n * stride, 1, 10), k = randn(n * stride, 1, 11), v = randn(n * stride, 1, 12);
  std::vector<float> out(n * stride);
  const std::vector<std::int64_t> cu{0, 3, 3, 10};  // includes an empty segment
  attention_segments(q.data(), k.data(), v.data(), n, heads, hd, cu, 0.5f, out.data());
  for (int i = 0; i < n; ++i)
    for (int h = 0; h < heads; ++h) {
      const int s0 = i < 3 ? 0 : 3, len = i < 3 ? 3 : 7;
      const auto want = naive(&q[i * stride + h * hd], &k[s0 * stride + h * hd], &v[s0 * stride + h * hd], len, stride, hd, 0.5f);
      for (int t = 0; t < hd; ++t) EXPECT_NEAR(out[i * stride + h * hd + t], want[t], 1e-5);
    }
  EXPECT_THROW(attention_segments(q.data(), k.data(), v.data(), n, heads, hd, {0, 5}, 0.5f, out.data()), UsageError);
}

TEST(OpsAttention, CausalGqaOverCache) {
  const int heads = 6, kvh = 2, hd = 4, group = 3;
  KvCacheLayer c(16, kvh, hd, false, 1, 1);
  const auto k0 = randn(5 * kvh * hd, 1, 13), v0 = randn(5 * kvh * hd, 1, 14);
  c.append(k0.data(), v0.data(), 5);  // 2 "past" + 3 new
  const auto q = randn(3 * heads * hd, 1, 15);
  std::vector<float> out(3 * heads * hd);
  attention_causal_cached(q.data(), 3, heads, hd, c, 0.5f, out.data());
  for (int i = 0; i < 3; ++i)
    for (int h = 0; h < heads; ++h) {
      const int g = h / group;
      const auto want = naive(&q[(i * heads + h) * hd], &k0[g * hd], &v0[g * hd], 2 + i + 1, kvh * hd, hd, 0.5f);
      for (int t = 0; t < hd; ++t) EXPECT_NEAR(out[(i * heads + h) * hd + t], want[t], 1e-5);
    }
}

TEST(OpsRotary, MropeSectionsPickTheirPositionRow) {
  // head_dim 8 → 4 frequencies, sections [1, 2, 1]: k=0 from t, k=1,2 from h, k=3 from w.
  const std::vector<std::int64_t> pos{5, 6, 7};  // S = 1: t=5, h=6, w=7
  const auto a = mrope_angles(pos, 1, {1, 2, 1}, 8, 10000.0);
  const auto inv = rope_inv_freq(10000.0, 8);
  EXPECT_FLOAT_EQ(a[0], 5 * inv[0]);
  EXPECT_FLOAT_EQ(a[1], 6 * inv[1]);
  EXPECT_FLOAT_EQ(a[2], 6 * inv[2]);
  EXPECT_FLOAT_EQ(a[3], 7 * inv[3]);
  EXPECT_THROW(mrope_angles(pos, 1, {1, 1, 1}, 8, 10000.0), UsageError);
  // rotation is half-split: dims j and j + half share an angle
  std::vector<float> x{1, 0, 0, 0, 0, 0, 0, 0};
  const std::vector<float> ang{float(M_PI / 2), 0, 0, 0};
  apply_rotary_inplace(x.data(), 1, 1, 8, ang.data());
  EXPECT_NEAR(x[0], 0, 1e-6);
  EXPECT_NEAR(x[4], 1, 1e-6);
}

TEST(OpsNorm, RmsNormAndGelu) {
  const std::vector<float> x{1, 2, 3, 4}, w{1, 1, 2, 0.5};
  std::vector<float> y(4);
  rms_norm(x.data(), w.data(), 1, 4, 1e-6f, y.data());
  const float r = 1.0f / std::sqrt(7.5f + 1e-6f);
  EXPECT_FLOAT_EQ(y[2], 2 * 3 * r);
  std::vector<float> g{-1, 0, 1};
  gelu_erf_inplace(g.data(), 3);
  EXPECT_NEAR(g[2], 0.8413447, 1e-6);  // erf form, not tanh (0.841192)
  EXPECT_NEAR(g[0], -0.1586553, 1e-6);
}

TEST(OpsSampling, GreedyPenaltyAndSeededSampling) {
  std::vector<float> l{1, 3, 2, 3};
  EXPECT_EQ(argmax(l.data(), 4), 1);  // first of ties, like torch.argmax
  std::mt19937_64 rng(1);
  SamplingParams p;
  std::vector<std::int32_t> hist{1};
  p.repetition_penalty = 2.0;
  auto l2 = l;
  EXPECT_EQ(sample_token(l2.data(), 4, p, hist, rng), 3);  // 3/2 = 1.5 < 3
  p = {};
  p.temperature = 1.0;
  p.top_k = 1;
  auto l3 = l;
  EXPECT_EQ(sample_token(l3.data(), 4, p, {}, rng), 1);
  p.top_k = 0;
  p.top_p = 0.5;  // keeps the top token only: mass of 3 is ~0.42 per tie → 2 tokens
  std::mt19937_64 a(7), b(7);
  auto l4 = l, l5 = l;
  EXPECT_EQ(sample_token(l4.data(), 4, p, {}, a), sample_token(l5.data(), 4, p, {}, b));  // seeded = reproducible
}

}  // namespace
