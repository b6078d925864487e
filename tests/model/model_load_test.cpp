// Loading real FP8 exports into the CPU runtime (ModelOpt 0.35/0.47 LM-only and whole-VLM, both naming
// generations, llm-compressor static and dynamic) through the shared name table, running them next to
// their BF16 base, and the loader's both-direction check (every problem listed in one error).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"
#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"
#include "vlq/model/qwen2_5_vl.h"

namespace fs = std::filesystem;
using namespace vlq;

namespace {

const fs::path kRef = fs::path(VLQ_SOURCE_DIR) / "tests/data/ref_exports";

std::vector<std::int32_t> calib_ids() {
  nlohmann::json c;
  std::ifstream(kRef / "calib/calib.json") >> c;
  return c["text_samples"][0].get<std::vector<std::int32_t>>();
}

struct Expect {
  const char* dir;
  int fp8_linears;
  int kv_layers;
  std::size_t ignored;  // vision K/V orphans
  bool fp8_kv;
};
// GoogleTest (and ctest's discovered test names) print the export folder, not the struct's raw bytes.
void PrintTo(const Expect& e, std::ostream* os) { *os << e.dir; }

class ModelLoadFp8 : public ::testing::TestWithParam<Expect> {};

TEST_P(ModelLoadFp8, LoadsAndStaysCloseToBf16) {
  const Expect e = GetParam();
  const auto q = model::Qwen2_5_VL::load(kRef / e.dir);
  const auto& r = q.weights().report;
  EXPECT_EQ(r.fp8_linears, e.fp8_linears);
  EXPECT_EQ(r.kv_scale_layers, e.kv_layers);
  EXPECT_EQ(r.ignored.size(), e.ignored);
  EXPECT_EQ(q.fp8_kv_cache(), e.fp8_kv);
  const auto base = model::Qwen2_5_VL::load(kRef / "base-bf16");
  const auto ids = calib_ids();
  model::Session s1 = base.new_session(64), s2 = q.new_session(64);
  const auto a = base.prefill(s1, ids, nullptr, static_cast<std::int64_t>(ids.size()));
  const auto b = q.prefill(s2, ids, nullptr, static_cast<std::int64_t>(ids.size()));
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.data.size(); ++i) {
    num += (a.data[i] - b.data[i]) * (a.data[i] - b.data[i]);
    den += a.data[i] * a.data[i];
  }
  const double rel = std::sqrt(num / den);
  EXPECT_GT(rel, 0.0) << "FP8 model gave the BF16 logits exactly: the FP8 path was not used";
  EXPECT_LT(rel, 0.1) << "FP8 logits too far from BF16";
}

INSTANTIATE_TEST_SUITE_P(
    RefExports, ModelLoadFp8,
    ::testing::Values(Expect{"modelopt-lm-fp8-kv", 14, 2, 0, true}, Expect{"modelopt047-lm-fp8-kv", 14, 2, 0, true},
                      Expect{"modelopt-vlm-fp8-kv", 26, 2, 4, true},
                      Expect{"modelopt-vlm-fp8-kv-tf4523-kv-visual", 26, 0, 4, false},
                      Expect{"modelopt-vlm-fp8-kv-tf4523-kv-language_model", 26, 2, 0, true},
                      Expect{"llmc-lm-fp8", 14, 2, 0, true}, Expect{"llmc-vlm-fp8-dynamic", 26, 0, 0, false}),
    [](const auto& info) {
      std::string n = info.param.dir;
      for (char& c : n)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

TEST(ModelLoad, Fp8KvCacheCanBeForcedOrDisabled) {
  model::LoadOptions o;
  o.kv_cache = model::KvCacheMode::kF32;
  EXPECT_FALSE(model::Qwen2_5_VL::load(kRef / "modelopt-lm-fp8-kv", o).fp8_kv_cache());
  o.kv_cache = model::KvCacheMode::kFp8;
  EXPECT_TRUE(model::Qwen2_5_VL::load(kRef / "base-bf16", o).fp8_kv_cache());
}

// A checkpoint with two tensors missing (one decoder, one ViT), one of the wrong shape and one unknown: one
// error naming all four, missing ones in the checkpoint's own (legacy) naming through names.h.
TEST(ModelLoad, ListsEveryProblemAtOnce) {
  const fs::path dir = fs::temp_directory_path() / ("vlq_model_load_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(kRef / "base-bf16/config.json", dir / "config.json");
  const auto src = io::SafetensorsFile::open(kRef / "base-bf16/model.safetensors");
  std::vector<io::TensorData> out;
  std::vector<std::byte> extra(4 * 3);
  for (const auto& t : src.tensors()) {
    if (t.name == "model.layers.0.mlp.up_proj.weight" || t.name == "visual.blocks.1.norm2.weight") continue;  // missing
    io::TensorData d{{t.name, t.dtype, t.shape}, src.data(t)};
    if (t.name == "model.norm.weight") {  // wrong shape: [64] → [32, 2]
      d.spec.shape = {32, 2};
    }
    out.push_back(d);
  }
  out.push_back({{"model.layers.0.mlp.extra_proj.weight", DType::F32, {3}}, extra});
  io::write_safetensors_file(dir / "model.safetensors", out);
  try {
    (void)model::Qwen2_5_VL::load(dir);
    FAIL() << "expected a FormatError";
  } catch (const FormatError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("4 problem(s)"), std::string::npos) << m;
    EXPECT_NE(m.find("model.layers.0.mlp.up_proj.weight: missing"), std::string::npos) << m;
    EXPECT_NE(m.find("visual.blocks.1.norm2.weight: missing"), std::string::npos) << m;
    EXPECT_NE(m.find("canonical name model.visual.blocks.1.norm2.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("model.norm.weight: expected [64]"), std::string::npos) << m;
    EXPECT_NE(m.find("model.layers.0.mlp.extra_proj.weight: unexpected tensor"), std::string::npos) << m;
  }
  fs::remove_all(dir);
}

}  // namespace
