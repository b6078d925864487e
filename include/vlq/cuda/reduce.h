// Calibration reductions on the device (layer-sequential GPU calibration, vlq quantize --device cuda): the
// running max |x| of a tensor and its |x| histogram over fixed log2-spaced bins. The bin layout is the one of
// quant::AbsHistogram (vlq/quant/calibration_stats.h), passed in by the caller so that one definition rules
// both paths: bins_per_octave sub-bins per power of two from 2^min_log2 to 2^max_log2; sub-bin j of an octave
// starts at the f32 mantissa sub_bin_thresholds[j] (f32(2^(j/32)), j = 0 → 0). CPU reference:
// quant::AbsHistogram::add / bin_of and quant::AmaxObserver (max over every element).
#pragma once

#include <cstdint>

#include "vlq/cuda/device.h"

namespace vlq::cuda {

struct AbsHistLayout {
  static constexpr int kBinsPerOctave = 32;  // the kernel's sub-bin search is unrolled for 32
  int min_log2 = -32, max_log2 = 32;
  std::uint32_t sub_bin_thresholds[kBinsPerOctave] = {};  // ascending, [0] == 0
  int bins() const { return (max_log2 - min_log2) * kBinsPerOctave; }
};

// amax[0] = max(amax[0], max |x|) (NaN elements are skipped, as std::max(m, NaN) keeps m on the CPU when m
// comes first) and, when `hist` is given, hist[b] += count of |x| in bin b for b < bins(), hist[bins()] +=
// count of |x| below 2^min_log2 (zeros, subnormals); |x| >= 2^max_log2, inf and NaN count in bin bins() - 1.
//   x: [rows, cols] F32|BF16 with a row stride (stride[1] == 1), or [rows, a, b] with stride[2] == 1 and
//      stride[1] == b (read as [rows, a·b], e.g. the K heads of a fused qkv row);
//   amax: device f32 [1]; hist: null or device u64 [bins() + 1]; layout: required when hist is given.
// Stream-ordered, no host synchronisation. Throws UsageError for other shapes/dtypes.
void abs_max_histogram(const Tensor& x, float* amax, unsigned long long* hist, const AbsHistLayout* layout,
                       cudaStream_t stream);

}  // namespace vlq::cuda
