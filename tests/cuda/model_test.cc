// Whole-model CUDA vs CPU: the bundled trained Qwen2.5-VL (BF16; LM-only FP8 quantized in memory with
// calibrated input scales; FP8 KV cache) run by model_cuda::Qwen2_5_VLCuda against model::Qwen2_5_VL —
// prefill logits within 1e-2 relative, greedy tokens equal, one batch of ragged sequences equal to one
// sequence at a time, blocks returned to the pool. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <random>

#include "cuda_test_util.h"
#include "vlq/core/numerics.h"
#include "vlq/image/image.h"
#include "vlq/image/image_processor.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/model/vision_tower.h"
#include "vlq/model_cuda/qwen2_5_vl_cuda.h"
#include "vlq/ops/sampling.h"

namespace vlq::model_cuda {
namespace {

namespace fs = std::filesystem;
const fs::path kModel = fs::path(VLQ_SOURCE_DIR) / "models/qwen2_5_vl-tiny-trained";
const fs::path kImage = fs::path(VLQ_SOURCE_DIR) / "data/heldout/images/color-0003.png";

// max |a - b| / max |b| over all logits.
double rel_error(const ops::Matrix& a, const ops::Matrix& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.data.size(); ++i) {
    num = std::max(num, static_cast<double>(std::fabs(a.data[i] - b.data[i])));
    den = std::max(den, static_cast<double>(std::fabs(b.data[i])));
  }
  return den > 0 ? num / den : num;
}

std::int32_t argmax_row(const ops::Matrix& m, std::int64_t r) {
  return static_cast<std::int32_t>(std::max_element(m.row(r), m.row(r) + m.cols) - m.row(r));
}

std::vector<std::int32_t> random_text(std::int64_t n, std::uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<std::int32_t> d(10, 2000);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  for (auto& x : ids) x = d(g);
  return ids;
}

// Records amax of every Linear input and K/V (a max calibration).
struct AmaxObserver : model::ForwardObserver {
  std::map<std::string, float> amax;
  void on_linear_input(const std::string& m, const float* x, std::int64_t rows, std::int64_t cols) override {
    float& a = amax[m];
    for (std::int64_t i = 0; i < rows * cols; ++i) a = std::max(a, std::fabs(x[i]));
  }
  void on_kv(const std::string& m, const float* k, const float* v, std::int64_t rows, std::int64_t w) override {
    float& ak = amax[m + ".k"];
    float& av = amax[m + ".v"];
    for (std::int64_t i = 0; i < rows * w; ++i) ak = std::max(ak, std::fabs(k[i])), av = std::max(av, std::fabs(v[i]));
  }
};

// The test's own FP8 static per-tensor recipe (as an export writes it): weight_scale = amax(W)/448,
// Wq = E4M3(W / weight_scale), input_scale = amax(x)/448.
void to_fp8(ops::LinearWeights& l, float input_amax) {
  float wa = 0;
  for (float w : l.w) wa = std::max(wa, std::fabs(w));
  const float s = wa / 448.0f;
  for (float& w : l.w) w = e4m3fn_to_f32(f32_to_e4m3fn_sat(w / s));
  l.kind = ops::LinearKind::kFp8Static;
  l.weight_scale = {s};
  l.input_scale = std::max(input_amax, 1e-6f) / 448.0f;
}

model::Qwen2_5_VL quantized_lm_model() {
  model::Qwen2_5_VL m = model::Qwen2_5_VL::load(kModel);
  AmaxObserver obs;
  auto s = m.new_session(256);
  const auto ids = random_text(96, 7);
  m.prefill(s, ids, nullptr, 1, &obs);
  auto& lm = m.mutable_weights().lm;
  for (std::size_t li = 0; li < lm.layers.size(); ++li) {
    auto& L = lm.layers[li];
    for (auto* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) to_fp8(*l, obs.amax.at(l->name));
    const std::string attn = L.q.name.substr(0, L.q.name.rfind('.'));
    L.k_scale = obs.amax.at(attn + ".k") / 448.0f;
    L.v_scale = obs.amax.at(attn + ".v") / 448.0f;
  }
  m.set_kv_cache_mode(model::KvCacheMode::kFp8);
  return m;
}

// CPU prefill + greedy decode vs CUDA prefill + greedy decode. Tolerance (max |Δlogit| / max |logit|): 1e-2
// for BF16 weights; FP8 Linears get 5e-2: their activations are rounded to E4M3 (3 mantissa bits), and the few
// inputs that the two paths' ~1e-6 differences push across a rounding midpoint move by a whole E4M3 step
// (6 %); measured 1.1–2.9 % on the bundled model (H100, 2026-12-06), greedy tokens still equal.
void expect_same_generation(const model::Qwen2_5_VL& cpu, std::span<const std::int32_t> ids,
                            const image::ProcessedImages* images, int steps, double tol = 1e-2) {
  Qwen2_5_VLCuda gpu(cpu);
  auto s = cpu.new_session(static_cast<std::int64_t>(ids.size()) + steps + 1);
  const ops::Matrix ref = cpu.prefill(s, ids, images, 4);
  CudaSequence q;
  const int free0 = gpu.free_blocks();
  const ops::Matrix got = gpu.prefill(q, ids, images, static_cast<std::int64_t>(ids.size()) + steps + 1, 4);
  ASSERT_EQ(got.rows, ref.rows);
  EXPECT_LE(rel_error(got, ref), tol);
  std::int32_t t_ref = argmax_row(ref, ref.rows - 1), t_got = argmax_row(got, got.rows - 1);
  int equal = 0;
  for (int i = 0; i < steps; ++i) {
    equal += t_ref == t_got;
    const ops::Matrix r = cpu.decode(s, t_ref);
    const ops::Matrix g = gpu.decode(q, t_ref);  // teacher-forced on the CPU's tokens
    EXPECT_LE(rel_error(g, r), tol) << "decode step " << i;
    t_ref = argmax_row(r, 0);
    t_got = argmax_row(g, 0);
  }
  EXPECT_GE(equal, steps - 1) << "greedy tokens equal on " << equal << " of " << steps << " steps";
  gpu.release(q);
  EXPECT_EQ(gpu.free_blocks(), free0);
}

image::ProcessedImages load_processed(const model::Qwen2_5_VL& cpu, const fs::path& path) {
  const auto params = image::image_processor_params_from_config(*cpu.files().preprocessor);
  return image::preprocess_image(image::load_image(path), params);
}

// <|vision_start|> <|image_pad|>×n <|vision_end|> + 20 random text tokens.
std::vector<std::int32_t> image_prompt(const model::Qwen2_5_VL& cpu, const image::ProcessedImages& px) {
  std::int64_t n_pad = 0;
  for (const auto& g : px.grid_thw) n_pad += g[0] * g[1] * g[2] / 4;
  const auto& tok = cpu.config().tokens;
  std::vector<std::int32_t> ids = {static_cast<std::int32_t>(tok.vision_start_token_id)};
  ids.insert(ids.end(), static_cast<std::size_t>(n_pad), static_cast<std::int32_t>(tok.image_token_id));
  ids.push_back(static_cast<std::int32_t>(tok.vision_end_token_id));
  const auto text = random_text(20, 2);
  ids.insert(ids.end(), text.begin(), text.end());
  return ids;
}

// The whole VLM in FP8, as `vlq quantize --scope vlm` writes it: every Linear of the vision blocks and the
// merger with in_features % 16 == 0 (the patch embedding stays BF16), calibrated on one image prompt.
// `unaligned`: also the Linears whose K is not a multiple of 16 (`vlq quantize --unaligned fp8`); `prepare`
// changes the model before calibration.
model::Qwen2_5_VL quantized_vlm_model(bool unaligned = false,
                                      const std::function<void(model::Qwen2_5_VL&)>& prepare = {}) {
  model::Qwen2_5_VL m = quantized_lm_model();
  if (prepare) prepare(m);
  AmaxObserver obs;
  const image::ProcessedImages px = load_processed(m, kImage);
  const auto ids = image_prompt(m, px);
  auto s = m.new_session(static_cast<std::int64_t>(ids.size()) + 1);
  m.prefill(s, ids, &px, 1, &obs);
  auto& vw = m.mutable_weights().vision;
  auto q = [&](ops::LinearWeights& l) {
    if ((unaligned || l.in_features % 16 == 0) && obs.amax.count(l.name)) to_fp8(l, obs.amax.at(l.name));
  };
  for (auto& b : vw.blocks)
    for (auto* l : {&b.qkv, &b.proj, &b.gate, &b.up, &b.down}) q(*l);
  q(vw.merger0);
  q(vw.merger2);
  return m;
}

// Vision tower alone: CUDA encode_images vs model::vision_forward, one image and two images of other sizes.
void expect_same_vision(const model::Qwen2_5_VL& cpu, double tol = 1e-2) {
  Qwen2_5_VLCuda gpu(cpu);
  ASSERT_TRUE(gpu.has_vision());
  EXPECT_GT(gpu.vision_weight_bytes(), 0u);
  const fs::path dir = fs::path(VLQ_SOURCE_DIR) / "data/heldout/images";
  const image::ProcessedImages one = load_processed(cpu, kImage);
  const auto& w = cpu.weights().vision;
  const ops::Matrix ref1 = model::vision_forward(w, cpu.config().vision, one.pixel_values.data(), one.n_patches,
                                                 one.patch_dim, one.grid_thw);
  const ops::Matrix got1 = gpu.encode_images(one.pixel_values.data(), one.n_patches, one.patch_dim, one.grid_thw);
  ASSERT_EQ(got1.rows, ref1.rows);
  ASSERT_EQ(got1.cols, ref1.cols);
  EXPECT_LE(rel_error(got1, ref1), tol);
  // Two images in one call (two segments of the full-attention blocks, their own windows).
  image::ProcessedImages two = load_processed(cpu, dir / "shape-0001.png");
  const image::ProcessedImages b = load_processed(cpu, dir / "count-0002.png");
  two.pixel_values.insert(two.pixel_values.end(), b.pixel_values.begin(), b.pixel_values.end());
  two.grid_thw.insert(two.grid_thw.end(), b.grid_thw.begin(), b.grid_thw.end());
  two.n_patches += b.n_patches;
  const ops::Matrix ref2 = model::vision_forward(w, cpu.config().vision, two.pixel_values.data(), two.n_patches,
                                                 two.patch_dim, two.grid_thw);
  const ops::Matrix got2 = gpu.encode_images(two.pixel_values.data(), two.n_patches, two.patch_dim, two.grid_thw);
  ASSERT_EQ(got2.rows, ref2.rows);
  EXPECT_LE(rel_error(got2, ref2), tol);
  // Sizes that disagree with the grid are refused before anything runs.
  EXPECT_THROW(gpu.encode_images(one.pixel_values.data(), one.n_patches - 4, one.patch_dim, one.grid_thw), UsageError);
}

TEST(CudaModel, Bf16VisionTowerMatchesCpu) {
  VLQ_REQUIRE_GPU();
  expect_same_vision(model::Qwen2_5_VL::load(kModel));
}

TEST(CudaModel, Fp8VisionTowerMatchesCpu) {
  VLQ_REQUIRE_GPU();
  const auto cpu = quantized_vlm_model();
  std::int64_t fp8 = 0;
  for (const auto& b : cpu.weights().vision.blocks) fp8 += b.qkv.kind == ops::LinearKind::kFp8Static;
  ASSERT_GT(fp8, 0) << "the test model's vision Linears were not quantized";
  expect_same_vision(cpu, 5e-2);
}

void cut_vision_mlp(model::Qwen2_5_VL& m, std::int64_t width);  // below

// llm-compressor's FP8_DYNAMIC recipe in memory: per-channel weight scales (amax of each row / 448) and dynamic
// per-token activations (no input_scale); `static_input` > 0 instead keeps a static per-tensor input scale (the
// compressed-tensors "channel" weights + "tensor" activations scheme).
void to_fp8_per_channel(ops::LinearWeights& l, float static_input = 0.0f) {
  l.weight_scale.assign(static_cast<std::size_t>(l.out_features), 0.0f);
  for (std::int64_t r = 0; r < l.out_features; ++r) {
    float a = 0;
    for (std::int64_t c = 0; c < l.in_features; ++c) a = std::max(a, std::fabs(l.w[r * l.in_features + c]));
    const float s = std::max(a, 1e-12f) / 448.0f;
    l.weight_scale[r] = s;
    for (std::int64_t c = 0; c < l.in_features; ++c) {
      float& w = l.w[r * l.in_features + c];
      w = e4m3fn_to_f32(f32_to_e4m3fn_sat(w / s));
    }
  }
  if (static_input > 0) {
    l.kind = ops::LinearKind::kFp8Static;
    l.input_scale = static_input;
  } else {
    l.kind = ops::LinearKind::kFp8Dynamic;
    l.input_scale.reset();
  }
}

// The same Linear with dynamic per-token activations but one per-tensor weight scale.
void to_fp8_dynamic_per_tensor(ops::LinearWeights& l) {
  to_fp8_per_channel(l);
  const float s = *std::max_element(l.weight_scale.begin(), l.weight_scale.end());
  for (std::int64_t r = 0; r < l.out_features; ++r)  // requantize every row to the largest scale
    for (std::int64_t c = 0; c < l.in_features; ++c) {
      float& w = l.w[r * l.in_features + c];
      w = e4m3fn_to_f32(f32_to_e4m3fn_sat(w * l.weight_scale[static_cast<std::size_t>(r)] / s));
    }
  l.weight_scale = {s};
}

// CUDA vs CPU on text and on an image prompt for a model quantized in memory by `quantize` (BF16 KV cache).
void expect_same_model_outputs(model::Qwen2_5_VL& m) {
  expect_same_generation(m, random_text(40, 11), nullptr, 6, 5e-2);
  expect_same_vision(m, 5e-2);
  const image::ProcessedImages px = load_processed(m, kImage);
  expect_same_generation(m, image_prompt(m, px), &px, 4, 8e-2);
}

// (a) FP8_DYNAMIC as llm-compressor writes it: every LM and vision-block Linear and the merger per-channel with dynamic
// per-token activations (lm_head and the patch embedding stay BF16), the vision MLP cut to 500 columns so that
// its padding to 512 carries per-channel scales; layer 1 dynamic with per-tensor weight scales. (b) Per-channel
// weights with static per-tensor inputs (compressed-tensors "channel" + "tensor") in o_proj / down_proj.
TEST(CudaModel, Fp8DynamicPerTokenAndPerChannelMatchCpu) {
  VLQ_REQUIRE_GPU();
  {
    SCOPED_TRACE("FP8_DYNAMIC, padded vision MLP");
    model::Qwen2_5_VL m = model::Qwen2_5_VL::load(kModel);
    cut_vision_mlp(m, 500);
    auto& w = m.mutable_weights();
    for (std::size_t li = 0; li < w.lm.layers.size(); ++li) {
      auto& L = w.lm.layers[li];
      for (auto* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
        if (li == 1) to_fp8_dynamic_per_tensor(*l);
        else to_fp8_per_channel(*l);
      }
    }
    for (auto& b : w.vision.blocks)  // down_proj's K = 500 too (--unaligned fp8): padded to 512 on upload
      for (auto* l : {&b.qkv, &b.proj, &b.gate, &b.up, &b.down}) to_fp8_per_channel(*l);
    to_fp8_per_channel(w.vision.merger0);
    to_fp8_per_channel(w.vision.merger2);
    ASSERT_EQ(w.lm.layers.front().o.kind, ops::LinearKind::kFp8Dynamic);
    ASSERT_EQ(w.vision.blocks.front().down.in_features, 500);
    ASSERT_GT(w.lm.layers.front().q.weight_scale.size(), 1u);
    ASSERT_EQ(w.lm.layers[1].q.weight_scale.size(), 1u);
    ASSERT_EQ(w.vision.blocks.front().gate.kind, ops::LinearKind::kFp8Dynamic);
    expect_same_model_outputs(m);
  }
  {
    SCOPED_TRACE("per-channel weights, static inputs");
    model::Qwen2_5_VL m = model::Qwen2_5_VL::load(kModel);
    AmaxObserver obs;
    {
      auto s = m.new_session(256);
      m.prefill(s, random_text(96, 7), nullptr, 1, &obs);
    }
    auto& w = m.mutable_weights();
    for (auto& L : w.lm.layers) {
      for (auto* l : {&L.q, &L.k, &L.v, &L.gate, &L.up}) to_fp8_per_channel(*l);
      for (auto* l : {&L.o, &L.down}) to_fp8_per_channel(*l, std::max(obs.amax.at(l->name), 1e-6f) / 448.0f);
    }
    ASSERT_EQ(w.lm.layers.front().o.kind, ops::LinearKind::kFp8Static);
    expect_same_model_outputs(m);
  }
}

// The vision MLPs cut to `width` intermediate columns (gate / up: the first rows, down: the first input columns):
// a smaller model of the same architecture whose width is not a multiple of 16, like the 7B's 3420.
void cut_vision_mlp(model::Qwen2_5_VL& m, std::int64_t width) {
  for (auto& b : m.mutable_weights().vision.blocks) {
    for (auto* l : {&b.gate, &b.up}) {
      l->w.resize(static_cast<std::size_t>(width * l->in_features));
      if (!l->bias.empty()) l->bias.resize(static_cast<std::size_t>(width));
      l->out_features = width;
    }
    ops::LinearWeights& d = b.down;
    std::vector<float> w(static_cast<std::size_t>(d.out_features * width));
    for (std::int64_t r = 0; r < d.out_features; ++r)
      std::copy(d.w.begin() + r * d.in_features, d.w.begin() + r * d.in_features + width, w.begin() + r * width);
    d.w = std::move(w);
    d.in_features = width;
  }
}

// An MLP width of 500 (not a multiple of 8 or 16): the device pads it to 512 with zero weights (vision_cuda.cpp
// pad_out_rows); BF16, and FP8 in every vision Linear including down_proj's K = 500 (`--unaligned fp8`).
TEST(CudaModel, UnalignedVisionMlpWidthIsPaddedOnUpload) {
  VLQ_REQUIRE_GPU();
  model::Qwen2_5_VL bf16 = model::Qwen2_5_VL::load(kModel);
  cut_vision_mlp(bf16, 500);
  expect_same_vision(bf16);
  const auto fp8 = quantized_vlm_model(true, [](model::Qwen2_5_VL& m) { cut_vision_mlp(m, 500); });
  const auto& down = fp8.weights().vision.blocks.front().down;
  ASSERT_EQ(down.kind, ops::LinearKind::kFp8Static);
  ASSERT_EQ(down.in_features, 500);
  expect_same_vision(fp8, 5e-2);
  const image::ProcessedImages px = load_processed(fp8, kImage);
  expect_same_generation(fp8, image_prompt(fp8, px), &px, 4, 8e-2);
}

// Raw RGB images preprocessed on the device give the same BF16 pixels as the CPU processor, hence the same
// features and logits, bit for bit (one image; two images of other sizes in one call).
TEST(CudaModel, RawImagesPreprocessedOnDeviceEqualHostPixels) {
  VLQ_REQUIRE_GPU();
  const auto cpu = model::Qwen2_5_VL::load(kModel);
  Qwen2_5_VLCuda gpu(cpu);
  const auto params = image::image_processor_params_from_config(*cpu.files().preprocessor);
  const fs::path dir = fs::path(VLQ_SOURCE_DIR) / "data/heldout/images";
  const std::vector<image::RgbImage> imgs = {image::load_image(kImage), image::load_image(dir / "shape-0001.png"),
                                             image::load_image(dir / "count-0002.png")};
  auto max_diff = [](const ops::Matrix& a, const ops::Matrix& b) {
    double d = 0;
    for (std::size_t i = 0; i < a.data.size(); ++i) d = std::max(d, static_cast<double>(std::fabs(a.data[i] - b.data[i])));
    return d;
  };
  for (std::size_t n : {std::size_t{1}, std::size_t{3}}) {
    SCOPED_TRACE(std::to_string(n) + " image(s)");
    const std::span<const image::RgbImage> some(imgs.data(), n);
    const image::ProcessedImages px = image::preprocess_images(some, params);
    const image::RawImages raw = image::plan_images(some, params);
    ASSERT_EQ(raw.n_patches, px.n_patches);
    ASSERT_EQ(raw.grid_thw, px.grid_thw);
    const ops::Matrix host = gpu.encode_images(px.pixel_values.data(), px.n_patches, px.patch_dim, px.grid_thw);
    const ops::Matrix dev = gpu.encode_images(raw);
    ASSERT_EQ(dev.rows, host.rows);
    EXPECT_EQ(max_diff(dev, host), 0.0);
  }
  const image::ProcessedImages px = load_processed(cpu, kImage);
  const image::RawImages raw = image::plan_images(std::span<const image::RgbImage>(imgs.data(), 1), params);
  const auto ids = image_prompt(cpu, px);
  CudaSequence a, b;
  const ops::Matrix la = gpu.prefill(a, ids, &px, static_cast<std::int64_t>(ids.size()) + 1);
  const ops::Matrix lb = gpu.prefill(b, ids, raw, static_cast<std::int64_t>(ids.size()) + 1);
  EXPECT_EQ(max_diff(lb, la), 0.0);
  gpu.release(a);
  gpu.release(b);
  // The pad count must still match the features.
  CudaSequence c;
  std::vector<std::int32_t> short_ids(ids.begin(), ids.end() - 30);
  short_ids.erase(short_ids.begin() + 1);
  EXPECT_THROW(gpu.prefill(c, short_ids, raw, static_cast<std::int64_t>(ids.size()) + 1), UsageError);
  gpu.release(c);
}

TEST(CudaModel, Fp8WholeVlmImagePromptMatchesCpu) {
  VLQ_REQUIRE_GPU();
  const auto cpu = quantized_vlm_model();
  const image::ProcessedImages px = load_processed(cpu, kImage);
  // 8e-2: the FP8 vision tower's own E4M3 steps (≤ 5e-2 above) feed the FP8 LM; measured 5.8 % at one decode step
  // (H100, 2026-12-06) with greedy tokens equal.
  expect_same_generation(cpu, image_prompt(cpu, px), &px, 8, 8e-2);
}

TEST(CudaModel, Bf16TextMatchesCpu) {
  VLQ_REQUIRE_GPU();
  const auto cpu = model::Qwen2_5_VL::load(kModel);
  const auto ids = random_text(77, 1);
  expect_same_generation(cpu, ids, nullptr, 16);
}

TEST(CudaModel, Bf16ImagePromptMatchesCpu) {
  VLQ_REQUIRE_GPU();
  const auto cpu = model::Qwen2_5_VL::load(kModel);
  const image::ProcessedImages px = load_processed(cpu, kImage);
  expect_same_generation(cpu, image_prompt(cpu, px), &px, 8);
}

TEST(CudaModel, Fp8LanguageModelAndFp8KvMatchCpu) {
  VLQ_REQUIRE_GPU();
  const auto cpu = quantized_lm_model();
  Qwen2_5_VLCuda probe(cpu);
  EXPECT_TRUE(probe.fp8_kv_cache());
  const auto ids = random_text(40, 3);  // > 8 rows: cuBLASLt FP8 GEMMs; decode: FP8 GEMV
  expect_same_generation(cpu, ids, nullptr, 16, 5e-2);
}

TEST(CudaModel, RaggedBatchEqualsOneAtATime) {
  VLQ_REQUIRE_GPU();
  const auto cpu = model::Qwen2_5_VL::load(kModel);
  Qwen2_5_VLCuda gpu(cpu);
  const std::vector<std::vector<std::int32_t>> prompts = {random_text(5, 11), random_text(33, 12), random_text(17, 13)};
  // One at a time.
  std::vector<ops::Matrix> alone;
  for (const auto& p : prompts) {
    CudaSequence s;
    alone.push_back(gpu.prefill(s, p, nullptr, 64, 1));
    gpu.release(s);
  }
  // All three prompts in one forward (text-only: positions t = h = w = index).
  std::vector<CudaSequence> seqs(prompts.size());
  Batch b;
  std::vector<std::int32_t> pos_t;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(gpu.reserve(seqs[i], 64));
    b.sequences.push_back(&seqs[i]);
    for (std::size_t j = 0; j < prompts[i].size(); ++j) {
      b.token_ids.push_back(prompts[i][j]);
      pos_t.push_back(static_cast<std::int32_t>(j));
      b.seq_of_row.push_back(static_cast<std::int32_t>(i));
      b.cache_pos.push_back(static_cast<std::int32_t>(j));
    }
    b.logits_rows.push_back(static_cast<std::int32_t>(b.token_ids.size() - 1));
  }
  for (int r = 0; r < 3; ++r) b.positions.insert(b.positions.end(), pos_t.begin(), pos_t.end());
  const ops::Matrix together = gpu.forward(b);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    ops::Matrix row(1, together.cols);
    std::copy(together.row(static_cast<std::int64_t>(i)), together.row(static_cast<std::int64_t>(i)) + together.cols, row.row(0));
    EXPECT_LE(rel_error(row, alone[i]), 1e-2) << "sequence " << i;
    EXPECT_EQ(argmax_row(row, 0), argmax_row(alone[i], 0)) << "sequence " << i;
    seqs[i].length = static_cast<std::int64_t>(prompts[i].size());
  }
  // One batched decode step of all three vs the CPU, each sequence at its own position.
  Batch d;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    d.sequences.push_back(&seqs[i]);
    d.token_ids.push_back(42);
    d.seq_of_row.push_back(static_cast<std::int32_t>(i));
    d.cache_pos.push_back(static_cast<std::int32_t>(seqs[i].length));
    d.logits_rows.push_back(static_cast<std::int32_t>(i));
  }
  for (int r = 0; r < 3; ++r)
    for (const auto& s : seqs) d.positions.push_back(static_cast<std::int32_t>(s.length));
  const ops::Matrix step = gpu.forward(d);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    auto s = cpu.new_session(64);
    cpu.prefill(s, prompts[i], nullptr, 1);
    const ops::Matrix r = cpu.decode(s, 42);
    ops::Matrix row(1, step.cols);
    std::copy(step.row(static_cast<std::int64_t>(i)), step.row(static_cast<std::int64_t>(i)) + step.cols, row.row(0));
    EXPECT_LE(rel_error(row, r), 1e-2) << "sequence " << i;
  }
  for (auto& s : seqs) gpu.release(s);
}

// The serving engine's usual step mixes one decode token of a running sequence with another's prefill chunk:
// the decode row goes to the decode kernel (row list), the chunk to the flash kernel; both must equal the CPU.
TEST(CudaModel, MixedPrefillAndDecodeStepMatchesCpu) {
  VLQ_REQUIRE_GPU();
  const auto cpu = model::Qwen2_5_VL::load(kModel);
  Qwen2_5_VLCuda gpu(cpu);
  const auto a = random_text(33, 21), b = random_text(65, 22);  // 65 rows: a 64-row tile + one row (decode kernel)
  CudaSequence sa;
  gpu.prefill(sa, a, nullptr, 128, 1);
  CudaSequence sb;
  ASSERT_TRUE(gpu.reserve(sb, 128));
  Batch m;
  m.sequences = {&sa, &sb};
  m.token_ids.push_back(42);
  m.seq_of_row.push_back(0);
  m.cache_pos.push_back(static_cast<std::int32_t>(sa.length));
  std::vector<std::int32_t> pt = {static_cast<std::int32_t>(sa.length + sa.rope_deltas)};
  for (std::size_t j = 0; j < b.size(); ++j) {
    m.token_ids.push_back(b[j]);
    m.seq_of_row.push_back(1);
    m.cache_pos.push_back(static_cast<std::int32_t>(j));
    pt.push_back(static_cast<std::int32_t>(j));
  }
  for (int r = 0; r < 3; ++r) m.positions.insert(m.positions.end(), pt.begin(), pt.end());
  m.logits_rows = {0, static_cast<std::int32_t>(m.token_ids.size() - 1)};
  const ops::Matrix got = gpu.forward(m);
  auto s1 = cpu.new_session(128);
  cpu.prefill(s1, a, nullptr, 1);
  const ops::Matrix ra = cpu.decode(s1, 42);
  auto s2 = cpu.new_session(128);
  const ops::Matrix rb = cpu.prefill(s2, b, nullptr, 1);
  for (int i = 0; i < 2; ++i) {
    ops::Matrix row(1, got.cols);
    std::copy(got.row(i), got.row(i) + got.cols, row.row(0));
    EXPECT_LE(rel_error(row, i == 0 ? ra : rb), 1e-2) << (i == 0 ? "decode row" : "prefill chunk");
    EXPECT_EQ(argmax_row(row, 0), argmax_row(i == 0 ? ra : rb, 0));
  }
  gpu.release(sa);
  gpu.release(sb);
}

// Decode steps replay captured CUDA graphs (CudaOptions::cuda_graphs): the same kernels on the same inputs as
// eager launches, so the logits must agree to float rounding, also after a larger forward has moved the
// workspaces (the stale graph must be re-captured, not replayed with old addresses).
TEST(CudaModel, CudaGraphDecodeEqualsEager) {
  VLQ_REQUIRE_GPU();
  const auto cpu = quantized_lm_model();
  CudaOptions on, off;
  off.cuda_graphs = false;
  Qwen2_5_VLCuda g(cpu, on), e(cpu, off);
  const auto ids = random_text(21, 5);
  CudaSequence qg, qe;
  g.prefill(qg, ids, nullptr, 200, 1);
  const ops::Matrix first = e.prefill(qe, ids, nullptr, 200, 1);
  std::int32_t tok = argmax_row(first, first.rows - 1);
  for (int i = 0; i < 14; ++i) {
    if (i == 7) {  // a long prefill of another sequence grows every workspace
      CudaSequence other;
      g.prefill(other, random_text(150, 9), nullptr, 160, 1);
      g.release(other);
    }
    const ops::Matrix a = g.decode(qg, tok);
    const ops::Matrix b = e.decode(qe, tok);
    EXPECT_LE(rel_error(a, b), 1e-6) << "decode step " << i;
    tok = argmax_row(b, 0);
  }
  g.release(qg);
  e.release(qe);
}

// Greedy decoding with a repetition penalty (Qwen's generation_config: 1.05) on the device: forward_greedy's
// penalized argmax equals ops::apply_repetition_penalty + argmax over forward()'s logits, for rows with and
// without a penalty and histories with repeated ids; the penalty changes some argmax (else the test proves
// nothing).
TEST(CudaModel, RepetitionPenaltyOnDeviceEqualsCpuSampling) {
  VLQ_REQUIRE_GPU();
  const auto cpu = quantized_lm_model();
  Qwen2_5_VLCuda g(cpu);
  std::vector<CudaSequence> seqs(4);
  std::vector<std::vector<std::int32_t>> hist(4);
  Batch b;
  for (int i = 0; i < 4; ++i) {
    const auto ids = random_text(30 + 7 * i, 40 + i);
    g.prefill(seqs[i], ids, nullptr, 80, 1);
    hist[i] = ids;
    hist[i].insert(hist[i].end(), ids.begin(), ids.begin() + 5);  // repeated ids
    const auto p = static_cast<std::int32_t>(seqs[i].length + seqs[i].rope_deltas);
    b.token_ids.push_back(ids[3]);
    b.positions.insert(b.positions.end(), {p});
    b.seq_of_row.push_back(i);
    b.cache_pos.push_back(static_cast<std::int32_t>(seqs[i].length));
    b.sequences.push_back(&seqs[i]);
    b.logits_rows.push_back(i);
  }
  // positions are [3, T]: the same decode position in all three rows
  const std::vector<std::int32_t> p1 = b.positions;
  b.positions.clear();
  for (int r = 0; r < 3; ++r) b.positions.insert(b.positions.end(), p1.begin(), p1.end());
  const std::vector<std::int32_t> plain0 = g.forward_greedy(b);
  for (int i = 0; i < 4; ++i) hist[i].push_back(plain0[i]);  // the unpenalized winner is in every history
  for (const float penalty : {1.05f, 3.0f}) {
    SCOPED_TRACE("penalty " + std::to_string(penalty));
    RowPenalties pen;
    pen.offsets.push_back(0);
    for (int i = 0; i < 4; ++i) {
      pen.penalty.push_back(i == 2 ? 1.0f : penalty);
      if (i != 2) pen.history.insert(pen.history.end(), hist[i].begin(), hist[i].end());
      pen.offsets.push_back(static_cast<std::int32_t>(pen.history.size()));
    }
    ops::Matrix logits = g.forward(b);
    const std::vector<std::int32_t> plain = g.forward_greedy(b);
    const std::vector<std::int32_t> got = g.forward_greedy(b, &pen);
    int changed = 0;
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(plain[i], argmax_row(logits, i));
      if (i != 2) ops::apply_repetition_penalty(logits.row(i), logits.cols, hist[i], penalty);
      EXPECT_EQ(got[i], argmax_row(logits, i)) << "row " << i;
      changed += got[i] != plain[i];
    }
    if (penalty == 3.0f) EXPECT_GT(changed, 0) << "a strong penalty on the argmax token must move some argmax";
  }
  for (auto& q : seqs) g.release(q);
}

TEST(CudaModel, BadBatchIsAUsageError) {
  VLQ_REQUIRE_GPU();
  const auto cpu = model::Qwen2_5_VL::load(kModel);
  Qwen2_5_VLCuda gpu(cpu);
  CudaSequence s;
  ASSERT_TRUE(gpu.reserve(s, 16));
  Batch b;
  b.sequences = {&s};
  b.token_ids = {1};
  b.positions = {0, 0, 0};
  b.seq_of_row = {0};
  b.cache_pos = {16};  // outside the one block
  EXPECT_THROW(gpu.forward(b), UsageError);
  b.cache_pos = {0};
  b.token_ids = {999999};
  EXPECT_THROW(gpu.forward(b), UsageError);
}

}  // namespace
}  // namespace vlq::model_cuda
