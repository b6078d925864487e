// Pillow-exact BICUBIC resize (Image.resize(..., BICUBIC), Pillow 9 and 13 pass orders); see
// resize_bicubic() in include/vlq/image/image_processor.h.
#include <cmath>

#include "image/resample.h"
#include "vlq/image/image_processor.h"

namespace vlq::image {
namespace {
constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow PRECISION_BITS
}  // namespace

// Pillow precompute_coeffs() with box (0, in_size) followed by normalize_coeffs_8bpc().
detail::ResampleCoeffs detail::pillow_coeffs(int in_size, int out_size) {
  constexpr double support_base = 2.0;  // BICUBIC support
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);
  const double scale = static_cast<double>(in1 - in0) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = support_base * filterscale;
  detail::ResampleCoeffs c;
  c.precision = kPrecisionBits;
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
      const double w = detail::keys_cubic_pillow((x + xmin - center + 0.5) * ss);
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

// Pillow 13 runs the vertical pass first when it shrinks the height by more than twice what the
// horizontal pass removes; Pillow <= 12 always runs horizontal first.
bool detail::pillow_vertical_first(int in_w, int in_h, int ow, int oh, PillowCompat pillow) {
  return pillow == PillowCompat::kPillow13 && oh < in_h &&
         2 * (static_cast<std::int64_t>(in_w) - ow) < static_cast<std::int64_t>(in_h) - oh;
}

RgbImage resize_bicubic(const RgbImage& image, std::int64_t out_width, std::int64_t out_height,
                        PillowCompat pillow, int threads) {
  detail::check_rgb_image(image, "resize_bicubic input");
  detail::check_resize_sizes(image, out_width, out_height, "resize_bicubic");
  const int in_w = static_cast<int>(image.width), in_h = static_cast<int>(image.height);
  const int ow = static_cast<int>(out_width), oh = static_cast<int>(out_height);
  if (ow == in_w && oh == in_h) return image;
  detail::ResampleCoeffs ch, cv;
  if (ow != in_w) ch = detail::pillow_coeffs(in_w, ow);
  if (oh != in_h) cv = detail::pillow_coeffs(in_h, oh);
  const bool vertical_first = detail::pillow_vertical_first(in_w, in_h, ow, oh, pillow);
  return detail::resample_separable(image, ow, oh, ch, std::move(cv),
                                    vertical_first ? detail::PassOrder::kVerticalFirst
                                                   : detail::PassOrder::kHorizontalFirst,
                                    threads);
}

}  // namespace vlq::image
