// image::plan_preprocess: running its taps, pass order, value table and patch layout with plain loops (what
// the device kernels do) reproduces preprocess_image's pixel_values exactly, for both backends, both Pillow
// pass orders, up/downscales, one axis only and no resize; its errors are preprocess_image's.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "vlq/core/error.h"
#include "vlq/image/image_processor.h"

namespace vlq::image {
namespace {

RgbImage noisy_image(int w, int h, std::uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> noise(-60, 60);
  RgbImage img{w, h, std::vector<std::uint8_t>(static_cast<std::size_t>(w) * h * 3)};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        img.pixels[(static_cast<std::size_t>(y) * w + x) * 3 + c] =
            static_cast<std::uint8_t>(std::clamp((x * 7 + y * 3 * (c + 1)) % 256 + noise(g), 0, 255));
  return img;
}

std::uint8_t clip(std::int32_t v, int p) {
  const std::int32_t s = v >> p;
  return static_cast<std::uint8_t>(s < 0 ? 0 : s > 255 ? 255 : s);
}

RgbImage run_pass(const RgbImage& in, const ResizeTaps& t, bool horizontal, std::int64_t out_size) {
  RgbImage out{horizontal ? out_size : in.width, horizontal ? in.height : out_size, {}};
  out.pixels.resize(static_cast<std::size_t>(out.width * out.height * 3));
  for (std::int64_t y = 0; y < out.height; ++y)
    for (std::int64_t x = 0; x < out.width; ++x)
      for (int c = 0; c < 3; ++c) {
        const std::int64_t i = horizontal ? x : y;
        std::int32_t acc = std::int32_t{1} << (t.precision - 1);
        for (int j = 0; j < t.bounds[2 * i + 1]; ++j) {
          const std::int64_t sx = horizontal ? t.bounds[2 * i] + j : x, sy = horizontal ? y : t.bounds[2 * i] + j;
          acc += in.pixels[static_cast<std::size_t>((sy * in.width + sx) * 3 + c)] * t.kk[i * t.ksize + j];
        }
        out.pixels[static_cast<std::size_t>((y * out.width + x) * 3 + c)] = clip(acc, t.precision);
      }
  return out;
}

std::vector<float> apply(const RgbImage& img, const PreprocessPlan& p) {
  RgbImage cur = img;
  for (int k = 0; k < 2; ++k) {
    const bool horizontal = (k == 0) != p.vertical_first;
    const ResizeTaps& t = horizontal ? p.horizontal : p.vertical;
    if (t.ksize) cur = run_pass(cur, t, horizontal, horizontal ? p.out_width : p.out_height);
  }
  EXPECT_EQ(cur.width, p.out_width);
  EXPECT_EQ(cur.height, p.out_height);
  const std::int64_t P = p.patch_size, M = p.merge_size, T = p.temporal_patch_size, pd = p.patch_dim();
  const std::int64_t gw = p.grid_thw[2] / M;
  std::vector<float> out(static_cast<std::size_t>(p.n_patches() * pd));
  for (std::int64_t r = 0; r < p.n_patches(); ++r)
    for (std::int64_t k = 0; k < pd; ++k) {
      const std::int64_t unit = r / (M * M), within = r % (M * M);
      const std::int64_t c = k / (T * P * P), rem = k % (P * P);
      const std::int64_t y = ((unit / gw) * M + within / M) * P + rem / P;
      const std::int64_t x = ((unit % gw) * M + within % M) * P + rem % P;
      out[static_cast<std::size_t>(r * pd + k)] =
          p.value[c][cur.pixels[static_cast<std::size_t>((y * cur.width + x) * 3 + c)]];
    }
  return out;
}

TEST(PreprocessPlan, StepsReproducePreprocessImage) {
  struct Case { int w, h; ResizeBackend b; PillowCompat pil; std::int64_t max_pixels; bool resize; };
  const Case cases[] = {
      {640, 427, ResizeBackend::kPil, PillowCompat::kPillow13, 12845056, true},  // vertical first
      {640, 427, ResizeBackend::kPil, PillowCompat::kPillow9, 12845056, true},
      {640, 427, ResizeBackend::kTorchvision, PillowCompat::kPillow13, 12845056, true},
      {900, 700, ResizeBackend::kTorchvision, PillowCompat::kPillow13, 200704, true},  // downscale
      {900, 700, ResizeBackend::kPil, PillowCompat::kPillow13, 200704, true},
      {300, 56, ResizeBackend::kTorchvision, PillowCompat::kPillow13, 12845056, true},  // width only
      {56, 300, ResizeBackend::kPil, PillowCompat::kPillow13, 12845056, true},          // height only
      {50, 30, ResizeBackend::kTorchvision, PillowCompat::kPillow13, 12845056, true},   // up to min_pixels
      {112, 84, ResizeBackend::kPil, PillowCompat::kPillow13, 12845056, false},         // no resize
  };
  std::uint32_t seed = 7;
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.w) + "x" + std::to_string(c.h) + " " + resize_backend_name(c.b));
    ImageProcessorParams params;
    params.backend = c.b;
    params.pillow = c.pil;
    params.max_pixels = c.max_pixels;
    params.do_resize = c.resize;
    params.reject_smaller_than_factor = false;
    const RgbImage img = noisy_image(c.w, c.h, seed++);
    const PreprocessPlan plan = plan_preprocess(img, params);
    const ProcessedImages ref = preprocess_image(img, params);
    ASSERT_EQ(plan.n_patches(), ref.n_patches);
    EXPECT_EQ(plan.grid_thw, ref.grid_thw[0]);
    const std::vector<float> got = apply(img, plan);
    ASSERT_EQ(got.size(), ref.pixel_values.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i) bad += got[i] != ref.pixel_values[i];
    EXPECT_EQ(bad, 0u);
  }
}

TEST(PreprocessPlan, PlanImagesTotalsAndErrors) {
  const std::vector<RgbImage> imgs = {noisy_image(64, 64, 1), noisy_image(100, 40, 2)};
  const RawImages raw = plan_images(imgs);
  const ProcessedImages ref = preprocess_images(imgs);
  EXPECT_EQ(raw.n_patches, ref.n_patches);
  EXPECT_EQ(raw.patch_dim, ref.patch_dim);
  EXPECT_EQ(raw.grid_thw, ref.grid_thw);
  ASSERT_EQ(raw.images.size(), 2u);
  EXPECT_EQ(raw.images[1], &imgs[1]);
  // The same refusals as preprocess_image: no resize of a size that is not a multiple of 28; a broken image.
  ImageProcessorParams p;
  p.do_resize = false;
  EXPECT_THROW(plan_preprocess(noisy_image(50, 30, 3), p), UnsupportedError);
  RgbImage broken{10, 10, std::vector<std::uint8_t>(5)};
  EXPECT_THROW(plan_preprocess(broken), UsageError);
  EXPECT_THROW(preprocess_image(broken), UsageError);
}

}  // namespace
}  // namespace vlq::image
