// Separable fixed-point resampling passes (horizontal / vertical) shared by the Pillow and torchvision
// bicubic resizes; see resample.h.
#include "image/resample.h"

#include <fmt/format.h>

#include "vlq/core/error.h"

namespace vlq::image::detail {
namespace {

inline std::uint8_t clip8(std::int32_t v, int precision) {
  const std::int32_t s = v >> precision;  // arithmetic shift (C++20)
  return static_cast<std::uint8_t>(s < 0 ? 0 : s > 255 ? 255 : s);
}

// Horizontal pass for intermediate rows [r0, r1): source row y0 + r.
void horizontal_rows(const std::uint8_t* in, int in_w, int y0, int r0, int r1, std::uint8_t* out, int out_w,
                     const ResampleCoeffs& c) {
  const std::int32_t half = std::int32_t{1} << (c.precision - 1);
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
      dst[3 * xx] = clip8(s0, c.precision);
      dst[3 * xx + 1] = clip8(s1, c.precision);
      dst[3 * xx + 2] = clip8(s2, c.precision);
    }
  }
}

// Horizontal pass over rows [y0, y0 + rows) of `in` (RGB, width in_w) into `out` (RGB, width out_w).
void horizontal(const std::uint8_t* in, int in_w, int y0, int rows, std::uint8_t* out, int out_w,
                const ResampleCoeffs& c, int threads) {
  parallel_ranges(rows, threads, [&](int b, int e) { horizontal_rows(in, in_w, y0, b, e, out, out_w, c); });
}

// Vertical pass for output rows [r0, r1): `in` has width w (RGB) and the rows the bounds refer to.
void vertical_rows(const std::uint8_t* in, int w, std::uint8_t* out, int r0, int r1, const ResampleCoeffs& c) {
  const std::int32_t half = std::int32_t{1} << (c.precision - 1);
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
    for (std::size_t i = 0; i < stride; ++i) dst[i] = clip8(acc[i], c.precision);
  }
}

// Vertical pass: `in` has width w (RGB) and the rows the bounds refer to (already shifted).
void vertical(const std::uint8_t* in, int w, std::uint8_t* out, int out_h, const ResampleCoeffs& c, int threads) {
  parallel_ranges(out_h, threads, [&](int b, int e) { vertical_rows(in, w, out, b, e, c); });
}

}  // namespace

double keys_cubic_pillow(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double keys_cubic_torch(double x) {
  constexpr double a = -0.5;
  x = x < 0.0 ? -x : x;
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

RgbImage resample_separable(const RgbImage& image, int ow, int oh, const ResampleCoeffs& ch, ResampleCoeffs cv,
                            PassOrder order, int threads) {
  const int in_w = static_cast<int>(image.width), in_h = static_cast<int>(image.height);
  const bool need_h = ow != in_w, need_v = oh != in_h;
  if (!need_h && !need_v) return image;
  const int nt = pick_threads(threads, static_cast<std::int64_t>(ow) * oh);
  RgbImage out;
  out.width = ow;
  out.height = oh;
  out.pixels.resize(static_cast<std::size_t>(ow) * oh * 3);
  if (!need_v) {
    horizontal(image.pixels.data(), in_w, 0, in_h, out.pixels.data(), ow, ch, nt);
  } else if (!need_h) {
    vertical(image.pixels.data(), in_w, out.pixels.data(), oh, cv, nt);
  } else if (order == PassOrder::kVerticalFirst) {
    std::vector<std::uint8_t> tmp(static_cast<std::size_t>(in_w) * oh * 3);
    vertical(image.pixels.data(), in_w, tmp.data(), oh, cv, nt);
    horizontal(tmp.data(), in_w, 0, oh, out.pixels.data(), ow, ch, nt);
  } else {
    // The horizontal pass covers only the source rows the vertical pass uses.
    const int ybox_first = cv.bounds[0];
    const int ybox_last = cv.bounds[2 * (oh - 1)] + cv.bounds[2 * (oh - 1) + 1];
    for (int i = 0; i < oh; ++i) cv.bounds[2 * i] -= ybox_first;
    std::vector<std::uint8_t> tmp(static_cast<std::size_t>(ow) * (ybox_last - ybox_first) * 3);
    horizontal(image.pixels.data(), in_w, ybox_first, ybox_last - ybox_first, tmp.data(), ow, ch, nt);
    vertical(tmp.data(), ow, out.pixels.data(), oh, cv, nt);
  }
  return out;
}

void check_rgb_image(const RgbImage& img, const char* what) {
  if (img.width < 1 || img.height < 1 ||
      img.pixels.size() != static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3)
    throw UsageError({what, "invalid RGB image", "width, height >= 1 and width*height*3 bytes",
                      fmt::format("{}x{} with {} bytes", img.width, img.height, img.pixels.size()), ""});
}

void check_resize_sizes(const RgbImage& image, std::int64_t out_width, std::int64_t out_height, const char* what) {
  constexpr std::int64_t kMaxSide = std::int64_t{1} << 24;  // Pillow's float box keeps sizes exact below 2^24
  if (out_width < 1 || out_height < 1 || out_width > kMaxSide || out_height > kMaxSide ||
      image.width > kMaxSide || image.height > kMaxSide)
    throw UsageError({what, "invalid resize target", fmt::format("sizes in [1, {}]", kMaxSide),
                      fmt::format("{}x{} -> {}x{}", image.width, image.height, out_width, out_height), ""});
}

int pick_threads(int requested, std::int64_t work) {
  if (work < (std::int64_t{1} << 18)) return 1;
  if (requested > 0) return requested;
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
}

}  // namespace vlq::image::detail
