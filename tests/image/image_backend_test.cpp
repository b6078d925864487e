// Real photos (JPEG/PNG at several sizes, one- and multi-image calls) through both image processor backends
// against transformers' Qwen2VLImageProcessor (torchvision, AutoProcessor's default) and
// Qwen2VLImageProcessorPil: decode, resized image, pixel_values bit-exact. Goldens:
// tests/data/golden/image_processor/ (tools/make_image_golden.py --backends).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "image/image_test_util.h"
#include "vlq/image/image_processor.h"
#include "vlq/io/safetensors.h"

using namespace vlq::image;
using namespace vlq_test_image;

namespace {

const std::filesystem::path kDir = std::filesystem::path(VLQ_SOURCE_DIR) / "tests/data/golden/image_processor";

const nlohmann::json& backend_golden() {
  static const nlohmann::json j = [] {
    std::ifstream in(kDir / "golden.json");
    return nlohmann::json::parse(in);
  }();
  return j;
}

ImageProcessorParams params_for(const nlohmann::json& c, ResizeBackend backend) {
  ImageProcessorParams p;
  p.min_pixels = c["min_pixels"];
  p.max_pixels = c["max_pixels"];
  p.reject_smaller_than_factor = false;  // transformers 5.x
  p.backend = backend;
  return p;
}

std::vector<RgbImage> load_all(const nlohmann::json& files) {
  std::vector<RgbImage> v;
  for (const auto& f : files) v.push_back(load_image(kDir / f.get<std::string>()));
  return v;
}

// Checks one processor call of golden.json against preprocess_images with `backend`.
void check_case(const nlohmann::json& c, ResizeBackend backend) {
  const nlohmann::json& g = c[resize_backend_name(backend)];
  const std::vector<RgbImage> imgs = load_all(c["files"]);
  const ImageProcessorParams p = params_for(c, backend);
  const ProcessedImages r = preprocess_images(imgs, p);
  ASSERT_EQ(r.grid_thw.size(), imgs.size());
  for (std::size_t i = 0; i < imgs.size(); ++i) {
    for (int k = 0; k < 3; ++k) EXPECT_EQ(r.grid_thw[i][k], g["grid_thw"][i][k].get<std::int64_t>());
    const RgbImage resized = backend == ResizeBackend::kPil
                                 ? resize_bicubic(imgs[i], r.resized[i].width, r.resized[i].height)
                                 : resize_bicubic_torchvision(imgs[i], r.resized[i].width, r.resized[i].height);
    EXPECT_EQ(crc32(resized.pixels), g["resized_crc32"][i].get<std::uint32_t>()) << "resized image " << i;
  }
  ASSERT_EQ(r.n_patches, g["n_patches"].get<std::int64_t>());
  for (const auto& s : g["samples"]) {
    const auto idx = s[0].get<std::size_t>();
    ASSERT_LT(idx, r.pixel_values.size());
    EXPECT_EQ(r.pixel_values[idx], static_cast<float>(s[1].get<double>())) << "pixel_values[" << idx << "]";
  }
  EXPECT_EQ(crc32(r.pixel_values), g["pv_crc32"].get<std::uint32_t>()) << "pixel_values not bit-exact";
  double sum = 0;
  for (float v : r.pixel_values) sum += v;
  EXPECT_NEAR(sum, g["pv_sum"].get<double>(), 1e-6 * std::max(1.0, std::abs(sum)));
  if (g.contains("raw")) {
    const auto f = vlq::io::SafetensorsFile::open(kDir / "pixel_values.safetensors");
    const auto* info = f.find(g["raw"].get<std::string>());
    ASSERT_NE(info, nullptr);
    const auto bytes = f.data(*info);
    ASSERT_EQ(bytes.size(), r.pixel_values.size() * sizeof(float));
    std::vector<float> want(r.pixel_values.size());
    std::memcpy(want.data(), bytes.data(), bytes.size());
    for (std::size_t i = 0; i < want.size(); ++i) ASSERT_EQ(r.pixel_values[i], want[i]) << "pixel_values[" << i << "]";
  }
}

std::string case_name(const nlohmann::json& c) {
  std::string s;
  for (const auto& f : c["files"]) s += f.get<std::string>() + " ";
  return s + "[" + std::to_string(c["min_pixels"].get<std::int64_t>()) + ", " +
         std::to_string(c["max_pixels"].get<std::int64_t>()) + "]";
}

}  // namespace

TEST(ImageBackend, GoldenSaysAutoProcessorPicksTorchvision) {
  // What the generator found: the default class is the torchvision one (the PIL one is ...Pil).
  EXPECT_EQ(backend_golden()["auto_image_processor"].get<std::string>(), "Qwen2VLImageProcessor");
  EXPECT_EQ(ImageProcessorParams{}.backend, ResizeBackend::kTorchvision);
}

TEST(ImageBackend, PhotosDecodeLikePillowAndTorchvisionIo) {
  int n = 0;
  for (const auto& d : backend_golden()["decode"]) {
    const std::string file = d["file"];
    SCOPED_TRACE(file);
    const RgbImage img = load_image(kDir / file);
    EXPECT_EQ(img.width, d["width"].get<std::int64_t>());
    EXPECT_EQ(img.height, d["height"].get<std::int64_t>());
    EXPECT_EQ(crc32(img.pixels), d["pil_crc32"].get<std::uint32_t>()) << "differs from PIL's decode";
    EXPECT_EQ(crc32(img.pixels), d["torchvision_io_crc32"].get<std::uint32_t>()) << "differs from torchvision.io";
    ++n;
  }
  EXPECT_GE(n, 7);
}

// Every processor call of golden.json through `backend`; returns how many were checked.
int check_all_cases(ResizeBackend backend) {
  int n = 0;
  for (const auto& c : backend_golden()["cases"]) {
    SCOPED_TRACE(case_name(c) + " " + resize_backend_name(backend));
    check_case(c, backend);
    ++n;
  }
  return n;
}

TEST(ImageBackend, TorchvisionBackendMatchesDefaultProcessor) { EXPECT_GE(check_all_cases(ResizeBackend::kTorchvision), 18); }

TEST(ImageBackend, PilBackendMatchesPilProcessor) { EXPECT_GE(check_all_cases(ResizeBackend::kPil), 18); }

TEST(ImageBackend, BackendsDifferOnResizedPhotos) {
  // The two processors disagree by whole 8-bit steps once an image is resized; vlq must reproduce that gap.
  int differing = 0;
  for (const auto& c : backend_golden()["cases"]) {
    const std::vector<RgbImage> imgs = load_all(c["files"]);
    const ProcessedImages tv = preprocess_images(imgs, params_for(c, ResizeBackend::kTorchvision));
    const ProcessedImages pil = preprocess_images(imgs, params_for(c, ResizeBackend::kPil));
    ASSERT_EQ(tv.pixel_values.size(), pil.pixel_values.size());
    double max_diff = 0;
    for (std::size_t i = 0; i < tv.pixel_values.size(); ++i)
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(tv.pixel_values[i] - pil.pixel_values[i])));
    EXPECT_NEAR(max_diff, c["pil_vs_torchvision_max_abs"].get<double>(), 1e-6) << case_name(c);
    differing += max_diff > 1e-2;
  }
  EXPECT_GE(differing, 10);
}
