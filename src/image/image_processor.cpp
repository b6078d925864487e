// Qwen2-VL image preprocessing: smart_resize, Pillow-exact bicubic resize, rescale/normalize, patchify.
// See include/vlq/model/image_processor.h.
#include "vlq/image/image_processor.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "vlq/core/error.h"

namespace vlq::image {
namespace {

constexpr const char* kWhere = "image processor parameters";

// ---------------------------------------------------------------------------- Pillow resample (bicubic)

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow PRECISION_BITS

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // [out, 2]: first input index, number of taps
  std::vector<std::int32_t> kk;  // [out, ksize] fixed-point weights
};

// Pillow precompute_coeffs() with box (0, in_size) followed by normalize_coeffs_8bpc().
Coeffs precompute_coeffs(int in_size, int out_size) {
  constexpr double support_base = 2.0;  // BICUBIC support
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = support_base * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<std::size_t>(out_size) * 2);
  c.kk.assign(static_cast<std::size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; ++x) {
      const double w = bicubic_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) k[x] /= ww;
    std::int32_t* out = &c.kk[static_cast<std::size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double v = k[x] * (1 << kPrecisionBits);
      out[x] = static_cast<std::int32_t>(k[x] < 0 ? -0.5 + v : 0.5 + v);
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

inline std::uint8_t clip8(std::int32_t v) {
  const std::int32_t s = v >> kPrecisionBits;  // arithmetic shift (C++20)
  return static_cast<std::uint8_t>(s < 0 ? 0 : s > 255 ? 255 : s);
}

// Horizontal pass for intermediate rows [r0, r1): source row y0 + r.
void resample_horizontal_rows(const std::uint8_t* in, int in_w, int y0, int r0, int r1, std::uint8_t* out,
                              int out_w, const Coeffs& c) {
  constexpr std::int32_t half = 1 << (kPrecisionBits - 1);
  for (int y = r0; y < r1; ++y) {
    const std::uint8_t* src = in + static_cast<std::size_t>(y0 + y) * in_w * 3;
    std::uint8_t* dst = out + static_cast<std::size_t>(y) * out_w * 3;
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[2 * xx], xmax = c.bounds[2 * xx + 1];
      const std::int32_t* k = &c.kk[static_cast<std::size_t>(xx) * c.ksize];
      const std::uint8_t* s = src + static_cast<std::size_t>(xmin) * 3;
      std::int32_t s0 = half, s1 = half, s2 = half;
      for (int x = 0; x < xmax; ++x) {
        s0 += s[3 * x] * k[x];
        s1 += s[3 * x + 1] * k[x];
        s2 += s[3 * x + 2] * k[x];
      }
      dst[3 * xx] = clip8(s0);
      dst[3 * xx + 1] = clip8(s1);
      dst[3 * xx + 2] = clip8(s2);
    }
  }
}

// Runs f(begin, end) over [0, n) split into `threads` contiguous chunks (results do not depend on it).
template <typename F>
void parallel_ranges(int n, int threads, F&& f) {
  threads = std::max(1, std::min(threads, n));
  if (threads == 1) {
    f(0, n);
    return;
  }
  const int chunk = (n + threads - 1) / threads;
  std::vector<std::jthread> pool;
  for (int b = chunk; b < n; b += chunk) pool.emplace_back([&f, b, e = std::min(n, b + chunk)] { f(b, e); });
  f(0, std::min(n, chunk));
}

// Threads to use for `work` output values: 1 below ~256K values, else `requested` (0 = hardware, <= 8).
int pick_threads(int requested, std::int64_t work) {
  if (work < (std::int64_t{1} << 18)) return 1;
  if (requested > 0) return requested;
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
}

// Horizontal pass over rows [y0, y0 + rows) of `in` (RGB, width in_w) into `out` (RGB, width out_w).
void resample_horizontal(const std::uint8_t* in, int in_w, int y0, int rows, std::uint8_t* out, int out_w,
                         const Coeffs& c, int threads) {
  parallel_ranges(rows, threads, [&](int b, int e) { resample_horizontal_rows(in, in_w, y0, b, e, out, out_w, c); });
}

// Vertical pass for output rows [r0, r1): `in` has width w (RGB) and the rows the bounds refer to.
void resample_vertical_rows(const std::uint8_t* in, int w, std::uint8_t* out, int r0, int r1, const Coeffs& c) {
  constexpr std::int32_t half = 1 << (kPrecisionBits - 1);
  const std::size_t stride = static_cast<std::size_t>(w) * 3;
  std::vector<std::int32_t> acc(stride);
  for (int yy = r0; yy < r1; ++yy) {
    const int ymin = c.bounds[2 * yy], ymax = c.bounds[2 * yy + 1];
    const std::int32_t* k = &c.kk[static_cast<std::size_t>(yy) * c.ksize];
    std::fill(acc.begin(), acc.end(), half);
    for (int y = 0; y < ymax; ++y) {
      const std::uint8_t* __restrict src = in + static_cast<std::size_t>(ymin + y) * stride;
      const std::int32_t ky = k[y];
      std::int32_t* __restrict a = acc.data();
      std::size_t i = 0;
      // Fixed-length blocks let GCC's -O2 ("very cheap") vectorizer handle the loop.
      for (; i + 16 <= stride; i += 16)
        for (std::size_t j = 0; j < 16; ++j) a[i + j] += src[i + j] * ky;
      for (; i < stride; ++i) a[i] += src[i] * ky;
    }
    std::uint8_t* dst = out + static_cast<std::size_t>(yy) * stride;
    for (std::size_t i = 0; i < stride; ++i) dst[i] = clip8(acc[i]);
  }
}

// Vertical pass: `in` has width w (RGB) and the rows the bounds refer to (already shifted).
void resample_vertical(const std::uint8_t* in, int w, std::uint8_t* out, int out_h, const Coeffs& c, int threads) {
  parallel_ranges(out_h, threads, [&](int b, int e) { resample_vertical_rows(in, w, out, b, e, c); });
}

void check_image(const RgbImage& img, const char* what) {
  if (img.width < 1 || img.height < 1 ||
      img.pixels.size() != static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3)
    throw UsageError({what, "invalid RGB image", "width, height >= 1 and width*height*3 bytes",
                      fmt::format("{}x{} with {} bytes", img.width, img.height, img.pixels.size()), ""});
}

// Python round() on a double: round half to even (nearbyint under the default FE_TONEAREST mode).
double py_round(double v) {
  const int old = std::fegetround();
  if (old != FE_TONEAREST) std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint(v);
  if (old != FE_TONEAREST) std::fesetround(old);
  return r;
}

}  // namespace

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

RgbImage resize_bicubic(const RgbImage& image, std::int64_t out_width, std::int64_t out_height,
                        PillowCompat pillow, int threads) {
  check_image(image, "resize_bicubic input");
  constexpr std::int64_t kMaxSide = std::int64_t{1} << 24;  // Pillow's float box keeps sizes exact below 2^24
  if (out_width < 1 || out_height < 1 || out_width > kMaxSide || out_height > kMaxSide ||
      image.width > kMaxSide || image.height > kMaxSide)
    throw UsageError({"resize_bicubic", "invalid resize target", fmt::format("sizes in [1, {}]", kMaxSide),
                      fmt::format("{}x{} -> {}x{}", image.width, image.height, out_width, out_height), ""});
  const int in_w = static_cast<int>(image.width), in_h = static_cast<int>(image.height);
  const int ow = static_cast<int>(out_width), oh = static_cast<int>(out_height);
  const bool need_h = ow != in_w, need_v = oh != in_h;
  if (!need_h && !need_v) return image;
  const int nt = pick_threads(threads, static_cast<std::int64_t>(ow) * oh);

  RgbImage out;
  out.width = ow;
  out.height = oh;
  out.pixels.resize(static_cast<std::size_t>(ow) * oh * 3);
  if (!need_v) {
    const Coeffs ch = precompute_coeffs(in_w, ow);
    resample_horizontal(image.pixels.data(), in_w, 0, in_h, out.pixels.data(), ow, ch, nt);
    return out;
  }
  Coeffs cv = precompute_coeffs(in_h, oh);
  if (!need_h) {
    resample_vertical(image.pixels.data(), in_w, out.pixels.data(), oh, cv, nt);
    return out;
  }
  if (pillow == PillowCompat::kPillow13 && oh < in_h &&
      2 * (static_cast<std::int64_t>(in_w) - ow) < static_cast<std::int64_t>(in_h) - oh) {
    // Pillow 13: vertical pass first (all columns), then horizontal.
    std::vector<std::uint8_t> tmp(static_cast<std::size_t>(in_w) * oh * 3);
    resample_vertical(image.pixels.data(), in_w, tmp.data(), oh, cv, nt);
    const Coeffs ch = precompute_coeffs(in_w, ow);
    resample_horizontal(tmp.data(), in_w, 0, oh, out.pixels.data(), ow, ch, nt);
    return out;
  }
  // Pillow: the horizontal pass covers only the source rows the vertical pass uses.
  const int ybox_first = cv.bounds[0];
  const int ybox_last = cv.bounds[2 * (oh - 1)] + cv.bounds[2 * (oh - 1) + 1];
  for (int i = 0; i < oh; ++i) cv.bounds[2 * i] -= ybox_first;
  const Coeffs ch = precompute_coeffs(in_w, ow);
  std::vector<std::uint8_t> tmp(static_cast<std::size_t>(ow) * (ybox_last - ybox_first) * 3);
  resample_horizontal(image.pixels.data(), in_w, ybox_first, ybox_last - ybox_first, tmp.data(), ow, ch, nt);
  resample_vertical(tmp.data(), ow, out.pixels.data(), oh, cv, nt);
  return out;
}

std::int64_t image_token_count(const std::array<std::int64_t, 3>& g, std::int64_t merge_size) {
  return g[0] * g[1] * g[2] / (merge_size * merge_size);
}

namespace {

void append_image(const RgbImage& image, const ImageProcessorParams& p, ProcessedImages& out) {
  check_image(image, "preprocess_image input");
  const std::int64_t factor = p.patch_size * p.merge_size;
  RgbImage resized_storage;
  const RgbImage* img = &image;
  if (p.do_resize) {
    const ResizeTarget t =
        smart_resize(image.height, image.width, factor, p.min_pixels, p.max_pixels, p.reject_smaller_than_factor);
    if (t.height != image.height || t.width != image.width) {
      resized_storage = resize_bicubic(image, t.width, t.height, p.pillow, p.threads);
      img = &resized_storage;
    }
  } else if (image.height % factor != 0 || image.width % factor != 0) {
    throw UnsupportedError({fmt::format("image {}x{} (width x height)", image.width, image.height),
                            "with do_resize=false the size must be a multiple of patch_size*merge_size",
                            fmt::format("multiples of {}", factor),
                            fmt::format("{}x{}", image.width, image.height), "enable do_resize"});
  }

  // Per-channel lookup table: the processor maps each uint8 value through the same float ops.
  float lut[3][256];
  for (int c = 0; c < 3; ++c) {
    const float mean = static_cast<float>(p.image_mean[c]);
    const float stdv = static_cast<float>(p.image_std[c]);
    for (int v = 0; v < 256; ++v) {
      float x = p.do_rescale ? static_cast<float>(static_cast<double>(v) * p.rescale_factor) : static_cast<float>(v);
      if (p.do_normalize) x = (x - mean) / stdv;
      lut[c][v] = x;
    }
  }

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
  const int nt = pick_threads(p.threads, n * patch_dim);
  parallel_ranges(static_cast<int>(gh), nt, [&](int bh0, int bh1) {
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
