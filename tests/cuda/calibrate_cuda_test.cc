// Layer-sequential GPU calibration (quant::calibrate_cuda, model_cuda::LayerwiseCalibrator) against the CPU
// calibration (quant::calibrate) on the bundled trained model with text and image+caption samples: the same
// modules, amax within 1 % (BF16 GEMM inputs on the GPU), token counts equal; the residual stream spilled to
// host memory and small chunks give the same amax as the resident one-chunk run; the device histogram kernel
// equals quant::AbsHistogram bit for bit. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "cuda_test_util.h"
#include "vlq/cuda/reduce.h"
#include "vlq/engine/model_bundle.h"
#include "vlq/model_cuda/layerwise.h"
#include "vlq/quant/calib_data.h"
#include "vlq/quant/calibrate.h"
#include "vlq/quant/calibrate_cuda.h"

namespace vlq::quant {
namespace {

namespace fs = std::filesystem;
const fs::path kModel = fs::path(VLQ_SOURCE_DIR) / "models/qwen2_5_vl-tiny-trained";
const fs::path kCalib = fs::path(VLQ_SOURCE_DIR) / "data/calib";

cuda::AbsHistLayout layout() {
  cuda::AbsHistLayout l;
  l.min_log2 = AbsHistogram::kMinLog2;
  l.max_log2 = AbsHistogram::kMaxLog2;
  for (int j = 0; j < AbsHistogram::kBinsPerOctave; ++j) l.sub_bin_thresholds[j] = AbsHistogram::sub_bin_threshold(j);
  return l;
}

// Values over the whole f32 range: normals of every octave in and out of the histogram's range, bin edges
// and their neighbours, zeros, subnormals, inf, NaN.
std::vector<float> wide_values(std::size_t n, std::mt19937& g) {
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> ex(-45, 45), kind(0, 19);
  std::vector<float> v(n);
  for (auto& x : v) {
    const int k = kind(g);
    if (k == 0) x = 0.0f;
    else if (k == 1) x = std::numeric_limits<float>::denorm_min() * 7;
    else if (k == 2) x = static_cast<float>(AbsHistogram::lower_edge(std::uniform_int_distribution<int>(0, AbsHistogram::kBins)(g)));
    else if (k == 3) x = std::nextafter(static_cast<float>(AbsHistogram::lower_edge(std::uniform_int_distribution<int>(1, 2047)(g))), 0.0f);
    else if (k == 4 && g() % 64 == 0) x = g() % 2 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    else x = std::ldexp(mant(g), ex(g));
    if (g() % 2) x = -x;
  }
  return v;
}

TEST(CudaReduce, AbsMaxHistogramEqualsAbsHistogram) {
  VLQ_REQUIRE_GPU();
  const std::uint32_t seed = cuda::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 g(seed);
  const std::int64_t rows = 333, cols = 200, ld = 256;  // row stride > cols: the pad columns must be skipped
  std::vector<float> x = wide_values(static_cast<std::size_t>(rows * ld), g);
  for (const DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<float> used(static_cast<std::size_t>(rows * cols));
    std::vector<std::uint16_t> b16(x.size());
    f32_to_bf16(std::span<const float>(x), std::span<std::uint16_t>(b16));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c)
        used[r * cols + c] = dt == DType::F32 ? x[r * ld + c] : bf16_to_f32(b16[r * ld + c]);
    AbsHistogram ref;
    ref.add(used.data(), static_cast<std::int64_t>(used.size()));
    float ref_max = 0.0f;
    for (float v : used) ref_max = std::max(ref_max, std::fabs(v));
    cuda::DeviceBuffer dx = dt == DType::F32 ? cuda::test::to_device(x) : cuda::test::to_device(b16);
    const cuda::AbsHistLayout lay = layout();
    cuda::DeviceBuffer amax(4), hist(static_cast<std::size_t>(lay.bins() + 1) * 8);
    VLQ_CUDA_CHECK(cudaMemset(amax.data(), 0, 4));
    VLQ_CUDA_CHECK(cudaMemset(hist.data(), 0, hist.bytes()));
    cuda::abs_max_histogram(cuda::Tensor::strided2d(dx.data(), dt, rows, cols, ld), amax.as<float>(),
                            hist.as<unsigned long long>(), &lay, nullptr);
    VLQ_CUDA_CHECK(cudaDeviceSynchronize());
    float got_max = 0;
    std::vector<std::uint64_t> got(static_cast<std::size_t>(lay.bins() + 1));
    VLQ_CUDA_CHECK(cudaMemcpy(&got_max, amax.data(), 4, cudaMemcpyDeviceToHost));
    VLQ_CUDA_CHECK(cudaMemcpy(got.data(), hist.data(), hist.bytes(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(got_max, ref_max);
    EXPECT_EQ(got.back(), ref.zeros);
    ASSERT_EQ(ref.counts.size(), got.size() - 1);
    int bad = 0;
    for (std::size_t b = 0; b + 1 < got.size(); ++b) bad += got[b] != ref.counts[b];
    EXPECT_EQ(bad, 0) << "bins differing from AbsHistogram::add";
  }
}

std::vector<CalibSample> samples() {
  return select_calib_samples(load_calib_text(kCalib / "text.jsonl"), load_calib_images(kCalib / "images"), 10, 0);
}

TEST(CudaCalibrate, LayerSequentialMatchesCpuCalibration) {
  VLQ_REQUIRE_GPU();
  const std::vector<CalibSample> s = samples();
  CalibrateOptions co;
  co.lm_head = true;  // the final-norm tap too
  const engine::ModelBundle full = engine::ModelBundle::load(kModel);
  const CalibrationStats cpu = calibrate(full.model(), full.prompt_builder(), s, co);
  engine::BundleOptions bo;
  bo.decode_weights = calibrate_cuda_weight_filter();
  const engine::ModelBundle hollow = engine::ModelBundle::load(kModel, bo);
  EXPECT_TRUE(hollow.model().weights().lm.layers.at(0).q.w.empty()) << "the decoder layers must not be decoded on the host";
  const io::Checkpoint ckpt = io::Checkpoint::open(kModel);
  CudaCalibrateReport rep;
  const CalibrationStats gpu = calibrate_cuda(hollow.model(), ckpt, hollow.prompt_builder(), s, co, 0, &rep);
  EXPECT_EQ(gpu.samples, cpu.samples);
  EXPECT_EQ(gpu.text_tokens, cpu.text_tokens);
  EXPECT_EQ(gpu.image_tokens, cpu.image_tokens);
  EXPECT_GT(cpu.image_tokens, 0);
  EXPECT_EQ(rep.rows, cpu.text_tokens + cpu.image_tokens);
  EXPECT_FALSE(rep.residual_on_host);
  auto compare = [](const char* what, const std::map<std::string, float>& a, const std::map<std::string, float>& b) {
    ASSERT_EQ(a.size(), b.size()) << what;
    double worst = 0;
    std::string at;
    for (const auto& [k, v] : b) {
      ASSERT_TRUE(a.count(k)) << what << ": " << k << " missing on the GPU";
      const double rel = std::fabs(a.at(k) - v) / std::max(1e-30, static_cast<double>(v));
      if (rel > worst) worst = rel, at = k;
    }
    EXPECT_LE(worst, 1e-2) << what << ": worst " << at << " gpu " << a.at(at) << " cpu " << b.at(at);
    std::printf("[calibrate] %s: %zu entries, worst relative amax difference %.3e (%s)\n", what, b.size(), worst, at.c_str());
  };
  compare("input_amax", gpu.input_amax, cpu.input_amax);
  compare("k_amax", gpu.k_amax, cpu.k_amax);
  compare("v_amax", gpu.v_amax, cpu.v_amax);
  ASSERT_EQ(gpu.input_hist.size(), cpu.input_hist.size());
  for (const auto& [k, h] : cpu.input_hist) EXPECT_EQ(gpu.input_hist.at(k).total(), h.total()) << k;
}

// A text-only layerwise run with the residual stream on the device in one chunk vs spilled to host memory in
// chunks of a few sequences: same amax up to GEMM shape effects.
TEST(CudaCalibrate, SpilledResidualAndSmallChunksAgree) {
  VLQ_REQUIRE_GPU();
  engine::BundleOptions bo;
  bo.decode_weights = calibrate_cuda_weight_filter();
  const engine::ModelBundle hollow = engine::ModelBundle::load(kModel, bo);
  const io::Checkpoint ckpt = io::Checkpoint::open(kModel);
  std::mt19937 g(7);
  std::vector<model_cuda::LayerwiseSequence> seqs(9);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const std::int64_t S = 20 + 13 * static_cast<std::int64_t>(i);
    for (std::int64_t t = 0; t < S; ++t) seqs[i].ids.push_back(static_cast<std::int32_t>(10 + g() % 1500));
    for (int r = 0; r < 3; ++r)
      for (std::int64_t t = 0; t < S; ++t) seqs[i].positions.push_back(static_cast<std::int32_t>(t));
  }
  auto run = [&](std::size_t budget, std::int64_t chunk) {
    model_cuda::LayerwiseOptions o;
    o.hist_layout = layout();
    o.residual_budget_bytes = budget;
    o.chunk_tokens = chunk;
    model_cuda::LayerwiseCalibrator c(ckpt, hollow.model(), o);
    c.run_language_model(seqs);
    EXPECT_EQ(c.report().residual_on_host, budget == 1);
    std::map<std::string, float> m;
    for (const auto& [k, t] : c.linear_inputs()) m[k] = t.amax;
    for (const auto& [k, v] : c.k_amax()) m[k + ".k"] = v;
    return std::make_pair(m, c.report().chunks);
  };
  const auto [a, chunks_a] = run(0, 1 << 20);
  const auto [b, chunks_b] = run(1, 100);
  EXPECT_EQ(chunks_a, 1);
  EXPECT_GT(chunks_b, 3);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) EXPECT_NEAR(b.at(k), v, 2e-3 * v) << k;
}

}  // namespace
}  // namespace vlq::quant
