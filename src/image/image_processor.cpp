// Qwen2-VL image preprocessing: parameters, smart_resize, rescale/normalize (torchvision or PIL processor
// arithmetic), patchify. The resizes are in resize_pil.cpp / resize_torchvision.cpp. See
// include/vlq/image/image_processor.h.
#include "vlq/image/image_processor.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "image/resample.h"
#include "vlq/core/error.h"

namespace vlq::image {
namespace {

constexpr const char* kWhere = "image processor parameters";

// Python round() on a double: round half to even (nearbyint under the default FE_TONEAREST mode).
double py_round(double v) {
  const int old = std::fegetround();
  if (old != FE_TONEAREST) std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint(v);
  if (old != FE_TONEAREST) std::fesetround(old);
  return r;
}

}  // namespace

const char* resize_backend_name(ResizeBackend b) noexcept {
  return b == ResizeBackend::kPil ? "pil" : "torchvision";
}

ResizeBackend parse_resize_backend(std::string_view name, const std::string& where) {
  if (name == "torchvision") return ResizeBackend::kTorchvision;
  if (name == "pil") return ResizeBackend::kPil;
  throw UsageError({where, "unknown image resize backend", "\"torchvision\" or \"pil\"", std::string(name),
                    "torchvision = transformers' default Qwen2VLImageProcessor; pil = Qwen2VLImageProcessorPil "
                    "(use_fast=False in transformers 4.x)"});
}

void validate_image_processor_params(const ImageProcessorParams& p) {
  auto bad = [](std::string what, std::string expected, std::string found) {
    throw ConfigError({kWhere, std::move(what), std::move(expected), std::move(found),
                       "check preprocessor_config.json"});
  };
  if (p.patch_size < 1) bad("patch_size must be positive", ">= 1", fmt::format("{}", p.patch_size));
  if (p.merge_size < 1) bad("merge_size must be positive", ">= 1", fmt::format("{}", p.merge_size));
  if (p.temporal_patch_size < 1)
    bad("temporal_patch_size must be positive", ">= 1", fmt::format("{}", p.temporal_patch_size));
  if (p.min_pixels < 1 || p.max_pixels < 1)
    bad("min_pixels/max_pixels must be positive", ">= 1", fmt::format("{}/{}", p.min_pixels, p.max_pixels));
  if (p.min_pixels > p.max_pixels)
    bad("min_pixels exceeds max_pixels", "min_pixels <= max_pixels", fmt::format("{} > {}", p.min_pixels, p.max_pixels));
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(p.image_std[c]) || static_cast<float>(p.image_std[c]) == 0.0f)
      bad(fmt::format("image_std[{}] is zero or not finite", c), "a finite non-zero value",
          fmt::format("{}", p.image_std[c]));
    if (!std::isfinite(p.image_mean[c]))
      bad(fmt::format("image_mean[{}] is not finite", c), "a finite value", fmt::format("{}", p.image_mean[c]));
  }
  if (!std::isfinite(p.rescale_factor))
    bad("rescale_factor is not finite", "a finite value", fmt::format("{}", p.rescale_factor));
}

ImageProcessorParams image_processor_params_from_config(const formats::PreprocessorConfig& c, const std::string& file) {
  if (c.resample != 3)
    throw UnsupportedError({file + ": resample", "only BICUBIC resampling is implemented", "3 (PIL BICUBIC)",
                            fmt::format("{}", c.resample), "set \"resample\": 3 (the Qwen2-VL default)"});
  if (c.image_mean.size() != 3 || c.image_std.size() != 3)
    throw ConfigError({file, "image_mean/image_std must have 3 entries", "3 and 3",
                       fmt::format("{} and {}", c.image_mean.size(), c.image_std.size()), ""});
  ImageProcessorParams p;
  p.min_pixels = c.min_pixels;
  p.max_pixels = c.max_pixels;
  p.patch_size = c.patch_size;
  p.temporal_patch_size = c.temporal_patch_size;
  p.merge_size = c.merge_size;
  for (int i = 0; i < 3; ++i) {
    p.image_mean[i] = c.image_mean[i];
    p.image_std[i] = c.image_std[i];
  }
  p.rescale_factor = c.rescale_factor;
  p.do_resize = c.do_resize;
  p.do_rescale = c.do_rescale;
  p.do_normalize = c.do_normalize;
  try {
    validate_image_processor_params(p);
  } catch (const ConfigError& e) {
    ErrorInfo info = e.info();
    info.where = file;
    throw ConfigError(std::move(info));
  }
  return p;
}

ResizeTarget smart_resize(std::int64_t height, std::int64_t width, std::int64_t factor, std::int64_t min_pixels,
                          std::int64_t max_pixels, bool reject_smaller_than_factor) {
  if (height < 1 || width < 1 || factor < 1)
    throw UsageError({"smart_resize", "sizes must be positive", "height, width, factor >= 1",
                      fmt::format("height {}, width {}, factor {}", height, width, factor), ""});
  const std::string where = fmt::format("image {}x{} (width x height)", width, height);
  if (reject_smaller_than_factor && (height < factor || width < factor))
    throw UnsupportedError({where, "image is too small for the vision encoder",
                            fmt::format("height and width >= {} (patch_size*merge_size)", factor),
                            fmt::format("height {}, width {}", height, width),
                            "upscale the image (transformers 4.x raises here; 5.x scales it up to min_pixels)"});
  const double ratio = static_cast<double>(std::max(height, width)) / static_cast<double>(std::min(height, width));
  if (ratio > 200)
    throw UnsupportedError({where, "absolute aspect ratio must be smaller than 200", "max(h,w)/min(h,w) <= 200",
                            fmt::format("{}", ratio), "crop or pad the image to a less extreme aspect ratio"});
  const double h = static_cast<double>(height), w = static_cast<double>(width), f = static_cast<double>(factor);
  std::int64_t h_bar = static_cast<std::int64_t>(py_round(h / f)) * factor;
  std::int64_t w_bar = static_cast<std::int64_t>(py_round(w / f)) * factor;
  // Python computes height*width exactly as ints; images are < 2^53 pixels so the double is exact too.
  const double hw = static_cast<double>(height * width);
  if (h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt(hw / static_cast<double>(max_pixels));
    h_bar = std::max(factor, static_cast<std::int64_t>(std::floor(h / beta / f)) * factor);
    w_bar = std::max(factor, static_cast<std::int64_t>(std::floor(w / beta / f)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / hw);
    h_bar = static_cast<std::int64_t>(std::ceil(h * beta / f)) * factor;
    w_bar = static_cast<std::int64_t>(std::ceil(w * beta / f)) * factor;
  }
  return {h_bar, w_bar};
}

std::int64_t image_token_count(const std::array<std::int64_t, 3>& g, std::int64_t merge_size) {
  return g[0] * g[1] * g[2] / (merge_size * merge_size);
}

namespace {

// The size the processor patchifies: the smart_resize target, or (do_resize false) the image's own size, which
// must then be a multiple of patch_size*merge_size (UnsupportedError).
ResizeTarget processor_target(const RgbImage& image, const ImageProcessorParams& p) {
  const std::int64_t factor = p.patch_size * p.merge_size;
  if (!p.do_resize) {
    if (image.height % factor != 0 || image.width % factor != 0)
      throw UnsupportedError({fmt::format("image {}x{} (width x height)", image.width, image.height),
                              "with do_resize=false the size must be a multiple of patch_size*merge_size",
                              fmt::format("multiples of {}", factor),
                              fmt::format("{}x{}", image.width, image.height), "enable do_resize"});
    return {image.height, image.width};
  }
  return smart_resize(image.height, image.width, factor, p.min_pixels, p.max_pixels, p.reject_smaller_than_factor);
}

// The image the processor patchifies: `image` itself, or the smart_resize target made with the configured
// backend in `storage`.
const RgbImage& resize_for_processor(const RgbImage& image, const ImageProcessorParams& p, RgbImage& storage) {
  const ResizeTarget t = processor_target(image, p);
  if (t.height == image.height && t.width == image.width) return image;
  storage = p.backend == ResizeBackend::kPil ? resize_bicubic(image, t.width, t.height, p.pillow, p.threads)
                                             : resize_bicubic_torchvision(image, t.width, t.height, p.threads);
  return storage;
}

// Per-channel lookup table [3][256]: every uint8 value goes through the same float32 ops.
// PIL processor: rescale (float64 multiply, stored as float32), then (x - mean) / std in float32.
// torchvision processor: rescale and normalize fused, mean' = f32(mean) * f32(1/rescale_factor) (same for
// std), then (f32(u8) - mean') / std'; rescale alone is f32(u8) * f32(rescale_factor).
std::array<std::array<float, 256>, 3> value_table(const ImageProcessorParams& p) {
  std::array<std::array<float, 256>, 3> lut{};
  const bool tv = p.backend == ResizeBackend::kTorchvision;
  const float inv_rescale = static_cast<float>(1.0 / p.rescale_factor);
  for (int c = 0; c < 3; ++c) {
    float mean = static_cast<float>(p.image_mean[c]);
    float stdv = static_cast<float>(p.image_std[c]);
    if (tv && p.do_rescale && p.do_normalize) {
      mean *= inv_rescale;
      stdv *= inv_rescale;
    }
    for (int v = 0; v < 256; ++v) {
      float x = static_cast<float>(v);
      if (tv) {
        if (p.do_normalize) x = (x - mean) / stdv;
        else if (p.do_rescale) x *= static_cast<float>(p.rescale_factor);
      } else {
        if (p.do_rescale) x = static_cast<float>(static_cast<double>(v) * p.rescale_factor);
        if (p.do_normalize) x = (x - mean) / stdv;
      }
      lut[c][v] = x;
    }
  }
  return lut;
}

void append_image(const RgbImage& image, const ImageProcessorParams& p, ProcessedImages& out) {
  detail::check_rgb_image(image, "preprocess_image input");
  RgbImage storage;
  const RgbImage* img = &resize_for_processor(image, p, storage);
  const auto lut = value_table(p);

  const std::int64_t P = p.patch_size, M = p.merge_size, T = p.temporal_patch_size;
  const std::int64_t grid_h = img->height / P, grid_w = img->width / P;
  const std::int64_t gh = grid_h / M, gw = grid_w / M;
  const std::int64_t patch_dim = 3 * T * P * P;
  const std::int64_t n = grid_h * grid_w;
  if (out.patch_dim != 0 && out.patch_dim != patch_dim)
    throw UsageError({"preprocess_images", "patch_dim changed between images", "", "", ""});
  out.patch_dim = patch_dim;
  const std::size_t base = out.pixel_values.size();
  out.pixel_values.resize(base + static_cast<std::size_t>(n * patch_dim));
  float* const dst0 = out.pixel_values.data() + base;
  const std::uint8_t* px = img->pixels.data();
  const std::int64_t stride = img->width * 3;
  const int nt = detail::pick_threads(p.threads, n * patch_dim);
  detail::parallel_ranges(static_cast<int>(gh), nt, [&](int bh0, int bh1) {
    float* dst = dst0 + static_cast<std::int64_t>(bh0) * gw * M * M * patch_dim;
    for (std::int64_t bh = bh0; bh < bh1; ++bh)
      for (std::int64_t bw = 0; bw < gw; ++bw)
        for (std::int64_t mh = 0; mh < M; ++mh)
          for (std::int64_t mw = 0; mw < M; ++mw) {
            const std::int64_t y0 = (bh * M + mh) * P, x0 = (bw * M + mw) * P;
            float* row = dst;
            for (int c = 0; c < 3; ++c) {
              float* first = row;  // tt = 0 block for this channel: P*P values
              for (std::int64_t py = 0; py < P; ++py) {
                const std::uint8_t* src = px + (y0 + py) * stride + x0 * 3 + c;
                float* d = first + py * P;
                for (std::int64_t pxx = 0; pxx < P; ++pxx) d[pxx] = lut[c][src[3 * pxx]];
              }
              for (std::int64_t tt = 1; tt < T; ++tt)
                std::memcpy(first + tt * P * P, first, static_cast<std::size_t>(P * P) * sizeof(float));
              row += T * P * P;
            }
            dst += patch_dim;
          }
  });
  out.n_patches += n;
  out.grid_thw.push_back({1, grid_h, grid_w});
  out.resized.push_back({img->height, img->width});
}

}  // namespace

PreprocessPlan plan_preprocess(const RgbImage& image, const ImageProcessorParams& p) {
  validate_image_processor_params(p);
  detail::check_rgb_image(image, "preprocess_image input");
  PreprocessPlan plan;
  plan.in_width = plan.out_width = image.width;
  plan.in_height = plan.out_height = image.height;
  const ResizeTarget t = processor_target(image, p);
  if (t.height != image.height || t.width != image.width) {
    detail::check_resize_sizes(image, t.width, t.height, "plan_preprocess");
    plan.out_width = t.width;
    plan.out_height = t.height;
    const int iw = static_cast<int>(image.width), ih = static_cast<int>(image.height);
    const int ow = static_cast<int>(t.width), oh = static_cast<int>(t.height);
    const bool pil = p.backend == ResizeBackend::kPil;
    if (ow != iw) plan.horizontal = pil ? detail::pillow_coeffs(iw, ow) : detail::torch_coeffs(iw, ow);
    if (oh != ih) plan.vertical = pil ? detail::pillow_coeffs(ih, oh) : detail::torch_coeffs(ih, oh);
    // torchvision: always width first; Pillow: its rule (only matters when both axes change).
    plan.vertical_first = pil && ow != iw && oh != ih && detail::pillow_vertical_first(iw, ih, ow, oh, p.pillow);
  }
  plan.value = value_table(p);
  plan.patch_size = p.patch_size;
  plan.merge_size = p.merge_size;
  plan.temporal_patch_size = p.temporal_patch_size;
  plan.grid_thw = {1, plan.out_height / p.patch_size, plan.out_width / p.patch_size};
  return plan;
}

RawImages plan_images(std::span<const RgbImage> images, const ImageProcessorParams& params) {
  RawImages r;
  for (const RgbImage& img : images) {
    PreprocessPlan plan = plan_preprocess(img, params);
    if (r.patch_dim != 0 && r.patch_dim != plan.patch_dim())
      throw UsageError({"plan_images", "patch_dim changed between images", std::to_string(r.patch_dim),
                        std::to_string(plan.patch_dim()), ""});
    r.patch_dim = plan.patch_dim();
    r.n_patches += plan.n_patches();
    r.grid_thw.push_back(plan.grid_thw);
    r.images.push_back(&img);
    r.plans.push_back(std::move(plan));
  }
  return r;
}

ProcessedImages preprocess_images(std::span<const RgbImage> images, const ImageProcessorParams& params) {
  validate_image_processor_params(params);
  ProcessedImages out;
  for (const RgbImage& img : images) append_image(img, params, out);
  return out;
}

ProcessedImages preprocess_image(const RgbImage& image, const ImageProcessorParams& params) {
  return preprocess_images(std::span<const RgbImage>(&image, 1), params);
}

}  // namespace vlq::image
