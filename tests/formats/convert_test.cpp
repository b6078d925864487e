// Tests of `vlq convert` on the real ModelOpt / llm-compressor exports (tests/data/ref_exports): the output
// loads on the target, vision FP8 weights are dequantized exactly, nothing is left behind on failure, and
// the input is never modified.
#include <gtest/gtest.h>

#include "io/io_test_util.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/formats/check.h"
#include "vlq/formats/convert.h"
#include "vlq/io/safetensors.h"

namespace fs = std::filesystem;
namespace F = vlq::formats;

namespace {

const fs::path kRef = fs::path(VLQ_SOURCE_DIR) / "tests/data/ref_exports";

using vlq::testing::folder_snapshot;
using vlq::testing::read_bytes;

class ConvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("vlq-convert-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  F::ConvertOptions opts(std::string target, F::VisionMode v = F::VisionMode::kDefault) {
    F::ConvertOptions o;
    o.target = std::move(target);
    o.vision = v;
    o.fsync = false;
    return o;
  }
  fs::path tmp_;
};

float value_as_f32(const vlq::io::Checkpoint& ck, const std::string& name, std::size_t i) {
  const auto& info = ck.info(name);
  auto b = ck.data(name);
  if (info.dtype == vlq::DType::F32) { float f; std::memcpy(&f, b.data() + 4 * i, 4); return f; }
  std::uint16_t h;
  std::memcpy(&h, b.data() + 2 * i, 2);
  return vlq::bf16_to_f32(h);
}

TEST_F(ConvertTest, WholeVlmModelOptForVllm010LoadsAndDequantizesVisionExactly) {
  const fs::path in = kRef / "modelopt-vlm-fp8-kv";
  ASSERT_TRUE(fs::exists(in));
  auto before = folder_snapshot(in);
  F::Report pre = F::check_checkpoint(in, "vllm-0.10");
  ASSERT_EQ(pre.verdict, F::Verdict::kFails);
  ASSERT_NE(pre.first_failure(), nullptr);
  EXPECT_EQ(pre.first_failure()->runtime_error, "KeyError: 'blocks.0.attn.k_proj.k_scale'");

  const fs::path out = tmp_ / "out";
  F::ConvertResult r = F::convert_checkpoint(in, out, opts("vllm-0.10"));
  // It loads; the one warning left is ModelOpt 0.35's KV scales, all clamped to 1.0 (convert cannot recalibrate).
  EXPECT_EQ(r.check.verdict, F::Verdict::kLoadsWithWarnings);
  F::Report post = F::check_checkpoint(out, "vllm-0.10");
  EXPECT_EQ(post.verdict, F::Verdict::kLoadsWithWarnings);
  for (const auto& f : post.findings)
    if (f.severity >= F::Severity::kWarning) EXPECT_EQ(f.code, "kv_scales_uncalibrated") << F::report_to_text(post);
  EXPECT_EQ(folder_snapshot(in), before) << "input modified";

  auto src = vlq::io::Checkpoint::open(in);
  auto dst = vlq::io::Checkpoint::open(out);
  // Orphan vision K/V scales are gone, LM KV scales kept (ModelOpt spelling for vLLM 0.10).
  EXPECT_EQ(dst.find("visual.blocks.0.attn.k_proj.k_scale").info, nullptr);
  EXPECT_EQ(dst.find("visual.blocks.1.attn.v_proj.v_scale").info, nullptr);
  EXPECT_NE(dst.find("model.layers.0.self_attn.k_proj.k_scale").info, nullptr);
  // Vision weights are BF16 = bf16(E4M3 x weight_scale); their scales are gone.
  const std::string w = "visual.blocks.0.mlp.down_proj.weight";
  ASSERT_EQ(dst.info(w).dtype, vlq::DType::BF16);
  EXPECT_EQ(dst.find("visual.blocks.0.mlp.down_proj.weight_scale").info, nullptr);
  const float scale = value_as_f32(src, "visual.blocks.0.mlp.down_proj.weight_scale", 0);
  auto q = src.data(w);
  std::size_t nonzero = 0;
  for (std::size_t i = 0; i < q.size(); ++i) {
    const float expect = vlq::bf16_to_f32(vlq::f32_to_bf16(vlq::e4m3fn_to_f32(static_cast<std::uint8_t>(q[i])) * scale));
    ASSERT_EQ(value_as_f32(dst, w, i), expect) << "element " << i;
    nonzero += expect != 0.0f;
  }
  EXPECT_GT(nonzero, q.size() / 2);
  // LM weights are copied byte for byte.
  const std::string lm = "model.layers.1.mlp.gate_proj.weight";
  auto a = src.data(lm), b = dst.data(lm);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0);
  // Both config files agree and exclude the vision tower in the form vLLM 0.10 matches (substring).
  auto hfq = nlohmann::json::parse(read_bytes(out / "hf_quant_config.json"));
  auto cfg = nlohmann::json::parse(read_bytes(out / "config.json"));
  const auto& ex = hfq["quantization"]["exclude_modules"];
  EXPECT_NE(std::find(ex.begin(), ex.end(), "visual"), ex.end());
  EXPECT_EQ(cfg["quantization_config"]["ignore"], ex);
  EXPECT_EQ(cfg["quantization_config"]["exclude_modules"], ex);
  // Tokenizer/processor/generation files are carried over.
  EXPECT_TRUE(fs::exists(out / "preprocessor_config.json"));
  EXPECT_TRUE(fs::exists(out / "generation_config.json"));
}

TEST_F(ConvertTest, WholeVlmModelOptForVllmLatestDefaultsToBf16Vision) {
  const fs::path in = kRef / "modelopt-vlm-fp8-kv";
  EXPECT_EQ(F::check_checkpoint(in, "vllm-latest").verdict, F::Verdict::kFails);
  F::ConvertResult r = F::convert_checkpoint(in, tmp_ / "out", opts("vllm-latest"));
  EXPECT_NE(r.check.verdict, F::Verdict::kFails);
  EXPECT_NE(F::check_checkpoint(tmp_ / "out", "vllm-latest").verdict, F::Verdict::kFails);
}

TEST_F(ConvertTest, KeepingAnFp8VisionTowerForVllmLatestIsRefusedAndWritesNothing) {
  const fs::path out = tmp_ / "out";
  EXPECT_THROW(F::convert_checkpoint(kRef / "modelopt-vlm-fp8-kv", out, opts("vllm-latest", F::VisionMode::kKeep)),
               vlq::ConfigError);
  EXPECT_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(tmp_)) ADD_FAILURE() << "left behind: " << e.path();
}

TEST_F(ConvertTest, KeepVisionForVllm010OnlyDropsTheOrphanScales) {
  F::ConvertResult r = F::convert_checkpoint(kRef / "modelopt-vlm-fp8-kv", tmp_ / "out", opts("vllm-0.10", F::VisionMode::kKeep));
  EXPECT_NE(r.check.verdict, F::Verdict::kFails);
  auto dst = vlq::io::Checkpoint::open(tmp_ / "out");
  EXPECT_EQ(dst.info("visual.blocks.0.attn.qkv.weight").dtype, vlq::DType::F8_E4M3);
  EXPECT_EQ(dst.find("visual.blocks.0.attn.k_proj.k_scale").info, nullptr);
}

TEST_F(ConvertTest, CompressedTensorsLmOnlyConvertsForEveryTarget) {
  for (std::string t : {"vllm-0.10", "vllm-latest", "vlq"}) {
    const fs::path out = tmp_ / ("out-" + t);
    F::ConvertResult r = F::convert_checkpoint(kRef / "llmc-lm-fp8", out, opts(t));
    EXPECT_NE(r.check.verdict, F::Verdict::kFails) << t;
    auto dst = vlq::io::Checkpoint::open(out);
    EXPECT_NE(dst.find("model.layers.0.self_attn.k_scale").info, nullptr) << t;  // compressed-tensors spelling
    EXPECT_FALSE(fs::exists(out / "hf_quant_config.json")) << t;
  }
}

TEST_F(ConvertTest, RefusesExistingOutputUnlessForced) {
  const fs::path out = tmp_ / "out";
  fs::create_directories(out);
  std::ofstream(out / "keep.txt") << "precious";
  EXPECT_THROW(F::convert_checkpoint(kRef / "modelopt-lm-fp8-kv", out, opts("vllm-0.10")), vlq::UsageError);
  EXPECT_EQ(read_bytes(out / "keep.txt"), "precious");
  auto o = opts("vllm-0.10");
  o.force = true;
  F::convert_checkpoint(kRef / "modelopt-lm-fp8-kv", out, o);
  EXPECT_FALSE(fs::exists(out / "keep.txt"));
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
}

TEST_F(ConvertTest, RefusesUnquantizedInputAndUnknownTarget) {
  EXPECT_THROW(F::convert_checkpoint(kRef / "base-bf16", tmp_ / "out", opts("vllm-0.10")), vlq::UsageError);
  EXPECT_THROW(F::convert_checkpoint(kRef / "modelopt-lm-fp8-kv", tmp_ / "out", opts("vllm-9.9")), vlq::UsageError);
  EXPECT_FALSE(fs::exists(tmp_ / "out"));
}

TEST_F(ConvertTest, RefusesToWriteIntoItsInput) {
  // Copy an export, then try to convert it onto itself with --force: the input must survive.
  const fs::path in = tmp_ / "in";
  fs::copy(kRef / "modelopt-lm-fp8-kv", in, fs::copy_options::recursive);
  auto before = folder_snapshot(in);
  auto o = opts("vllm-0.10");
  o.force = true;
  EXPECT_THROW(F::convert_checkpoint(in, in, o), vlq::UsageError);
  EXPECT_EQ(folder_snapshot(in), before);
}

TEST_F(ConvertTest, RefusesOutputInsideInputAndInputWithoutConfig) {
  const fs::path in = tmp_ / "in";
  fs::copy(kRef / "modelopt-lm-fp8-kv", in, fs::copy_options::recursive);
  auto before = folder_snapshot(in);
  EXPECT_THROW(F::convert_checkpoint(in, in / "sub", opts("vllm-0.10")), vlq::UsageError);
  EXPECT_FALSE(fs::exists(in / "sub"));
  fs::remove(in / "config.json");
  before.erase("config.json");
  EXPECT_THROW(F::convert_checkpoint(in, tmp_ / "out", opts("vllm-0.10")), vlq::FormatError);
  EXPECT_FALSE(fs::exists(tmp_ / "out"));
  EXPECT_EQ(folder_snapshot(in), before);
  // check: a folder without config.json is invalid for every target (exit code 3).
  for (std::string t : {"vllm-0.10", "vllm-latest", "vlq"}) {
    F::Report r = F::check_checkpoint(in, t);
    EXPECT_EQ(r.verdict, F::Verdict::kInvalid) << t;
    EXPECT_FALSE(r.with_code("no_config").empty()) << t;
  }
}

}  // namespace
