// Tests for Qwen2-VL preprocessing: smart_resize, Pillow-exact and torchvision-exact bicubic resize,
// pixel_values/grid_thw vs transformers' Qwen2VLImageProcessorPil and its default (torchvision)
// Qwen2VLImageProcessor (goldens by tools/make_image_golden.py), patch layout, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "image/image_test_util.h"
#include "vlq/core/error.h"
#include "vlq/image/image_processor.h"

using namespace vlq::image;
using vlq::formats::PreprocessorConfig;
using vlq::formats::load_preprocessor_config;
using namespace vlq_test_image;

namespace {

RgbImage load_composite(const std::string& file, PillowCompat p = PillowCompat::kPillow13) {
  ImageDecodeOptions o;
  o.alpha = AlphaMode::kCompositeOnWhite;
  o.pillow = p;
  return load_image(kImages / file, o);
}

ImageProcessorParams hf5_params(std::int64_t min_pixels, std::int64_t max_pixels,
                                ResizeBackend backend = ResizeBackend::kPil) {
  ImageProcessorParams p;
  p.backend = backend;
  p.min_pixels = min_pixels;
  p.max_pixels = max_pixels;
  p.reject_smaller_than_factor = false;  // the goldens come from transformers 5.x
  return p;
}

}  // namespace

TEST(ImageProcessor, SmartResizeMatchesTransformers5And4) {
  int n = 0;
  for (const auto& e : golden()["smart_resize"]) {
    const std::int64_t h = e["height"], w = e["width"], f = e["factor"], mn = e["min_pixels"], mx = e["max_pixels"];
    SCOPED_TRACE(testing::Message() << h << "x" << w << " f=" << f << " [" << mn << ", " << mx << "]");
    // transformers 5.x: no minimum side.
    if (e["v5"].is_string()) {
      EXPECT_THROW(smart_resize(h, w, f, mn, mx, false), vlq::UnsupportedError);
    } else {
      const ResizeTarget t = smart_resize(h, w, f, mn, mx, false);
      EXPECT_EQ(t.height, e["v5"][0].get<std::int64_t>());
      EXPECT_EQ(t.width, e["v5"][1].get<std::int64_t>());
    }
    // transformers 4.x: raises below the factor; vlq clamps a floor of 0 to the factor (4.x would then
    // fail in the resize), so compare only the non-zero results.
    if (e["v4"].is_string()) {
      EXPECT_THROW(smart_resize(h, w, f, mn, mx, true), vlq::UnsupportedError);
    } else if (e["v4"][0] != 0 && e["v4"][1] != 0) {
      const ResizeTarget t = smart_resize(h, w, f, mn, mx, true);
      EXPECT_EQ(t.height, e["v4"][0].get<std::int64_t>());
      EXPECT_EQ(t.width, e["v4"][1].get<std::int64_t>());
    }
    ++n;
  }
  EXPECT_GE(n, 100);
}

TEST(ImageProcessor, SmartResizeDocExamples) {
  // qwen2_5_vl.md §2.2: Python round half to even, 640x480 (W x H) -> 644 x 476.
  const ResizeTarget t = smart_resize(480, 640, 28, 3136, 12845056);
  EXPECT_EQ(t.height, 476);
  EXPECT_EQ(t.width, 644);
  EXPECT_EQ(smart_resize(42, 42, 28, 1, 1 << 30).height, 56);
  EXPECT_EQ(smart_resize(70, 70, 28, 1, 1 << 30).height, 56);
  EXPECT_EQ(smart_resize(98, 98, 28, 1, 1 << 30).height, 112);
  EXPECT_EQ(smart_resize(126, 126, 28, 1, 1 << 30).height, 112);
  const ResizeTarget big = smart_resize(3024, 4032, 28, 3136, 12845056);
  EXPECT_EQ(big.height, 3024);
  EXPECT_EQ(big.width, 4032);
  const ResizeTarget capped = smart_resize(3024, 4032, 28, 3136, 1003520);
  EXPECT_EQ(capped.height, 840);
  EXPECT_EQ(capped.width, 1148);
}

TEST(ImageProcessor, SmartResizeErrors) {
  const auto small = [] { smart_resize(20, 20, 28, 3136, 12845056, true); };
  EXPECT_THROW(small(), vlq::UnsupportedError);
  try {
    small();
  } catch (const vlq::UnsupportedError& e) {
    EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos) << e.what();
  }
  EXPECT_THROW(smart_resize(28, 5601, 28, 3136, 12845056, false), vlq::UnsupportedError);  // ratio 200.04
  EXPECT_NO_THROW(smart_resize(28, 5600, 28, 3136, 12845056, false));                      // ratio 200
  EXPECT_THROW(smart_resize(0, 5, 28, 3136, 12845056), vlq::UsageError);
}

namespace {
void check_resize_goldens(PillowCompat pillow) {
  const bool p9 = pillow == PillowCompat::kPillow9;
  for (const auto& e : golden()["resize"]) {
    const std::string file = e["file"];
    const std::int64_t w = e["width"], h = e["height"];
    SCOPED_TRACE(testing::Message() << file << " -> " << w << "x" << h << (p9 ? " (Pillow 9)" : ""));
    const RgbImage src = load_composite(file, pillow);
    const RgbImage out = resize_bicubic(src, w, h, pillow);
    ASSERT_EQ(out.width, w);
    ASSERT_EQ(out.height, h);
    if (!p9 && e.contains("raw")) {
      const auto want = read_bytes(kImages / e["raw"].get<std::string>());
      EXPECT_EQ(out.pixels, want) << first_diff(out.pixels, want, w);
    }
    EXPECT_EQ(crc32(out.pixels), e[p9 ? "crc32_pillow9" : "crc32"].get<std::uint32_t>());
  }
}
}  // namespace

TEST(ImageProcessor, BicubicResizeBitExactVsPillow13) { check_resize_goldens(PillowCompat::kPillow13); }

TEST(ImageProcessor, BicubicResizeBitExactVsPillow9) { check_resize_goldens(PillowCompat::kPillow9); }

TEST(ImageProcessor, BicubicResizeBitExactVsTorchvision) {
  int n = 0;
  for (const auto& e : golden()["resize_tv"]) {
    if (e.contains("error")) continue;  // torch's own kernel asserts on a 1x1 output
    const std::string file = e["file"];
    const std::int64_t w = e["width"], h = e["height"];
    SCOPED_TRACE(testing::Message() << file << " -> " << w << "x" << h << " (torchvision)");
    const RgbImage out = resize_bicubic_torchvision(load_composite(file), w, h);
    ASSERT_EQ(out.width, w);
    ASSERT_EQ(out.height, h);
    EXPECT_EQ(crc32(out.pixels), e["crc32"].get<std::uint32_t>());
    ++n;
  }
  EXPECT_GE(n, 15);
}

TEST(ImageProcessor, PixelValuesMatchTransformersDefaultProcessor) {
  int n = 0;
  for (const auto& e : golden()["process"]) {
    const std::string file = e["file"];
    const std::int64_t mn = e["min_pixels"], mx = e["max_pixels"];
    SCOPED_TRACE(testing::Message() << file << " [" << mn << ", " << mx << "] (torchvision)");
    const RgbImage img = load_composite(file);
    const ImageProcessorParams p = hf5_params(mn, mx, ResizeBackend::kTorchvision);
    if (e.contains("tv_error") || e.contains("error")) {  // "error": the PIL call failed, tv_* not made
      EXPECT_THROW(preprocess_image(img, p), vlq::UnsupportedError);
      continue;
    }
    const ProcessedImages r = preprocess_image(img, p);
    ASSERT_EQ(r.grid_thw.size(), 1u);
    for (int k = 0; k < 3; ++k) EXPECT_EQ(r.grid_thw[0][k], e["tv_grid_thw"][k].get<std::int64_t>());
    const RgbImage resized = resize_bicubic_torchvision(img, r.resized[0].width, r.resized[0].height);
    EXPECT_EQ(crc32(resized.pixels), e["tv_resized_crc32"].get<std::uint32_t>());
    EXPECT_EQ(crc32(r.pixel_values), e["tv_pv_crc32"].get<std::uint32_t>()) << "pixel_values not bit-exact";
    double sum = 0;
    for (float v : r.pixel_values) sum += v;
    EXPECT_NEAR(sum, e["tv_pv_sum"].get<double>(), 1e-6 * std::max(1.0, std::abs(sum)));
    ++n;
  }
  EXPECT_GE(n, 30);
}

TEST(ImageProcessor, PixelValuesMatchTransformersSlowProcessor) {
  int n = 0, with_raw = 0;
  for (const auto& e : golden()["process"]) {
    const std::string file = e["file"];
    const std::int64_t mn = e["min_pixels"], mx = e["max_pixels"];
    SCOPED_TRACE(testing::Message() << file << " [" << mn << ", " << mx << "]");
    const RgbImage img = load_composite(file);
    const ImageProcessorParams p = hf5_params(mn, mx);
    if (e.contains("error")) {
      EXPECT_THROW(preprocess_image(img, p), vlq::UnsupportedError);
      continue;
    }
    const ProcessedImages r = preprocess_image(img, p);
    ASSERT_EQ(r.grid_thw.size(), 1u);
    EXPECT_EQ(r.grid_thw[0][0], e["grid_thw"][0].get<std::int64_t>());
    EXPECT_EQ(r.grid_thw[0][1], e["grid_thw"][1].get<std::int64_t>());
    EXPECT_EQ(r.grid_thw[0][2], e["grid_thw"][2].get<std::int64_t>());
    EXPECT_EQ(r.n_patches, e["n_patches"].get<std::int64_t>());
    EXPECT_EQ(r.patch_dim, 1176);
    EXPECT_EQ(r.resized[0].height, e["resized_height"].get<std::int64_t>());
    EXPECT_EQ(r.resized[0].width, e["resized_width"].get<std::int64_t>());
    ASSERT_EQ(r.pixel_values.size(), static_cast<std::size_t>(r.n_patches * r.patch_dim));
    // The resized uint8 image (Pillow 13 and Pillow 9 pass orders).
    for (PillowCompat pc : {PillowCompat::kPillow13, PillowCompat::kPillow9}) {
      const bool p9 = pc == PillowCompat::kPillow9;
      const RgbImage src = p9 ? load_composite(file, pc) : img;
      const RgbImage resized = resize_bicubic(src, r.resized[0].width, r.resized[0].height, pc);
      EXPECT_EQ(crc32(resized.pixels), e[p9 ? "resized_crc32_pillow9" : "resized_crc32"].get<std::uint32_t>())
          << (p9 ? "Pillow 9" : "Pillow 13");
    }
    if (e.contains("pv_raw")) {
      const auto raw = read_bytes(kImages / e["pv_raw"].get<std::string>());
      ASSERT_EQ(raw.size(), r.pixel_values.size() * 4);
      std::vector<float> want(r.pixel_values.size());
      std::memcpy(want.data(), raw.data(), raw.size());
      double max_diff = 0;
      for (std::size_t i = 0; i < want.size(); ++i)
        max_diff = std::max(max_diff, std::abs(static_cast<double>(want[i]) - r.pixel_values[i]));
      EXPECT_LE(max_diff, 1e-6);
      EXPECT_EQ(std::memcmp(want.data(), r.pixel_values.data(), raw.size()), 0) << "not bit-exact";
      ++with_raw;
    }
    EXPECT_EQ(crc32(r.pixel_values), e["pv_crc32"].get<std::uint32_t>()) << "pixel_values not bit-exact";
    double sum = 0;
    for (float v : r.pixel_values) sum += v;
    EXPECT_NEAR(sum, e["pv_sum"].get<double>(), 1e-6 * std::max(1.0, std::abs(sum)));
    ++n;
  }
  EXPECT_GE(n, 30);
  EXPECT_GE(with_raw, 2);
}

TEST(ImageProcessor, PatchLayoutClosedForm) {
  // qwen2_5_vl.md §2.2 step 8, with rescale/normalize off so values are the raw bytes.
  for (std::int64_t M : {1, 2, 3})
    for (std::int64_t T : {1, 2, 3}) {
      ImageProcessorParams p;
      p.patch_size = 4;
      p.merge_size = M;
      p.temporal_patch_size = T;
      p.do_resize = false;
      p.do_rescale = false;
      p.do_normalize = false;
      RgbImage img;
      img.width = 4 * M * 3;
      img.height = 4 * M * 2;
      img.pixels.resize(img.width * img.height * 3);
      for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<std::uint8_t>(i * 7 + i / 251);
      const ProcessedImages r = preprocess_image(img, p);
      const std::int64_t P = 4, gh = 2, gw = 3;
      ASSERT_EQ(r.patch_dim, 3 * T * P * P);
      ASSERT_EQ(r.n_patches, gh * M * gw * M);
      EXPECT_EQ(image_token_count(r.grid_thw[0], M), gh * gw);
      for (std::int64_t bh = 0; bh < gh; ++bh)
        for (std::int64_t bw = 0; bw < gw; ++bw)
          for (std::int64_t mh = 0; mh < M; ++mh)
            for (std::int64_t mw = 0; mw < M; ++mw)
              for (std::int64_t c = 0; c < 3; ++c)
                for (std::int64_t tt = 0; tt < T; ++tt)
                  for (std::int64_t py = 0; py < P; ++py)
                    for (std::int64_t px = 0; px < P; ++px) {
                      const std::int64_t row = ((bh * gw + bw) * M + mh) * M + mw;
                      const std::int64_t col = ((c * T + tt) * P + py) * P + px;
                      const std::int64_t y = (bh * M + mh) * P + py, x = (bw * M + mw) * P + px;
                      ASSERT_EQ(r.pixel_values[row * r.patch_dim + col], img.pixels[(y * img.width + x) * 3 + c])
                          << "M=" << M << " T=" << T << " row " << row << " col " << col;
                    }
    }
}

TEST(ImageProcessor, DocWorkedExampleAndBatching) {
  RgbImage a;
  a.width = 640;
  a.height = 480;
  a.pixels.assign(640 * 480 * 3, 100);
  ImageProcessorParams pil;
  pil.backend = ResizeBackend::kPil;
  const ProcessedImages r = preprocess_image(a, pil);
  EXPECT_EQ(r.grid_thw[0], (std::array<std::int64_t, 3>{1, 34, 46}));
  EXPECT_EQ(r.n_patches, 1564);
  EXPECT_EQ(image_token_count(r.grid_thw[0], 2), 391);
  // Constant input: every value is the normalised constant of its channel (PIL processor arithmetic).
  const float want0 = (static_cast<float>(100.0 / 255.0) - 0.48145466f) / 0.26862954f;
  EXPECT_EQ(r.pixel_values[0], want0);
  // torchvision processor: rescale fused into the normalisation, (u8 - mean*255) / (std*255) in float32.
  const ProcessedImages rt = preprocess_image(a);
  EXPECT_EQ(rt.pixel_values[0], (100.0f - 0.48145466f * 255.0f) / (0.26862954f * 255.0f));

  const RgbImage b = load_composite("tiny_28x28.png");
  const RgbImage both[] = {b, a};
  const ProcessedImages rb = preprocess_images(both, pil);
  const ProcessedImages rb0 = preprocess_image(b, pil);
  ASSERT_EQ(rb.grid_thw.size(), 2u);
  EXPECT_EQ(rb.n_patches, rb0.n_patches + r.n_patches);
  EXPECT_TRUE(std::equal(rb0.pixel_values.begin(), rb0.pixel_values.end(), rb.pixel_values.begin()));
  EXPECT_TRUE(std::equal(r.pixel_values.begin(), r.pixel_values.end(),
                         rb.pixel_values.begin() + static_cast<std::ptrdiff_t>(rb0.pixel_values.size())));
}

TEST(ImageProcessor, ErrorsAreTyped) {
  const RgbImage small = load_composite("small_20x20.png");
  EXPECT_THROW(preprocess_image(small), vlq::UnsupportedError);  // 4.x rule (default)
  EXPECT_NO_THROW(preprocess_image(small, hf5_params(3136, 12845056)));
  EXPECT_THROW(preprocess_image(load_composite("extreme_6000x28.png")), vlq::UnsupportedError);
  ImageProcessorParams no_resize;
  no_resize.do_resize = false;
  EXPECT_THROW(preprocess_image(load_composite("rgba_29x57.png"), no_resize), vlq::UnsupportedError);
  ImageProcessorParams bad;
  bad.min_pixels = 100;
  bad.max_pixels = 10;
  EXPECT_THROW(preprocess_image(small, bad), vlq::ConfigError);
  bad = {};
  bad.image_std[1] = 0;
  EXPECT_THROW(preprocess_image(small, bad), vlq::ConfigError);
  bad = {};
  bad.patch_size = 0;
  EXPECT_THROW(preprocess_image(small, bad), vlq::ConfigError);
  RgbImage broken;
  broken.width = 3;
  broken.height = 3;
  EXPECT_THROW(resize_bicubic(broken, 2, 2), vlq::UsageError);
  EXPECT_THROW(resize_bicubic(small, 0, 2), vlq::UsageError);
  EXPECT_THROW(resize_bicubic_torchvision(broken, 2, 2), vlq::UsageError);
  EXPECT_THROW(resize_bicubic_torchvision(small, 2, 0), vlq::UsageError);
}

TEST(ImageProcessor, ResizeBackendNames) {
  EXPECT_STREQ(resize_backend_name(ResizeBackend::kTorchvision), "torchvision");
  EXPECT_STREQ(resize_backend_name(ResizeBackend::kPil), "pil");
  EXPECT_EQ(parse_resize_backend("torchvision"), ResizeBackend::kTorchvision);
  EXPECT_EQ(parse_resize_backend("pil"), ResizeBackend::kPil);
  EXPECT_EQ(ImageProcessorParams{}.backend, ResizeBackend::kTorchvision);
  try {
    parse_resize_backend("PIL", "--image-backend");
    ADD_FAILURE() << "no throw";
  } catch (const vlq::UsageError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("--image-backend"), std::string::npos) << m;
    EXPECT_NE(m.find("\"torchvision\" or \"pil\""), std::string::npos) << m;
  }
}

TEST(ImageProcessor, ParamsFromPreprocessorConfig) {
  // The tiny checkpoints carry the three preprocessor_config.json generations (min/max_pixels, size{}).
  const auto dir = std::filesystem::path(VLQ_SOURCE_DIR) / "tests/data/tiny";
  int n = 0;
  for (const char* ck : {"qwen2_5_vl-bf16-legacy", "qwen2_5_vl-bf16-hf452", "qwen2_5_vl-bf16-v5"}) {
    const auto path = dir / ck / "preprocessor_config.json";
    const PreprocessorConfig c = load_preprocessor_config(path);
    const ImageProcessorParams p = image_processor_params_from_config(c, path.string());
    EXPECT_EQ(p.min_pixels, c.min_pixels) << ck;
    EXPECT_EQ(p.max_pixels, c.max_pixels) << ck;
    EXPECT_EQ(p.patch_size * p.merge_size, 28) << ck;
    EXPECT_EQ(p.temporal_patch_size, 2) << ck;
    EXPECT_DOUBLE_EQ(p.image_std[2], 0.27577711) << ck;
    EXPECT_EQ(p.backend, ResizeBackend::kTorchvision) << ck << ": AutoProcessor's pick";
    ++n;
  }
  EXPECT_EQ(n, 3);
  PreprocessorConfig c;
  c.min_pixels = 3136;
  c.max_pixels = 12845056;
  c.resample = 2;
  EXPECT_THROW(image_processor_params_from_config(c), vlq::UnsupportedError);
  c.resample = 3;
  c.image_std = {1, 0, 1};
  EXPECT_THROW(image_processor_params_from_config(c), vlq::ConfigError);
}

TEST(ImageProcessor, ThreadCountDoesNotChangeResults) {
  const RgbImage img = load_composite("rocket.jpg");
  for (auto [w, h] : {std::pair{644, 420}, std::pair{1500, 900}, std::pair{300, 200}}) {
    const RgbImage one = resize_bicubic(img, w, h, PillowCompat::kPillow13, 1);
    for (int t : {0, 2, 3, 7}) EXPECT_EQ(resize_bicubic(img, w, h, PillowCompat::kPillow13, t).pixels, one.pixels);
    const RgbImage tv = resize_bicubic_torchvision(img, w, h, 1);
    for (int t : {0, 3}) EXPECT_EQ(resize_bicubic_torchvision(img, w, h, t).pixels, tv.pixels);
  }
  ImageProcessorParams p1, p3;
  p1.threads = 1;
  p3.threads = 3;
  p1.min_pixels = p3.min_pixels = 1003520;  // upscale: enough work to use threads
  const ProcessedImages a = preprocess_image(img, p1), b = preprocess_image(img, p3);
  EXPECT_EQ(a.grid_thw, b.grid_thw);
  EXPECT_TRUE(a.pixel_values == b.pixel_values);
}
