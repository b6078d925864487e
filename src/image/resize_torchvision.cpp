// torchvision-exact antialiased BICUBIC resize of uint8 RGB on the CPU (what transformers' default
// Qwen2VLImageProcessor runs); see resize_bicubic_torchvision() in include/vlq/image/image_processor.h.
#include <cmath>

#include "image/resample.h"
#include "vlq/image/image_processor.h"

namespace vlq::image {

// Taps of torch's antialiased uint8 path for one axis (align_corners=false, no scale factor): double weights
// as in Pillow but with torch's polynomial, one precision for the whole axis (the largest that keeps the
// biggest weight below 2^15), weights rounded half away from zero to int16.
detail::ResampleCoeffs detail::torch_coeffs(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double support = scale >= 1.0 ? 2.0 * scale : 2.0;  // (interp_size 4 * 0.5) * scale
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  detail::ResampleCoeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<std::size_t>(out_size) * 2);
  std::vector<double> w(static_cast<std::size_t>(out_size) * c.ksize, 0.0);
  double wt_max = 0.0;
  for (int i = 0; i < out_size; ++i) {
    const double center = scale * (i + 0.5);
    const std::int64_t xmin = std::max(static_cast<std::int64_t>(center - support + 0.5), std::int64_t{0});
    std::int64_t xsize = std::min(static_cast<std::int64_t>(center + support + 0.5), std::int64_t{in_size}) - xmin;
    xsize = std::clamp(xsize, std::int64_t{0}, std::int64_t{c.ksize});
    double* wi = &w[static_cast<std::size_t>(i) * c.ksize];
    double total = 0.0;
    for (std::int64_t j = 0; j < xsize; ++j) {
      wi[j] = detail::keys_cubic_torch((static_cast<double>(j + xmin) - center + 0.5) * invscale);
      total += wi[j];
    }
    if (total != 0.0)
      for (std::int64_t j = 0; j < xsize; ++j) {
        wi[j] /= total;
        wt_max = std::max(wt_max, wi[j]);
      }
    c.bounds[2 * i] = static_cast<int>(xmin);
    c.bounds[2 * i + 1] = static_cast<int>(xsize);
  }
  int precision = 0;
  for (; precision < 22; ++precision)
    if (static_cast<int>(0.5 + wt_max * (1 << (precision + 1))) >= (1 << 15)) break;
  c.precision = precision;
  c.kk.resize(w.size());
  for (std::size_t k = 0; k < w.size(); ++k) {
    const double v = w[k] * (1 << precision);
    c.kk[k] = static_cast<std::int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
  }
  return c;
}

RgbImage resize_bicubic_torchvision(const RgbImage& image, std::int64_t out_width, std::int64_t out_height,
                                    int threads) {
  detail::check_rgb_image(image, "resize_bicubic_torchvision input");
  detail::check_resize_sizes(image, out_width, out_height, "resize_bicubic_torchvision");
  const int in_w = static_cast<int>(image.width), in_h = static_cast<int>(image.height);
  const int ow = static_cast<int>(out_width), oh = static_cast<int>(out_height);
  if (ow == in_w && oh == in_h) return image;
  detail::ResampleCoeffs ch, cv;
  if (ow != in_w) ch = detail::torch_coeffs(in_w, ow);
  if (oh != in_h) cv = detail::torch_coeffs(in_h, oh);
  // torch always resamples the width first, then the height.
  return detail::resample_separable(image, ow, oh, ch, std::move(cv), detail::PassOrder::kHorizontalFirst, threads);
}

}  // namespace vlq::image
