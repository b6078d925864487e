// libFuzzer target: image decoding (JPEG/PNG/WebP) and Qwen2-VL preprocessing of whatever decodes. Only
// vlq::Error may escape; a decoded image must have width*height*3 bytes and respect max_pixels, and
// preprocessing must produce n_patches*patch_dim values (else __builtin_trap).
#include <cstddef>
#include <cstdint>
#include <span>

#include "vlq/core/error.h"
#include "vlq/image/image.h"
#include "vlq/image/image_processor.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  try {
    (void)vlq::image::read_image_header(bytes);
  } catch (const vlq::Error&) {
  }
  vlq::image::ImageDecodeOptions opt;
  opt.max_pixels = std::int64_t{1} << 20;  // keep memory bounded
  opt.alpha = (size % 2) ? vlq::image::AlphaMode::kDrop : vlq::image::AlphaMode::kCompositeOnWhite;
  opt.pillow = (size % 3) ? vlq::image::PillowCompat::kPillow13 : vlq::image::PillowCompat::kPillow9;
  try {
    const vlq::image::RgbImage img = vlq::image::decode_image(bytes, opt);
    if (img.width < 1 || img.height < 1 || img.width * img.height > opt.max_pixels) __builtin_trap();
    if (img.pixels.size() != static_cast<std::size_t>(img.width * img.height * 3)) __builtin_trap();
    vlq::image::ImageProcessorParams p;
    p.min_pixels = 784;
    p.max_pixels = 28 * 28 * 64;
    p.reject_smaller_than_factor = (size % 5) == 0;
    p.threads = 1;
    const vlq::image::ProcessedImages r = vlq::image::preprocess_image(img, p);
    if (r.pixel_values.size() != static_cast<std::size_t>(r.n_patches * r.patch_dim)) __builtin_trap();
    if (r.grid_thw.size() != 1 || r.grid_thw[0][1] * r.grid_thw[0][2] != r.n_patches) __builtin_trap();
  } catch (const vlq::Error&) {
  }
  return 0;
}
