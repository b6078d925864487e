// Image preprocessing on the device: one separable fixed-point resize pass of 8-bit RGB and the
// normalise + patchify of Qwen2.5-VL's processor into BF16 pixel rows (the patch embedding's input form).
// Bit-identical with the CPU path (vlq/image/image_processor.h: resize_bicubic / resize_bicubic_torchvision
// passes, preprocess_image's value table and patch layout, then vlq::f32_to_bf16). The taps and tables come
// from image::plan_preprocess on the host. Conventions: device.h.
#pragma once

#include <cstdint>

#include "vlq/cuda/device.h"

namespace vlq::cuda {

// One resize pass (image::ResizeTaps semantics): horizontal: out[y, x, c] = clip((2^(precision-1) + sum_j
// in[y, bounds[2x] + j, c] · kk[x·ksize + j]) >> precision, 0, 255) over j < bounds[2x+1], int32; vertical the
// same along y. in: [in_h, in_w, 3] U8; out: [in_h, out_w, 3] U8 (horizontal) or [out_h, in_w, 3] U8 (vertical),
// contiguous; bounds: device [out, 2] int32, kk: device [out, ksize] int32 (the caller keeps taps inside `in`:
// bounds[2i] + bounds[2i+1] <= the input size, as plan_preprocess makes them). UsageError on shapes.
void resize_pass_u8(const Tensor& in, const Tensor& out, bool horizontal, const std::int32_t* bounds,
                    const std::int32_t* kk, int ksize, int precision, cudaStream_t stream);

// Normalise + patchify one image: out[r, k] = value_bf16[c · 256 + img[y, x, c]] with r = (bh·gw + bw)·m² + mh·m + mw,
// k = ((c·T + tt)·p + py)·p + px, y = (bh·m + mh)·p + py, x = (bw·m + mw)·p + px (ProcessedImages' layout; every tt
// the same still image). img: [H, W, 3] U8 contiguous, H and W multiples of p·m; value_bf16: device [3 · 256]
// BF16 bit patterns (f32_to_bf16 of PreprocessPlan::value); out: [(H/p)·(W/p), 3·T·p·p] BF16 (row stride
// allowed). UsageError on shapes.
void patchify_bf16(const Tensor& img, const std::uint16_t* value_bf16, int patch, int merge, int temporal,
                   const Tensor& out, cudaStream_t stream);

}  // namespace vlq::cuda
