// The FP8 weight recipe (see vlq/ops/fp8_weight.h): amax, weight_scale and E4M3 codes of a weight tensor.
#include "vlq/ops/fp8_weight.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"

namespace vlq::ops {

namespace {

constexpr std::size_t kChunk = std::size_t{1} << 16;  // elements decoded at a time

// f32 → the source float dtype and back (the rounding PyTorch applies to a result of that dtype).
float round_to(float v, DType dt) {
  switch (dt) {
    case DType::BF16: return bf16_to_f32(f32_to_bf16(v));
    case DType::F16: return f16_to_f32(f32_to_f16(v));
    default: return v;
  }
}

void require_float_weight(DType dt, const std::string& name, const char* which) {
  if (dt != DType::BF16 && dt != DType::F16 && dt != DType::F32)
    throw UnsupportedError({name, std::string("weight ") + which + " vlq cannot quantize to FP8", "BF16, F16 or F32",
                            std::string(dtype_name(dt)), "convert the checkpoint to BF16 first"});
}

// Calls f(offset, values) for the decoded chunks of the tensor, chunks spread over OpenMP threads (each with
// its own buffer; f must only touch its chunk's elements or reduce through thread-safe means).
template <class F>
void for_each_chunk(std::span<const std::byte> data, DType dtype, F&& f) {
  const std::size_t es = dtype_size(dtype), n = data.size() / es;
  const std::int64_t chunks = static_cast<std::int64_t>((n + kChunk - 1) / kChunk);
#pragma omp parallel if (chunks > 1)
  {
    std::vector<float> buf;
#pragma omp for schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::size_t off = static_cast<std::size_t>(c) * kChunk, m = std::min(kChunk, n - off);
      buf.resize(m);
      decode_to_f32(dtype, data.subspan(off * es, m * es), buf);
      f(off, std::span<const float>(buf.data(), m));
    }
  }
}

}  // namespace

const char* fp8_rounding_name(Fp8Rounding r) noexcept {
  switch (r) {
    case Fp8Rounding::kSingle: return "single";
    case Fp8Rounding::kDouble: return "double";
    case Fp8Rounding::kDoubleBf16Scale: return "double-bf16-scale";
  }
  return "?";
}

Fp8Amax sanitize_fp8_amax(float a, const std::string& what, const std::string& name) {
  if (!std::isfinite(a) || a < 0)
    throw ConfigError({name, what + " is not a finite non-negative number", "0 <= amax < inf", fmt::format("{}", a),
                       "recalibrate; a NaN/Inf amax means the calibration forward pass produced NaN/Inf"});
  if (a == 0)
    return {kE4M3Max, fmt::format("{}: {} is 0 (never activated during calibration); used 448 (scale 1.0) as "
                                  "ModelOpt 0.47 does",
                                  name, what)};
  if (a < std::numeric_limits<float>::min()) return {std::numeric_limits<float>::min(), ""};
  return {a, ""};
}

Fp8Weight quantize_weight_fp8(std::span<const std::byte> data, DType dtype, DType source_dtype,
                              const Fp8WeightRecipe& recipe, const std::string& name) {
  require_float_weight(dtype, name, "dtype");
  require_float_weight(source_dtype, name, "source dtype");
  const std::size_t es = dtype_size(dtype);
  if (data.size() % es != 0)
    throw UsageError({name, "weight bytes are not a whole number of elements", fmt::format("a multiple of {}", es),
                      std::to_string(data.size()), "this is a bug in the caller"});
  Fp8Weight w;
  // Pass 1: amax (max is order-free, so the threads' partial maxima give the exact value); the first
  // non-finite element (lowest index) is reported after the parallel loop.
  std::size_t bad = SIZE_MAX;
  float bad_value = 0, amax = 0;
  for_each_chunk(data, dtype, [&](std::size_t off, std::span<const float> v) {
    float m = 0;
    for (std::size_t j = 0; j < v.size(); ++j) {
      const float a = std::fabs(v[j]);
      if (!(a <= std::numeric_limits<float>::max())) {
#pragma omp critical(vlq_fp8_bad)
        if (off + j < bad) bad = off + j, bad_value = v[j];
        break;
      }
      m = std::max(m, a);
    }
#pragma omp critical(vlq_fp8_amax)
    amax = std::max(amax, m);
  });
  if (bad != SIZE_MAX)
    throw UnsupportedError({name, "weight contains NaN or Inf", "finite weights", fmt::format("element {} = {}", bad, bad_value),
                            "fix the checkpoint, or keep this Linear in its source dtype (vlq quantize --exclude)"});
  w.amax = amax;
  const Fp8Amax a = sanitize_fp8_amax(w.amax, "weight amax", name);
  w.warning = a.warning;
  w.scale = recipe.scale_in_source_dtype ? round_to(a.value / kE4M3Max, source_dtype) : a.value / kE4M3Max;
  // The divisor: the stored scale, or (PyTorch CUDA with a BF16 weight) that scale rounded to BF16.
  const float div = recipe.rounding == Fp8Rounding::kDoubleBf16Scale && source_dtype == DType::BF16
                        ? bf16_to_f32(f32_to_bf16(w.scale)) : w.scale;
  if (!(div > 0) || !std::isfinite(div))
    throw UsageError({name, "weight_scale is not a positive finite number", "> 0", fmt::format("{}", div), ""});
  const bool twice = recipe.rounding != Fp8Rounding::kSingle;
  w.codes.resize(data.size() / es);
  std::int64_t saturated = 0;
  for_each_chunk(data, dtype, [&](std::size_t off, std::span<const float> v) {
    std::int64_t sat = 0;
    for (std::size_t j = 0; j < v.size(); ++j) {
      const float q = v[j] / div;
      w.codes[off + j] = f32_to_e4m3fn_sat(twice ? round_to(q, source_dtype) : q);
      // Clipped = beyond what round-to-nearest would give anyway: |W/s| > 464 (the tie between 448 and the
      // next, non-existent E4M3 step). W/s slightly above 448 from f32 rounding of amax/448 is not clipping.
      sat += std::fabs(v[j]) / w.scale > 464.0f;
    }
#pragma omp atomic
    saturated += sat;
  });
  w.saturated = saturated;
  return w;
}

}  // namespace vlq::ops
