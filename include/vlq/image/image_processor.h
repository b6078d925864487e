// Qwen2-VL / Qwen2.5-VL image preprocessing on the CPU, bit-exact with transformers' image processors:
// smart_resize -> BICUBIC resize -> rescale -> normalize -> patchify into
// pixel_values [n_patches, C*temporal_patch_size*patch_size^2] float32 and image_grid_thw [t, h, w].
//
// Two processors exist and differ by up to several 8-bit steps after resizing (ResizeBackend):
// - kTorchvision (default): transformers 5.x `Qwen2VLImageProcessor` / 4.52+ `Qwen2VLImageProcessorFast`,
//   what AutoProcessor / AutoImageProcessor pick whenever torchvision is installed (whatever
//   "image_processor_type" the preprocessor_config.json names). Resize = torch's antialiased uint8 bicubic
//   (int16 weights), normalisation fused as (u8 - mean*255) / (std*255) in float32.
// - kPil: transformers 5.x `Qwen2VLImageProcessorPil` (backend="pil"), 4.x `Qwen2VLImageProcessor` with
//   use_fast=False (the 4.x default up to 4.51). Resize = Pillow BICUBIC (22-bit weights), then
//   (f32(u8/255) - mean) / std.
// See docs/image-preprocessing.md for what was measured.
//
// Spec: /work/shared/docs/qwen2_5_vl.md §2.1-§2.2, §2.5; dependencies.md §1 (Pillow bicubic); transformers
// `models/qwen2_vl/image_processing_qwen2_vl.py` and `image_processing_pil_qwen2_vl.py` (5.x),
// `image_processing_qwen2_vl{,_fast}.py` (4.x); torch `aten/src/ATen/native/cpu/UpSampleKernel.cpp`
// (uint8 antialias path); Pillow `src/libImaging/Resample.c`. Checked against transformers 5.25 / 4.57 with
// torch 2.15 + torchvision 0.29 + Pillow 13.0 (and Pillow 9.4) by tools/make_image_golden.py (goldens in
// tests/data/images/ and tests/data/golden/image_processor/).
//
// Parameters: ImageProcessorParams mirrors preprocessor_config.json (min_pixels/max_pixels, or
// size.shortest_edge/longest_edge; patch_size, temporal_patch_size, merge_size, image_mean, image_std,
// rescale_factor, do_resize/do_rescale/do_normalize); image_processor_params_from_config() converts the
// PreprocessorConfig parsed by vlq/formats/hf_config.h. Defaults are the released Qwen2.5-VL values
// (min 3136, max 12845056), NOT the transformers class default max of 1,003,520.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vlq/formats/hf_config.h"
#include "vlq/image/image.h"

namespace vlq::image {

// Which transformers image processor is reproduced (resize filter and normalisation arithmetic).
enum class ResizeBackend {
  kTorchvision,  // Qwen2VLImageProcessor (5.x) / Qwen2VLImageProcessorFast (4.52+): AutoProcessor's pick
  kPil,          // Qwen2VLImageProcessorPil (5.x, backend="pil") / slow Qwen2VLImageProcessor (4.x)
};

// "torchvision" or "pil" (transformers 5.x's `backend=` values).
const char* resize_backend_name(ResizeBackend b) noexcept;
// Parses "torchvision" / "pil" (exact, lower case). Throws UsageError (where = `where`) for anything else.
ResizeBackend parse_resize_backend(std::string_view name, const std::string& where = "image resize backend");

struct ImageProcessorParams {
  std::int64_t min_pixels = 3136;      // = 4*28*28 ("min_pixels" or "size.shortest_edge")
  std::int64_t max_pixels = 12845056;  // = 16384*28*28 ("max_pixels" or "size.longest_edge")
  std::int64_t patch_size = 14;
  std::int64_t temporal_patch_size = 2;
  std::int64_t merge_size = 2;
  std::array<double, 3> image_mean{0.48145466, 0.4578275, 0.40821073};  // OpenAI CLIP
  std::array<double, 3> image_std{0.26862954, 0.26130258, 0.27577711};
  double rescale_factor = 1.0 / 255.0;
  bool do_resize = true;
  bool do_rescale = true;
  bool do_normalize = true;
  // transformers 4.x smart_resize raises when height or width < patch_size*merge_size; 5.x does not (the
  // image is then scaled up to min_pixels). true = 4.x behaviour.
  bool reject_smaller_than_factor = true;
  // Processor whose resize + normalisation is reproduced; the default is what AutoProcessor picks.
  ResizeBackend backend = ResizeBackend::kTorchvision;
  // Pillow release whose resize pass order is reproduced (see resize_bicubic; kPil only).
  PillowCompat pillow = PillowCompat::kPillow13;
  // Worker threads for resize and patchify (0 = hardware concurrency, at most 8; small images use 1).
  // Results do not depend on it.
  int threads = 0;
};

// Throws ConfigError (where = "image processor parameters") when a size is < 1, min_pixels > max_pixels,
// or a std entry is 0 / not finite.
void validate_image_processor_params(const ImageProcessorParams& p);

// Parameters from a parsed preprocessor_config.json (vlq/formats/hf_config.h). The result is validated.
// backend stays kTorchvision: transformers' AutoImageProcessor picks the torchvision processor for every
// Qwen2-VL "image_processor_type" (checked: Qwen2VLImageProcessor, ...Fast, ...Pil in 5.25).
// do_convert_rgb is not a parameter: vlq always decodes to RGB (ImageDecodeOptions::alpha chooses how).
// Throws UnsupportedError when "resample" is not 3 (BICUBIC, the only filter implemented), ConfigError
// (naming `file`) for invalid values.
ImageProcessorParams image_processor_params_from_config(const formats::PreprocessorConfig& config,
                                                        const std::string& file = "preprocessor_config.json");

struct ResizeTarget {
  std::int64_t height = 0;
  std::int64_t width = 0;
};

// transformers smart_resize(height, width, factor, min_pixels, max_pixels) in double precision with Python
// semantics: round() is round-half-to-even, then floor (above max_pixels) / ceil (below min_pixels):
//   h = round(H/f)*f, w = round(W/f)*f;
//   if h*w > max: b = sqrt(H*W/max); h = max(f, floor(H/b/f)*f); w = max(f, floor(W/b/f)*f)
//   elif h*w < min: b = sqrt(min/(H*W)); h = ceil(H*b/f)*f; w = ceil(W*b/f)*f
// (the max(f, .) clamp is transformers 5.x; 4.x would produce a zero size there).
// Throws UnsupportedError when max(H,W)/min(H,W) > 200, or (reject_smaller_than_factor) H < f or W < f;
// UsageError when H, W or f < 1.
ResizeTarget smart_resize(std::int64_t height, std::int64_t width, std::int64_t factor, std::int64_t min_pixels,
                          std::int64_t max_pixels, bool reject_smaller_than_factor = true);

// Pillow Image.resize((out_width, out_height), BICUBIC) of an RGB image, bit-exact: separable Keys cubic
// (a = -0.5, support 2 scaled by in/out when downscaling = antialias), coefficients normalised per output
// sample and rounded to 22-bit fixed point (half away from zero), one pass into a uint8 intermediate,
// then the other; each pass accumulates from 1<<21 and clips (acc >> 22) to [0, 255]. A pass whose size
// does not change is skipped; same size in both directions returns a copy.
// Pass order: Pillow <= 12 (kPillow9) always runs horizontal then vertical (the horizontal pass only over
// the rows the vertical pass reads). Pillow 13 (kPillow13) runs vertical first when
// out_h < in_h and 2*(in_w - out_w) < (in_h - out_h), e.g. 640x427 -> 644x420; this rule was fitted
// to ~1,900 random size pairs (0 mismatches), as the Pillow 13 source was not available.
// Throws UsageError when a size is < 1 or > 2^24, or the input is empty/inconsistent.
// `threads`: 1 = calling thread only, 0 = hardware concurrency (at most 8); the result does not depend
// on it (rows are split between threads).
RgbImage resize_bicubic(const RgbImage& image, std::int64_t out_width, std::int64_t out_height,
                        PillowCompat pillow = PillowCompat::kPillow13, int threads = 1);

// torchvision `F.resize(uint8 CHW tensor, [out_height, out_width], BICUBIC, antialias=True)` on the CPU, i.e.
// torch's `_upsample_bicubic2d_aa` uint8 kernel, bit-exact (the AVX2/AVX-512 and the generic kernels agree):
// per axis scale = in/out, support = 2*max(scale, 1), Keys cubic (a = -0.5, torch's polynomial form) over
// taps [max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in)), center = scale*(i + 0.5),
// normalised per output sample; ONE precision per axis, the largest p <= 22 with round(max_weight * 2^p) <
// 2^15 (checked as round(max_weight * 2^(p+1)) >= 2^15 ends the search), weights rounded half away from zero
// to int16; horizontal pass first into a uint8 intermediate, then vertical; each pass accumulates from
// 1 << (p-1) and clips (acc >> p) to [0, 255]. A pass whose size does not change is skipped.
// NOT what torch does on CUDA (float kernel) or for float inputs. Throws UsageError as resize_bicubic.
RgbImage resize_bicubic_torchvision(const RgbImage& image, std::int64_t out_width, std::int64_t out_height,
                                    int threads = 1);

// Output of preprocessing one image (or several, concatenated along the patch axis).
struct ProcessedImages {
  // pixel_values: [n_patches, patch_dim] float32, row-major. Row r of one image, with gh = grid_h/m,
  // gw = grid_w/m (m = merge_size): r = ((t*gh + bh)*gw + bw)*m*m + mh*m + mw; column
  // k = ((c*T + tt)*p + py)*p + px (T = temporal_patch_size, p = patch_size); value = normalised pixel of
  // channel c at y = (bh*m + mh)*p + py, x = (bw*m + mw)*p + px (every tt is the same still image).
  std::vector<float> pixel_values;
  std::int64_t n_patches = 0;
  std::int64_t patch_dim = 0;  // C*T*p*p = 1176 for Qwen2.5-VL
  // image_grid_thw: one [t, h, w] row per image, in patches (not merged units); t = 1 for a still image.
  std::vector<std::array<std::int64_t, 3>> grid_thw;
  // Size each image was resized to (pixels), one per image.
  std::vector<ResizeTarget> resized;
};

// Number of LLM tokens (<|image_pad|> copies) for one grid: t*h*w / merge_size^2.
std::int64_t image_token_count(const std::array<std::int64_t, 3>& grid_thw, std::int64_t merge_size);

// Resizes (if do_resize) and normalises one RGB image and patchifies it, exactly as the processor that
// params.backend names. kPil: pixel = float32(float32(float64(u8)*rescale_factor) - float32(mean_c)) /
// float32(std_c) (each step only if enabled). kTorchvision with rescale and normalize: pixel =
// (float32(u8) - f32(f32(mean_c) * f32(1/rescale_factor))) / f32(f32(std_c) * f32(1/rescale_factor)); rescale
// only: float32(u8) * f32(rescale_factor); normalize only: (float32(u8) - f32(mean_c)) / f32(std_c). Throws what smart_resize throws, ConfigError for invalid
// params, UnsupportedError when do_resize is false and the size is not a multiple of patch_size*merge_size.
ProcessedImages preprocess_image(const RgbImage& image, const ImageProcessorParams& params = {});

// Same for several images; pixel_values are concatenated in input order, one grid_thw row per image. Each
// image is resized to its own smart_resize target, as both transformers processors do (the torchvision one
// stacks same-sized images into one batch, which gives the same values).
ProcessedImages preprocess_images(std::span<const RgbImage> images, const ImageProcessorParams& params = {});

// Fixed-point taps of one resize axis (what resize_bicubic / resize_bicubic_torchvision compute): output
// sample i = clip((2^(precision-1) + sum_j u8[bounds[2i] + j] * kk[i*ksize + j]) >> precision, 0, 255) over
// j < bounds[2i+1] (int32 sums, arithmetic shift). ksize == 0: the axis keeps its size (no pass).
struct ResizeTaps {
  int ksize = 0;
  int precision = 0;
  std::vector<int> bounds;       // [out, 2]: first input index, number of taps
  std::vector<std::int32_t> kk;  // [out, ksize] fixed-point weights
};

// preprocess_image's work on one image as data, for a device that runs the same integer and table steps
// itself (model_cuda: resize + normalise + patchify on the GPU, bit-identical). The resize (when out != in)
// runs `horizontal` over all in_height rows and then `vertical`, or the reverse when vertical_first (each pass
// into a uint8 intermediate; skipping a pass whose taps are empty); the normalised value of channel c and
// byte u is value[c][u] (the float32 that preprocess_image writes); the patch layout is ProcessedImages'.
struct PreprocessPlan {
  std::int64_t in_width = 0, in_height = 0, out_width = 0, out_height = 0;
  ResizeTaps horizontal, vertical;
  bool vertical_first = false;
  std::array<std::array<float, 256>, 3> value{};
  std::int64_t patch_size = 14, merge_size = 2, temporal_patch_size = 2;
  std::array<std::int64_t, 3> grid_thw{};  // [1, out_height / patch_size, out_width / patch_size]
  std::int64_t n_patches() const { return grid_thw[0] * grid_thw[1] * grid_thw[2]; }
  std::int64_t patch_dim() const { return 3 * temporal_patch_size * patch_size * patch_size; }
};
// Throws what preprocess_image throws for this image and these params (same checks, nothing computed).
PreprocessPlan plan_preprocess(const RgbImage& image, const ImageProcessorParams& params = {});

// Images for a device consumer that preprocesses them itself: the RGB sources (not owned: they must outlive
// the call that reads them), one plan each, and the totals a ProcessedImages of them would have.
struct RawImages {
  std::vector<const RgbImage*> images;
  std::vector<PreprocessPlan> plans;
  std::int64_t n_patches = 0, patch_dim = 0;
  std::vector<std::array<std::int64_t, 3>> grid_thw;
};
// plan_preprocess of each image; UsageError when the patch_dim would differ between images.
RawImages plan_images(std::span<const RgbImage> images, const ImageProcessorParams& params = {});

}  // namespace vlq::image
