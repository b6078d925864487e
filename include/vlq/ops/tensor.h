// A row-major f32 matrix: the one activation container of the CPU reference path (rows = tokens or
// patches, cols = features). Deliberately plain: ops take raw pointers + named dims; this owns memory.
#pragma once

#include <cstdint>
#include <vector>

namespace vlq::ops {

struct Matrix {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::vector<float> data;  // [rows, cols], row-major

  Matrix() = default;
  Matrix(std::int64_t r, std::int64_t c) : rows(r), cols(c), data(static_cast<std::size_t>(r * c), 0.0f) {}
  float* row(std::int64_t r) { return data.data() + r * cols; }
  const float* row(std::int64_t r) const { return data.data() + r * cols; }
  std::int64_t numel() const { return rows * cols; }
};

}  // namespace vlq::ops
