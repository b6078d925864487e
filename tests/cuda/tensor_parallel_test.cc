// Tensor parallelism: TP=2 logits equal TP=1 within BF16 tolerance and greedy tokens equal (bundled trained
// model, BF16), TP=1 through the tensor-parallel driver equals the plain single-GPU model; a model that
// does not divide is refused. Skips without enough GPUs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "cuda_test_util.h"
#include "vlq/model/qwen2_5_vl.h"
#include "vlq/model_cuda/tensor_parallel.h"

namespace vlq::model_cuda {
namespace {

const std::filesystem::path kModel = std::filesystem::path(VLQ_SOURCE_DIR) / "models/qwen2_5_vl-tiny-trained";

double rel_error(const ops::Matrix& a, const ops::Matrix& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.data.size(); ++i) {
    num = std::max(num, static_cast<double>(std::fabs(a.data[i] - b.data[i])));
    den = std::max(den, static_cast<double>(std::fabs(b.data[i])));
  }
  return num / std::max(den, 1e-30);
}

std::int32_t argmax0(const ops::Matrix& m) {
  return static_cast<std::int32_t>(std::max_element(m.row(m.rows - 1), m.row(m.rows - 1) + m.cols) - m.row(m.rows - 1));
}

std::vector<std::int32_t> text(int n) {
  std::mt19937 g(5);
  std::uniform_int_distribution<std::int32_t> d(10, 2000);
  std::vector<std::int32_t> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

// Greedy run of `steps` tokens; returns the tokens and the prefill logits.
template <class M> std::pair<std::vector<std::int32_t>, ops::Matrix> run(M& m, int steps) {
  CudaSequence s;
  const auto ids = text(50);
  ops::Matrix first = m.prefill(s, ids, nullptr, 50 + steps + 1, 1);
  std::vector<std::int32_t> out{argmax0(first)};
  for (int i = 1; i < steps; ++i) out.push_back(argmax0(m.decode(s, out.back())));
  m.release(s);
  return {out, first};
}

TEST(CudaTensorParallel, Tp1DriverEqualsSingleGpu) {
  VLQ_REQUIRE_GPU();
  const auto cpu = model::Qwen2_5_VL::load(kModel);
  Qwen2_5_VLCuda one(cpu);
  TensorParallelQwen2_5_VL tp1(cpu, 1);
  const auto [a, la] = run(one, 12);
  const auto [b, lb] = run(tp1, 12);
  EXPECT_EQ(a, b);
  EXPECT_EQ(rel_error(la, lb), 0.0);
}

TEST(CudaTensorParallel, Tp2EqualsTp1) {
  VLQ_REQUIRE_GPU();
  if (cuda::device_count() < 2) GTEST_SKIP() << "needs 2 CUDA devices, found " << cuda::device_count();
  const auto cpu = model::Qwen2_5_VL::load(kModel);
  TensorParallelQwen2_5_VL tp1(cpu, 1);
  const auto [a, la] = run(tp1, 16);
  TensorParallelQwen2_5_VL tp2(cpu, 2);
  const auto [b, lb] = run(tp2, 16);
  EXPECT_LE(rel_error(lb, la), 1e-2);
  EXPECT_EQ(a, b);
}

TEST(CudaTensorParallel, RefusesSizesThatDoNotDivide) {
  VLQ_REQUIRE_GPU();
  const auto cpu = model::Qwen2_5_VL::load(kModel);  // 4 heads, 2 KV heads
  CudaOptions o;
  o.tp_size = 3;
  EXPECT_THROW(Qwen2_5_VLCuda(cpu, o), UnsupportedError);
}

}  // namespace
}  // namespace vlq::model_cuda
