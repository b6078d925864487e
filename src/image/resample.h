// Internal: separable fixed-point resampling of 8-bit RGB shared by the Pillow and torchvision bicubic resizes.
//
// Both libraries compute per-output-sample filter taps in double, normalise them, round them to fixed point
// (Pillow: 22 bits in int32; torch: int16 with a per-axis precision) and then run one 1-D pass per axis into
// a uint8 intermediate, each output = clip((2^(precision-1) + sum(u8 * weight)) >> precision, 0, 255).
// They differ only in how the weights are made and in the pass order, so the passes live here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

#include "vlq/image/image.h"
#include "vlq/image/image_processor.h"

namespace vlq::image::detail {

// Fixed-point taps for one axis: the public image::ResizeTaps (image_processor.h).
using ResampleCoeffs = ResizeTaps;

// Keys cubic convolution kernel with a = -0.5, Pillow's form of the polynomial (Resample.c bicubic_filter).
double keys_cubic_pillow(double x);
// The same kernel in torch's form (UpSample.h cubic_convolution1/2; the rounding of the double differs).
double keys_cubic_torch(double x);

// Pillow's taps for one axis (precompute_coeffs + normalize_coeffs_8bpc, 22 bits) and torch's (int16, one
// precision per axis); resize_pil.cpp / resize_torchvision.cpp.
ResampleCoeffs pillow_coeffs(int in_size, int out_size);
ResampleCoeffs torch_coeffs(int in_size, int out_size);
// Pillow's pass order for in -> out (resize_bicubic's rule; always false for kPillow9).
bool pillow_vertical_first(int in_w, int in_h, int out_w, int out_h, PillowCompat pillow);

// Which pass runs first when both axes change.
enum class PassOrder { kHorizontalFirst, kVerticalFirst };

// Resizes `image` to out_w x out_h with the taps `ch` (horizontal, may be empty when the width does not
// change) and `cv` (vertical, may be empty when the height does not change). With kHorizontalFirst the
// horizontal pass covers only the source rows the vertical pass reads (the values are the same as over all
// rows). `threads` as in resize_bicubic(); the result does not depend on it.
RgbImage resample_separable(const RgbImage& image, int out_w, int out_h, const ResampleCoeffs& ch,
                            ResampleCoeffs cv, PassOrder order, int threads);

// Throws UsageError (where = `what`) when the image is empty or its byte count is not width*height*3.
void check_rgb_image(const RgbImage& img, const char* what);
// Throws UsageError (where = `what`) when an input or output size is < 1 or > 2^24 (Pillow's float boxes
// stay exact below it). Does not check the pixels (check_rgb_image does).
void check_resize_sizes(const RgbImage& image, std::int64_t out_width, std::int64_t out_height, const char* what);

// Threads to use for `work` output values: 1 below ~256K values, else `requested` (0 = hardware, <= 8).
int pick_threads(int requested, std::int64_t work);

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

}  // namespace vlq::image::detail
