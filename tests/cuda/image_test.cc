// Device image preprocessing (vlq/cuda/image.h driven by image::plan_preprocess) against the CPU processor:
// the BF16 pixel rows must equal f32_to_bf16(preprocess_image(...).pixel_values) bit for bit, for both
// backends, both Pillow pass orders, up- and downscales, one axis only and no resize. Skips without a GPU.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "cuda_test_util.h"
#include "vlq/cuda/image.h"
#include "vlq/image/image_processor.h"

namespace vlq::cuda {
namespace {
using namespace test;

image::RgbImage random_image(int w, int h, std::mt19937& g) {
  image::RgbImage img{w, h, std::vector<std::uint8_t>(static_cast<std::size_t>(w) * h * 3)};
  // Smooth gradients plus noise: resize taps see both flat regions and 0/255 extremes (clipping).
  std::uniform_int_distribution<int> noise(-40, 40);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        const int v = (x * 255 / std::max(1, w - 1) + y * 97 / std::max(1, h - 1) * (c + 1)) % 256 + noise(g);
        img.pixels[(static_cast<std::size_t>(y) * w + x) * 3 + c] = static_cast<std::uint8_t>(std::clamp(v, 0, 255));
      }
  return img;
}

// Runs the plan's steps with the device ops (what model_cuda's stage_raw_pixels does) and returns the rows.
std::vector<std::uint16_t> device_rows(const image::RgbImage& img, const image::PreprocessPlan& p) {
  Stream s;
  DeviceBuffer src = to_device(img.pixels);
  Tensor cur = Tensor::contiguous(src.data(), DType::U8, {p.in_height, p.in_width, 3});
  DeviceBuffer tmp[2];
  std::vector<DeviceBuffer> taps;
  auto pass = [&](bool horizontal, int slot) {
    const image::ResizeTaps& t = horizontal ? p.horizontal : p.vertical;
    if (t.ksize == 0) return;
    taps.push_back(to_device(t.bounds));
    taps.push_back(to_device(t.kk));
    const std::int64_t h = horizontal ? cur.dim(0) : p.out_height, w = horizontal ? p.out_width : cur.dim(1);
    tmp[slot] = poisoned<std::uint8_t>(static_cast<std::size_t>(h * w * 3));
    const Tensor next = Tensor::contiguous(tmp[slot].data(), DType::U8, {h, w, 3});
    resize_pass_u8(cur, next, horizontal, taps[taps.size() - 2].as<std::int32_t>(), taps.back().as<std::int32_t>(),
                   t.ksize, t.precision, s.get());
    cur = next;
  };
  pass(!p.vertical_first, 0);
  pass(p.vertical_first, 1);
  std::vector<std::uint16_t> lut(3 * 256);
  for (int c = 0; c < 3; ++c)
    for (int u = 0; u < 256; ++u) lut[c * 256 + u] = f32_to_bf16(p.value[c][u]);
  DeviceBuffer dlut = to_device(lut);
  const std::size_t n = static_cast<std::size_t>(p.n_patches() * p.patch_dim());
  DeviceBuffer out = poisoned<std::uint16_t>(n);
  patchify_bf16(cur, dlut.as<std::uint16_t>(), static_cast<int>(p.patch_size), static_cast<int>(p.merge_size),
                static_cast<int>(p.temporal_patch_size),
                Tensor::contiguous(out.data(), DType::BF16, {p.n_patches(), p.patch_dim()}), s.get());
  s.sync();
  return to_host<std::uint16_t>(out, n);
}

TEST(CudaImage, DevicePreprocessEqualsCpuBits) {
  VLQ_REQUIRE_GPU();
  const std::uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  struct Case { int w, h; image::ResizeBackend backend; image::PillowCompat pillow; std::int64_t max_pixels; bool resize; };
  using B = image::ResizeBackend;
  using P = image::PillowCompat;
  const Case cases[] = {
      {1280, 720, B::kTorchvision, P::kPillow13, 12845056, true},  // the TTFT image: 1288x728 upscale
      {640, 427, B::kPil, P::kPillow13, 12845056, true},           // 644x420: Pillow 13 runs vertical first
      {640, 427, B::kPil, P::kPillow9, 12845056, true},            // the same, horizontal first
      {2000, 1500, B::kTorchvision, P::kPillow13, 1003520, true},  // downscale (antialiased taps)
      {2000, 1500, B::kPil, P::kPillow13, 1003520, true},
      {300, 56, B::kTorchvision, P::kPillow13, 12845056, true},    // width changes only (308x56)
      {56, 300, B::kPil, P::kPillow13, 12845056, true},            // height changes only
      {50, 30, B::kTorchvision, P::kPillow13, 12845056, true},     // small: scaled up to min_pixels
      {112, 84, B::kTorchvision, P::kPillow13, 12845056, false},   // do_resize = false
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.w) + "x" + std::to_string(c.h) + " " + image::resize_backend_name(c.backend));
    image::ImageProcessorParams params;
    params.backend = c.backend;
    params.pillow = c.pillow;
    params.max_pixels = c.max_pixels;
    params.do_resize = c.resize;
    params.reject_smaller_than_factor = false;
    const image::RgbImage img = random_image(c.w, c.h, g);
    const image::PreprocessPlan plan = image::plan_preprocess(img, params);
    const image::ProcessedImages ref = image::preprocess_image(img, params);
    ASSERT_EQ(plan.n_patches(), ref.n_patches);
    ASSERT_EQ(plan.patch_dim(), ref.patch_dim);
    EXPECT_EQ(plan.grid_thw, ref.grid_thw[0]);
    const std::vector<std::uint16_t> got = device_rows(img, plan);
    std::size_t bad = 0, first = got.size();
    for (std::size_t i = 0; i < got.size(); ++i)
      if (got[i] != f32_to_bf16(ref.pixel_values[i])) bad += 1, first = std::min(first, i);
    EXPECT_EQ(bad, 0u) << "first mismatch at element " << first << " of " << got.size();
  }
}

TEST(CudaImage, RefusesBadShapes) {
  VLQ_REQUIRE_GPU();
  DeviceBuffer b(64 * 64 * 3);
  const std::int32_t* none = nullptr;
  const Tensor img = Tensor::contiguous(b.data(), DType::U8, {64, 64, 3});
  // patchify: 64 is not a multiple of 28
  DeviceBuffer o(static_cast<std::size_t>(16 * 1176 * 2));
  EXPECT_THROW(patchify_bf16(img, reinterpret_cast<const std::uint16_t*>(b.data()), 14, 2, 2,
                             Tensor::contiguous(o.data(), DType::BF16, {16, 1176}), nullptr),
               UsageError);
  // resize: missing taps; horizontal output with another height
  EXPECT_THROW(resize_pass_u8(img, img, true, none, none, 4, 22, nullptr), UsageError);
  const Tensor wrong = Tensor::contiguous(b.data(), DType::U8, {32, 64, 3});
  DeviceBuffer t(1024);
  EXPECT_THROW(resize_pass_u8(img, wrong, true, t.as<std::int32_t>(), t.as<std::int32_t>(), 4, 22, nullptr), UsageError);
}

}  // namespace
}  // namespace vlq::cuda
